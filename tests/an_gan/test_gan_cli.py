"""CLI tests of ``python -m an_gan``: the paper defaults and the demo file, every config parses and runs (tiny widths),
W&B offline files, checkpoints, validate/test reproduce in-training numbers, predict + evaluate reproduce them too,
model selection never uses the test protocol, resume continues the step count."""

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from an_gan.cli import MODEL_DEFAULTS, cli_main
from common.layers import AttentiveNorm2d
from common.layers.factories import layer_class, layer_factory
from configs import list_configs

CONFIGS = list_configs("an_gan")
WNIDS = ["n01440764", "n01443537", "n01484850"]
RANDOM_FEATURES = {"class_path": "common.metrics.generation.RandomProjectionExtractor", "init_args": {"feature_dim": 8}}


def _print_config(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit):
        cli_main([*args, "--print_config"])
    return yaml.safe_load(capsys.readouterr().out)


def test_paper_defaults_when_a_run_names_its_data(capsys, tmp_path):
    """A run with its own --data starts from the constructors' defaults: the paper's model, recipe and protocol."""
    cfg = _print_config(["fit", "--data", "common.data.imagenet.ImageNetDataModule",
                         "--data.init_args.root", str(tmp_path)], capsys)  # fmt: skip
    g, d = cfg["model"]["generator"]["init_args"], cfg["model"]["discriminator"]["init_args"]
    assert (g["ch"], g["z_dim"], g["long_range_block"], d["ch"]) == (64, 128, 2, 64)
    assert (d["long_range_block"], d["num_blocks"], d["wide"]) == (0, None, True)
    for net in (g, d):  # the layer itself, with every argument written out
        assert layer_class(layer_factory(net["long_range"])) is AttentiveNorm2d
        assert net["long_range"]["init_args"]["num_entities"] == 16
        assert net["long_range"]["init_args"]["implementation"] == "auto"
    for name, lr in (("g_optimizer", 1e-4), ("d_optimizer", 4e-4)):
        opt = cfg["model"][name]
        assert opt["class_path"] == "torch.optim.Adam"
        assert opt["init_args"]["lr"] == lr and opt["init_args"]["betas"] == [0.0, 0.999]
    for stage in ("val_evaluator", "test_evaluator"):
        evaluator = cfg["model"][stage]["init_args"]
        assert evaluator["feature_extractor"] is None  # TF-ported Inception-v3, not a stand-in
        assert evaluator["num_samples"] == 50000
    assert cfg["model"]["eval_generator"] == "raw"
    assert cfg["trainer"]["accelerator"] == "auto"
    assert cfg["trainer"]["devices"] == "auto"
    assert cfg["trainer"]["max_steps"] == -1
    assert cfg["data"]["class_path"].endswith("ImageNetDataModule")


def test_bare_fit_is_the_shipped_demo_from_any_folder(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # outside the repository: the demo file ships with the package
    cfg = _print_config(["fit"], capsys)
    demo = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "an_gan" / "demo.yaml").read_text())
    assert cfg["data"]["class_path"] == "common.data.class_images.DigitsDataModule"
    assert cfg["model"]["generator"]["init_args"]["ch"] == demo["model"]["generator"]["init_args"]["ch"]
    assert cfg["model"]["val_evaluator"]["init_args"]["feature_extractor"]["class_path"].endswith(
        "RandomProjectionExtractor"
    )
    assert cfg["trainer"]["accelerator"] == demo["trainer"]["accelerator"] == "cpu"
    assert cfg["trainer"]["max_steps"] == demo["trainer"]["max_steps"]


@pytest.mark.parametrize("config", [*CONFIGS, None], ids=lambda p: "defaults" if p is None else p.name)
def test_model_selection_never_uses_the_reported_protocol(config):
    """val (best-fid.ckpt) and test (reported) differ in reference split or seed, in every config and the defaults."""
    model = yaml.safe_load(config.read_text()).get("model", {}) if config is not None else {}
    val = {**MODEL_DEFAULTS["model.val_evaluator"]["init_args"], **model.get("val_evaluator", {}).get("init_args", {})}
    test = {
        **MODEL_DEFAULTS["model.test_evaluator"]["init_args"],
        **model.get("test_evaluator", {}).get("init_args", {}),
    }
    assert (val["reference_split"], val["seed"]) != (test["reference_split"], test["seed"])
    assert val["seed"] != test["seed"]


