"""``ANGAN``: the LightningModule that trains and evaluates the class-conditional AN GAN.

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020, Sections 4, 5.1, 5.2:
hinge losses (eq. 7, 8), Adam with the two time-scale rule (G 1e-4, D 4e-4, betas (0, 0.999)), batch 256, one D
step per G step, spectral norm on G and D, AN's orthogonal regularisation (eq. 1). FID, intra-FID and IS on 50k
generated images (Tables 1, 2, 4).

Training step (manual optimisation, as Lightning's GAN example): every batch makes one discriminator step; every
``n_dis``-th batch is followed by one generator step (so ``n_dis`` D steps, each on a fresh real batch, per G
step), each wrapped in ``toggle_optimizer`` / ``manual_backward`` / ``untoggle_optimizer``. Fake labels are the
real batch's labels (``y ~ P_data`` in eq. 7, 8). The orthogonal loss ``orthogonal_weight * ||W W^T - I||_F^2``
of the AN layers of D is added to D's loss and that of G to G's loss (each network's entities are trained by its
own optimiser). The EMA of G (``common.ema``) is updated after every G step. Note that Lightning's
``trainer.global_step`` counts optimiser steps of both networks (2 per iteration with ``n_dis=1``); the module
keeps its own counters ``num_d_steps`` / ``num_g_steps`` (buffers, so they are checkpointed and identical on every
DDP rank), and ``sample_every_n_steps`` / ``ema_start_step`` count G steps.

Pictures: a fixed noise/label batch (buffers drawn from ``noise_seed``, saved in checkpoints) gives a sample grid
with one row per class (``grid_classes``), logged every ``sample_every_n_steps`` G steps and at the end of training,
together with the AN layout maps of G's AN layer on one sample per class (paper Figure 5 style), both from the EMA
generator in eval mode (AN's self-sampling is off in eval mode, so layouts are deterministic).

Evaluation protocol (validation and test alike; ``python -m an_gan validate|test --ckpt_path`` gives the same
numbers as in-training validation): FID, IS (``is_splits`` splits) and intra-FID by
``common.metrics.generation.GenerationMetrics`` (TF-ported Inception-v3 unless another ``feature_extractor`` is
given). Reference statistics: every image of the stage's dataloader (val or test split), cached on disk under
``reference_cache_dir`` keyed by ``datamodule.reference_key(split)``, the intra-FID class list and the extractor
name; loaded when cached, otherwise accumulated during the first evaluation epoch and saved (only when the whole
split was seen, never during the sanity check). Fakes: ``eval_num_samples`` images from the EMA generator in eval
mode, labels cycling through all classes, one noise sequence seeded with ``eval_seed``; under DDP rank ``r`` generates
slice ``r`` of that sequence (so scores do not depend on the number of processes) and torchmetrics sums the
statistics across ranks. Intra-FID uses the val images of each class (50 per ImageNet class) against the same number
of fakes: a small-sample estimate, not comparable with protocols that use ~1.3k train images per class.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from an_gan.networks import Discriminator, Generator, is_attentive
from an_gan.sampling import ClassFolderWriter, ClassSampleDataset
from common.callbacks.images import log_image
from common.ddp import allow_unused_parameters
from common.ema import ExponentialMovingAverage
from common.layers import collect_layouts, orthogonal_loss
from common.losses.hinge import hinge_d_loss, hinge_g_loss
from common.metrics.generation import GenerationMetrics, reference_cache_path
from common.visualization import image_grid, layout_panel, to_unit

__all__ = ["ANGAN", "RUNTIME_OPTIONS"]

#: ``ANGAN`` arguments that are run-time options of evaluation / prediction rather than properties of the model.
RUNTIME_OPTIONS: tuple[str, ...] = (
    "eval_num_samples",
    "eval_batch_size",
    "eval_seed",
    "intra_fid_classes",
    "is_splits",
    "inception_weights",
    "reference_cache_dir",
    "predict_num_per_class",
    "predict_classes",
    "predict_seed",
    "predict_use_ema",
    "predict_output_dir",
    "predict_batch_size",
)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode inside the block and restore its previous mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class ANGAN(pl.LightningModule):
    """Class-conditional GAN with Attentive Normalization (paper Section 4); see the module docstring.

    Args:
        num_classes: number of classes (linked from the datamodule by the CLI).
        resolution: image size, 32, 64 or 128 (linked from the datamodule by the CLI).
        z_dim: noise dimension.
        g_ch: generator base width (64 = the paper-size model).
        d_ch: discriminator base width.
        g_long_range: G's long-range module: ``"an"`` (paper), ``"an_bn"``, ``"sa"`` (SA-GAN), ``"none"`` (SN-GAN).
        g_long_range_block: 0-based G up-block holding it (2 -> 32x32 maps, the paper's third block).
        d_long_range: D's long-range module (same names).
        d_long_range_block: 0-based D down-block holding it (0: the paper's first block).
        g_spectral_norm: spectral norm on G (paper and SN-GAN*: True; SN-GAN: False). D always has it.
        num_entities: AN entities n (paper 16; Table 4: 8, 32).
        self_sampling: AN self-sampling regularisation (Table 4 "w/o SSR": False).
        generator: a prebuilt generator (``class_path`` in a config) used instead of building one from the
            arguments above; its ``num_classes`` and ``resolution`` must match.
        discriminator: a prebuilt discriminator, likewise.
        g_lr: generator Adam learning rate.
        d_lr: discriminator Adam learning rate.
        betas: Adam betas for both networks.
        n_dis: discriminator steps per generator step.
        orthogonal_weight: weight lambda_o of AN's orthogonal loss (eq. 1; the paper gives no value; 0 is the
            "w/o orthogonal reg" ablation).
        use_ema: keep an exponential moving average of G and sample/evaluate with it.
        ema_decay: EMA decay.
        ema_start_step: G steps before which the EMA copies G's weights.
        eval_num_samples: generated images per evaluation (50k in the paper); 0 turns the metrics off.
        eval_batch_size: batch size of evaluation generation.
        eval_seed: seed of the evaluation noise (rank r uses ``eval_seed + r``).
        intra_fid_classes: classes for intra-FID; None: the paper's Table 2 classes present in the data, else all.
        is_splits: Inception Score splits.
        feature_extractor: feature extractor for FID/IS (``class_path``); None: TF-ported Inception-v3.
            ``common.metrics.generation.RandomProjectionExtractor`` is a CPU/test stand-in, not an FID backbone.
        inception_weights: local Inception weights file (offline machines); None: torch-fidelity's cache/download.
        reference_cache_dir: folder for cached reference statistics; None disables the disk cache.
        sample_every_n_steps: log the sample grid and layout maps every this many G steps (0: only at the end).
        grid_classes: classes shown in the grid, one row each; None: the first ``min(10, num_classes)``.
        samples_per_class: grid columns.
        noise_seed: seed of the fixed grid noise.
        predict_num_per_class: ``predict``: images per class.
        predict_classes: ``predict``: classes to generate; None: all.
        predict_seed: ``predict``: noise seed.
        predict_use_ema: ``predict``: use the EMA generator (when there is one) or the raw one.
        predict_output_dir: ``predict``: output folder (one sub-folder per class); None: ``<results dir>/samples``.
        predict_batch_size: ``predict``: batch size.
    """

    def __init__(
        self,
        num_classes: int = 10,
        resolution: int = 32,
        z_dim: int = 128,
        g_ch: int = 64,
        d_ch: int = 64,
        g_long_range: str = "an",
        g_long_range_block: int = 2,
        d_long_range: str = "an",
        d_long_range_block: int = 0,
        g_spectral_norm: bool = True,
        num_entities: int = 16,
        self_sampling: bool = True,
        generator: Generator | None = None,
        discriminator: Discriminator | None = None,
        g_lr: float = 1e-4,
        d_lr: float = 4e-4,
        betas: tuple[float, float] = (0.0, 0.999),
        n_dis: int = 1,
        orthogonal_weight: float = 1e-3,
        use_ema: bool = True,
        ema_decay: float = 0.9999,
        ema_start_step: int = 1000,
        eval_num_samples: int = 50000,
        eval_batch_size: int = 100,
        eval_seed: int = 0,
        intra_fid_classes: list[int] | None = None,
        is_splits: int = 10,
        feature_extractor: nn.Module | None = None,
        inception_weights: str | None = None,
        reference_cache_dir: str | None = "runs/fid_refs",
        sample_every_n_steps: int = 1000,
        grid_classes: list[int] | None = None,
        samples_per_class: int = 8,
        noise_seed: int = 1234,
        predict_num_per_class: int = 10,
        predict_classes: list[int] | None = None,
        predict_seed: int = 0,
        predict_use_ema: bool = True,
        predict_output_dir: str | None = None,
        predict_batch_size: int = 50,
    ) -> None:
        super().__init__()
        # Evaluation and prediction settings are not saved as hyperparameters: LightningCLI applies a checkpoint's
        # hyperparameters over the command line (``--ckpt_path``), and these must stay settable for
        # ``validate``/``test``/``predict`` on a checkpoint. The run's config.yaml records them.
        self.save_hyperparameters(ignore=["generator", "discriminator", "feature_extractor", *RUNTIME_OPTIONS])
        self.eval_num_samples = eval_num_samples
        self.eval_batch_size = eval_batch_size
        self.eval_seed = eval_seed
        self.intra_fid_classes = intra_fid_classes
        self.is_splits = is_splits
        self.inception_weights = inception_weights
        self.reference_cache_dir = reference_cache_dir
        self.predict_num_per_class = predict_num_per_class
        self.predict_classes = predict_classes
        self.predict_seed = predict_seed
        self.predict_use_ema = predict_use_ema
        self.predict_output_dir = predict_output_dir
        self.predict_batch_size = predict_batch_size
        self.automatic_optimization = False
        if n_dis < 1:
            raise ValueError(f"n_dis must be >= 1, got {n_dis}")
        if orthogonal_weight < 0:
            raise ValueError(f"orthogonal_weight must be >= 0, got {orthogonal_weight}")
        if eval_num_samples < 0 or eval_batch_size < 1:
            raise ValueError(
                f"need eval_num_samples >= 0 and eval_batch_size >= 1, got {eval_num_samples}, {eval_batch_size}"
            )
        if 0 < eval_num_samples < is_splits:
            raise ValueError(f"eval_num_samples ({eval_num_samples}) must be 0 or at least is_splits ({is_splits})")
        an_kwargs = {"num_entities": num_entities, "self_sampling": self_sampling}
        self.generator = (
            generator
            if generator is not None
            else Generator(
                num_classes,
                resolution,
                z_dim=z_dim,
                ch=g_ch,
                long_range=g_long_range,
                long_range_block=g_long_range_block,
                spectral_norm=g_spectral_norm,
                **an_kwargs,
            )
        )
        self.discriminator = (
            discriminator
            if discriminator is not None
            else Discriminator(
                num_classes,
                resolution,
                ch=d_ch,
                long_range=d_long_range,
                long_range_block=d_long_range_block,
                **an_kwargs,
            )
        )
        for name, net in (("generator", self.generator), ("discriminator", self.discriminator)):
            if net.num_classes != num_classes or net.resolution != resolution:
                raise ValueError(
                    f"{name} was built for num_classes={net.num_classes}, resolution={net.resolution}, but the "
                    f"module (the data) has num_classes={num_classes}, resolution={resolution}"
                )
        self.ema = ExponentialMovingAverage(self.generator, ema_decay, ema_start_step) if use_ema else None
        self.register_buffer("num_d_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("num_g_steps", torch.zeros((), dtype=torch.long))

        classes = list(range(min(10, num_classes))) if grid_classes is None else [int(c) for c in grid_classes]
        if not classes or any(not 0 <= c < num_classes for c in classes):
            raise ValueError(f"grid_classes must be a non-empty list of classes in [0, {num_classes}), got {classes}")
        gen = torch.Generator().manual_seed(noise_seed)
        self.register_buffer(
            "fixed_z", torch.randn(len(classes) * samples_per_class, self.generator.z_dim, generator=gen)
        )
        self.register_buffer("fixed_labels", torch.tensor(classes).repeat_interleave(samples_per_class))

        self.metrics = None
        if eval_num_samples > 0:
            self.metrics = GenerationMetrics(
                feature_extractor=feature_extractor,
                num_classes=num_classes,
                intra_fid_classes=intra_fid_classes,
                is_splits=is_splits,
                weights_path=inception_weights,
            )
        self._reference_key: str | None = None  # which split's reference the metric holds
        self._collect_real = False

    # ------------------------------------------------------------------------------------------- generators
    @property
    def sampling_generator(self) -> Generator:
        """The generator used for pictures and evaluation: the EMA copy when ``use_ema``, else G itself."""
        return self.ema.averaged if self.ema is not None else self.generator

    @torch.no_grad()
    def generate(self, z: Tensor, y: Tensor, use_ema: bool = True) -> Tensor:
        """Images in [-1, 1] from the EMA (or raw) generator in eval mode."""
        net = self.sampling_generator if use_ema else self.generator
        with eval_mode(net):
            return net(z, y)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """Generate with the sampling generator (eval mode): ``(B, z_dim), (B,) -> (B, 3, R, R)`` in [-1, 1]."""
        return self.generate(z, y)

    # ---------------------------------------------------------------------------------------------- training
    def configure_optimizers(self):
        betas = tuple(float(b) for b in self.hparams.betas)
        g_params = [p for p in self.generator.parameters() if p.requires_grad]
        d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        g_opt = torch.optim.Adam(g_params, lr=self.hparams.g_lr, betas=betas)
        d_opt = torch.optim.Adam(d_params, lr=self.hparams.d_lr, betas=betas)
        return [g_opt, d_opt]

    def configure_callbacks(self):
        return [ClassFolderWriter()]

    def setup(self, stage: str) -> None:
        allow_unused_parameters(self.trainer)  # the D step leaves G's parameters without gradients and vice versa
        if str(self.trainer.precision) in ("16-true", "bf16-true"):
            raise ValueError(
                "an_gan needs float32 weights (the EMA with decay 0.9999 and the float64 FID sums do not survive "
                "16-bit casts): use --trainer.precision bf16-mixed or 16-mixed"
            )
        if self.metrics is None and stage == "fit":
            self.trainer.limit_val_batches = 0  # no metrics (eval_num_samples=0): no validation, no best-by-FID
        # Load (or download) the FID/IS feature extractor now, so that missing Inception weights fail at start-up
        # with the metric's instructions rather than at the first validation; rank 0 first (one download).
        if self.metrics is None or stage not in ("fit", "validate", "test"):
            return
        if self.trainer.is_global_zero:
            self.metrics.feature_extractor  # noqa: B018
        self.trainer.strategy.barrier("an_gan_feature_extractor")
        self.metrics.feature_extractor  # noqa: B018

    def on_fit_start(self) -> None:
        # seed_everything gives every DDP rank the same seed: decorrelate the ranks' noise (and AN's sampling).
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + self.trainer.global_rank)

    def _noise(self, n: int) -> Tensor:
        return torch.randn(n, self.generator.z_dim, device=self.device)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        real, labels = batch
        g_opt, d_opt = self.optimizers()
        weight = self.hparams.orthogonal_weight
        b = real.shape[0]

        # Discriminator step: eq. (8) + lambda_o * L_o(D).
        with torch.no_grad():
            fake = self.generator(self._noise(b), labels)
        self.toggle_optimizer(d_opt)
        d_real = self.discriminator(real, labels)
        d_fake = self.discriminator(fake, labels)
        d_orth = orthogonal_loss(self.discriminator)
        d_loss = hinge_d_loss(d_real, d_fake) + weight * d_orth
        d_opt.zero_grad(set_to_none=True)
        self.manual_backward(d_loss)
        d_opt.step()
        self.untoggle_optimizer(d_opt)
        self.num_d_steps += 1
        self.log_dict(
            {
                "train/d_loss": d_loss.detach(),
                "train/d_real": d_real.detach().mean(),
                "train/d_fake": d_fake.detach().mean(),
                "train/d_orth_loss": d_orth.detach(),
                "train/d_lr": d_opt.param_groups[0]["lr"],
            },
            prog_bar=False,
        )
        self.log("train/d_loss_bar", d_loss.detach(), prog_bar=True, logger=False)

        if int(self.num_d_steps) % self.hparams.n_dis != 0:
            return

        # Generator step: eq. (7) + lambda_o * L_o(G).
        self.toggle_optimizer(g_opt)
        fake = self.generator(self._noise(b), labels)
        g_orth = orthogonal_loss(self.generator)
        g_loss = hinge_g_loss(self.discriminator(fake, labels)) + weight * g_orth
        g_opt.zero_grad(set_to_none=True)
        self.manual_backward(g_loss)
        g_opt.step()
        self.untoggle_optimizer(g_opt)
        self.num_g_steps += 1
        if self.ema is not None:
            self.ema.update(self.generator, int(self.num_g_steps))
        self.log_dict(
            {
                "train/g_loss": g_loss.detach(),
                "train/orth_loss": g_orth.detach(),
                "train/g_lr": g_opt.param_groups[0]["lr"],
            },
        )
        self.log("train/g_loss_bar", g_loss.detach(), prog_bar=True, logger=False)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        every = self.hparams.sample_every_n_steps
        g_steps = int(self.num_g_steps)
        just_stepped = int(self.num_d_steps) % self.hparams.n_dis == 0
        if every > 0 and just_stepped and g_steps % every == 0:
            self.log_pictures()

    def on_train_end(self) -> None:
        self.log_pictures()

    # ---------------------------------------------------------------------------------------------- pictures
    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """The fixed-noise grid (3, H, W) in [0, 1]: one row per grid class, ``samples_per_class`` columns."""
        images = self.generate(self.fixed_z, self.fixed_labels)
        return image_grid(to_unit(images), nrow=self.hparams.samples_per_class)

    @torch.no_grad()
    def layout_maps(self, max_rows: int = 6) -> Tensor | None:
        """AN layout panel of the sampling generator on the first fixed sample of each grid class, or None."""
        net = self.sampling_generator
        if not is_attentive(net):
            return None
        idx = torch.arange(0, self.fixed_z.shape[0], self.hparams.samples_per_class, device=self.device)[:max_rows]
        images = self.generate(self.fixed_z[idx], self.fixed_labels[idx])
        layout = next(iter(collect_layouts(net).values()))
        return layout_panel(to_unit(images), layout)

    def log_pictures(self) -> None:
        """Log the sample grid and the AN layout maps (rank 0 writes; everything here is stateless)."""
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        caption = f"G step {int(self.num_g_steps)}" + (" (EMA)" if self.ema is not None else "")
        log_image(self.trainer, "samples/grid", self.sample_grid(), caption=f"{caption}: one row per class")
        panel = self.layout_maps()
        if panel is not None:
            log_image(self.trainer, "samples/an_layout", panel, caption=f"{caption}: image | layout | entities")

    # -------------------------------------------------------------------------------------------- evaluation
    def _reference_path(self, split: str) -> tuple[str | None, Path | None]:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "reference_key"):
            return None, None
        key = datamodule.reference_key(split)
        if self.intra_fid_classes is not None:
            classes = ",".join(str(c) for c in self.metrics.intra_fid_classes)
            key = f"{key}_intra-{hashlib.sha1(classes.encode()).hexdigest()[:8]}"
        if self.reference_cache_dir is None:
            return key, None
        return key, reference_cache_path(self.reference_cache_dir, key, self.metrics.extractor_name)

    def _eval_start(self, split: str) -> None:
        if self.metrics is None or self.trainer.sanity_checking:
            return
        key, path = self._reference_path(split)
        if key is not None and key == self._reference_key and self.metrics.has_reference():
            self._collect_real = False
            return
        self.metrics.reset_reference()
        self._reference_key = key
        self._collect_real = not (path is not None and self.metrics.load_reference(path))

    def _eval_step(self, batch: tuple[Tensor, Tensor]) -> None:
        if self.metrics is None or self.trainer.sanity_checking or not self._collect_real:
            return
        images, labels = batch
        self.metrics.update(to_unit(images), labels, real=True)

    def _whole_split_seen(self, stage: str) -> bool:
        counts = self.trainer.num_val_batches if stage == "val" else self.trainer.num_test_batches
        loaders = self.trainer.val_dataloaders if stage == "val" else self.trainer.test_dataloaders
        try:
            return list(counts) == [len(loaders)] and not self.trainer.fast_dev_run
        except TypeError:
            return False

    def _eval_end(self, stage: str, split: str) -> None:
        if self.metrics is None or self.trainer.sanity_checking:
            return
        if self._collect_real:
            self._collect_real = False
            _, path = self._reference_path(split)
            if path is not None and self._whole_split_seen(stage):
                self.metrics.save_reference(path)
        self.generate_for_metrics(self.metrics)
        scores = self.metrics.compute()
        self.metrics.reset_fake()
        self.log_dict({f"{stage}/{name}": value for name, value in scores.items()}, sync_dist=True)

    @torch.no_grad()
    def generate_for_metrics(self, metrics: GenerationMetrics) -> None:
        """Feed this rank's share of ``eval_num_samples`` EMA-generator images to ``metrics``."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        # One global noise/label sequence seeded by eval_seed; rank r takes slice r, so the scores do not depend on
        # the number of processes (validate on 1 GPU reproduces a run trained on 8).
        total = self.eval_num_samples
        lo, hi = rank * total // world, (rank + 1) * total // world
        noise_gen = torch.Generator().manual_seed(self.eval_seed)
        z = torch.randn(total, self.generator.z_dim, generator=noise_gen)[lo:hi]
        labels = torch.arange(lo, hi) % self.hparams.num_classes
        n = hi - lo
        bs = self.eval_batch_size
        starts = range(0, n, bs)
        for start in tqdm(starts, desc="generating for FID/IS", disable=not self.trainer.is_global_zero, leave=False):
            zb = z[start : start + bs].to(self.device)
            yb = labels[start : start + bs].to(self.device)
            metrics.update(to_unit(self.generate(zb, yb)), yb, real=False)

    def on_validation_epoch_start(self) -> None:
        self._eval_start("val")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val", "val")

    def on_test_epoch_start(self) -> None:
        self._eval_start("val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._eval_step(batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test", "val")

    # ---------------------------------------------------------------------------------------------- predict
    def predict_dataloader(self) -> DataLoader:
        """Items (noise, class, index): ``predict_num_per_class`` per class of ``predict_classes``."""
        k = self.hparams.num_classes
        classes = list(range(k)) if self.predict_classes is None else list(self.predict_classes)
        dataset = ClassSampleDataset(
            classes, self.predict_num_per_class, self.generator.z_dim, self.predict_seed, num_classes=k
        )
        return DataLoader(dataset, batch_size=self.predict_batch_size, shuffle=False)

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Generate a batch; returns ``{"images": (B, 3, R, R) in [0, 1], "labels": (B,), "indices": (B,)}``."""
        z, labels, indices = batch
        images = self.generate(z, labels, use_ema=self.predict_use_ema)
        return {"images": to_unit(images), "labels": labels, "indices": indices}

    # --------------------------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["an_gan_generator_config"] = dict(self.generator.config)
        checkpoint["an_gan_has_ema"] = self.ema is not None
