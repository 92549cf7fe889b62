"""ANInpaint: the two-phase schedule, resume, critic steps, validation metrics and predict."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from inpaint_helpers import tiny_model, write_image_mask_folders
from PIL import Image
from pytorch_lightning.callbacks import Callback

from an_inpaint.module import InpaintingPredictionWriter, pad_to_multiple
from common.data.inpainting import DemoInpaintingDataModule


def _snapshot(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


class Recorder(Callback):
    """Per batch: global step before it, phase after it, and whether each network changed."""

    def __init__(self):
        self.rows = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._before = (trainer.global_step, _snapshot(pl_module.generator), _snapshot(pl_module.global_critic))
        self._local = _snapshot(pl_module.local_critic)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step, gen, critic = self._before
        self.rows.append(
            {
                "step": step,
                "phase": int(pl_module.phase),
                "g_changed": not torch.equal(gen, _snapshot(pl_module.generator)),
                "d_changed": not torch.equal(critic, _snapshot(pl_module.global_critic))
                and not torch.equal(self._local, _snapshot(pl_module.local_critic)),
            }
        )


def _trainer(tmp_path, batches, epochs=1, callbacks=(), **kwargs):
    return pl.Trainer(
        max_epochs=epochs,
        limit_train_batches=batches,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=list(callbacks),
        accelerator="cpu",
        **kwargs,
    )


def _data(**kwargs):
    return DemoInpaintingDataModule(resolution=32, batch_size=2, train_samples_per_epoch=32, num_val_crops=1, **kwargs)


class TestSchedule:
    def test_phase_switch_and_critic_untouched(self, tmp_path):
        model = tiny_model(adversarial_start_step=3, n_critic=2)
        recorder = Recorder()
        _trainer(tmp_path, 7, callbacks=[recorder], enable_checkpointing=False).fit(model, datamodule=_data())
        rows = recorder.rows
        # Phase 1 for global steps 0, 1, 2: generator only; critics untouched.
        assert [r["phase"] for r in rows] == [1, 1, 1, 2, 2, 2, 2]
        assert all(r["g_changed"] and not r["d_changed"] for r in rows[:3])
        # Phase 2: critics every batch, generator every n_critic-th batch.
        assert all(r["d_changed"] for r in rows[3:])
        assert [r["g_changed"] for r in rows[3:]] == [False, True, False, True]
        assert int(model.critic_steps) == 4

    def test_resume_in_phase_two_stays_there(self, tmp_path):
        model = tiny_model(adversarial_start_step=2, n_critic=1)
        ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        _trainer(tmp_path, 4, callbacks=[ckpt]).fit(model, datamodule=_data())
        assert int(model.phase) == 2
        state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
        assert int(state["phase"]) == 2
        # A new run whose own schedule would stay in phase 1 for a long time, resumed from the checkpoint.
        resumed = tiny_model(adversarial_start_step=10**6, n_critic=1)
        recorder = Recorder()
        _trainer(tmp_path, 4, epochs=2, callbacks=[recorder]).fit(
            resumed, datamodule=_data(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
        )
        assert recorder.rows, "the resumed run trained"
        assert all(r["phase"] == 2 and r["d_changed"] for r in recorder.rows)

    def test_plateau_switch(self):
        model = tiny_model(adversarial_start_step=10**6, plateau_patience=2, plateau_min_delta=0.01)
        for loss in (1.0, 0.9, 0.895, 0.85):  # 0.895 is not a 1% improvement; 0.85 is
            model._plateau_update(loss)
        assert int(model.phase) == 1
        model._plateau_update(0.849)
        assert int(model.phase) == 1
        model._plateau_update(0.85)
        assert int(model.phase) == 2

    def test_exception(self):
        with pytest.raises(ValueError, match="n_critic"):
            tiny_model(n_critic=0)
        with pytest.raises(ValueError, match="plateau_patience"):
            tiny_model(plateau_patience=0)

    def test_critic_size_mismatch(self, tmp_path):
        model = tiny_model(size=64)
        with pytest.raises(ValueError, match="input_size=32"):
            _trainer(tmp_path, 1, enable_checkpointing=False).fit(model, datamodule=_data())


class TestLosses:
    def test_generator_and_critic_losses(self):
        torch.manual_seed(0)
        model = tiny_model()
        image = torch.rand(2, 3, 32, 32) * 2 - 1
        mask = torch.zeros(2, 1, 32, 32)
        mask[:, :, 8:24, 8:24] = 1
        out = model.generator_loss(image, mask, adversarial=False)
        assert set(out) == {"loss", "rec", "hole", "known", "orthogonal"}
        torch.testing.assert_close(out["loss"], out["rec"] + model.orthogonal_weight * out["orthogonal"])
        adv = model.generator_loss(image, mask, adversarial=True)
        assert "adv" in adv
        d = model.critic_loss(image, image.flip(0), mask)
        torch.testing.assert_close(d["loss"], d["wgan"] + 10 * d["gp"])


class TestPredict:
    def test_pad(self):
        image, mask = torch.rand(1, 3, 45, 61), torch.ones(1, 1, 45, 61)
        padded, padded_mask, size = pad_to_multiple(image, mask)
        assert padded.shape[-2:] == (48, 64)
        assert size == (45, 61)
        assert padded_mask[..., 45:, :].sum() == 0

    def test_predict_writes_same_names_and_keeps_known_pixels(self, tmp_path):
        images, masks = write_image_mask_folders(tmp_path)
        out = tmp_path / "out"
        dm = _data(predict_root=str(images), predict_mask_root=str(masks))
        trainer = _trainer(tmp_path, 1, callbacks=[InpaintingPredictionWriter(str(out))])
        trainer.predict(tiny_model(), datamodule=dm, return_predictions=False)
        assert sorted(p.name for p in out.iterdir()) == ["img0.png", "img1.png"]
        for name in ("img0.png", "img1.png"):
            src = np.asarray(Image.open(images / name).convert("RGB"))
            res = np.asarray(Image.open(out / name).convert("RGB"))
            hole = np.asarray(Image.open(masks / name)) > 127
            assert res.shape == src.shape
            assert np.array_equal(res[~hole], src[~hole])
            assert not np.array_equal(res[hole], src[hole])
