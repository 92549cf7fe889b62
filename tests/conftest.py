"""Shared pytest configuration: ``--runslow``, offline W&B, device/dtype fixtures."""

import os

# OpenMP threads that spin while they wait turn a loaded 2-core machine (DDP tests start more processes) into a
# crawl: one G+D step went from 0.1 s to 2.4 s with 2 threads under load. Passive waiting; set before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

# Tests never talk to the network: W&B writes real offline run files only.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_CODE", "true")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")
    parser.addoption("--device", default="cpu", help="device for device-parametrised tests: cpu, cuda or all")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow test: pass --runslow to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


def pytest_generate_tests(metafunc):
    if "device" in metafunc.fixturenames:
        choice = metafunc.config.getoption("--device")
        devices = ["cpu", "cuda"] if choice == "all" else [choice]
        devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
        metafunc.parametrize("device", [torch.device(d) for d in devices], ids=devices)


@pytest.fixture(autouse=True)
def _wandb_dir(tmp_path, monkeypatch):
    """Keep W&B's offline files inside the test's temporary folder."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / ".wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / ".wandb-config"))
