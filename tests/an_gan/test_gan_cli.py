"""CLI tests of ``python -m an_gan``: every config parses and runs (tiny widths), W&B offline files, checkpoints,
validate/test reproduce the in-training numbers, predict writes class folders, resume continues the step count."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from an_gan.cli import DEMO_MODEL_DEFAULTS, cli_main
from an_gan.module import RUNTIME_OPTIONS
from an_gan.sampling import load_generator

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "an_gan").glob("*.yaml"))
IMAGENET_LAYOUT = [p for p in CONFIGS if p.name != "demo.yaml"]
WNIDS = ["n01440764", "n01443537", "n01484850"]

# Tiny networks and evaluation for smoke runs (stand-in feature extractor, no Inception download).
TINY = [
    "--model.z_dim=8",
    "--model.g_ch=1",
    "--model.d_ch=1",
    "--model.num_entities=4",
    "--model.eval_num_samples=8",
    "--model.eval_batch_size=8",
    "--model.is_splits=2",
    "--model.feature_extractor=common.metrics.generation.RandomProjectionExtractor",
    "--model.feature_extractor.init_args.feature_dim=8",
    "--trainer.accelerator=cpu",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def _imagenet_tree(root: Path, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for wnid in WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                array = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
                Image.fromarray(array).save(folder / f"{wnid}_{i}.JPEG", format="JPEG")
    return root


def _config_args(config: Path, tmp_path: Path) -> list[str]:
    args = ["--config", str(config)] if config.name == "demo.yaml" else []
    if config.name != "demo.yaml":
        args = ["--config", str(config.parent / "imagenet128.yaml")]
        if config.name != "imagenet128.yaml":
            args += ["--config", str(config)]
        root = _imagenet_tree(tmp_path / "imagenet")
        args += [
            f"--data.init_args.root={root}",
            "--data.init_args.resolution=32",
            "--data.init_args.batch_size=2",
            "--data.init_args.num_workers=0",
            "--model.intra_fid_classes=null",
            "--model.grid_classes=null",
        ]
    else:
        args += ["--data.init_args.batch_size=4"]
    return args + [f"--model.reference_cache_dir={tmp_path / 'refs'}", "--trainer.logger=false"]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses(config, tmp_path):
    cli = cli_main(_config_args(config, tmp_path), run=False)
    model = cli.model
    assert model.hparams.num_classes == (10 if config.name == "demo.yaml" else len(WNIDS))
    raw = yaml.safe_load(config.read_text())
    for key, value in raw.get("model", {}).items():
        if key in ("intra_fid_classes", "grid_classes", "feature_extractor", "reference_cache_dir"):
            continue
        expected = tuple(value) if isinstance(value, list) else value
        got = getattr(model, key) if key in RUNTIME_OPTIONS else model.hparams[key]
        assert (tuple(got) if isinstance(got, list | tuple) else got) == expected, key


def test_demo_yaml_equals_defaults(tmp_path):
    demo = CONFIGS[[p.name for p in CONFIGS].index("demo.yaml")]
    with_file = cli_main(["--config", str(demo), "--trainer.logger=false"], run=False)
    without = cli_main(["--trainer.logger=false"], run=False)
    assert dict(with_file.model.hparams) == dict(without.model.hparams)
    assert with_file.config.trainer == without.config.trainer
    assert type(with_file.datamodule) is type(without.datamodule)
    assert with_file.config.data.init_args == without.config.data.init_args
    for key, value in DEMO_MODEL_DEFAULTS.items():
        if key in RUNTIME_OPTIONS:
            assert getattr(without.model, key) == getattr(with_file.model, key) == value
        elif key != "feature_extractor":
            got = without.model.hparams[key]
            assert (tuple(got) if isinstance(got, list) else got) == value, key


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_fast_dev_run(config, tmp_path):
    args = ["fit", *_config_args(config, tmp_path), *TINY, "--trainer.fast_dev_run=1", "--trainer.logger=false"]
    args += [f"--trainer.default_root_dir={tmp_path / 'runs'}", "--model.sample_every_n_steps=1"]
    cli = cli_main(args)
    assert cli.trainer.global_step == 2
    assert "val/fid" in cli.trainer.callback_metrics
    assert list((tmp_path / "runs" / "images").glob("samples_grid_step*.png"))


def _demo_fit(tmp_path: Path, max_steps: int, extra: list[str] = ()) -> object:
    args = [
        "fit",
        "--data.init_args.batch_size=8",
        "--data.init_args.val_fraction=0.05",
        *TINY,
        f"--trainer.max_steps={max_steps}",
        "--trainer.val_check_interval=2",
        "--trainer.limit_train_batches=4",
        f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
        f"--trainer.default_root_dir={tmp_path / 'runs'}",
        f"--model.reference_cache_dir={tmp_path / 'refs'}",
        "--model.sample_every_n_steps=2",
        "--model.eval_num_samples=40",
        "--model.eval_batch_size=20",
        *extra,
    ]
    return cli_main(args)


@pytest.mark.slow
def test_wandb_offline_checkpoints_validate_predict_resume(tmp_path):
    cli = _demo_fit(tmp_path, max_steps=8)
    trainer, model = cli.trainer, cli.model
    assert trainer.global_step == 8 and int(model.num_g_steps) == 4

    # W&B ran offline (conftest: WANDB_MODE=offline) and wrote a real run under the logger's save_dir
    runs = list((tmp_path / "runs").glob("wandb/offline-run-*"))
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
    # checkpoints: last and best-by-FID; pictures
    ckpt_dir = Path(trainer.checkpoint_callback.dirpath)
    last = ckpt_dir / "last.ckpt"
    assert last.is_file() and (ckpt_dir / "best-fid.ckpt").is_file()
    images = list((Path(trainer.logger.save_dir) / "attentive-norm").glob("*/images/samples_grid_step*.png"))
    assert images

    # load_generator gives the EMA generator of the checkpoint
    generator = load_generator(last)
    z, y = torch.randn(3, 8), torch.tensor([0, 5, 9])
    torch.testing.assert_close(generator(z, y), model.generate(z, y))

    # validate and test on the checkpoint reproduce the last in-training validation
    in_training = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    config = Path(trainer.logger.save_dir) / "attentive-norm" / str(trainer.logger.version) / "config.yaml"
    assert config.is_file()
    common = ["--config", str(config), "--trainer.logger=false", f"--ckpt_path={last}"]
    validated = cli_main(["validate", *common]).trainer.callback_metrics
    for key in ("val/fid", "val/is_mean", "val/intra_fid"):
        assert float(validated[key]) == pytest.approx(in_training[key], rel=1e-5), key
    tested = cli_main(["test", *common]).trainer.callback_metrics
    assert float(tested["test/fid"]) == pytest.approx(in_training["val/fid"], rel=1e-5)

    # predict writes one folder per class
    out = tmp_path / "samples"
    cli_main(
        [
            "predict",
            *common,
            "--model.predict_num_per_class=2",
            "--model.predict_classes=[1, 7]",
            f"--model.predict_output_dir={out}",
        ]
    )
    assert sorted(p.name for p in out.iterdir()) == ["0001", "0007"]
    assert len(list((out / "0007").glob("*.png"))) == 2

    # resume continues the step count
    resumed = _demo_fit(tmp_path, max_steps=12, extra=[f"--ckpt_path={last}"])
    assert resumed.trainer.global_step == 12 and int(resumed.model.num_g_steps) == 6


def test_fit_without_metrics(tmp_path):
    """eval_num_samples=0 switches evaluation off: no validation loop, so no best-by-FID checkpoint to fail."""
    cli = _demo_fit(tmp_path, max_steps=4, extra=["--model.eval_num_samples=0", "--trainer.logger=false"])
    assert cli.trainer.global_step == 4
    assert "val/fid" not in cli.trainer.callback_metrics
    assert (tmp_path / "runs" / "checkpoints" / "last.ckpt").is_file()


def test_16bit_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="bf16-mixed"):
        _demo_fit(tmp_path, max_steps=2, extra=["--trainer.precision=bf16-true", "--trainer.logger=false"])
