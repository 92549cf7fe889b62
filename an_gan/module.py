"""``ANGAN``: the LightningModule that trains and evaluates the class-conditional AN GAN.

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020, Sections 4 and 5.1: hinge losses
(eq. 7, 8), Adam with the two time-scale rule (G 1e-4, D 4e-4, betas (0, 0.999)), batch 256, spectral norm on G and D,
AN's orthogonal regularisation (eq. 1). The networks, optimisers and evaluation protocol are injected
(``class_path`` in a config); the defaults are the paper's.

Training step: every batch makes one discriminator step on a fresh real batch; every ``n_dis``-th batch is followed
by one generator step (so ``n_dis`` D steps per G step). Each update (:mod:`an_gan.steps`) runs the losses of
:mod:`an_gan.losses` over ``accumulate`` micro-batches of the batch and steps its optimiser once
(``common.training.optimization.accumulated_step``: gradient accumulation, the whole batch's update for layers
without batch statistics). Fake labels are the real batch's labels (``y ~ P_data``, eq. 7-8) or uniform
(SN-GAN's updater). The EMA of G (``common.training.ema``) follows every G step. Step counters are plain Python integers
saved in checkpoints (no device-to-host copy per step); ``trainer.global_step`` counts the optimiser steps of both
networks (2 per iteration with ``n_dis = 1``).

Evaluation (``validate`` / ``test``, and validation during ``fit``) is :class:`an_gan.evaluation.GenerationEvaluator`
on the images the module generates, run once per evaluation (the datamodule's val / test loaders are a single
placeholder step); the datamodule supplies the reference images through ``reference_dataloader``.
``val_evaluator`` (model selection, ``best-fid.ckpt``) and ``test_evaluator`` (reported numbers) differ in their
reference split and seed, so the scores that are reported are never the ones a checkpoint was chosen on. The
evaluated generator is the raw G (``eval_generator="raw"``, the paper reports no EMA) or the EMA copy with its own
standing statistics (``"ema"``).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.cli import OptimizerCallable
from torch import Tensor, nn
from torch.utils.data import DataLoader

from an_gan.evaluation import GenerationEvaluator, eval_mode
from an_gan.networks import Discriminator, Generator, is_attentive
from an_gan.predict import ClassFolderWriter
from an_gan.reporting import RULE, checkpoint_label
from an_gan.settings import EMASettings, LinearDecay, PictureSettings
from an_gan.steps import discriminator_update, generator_update
from common.layers import an_rho, collect_layouts
from common.training.callbacks.images import log_image
from common.training.checkpoints import stamp_checkpoint
from common.training.ddp import allow_unused_parameters
from common.training.ema import ExponentialMovingAverage, normalization_layers, standing_statistics
from common.training.runs import load_run
from common.training.step_logging import is_logging_step
from common.visualization import image_grid, layout_panel, to_unit

__all__ = ["D_BATCHES", "EVAL_GENERATORS", "FAKE_LABELS", "ANGAN", "load_generator"]

#: Which generator pictures and evaluation use.
EVAL_GENERATORS: tuple[str, ...] = ("raw", "ema")
#: Where the labels of generated images come from during training.
FAKE_LABELS: tuple[str, ...] = ("data", "uniform")
#: How a D step calls D on the real and the fake batch (``ANGAN(d_batch=...)``).
D_BATCHES: tuple[str, ...] = ("separate", "joint")

# predict generates from noise (the module's predict_dataloader); Lightning warns when a datamodule is also given.
warnings.filterwarnings("ignore", message=r".*overridden `predict_dataloader` in `LightningModule`.*")


def _adam(lr: float):
    return lambda params: torch.optim.Adam(params, lr=lr, betas=(0.0, 0.999))


class ANGAN(pl.LightningModule):
    """Class-conditional GAN with Attentive Normalization (paper Section 4); see the module docstring.

    Args:
        generator: the generator, ``G(z, y)`` with ``num_classes``, ``resolution``, ``z_dim`` attributes (default
            :class:`an_gan.networks.Generator`: the paper's AN model at 128 px, 1000 classes).
        discriminator: the projection discriminator ``D(x, y)`` (default :class:`an_gan.networks.Discriminator`).
        g_optimizer: optimiser of G (default Adam, lr 1e-4, betas (0.0, 0.999): paper Section 5.1).
        d_optimizer: optimiser of D (default Adam, lr 4e-4, betas (0.0, 0.999)).
        lr_decay: linear learning-rate decay of both optimisers (SN-GAN's schedule); None: constant (paper).
        n_dis: discriminator steps per generator step (paper: 1; SN-GAN: 5). SN-GAN's name for it; ``ANInpaint``
            keeps WGAN-GP's name for the same ratio, ``n_critic``.
        fake_labels: labels of generated images during training: ``"data"`` (the real batch's, eq. 7-8) or
            ``"uniform"`` (SN-GAN's and SA-GAN's code).
        g_batch_size: generated images per generator step *per process* (None: the real batch size; SN-GAN: twice
            it). Like ``data.batch_size`` it is per device: the global number is ``g_batch_size x devices x
            num_nodes``, so SN-GAN's 128 generated images per step are ``g_batch_size: 16`` on 8 GPUs. Needs
            ``fake_labels="uniform"`` when it differs from the real batch.
        d_batch: how a D step scores the real and the fake batch: ``"separate"`` (two D calls, as SN-GAN's and
            SA-GAN's code; spectral norm's power iteration runs in each) or ``"joint"`` (one call on the concatenated
            batch, as BigGAN-PyTorch's ``G_D``: one power iteration, fewer and larger operations). D has no batch
            statistics, so both give the same scores for the same weights (with AN's ``stats: batch`` in D, the
            Table 4 "AN w BN" ablation, it has: "separate" normalises the real and the fake batch each by its own
            statistics, as a BN discriminator called twice does in SN-GAN's and SA-GAN's code).
        accumulate: micro-batches per D and per G step (gradient accumulation, :mod:`an_gan.steps`; 1: none). The
            batch is still ``data.batch_size`` per process (global batch = batch_size x devices x num_nodes); each
            micro-batch holds ``batch_size / accumulate`` of it, so activation memory shrinks by that factor.
            BigGAN-PyTorch's SA-GAN script: 128 x 2 accumulations for its batch of 256.
        orthogonal_weight: lambda_o of AN's orthogonal loss (eq. 1; the paper gives no value; 0 is the
            "w/o orthogonal reg" ablation).
        ema: EMA of G and its standing statistics (:class:`an_gan.settings.EMASettings`); None: no EMA.
        eval_generator: ``"raw"`` (the paper) or ``"ema"``: the generator of pictures, validation and test.
        val_evaluator: protocol of validation (model selection); None: no validation.
        test_evaluator: protocol of ``test`` (the reported scores); None: ``test`` is not available.
        pictures: the sample grid and layout maps (:class:`an_gan.settings.PictureSettings`).
    """

    def __init__(
        self,
        generator: nn.Module | None = None,
        discriminator: nn.Module | None = None,
        g_optimizer: OptimizerCallable | None = None,
        d_optimizer: OptimizerCallable | None = None,
        lr_decay: LinearDecay | None = None,
        n_dis: int = 1,
        fake_labels: str = "data",
        g_batch_size: int | None = None,
        d_batch: str = "separate",
        accumulate: int = 1,
        orthogonal_weight: float = 1e-3,
        ema: EMASettings | None = None,
        eval_generator: str = "raw",
        val_evaluator: GenerationEvaluator | None = None,
        test_evaluator: GenerationEvaluator | None = None,
        pictures: PictureSettings | None = None,
    ) -> None:
        super().__init__()
        objects = ["generator", "discriminator", "g_optimizer", "d_optimizer", "lr_decay", "ema"]
        self.save_hyperparameters(ignore=[*objects, "eval_generator", "val_evaluator", "test_evaluator", "pictures"])
        self.automatic_optimization = False
        if n_dis < 1:
            raise ValueError(f"n_dis must be >= 1, got {n_dis}")
        if fake_labels not in FAKE_LABELS:
            raise ValueError(f"fake_labels must be one of {FAKE_LABELS}, got {fake_labels!r}")
        if g_batch_size is not None and (g_batch_size < 1 or fake_labels != "uniform"):
            raise ValueError(f"g_batch_size needs fake_labels='uniform' and a value >= 1, got {g_batch_size}")
        if d_batch not in D_BATCHES:
            raise ValueError(f"d_batch must be one of {D_BATCHES}, got {d_batch!r}")
        if not isinstance(accumulate, int) or accumulate < 1:
            raise ValueError(f"accumulate (micro-batches per step) must be an integer >= 1, got {accumulate!r}")
        if orthogonal_weight < 0:
            raise ValueError(f"orthogonal_weight must be >= 0, got {orthogonal_weight}")
        if eval_generator not in EVAL_GENERATORS or (eval_generator == "ema" and ema is None):
            raise ValueError(f"eval_generator must be 'raw', or 'ema' with an ema setting; got {eval_generator!r}")
        self.generator = generator if generator is not None else Generator()
        self.discriminator = discriminator if discriminator is not None else Discriminator()
        for name in ("num_classes", "resolution"):
            g_value, d_value = getattr(self.generator, name, None), getattr(self.discriminator, name, None)
            if g_value != d_value:
                raise ValueError(f"generator and discriminator disagree on {name}: {g_value} vs {d_value}")
        self.g_optimizer, self.d_optimizer = g_optimizer or _adam(1e-4), d_optimizer or _adam(4e-4)
        self.lr_decay, self.n_dis, self.fake_labels, self.g_batch_size = lr_decay, n_dis, fake_labels, g_batch_size
        self.orthogonal_weight, self.d_batch, self.accumulate = orthogonal_weight, d_batch, accumulate
        self.ema_settings = ema
        self.ema = ExponentialMovingAverage(self.generator, ema.decay, ema.start_step) if ema is not None else None
        self.eval_generator = eval_generator
        self.val_evaluator, self.test_evaluator = val_evaluator, test_evaluator
        self.pictures = pictures or PictureSettings()
        self.num_d_steps, self.num_g_steps, self._ema_stale = 0, 0, True
        self.test_checkpoint: dict[str, Any] | None = None  # what the last `test` scored (on_test_start)

        k = self.generator.num_classes
        classes = list(range(min(10, k))) if self.pictures.classes is None else [int(c) for c in self.pictures.classes]
        if not classes or any(not 0 <= c < k for c in classes):
            raise ValueError(f"picture classes must be a non-empty list of classes in [0, {k}), got {classes}")
        gen = torch.Generator().manual_seed(self.pictures.seed)
        per_class = self.pictures.per_class
        self.register_buffer("fixed_z", torch.randn(len(classes) * per_class, self.generator.z_dim, generator=gen))
        self.register_buffer("fixed_labels", torch.tensor(classes).repeat_interleave(per_class))

    # ------------------------------------------------------------------------------------------- generators
    def ema_generator(self) -> nn.Module:
        """The EMA generator, its standing statistics recomputed if it changed since they were last computed."""
        if self.ema is None:
            raise RuntimeError("this module keeps no EMA of the generator (ema=None)")
        if self._ema_stale and self.ema_settings.standing_batches > 0:
            self.recompute_standing_statistics()
        return self.ema.averaged

    @torch.no_grad()
    def recompute_standing_statistics(self) -> None:
        """BigGAN's standing statistics for the EMA generator (seeded noise and uniform labels; see EMASettings)."""
        settings, net = self.ema_settings, self.ema.averaged
        gen = torch.Generator().manual_seed(settings.standing_seed)
        size, k = settings.standing_batch_size, net.num_classes
        inputs = [
            (torch.randn(size, net.z_dim, generator=gen), torch.randint(0, k, (size,), generator=gen))
            for _ in range(settings.standing_batches)
        ]
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # AN-with-BN samples positions in training mode
            torch.manual_seed(settings.standing_seed)
            standing_statistics(net, ((z.to(self.device), y.to(self.device)) for z, y in inputs))
        self._ema_stale = False

    def evaluation_generator(self) -> nn.Module:
        """The generator pictures and evaluation use (``eval_generator``)."""
        return self.ema_generator() if self.eval_generator == "ema" else self.generator

    @torch.no_grad()
    def generate(self, z: Tensor, y: Tensor, which: str | None = None) -> Tensor:
        """Images ``(B, 3, R, R)`` in [-1, 1] from the ``which`` generator (``"raw"``, ``"ema"``; None: eval_generator),
        in eval mode, for noise ``z`` ``(B, z_dim)`` and labels ``y`` ``(B,)`` (or class weights ``(B, K)``)."""
        which = which or self.eval_generator
        net = self.ema_generator() if which == "ema" else self.generator
        with eval_mode(net):
            return net(z, y)

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """Generate with the evaluation generator (eval mode): ``(B, z_dim), (B,) -> (B, 3, R, R)`` in [-1, 1]."""
        return self.generate(z, y)

    # ---------------------------------------------------------------------------------------------- training
    def configure_optimizers(self):
        """The G and D optimisers (from ``g_optimizer`` / ``d_optimizer``) and, with ``lr_decay``, one ``LambdaLR``
        each.
        """
        g_opt = self.g_optimizer([p for p in self.generator.parameters() if p.requires_grad])
        d_opt = self.d_optimizer([p for p in self.discriminator.parameters() if p.requires_grad])
        if self.lr_decay is None:
            return [g_opt, d_opt]
        decay = self.lr_decay
        schedulers = [torch.optim.lr_scheduler.LambdaLR(opt, decay.factor) for opt in (g_opt, d_opt)]
        return [g_opt, d_opt], schedulers

    def setup(self, stage: str) -> None:
        """Check the precision, load the stage's feature extractor up front (rank 0 first), and switch validation off
        when there is no validation evaluator.

        Raises:
            ValueError: 16-bit true precision, or ``test`` without a ``test_evaluator``.
        """
        allow_unused_parameters(self.trainer)  # the D step leaves G's parameters without gradients and vice versa
        if str(self.trainer.precision) in ("16-true", "bf16-true"):
            raise ValueError(
                "an_gan needs float32 weights (the EMA with decay 0.9999 and the float64 FID sums do not survive "
                "16-bit casts): use --trainer.precision bf16-mixed or 16-mixed"
            )
        if stage == "fit" and self.val_evaluator is None:
            self.trainer.limit_val_batches = 0  # no validation, hence no best-by-FID checkpoint
        evaluator = {"fit": self.val_evaluator, "validate": self.val_evaluator, "test": self.test_evaluator}.get(stage)
        if stage == "test" and evaluator is None:
            raise ValueError("test needs a test_evaluator (the protocol of the reported scores)")
        if evaluator is not None:
            # Load (or download) the feature extractor now, so that missing weights fail at start-up; rank 0 first.
            if self.trainer.is_global_zero:
                evaluator.feature_extractor  # noqa: B018
            self.trainer.strategy.barrier("an_gan_feature_extractor")
            evaluator.feature_extractor  # noqa: B018

    def on_fit_start(self) -> None:
        """Under DDP, offset each rank's torch seed by its rank (different noise and AN sampling per rank)."""
        # seed_everything gives every DDP rank the same seed: decorrelate the ranks' noise (and AN's sampling).
        if self.trainer.world_size > 1:
            torch.manual_seed(torch.initial_seed() + self.trainer.global_rank)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """One D step (hinge loss, :func:`an_gan.steps.discriminator_update`) per batch and one G step
        (:func:`an_gan.steps.generator_update`) every ``n_dis`` batches, each over ``accumulate`` micro-batches, then
        the LR schedule, the EMA update and the periodic pictures.

        ``batch``: ``{'image': (B, 3, R, R) in [-1, 1], 'label': (B,) int64}``.
        """
        real, labels = batch["image"], batch["label"]
        g_opt, d_opt = self.optimizers()
        log = is_logging_step(self, ahead=self.n_dis - 1)  # self.log costs ~1 ms per key: only what loggers get
        d_logs = discriminator_update(self, d_opt, real, labels)
        self.num_d_steps += 1
        if log:
            self.log_dict({f"train/{k}": v for k, v in d_logs.items()})
        if self.num_d_steps % self.n_dis:
            return
        g_logs = generator_update(self, g_opt, labels)
        self.num_g_steps += 1
        if log:
            g_logs.update({f"an_rho/{name}": rho for name, rho in an_rho(self.generator).items()})
            self.log_dict({f"train/{k}": v for k, v in g_logs.items()})
        if self.lr_decay is not None:
            for scheduler in self.lr_schedulers():
                scheduler.step()
        if self.ema is not None:
            self.ema.update(self.generator, self.num_g_steps)
            self._ema_stale = True
        every = self.pictures.every_n_steps
        if every and self.num_g_steps % every == 0:
            self.log_pictures()

    def on_train_end(self) -> None:
        """Log a last sample grid and layout maps."""
        self.log_pictures()

    # ---------------------------------------------------------------------------------------------- pictures
    @torch.no_grad()
    def sample_grid(self) -> Tensor:
        """The fixed-noise grid (3, H, W) in [0, 1]: one row per picture class, ``per_class`` columns."""
        return image_grid(to_unit(self.generate(self.fixed_z, self.fixed_labels)), nrow=self.pictures.per_class)

    @torch.no_grad()
    def layout_maps(self, max_rows: int = 6) -> Tensor | None:
        """AN layout panel (:func:`common.visualization.layout_panel`, ``(3, H', W')`` in [0, 1]) of the evaluation
        generator on the first fixed sample of each class, at most ``max_rows``; None without AN."""
        net = self.evaluation_generator()
        if not is_attentive(net):
            return None
        idx = torch.arange(0, self.fixed_z.shape[0], self.pictures.per_class, device=self.device)[:max_rows]
        images = self.generate(self.fixed_z[idx], self.fixed_labels[idx])
        layout = next(iter(collect_layouts(net).values()))
        return layout_panel(to_unit(images), layout)

    def log_pictures(self) -> None:
        """Log the sample grid and the AN layout maps (rank 0 writes)."""
        if self._trainer is None or not self.trainer.is_global_zero:
            return
        caption = f"G step {self.num_g_steps} ({self.eval_generator} G)"
        log_image(self.trainer, "samples/grid", self.sample_grid(), caption=f"{caption}: one row per class")
        panel = self.layout_maps()
        if panel is not None:
            log_image(self.trainer, "samples/an_layout", panel, caption=f"{caption}: image | layout | entities")

    # -------------------------------------------------------------------------------------------- evaluation
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Nothing per step: :meth:`on_validation_epoch_end` runs the evaluator."""

    def test_step(self, batch: Any, batch_idx: int) -> None:
        """Nothing per step: :meth:`on_test_epoch_end` runs the evaluator."""

    def on_test_start(self) -> None:
        """Print which checkpoint is scored and the reporting rule (:mod:`an_gan.reporting`); rank 0."""
        max_steps = self.trainer.max_steps if self.trainer.max_steps is not None else -1
        label, sentence = checkpoint_label(self.trainer.ckpt_path, self.num_g_steps, max_steps, self.n_dis)
        self.test_checkpoint = {"checkpoint": self.trainer.ckpt_path, "label": label, "g_step": self.num_g_steps}
        if self.trainer.is_global_zero:
            print(f"test: {sentence}.\n  {RULE}.", flush=True)

    def _evaluate(self, stage: str, evaluator: GenerationEvaluator | None) -> None:
        if evaluator is None or self.trainer.sanity_checking:
            return
        data = getattr(self.trainer, "datamodule", None)
        if data is None or not hasattr(data, "reference_dataloader"):
            raise ValueError(f"{stage} needs a datamodule with reference_dataloader (a ClassImageDataModule)")
        world, rank = self.trainer.world_size, self.trainer.global_rank
        evaluator.prepare(data, self.device, rank, world)
        scores = evaluator.run(self.evaluation_generator(), data, self.device, rank, world)
        self.log_dict({f"{stage}/{k}": v for k, v in scores.items()})  # identical on every rank already

    def on_validation_epoch_end(self) -> None:
        """Score the evaluation generator with the validation evaluator (FID, IS, ... logged as ``val/*``)."""
        self._evaluate("val", self.val_evaluator)

    def on_test_epoch_end(self) -> None:
        """Score the evaluation generator with the test evaluator (logged as ``test/*``)."""
        self._evaluate("test", self.test_evaluator)

    # ---------------------------------------------------------------------------------------------- predict
    def _writer(self) -> ClassFolderWriter:
        writers = [cb for cb in self.trainer.callbacks if isinstance(cb, ClassFolderWriter)]
        if not writers:
            raise ValueError("predict needs an an_gan.predict.ClassFolderWriter callback (the CLI adds one)")
        return writers[0]

    def predict_dataloader(self) -> DataLoader:
        """Items (noise, class, index) of the prediction writer's classes, images and seed."""
        return self._writer().dataloader(self.generator.num_classes, self.generator.z_dim)

    def predict_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        """Generate a batch; returns ``{"images": (B, 3, R, R) in [0, 1], "labels": (B,), "indices": (B,)}``."""
        z, labels, indices = batch
        images = self.generate(z, labels, which=self._writer().generator)
        return {"images": to_unit(images), "labels": labels, "indices": indices}

    # --------------------------------------------------------------------------------------------- checkpoint
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Stamp the checkpoint (networks and settings), store the D / G step counts, and store the EMA generator's own
        standing normalisation statistics.
        """
        settings = {  # also without the CLI, common.training.runs.load_run can rebuild the module
            "ema": dataclasses.asdict(self.ema_settings) if self.ema is not None else None,
            "pictures": dataclasses.asdict(self.pictures),
            "eval_generator": self.eval_generator,
        }
        stamp_checkpoint(self, checkpoint, settings=settings)
        checkpoint["an_gan_steps"] = {"d": self.num_d_steps, "g": self.num_g_steps}
        if self.ema is not None and self.ema_settings.standing_batches > 0:
            # The checkpoint's EMA generator carries its own standing statistics (load_generator uses them).
            net = self.ema_generator()
            state, layers = checkpoint["state_dict"], {id(m) for m in normalization_layers(net)}
            for layer_name, layer in net.named_modules():
                if id(layer) in layers:
                    for buffer_name, value in layer.named_buffers(recurse=False):
                        key = f"ema.averaged.{layer_name}.{buffer_name}"
                        if key in state:
                            state[key] = value.detach().clone()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Restore the D / G step counts; the EMA generator's standing statistics are recomputed when next needed."""
        steps = checkpoint.get("an_gan_steps", {})
        self.num_d_steps, self.num_g_steps = int(steps.get("d", 0)), int(steps.get("g", 0))
        self._ema_stale = True


def load_generator(ckpt_path: str | Path, ema: bool = True, map_location: str | torch.device = "cpu") -> nn.Module:
    """The generator of an ``an_gan`` checkpoint, rebuilt by :func:`common.training.runs.load_run` (the one reload
    path of
    both tasks: module class and configuration from the checkpoint, weights checked against it).

    Args:
        ckpt_path: a Lightning checkpoint written while training ``an_gan.module.ANGAN``.
        ema: the EMA weights, with the standing batch-norm statistics stored in the checkpoint, when the run kept
            an EMA; otherwise the raw ones.
        map_location: device for the weights.

    Returns:
        The generator (:class:`an_gan.networks.Generator`), in eval mode (deterministic AN, running BN statistics).

    Raises:
        FileNotFoundError: no file at ``ckpt_path``.
        common.training.checkpoints.CheckpointMismatchError: not an ``an_gan`` checkpoint (e.g. an inpainting one).
    """
    module = load_run(ckpt_path, module_class=ANGAN)
    generator = module.ema.averaged if ema and module.ema is not None else module.generator
    return generator.to(map_location).eval()
