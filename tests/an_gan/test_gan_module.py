"""Tests of the ANGAN LightningModule: manual-optimisation step, losses, EMA and its standing statistics, fixed
noise, evaluation through the evaluator, predict, checkpoints."""

import functools

import pytest
import pytorch_lightning as pl
import torch
from run_helpers import MetricsRecorder
from torch.utils.data import DataLoader

from an_gan.evaluation import GenerationEvaluator
from an_gan.losses import discriminator_loss, generator_loss, orthogonal_regulariser
from an_gan.module import ANGAN, load_generator
from an_gan.networks import Discriminator, Generator
from an_gan.predict import ClassFolderWriter
from an_gan.settings import EMASettings, LinearDecay, PictureSettings
from an_gan.steps import d_loss
from common.data.class_images import DigitsDataModule
from common.layers import AttentiveNorm2d, SelfAttention2d
from common.metrics.generation import RandomProjectionExtractor
from common.training.ema import normalization_layers

K = 4
AN4 = functools.partial(AttentiveNorm2d, num_entities=4)


def _nets(**g_kwargs):
    g = Generator(K, 32, z_dim=8, ch=1, long_range=AN4, long_range_block=1, **g_kwargs)
    d = Discriminator(K, 32, ch=1, long_range=AN4)
    return g, d


def _module(**kwargs) -> ANGAN:
    g, d = _nets()
    defaults = {
        "generator": g,
        "discriminator": d,
        "ema": EMASettings(decay=0.5, start_step=0, standing_batches=2, standing_batch_size=8),
        "pictures": PictureSettings(every_n_steps=0, per_class=2),
    }
    defaults.update(kwargs)
    return ANGAN(**defaults)


class _Batches(torch.utils.data.Dataset):
    def __init__(self, n: int = 16) -> None:
        gen = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 32, 32, generator=gen) * 2 - 1
        self.labels = torch.arange(n) % K

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.images[i], "label": self.labels[i]}


def _loader(n: int = 16, batch_size: int = 4) -> DataLoader:
    return DataLoader(_Batches(n), batch_size=batch_size)


def _trainer(tmp_path, **kwargs) -> pl.Trainer:
    defaults = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": tmp_path,
        "accelerator": "cpu",
        "limit_val_batches": 0,
    }
    defaults.update(kwargs)
    return pl.Trainer(**defaults)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class TestLosses:
    def test_values_and_logs(self):
        real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-2.0, 0.0, 1.5])
        loss, logs = discriminator_loss(real, fake)
        assert loss.item() == pytest.approx((0 + 0.5 + 2.0) / 3 + (0 + 1.0 + 2.5) / 3)
        assert logs["d_real"].item() == pytest.approx(0.5) and logs["d_fake"].item() == pytest.approx(-0.5 / 3)
        g_loss, g_logs = generator_loss(fake)
        assert g_loss.item() == pytest.approx(0.5 / 3) and g_logs["g_adv"].item() == g_loss.item()
        g, _ = _nets()
        orth, orth_logs = orthogonal_regulariser(g, 0.1, "g")
        torch.testing.assert_close(orth, 0.1 * orth_logs["g_orth"])
        assert orth_logs["g_orth"].item() > 0
        with pytest.raises(ValueError, match=">= 0"):
            orthogonal_regulariser(g, -1.0, "g")


