"""Checkpoints and weight files are data: loading one never runs code the file chooses.

Two attacks, each planted for real: a pickle payload (an object whose unpickling runs a command; here it writes a
marker file) and a configuration naming a foreign ``class_path`` (``subprocess.Popen`` with the command as its
arguments). Every loader refuses both with a clear error, and the marker file is never written.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from an_gan.cli import cli_main as gan_cli
from an_gan.module import load_generator
from common.metrics.generation.features import InceptionFeatureExtractor
from common.training.callbacks import stored_wandb_run_id
from common.training.checkpoints import STAMP_KEY, ForeignClassError, check_class_paths
from common.training.runs import load_run

DEMO = str(Path(__file__).resolve().parents[2] / "configs" / "an_gan" / "demo.yaml")


class Payload:
    """Unpickling this runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


def _payload_file(tmp_path: Path, name: str) -> tuple[Path, Path]:
    marker = tmp_path / f"{name}.ran"
    path = tmp_path / name
    torch.save({"state_dict": {}, "wandb_run_id": Payload(marker), STAMP_KEY: {"module": "an_gan.module.ANGAN"}}, path)
    return path, marker


def _foreign_file(tmp_path: Path, where: str) -> tuple[Path, Path]:
    marker = tmp_path / f"foreign-{where}.ran"
    popen = {"class_path": "subprocess.Popen", "init_args": {"args": ["touch", str(marker)]}}
    checkpoint = {"state_dict": {}, "hyper_parameters": {}, STAMP_KEY: {"module": "an_gan.module.ANGAN"}}
    if where == "module":
        checkpoint[STAMP_KEY]["module"] = "subprocess.Popen"
    elif where == "stamp":
        checkpoint[STAMP_KEY]["model_config"] = {"generator": popen}
    else:  # the hyperparameters Lightning's CLI copies into the model config
        checkpoint["hyper_parameters"] = {"generator": popen}
    path = tmp_path / f"foreign-{where}.ckpt"
    torch.save(checkpoint, path)
    return path, marker


def test_the_payload_is_real(tmp_path):
    # the planted payload does run when a loader unpickles (what every test below must prevent)
    path, marker = _payload_file(tmp_path, "check.ckpt")
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "load",
    [
        lambda p: load_run(p),
        lambda p: load_generator(p),
        lambda p: stored_wandb_run_id(p),
        lambda p: gan_cli(["validate", "--config", DEMO, f"--ckpt_path={p}", "--trainer.logger=false"]),
    ],
    ids=["load_run", "load_generator", "wandb_run_id", "cli_validate"],
)
def test_a_pickle_payload_is_refused(tmp_path, load):
    path, marker = _payload_file(tmp_path, "payload.ckpt")
    with pytest.raises(Exception, match="(?i)weights_only|unpickl|unsupported global"):
        load(path)
    assert not marker.exists()


def test_weights_files_are_loaded_as_data(tmp_path):
    path, marker = _payload_file(tmp_path, "inception.pth")
    with pytest.raises(RuntimeError, match="not a plain weights file"):
        InceptionFeatureExtractor(weights_path=str(path))
    assert not marker.exists()


@pytest.mark.parametrize("where", ["module", "stamp", "hparams"])
def test_a_foreign_class_path_is_refused(tmp_path, where):
    path, marker = _foreign_file(tmp_path, where)
    # load_run builds from the stamp (module class, model config); Lightning's CLI from the hyperparameters and stamp
    loaders = [lambda: load_run(path)] if where != "hparams" else []
    if where != "module":
        loaders.append(lambda: gan_cli(["validate", "--config", DEMO, f"--ckpt_path={path}", "--trainer.logger=false"]))
    for load in loaders:
        with pytest.raises(ForeignClassError, match="subprocess.Popen.*not one of this package's classes"):
            load()
    assert not marker.exists()


def test_check_class_paths():
    check_class_paths(
        {"a": [{"class_path": "common.layers.AttentiveNorm2d"}], "b": {"class_path": "torch.optim.Adam"}}, "x"
    )
    with pytest.raises(ForeignClassError, match=r"at a\[1\]\.init_args\.f"):
        check_class_paths({"a": [{}, {"init_args": {"f": {"class_path": "os.system"}}}]}, "x")
    with pytest.raises(ForeignClassError):
        check_class_paths({"_class_path": "builtins.eval"}, "x")