def _imagenet_tree(root: Path, per_class: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("val", 2)):
        for wnid in WNIDS:
            folder = root / split / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                array = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
                Image.fromarray(array).save(folder / f"{wnid}_{i}.JPEG", format="JPEG")
    return root


def _tiny(tmp_path: Path) -> list[str]:
    """Tiny networks, a stand-in feature extractor and tiny evaluations (no Inception download)."""
    args = ["--model.generator.init_args.ch=1", "--model.generator.init_args.z_dim=16",
            "--model.discriminator.init_args.ch=1", "--model.pictures.every_n_steps=1",
            "--model.ema.standing_batch_size=4", "--model.ema.standing_batches=1",
            "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false"]  # fmt: skip
    for stage in ("val_evaluator", "test_evaluator"):
        prefix = f"--model.{stage}.init_args"
        args += [f"{prefix}.num_samples=12", f"{prefix}.batch_size=8", f"{prefix}.is_splits=2",
                 f"{prefix}.intra_fid_num_per_class=2", f"{prefix}.kid_prc_num_samples=6",
                 f"{prefix}.reference_cache_dir={tmp_path / 'refs'}",
                 f"{prefix}.feature_extractor={json.dumps(RANDOM_FEATURES)}"]  # fmt: skip
    return args


def test_an_empty_class_folder_fails_before_training_and_leaves_no_checkpoint(tmp_path):
    root = _imagenet_tree(tmp_path / "imagenet")
    empty = root / "train" / WNIDS[1]
    for image in empty.iterdir():
        image.unlink()
    args = ["fit", "--config", str(Path(__file__).resolve().parents[2] / "configs/an_gan/imagenet128.yaml"),
            *_tiny(tmp_path), f"--data.init_args.root={root}", "--data.init_args.resolution=32",
            "--data.init_args.batch_size=2", "--data.init_args.num_workers=0", "--model.pictures.classes=null",
            "--trainer.logger=false", "--trainer.max_steps=2",
            f"--trainer.default_root_dir={tmp_path / 'run'}"]  # fmt: skip
    with pytest.raises(ValueError, match=rf"class folder {re.escape(str(empty))} holds no images .*put its images in"):
        cli_main(args)
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing that --ckpt_path last could resume


def _config_args(config: Path, tmp_path: Path) -> list[str]:
    if config.name == "demo.yaml":
        return ["--config", str(config), "--data.init_args.batch_size=4", "--trainer.logger=false"]
    args = ["--config", str(config.parent / "imagenet128.yaml")]
    if config.name != "imagenet128.yaml":
        args += ["--config", str(config)]
    root = _imagenet_tree(tmp_path / "imagenet")
    resolution = 64 if config.name == "sagan.yaml" else 32  # SA-GAN's attention on 64x64 maps needs 64 px or more
    args += [f"--data.init_args.root={root}", f"--data.init_args.resolution={resolution}",
             "--data.init_args.batch_size=2", "--data.init_args.num_workers=0", "--model.pictures.classes=null",
             "--trainer.logger=false"]  # fmt: skip
    for stage in ("val_evaluator", "test_evaluator"):
        args += [f"--model.{stage}.init_args.intra_fid_classes=all"]  # Table 2's classes need 1000 classes
    return args


