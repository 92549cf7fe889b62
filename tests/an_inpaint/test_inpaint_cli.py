"""CLI of an_inpaint: paper defaults vs the demo file, every config runs, the protocol pipeline predict -> baseline ->
evaluate on the test split, evaluate's composited check."""

import importlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from inpaint_helpers import write_image_mask_folders, write_paris_tree
from PIL import Image

from an_inpaint.cli import cli_main
from an_inpaint.evaluation import KnownRegionError
from an_inpaint.generator import InpaintGenerator
from an_inpaint.predict import load_inpainter
from common.data.facades import FacadeInpaintingDataModule
from common.data.inpainting import ParisStreetViewDataModule
from common.data.inpainting_demo import DemoInpaintingDataModule
from common.layers import AttentiveNorm2d
from common.training.callbacks.checkpointing import checkpoint_dir

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "an_inpaint"
PARIS = str(CONFIGS / "paris256.yaml")

TINY_MODEL = [
    "--model.generator.init_args.cnum=4",
    "--model.generator.init_args.long_range.init_args.num_entities=4",
    "--model.global_critic.init_args.cnum=4",
    "--model.local_critic.init_args.cnum=4",
    "--model.local_critic.init_args.input_size=16",
]


def _tiny_paris(root, tmp_path, size=32):
    return [
        f"--data.root={root}",
        f"--data.resolution={size}",
        "--data.batch_size=2",
        "--data.num_workers=0",
        "--data.val_images=1",
        f"--model.global_critic.init_args.input_size={size}",
        *TINY_MODEL,
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
        "--trainer.accelerator=cpu",
    ]


def _canonical(value):
    """Config values with every class_path resolved to the class it names (``pkg.Cls`` == ``pkg.mod.Cls``)."""
    if isinstance(value, dict):
        out = {k: _canonical(v) for k, v in value.items()}
        if isinstance(out.get("class_path"), str):
            module, _, name = out["class_path"].rpartition(".")
            out["class_path"] = getattr(importlib.import_module(module), name)
        return out
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


class TestDefaults:
    def test_constructor_defaults_are_the_papers_paris_settings(self, paris_root):
        """A run with its own data and no config gets the paper's model, never the demo's toy settings."""
        args = ["--data", "common.data.inpainting.ParisStreetViewDataModule", f"--data.init_args.root={paris_root}"]
        cli = cli_main(args, run=False)
        model, gen = cli.model, cli.model.generator
        assert isinstance(gen, InpaintGenerator)
        assert (gen.cnum, gen.contextual, gen.branch_widths, gen.normalize_known) == (32, None, "deepfill", False)
        an = next(m for m in gen.modules() if isinstance(m, AttentiveNorm2d))
        assert an.affine and an.value is None and an.num_entities == 16
        assert model.global_critic.input_size == 256
        assert (model.local_critic.input_size, model.local_critic.crop_mode) == (128, "box")
        assert model.reconstruction.discount == "deepfill" and model.reconstruction.gamma == 0.9
        assert (model.adversarial.lambda_adv, model.adversarial.lambda_gp) == (1e-3, 10.0)
        weights = [torch.nn.Parameter(torch.zeros(1))]
        for optimizer in (model.g_optimizer(weights), model.d_optimizer(weights)):
            assert isinstance(optimizer, torch.optim.Adam)
            assert (optimizer.defaults["lr"], optimizer.defaults["betas"]) == (1e-4, (0.5, 0.9))
        schedule = model.schedule
        assert (model.n_critic, schedule.adversarial_start_step, schedule.lr_decay) == (5, 100_000, "constant")
        assert model.val_evaluator.methods == ["model"] and model.pictures.num_images == 8
        assert cli.datamodule.resolution == 256 and cli.datamodule.batch_size == 16
        trainer = cli.config["trainer"]
        assert trainer["accelerator"] == "auto" and trainer["devices"] == "auto"
        assert trainer["max_epochs"] is None and trainer["max_steps"] == -1

    def test_paris_config_writes_out_the_defaults(self, paris_root):
        default = cli_main(["--data", "common.data.inpainting.ParisStreetViewDataModule",
                            f"--data.init_args.root={paris_root}"], run=False)  # fmt: skip
        paris = cli_main(["--config", PARIS, f"--data.root={paris_root}"], run=False)
        for name in ("generator", "global_critic", "local_critic"):
            assert str(getattr(paris.model, name)) == str(getattr(default.model, name)), name
        for name in ("reconstruction", "adversarial"):
            assert vars(getattr(paris.model, name)) == vars(getattr(default.model, name)), name
        assert dict(paris.model.hparams) == dict(default.model.hparams)
        for name in ("schedule", "pictures"):
            assert getattr(paris.model, name) == getattr(default.model, name), name
        for name in ("val_evaluator", "test_evaluator"):
            assert repr(getattr(paris.model, name)) == repr(getattr(default.model, name)), name
        weights = [torch.nn.Parameter(torch.zeros(1))]
        for name in ("g_optimizer", "d_optimizer"):
            ours, theirs = getattr(paris.model, name)(weights), getattr(default.model, name)(weights)
            assert type(ours) is type(theirs) and ours.defaults == theirs.defaults, name
        skip = {"_log_hyperparams", "prepare_data_per_node", "allow_zero_length_dataloader_with_multiple_devices"}
        data = {k: repr(v) for k, v in vars(paris.datamodule).items() if k not in skip and not k.startswith("trainer")}
        assert data == {k: repr(v) for k, v in vars(default.datamodule).items() if k in data}

    def test_bare_fit_loads_the_demo_file_from_any_folder(self, tmp_path, monkeypatch, capsys):
        monkeypatch.chdir(tmp_path)  # outside the repository: the demo file ships with the package
        with pytest.raises(SystemExit):
            cli_main(["fit", "--print_config"])
        bare = yaml.safe_load(capsys.readouterr().out)
        assert _canonical(bare["data"])["class_path"] is FacadeInpaintingDataModule
        assert bare["model"]["generator"]["init_args"]["cnum"] == 8  # not the paper's default
        assert bare["model"]["generator"]["init_args"]["hole_fill"] == "blank"  # the paper's
        assert bare["test_after_fit"] is True
        with pytest.raises(SystemExit):
            cli_main(["fit", "--config", str(CONFIGS / "demo.yaml"), "--print_config"])
        demo = yaml.safe_load(capsys.readouterr().out)
        for key in ("model", "data", "trainer", "validate_before_fit", "test_after_fit"):
            assert _canonical(bare[key]) == _canonical(demo[key]), key

    def test_photo_demo_config(self, capsys):
        """photos.yaml (the bundled photographs) parses, with the in-graph harmonic start and known-pixel units."""
        with pytest.raises(SystemExit):
            cli_main(["fit", "--config", str(CONFIGS / "photos.yaml"), "--print_config"])
        printed = yaml.safe_load(capsys.readouterr().out)
        assert _canonical(printed["data"])["class_path"] is DemoInpaintingDataModule
        generator = printed["model"]["generator"]["init_args"]
        assert generator["hole_fill"] == "harmonic" and generator["normalize_known"] is True

    def test_unknown_key(self, capsys):
        with pytest.raises(SystemExit):
            cli_main(["fit", "--model.not_a_key=1"])
        assert "not_a_key" in capsys.readouterr().err


