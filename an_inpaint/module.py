"""LightningModule of the generative inpainting task (AN paper, Wang et al., CVPR 2020, Sections 4 and 5.1).

Objective (paper eq. 9 and 10): the generator minimises DeepFill v1's reconstruction loss
(:class:`an_inpaint.losses.ReconstructionLoss`) plus, in phase 2, ``lambda_adv`` times the WGAN generator loss of a
global and a local critic on the composited output ``C_hat = G(C, M) * M + Y * (1 - M)``; the critics minimise the
WGAN-GP loss (:class:`an_inpaint.losses.WGANGPLoss`, ``lambda_gp = 10``, gradient penalty restricted to the hole
as in DeepFill). AN's orthogonality regulariser is added with ``orthogonal_weight`` (in both phases, or only in
phase 2 as the authors' code does, ``orthogonal_in_phase1=False``).

Two-phase schedule (paper Section 5.1): phase 1 trains with the reconstruction loss only (the critics are neither
used nor updated) until ``adversarial_start_step`` generator updates (during phase 1 this is
``trainer.global_step``), or earlier when ``plateau_patience`` validations pass without the validation
reconstruction loss improving; phase 2 adds the adversarial term. The phase is a buffer (saved in checkpoints) and
is derived only from quantities identical on every DDP rank. In phase 2 every batch updates the critics and every
``n_critic``-th batch also updates the generator; on those batches the generator runs once, its output serving the
critic update (detached) and the generator update. Each update is :func:`common.training.optimization.manual_step`.

Validation and test report PSNR / SSIM / MAE and their hole-only variants on the composited output
(:class:`common.metrics.InpaintingMetrics`; per image, then averaged), optionally per mask-area bin, LPIPS and FID,
and optionally the same metrics of OpenCV's classical inpainting on the same images and holes (``baselines``), so
every run shows how it compares with Telea / Navier-Stokes. Validation also writes panels
(input with hole | coarse | refined | composited | ground truth [| CA offsets]) and the AN layouts.
"""

from __future__ import annotations

from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from an_inpaint.baselines import METHODS, classical_inpaint_batch
from an_inpaint.critics import GlobalCritic, LocalCritic
from an_inpaint.generator import InpaintGenerator, pad_to_multiple
from an_inpaint.losses import ReconstructionLoss, WGANGPLoss
from an_inpaint.panels import log_panels
from common.layers import orthogonal_loss
from common.metrics.inpainting import InpaintingMetrics
from common.metrics.perceptual import FIDMetric, LPIPSMetric
from common.training.ddp import allow_unused_parameters
from common.training.optimization import manual_step
from common.visualization import to_unit

__all__ = ["ANInpaint"]

Baseline = Literal["telea", "ns", "harmonic"]


