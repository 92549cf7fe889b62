"""ANInpaint: the two-phase schedule, one generator pass per batch, options, injected optimisers and evaluators,
baselines in validation, predict."""

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from inpaint_helpers import tiny_demo_data, tiny_model, write_image_mask_folders
from PIL import Image
from pytorch_lightning.callbacks import Callback

from an_inpaint.baselines import classical_inpaint_batch
from an_inpaint.evaluation import InpaintingEvaluator
from an_inpaint.generator import pad_to_multiple
from an_inpaint.predict import InpaintingPredictionWriter
from an_inpaint.settings import PhaseSchedule, PictureSettings
from common.metrics.inpainting import InpaintingMetrics
from common.visualization import to_unit


def _snapshot(module):
    return torch.cat([p.detach().flatten().clone() for p in module.parameters()])


class Recorder(Callback):
    """Per batch: global step before it, phase after it, which networks changed, generator forward passes."""

    def __init__(self):
        self.rows = []
        self.forwards = 0

    def on_fit_start(self, trainer, pl_module):
        def count(*args):
            self.forwards += 1

        pl_module.generator.register_forward_hook(count)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._before = {n: _snapshot(getattr(pl_module, n)) for n in ("generator", "global_critic", "local_critic")}
        self._step, self._forwards = trainer.global_step, self.forwards

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        changed = {n: not torch.equal(v, _snapshot(getattr(pl_module, n))) for n, v in self._before.items()}
        self.rows.append(
            {"step": self._step, "phase": int(pl_module.phase), "forwards": self.forwards - self._forwards, **changed}
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


class TestSchedule:
    def test_phases_each_critic_untouched_in_phase_one_and_one_generator_pass(self, tmp_path):
        model = tiny_model(schedule=PhaseSchedule(adversarial_start_step=3), n_critic=2)
        recorder = Recorder()
        _trainer(tmp_path, 7, callbacks=[recorder], enable_checkpointing=False).fit(model, datamodule=tiny_demo_data())
        rows = recorder.rows
        assert [r["phase"] for r in rows] == [1, 1, 1, 2, 2, 2, 2]
        # Phase 1: the generator changes every batch; neither critic changes (each checked on its own).
        for r in rows[:3]:
            assert r["generator"] and not r["global_critic"] and not r["local_critic"]
        # Phase 2: both critics every batch, the generator every n_critic-th batch.
        assert all(r["global_critic"] and r["local_critic"] for r in rows[3:])
        assert [r["generator"] for r in rows[3:]] == [False, True, False, True]
        assert int(model.critic_steps) == 4
        # One generator pass per training batch, also on batches that update both networks.
        assert [r["forwards"] for r in rows] == [1] * 7

    def test_resume_in_phase_two_stays_there(self, tmp_path):
        model = tiny_model(schedule=PhaseSchedule(adversarial_start_step=2), n_critic=1)
        ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
        _trainer(tmp_path, 4, callbacks=[ckpt]).fit(model, datamodule=tiny_demo_data())
        assert int(model.phase) == 2
        state = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)["state_dict"]
        assert int(state["phase"]) == 2
        resumed = tiny_model(schedule=PhaseSchedule(adversarial_start_step=10**6), n_critic=1)
        recorder = Recorder()
        _trainer(tmp_path, 4, epochs=2, callbacks=[recorder]).fit(
            resumed, datamodule=tiny_demo_data(), ckpt_path=str(tmp_path / "ckpt" / "last.ckpt")
        )
        assert recorder.rows, "the resumed run trained"
        assert all(r["phase"] == 2 and r["global_critic"] and r["local_critic"] for r in recorder.rows)

    def test_plateau_switch(self):
        model = tiny_model(
            schedule=PhaseSchedule(adversarial_start_step=10**6, plateau_patience=2, plateau_min_delta=0.01)
        )
        for loss in (1.0, 0.9, 0.895, 0.85):  # 0.895 is not a 1% improvement; 0.85 is
            model._plateau_update(loss)
        assert int(model.phase) == 1
        model._plateau_update(0.849)
        assert int(model.phase) == 1
        model._plateau_update(0.85)
        assert int(model.phase) == 2

    def test_cosine_learning_rate(self, tmp_path):
        model = tiny_model(
            schedule=PhaseSchedule(adversarial_start_step=10**6, lr_decay="cosine"),
            g_optimizer=lambda params: torch.optim.Adam(params, lr=1e-3, betas=(0.5, 0.9)),
        )
        _trainer(tmp_path, None, epochs=-1, max_steps=4, enable_checkpointing=False).fit(
            model, datamodule=tiny_demo_data()
        )
        g_opt, d_opt = model.optimizers()
        # The last update ran at global step 3 of 4; the factor scales the optimiser's initial learning rate.
        assert g_opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 3 / 4)))
        assert g_opt.param_groups[0]["initial_lr"] == 1e-3
        assert d_opt.param_groups[0]["lr"] == 1e-4  # the critics' rate stays constant
        assert PhaseSchedule(lr_decay="cosine").lr_factor(0, 4) == 1.0
        assert PhaseSchedule().lr_factor(3, 4) == 1.0
        with pytest.raises(ValueError, match="max_steps"):
            PhaseSchedule(lr_decay="cosine").lr_factor(0, -1)

    def test_exception(self):
        with pytest.raises(ValueError, match="n_critic"):
            tiny_model(n_critic=0)
        with pytest.raises(ValueError, match="orthogonal_weight"):
            tiny_model(orthogonal_weight=-1.0)
        with pytest.raises(ValueError, match="plateau_patience"):
            PhaseSchedule(plateau_patience=0)
        with pytest.raises(ValueError, match="adversarial_start_step"):
            PhaseSchedule(adversarial_start_step=-1)
        with pytest.raises(ValueError, match="lr_decay"):
            PhaseSchedule(lr_decay="step")
        with pytest.raises(ValueError, match="baseline"):
            InpaintingEvaluator(baselines=["patchmatch"])
        with pytest.raises(ValueError, match="num_images"):
            PictureSettings(num_images=0)

    def test_critic_size_mismatch(self, tmp_path):
        with pytest.raises(ValueError, match="input_size=32"):
            _trainer(tmp_path, 1, enable_checkpointing=False).fit(tiny_model(size=64), datamodule=tiny_demo_data())