class TestTrainingStep:
    def test_one_iteration_changes_g_d_and_ema(self, tmp_path):
        torch.manual_seed(0)
        model = _module()
        before = {name: _snapshot(getattr(model, name)) for name in ("generator", "discriminator", "ema")}
        trainer = _trainer(tmp_path, max_steps=2)  # one D step + one G step
        trainer.fit(model, _loader())
        assert trainer.global_step == 2 and model.num_d_steps == 1 and model.num_g_steps == 1
        key = "blocks.0.conv1.parametrizations.weight.original"
        for name, old in before.items():
            new = _snapshot(getattr(model, name))
            assert any(not torch.equal(old[k], new[k]) for k in old), f"{name} did not change"
        assert not torch.equal(before["generator"][key], model.generator.state_dict()[key])
        assert not torch.equal(before["discriminator"][key], model.discriminator.state_dict()[key])
        for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/g_orth", "train/d_orth"):
            assert key in trainer.callback_metrics
        rho = {k for k in trainer.callback_metrics if k.startswith("train/an_rho/")}  # AN's learned output scale
        assert rho and len(rho) == sum(isinstance(m, AttentiveNorm2d) for m in model.generator.modules())

    def test_n_dis_and_uniform_labels_with_generator_batch(self, tmp_path):
        torch.manual_seed(0)
        model = _module(n_dis=2, fake_labels="uniform", g_batch_size=6)
        seen = []
        model.discriminator.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
        _trainer(tmp_path, max_steps=6).fit(model, _loader())  # 4 batches: 4 D steps + 2 G steps
        assert model.num_d_steps == 4 and model.num_g_steps == 2
        assert seen.count(6) == 2  # the G steps use g_batch_size generated images

    def test_joint_d_batch_scores_like_two_calls(self):
        """``d_batch="joint"`` makes one D call on real + fake and gives the loss of the two separate calls."""
        images, labels = _Batches(8).images, torch.arange(8) % K
        losses, calls = {}, {}
        for mode in ("separate", "joint"):
            torch.manual_seed(0)
            model = _module(d_batch=mode)
            model.discriminator.eval()  # no power iteration / AN sampling: the same D for both calls
            calls[mode] = []
            model.discriminator.register_forward_hook(lambda mod, inp, out, m=mode: calls[m].append(len(inp[0])))
            torch.manual_seed(1)
            losses[mode] = d_loss(model, images, labels)
        assert calls == {"separate": [8, 8], "joint": [16]}
        torch.testing.assert_close(losses["joint"][0], losses["separate"][0])
        for key in ("d_real", "d_fake"):
            torch.testing.assert_close(losses["joint"][1][key], losses["separate"][1][key])

    def test_loggers_get_every_step_values_with_n_dis(self, tmp_path, monkeypatch):
        """Logging only near the logging steps (``common.training.step_logging``) writes the same rows as logging
        every batch,
        also for the G values, which exist on one batch in ``n_dis``."""
        rows = {}
        for mode in ("guarded", "every batch"):
            if mode == "every batch":
                monkeypatch.setattr("an_gan.module.is_logging_step", lambda module, ahead=0: True)
            torch.manual_seed(0)
            logger = MetricsRecorder()
            _trainer(tmp_path / mode, max_steps=24, log_every_n_steps=3, logger=logger).fit(
                _module(n_dis=2), _loader(n=64)
            )
            rows[mode] = [row for row in logger.rows if row[1]]
        assert len(rows["guarded"]) == 5 and all("train/g_loss" in values for _, values in rows["guarded"])
        assert rows["guarded"] == rows["every batch"]

    def test_linear_decay_of_both_learning_rates(self, tmp_path):
        decay = LinearDecay(start=1, end=3)
        assert [decay.factor(i) for i in range(5)] == [1.0, 1.0, 0.5, 0.0, 0.0]
        model = _module(lr_decay=decay)
        _trainer(tmp_path, max_steps=4).fit(model, _loader())  # 2 G steps
        g_opt, d_opt = model.optimizers()
        assert g_opt.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.5)
        assert d_opt.param_groups[0]["lr"] == pytest.approx(4e-4 * 0.5)

    def test_orthogonal_loss_trains_entities(self, tmp_path):
        torch.manual_seed(0)
        model = _module(orthogonal_weight=10.0)
        layer = model.generator.long_range_layer
        before = layer.orthogonal_loss().item()
        _trainer(tmp_path, max_steps=20).fit(model, _loader(n=40))
        assert layer.orthogonal_loss().item() < before

    def test_exception(self):
        g, d = _nets()
        with pytest.raises(ValueError, match="n_dis"):
            _module(n_dis=0)
        with pytest.raises(ValueError, match="g_batch_size"):
            _module(g_batch_size=8)  # needs uniform labels
        with pytest.raises(ValueError, match="eval_generator"):
            _module(ema=None, eval_generator="ema")
        with pytest.raises(ValueError, match="d_batch"):
            _module(d_batch="concat")
        with pytest.raises(ValueError, match="disagree on num_classes"):
            ANGAN(generator=Generator(K + 1, 32, z_dim=8, ch=1), discriminator=d)
        with pytest.raises(ValueError, match="picture classes"):
            _module(pictures=PictureSettings(classes=[K]))