class _EvalMetrics(nn.Module):
    """The metrics of one evaluation stage: our model and each classical baseline, plus optional LPIPS / FID."""

    def __init__(self, methods: list[str], area_bins: list[float] | None, lpips: bool, fid: bool, ssim: str) -> None:
        super().__init__()
        self.methods = methods
        self.pixel = nn.ModuleDict(
            {m: InpaintingMetrics(area_bins=area_bins, ssim_convention=ssim, sync_on_compute=True) for m in methods}
        )
        self.lpips = nn.ModuleDict({m: LPIPSMetric() for m in methods}) if lpips else None
        self.fid = nn.ModuleDict({m: FIDMetric() for m in methods}) if fid else None

    def reset(self) -> None:
        for group in (self.pixel, self.lpips, self.fid):
            for metric in (group or {}).values():
                metric.reset()

    def update(self, method: str, pred: Tensor, target: Tensor, mask: Tensor) -> None:
        self.pixel[method].update(pred, target, mask)
        if self.lpips is not None:
            self.lpips[method].update(pred, target)
        if self.fid is not None:
            self.fid[method].update(pred, target)

    def compute(self, prefix: str) -> dict[str, Tensor]:
        values = {f"{prefix}/num_images": torch.tensor(float(self.pixel["model"].num_images()["all"]))}
        for method in self.methods:
            key = prefix if method == "model" else f"{prefix}/{method}"
            values.update({f"{key}/{k}": v for k, v in self.pixel[method].compute().items()})
            if self.lpips is not None:
                values[f"{key}/lpips"] = self.lpips[method].compute()
            if self.fid is not None:
                values[f"{key}/fid"] = self.fid[method].compute()
        return values


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
        lr: Adam learning rate of the generator (paper: 1e-4; the authors' code defaults to 1e-5).
        critic_lr: Adam learning rate of the critics (default: ``lr``).
        betas: Adam betas of both optimizers (paper: (0.5, 0.9)).
        lr_schedule: ``"constant"`` (the paper) or ``"cosine"`` (the generator's learning rate decays to 0 along a
            half cosine over ``trainer.max_steps`` optimiser steps; for short runs).
        n_critic: Critic updates per generator update in phase 2 (DeepFill: 5).
        orthogonal_weight: Weight of AN's orthogonality loss ``||W W^T - I||_F^2`` (summed over AN layers; the
            authors' 1e-3 inside the layer times 0.2 in the loss).
        orthogonal_in_phase1: Add the orthogonality loss in phase 1 too (``False``: phase 2 only, the authors' code).
        adversarial_start_step: Generator updates of phase 1 (reconstruction only) before the critics start.
        plateau_patience: If set, also switch to phase 2 after this many validation runs without the validation
            reconstruction loss improving by ``plateau_min_delta`` (relative).
        plateau_min_delta: Relative improvement that resets the plateau counter.
        baselines: Classical methods scored on the same evaluation images and holes (``"telea"``, ``"ns"``: OpenCV
            ``cv2.inpaint``, radius 3; ``"harmonic"``: :func:`an_inpaint.fill.harmonic_fill`), logged as
            ``val/<method>/psnr`` etc.
        area_bins: Hole-area fractions that bin the evaluation metrics (e.g. ``[0.1, 0.2, ..., 0.6]``; ``None``: no
            bins), logged as ``<stage>/psnr@10-20%`` etc.
        ssim_convention: ``"skimage"`` (default) or ``"matlab"`` (see :mod:`common.metrics.ssim`).
        lpips: Also LPIPS (AlexNet; torchvision downloads the backbone weights once).
        fid: Also FID (Inception; torch-fidelity downloads its weights once).
        num_panel_images: Validation samples shown in the image panels.
    """

    def __init__(
        self,
        generator: nn.Module | None = None,
        global_critic: nn.Module | None = None,
        local_critic: nn.Module | None = None,
        reconstruction: ReconstructionLoss | None = None,
        adversarial: WGANGPLoss | None = None,
        lr: float = 1e-4,
        critic_lr: float | None = None,
        betas: tuple[float, float] = (0.5, 0.9),
        lr_schedule: Literal["constant", "cosine"] = "constant",
        n_critic: int = 5,
        orthogonal_weight: float = 2e-4,
        orthogonal_in_phase1: bool = True,
        adversarial_start_step: int = 100_000,
        plateau_patience: int | None = None,
        plateau_min_delta: float = 1e-3,
        baselines: list[Baseline] | None = None,
        area_bins: list[float] | None = None,
        ssim_convention: Literal["skimage", "matlab"] = "skimage",
        lpips: bool = False,
        fid: bool = False,
        num_panel_images: int = 8,
    ) -> None:
        super().__init__()
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        if adversarial_start_step < 0:
            raise ValueError(f"adversarial_start_step must be >= 0, got {adversarial_start_step}")
        if plateau_patience is not None and plateau_patience < 1:
            raise ValueError(f"plateau_patience must be >= 1 or None, got {plateau_patience}")
        if lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
        unknown = sorted(set(baselines or []) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown baseline(s) {unknown}; choose from {list(METHODS)}")
        self.save_hyperparameters(
            ignore=["generator", "global_critic", "local_critic", "reconstruction", "adversarial"]
        )
        self.automatic_optimization = False
        self.generator = generator if generator is not None else InpaintGenerator()
        self.global_critic = global_critic if global_critic is not None else GlobalCritic()
        self.local_critic = local_critic if local_critic is not None else LocalCritic()
        self.reconstruction = reconstruction if reconstruction is not None else ReconstructionLoss()
        self.adversarial = adversarial if adversarial is not None else WGANGPLoss()
        self.lr = lr
        self.critic_lr = critic_lr if critic_lr is not None else lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.lr_schedule = lr_schedule
        self.n_critic = n_critic
        self.orthogonal_weight = orthogonal_weight
        self.orthogonal_in_phase1 = orthogonal_in_phase1
        self.adversarial_start_step = adversarial_start_step
        self.plateau_patience = plateau_patience
        self.plateau_min_delta = plateau_min_delta
        self.num_panel_images = num_panel_images
        # Schedule state: saved in checkpoints, identical on every rank.
        self.register_buffer("phase", torch.tensor(1, dtype=torch.long))
        self.register_buffer("critic_steps", torch.tensor(0, dtype=torch.long))
        self.register_buffer("plateau_best", torch.tensor(float("inf")))
        self.register_buffer("plateau_bad", torch.tensor(0, dtype=torch.long))
        methods = ["model", *(baselines or [])]
        self.val_metrics = _EvalMetrics(methods, area_bins, lpips, fid, ssim_convention)
        self.test_metrics = _EvalMetrics(methods, area_bins, lpips, fid, ssim_convention)
        self._rec_sum = 0.0
        self._rec_count = 0
        self._panel: dict[str, Any] | None = None
        self._host_schedule: dict[str, int] | None = None

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

    def _schedule(self) -> dict[str, int]:
        """Host copies of the ``phase`` and ``critic_steps`` buffers: read from the device once after the module is
        built or (re)loaded, then kept in step with the buffers, so a training step never waits for the device."""
        if self._host_schedule is None:
            self._host_schedule = {"phase": int(self.phase), "critic_steps": int(self.critic_steps)}
        return self._host_schedule

    def load_state_dict(self, *args: Any, **kwargs: Any):
        """``nn.Module.load_state_dict``; the host copy of the phase schedule is read again afterwards."""
        self._host_schedule = None  # the buffers change: read them again when next needed
        return super().load_state_dict(*args, **kwargs)

    def on_train_start(self) -> None:
        """Read the phase schedule from the (possibly resumed) buffers."""
        self._host_schedule = None

    @property
    def in_adversarial_phase(self) -> bool:
        """Whether training is in phase 2 (reconstruction plus adversarial loss), not phase 1 (reconstruction only)."""
        return self._schedule()["phase"] == 2

    def _set_phase(self, phase: int) -> None:
        self.phase.fill_(phase)
        self._schedule()["phase"] = phase

    def _update_phase(self) -> None:
        if self._schedule()["phase"] == 1 and self.global_step >= self.adversarial_start_step:
            self._set_phase(2)

    # ---------------------------------------------------------------------------------------------- training
    def configure_optimizers(self):
        """Adam for the generator (``lr``) and one Adam for both critics (``critic_lr``), both with ``betas``."""
        critics = [*self.global_critic.parameters(), *self.local_critic.parameters()]
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas)
        d_opt = torch.optim.Adam(critics, lr=self.critic_lr, betas=self.betas)
        return g_opt, d_opt

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

    def _scheduled_lr(self) -> float:
        if self.lr_schedule == "constant":
            return self.lr
        total = self.trainer.max_steps
        if total is None or total <= 0:
            raise ValueError("lr_schedule='cosine' needs trainer.max_steps > 0")
        progress = min(self.global_step / total, 1.0)
        return self.lr * 0.5 * (1.0 + torch.cos(torch.tensor(progress * torch.pi)).item())

    def _generator_loss(self, out: dict[str, Tensor], batch: dict[str, Tensor], adversarial: bool):
        loss, logs = self.reconstruction(out, batch)
        logs["rec"] = loss.detach()
        if self.orthogonal_weight and (adversarial or self.orthogonal_in_phase1):
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
        g_step = not adversarial or (self._schedule()["critic_steps"] + 1) % self.n_critic == 0
        with torch.set_grad_enabled(g_step):
            out = self.generator(image, mask)  # once per batch: the critic update and the generator update share it
        logs: dict[str, Tensor | float] = {"phase": float(self._schedule()["phase"])}
        if adversarial:
            _, d_logs = manual_step(
                self,
                d_opt,
                lambda: self.adversarial.critic_loss(self.critics, image, out["inpainted"], mask),
                name="critics",
            )
            self.critic_steps += 1
            self._schedule()["critic_steps"] += 1
            logs.update(d_logs)
        if g_step:
            for group in g_opt.param_groups:
                group["lr"] = self._scheduled_lr()
            _, g_logs = manual_step(
                self, g_opt, lambda: self._generator_loss(out, batch, adversarial), name="generator"
            )
            logs.update(g_logs)
            self.log("train/rec", g_logs["rec"], prog_bar=True, batch_size=image.shape[0])
        self.log_dict({f"train/{k}": v for k, v in logs.items() if k != "rec"}, batch_size=image.shape[0])

    # -------------------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Any], metrics: _EvalMetrics, with_loss: bool) -> dict[str, Tensor]:
        image, mask = batch["image"], batch["mask"]
        out = self.generator(image, mask)
        target = to_unit(image)
        metrics.update("model", to_unit(out["inpainted"]), target, mask)
        for method in metrics.methods[1:]:
            out[method] = classical_inpaint_batch(image, mask, method)
            metrics.update(method, to_unit(out[method]), target, mask)
        if with_loss:
            rec, _ = self.reconstruction(out, batch)
            self._rec_sum += float(rec) * image.shape[0]
            self._rec_count += image.shape[0]
        return out

    def _start_eval(self, metrics: _EvalMetrics) -> None:
        # Reset here (not only after compute): a validation run before fit resets the states inside
        # inference mode, and in-training validation must not update those inference tensors in place.
        metrics.reset()
        self._rec_sum, self._rec_count, self._panel = 0.0, 0, None

    def on_validation_epoch_start(self) -> None:
        """Reset the validation metrics."""
        self._start_eval(self.val_metrics)

    def on_test_epoch_start(self) -> None:
        """Reset the test metrics."""
        self._start_eval(self.test_metrics)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Update the validation metrics and the reconstruction loss; keep the first batch for the picture panel."""
        out = self._eval_step(batch, self.val_metrics, with_loss=True)
        if batch_idx == 0:
            n = self.num_panel_images
            self._panel = {"image": batch["image"][:n], "mask": batch["mask"][:n]}
            self._panel.update({k: v[:n] for k, v in out.items()})
            self._panel["layouts"] = {k: v[:n] for k, v in self.generator.layouts().items()}
            self._panel["fill_names"] = list(getattr(self.generator, "mixture_fills", ()))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Update the test metrics."""
        self._eval_step(batch, self.test_metrics, with_loss=False)

    def _mean_rec_loss(self) -> Tensor:
        totals = torch.tensor([self._rec_sum, float(self._rec_count)], device=self.device, dtype=torch.float64)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        return (totals[0] / totals[1].clamp_min(1)).float()

    def _log_metrics(self, prefix: str, metrics: _EvalMetrics, with_loss: bool) -> dict[str, Tensor]:
        values = metrics.compute(prefix)
        if with_loss:
            values[f"{prefix}/rec_loss"] = self._mean_rec_loss()
        metrics.reset()
        psnr = values.pop(f"{prefix}/psnr")
        self.log(f"{prefix}/psnr", psnr, prog_bar=True, sync_dist=False)
        self.log_dict(values, sync_dist=False)  # already reduced over ranks (sums)
        values[f"{prefix}/psnr"] = psnr
        return values

    def on_validation_epoch_end(self) -> None:
        """Log ``val/*`` metrics and the panel; in phase 1, step the plateau switch on ``val/rec_loss``."""
        values = self._log_metrics("val", self.val_metrics, with_loss=True)
        if self.trainer.sanity_checking:
            return
        if self._panel is not None:
            log_panels(self.trainer, self._panel)
        fitting = self.trainer.state.fn == "fit"
        if fitting and self.plateau_patience is not None and not self.in_adversarial_phase:
            self._plateau_update(float(values["val/rec_loss"]))

    def on_test_epoch_end(self) -> None:
        """Log the ``test/*`` metrics."""
        self._log_metrics("test", self.test_metrics, with_loss=False)

    def _plateau_update(self, loss: float) -> None:
        if loss < float(self.plateau_best) * (1.0 - self.plateau_min_delta):
            self.plateau_best.fill_(loss)
            self.plateau_bad.zero_()
        else:
            self.plateau_bad += 1
        if int(self.plateau_bad) >= self.plateau_patience:
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
