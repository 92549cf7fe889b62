"""A checkpoint of the other task or of another architecture is a clear error naming both, for fit (resume),
validate, test and predict, and for checkpoints without the package's stamp."""

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from an_gan.cli import cli_main as gan_cli
from an_inpaint.cli import cli_main as inpaint_cli
from common.training.checkpoints import (
    STAMP_KEY,
    CheckpointMismatchError,
    CheckpointVersionError,
    check_checkpoint,
    describe_networks,
    package_version,
)

ROOT = Path(__file__).resolve().parents[2]
FEATURES = {"class_path": "common.metrics.generation.RandomProjectionExtractor", "init_args": {"feature_dim": 8}}


def _gan_args(root: Path, long_range: str | None = None) -> list[str]:
    """The tiny demo with AN (n = 4) or with G's long-range layer replaced by the class ``long_range``."""
    layer = [f"--model.generator.init_args.long_range={long_range}"] if long_range else []
    return ["--config", str(ROOT / "configs/an_gan/demo.yaml"), "--data.init_args.batch_size=8",
            "--model.generator.init_args.ch=1", "--model.generator.init_args.z_dim=16",
            "--model.generator.init_args.long_range.init_args.num_entities=4", *layer,
            "--model.discriminator.init_args.ch=1",
            "--model.discriminator.init_args.long_range.init_args.num_entities=4",
            "--model.ema.standing_batch_size=4", "--model.ema.standing_batches=1", "--model.val_evaluator=null",
            "--model.pictures.every_n_steps=0", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}", "--trainer.max_steps=2"]  # fmt: skip


def _inpaint_args(root: Path) -> list[str]:
    return ["--config", str(ROOT / "configs/an_inpaint/demo.yaml"), "--data.init_args.resolution=32",
            "--data.init_args.batch_size=2", "--data.init_args.num_val=1", "--data.init_args.num_test=1",
            "--model.generator.init_args.cnum=4", "--model.generator.init_args.long_range.init_args.num_entities=4",
            "--model.global_critic.init_args.input_size=32", "--model.val_evaluator.baselines=[]",
            "--model.schedule.lr_decay=constant",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false", "--trainer.limit_val_batches=0",
            f"--trainer.default_root_dir={root}", "--trainer.max_steps=1"]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    gan_cli(["fit", *_gan_args(root / "gan")])
    inpaint_cli(["fit", *_inpaint_args(root / "inpaint")])
    return {
        "gan": root / "gan" / "checkpoints" / "last.ckpt",
        "inpaint": root / "inpaint" / "checkpoints" / "last.ckpt",
    }


@pytest.mark.timeout(600)
def test_checkpoints_carry_the_stamp(checkpoints):
    stamp = torch.load(checkpoints["gan"], weights_only=True)[STAMP_KEY]
    assert stamp["module"] == "an_gan.module.ANGAN"
    assert "AttentiveNorm2d" in stamp["networks"]["generator"] and "'num_entities': 4" in stamp["networks"]["generator"]


@pytest.mark.timeout(600)
def test_checkpoints_record_the_package_version(checkpoints):
    stamp = torch.load(checkpoints["gan"], weights_only=True)[STAMP_KEY]
    assert stamp["package_version"] == package_version()


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"norm_type": "an"}, "arguments this version does not know: norm_type"),  # an argument since removed
        ({"n_dis": "two"}, "model.n_dis"),  # a value of a type this version does not accept
    ],
)
def test_an_older_versions_checkpoint_says_so(checkpoints, tmp_path, change, named):
    # What an older version's checkpoint looks like to this one: hyperparameters this version's parser refuses.
    old = torch.load(checkpoints["gan"], weights_only=True)
    old["hyper_parameters"].update(change)
    old[STAMP_KEY]["package_version"] = "0.0.9"
    path = tmp_path / "old.ckpt"
    torch.save(old, path)
    for command in ("fit", "validate"):
        with pytest.raises(CheckpointVersionError) as info:
            gan_cli([command, *_gan_args(tmp_path / command), f"--ckpt_path={path}"])
        message = str(info.value)
        assert f"checkpoint {path}: its stored model arguments do not match this version" in message
        assert "written by attentive-norm 0.0.9, probably an older one" in message
        assert named in message
        assert f"(pip install attentive-norm==0.0.9), with that run's config: python -m an_gan {command} " in message
        assert "--config <run>/config.yaml" in message
    if package_version() is not None:  # the same number: a checkout with other arguments
        old[STAMP_KEY]["package_version"] = package_version()
        torch.save(old, path)
        with pytest.raises(CheckpointVersionError, match="too, from a checkout with other arguments"):
            gan_cli(["validate", *_gan_args(tmp_path / "same"), f"--ckpt_path={path}"])