class TestStandingStatistics:
    """The EMA generator's batch-norm statistics are its own (BigGAN standing statistics) and are what it uses."""

    def test_differ_from_raw_and_are_used(self, tmp_path):
        torch.manual_seed(0)
        model = _module(ema=EMASettings(decay=0.9, start_step=0, standing_batches=3, standing_batch_size=16))
        _trainer(tmp_path, max_steps=8).fit(model, _loader())
        ema = model.ema_generator()
        raw_layers, ema_layers = normalization_layers(model.generator), normalization_layers(ema)
        assert len(ema_layers) == len(raw_layers) > 0
        assert any(
            not torch.allclose(e.running_mean, r.running_mean) for e, r in zip(ema_layers, raw_layers, strict=True)
        )

        # They are the plain average of the batch statistics of the seeded standing batches (recomputed here).
        gen = torch.Generator().manual_seed(0)
        batches = [(torch.randn(16, 8, generator=gen), torch.randint(0, K, (16,), generator=gen)) for _ in range(3)]
        first = ema_layers[0]  # the BN of block 0's first cBN: its input is linear(z), whatever the other layers do
        stored = first.running_mean.clone()
        means = []
        hook = first.register_forward_hook(lambda mod, inp, out: means.append(inp[0].mean(dim=(0, 2, 3))))
        with torch.no_grad():
            for z, y in batches:
                ema.eval()(z, y)
        hook.remove()
        torch.testing.assert_close(stored, torch.stack(means).mean(0))
        assert not torch.allclose(stored, raw_layers[0].running_mean)

        # The EMA generator generates with them: swapping in the raw G's statistics changes its output.
        z, y = torch.randn(4, 8), torch.arange(4)
        out = model.generate(z, y, which="ema")
        for e, r in zip(ema_layers, raw_layers, strict=True):
            e.running_mean.copy_(r.running_mean)
            e.running_var.copy_(r.running_var)
        assert not torch.allclose(model.ema.averaged.eval()(z, y), out)

    def test_recomputed_after_updates_and_stored_in_checkpoints(self, tmp_path):
        torch.manual_seed(0)
        model = _module()
        trainer = _trainer(tmp_path, max_steps=4)
        trainer.fit(model, _loader())
        assert model._ema_stale  # updated since the last standing pass
        path = tmp_path / "model.ckpt"
        trainer.save_checkpoint(path)
        assert not model._ema_stale
        z, y = torch.randn(3, 8), torch.tensor([0, 1, 3])
        torch.testing.assert_close(load_generator(path)(z, y), model.generate(z, y, which="ema"))
        torch.testing.assert_close(load_generator(path, ema=False)(z, y), model.generate(z, y, which="raw"))
        assert torch.load(path, weights_only=True)["an_gan_steps"] == {"d": 2, "g": 2}


class TestFixedNoise:
    def test_grid_rows_and_layouts(self):
        model = _module(pictures=PictureSettings(classes=[3, 1], per_class=3, seed=7))
        assert model.fixed_labels.tolist() == [3, 3, 3, 1, 1, 1]
        assert torch.equal(
            model.fixed_z, _module(pictures=PictureSettings(classes=[3, 1], per_class=3, seed=7)).fixed_z
        )
        grid = model.sample_grid()
        assert grid.shape == (3, 2 * 34 + 2, 3 * 34 + 2)
        panel = model.layout_maps()
        assert panel is not None and panel.shape[0] == 3
        g, d = Generator(K, 32, z_dim=8, ch=1, long_range=SelfAttention2d, long_range_block=1), _nets()[1]
        assert _module(generator=g, discriminator=d).layout_maps() is None


