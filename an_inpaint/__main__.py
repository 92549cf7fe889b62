"""``python -m an_inpaint``: see :mod:`an_inpaint.cli`."""

from an_inpaint.cli import cli_main

if __name__ == "__main__":
    cli_main()