def _merged(config: Path) -> dict:
    """The model section of the config as composed over imagenet128.yaml (what the file promises)."""
    base = yaml.safe_load((config.parent / "imagenet128.yaml").read_text())["model"]
    model = yaml.safe_load(config.read_text()).get("model", {})
    if config.name in ("demo.yaml", "imagenet128.yaml"):
        return model
    for key, value in model.items():
        if isinstance(value, dict) and "init_args" in value:
            base[key]["init_args"].update(value["init_args"])
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    return base


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_config_parses_and_lands_in_the_objects(config, tmp_path):
    cli = cli_main([*_config_args(config, tmp_path), *_tiny(tmp_path)], run=False)
    model, promised = cli.model, _merged(config)
    assert model.generator.num_classes == (10 if config.name == "demo.yaml" else len(WNIDS))
    assert model.generator.resolution == {"demo.yaml": 8, "sagan.yaml": 64}.get(
        config.name, 32
    )  # the digits demo: native 8x8
    for net in ("generator", "discriminator"):
        built = getattr(model, net).config
        for key, value in promised.get(net, {}).get("init_args", {}).items():
            if key == "long_range":  # the layer the file names, with at least the arguments it sets
                assert (built[key] is None) == (value is None), (config.name, net)
                if value is not None:
                    assert layer_class(layer_factory(built[key])) is layer_class(layer_factory(value))
                    assert value.get("init_args", {}).items() <= built[key]["init_args"].items(), (config.name, net)
            elif key not in ("ch", "z_dim"):  # shrunk by _tiny
                assert built[key] == value, (config.name, net, key)
    for key in ("n_dis", "fake_labels", "g_batch_size", "orthogonal_weight", "eval_generator"):
        if key in promised:
            assert getattr(model, key) == promised[key], (config.name, key)
    if "lr_decay" in promised:
        expected = promised["lr_decay"]
        assert (model.lr_decay is None) if expected is None else (model.lr_decay.start, model.lr_decay.end) == (
            expected["start"], expected["end"])  # fmt: skip
    optimizers = model.configure_optimizers()
    optimizers = optimizers[0] if isinstance(optimizers, tuple) else optimizers
    for opt, name in zip(optimizers, ("g_optimizer", "d_optimizer"), strict=True):
        expected = promised.get(name, {}).get("init_args", {})
        assert opt.param_groups[0]["lr"] == pytest.approx(expected.get("lr", opt.param_groups[0]["lr"]))
        assert list(opt.param_groups[0]["betas"]) == expected.get("betas", list(opt.param_groups[0]["betas"]))


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_fast_dev_run(config, tmp_path):
    # one iteration (n_dis D steps + 1 G step) and one validation, also with SN-GAN's n_dis = 5
    n_dis = _merged(config).get("n_dis", 1)
    args = ["fit", *_config_args(config, tmp_path), *_tiny(tmp_path), f"--trainer.max_steps={n_dis + 1}",
            f"--trainer.val_check_interval={n_dis}", "--trainer.limit_val_batches=1"]  # fmt: skip
    args += [f"--trainer.default_root_dir={tmp_path / 'runs'}", "--trainer.logger=false"]
    cli = cli_main(args)
    assert cli.model.num_g_steps >= 1
    assert "val/fid" in cli.trainer.callback_metrics
    assert list((tmp_path / "runs" / "images").glob("samples_grid_step*.png"))


#: A value for every argument of AttentiveNorm2d but the channel count, none of them its default.
# numerics "authors" cannot combine with stats "batch" (tests/an_inpaint/test_inpaint_cli.py sets it)
AN_SETTINGS = {"num_entities": 4, "temperature": 0.5, "self_sampling": False, "affine": False, "stats": "batch",
               "eps": 1e-3, "value_projection": True, "implementation": "reference", "numerics": "paper"}  # fmt: skip


def test_every_an_argument_is_reachable_from_the_config(capsys, tmp_path):
    """Every AttentiveNorm2d argument, implementation included, set from the command line (as a config would) lands in
    the layers of G and D, and --print_config shows them all."""
    assert AN_SETTINGS.keys() == set(inspect.signature(AttentiveNorm2d).parameters) - {"num_features"}
    flags = [f"--model.{net}.init_args.long_range.init_args.{key}={str(value).lower()}"
             for net in ("generator", "discriminator") for key, value in AN_SETTINGS.items()]  # fmt: skip
    demo = str(Path(__file__).resolve().parents[2] / "configs" / "an_gan" / "demo.yaml")
    printed = _print_config(["fit", "--config", demo, *flags], capsys)["model"]
    cli = cli_main(["--config", demo, *flags, *_tiny(tmp_path)], run=False)
    for net in ("generator", "discriminator"):
        assert printed[net]["init_args"]["long_range"]["init_args"] == AN_SETTINGS
        layer = getattr(cli.model, net).long_range_layer
        assert isinstance(layer, AttentiveNorm2d)
        assert {key: getattr(layer, key) for key in AN_SETTINGS} == AN_SETTINGS, net
        assert getattr(cli.model, net).config["long_range"]["init_args"] == AN_SETTINGS


