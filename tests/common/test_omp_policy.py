"""Importing a package changes no environment variable; ``python -m an_gan`` / ``an_inpaint`` set OpenMP's passive
wait policy before torch loads, and keep a policy the user set."""

import os
import subprocess
import sys

import pytest

PACKAGES = ["common", "common.layers", "common.training.cli", "an_gan", "an_gan.cli", "an_inpaint", "an_inpaint.cli"]


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environ,
                          check=True, timeout=240)  # fmt: skip


@pytest.mark.timeout(300)
def test_importing_the_packages_changes_no_environment():
    # third-party libraries may set variables of their own when imported (cv2: LD_LIBRARY_PATH): load them first
    code = (
        "import os, importlib, torch, cv2, pytorch_lightning, torchmetrics, wandb, torch._inductor.config; "
        "before = dict(os.environ); "
        f"[importlib.import_module(m) for m in {PACKAGES!r}]; "
        "print(sorted(set(os.environ.items()) ^ set(before.items())))"
    )
    assert _run(["-c", code]).stdout.strip() == "[]"


_WATCH_TORCH = (
    "import os, runpy, sys\n"
    "seen = dict()\n"
    "class Watch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'torch' and 'torch' not in seen:\n"
    "            seen['torch'] = os.environ.get('OMP_WAIT_POLICY')\n"
    "        return None\n"
    "sys.meta_path.insert(0, Watch())\n"
    "sys.argv = ['PACKAGE', '--help']\n"
    "try:\n"
    "    runpy.run_module('PACKAGE', run_name='__main__')\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('AT_TORCH_IMPORT=' + str(seen.get('torch')))\n"
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("package", ["an_gan", "an_inpaint"])
def test_the_command_line_sets_the_policy_before_torch_loads(package):
    # `python -m <task> --help` runs __main__ and the CLI's imports; an import hook records the policy at the moment
    # torch is first imported (OpenMP reads it then).
    assert "AT_TORCH_IMPORT=PASSIVE" in _run(["-c", _WATCH_TORCH.replace("PACKAGE", package)]).stdout


@pytest.mark.timeout(300)
def test_a_policy_set_by_the_user_is_kept():
    out = _run(["-c", _WATCH_TORCH.replace("PACKAGE", "an_gan")], OMP_WAIT_POLICY="ACTIVE")
    assert "AT_TORCH_IMPORT=ACTIVE" in out.stdout