class TestGeneratorLoss:
    def _batch(self):
        torch.manual_seed(0)
        image = torch.rand(2, 3, 32, 32) * 2 - 1
        mask = torch.zeros(2, 1, 32, 32)
        mask[:, :, 8:24, 8:24] = 1
        return {"image": image, "mask": mask}

    def test_terms(self):
        model = tiny_model()
        batch = self._batch()
        out = model.generator(batch["image"], batch["mask"])
        loss, logs = model._generator_loss(out, batch, adversarial=False)
        rec, _ = model.reconstruction(out, batch)
        torch.testing.assert_close(loss, rec + model.orthogonal_weight * logs["orthogonal"])
        assert "adv" not in logs
        loss2, logs2 = model._generator_loss(out, batch, adversarial=True)
        adv, _ = model.adversarial.generator_loss(model.critics, out["inpainted"], batch["mask"])
        torch.testing.assert_close(loss2, loss + adv)

    def test_orthogonal_only_in_phase_two(self):
        model = tiny_model(schedule=PhaseSchedule(orthogonal_in_phase1=False))
        batch = self._batch()
        out = model.generator(batch["image"], batch["mask"])
        _, logs = model._generator_loss(out, batch, adversarial=False)
        assert "orthogonal" not in logs
        _, logs = model._generator_loss(out, batch, adversarial=True)
        assert "orthogonal" in logs


