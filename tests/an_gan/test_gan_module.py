"""Tests of the ANGAN LightningModule: manual-optimisation step, EMA, fixed noise, metrics, predict."""

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from an_gan.module import ANGAN
from an_gan.networks import Generator
from an_gan.sampling import load_generator
from common.metrics.generation import GenerationMetrics, RandomProjectionExtractor
from common.visualization import to_unit

K = 4


def _module(**kwargs) -> ANGAN:
    defaults = {
        "num_classes": K,
        "resolution": 32,
        "z_dim": 8,
        "g_ch": 1,
        "d_ch": 1,
        "g_long_range_block": 1,
        "num_entities": 4,
        "eval_num_samples": 0,
        "reference_cache_dir": None,
        "sample_every_n_steps": 0,
        "samples_per_class": 2,
        "ema_start_step": 0,
        "ema_decay": 0.5,
    }
    defaults.update(kwargs)
    return ANGAN(**defaults)


def _loader(n: int = 16, batch_size: int = 4) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, 32, 32, generator=gen) * 2 - 1
    labels = torch.arange(n) % K
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size)


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


class TestTrainingStep:
    def test_one_iteration_changes_g_d_and_ema(self, tmp_path):
        torch.manual_seed(0)
        model = _module()
        before = {name: _snapshot(getattr(model, name)) for name in ("generator", "discriminator", "ema")}
        trainer = _trainer(tmp_path, max_steps=2)  # one D step + one G step
        trainer.fit(model, _loader())
        assert trainer.global_step == 2
        assert int(model.num_d_steps) == 1 and int(model.num_g_steps) == 1
        for name, old in before.items():
            new = _snapshot(getattr(model, name))
            changed = [k for k in old if not torch.equal(old[k], new[k])]
            assert changed, f"{name} did not change"
        # both networks' conv weights were updated by their own optimiser
        g_key = "blocks.0.conv1.parametrizations.weight.original"
        assert not torch.equal(before["generator"][g_key], model.generator.state_dict()[g_key])
        d_key = "blocks.0.conv1.parametrizations.weight.original"
        assert not torch.equal(before["discriminator"][d_key], model.discriminator.state_dict()[d_key])
        for key in ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake", "train/orth_loss"):
            assert key in trainer.callback_metrics

    def test_ema_follows_generator_maths(self, tmp_path):
        torch.manual_seed(0)
        model = _module(ema_decay=0.75, ema_start_step=100)  # before start: EMA == G after every step
        _trainer(tmp_path, max_steps=4).fit(model, _loader())
        for (name, p_ema), p in zip(model.ema.averaged.named_parameters(), model.generator.parameters(), strict=True):
            assert torch.equal(p_ema, p), name

    def test_n_dis(self, tmp_path):
        torch.manual_seed(0)
        model = _module(n_dis=2)
        trainer = _trainer(tmp_path, max_steps=6)  # 4 batches: 4 D steps + 2 G steps
        trainer.fit(model, _loader())
        assert int(model.num_d_steps) == 4 and int(model.num_g_steps) == 2

    def test_orthogonal_loss_trains_entities(self, tmp_path):
        torch.manual_seed(0)
        model = _module(orthogonal_weight=10.0)
        layer = model.generator.long_range_layer
        before = layer.orthogonal_loss().item()
        _trainer(tmp_path, max_steps=20).fit(model, _loader(n=40))
        assert layer.orthogonal_loss().item() < before


class TestFixedNoise:
    def test_same_seed_same_noise(self):
        a, b = _module(noise_seed=7), _module(noise_seed=7)
        assert torch.equal(a.fixed_z, b.fixed_z) and torch.equal(a.fixed_labels, b.fixed_labels)
        assert not torch.equal(a.fixed_z, _module(noise_seed=8).fixed_z)
        assert "fixed_z" in a.state_dict()

    def test_grid_rows(self):
        model = _module(grid_classes=[3, 1], samples_per_class=3)
        assert model.fixed_labels.tolist() == [3, 3, 3, 1, 1, 1]
        grid = model.sample_grid()
        assert grid.shape == (3, 2 * 34 + 2, 3 * 34 + 2)
        panel = model.layout_maps()
        assert panel is not None and panel.shape[0] == 3
        assert _module(g_long_range="sa").layout_maps() is None

    def test_exception(self):
        with pytest.raises(ValueError, match="grid_classes"):
            _module(grid_classes=[K])
        with pytest.raises(ValueError, match="generator was built for"):
            _module(generator=Generator(K + 1, 32, z_dim=8, ch=1))
        with pytest.raises(ValueError, match="n_dis"):
            _module(n_dis=0)


