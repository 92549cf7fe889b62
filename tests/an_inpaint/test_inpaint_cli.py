"""CLI of an_inpaint: every config parses and runs (fast_dev_run), evaluate, predict, the no-argument demo defaults."""

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from inpaint_helpers import write_image_mask_folders, write_paris_tree
from PIL import Image
from skimage import data as skdata

from an_inpaint.cli import cli_main
from an_inpaint.module import load_inpainter
from an_inpaint.networks import InpaintGenerator
from common.data.inpainting import DemoInpaintingDataModule, ParisStreetViewDataModule

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "an_inpaint"
PARIS = str(CONFIGS / "paris256.yaml")

TINY_MODEL = [
    "--model.generator.init_args.cnum=4",
    "--model.generator.init_args.num_entities=4",
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
        f"--model.global_critic.init_args.input_size={size}",
        *TINY_MODEL,
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.logger=false",
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


class TestConfigs:
    def test_demo_yaml_is_the_default(self):
        default = cli_main([], run=False).config.as_dict()
        demo = cli_main(["--config", str(CONFIGS / "demo.yaml")], run=False).config.as_dict()
        for key in ("model", "data", "trainer", "validate_before_fit"):
            assert _canonical(default[key]) == _canonical(demo[key]), key

    @pytest.mark.parametrize(
        ("extra", "attention"),
        [([], "an"), (["paris256_ca.yaml"], "contextual"), (["paris256_ca_an.yaml"], "contextual+an")],
    )
    def test_paris_configs_parse(self, paris_root, extra, attention):
        args = ["--config", PARIS] + [a for name in extra for a in ("--config", str(CONFIGS / name))]
        cli = cli_main([*args, f"--data.root={paris_root}"], run=False)
        assert isinstance(cli.datamodule, ParisStreetViewDataModule)
        assert cli.datamodule.batch_size == 16
        assert cli.datamodule.resolution == 256
        gen = cli.model.generator
        assert isinstance(gen, InpaintGenerator)
        assert gen.attention == attention
        assert gen.cnum == 32
        assert cli.model.lambda_adv == 1e-3
        assert cli.model.n_critic == 5
        assert cli.model.lambda_gp == 10
        assert cli.model.betas == (0.5, 0.9)
        assert cli.model.lr == 1e-4

    def test_unknown_key(self, capsys):
        with pytest.raises(SystemExit):
            cli_main(["fit", "--model.not_a_key=1"])
        assert "not_a_key" in capsys.readouterr().err

    @pytest.mark.parametrize("extra", [[], ["paris256_ca.yaml"], ["paris256_ca_an.yaml"]])
    def test_paris_fast_dev_run(self, paris_root, tmp_path, extra):
        args = ["fit", "--config", PARIS] + [a for name in extra for a in ("--config", str(CONFIGS / name))]
        args += _tiny_paris(paris_root, tmp_path)
        # Both phases: phase 2 from the first step, a generator update every second batch.
        args += ["--model.adversarial_start_step=0", "--model.n_critic=2", "--trainer.fast_dev_run=2"]
        cli = cli_main(args)
        assert int(cli.model.phase) == 2
        assert int(cli.model.critic_steps) == 2
        assert "val/psnr" in cli.trainer.callback_metrics

    def test_demo_fast_dev_run_with_wandb_offline(self, tmp_path):
        cli = cli_main(
            [
                "fit",
                "--config",
                str(CONFIGS / "demo.yaml"),
                "--data.init_args.resolution=32",
                "--data.init_args.num_val_crops=1",
                "--model.global_critic.init_args.input_size=32",
                *TINY_MODEL,
                "--model.adversarial_start_step=1",
                "--trainer.fast_dev_run=2",
                f"--trainer.default_root_dir={tmp_path}",
                f"--trainer.logger.init_args.save_dir={tmp_path}",
            ]
        )
        assert isinstance(cli.datamodule, DemoInpaintingDataModule)
        metrics = cli.trainer.callback_metrics
        for key in (
            "val/psnr",
            "val/ssim",
            "val/mae",
            "val/psnr_hole",
            "val/ssim_hole",
            "val/mae_hole",
            "val/rec_loss",
        ):
            assert torch.isfinite(metrics[key]), key


def test_fit_then_validate_test_predict(tmp_path):
    """A short real run; its checkpoint then validates, tests and predicts a folder of odd-sized images."""
    root = write_paris_tree(tmp_path / "paris")
    common = _tiny_paris(root, tmp_path)
    cli = cli_main(
        ["fit", "--config", PARIS, *common, "--model.adversarial_start_step=2", "--model.n_critic=1"]
        + ["--trainer.max_steps=6", "--trainer.limit_val_batches=1", "--trainer.enable_checkpointing=true"]
    )
    assert int(cli.model.phase) == 2
    ckpt = cli.trainer.checkpoint_callback.last_model_path or cli.trainer.checkpoint_callback.best_model_path
    assert Path(ckpt).is_file()
    # The run's config.yaml and checkpoint rebuild the trained network (notebook path).
    loaded = load_inpainter(ckpt)
    assert loaded.generator.cnum == 4
    torch.testing.assert_close(loaded.state_dict()["phase"], torch.tensor(2))
    val = cli_main(["validate", "--config", PARIS, *common, f"--ckpt_path={ckpt}", "--trainer.limit_val_batches=1"])
    assert "val/psnr" in val.trainer.callback_metrics
    cli_main(["test", "--config", PARIS, *common, f"--ckpt_path={ckpt}"])
    images, masks = write_image_mask_folders(tmp_path / "predict")
    out = tmp_path / "predicted"
    cli_main(
        ["predict", "--config", PARIS, *common, f"--ckpt_path={ckpt}", f"--predict_writer.output_dir={out}"]
        + [f"--data.predict_root={images}", f"--data.predict_mask_root={masks}"]
    )
    assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]
    src = np.asarray(Image.open(images / "img0.png").convert("RGB"))
    res = np.asarray(Image.open(out / "img0.png").convert("RGB"))
    hole = np.asarray(Image.open(masks / "img0.png")) > 127
    assert np.array_equal(res[~hole], src[~hole])