class TestInjected:
    def test_default_optimisers_are_the_papers_adam(self):
        model = tiny_model()
        g_opt, d_opt = model.configure_optimizers()
        for opt in (g_opt, d_opt):
            assert isinstance(opt, torch.optim.Adam)
            assert (opt.defaults["lr"], opt.defaults["betas"]) == (1e-4, (0.5, 0.9))
        assert {id(p) for p in g_opt.param_groups[0]["params"]} == {id(p) for p in model.generator.parameters()}
        critics = [*model.global_critic.parameters(), *model.local_critic.parameters()]
        assert {id(p) for p in d_opt.param_groups[0]["params"]} == {id(p) for p in critics}  # one for both critics

    def test_injected_optimisers(self):
        model = tiny_model(
            g_optimizer=lambda p: torch.optim.SGD(p, lr=0.5), d_optimizer=lambda p: torch.optim.RMSprop(p)
        )
        g_opt, d_opt = model.configure_optimizers()
        assert isinstance(g_opt, torch.optim.SGD) and g_opt.defaults["lr"] == 0.5
        assert isinstance(d_opt, torch.optim.RMSprop)

    def test_test_evaluator_defaults_to_the_validation_settings(self):
        model = tiny_model(val_evaluator=InpaintingEvaluator(baselines=["telea"], area_bins=[0.1, 0.3, 0.6]))
        assert model.test_evaluator is not model.val_evaluator
        assert repr(model.test_evaluator) == repr(model.val_evaluator)
        assert model.test_evaluator.methods == ["model", "telea"]
        own = tiny_model(test_evaluator=InpaintingEvaluator(ssim_convention="matlab"))
        assert own.val_evaluator.methods == ["model"] and "matlab" in repr(own.test_evaluator)
        assert dict(tiny_model().hparams) == {"n_critic": 5, "orthogonal_weight": 2e-4, "an_lr_scale": 1.0}

    def test_test_logs_the_test_evaluators_metrics(self, tmp_path):
        model = tiny_model(val_evaluator=InpaintingEvaluator(baselines=["telea"]))
        metrics = _trainer(tmp_path, 1).test(model, datamodule=tiny_demo_data(), verbose=False)[0]
        assert {"test/psnr", "test/ssim_hole", "test/num_images", "test/telea/psnr"} <= set(metrics)
        assert not any(k.startswith("val/") for k in metrics)


def test_validation_scores_the_baselines_like_the_model(tmp_path):
    model = tiny_model(val_evaluator=InpaintingEvaluator(baselines=["telea", "ns"]), pictures=PictureSettings(1))
    data = tiny_demo_data()
    metrics = _trainer(tmp_path, 1).validate(model, datamodule=data, verbose=False)[0]
    data.setup("validate")
    batch = next(iter(data.val_dataloader()))
    expected = InpaintingMetrics()
    expected.update(to_unit(classical_inpaint_batch(batch["image"], batch["mask"], "telea")), to_unit(batch["image"]),
                    batch["mask"])  # fmt: skip
    assert metrics["val/telea/psnr"] == pytest.approx(float(expected.compute()["psnr"]), abs=1e-4)
    assert metrics["val/ns/ssim"] != metrics["val/telea/ssim"]
    assert metrics["val/num_images"] == len(data.val_set)
    panels = sorted((tmp_path / "images").glob("val_panel_*.png"))
    assert panels, "validation wrote the panel"
    width, height = Image.open(panels[0]).size
    # input | coarse | refined | composited | telea | ns | ground truth, 32-px tiles enlarged 4x to >= 128 px
    assert width == 7 * (128 + 2) + 2
    assert 1 * (128 + 2) + 2 < height < 2 * (128 + 2)  # pictures.num_images rows, plus the column labels


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
        dm = tiny_demo_data(predict_root=str(images), predict_mask_root=str(masks))
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


class _NoHostRead(torch.Tensor):
    """A buffer whose value must not be read on the host (each read would be a device sync on a GPU)."""

    def _fail(self, *args, **kwargs):
        raise AssertionError("the training step read a schedule buffer on the host")

    __int__ = __float__ = __bool__ = __index__ = item = tolist = _fail


class _GuardBuffers(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 1:  # after the first step has read them once
            for name in ("phase", "critic_steps"):
                setattr(pl_module, name, getattr(pl_module, name).as_subclass(_NoHostRead))


def test_training_steps_never_read_the_schedule_buffers_on_the_host(tmp_path):
    model = tiny_model(schedule=PhaseSchedule(adversarial_start_step=2), n_critic=2)
    trainer = _trainer(tmp_path, 6, callbacks=[_GuardBuffers()], enable_checkpointing=False)
    trainer.fit(model, datamodule=tiny_demo_data())
    assert model._phase_state() == {"phase": 2, "critic_steps": 4}  # phase 2 from step 2: batches 3..6 update critics
    assert int(model.phase.as_subclass(torch.Tensor)) == 2 and int(model.critic_steps.as_subclass(torch.Tensor)) == 4
    assert "train/an_rho/attention_post.0" in trainer.callback_metrics  # AN's learned output scale, logged