class TestEvaluation:
    def test_validation_matches_direct_computation(self, tmp_path):
        torch.manual_seed(0)
        extractor = RandomProjectionExtractor(feature_dim=8, num_logits=K)
        model = _module(eval_num_samples=24, eval_batch_size=10, is_splits=2, feature_extractor=extractor)
        trainer = _trainer(tmp_path, limit_val_batches=None)
        loader = _loader(n=12)
        (logged,) = trainer.validate(model, loader)

        direct = GenerationMetrics(RandomProjectionExtractor(feature_dim=8, num_logits=K), num_classes=K, is_splits=2)
        for images, labels in loader:
            direct.update(to_unit(images), labels, real=True)
        z = torch.randn(24, 8, generator=torch.Generator().manual_seed(0))
        labels = torch.arange(24) % K
        g = model.ema.averaged.eval()
        with torch.no_grad():
            direct.update(to_unit(g(z, labels)), labels, real=False)
        expected = direct.compute()
        for key in ("fid", "is_mean", "is_std", "intra_fid"):
            assert logged[f"val/{key}"] == pytest.approx(float(expected[key]), rel=1e-5, abs=1e-6), key
        assert {f"val/intra_fid/{c}" for c in range(K)} <= set(logged)

    def test_reference_cache(self, tmp_path):
        extractor = RandomProjectionExtractor(feature_dim=8, num_logits=K)

        class _Data(pl.LightningDataModule):
            def val_dataloader(self):
                return _loader(n=12)

            def reference_key(self, split):
                return f"toy_{split}"

        model = _module(
            eval_num_samples=8,
            eval_batch_size=8,
            is_splits=2,
            feature_extractor=extractor,
            reference_cache_dir=str(tmp_path / "refs"),
        )
        first = _trainer(tmp_path, limit_val_batches=None).validate(model, datamodule=_Data())
        files = list((tmp_path / "refs").glob("toy_val__*.pt"))
        assert len(files) == 1
        again = _module(
            eval_num_samples=8,
            eval_batch_size=8,
            is_splits=2,
            feature_extractor=extractor,
            reference_cache_dir=str(tmp_path / "refs"),
        )
        again.load_state_dict(model.state_dict())
        second = _trainer(tmp_path, limit_val_batches=None).validate(again, datamodule=_Data())
        assert not again._collect_real  # loaded from disk, not recomputed
        assert second[0]["val/fid"] == pytest.approx(first[0]["val/fid"])

    def test_missing_inception_weights_fail_at_start(self, tmp_path):
        model = _module(eval_num_samples=10, inception_weights=str(tmp_path / "missing.pth"))
        with pytest.raises(RuntimeError, match="weights-inception-2015-12-05"):
            _trainer(tmp_path, limit_val_batches=None).validate(model, _loader(n=4))


class TestPredict:
    def test_writes_class_folders(self, tmp_path):
        model = _module(
            predict_num_per_class=3,
            predict_classes=[0, 2],
            predict_batch_size=4,
            predict_output_dir=str(tmp_path / "out"),
        )
        _trainer(tmp_path).predict(model)
        folders = sorted(p.name for p in (tmp_path / "out").iterdir())
        assert folders == ["0000", "0002"]
        for folder in folders:
            files = sorted(p.name for p in (tmp_path / "out" / folder).glob("*.png"))
            assert files == ["000000.png", "000001.png", "000002.png"]


class TestLoadGenerator:
    def test_roundtrip_raw_and_ema(self, tmp_path):
        torch.manual_seed(0)
        model = _module()
        trainer = _trainer(tmp_path, max_steps=4)
        trainer.fit(model, _loader())
        path = tmp_path / "model.ckpt"
        trainer.save_checkpoint(path)
        z, y = torch.randn(2, 8), torch.tensor([1, 3])
        torch.testing.assert_close(load_generator(path)(z, y), model.generate(z, y))
        torch.testing.assert_close(load_generator(path, ema=False)(z, y), model.generate(z, y, use_ema=False))

    def test_exception(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            load_generator(tmp_path / "nope.ckpt")
        torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
        with pytest.raises(ValueError, match="not an an_gan checkpoint"):
            load_generator(tmp_path / "other.ckpt")


def test_eval_noise_does_not_depend_on_world_size(monkeypatch):
    """Rank r of W generates slice r of one global noise sequence: the union over ranks is the 1-process set."""
    from types import SimpleNamespace

    from an_gan.module import ANGAN

    captured = {}

    class Recorder:
        def update(self, images, labels, real):
            captured.setdefault(key, []).append(torch.cat([labels[:, None].float(), images.flatten(1)], dim=1))

    model = ANGAN(num_classes=10, resolution=32, g_ch=2, d_ch=2, num_entities=4, eval_num_samples=30, eval_batch_size=7)
    outputs = {}
    for world in (1, 3):
        for rank in range(world):
            key = (world, rank)
            trainer = SimpleNamespace(world_size=world, global_rank=rank, is_global_zero=rank == 0)
            monkeypatch.setattr(ANGAN, "trainer", property(lambda self, t=trainer: t))
            monkeypatch.setattr(model, "generate", lambda z, y: torch.tanh(z[:, :3, None, None].expand(-1, 3, 4, 4)))
            model.generate_for_metrics(Recorder())
        outputs[world] = torch.cat([torch.cat(captured[(world, r)]) for r in range(world)])
    torch.testing.assert_close(outputs[1], outputs[3])