@pytest.mark.timeout(600)
def test_other_task_on_resume_and_on_validate(checkpoints, tmp_path):
    with pytest.raises(CheckpointMismatchError, match=r"an_gan\.module\.ANGAN.*an_inpaint\.module\.ANInpaint"):
        inpaint_cli(["fit", *_inpaint_args(tmp_path / "a"), f"--ckpt_path={checkpoints['gan']}"])
    with pytest.raises(CheckpointMismatchError, match=r"an_inpaint\.module\.ANInpaint.*task an_inpaint.*an_gan"):
        gan_cli(["validate", *_gan_args(tmp_path / "b"), f"--ckpt_path={checkpoints['inpaint']}"])


@pytest.mark.timeout(600)
def test_other_architecture_names_both(checkpoints, tmp_path):
    sa = _gan_args(tmp_path / "c", "common.layers.SelfAttention2d")
    with pytest.raises(CheckpointMismatchError) as info:
        gan_cli(["fit", *sa, f"--ckpt_path={checkpoints['gan']}"])
    message = str(info.value)
    assert "another architecture" in message and str(checkpoints["gan"]) in message
    assert "AttentiveNorm2d" in message and "SelfAttention2d" in message  # both sides named
    assert "not in the checkpoint" in message  # the SA weights


@pytest.mark.timeout(600)
def test_matching_checkpoint_passes(checkpoints, tmp_path):
    cli = gan_cli(_gan_args(tmp_path / "d"), run=False)
    check_checkpoint(cli.model, checkpoints["gan"])  # no error


class Net(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Linear(2, width)


def test_unstamped_checkpoints_are_checked_by_their_weights():
    with pytest.raises(CheckpointMismatchError, match="differ in shape"):
        check_checkpoint(Net(3), {"state_dict": Net(4).state_dict()})
    with pytest.raises(CheckpointMismatchError, match="none of the weights"):
        check_checkpoint(Net(3), {"state_dict": {"other.weight": torch.zeros(1)}})
    with pytest.raises(CheckpointMismatchError, match="no state_dict"):
        check_checkpoint(Net(3), {"epoch": 1})
    with pytest.raises(FileNotFoundError, match="nowhere.ckpt"):
        check_checkpoint(Net(3), "nowhere.ckpt")
    check_checkpoint(Net(3), {"state_dict": Net(3).state_dict()})
    assert describe_networks(Net(3)) == {"body": "torch.nn.modules.linear.Linear (9 parameters)"}
    assert json.dumps(describe_networks(Net(3)))


@pytest.mark.timeout(600)
def test_one_reload_path_for_both_tasks(checkpoints, tmp_path):
    import shutil

    from an_gan.module import ANGAN, load_generator
    from an_inpaint.module import ANInpaint
    from an_inpaint.predict import load_inpainter
    from common.training.runs import RunFolder, load_run

    for task, cls in (("gan", ANGAN), ("inpaint", ANInpaint)):
        alone = tmp_path / f"{task}.ckpt"  # the checkpoint file alone, no config.yaml next to it
        shutil.copy(checkpoints[task], alone)
        module = load_run(alone)
        assert type(module) is cls and not module.training
        state = torch.load(alone, weights_only=True)["state_dict"]
        for key, value in module.state_dict().items():
            torch.testing.assert_close(value, state[key])
        assert RunFolder.of_checkpoint(checkpoints[task]).config.is_file()  # the run folder layout
    generator = load_generator(checkpoints["gan"], ema=False)
    assert generator.config["long_range"]["class_path"].endswith("AttentiveNorm2d")
    assert generator.num_classes == 10  # linked from the data
    assert isinstance(load_inpainter(checkpoints["inpaint"]), ANInpaint)
    with pytest.raises(CheckpointMismatchError, match="an_inpaint.*an_gan"):
        load_generator(checkpoints["inpaint"])
