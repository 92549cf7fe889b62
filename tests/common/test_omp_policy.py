"""``import an_gan`` and ``import an_inpaint`` set OpenMP's passive wait policy before torch loads."""

import os
import subprocess
import sys

import pytest


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    return subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, env=environ,
                          check=True, timeout=240)  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize("package", ["an_gan", "an_inpaint"])
def test_policy_is_set_before_torch_loads(package):
    out = _run(f"import os, {package}; print(os.environ['OMP_WAIT_POLICY'])")
    assert out.stdout.strip() == "PASSIVE"
    finished = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert finished.index("common") < finished.index("torch"), "torch was imported before common set the policy"


@pytest.mark.timeout(300)
def test_a_policy_set_by_the_user_is_kept():
    assert (
        _run("import os, common; print(os.environ['OMP_WAIT_POLICY'])", OMP_WAIT_POLICY="ACTIVE").stdout.strip()
        == "ACTIVE"
    )
