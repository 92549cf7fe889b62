"""A bare ``fit`` loads the task's demo file; a command with its own config or data does not."""

from pathlib import Path

import pytest

from common.training.cli import with_demo_config
from configs import CONFIG_ROOT, config_path, list_configs

DEMO = Path("/pkg/configs/task/demo.yaml")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fit"], ["fit", "--config", str(DEMO)]),
        (["fit", "--trainer.max_steps=3"], ["fit", "--config", str(DEMO), "--trainer.max_steps=3"]),
        (["fit", "--model.n_critic", "3"], ["fit", "--config", str(DEMO), "--model.n_critic", "3"]),
        (["fit", "--print_config"], ["fit", "--config", str(DEMO), "--print_config"]),
    ],
)
def test_bare_fit_gets_the_demo(args, expected):
    assert with_demo_config(args, DEMO) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--config", "mine.yaml"],
        ["fit", "--config=mine.yaml"],
        ["fit", "-c", "mine.yaml"],
        ["fit", "--data", "common.data.imagenet.ImageNetDataModule"],
        ["fit", "--data.init_args.root", "/data"],
        ["fit", "--data.root=/data"],
        ["validate"],
        ["test", "--ckpt_path", "x.ckpt"],
        [],
    ],
)
def test_own_config_or_data_or_other_subcommand_left_alone(args):
    assert with_demo_config(args, DEMO) == args


def test_no_demo_or_dict_args_left_alone():
    assert with_demo_config(["fit"], None) == ["fit"]
    assert with_demo_config({"fit": {}}, DEMO) == {"fit": {}}


def test_none_reads_sys_argv(monkeypatch):
    monkeypatch.setattr("sys.argv", ["prog", "fit"])
    assert with_demo_config(None, DEMO) == ["fit", "--config", str(DEMO)]
    monkeypatch.setattr("sys.argv", ["prog", "fit", "--config", "x.yaml"])
    assert with_demo_config(None, DEMO) is None


def test_config_path_finds_shipped_files_and_names_missing_ones():
    assert config_path("an_gan", "demo") == CONFIG_ROOT / "an_gan" / "demo.yaml"
    assert config_path("an_inpaint", "demo.yaml").is_file()
    assert {p.name for p in list_configs("an_gan")} >= {"demo.yaml", "imagenet128.yaml"}
    with pytest.raises(FileNotFoundError, match=r"no config 'nope.yaml' for task 'an_gan'.*demo.yaml"):
        config_path("an_gan", "nope")