EXTRAS = [[], ["paris256_ca.yaml"], ["paris256_ca_an.yaml"], ["paris256_authors.yaml"]]


#: A value for every argument of AttentiveNorm2d but the channel count, none of them its default (but numerics: the
#: authors' statistics need stats="instance", so they get a second set).
AN_SETTINGS = {"num_entities": 4, "temperature": 0.5, "self_sampling": False, "affine": False, "stats": "batch",
               "eps": 1e-3, "value_projection": True, "implementation": "reference", "numerics": "paper"}  # fmt: skip
AN_AUTHORS = {**AN_SETTINGS, "stats": "instance", "numerics": "authors"}


@pytest.mark.parametrize("settings", [AN_SETTINGS, AN_AUTHORS], ids=["paper", "authors"])
def test_every_an_argument_is_reachable_from_the_config(capsys, settings):
    """Every AttentiveNorm2d argument, implementation included, set from the command line (as a config would) lands in
    the generator's AN layer, and --print_config shows them all."""
    AN_SETTINGS = settings  # noqa: N806
    assert AN_SETTINGS.keys() == set(inspect.signature(AttentiveNorm2d).parameters) - {"num_features"}
    flags = ["--config", str(CONFIGS / "demo.yaml"), "--model.generator.init_args.cnum=4"]
    flags += [f"--model.generator.init_args.long_range.init_args.{k}={str(v).lower()}" for k, v in AN_SETTINGS.items()]
    with pytest.raises(SystemExit):
        cli_main(["fit", *flags, "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)["model"]["generator"]["init_args"]["long_range"]
    assert printed["init_args"] == AN_SETTINGS
    (layer,) = [m for m in cli_main(flags, run=False).model.generator.modules() if isinstance(m, AttentiveNorm2d)]
    assert {key: getattr(layer, key) for key in AN_SETTINGS} == AN_SETTINGS


class TestConfigs:
    @pytest.mark.parametrize(("extra", "modules"), list(zip(EXTRAS, ["AN", "CA", "CA+AN", "AN"], strict=True)))
    def test_paris_configs_parse(self, paris_root, extra, modules):
        args = ["--config", PARIS] + [a for name in extra for a in ("--config", str(CONFIGS / name))]
        cli = cli_main([*args, f"--data.root={paris_root}"], run=False)
        assert isinstance(cli.datamodule, ParisStreetViewDataModule)
        gen = cli.model.generator
        has_an = any(isinstance(m, AttentiveNorm2d) for m in gen.modules())
        assert (gen.contextual is not None, has_an) == ("CA" in modules, "AN" in modules)
        if gen.contextual is not None:
            assert gen.contextual.softmax_scale == 10.0 and gen.contextual.rate == 2  # DeepFill v1's
        assert cli.model.generator.cnum == 32
        if extra == ["paris256_authors.yaml"]:
            an = next(m for m in cli.model.generator.modules() if isinstance(m, AttentiveNorm2d))
            assert an.value is not None and not an.affine and cli.model.generator.branch_widths == "authors"
            assert not cli.model.schedule.orthogonal_in_phase1
            assert an.numerics == "authors" and an.eps == 1e-7  # their released statistics (attentive_norm_authors)

    @pytest.mark.parametrize("extra", EXTRAS)
    def test_paris_fast_dev_run(self, paris_root, tmp_path, extra):
        args = ["fit", "--config", PARIS] + [a for name in extra for a in ("--config", str(CONFIGS / name))]
        args += _tiny_paris(paris_root, tmp_path)
        args += ["--model.schedule.adversarial_start_step=0", "--model.n_critic=2", "--trainer.fast_dev_run=2"]
        cli = cli_main(args)
        assert int(cli.model.phase) == 2
        assert int(cli.model.critic_steps) == 2
        assert "val/psnr" in cli.trainer.callback_metrics

    def test_demo_fast_dev_run_with_wandb_offline(self, tmp_path):
        cli = cli_main(
            ["fit", "--config", str(CONFIGS / "demo.yaml"), "--data.init_args.resolution=32"]
            + [
                "--data.init_args.num_val=1",
                "--data.init_args.num_test=1",
                "--model.global_critic.init_args.input_size=32",
            ]
            + ["--model.generator.init_args.cnum=4", "--model.generator.init_args.long_range.init_args.num_entities=4"]
            + ["--model.schedule.adversarial_start_step=1", "--trainer.fast_dev_run=2"]
            + [f"--trainer.default_root_dir={tmp_path}"]
            + [f"--trainer.logger.init_args.save_dir={tmp_path}"]
        )
        metrics = cli.trainer.callback_metrics  # the demo's test_after_fit: the last evaluation is the test split's
        for key in ("test/psnr", "test/ssim_hole", "test/telea/psnr", "test/ns/psnr", "test/harmonic/psnr"):
            assert torch.isfinite(metrics[key]), key
        assert cli.model.test_checkpoint["checkpoint"] is None  # the model in memory, at the end of fit
        assert list(tmp_path.rglob("test_panel_step*.png")) and list(tmp_path.rglob("test_layout_*_step*.png"))


@pytest.mark.slow
def test_protocol_pipeline_fit_test_predict_baseline_evaluate(tmp_path):
    """Train briefly; `test` on the test split equals `evaluate` of `predict --predict_split test`'s files, and the
    OpenCV baseline of the same references is scored by the same code."""
    root = write_paris_tree(tmp_path / "paris")
    common = _tiny_paris(root, tmp_path)
    cli = cli_main(
        ["fit", "--config", PARIS, *common, "--model.schedule.adversarial_start_step=2", "--model.n_critic=1"]
        + ["--trainer.max_steps=6", "--trainer.enable_checkpointing=true"]
    )
    assert int(cli.model.phase) == 2
    ckpt = str(checkpoint_dir(cli.trainer) / "last.ckpt")  # written after the last batch
    loaded = load_inpainter(ckpt)
    assert loaded.generator.cnum == 4
    torch.testing.assert_close(loaded.state_dict()["phase"], torch.tensor(2))
    tested = cli_main(["test", "--config", PARIS, *common, f"--ckpt_path={ckpt}"]).trainer.callback_metrics
    assert tested["test/num_images"] == 3  # the paris_eval_gt images, never the validation images
    out, ref = tmp_path / "pred", tmp_path / "ref"
    cli_main(
        ["predict", "--config", PARIS, *common, f"--ckpt_path={ckpt}", "--data.predict_split=test"]
        + [f"--predict_writer.output_dir={out}", f"--predict_writer.reference_dir={ref}"]
    )
    assert sorted(p.name for p in out.iterdir()) == ["001_im.png", "002_im.png", "003_im.png"]
    scores = cli_main(["evaluate", f"--pred_dir={out}", f"--gt_dir={ref / 'gt'}", f"--mask_dir={ref / 'masks'}"])
    for key in ("psnr", "ssim", "mae", "psnr_hole"):
        assert scores["mean"][key] == pytest.approx(float(tested[f"test/{key}"]), abs=2e-4), key
    # The raw 227x227 ground truth, brought to 32 with the same (bilinear) resize, gives the same known pixels.
    raw = cli_main(["evaluate", f"--pred_dir={out}", f"--gt_dir={root / 'paris_eval_gt'}", "--resize_to=32"])
    assert raw["mean"]["psnr"] == pytest.approx(scores["mean"]["psnr"], abs=1e-6)
    telea = tmp_path / "telea"
    cli_main(["baseline", "--method=telea", f"--image_dir={ref / 'gt'}", f"--mask_dir={ref / 'masks'}",
              f"--output_dir={telea}"])  # fmt: skip
    baseline = cli_main(["evaluate", f"--pred_dir={telea}", f"--gt_dir={ref / 'gt'}", f"--mask_dir={ref / 'masks'}"])
    assert baseline["count"] == 3 and baseline["mean"]["psnr"] != scores["mean"]["psnr"]


def test_predict_a_folder_of_any_size(tmp_path, paris_root):
    images, masks = write_image_mask_folders(tmp_path / "predict")
    out = tmp_path / "predicted"
    cli_main(
        ["predict", "--config", PARIS, *_tiny_paris(paris_root, tmp_path), f"--predict_writer.output_dir={out}"]
        + [f"--data.predict_root={images}", f"--data.predict_mask_root={masks}"]
    )
    src = np.asarray(Image.open(images / "img0.png").convert("RGB"))
    res = np.asarray(Image.open(out / "img0.png").convert("RGB"))
    hole = np.asarray(Image.open(masks / "img0.png")) > 127
    assert res.shape == src.shape and np.array_equal(res[~hole], src[~hole])


class TestEvaluate:
    def _folders(self, tmp_path, composited=True):
        from skimage import data as skdata

        gt, pred = tmp_path / "gt", tmp_path / "pred"
        gt.mkdir()
        pred.mkdir()
        rng = np.random.default_rng(0)
        for i in range(2):
            crop = skdata.chelsea()[40 * i : 40 * i + 64, 100 : 100 + 64]
            Image.fromarray(crop).save(gt / f"{i:03d}_im.png")
            noisy = crop.astype(int)
            noisy[16:48, 16:48] += rng.integers(-30, 31, size=(32, 32, 3))  # inside the centre hole
            if not composited:
                noisy[0:4, 0:4] += 9  # known pixels altered
            Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(pred / f"{i:03d}_im.png")
        return gt, pred

    def test_scores_two_folders(self, tmp_path, capsys):
        gt, pred = self._folders(tmp_path)
        out = tmp_path / "scores.json"
        result = cli_main(["evaluate", f"--pred_dir={pred}", f"--gt_dir={gt}", f"--output={out}"])
        printed = capsys.readouterr().out
        assert "PSNR (dB)" in printed and f"{result['mean']['psnr']:.2f}" in printed
        saved = json.loads(out.read_text())
        for stem, scores in saved["per_image"].items():
            a = np.asarray(Image.open(pred / f"{stem}.png"), dtype=np.float64) / 255
            b = np.asarray(Image.open(gt / f"{stem}.png"), dtype=np.float64) / 255
            assert scores["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((a - b) ** 2)), abs=1e-3)
            assert scores["mae_hole"] == pytest.approx(np.mean(np.abs(a - b)[16:48, 16:48]), abs=1e-5)

    def test_known_region_check(self, tmp_path):
        gt, pred = self._folders(tmp_path, composited=False)
        with pytest.raises(KnownRegionError, match=r"000_im: 16 known pixel\(s\).*by up to 9 of 255"):
            cli_main(["evaluate", f"--pred_dir={pred}", f"--gt_dir={gt}"])
        with pytest.warns(UserWarning, match="differ from the ground truth"):
            result = cli_main(["evaluate", f"--pred_dir={pred}", f"--gt_dir={gt}", "--known_check=warn"])
        assert result["protocol"]["altered_known_pixels"] == {"000_im": 16, "001_im": 16}
        ok = cli_main(["evaluate", f"--pred_dir={pred}", f"--gt_dir={gt}", "--known_tolerance=9"])
        assert ok["protocol"]["altered_known_pixels"] == {}

    def test_errors(self, tmp_path):
        gt, pred = self._folders(tmp_path)
        (pred / "000_im.png").unlink()
        with pytest.raises(ValueError, match="do not pair up"):
            cli_main(["evaluate", f"--pred_dir={pred}", f"--gt_dir={gt}"])
        with pytest.raises(SystemExit):
            cli_main(["evaluate", f"--pred_dir={pred}"])
        with pytest.raises(SystemExit):
            cli_main(["baseline", "--method=telea"])
