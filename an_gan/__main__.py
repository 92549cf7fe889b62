"""``python -m an_gan fit|validate|test|predict``: see :mod:`an_gan.cli`."""

from an_gan.cli import cli_main

if __name__ == "__main__":
    cli_main()
