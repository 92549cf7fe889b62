"""LightningModule of the generative inpainting task (AN paper, Wang et al., CVPR 2020, Sections 4 and 5.1).

Objective (paper eq. 9 and 10): the generator minimises DeepFill v1's reconstruction loss (see
:mod:`an_inpaint.losses`) plus ``lambda_adv`` times the WGAN generator loss of a global and a local critic on the
composited output ``C_hat = G(C, M) * M + Y * (1 - M)``; the critics minimise the WGAN-GP loss with
``lambda_gp = 10`` and the gradient penalty restricted to the hole (DeepFill). AN's orthogonality regulariser is
added with ``orthogonal_weight``.

Two-phase schedule (paper Section 5.1): phase 1 trains with the reconstruction loss only (``lambda_adv = 0``, the
critics are neither used nor updated) until ``adversarial_start_step`` generator updates (during phase 1 this is
``trainer.global_step``), or earlier when ``plateau_patience`` validations pass without the validation
reconstruction loss improving; phase 2 adds the adversarial term. The phase is a buffer (saved in checkpoints,
so a run resumed in phase 2 stays there) and is derived only from quantities that are identical on every DDP rank
(the global step and the all-reduced validation loss). In phase 2 every batch updates the critics and every
``n_critic``-th batch also updates the generator (``n_critic`` critic updates, each on a fresh batch, per generator
update). Adam, lr 1e-4, betas (0.5, 0.9) for both.

Validation reports PSNR / SSIM / MAE (and their hole-only variants) of the composited refined output, in [0, 1]
RGB quantised to uint8, per image then averaged (the paper's Table 3 protocol), plus panels
(input with hole | coarse | refined | composited | ground truth) and the AN layouts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import Tensor, nn

from an_inpaint.losses import compose, reconstruction_loss
from an_inpaint.networks import GlobalCritic, InpaintGenerator, LocalCritic
from common.callbacks.images import log_image, results_dir
from common.ddp import allow_unused_parameters
from common.layers import orthogonal_loss
from common.losses.wgan_gp import gradient_penalty, wgan_d_loss, wgan_g_loss
from common.metrics.inpainting import InpaintingMetrics
from common.visualization import image_grid, layout_panel, save_png, to_unit

__all__ = ["ANInpaint", "InpaintingPredictionWriter", "load_inpainter", "pad_to_multiple"]


def pad_to_multiple(image: Tensor, mask: Tensor, multiple: int = 8) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """Pad image (replicate) and mask (with known pixels) at the bottom/right to a multiple of ``multiple``.

    Returns:
        The padded image and mask and the original ``(H, W)``.
    """
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=0.0)
    return image, mask, (height, width)


class ANInpaint(pl.LightningModule):
    """Two-stage inpainting GAN with AN (or contextual attention) and WGAN-GP, trained in two phases.

    Args:
        generator: The inpainting network, called as ``generator(image, mask) -> (coarse, refined)``
            (default ``InpaintGenerator()``: cnum 32, AN attention branch).
        global_critic: Critic of the whole image, ``critic(image, mask) -> (B,)`` (default ``GlobalCritic()``,
            256x256 inputs).
        local_critic: Critic of the hole, ``critic(image, mask) -> (B,)`` (default ``LocalCritic()``; use
            ``MaskedPatchCritic`` for free-form masks).
        lr: Adam learning rate of the generator (paper: 1e-4; the authors' code defaults to 1e-5).
        critic_lr: Adam learning rate of the critics (default: ``lr``).
        betas: Adam betas of both optimizers (paper: (0.5, 0.9)).
        n_critic: Critic updates per generator update in phase 2 (DeepFill: 5).
        lambda_gp: Gradient-penalty weight (paper eq. 10: 10).
        lambda_adv: Adversarial weight in phase 2 (paper: 1e-3; phase 1 uses 0).
        global_adv_weight: Weight of the global critic's term relative to the local one (DeepFill: 1).
        hole_weight: Hole L1 weight (DeepFill ``l1_loss_alpha`` 1.2).
        known_weight: Known-region L1 weight (DeepFill ``ae_loss_alpha`` 1.2).
        coarse_weight: Weight of the coarse output's L1 terms (DeepFill ``coarse_alpha`` 1.2).
        discount_gamma: Spatial discounting factor (DeepFill: 0.9; 1 disables).
        orthogonal_weight: Weight of AN's orthogonality loss ``||W W^T - I||_F^2`` (summed over AN layers).
        adversarial_start_step: Generator updates of phase 1 (reconstruction only) before the critics start.
        plateau_patience: If set, also switch to phase 2 after this many validation runs without the validation
            reconstruction loss improving by ``plateau_min_delta`` (relative).
        plateau_min_delta: Relative improvement that resets the plateau counter.
        num_panel_images: Validation samples shown in the image panels.
    """

    def __init__(
        self,
        generator: nn.Module | None = None,
        global_critic: nn.Module | None = None,
        local_critic: nn.Module | None = None,
        lr: float = 1e-4,
        critic_lr: float | None = None,
        betas: tuple[float, float] = (0.5, 0.9),
        n_critic: int = 5,
        lambda_gp: float = 10.0,
        lambda_adv: float = 1e-3,
        global_adv_weight: float = 1.0,
        hole_weight: float = 1.2,
        known_weight: float = 1.2,
        coarse_weight: float = 1.2,
        discount_gamma: float = 0.9,
        orthogonal_weight: float = 2e-4,
        adversarial_start_step: int = 100_000,
        plateau_patience: int | None = None,
        plateau_min_delta: float = 1e-3,
        num_panel_images: int = 8,
    ) -> None:
        super().__init__()
        if n_critic < 1:
            raise ValueError(f"n_critic must be >= 1, got {n_critic}")
        if adversarial_start_step < 0:
            raise ValueError(f"adversarial_start_step must be >= 0, got {adversarial_start_step}")
        if plateau_patience is not None and plateau_patience < 1:
            raise ValueError(f"plateau_patience must be >= 1 or None, got {plateau_patience}")
        self.save_hyperparameters(ignore=["generator", "global_critic", "local_critic"])
        self.automatic_optimization = False
        self.generator = generator if generator is not None else InpaintGenerator()
        self.global_critic = global_critic if global_critic is not None else GlobalCritic()
        self.local_critic = local_critic if local_critic is not None else LocalCritic()
        self.lr = lr
        self.critic_lr = critic_lr if critic_lr is not None else lr
        self.betas = (float(betas[0]), float(betas[1]))
        self.n_critic = n_critic
        self.lambda_gp = lambda_gp
        self.lambda_adv = lambda_adv
        self.global_adv_weight = global_adv_weight
        self.rec_weights = {
            "hole_weight": hole_weight,
            "known_weight": known_weight,
            "coarse_weight": coarse_weight,
            "gamma": discount_gamma,
        }
        self.orthogonal_weight = orthogonal_weight
        self.adversarial_start_step = adversarial_start_step
        self.plateau_patience = plateau_patience
        self.plateau_min_delta = plateau_min_delta
        self.num_panel_images = num_panel_images
        # Schedule state: saved in checkpoints, identical on every rank.
        self.register_buffer("phase", torch.tensor(1, dtype=torch.long))
        self.register_buffer("critic_steps", torch.tensor(0, dtype=torch.long))
        self.register_buffer("plateau_best", torch.tensor(float("inf")))
        self.register_buffer("plateau_bad", torch.tensor(0, dtype=torch.long))
        self.val_metrics = InpaintingMetrics(quantize=True, hole_metrics=True)
        self.test_metrics = InpaintingMetrics(quantize=True, hole_metrics=True)
        self._rec_sum = 0.0
        self._rec_count = 0
        self._panel: dict[str, Tensor] | None = None

    # ------------------------------------------------------------------------------------------------ helpers
    def forward(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(coarse, refined)`` raw outputs for images in [-1, 1] and masks with 1 = missing."""
        return self.generator(image, mask)

    @torch.no_grad()
    def inpaint(self, image: Tensor, mask: Tensor) -> Tensor:
        """Composited result for images of any size (padded to a multiple of 8, then cropped back)."""
        padded, padded_mask, (height, width) = pad_to_multiple(image, mask)
        _, refined = self.generator(padded, padded_mask)
        return compose(refined[..., :height, :width], image, mask)

    @property
    def in_adversarial_phase(self) -> bool:
        return int(self.phase) == 2

    def _update_phase(self) -> None:
        if int(self.phase) == 1 and self.global_step >= self.adversarial_start_step:
            self.phase.fill_(2)

    def _critic_scores(self, images: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return self.global_critic(images, mask), self.local_critic(images, mask)

    def critic_loss(self, real: Tensor, fake: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """WGAN-GP critic loss (paper eq. 10) of both critics; the penalty is restricted to the hole."""
        real_g, real_l = self._critic_scores(real, mask)
        fake_g, fake_l = self._critic_scores(fake, mask)
        wgan = wgan_d_loss(real_g, fake_g) + wgan_d_loss(real_l, fake_l)
        gp = gradient_penalty(lambda x: self.global_critic(x, mask), real, fake, mask=mask)
        gp = gp + gradient_penalty(lambda x: self.local_critic(x, mask), real, fake, mask=mask)
        return {"loss": wgan + self.lambda_gp * gp, "wgan": wgan, "gp": gp}

    def generator_loss(self, image: Tensor, mask: Tensor, adversarial: bool) -> dict[str, Tensor]:
        """Reconstruction (+ orthogonality) loss, plus ``lambda_adv`` times the WGAN term in phase 2."""
        coarse, refined = self.generator(image, mask)
        out = reconstruction_loss(coarse, refined, image, mask, **self.rec_weights)
        out["rec"] = out["loss"]
        loss = out["rec"]
        if self.orthogonal_weight:
            out["orthogonal"] = orthogonal_loss(self.generator)
            loss = loss + self.orthogonal_weight * out["orthogonal"]
        if adversarial:
            fake_g, fake_l = self._critic_scores(compose(refined, image, mask), mask)
            out["adv"] = self.global_adv_weight * wgan_g_loss(fake_g) + wgan_g_loss(fake_l)
            loss = loss + self.lambda_adv * out["adv"]
        out["loss"] = loss
        return out

    # ---------------------------------------------------------------------------------------------- training
    def configure_optimizers(self):
        critics = [*self.global_critic.parameters(), *self.local_critic.parameters()]
        g_opt = torch.optim.Adam(self.generator.parameters(), lr=self.lr, betas=self.betas)
        d_opt = torch.optim.Adam(critics, lr=self.critic_lr, betas=self.betas)
        return g_opt, d_opt

    def setup(self, stage: str) -> None:
        allow_unused_parameters(self.trainer)  # G and critics step in separate backward passes
        size = getattr(self.trainer.datamodule, "resolution", None)
        input_size = getattr(self.global_critic, "input_size", None)
        if stage == "fit" and size is not None and input_size is not None and input_size != size:
            raise ValueError(
                f"the global critic takes {input_size}x{input_size} images but the data resolution is {size}: set "
                f"model.global_critic.init_args.input_size={size}"
            )

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        image, mask = batch["image"], batch["mask"]
        g_opt, d_opt = self.optimizers()
        self._update_phase()
        adversarial = self.in_adversarial_phase
        logs: dict[str, Tensor | float] = {"train/phase": float(self.phase)}
        if adversarial:
            self.toggle_optimizer(d_opt)
            with torch.no_grad():
                _, refined = self.generator(image, mask)
            d_out = self.critic_loss(image, compose(refined, image, mask), mask)
            d_opt.zero_grad()
            self.manual_backward(d_out["loss"])
            d_opt.step()
            self.untoggle_optimizer(d_opt)
            self.critic_steps += 1
            logs.update({"train/d_loss": d_out["loss"], "train/d_wgan": d_out["wgan"], "train/gp": d_out["gp"]})
            if int(self.critic_steps) % self.n_critic != 0:
                self.log_dict(logs, prog_bar=False, batch_size=image.shape[0])
                return
        self.toggle_optimizer(g_opt)
        g_out = self.generator_loss(image, mask, adversarial)
        g_opt.zero_grad()
        self.manual_backward(g_out["loss"])
        g_opt.step()
        self.untoggle_optimizer(g_opt)
        logs.update({f"train/{k}": v for k, v in g_out.items() if k not in ("loss", "rec")})
        logs["train/g_loss"] = g_out["loss"]
        self.log("train/rec", g_out["rec"], prog_bar=True, batch_size=image.shape[0])
        self.log_dict(logs, batch_size=image.shape[0])

    # -------------------------------------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Any], metrics: InpaintingMetrics) -> dict[str, Tensor]:
        image, mask = batch["image"], batch["mask"]
        coarse, refined = self.generator(image, mask)
        composited = compose(refined, image, mask)
        metrics.update(to_unit(composited), to_unit(image), mask)
        rec = reconstruction_loss(coarse, refined, image, mask, **self.rec_weights)["loss"]
        self._rec_sum += float(rec) * image.shape[0]
        self._rec_count += image.shape[0]
        return {"coarse": coarse, "refined": refined, "composited": composited}

    def _start_eval(self, metrics: InpaintingMetrics) -> None:
        # Reset here (not only after compute): a validation run before fit resets the states inside
        # inference mode, and in-training validation must not update those inference tensors in place.
        metrics.reset()
        self._rec_sum, self._rec_count, self._panel = 0.0, 0, None

    def on_validation_epoch_start(self) -> None:
        self._start_eval(self.val_metrics)

    def on_test_epoch_start(self) -> None:
        self._start_eval(self.test_metrics)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self._eval_step(batch, self.val_metrics)
        if batch_idx == 0:
            n = self.num_panel_images
            self._panel = {"image": batch["image"][:n], "mask": batch["mask"][:n]}
            self._panel.update({k: v[:n] for k, v in out.items()})
            self._panel["layouts"] = {k: v[:n] for k, v in self.generator_layouts().items()}

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics)

    def generator_layouts(self) -> dict[str, Tensor]:
        layouts = getattr(self.generator, "layouts", None)
        return layouts() if callable(layouts) else {}

    def _mean_rec_loss(self) -> Tensor:
        totals = torch.tensor([self._rec_sum, float(self._rec_count)], device=self.device, dtype=torch.float64)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        return (totals[0] / totals[1].clamp_min(1)).float()

    def _log_metrics(self, prefix: str, metrics: InpaintingMetrics) -> dict[str, Tensor]:
        values = {f"{prefix}/{k}": v for k, v in metrics.compute().items()}
        values[f"{prefix}/rec_loss"] = self._mean_rec_loss()
        metrics.reset()
        psnr = values.pop(f"{prefix}/psnr")
        self.log(f"{prefix}/psnr", psnr, prog_bar=True)
        self.log_dict(values)
        values[f"{prefix}/psnr"] = psnr
        return values

    def on_validation_epoch_end(self) -> None:
        values = self._log_metrics("val", self.val_metrics)
        if self.trainer.sanity_checking:
            return
        self._log_panels()
        fitting = self.trainer.state.fn == "fit"
        if fitting and self.plateau_patience is not None and not self.in_adversarial_phase:
            self._plateau_update(float(values["val/rec_loss"]))

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test", self.test_metrics)

    def _plateau_update(self, loss: float) -> None:
        if loss < float(self.plateau_best) * (1.0 - self.plateau_min_delta):
            self.plateau_best.fill_(loss)
            self.plateau_bad.zero_()
        else:
            self.plateau_bad += 1
        if int(self.plateau_bad) >= self.plateau_patience:
            self.phase.fill_(2)

    def _log_panels(self) -> None:
        if self._panel is None:
            return
        p = self._panel
        masked = p["image"] * (1 - p["mask"]) + p["mask"]  # the hole shown in white
        columns = [masked, p["coarse"], p["refined"], p["composited"], p["image"]]
        rows = torch.stack([to_unit(c.float()) for c in columns], dim=1).flatten(0, 1)
        log_image(
            self.trainer,
            "val/panel",
            image_grid(rows, nrow=len(columns)),
            caption="input with hole | coarse | refined | composited | ground truth",
        )
        for name, layout in p["layouts"].items():
            panel = layout_panel(to_unit(p["composited"].float()), layout.float())
            log_image(self.trainer, f"val/layout_{name}", panel, caption=f"AN layout of {name}")

    # ------------------------------------------------------------------------------------------- predict
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        return {"inpainted": to_unit(self.inpaint(batch["image"], batch["mask"])), "name": batch["name"]}


class InpaintingPredictionWriter(BasePredictionWriter):
    """Write each ``predict`` result as ``<output_dir>/<name>.png`` (the composited image, same name as its input).

    Args:
        output_dir: Folder for the PNG files (default: ``<results dir>/predictions``).
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir

    def folder(self, trainer: pl.Trainer) -> Path:
        return Path(self.output_dir) if self.output_dir else results_dir(trainer) / "predictions"

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        folder = self.folder(trainer)
        for image, name in zip(prediction["inpainted"], prediction["name"], strict=True):
            save_png(image, folder / f"{name}.png")


def load_inpainter(checkpoint: str | Path, config: str | Path | None = None) -> ANInpaint:
    """Rebuild a trained :class:`ANInpaint` from a checkpoint and the run's saved ``config.yaml``.

    The networks are configured through ``class_path`` (not stored as hyperparameters), so the architecture comes
    from the run's config: by default ``<run>/config.yaml`` next to ``<run>/checkpoints/<name>.ckpt``.

    Args:
        checkpoint: A ``.ckpt`` file written by ``python -m an_inpaint fit``.
        config: The run's config file (default: ``config.yaml`` in the checkpoint folder's parent).

    Returns:
        The model in eval mode, on the CPU.

    Raises:
        FileNotFoundError: If the checkpoint or the config is missing.
    """
    import yaml
    from jsonargparse import ArgumentParser

    checkpoint = Path(checkpoint)
    config = Path(config) if config is not None else checkpoint.parent.parent / "config.yaml"
    for path, what in ((checkpoint, "checkpoint"), (config, "config")):
        if not path.is_file():
            raise FileNotFoundError(f"{what} file not found: {path}")
    parser = ArgumentParser()
    parser.add_class_arguments(ANInpaint, "model", fail_untyped=False)
    model_cfg = yaml.safe_load(config.read_text())["model"]
    model = parser.instantiate_classes(parser.parse_object({"model": model_cfg})).model
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    model.load_state_dict(state)
    return model.eval()
