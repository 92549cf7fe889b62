"""``python -m an_gan fit|validate|test|predict|...``: see :mod:`an_gan.cli`."""

import os

# OpenMP reads its wait policy when torch loads, so the command line sets it before anything imports torch (importing
# the package itself changes no environment). With OpenMP's default spin-waiting, torch's CPU threads busy-wait for
# each other, and on cores shared with other processes (a laptop, a CI runner, data-loading workers) small CPU steps
# become many times slower (the digits demo under one other busy process: 0.5 instead of 6.4 training batches per
# second on 2 cores). Set OMP_WAIT_POLICY=ACTIVE yourself to keep spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from an_gan.cli import cli_main  # noqa: E402  (after the environment is set)

if __name__ == "__main__":
    cli_main()