def _demo_fit(tmp_path: Path, max_steps: int, extra: list[str] = ()):
    demo = str(Path(__file__).resolve().parents[2] / "configs" / "an_gan" / "demo.yaml")
    args = ["fit", "--config", demo, "--data.init_args.batch_size=8", "--model.n_dis=1", *_tiny(tmp_path),
            f"--trainer.max_steps={max_steps}", "--trainer.val_check_interval=2", "--trainer.limit_train_batches=4",
            f"--trainer.logger.init_args.save_dir={tmp_path / 'runs'}",
            f"--trainer.default_root_dir={tmp_path / 'runs'}", *extra]  # fmt: skip
    return cli_main(args)


@pytest.mark.slow
def test_wandb_checkpoints_validate_test_predict_evaluate_resume(tmp_path, capsys):
    cli = _demo_fit(tmp_path, max_steps=8)
    trainer, model = cli.trainer, cli.model
    assert trainer.global_step == 8 and model.num_g_steps == 4
    assert "test/fid" not in trainer.callback_metrics  # fit never runs the reported protocol
    runs = list((tmp_path / "runs").glob("wandb/offline-run-*"))  # conftest: WANDB_MODE=offline
    assert runs and any(p.suffix == ".wandb" for p in runs[0].iterdir())
    run_dir = Path(trainer.logger.save_dir) / "attentive-norm" / str(trainer.logger.version)
    ckpt_dir = Path(trainer.checkpoint_callback.dirpath)
    last = ckpt_dir / "last.ckpt"
    assert last.is_file() and (ckpt_dir / "best-fid.ckpt").is_file()
    assert list(run_dir.glob("images/samples_grid_step*.png"))
    quality = json.loads((run_dir / "demo_quality.json").read_text())  # the demo's judge ran at the end
    assert {"class_consistency", "cas", "real_accuracy"} <= quality.keys()

    in_training = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
    common = ["--config", str(run_dir / "config.yaml"), "--trainer.logger=false", f"--ckpt_path={last}"]
    validated = cli_main(["validate", *common]).trainer.callback_metrics
    for key in ("val/fid", "val/is_mean", "val/kid_mean", "val/intra_fid"):
        assert float(validated[key]) == pytest.approx(in_training[key], rel=1e-5), key
    tested = cli_main(["test", *common]).trainer.callback_metrics
    assert float(tested["test/fid"]) != pytest.approx(in_training["val/fid"])  # other split and seed

    # predict writes the validation set (seed 0, 2 images per class = 12 // 10 rounded up and intra-FID's 2) ...
    out = tmp_path / "samples"
    cli_main(["predict", *common, "--predict_writer.num_per_class=2", "--predict_writer.seed=0",
              f"--predict_writer.output_dir={out}"])  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == [f"{c:04d}" for c in range(10)]
    # ... and evaluate on that folder gives the numbers of validation
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    evaluator = config["model"]["val_evaluator"]
    scores_file = tmp_path / "scores.json"
    result = cli_main(["evaluate", "--samples", str(out), "--data", json.dumps(config["data"]),
                       "--evaluator", json.dumps(evaluator), "--output", str(scores_file)])  # fmt: skip
    for key in ("fid", "is_mean", "is_std", "kid_mean", "precision", "recall", "intra_fid"):
        assert result["scores"][key] == pytest.approx(float(validated[f"val/{key}"]), rel=1e-5, abs=1e-6), key
    assert json.loads(scores_file.read_text())["scores"]["fid"] == pytest.approx(result["scores"]["fid"])
    assert "fid" in capsys.readouterr().out

    resumed = _demo_fit(tmp_path, max_steps=12, extra=[f"--ckpt_path={last}"])
    assert resumed.trainer.global_step == 12 and resumed.model.num_g_steps == 6


def test_evaluate_needs_exactly_one_reference(tmp_path):
    (tmp_path / "s" / "0000").mkdir(parents=True)
    with pytest.raises(SystemExit):
        cli_main(["evaluate", "--samples", str(tmp_path / "s")])


def test_fit_without_validation(tmp_path):
    """val_evaluator null switches validation off (no best-by-FID checkpoint to fail)."""
    cli = _demo_fit(tmp_path, max_steps=4, extra=["--model.val_evaluator=null", "--trainer.logger=false"])
    assert cli.trainer.global_step == 4
    assert "val/fid" not in cli.trainer.callback_metrics
    assert (tmp_path / "runs" / "checkpoints" / "last.ckpt").is_file()


def test_16bit_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="bf16-mixed"):
        _demo_fit(tmp_path, max_steps=2, extra=["--trainer.precision=bf16-true", "--trainer.logger=false"])