def _evaluator(**kwargs) -> GenerationEvaluator:
    defaults = {
        "num_samples": 40,
        "seed": 0,
        "batch_size": 16,
        "reference_split": "val",
        "intra_fid_classes": [1, 3],
        "intra_fid_num_per_class": 12,
        "intra_fid_split": "train",
        "is_splits": 2,
        "kid_prc_num_samples": 20,
        "feature_extractor": RandomProjectionExtractor(feature_dim=8, num_logits=K),
        "reference_cache_dir": None,
    }
    defaults.update(kwargs)
    return GenerationEvaluator(**defaults)


class _Digits4(DigitsDataModule):
    """The digits of classes 0..3 only (4 classes, like the test networks)."""

    def _build_datasets(self):
        datasets = super()._build_datasets()
        for ds in datasets.values():
            keep = ds.labels < K
            ds.images, ds.labels = ds.images[keep], ds.labels[keep]
        return datasets

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.num_classes, self.class_names = K, [str(c) for c in range(K)]


class TestEvaluation:
    def test_validate_runs_the_evaluator_on_the_chosen_generator(self, tmp_path):
        torch.manual_seed(0)
        data = _Digits4(batch_size=8)
        for which in ("raw", "ema"):
            model = _module(val_evaluator=_evaluator(), eval_generator=which)
            (logged,) = _trainer(tmp_path, limit_val_batches=None).validate(model, datamodule=data)
            direct = _evaluator().evaluate(model.evaluation_generator(), data)
            assert logged.keys() >= {f"val/{k}" for k in direct}
            for key, value in direct.items():
                assert logged[f"val/{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), (which, key)

    def test_model_selection_and_reported_scores_use_different_images(self, tmp_path):
        """fit's validation (best-fid.ckpt) asks only for the val split; test only for its own split and seed."""

        class Recording(_Digits4):
            def reference_dataloader(self, split, *args, **kwargs):
                self.asked.append(split)
                return super().reference_dataloader(split, *args, **kwargs)

        data = Recording(batch_size=4)
        data.asked = []
        model = _module(val_evaluator=_evaluator(intra_fid_classes=None), test_evaluator=_evaluator(
            seed=1, reference_split="test", intra_fid_classes=None))  # fmt: skip
        trainer = _trainer(tmp_path, max_steps=4, limit_val_batches=None, val_check_interval=2)
        trainer.fit(model, datamodule=data)
        assert set(data.asked) == {"val"} and "val/fid" in trainer.callback_metrics
        data.asked = []
        (tested,) = trainer.test(model, datamodule=data)
        assert set(data.asked) == {"test"} and "test/fid" in tested

    def test_test_needs_a_test_evaluator(self, tmp_path):
        with pytest.raises(ValueError, match="test_evaluator"):
            _trainer(tmp_path, limit_test_batches=None).test(_module(), datamodule=_Digits4())

    def test_missing_inception_weights_fail_at_start(self, tmp_path):
        model = _module(val_evaluator=GenerationEvaluator(inception_weights=str(tmp_path / "missing.pth")))
        with pytest.raises(RuntimeError, match="weights-inception-2015-12-05"):
            _trainer(tmp_path, limit_val_batches=None).validate(model, datamodule=_Digits4())


class TestPredict:
    def test_writes_class_folders_from_the_writer_settings(self, tmp_path):
        model = _module()
        writer = ClassFolderWriter(str(tmp_path / "out"), classes=[0, 2], num_per_class=3, seed=5, batch_size=4)
        _trainer(tmp_path, callbacks=[writer]).predict(model)
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0000", "0002"]
        for folder in ("0000", "0002"):
            files = sorted(p.name for p in (tmp_path / "out" / folder).glob("*.png"))
            assert files == ["000000.png", "000001.png", "000002.png"]
        with pytest.raises(ValueError, match="ClassFolderWriter"):
            _trainer(tmp_path).predict(_module())
