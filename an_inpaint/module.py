"""LightningModule of the generative inpainting task (AN paper, Wang et al., CVPR 2020, Sections 4 and 5.1).

Objective (paper eq. 9 and 10): the generator minimises DeepFill v1's reconstruction loss
(:class:`an_inpaint.losses.ReconstructionLoss`) plus, in phase 2, ``lambda_adv`` times the WGAN generator loss of a
global and a local critic on the composited output ``C_hat = G(C, M) * M + Y * (1 - M)``; the critics minimise the
WGAN-GP loss (:class:`an_inpaint.losses.WGANGPLoss`, ``lambda_gp = 10``, gradient penalty restricted to the hole
as in DeepFill). AN's orthogonality regulariser is added with ``orthogonal_weight`` (in both phases, or only in
phase 2 as the authors' code does: ``PhaseSchedule(orthogonal_in_phase1=False)``). The networks, losses, optimisers
and evaluation protocol are injected (``class_path`` in a config), with the same argument names as
:class:`an_gan.module.ANGAN` for the same concepts; the defaults are the paper's.

Two-phase schedule (paper Section 5.1, :class:`an_inpaint.settings.PhaseSchedule`): phase 1 trains with the
reconstruction loss only (the critics are neither used nor updated) until ``adversarial_start_step`` generator
updates (during phase 1 this is ``trainer.global_step``), or earlier when ``plateau_patience`` validations pass
without the validation reconstruction loss improving; phase 2 adds the adversarial term. The phase is a buffer
(saved in checkpoints) and is derived only from quantities identical on every DDP rank. In phase 2 every batch
updates the critics and every ``n_critic``-th batch also updates the generator; on those batches the generator runs
once, its output serving the critic update (detached) and the generator update. Each update is
:func:`common.training.optimization.manual_step`.

Validation and test run an :class:`an_inpaint.evaluation.InpaintingEvaluator` (``val_evaluator``,
``test_evaluator``): PSNR / SSIM / MAE and their hole-only variants on the composited output (per image, then
averaged), optionally per mask-area bin, LPIPS and FID, and optionally the same metrics of OpenCV's classical
inpainting on the same images and holes (``baselines``), so every run shows how it compares with Telea /
Navier-Stokes; validation also logs the mean reconstruction loss (``val/rec_loss``). Validation also writes panels
(input with hole | coarse | refined | composited | ground truth [| CA offsets]) and the AN layouts (``pictures``).
"""

from __future__ import annotations

import copy
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn

from an_inpaint.critics import GlobalCritic, LocalCritic
from an_inpaint.evaluation import InpaintingEvaluator
from an_inpaint.generator import InpaintGenerator, pad_to_multiple
from an_inpaint.losses import ReconstructionLoss, WGANGPLoss
from an_inpaint.panels import log_panels
from an_inpaint.reporting import PHASE2_METRIC, RULE, checkpoint_label
from an_inpaint.settings import PhaseSchedule, PictureSettings
from common.layers import AttentiveNorm2d, an_rho, orthogonal_loss
from common.training.ddp import allow_unused_parameters
from common.training.optimization import manual_step
from common.visualization import to_unit

__all__ = ["ANInpaint"]


def _adam(lr: float):
    return lambda params: torch.optim.Adam(params, lr=lr, betas=(0.5, 0.9))