class TestEvaluate:
    def _folders(self, tmp_path):
        gt, pred = tmp_path / "gt", tmp_path / "pred"
        gt.mkdir()
        pred.mkdir()
        photo = skdata.chelsea()
        rng = np.random.default_rng(0)
        for i in range(2):
            crop = photo[40 * i : 40 * i + 64, 100 : 100 + 64]
            Image.fromarray(crop).save(gt / f"{i:03d}_im.png")
            noisy = crop.astype(int)
            noisy[16:48, 16:48] += rng.integers(-30, 31, size=(32, 32, 3))
            Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(pred / f"{i:03d}_im.png")
        return gt, pred

    def test_scores_two_folders(self, tmp_path, capsys):
        gt, pred = self._folders(tmp_path)
        out = tmp_path / "scores.json"
        result = cli_main(["evaluate", f"--pred_dir={pred}", f"--gt_dir={gt}", f"--output={out}"])
        printed = capsys.readouterr().out
        assert "PSNR (dB)" in printed
        assert f"{result['mean']['psnr']:.2f}" in printed
        saved = json.loads(out.read_text())
        assert set(saved["per_image"]) == {"000_im", "001_im"}
        # PSNR of each file pair against a direct formula on the 8-bit files.
        for stem, scores in saved["per_image"].items():
            a = np.asarray(Image.open(pred / f"{stem}.png"), dtype=np.float64) / 255
            b = np.asarray(Image.open(gt / f"{stem}.png"), dtype=np.float64) / 255
            assert scores["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((a - b) ** 2)), abs=1e-3)
            assert scores["mae"] == pytest.approx(np.mean(np.abs(a - b)), abs=1e-5)
        assert saved["mean"]["psnr"] == pytest.approx(np.mean([s["psnr"] for s in saved["per_image"].values()]))

    def test_errors(self, tmp_path):
        gt, pred = self._folders(tmp_path)
        (pred / "000_im.png").unlink()
        with pytest.raises(ValueError, match="do not pair up"):
            cli_main(["evaluate", f"--pred_dir={pred}", f"--gt_dir={gt}"])
        with pytest.raises(SystemExit):
            cli_main(["evaluate", f"--pred_dir={pred}"])