class ANInpaint(pl.LightningModule):
    """Two-stage inpainting GAN with AN (or contextual attention) and WGAN-GP, trained in two phases.

    Args:
        generator: The inpainting network, ``generator(image, mask) -> {"coarse", "refined", "inpainted"}``
            (default ``InpaintGenerator()``: cnum 32, AN attention branch).
        global_critic: Critic of the whole image, ``critic(image, mask) -> (B,)`` (default ``GlobalCritic()``,
            256x256 inputs).
        local_critic: Critic of the hole, ``critic(image, mask) -> (B,)`` (default ``LocalCritic()``: DeepFill's
            fixed 128 box; use ``MaskedPatchCritic`` for free-form masks).
        reconstruction: The reconstruction loss (default ``ReconstructionLoss()``: DeepFill v1's exact form).
        adversarial: The adversarial loss (default ``WGANGPLoss()``: lambda_adv 1e-3, lambda_gp 10).
        g_optimizer: Optimiser of the generator (default Adam, lr 1e-4, betas (0.5, 0.9): paper Section 5.1; the
            authors' code defaults to lr 1e-5). With ``schedule.lr_decay="cosine"`` its learning rate is the
            optimiser's initial one times the decay factor.
        d_optimizer: The one optimiser of both critics (default Adam, lr 1e-4, betas (0.5, 0.9); DeepFill v1's
            ``train.py`` gives G and D the same Adam settings).
        schedule: The two phases and the generator's learning-rate decay (:class:`an_inpaint.settings.PhaseSchedule`;
            default: phase 1 for 100k generator updates, no plateau switch, orthogonality in both phases, constant
            learning rate).
        n_critic: Critic updates per generator update in phase 2 (DeepFill: 5). WGAN-GP's name for it (Gulrajani et
            al. 2017); ``ANGAN`` keeps SN-GAN's name for the same ratio, ``n_dis``.
        orthogonal_weight: Weight of AN's orthogonality loss ``||W W^T - I||_F^2`` (summed over AN layers; the
            authors' 1e-3 inside the layer times 0.2 in the loss).
        val_evaluator: Protocol of validation (``val/psnr``; in phase 2 also ``val/psnr_phase2``, the best phase-2
            checkpoint of :mod:`an_inpaint.reporting`; the plateau switch): an
            :class:`an_inpaint.evaluation.InpaintingEvaluator` (baselines, area bins, SSIM convention, LPIPS, FID).
            None: ``InpaintingEvaluator()`` (no baselines, no bins, scikit-image SSIM, no LPIPS / FID). Validation
            always runs (``val/rec_loss`` drives the plateau switch); ``--trainer.limit_val_batches 0`` skips it.
        test_evaluator: Protocol of ``test`` (logged as ``test/*``). None: the validation evaluator's settings (unlike
            ``ANGAN``, whose validation and test protocols differ in reference split and seed, the inpainting splits
            come from the datamodule).
        pictures: The validation panels and AN layouts (:class:`an_inpaint.settings.PictureSettings`; default: 8
            images).
        an_lr_scale: The learning rate of the generator's AN parameters (entities, keys, queries, affine, ``rho``)
            as a multiple of ``g_optimizer``'s (1, the paper: one learning rate; an investigation knob, its own
            parameter group, decayed with the rest).
    """

    def __init__(
        self,
        generator: nn.Module | None = None,
        global_critic: nn.Module | None = None,
        local_critic: nn.Module | None = None,
        reconstruction: ReconstructionLoss | None = None,
        adversarial: WGANGPLoss | None = None,
        g_optimizer: OptimizerCallable | None = None,
        d_optimizer: OptimizerCallable | None = None,
        schedule: PhaseSchedule | None = None,
        n_critic: int = 5,
        orthogonal_weight: float = 2e-4,
        val_evaluator: InpaintingEvaluator | None = None,
        test_evaluator: InpaintingEvaluator | None = None,
        pictures: PictureSettings | None = None,
        an_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        objects = ["generator", "global_critic", "local_critic", "reconstruction", "adversarial"]
        objects += ["g_optimizer", "d_optimizer", "schedule", "val_evaluator", "test_evaluator", "pictures"]
        self.save_hyperparameters(ignore=objects)
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        if orthogonal_weight < 0:
            raise ValueError(f"orthogonal_weight must be >= 0, got {orthogonal_weight}")
        if not an_lr_scale > 0:
            raise ValueError(f"an_lr_scale must be > 0, got {an_lr_scale}")
        self.an_lr_scale = an_lr_scale
        self.automatic_optimization = False
        self.generator = generator if generator is not None else InpaintGenerator()
        self.global_critic = global_critic if global_critic is not None else GlobalCritic()
        self.local_critic = local_critic if local_critic is not None else LocalCritic()
        self.reconstruction = reconstruction if reconstruction is not None else ReconstructionLoss()
        self.adversarial = adversarial if adversarial is not None else WGANGPLoss()
        self.g_optimizer, self.d_optimizer = g_optimizer or _adam(1e-4), d_optimizer or _adam(1e-4)
        self.schedule = schedule or PhaseSchedule()
        self.n_critic = n_critic
        self.orthogonal_weight = orthogonal_weight
        self.pictures = pictures or PictureSettings()
        # Schedule state: saved in checkpoints, identical on every rank.
        self.register_buffer("phase", torch.tensor(1, dtype=torch.long))
        self.register_buffer("critic_steps", torch.tensor(0, dtype=torch.long))
        self.register_buffer("plateau_best", torch.tensor(float("inf")))
        self.register_buffer("plateau_bad", torch.tensor(0, dtype=torch.long))
        self.val_evaluator = val_evaluator if val_evaluator is not None else InpaintingEvaluator()
        self.test_evaluator = test_evaluator if test_evaluator is not None else copy.deepcopy(self.val_evaluator)
        self._rec_sum = 0.0
        self._rec_count = 0
        self._panel: dict[str, Any] | None = None
        self._host_phase_state: dict[str, int] | None = None
        self._loaded_step: int | None = None  # global_step of the checkpoint loaded for validate / test

    # ------------------------------------------------------------------------------------------------ helpers
    @property
    def critics(self) -> dict[str, nn.Module]:
        """``{'global': global critic, 'local': local critic}``, as the adversarial loss takes them."""
        return {"global": self.global_critic, "local": self.local_critic}

    def forward(self, image: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """The generator's output dict for images in [-1, 1] and masks with 1 = missing."""
        return self.generator(image, mask)

    @torch.no_grad()
    def inpaint(self, image: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """``{"coarse", "refined", "inpainted"}``, each ``(B, 3, H, W)`` in [-1, 1], for ``image`` ``(B, 3, H, W)`` in
        [-1, 1] of any size and ``mask`` ``(B, 1, H, W)`` (1 = missing): padded to a multiple of 8, cropped back."""
        padded, padded_mask, (height, width) = pad_to_multiple(image, mask)
        out = self.generator(padded, padded_mask)
        return {k: v[..., :height, :width] for k, v in out.items() if k != "offsets"}

    def _phase_state(self) -> dict[str, int]:
        """Host copies of the ``phase`` and ``critic_steps`` buffers: read from the device once after the module is
        built or (re)loaded, then kept in step with the buffers, so a training step never waits for the device."""
        if self._host_phase_state is None:
            self._host_phase_state = {"phase": int(self.phase), "critic_steps": int(self.critic_steps)}
        return self._host_phase_state

    def load_state_dict(self, *args: Any, **kwargs: Any):
        """``nn.Module.load_state_dict``; the host copy of the phase schedule is read again afterwards."""
        self._host_phase_state = None  # the buffers change: read them again when next needed
        return super().load_state_dict(*args, **kwargs)

    def on_train_start(self) -> None:
        """Read the phase schedule from the (possibly resumed) buffers."""
        self._host_phase_state = None

    @property
    def in_adversarial_phase(self) -> bool:
        """Whether training is in phase 2 (reconstruction plus adversarial loss), not phase 1 (reconstruction only)."""
        return self._phase_state()["phase"] == 2

    def _set_phase(self, phase: int) -> None:
        self.phase.fill_(phase)
        self._phase_state()["phase"] = phase

    def _update_phase(self) -> None:
        if self._phase_state()["phase"] == 1 and self.global_step >= self.schedule.adversarial_start_step:
            self._set_phase(2)

    # ---------------------------------------------------------------------------------------------- training
    def configure_optimizers(self):
        """The generator's optimiser (``g_optimizer``) and one optimiser of both critics (``d_optimizer``)."""
        critics = [*self.global_critic.parameters(), *self.local_critic.parameters()]
        if self.an_lr_scale == 1.0:
            return self.g_optimizer(list(self.generator.parameters())), self.d_optimizer(critics)
        an = {id(p) for m in self.generator.modules() if isinstance(m, AttentiveNorm2d) for p in m.parameters()}
        groups = [[p for p in self.generator.parameters() if (id(p) in an) == is_an] for is_an in (False, True)]
        g_opt = self.g_optimizer([{"params": groups[0]}, {"params": groups[1]}])
        g_opt.param_groups[1]["lr"] *= self.an_lr_scale
        return g_opt, self.d_optimizer(critics)

    def setup(self, stage: str) -> None:
        """Check that the global critic's ``input_size`` matches the data resolution."""
        allow_unused_parameters(self.trainer)  # G and critics step in separate backward passes
        size = getattr(self.trainer.datamodule, "resolution", None)
        input_size = getattr(self.global_critic, "input_size", None)
        if stage == "fit" and size is not None and input_size is not None and input_size != size:
            raise ValueError(
                f"the global critic takes {input_size}x{input_size} images but the data resolution is {size}: set "
                f"model.global_critic.init_args.input_size={size}"
            )

    def _decay_generator_lr(self, g_opt) -> None:
        """Set the generator's learning rates to their initial values times ``schedule.lr_decay``'s factor."""
        if self.schedule.lr_decay == "constant":
            return
        factor = self.schedule.lr_factor(self.global_step, self.trainer.max_steps)
        for group in g_opt.param_groups:
            group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor

    def _reconstruction(self, out: dict[str, Tensor], batch: dict[str, Tensor]):
        """The reconstruction loss; in phase 1 with ``schedule.phase1_stages="coarse"`` of the coarse output only."""
        if self.schedule.phase1_stages == "coarse" and not self.in_adversarial_phase:
            out = {"coarse": out["coarse"]}
        return self.reconstruction(out, batch)

    def _generator_loss(self, out: dict[str, Tensor], batch: dict[str, Tensor], adversarial: bool):
        loss, logs = self._reconstruction(out, batch)
        logs["rec"] = loss.detach()
        if self.orthogonal_weight and (adversarial or self.schedule.orthogonal_in_phase1):
            orth = orthogonal_loss(self.generator)
            loss = loss + self.orthogonal_weight * orth
            logs["orthogonal"] = orth.detach()
        if adversarial:
            adv, adv_logs = self.adversarial.generator_loss(self.critics, out["inpainted"], batch["mask"])
            loss = loss + adv
            logs.update(adv_logs)
        logs["g_loss"] = loss.detach()
        return loss, logs

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Phase 1: one generator step on the reconstruction (and orthogonality) loss. Phase 2: a critic step per batch
        and a generator step every ``n_critic`` batches.

        ``batch``: ``{'image': (B, 3, R, R) in [-1, 1], 'mask': (B, 1, R, R), 1 = missing, ...}``.
        """
        image, mask = batch["image"], batch["mask"]
        g_opt, d_opt = self.optimizers()
        self._update_phase()
        adversarial = self.in_adversarial_phase
        g_step = not adversarial or (self._phase_state()["critic_steps"] + 1) % self.n_critic == 0
        with torch.set_grad_enabled(g_step):
            out = self.generator(image, mask)  # once per batch: the critic update and the generator update share it
        logs: dict[str, Tensor | float] = {"phase": float(self._phase_state()["phase"])}
        if adversarial:
            _, d_logs = manual_step(
                self,
                d_opt,
                lambda: self.adversarial.critic_loss(self.critics, image, out["inpainted"], mask),
                name="critics",
            )
            self.critic_steps += 1
            self._phase_state()["critic_steps"] += 1
            logs.update(d_logs)
        if g_step:
            self._decay_generator_lr(g_opt)
            _, g_logs = manual_step(
                self, g_opt, lambda: self._generator_loss(out, batch, adversarial), name="generator"
            )
            logs.update(g_logs)
            logs.update({f"an_rho/{name}": rho for name, rho in an_rho(self.generator).items()})
            self.log("train/rec", g_logs["rec"], prog_bar=True, batch_size=image.shape[0])
        self.log_dict({f"train/{k}": v for k, v in logs.items() if k != "rec"}, batch_size=image.shape[0])

    # -------------------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Any], evaluator: InpaintingEvaluator, with_loss: bool) -> dict[str, Tensor]:
        image, mask = batch["image"], batch["mask"]
        out = self.generator(image, mask)
        out.update(evaluator.update_batch(image, mask, out["inpainted"]))
        if with_loss:
            rec, _ = self._reconstruction(out, batch)
            self._rec_sum += float(rec) * image.shape[0]
            self._rec_count += image.shape[0]
        return out

    def _start_eval(self, evaluator: InpaintingEvaluator) -> None:
        # Reset here (not only after compute): a validation run before fit resets the states inside
        # inference mode, and in-training validation must not update those inference tensors in place.
        evaluator.reset()
        self._rec_sum, self._rec_count, self._panel = 0.0, 0, None

    def on_validation_epoch_start(self) -> None:
        """Reset the validation metrics."""
        self._start_eval(self.val_evaluator)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the checkpoint's ``global_step`` (``test`` does not restore the trainer's)."""
        self._loaded_step = checkpoint.get("global_step")

    def on_test_start(self) -> None:
        """Print which checkpoint is scored and the Table 3 reporting rule (:mod:`an_inpaint.reporting`); rank 0."""
        step = self._loaded_step if self._loaded_step is not None else self.trainer.global_step
        label, sentence = checkpoint_label(self.trainer.ckpt_path, step, self.trainer.max_steps, int(self.phase))
        self.test_checkpoint = {"checkpoint": self.trainer.ckpt_path, "label": label, "step": step}
        if self.trainer.is_global_zero:
            print(f"test: {sentence}.\n  {RULE}.", flush=True)

    def on_test_epoch_start(self) -> None:
        """Reset the test metrics."""
        self._start_eval(self.test_evaluator)

    def _keep_panel(self, batch: dict[str, Any], out: dict[str, Tensor]) -> None:
        n = self.pictures.num_images
        self._panel = {"image": batch["image"][:n], "mask": batch["mask"][:n]}
        self._panel.update({k: v[:n] for k, v in out.items()})
        self._panel["layouts"] = {k: v[:n] for k, v in self.generator.layouts().items()}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Update the validation metrics and the reconstruction loss; keep the first batch for the picture panel."""
        out = self._eval_step(batch, self.val_evaluator, with_loss=True)
        if batch_idx == 0:
            self._keep_panel(batch, out)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Update the test metrics; keep the first batch for the test panel."""
        out = self._eval_step(batch, self.test_evaluator, with_loss=False)
        if batch_idx == 0:
            self._keep_panel(batch, out)

    def _mean_rec_loss(self) -> Tensor:
        totals = torch.tensor([self._rec_sum, float(self._rec_count)], device=self.device, dtype=torch.float64)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        return (totals[0] / totals[1].clamp_min(1)).float()

    def _log_metrics(self, prefix: str, evaluator: InpaintingEvaluator, with_loss: bool) -> dict[str, Tensor]:
        values = evaluator.compute(prefix)
        if with_loss:
            values[f"{prefix}/rec_loss"] = self._mean_rec_loss()
        evaluator.reset()
        psnr = values.pop(f"{prefix}/psnr")
        self.log(f"{prefix}/psnr", psnr, prog_bar=True, sync_dist=False)
        self.log_dict(values, sync_dist=False)  # already reduced over ranks (sums)
        values[f"{prefix}/psnr"] = psnr
        return values

    def on_validation_epoch_end(self) -> None:
        """Log ``val/*`` metrics and the panel; in phase 1, step the plateau switch on ``val/rec_loss``."""
        values = self._log_metrics("val", self.val_evaluator, with_loss=True)
        if self.trainer.sanity_checking:
            return
        if self._panel is not None:
            log_panels(self.trainer, self._panel, "val")
        fitting = self.trainer.state.fn == "fit"
        if fitting and self.in_adversarial_phase:  # what best-phase2-psnr-*.ckpt monitors (an_inpaint.reporting)
            self.log(PHASE2_METRIC, values["val/psnr"], sync_dist=False)
        if fitting and self.schedule.plateau_patience is not None and not self.in_adversarial_phase:
            self._plateau_update(float(values["val/rec_loss"]))

    def on_test_epoch_end(self) -> None:
        """Log the ``test/*`` metrics and the panel of the first test batch (``test/panel``, ``test/layout_*``)."""
        self._log_metrics("test", self.test_evaluator, with_loss=False)
        if self._panel is not None:
            log_panels(self.trainer, self._panel, "test")

    def _plateau_update(self, loss: float) -> None:
        if loss < float(self.plateau_best) * (1.0 - self.schedule.plateau_min_delta):
            self.plateau_best.fill_(loss)
            self.plateau_bad.zero_()
        else:
            self.plateau_bad += 1
        if int(self.plateau_bad) >= self.schedule.plateau_patience:
            self._set_phase(2)

    # ------------------------------------------------------------------------------------------- predict
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Inpaint one batch; returns ``{'inpainted', 'image'}`` ``(B, 3, H, W)`` in [0, 1], ``'mask'`` ``(B, 1, H, W)``
        and ``'name'``.
        """
        out = self.inpaint(batch["image"], batch["mask"])
        return {
            "inpainted": to_unit(out["inpainted"]),
            "image": to_unit(batch["image"]),
            "mask": batch["mask"],
            "name": batch["name"],
        }
