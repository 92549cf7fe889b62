"""``GenerationMetrics``: FID, Inception Score, KID and precision / recall of one generated set vs one reference.

A torchmetrics ``Metric`` over *features* (the caller extracts them once per batch with
:func:`common.metrics.generation.features.extract` and routes them to this metric and, per class, to intra-FID):

* FID: float64 running sums (count, sum, sum of outer products) of real and generated features, reduced across
  DDP ranks by summation and cacheable on disk (:meth:`save_reference` / :meth:`load_reference`);
* IS: the generated logits, in a canonical order given by each sample's ``position`` (so the split permutation does
  not depend on how generation was batched or sharded);
* KID and improved precision / recall (torch-fidelity, on the same features as FID): a seeded uniform random subset
  of ``kid_prc_num_samples`` features of each side (0 switches them off), never the first ones in the caller's order
  (a class-sorted reference such as ImageNet's training set would otherwise give its first classes only). Each
  sample's position gets a pseudo-random key (:func:`subset_keys`: a bijective 64-bit mix of the position and
  ``subset_seed``, so keys never tie) and the samples with the ``kid_prc_num_samples`` smallest keys are kept: a
  uniform random subset that depends neither on the order and batching of the updates nor on how the samples are
  sharded over DDP ranks (each rank keeps its own smallest keys, at most twice the subset size between prunings; the
  gathered states give the global ones). KID uses torch-fidelity's defaults (100 subsets of 1,000 per side, capped at
  the sample size), precision / recall ``k = 3``.

``reset()`` clears the generated side only; the reference stays (like torchmetrics' ``reset_real_features=False``);
``reset_reference()`` clears everything.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from common.metrics.generation.cache import load_payload, save_payload
from common.metrics.generation.fid import frechet_distance, kernel_inception_distance, mean_cov
from common.metrics.generation.inception_score import inception_score
from common.metrics.generation.precision_recall import precision_recall

__all__ = ["GenerationMetrics", "subset_keys"]

_REAL_STATES = ("real_n", "real_sum", "real_outer", "real_features", "real_keys")
#: How the KID / precision-recall subset is drawn; part of the reference-cache metadata, so that a cache written
#: under another rule (the former first-N selection) is refused with a message naming this field.
SUBSET_RULE = "smallest splitmix64 keys of the positions"
_GOLDEN_GAMMA = 0x9E3779B97F4A7C15


def subset_keys(positions: Tensor, seed: int = 0) -> Tensor:
    """Pseudo-random int64 keys ``(N,)`` (CPU) of sample ``positions`` (``(N,)`` int64, >= 0) for ``seed``.

    SplitMix64's finaliser (Steele et al., OOPSLA 2014) of ``position + (seed + 1) * golden_gamma`` mod 2^64: a
    bijection of the 64-bit integers, so distinct positions get distinct keys, and the keys of any set of positions
    are in a uniformly random-looking order; the samples with the smallest keys are a seeded random subset. Computed
    on the host (positions on an accelerator are copied first: the evaluator passes CPU positions).
    """
    x = positions.detach().to("cpu", torch.int64).numpy().astype(np.uint64)
    x = x + np.uint64(((int(seed) + 1) * _GOLDEN_GAMMA) % 2**64)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return torch.from_numpy(x.view(np.int64))


def _is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _nonempty(state: list[Tensor] | Tensor) -> bool:
    return len(state) > 0 if isinstance(state, list) else state.numel() > 0


def _ordered(values: list[Tensor] | Tensor, positions: list[Tensor] | Tensor) -> Tensor:
    values, positions = dim_zero_cat(values), dim_zero_cat(positions)
    return values[torch.argsort(positions)]


def _smallest(features: list[Tensor] | Tensor, keys: list[Tensor] | Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The rows with the ``n`` smallest keys, in key order (no host synchronisation)."""
    features, keys = dim_zero_cat(features), dim_zero_cat(keys)
    order = torch.argsort(keys)[:n]
    return features.index_select(0, order), keys.index_select(0, order)


class GenerationMetrics(Metric):
    """FID, IS, KID and precision / recall from features (see the module docstring).

    Args:
        feature_dim: width D of the features.
        is_splits: Inception Score splits (10 in the SN-GAN / SA-GAN protocol).
        kid_prc_num_samples: features per side kept for KID and precision / recall, a seeded random subset of each
            side (0: not computed).
        subset_seed: seed of that subset (:func:`subset_keys`).
        num_logits: width K of the logits (needed under DDP when a process may see no generated image; else
            taken from the first update).
        **kwargs: passed to ``torchmetrics.Metric`` (e.g. ``sync_on_compute``, ``process_group``).
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        feature_dim: int,
        is_splits: int = 10,
        kid_prc_num_samples: int = 10000,
        num_logits: int | None = None,
        subset_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if feature_dim < 1 or is_splits < 1 or kid_prc_num_samples < 0:
            raise ValueError(
                f"need feature_dim >= 1, is_splits >= 1, kid_prc_num_samples >= 0; got {feature_dim}, {is_splits}, "
                f"{kid_prc_num_samples}"
            )
        self.feature_dim, self.is_splits, self.kid_prc_num_samples = feature_dim, is_splits, kid_prc_num_samples
        self.num_logits, self.subset_seed = num_logits, int(subset_seed)
        self._reference_loaded = False
        d, f64 = feature_dim, torch.float64
        for side in ("real", "fake"):
            self.add_state(f"{side}_n", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sum", torch.zeros(d, dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(d, d, dtype=f64), dist_reduce_fx="sum")
            self.add_state(f"{side}_features", [], dist_reduce_fx="cat")
            self.add_state(f"{side}_keys", [], dist_reduce_fx="cat")
        self.add_state("fake_logits", [], dist_reduce_fx="cat")
        self.add_state("fake_logit_positions", [], dist_reduce_fx="cat")

    def update(self, features: Tensor, logits: Tensor | None, positions: Tensor, real: bool) -> None:
        """Accumulate a batch.

        Args:
            features: (N, D) features.
            logits: (N, K) classifier logits of generated images (for IS); ignored for real ones.
            positions: (N,) int64 canonical positions of the samples in their set (reference: index in the
                reference order; generated: the evaluator's canonical order), distinct within a side, preferably on
                the CPU: they give the IS order and the keys of the KID / precision-recall subset.
            real: reference images (True) or generated ones (False).
        """
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"expected features (N, {self.feature_dim}), got {tuple(features.shape)}")
        if positions.shape != (features.shape[0],):
            raise ValueError(f"expected positions ({features.shape[0]},), got {tuple(positions.shape)}")
        side = "real" if real else "fake"
        device = self.real_sum.device
        with torch.autocast(device_type=device.type, enabled=False):
            f = features.detach().to(device=device, dtype=torch.float64)
            setattr(self, f"{side}_n", getattr(self, f"{side}_n") + f.shape[0])
            getattr(self, f"{side}_sum").add_(f.sum(dim=0))
            getattr(self, f"{side}_outer").add_(f.T @ f)
            if self.kid_prc_num_samples:
                # Keys on the host from the (CPU) positions: no accelerator memory is read here. Rows are kept until
                # twice the subset size, then pruned to the smallest keys on the device (no host synchronisation).
                getattr(self, f"{side}_features").append(features.detach().to(device, torch.float32))
                keys = subset_keys(positions, self.subset_seed)
                getattr(self, f"{side}_keys").append(keys.to(device, non_blocking=True))
                stored = sum(t.shape[0] for t in getattr(self, f"{side}_keys"))
                if stored > 2 * self.kid_prc_num_samples:
                    kept = _smallest(
                        getattr(self, f"{side}_features"), getattr(self, f"{side}_keys"), self.kid_prc_num_samples
                    )
                    setattr(self, f"{side}_features", [kept[0]])
                    setattr(self, f"{side}_keys", [kept[1]])
            if not real:
                if logits is None or logits.shape[0] != features.shape[0]:
                    raise ValueError("generated samples need their logits (N, K) for the Inception Score")
                self.fake_logits.append(logits.detach().float())
                self.fake_logit_positions.append(positions.to(device, torch.long, non_blocking=True))
                self.num_logits = self.num_logits or logits.shape[1]

    def _sync_dist(self, *args: Any, **kwargs: Any) -> None:
        # A process may hold no sample of some list state (e.g. a loaded reference lives on rank 0 only); every
        # process must still join every gather, with a tensor of the right rank and dtype.
        empty = {
            "features": torch.zeros(0, self.feature_dim),
            "keys": torch.zeros(0, dtype=torch.long),
            "logits": torch.zeros(0, self.num_logits or 1),
            "logit_positions": torch.zeros(0, dtype=torch.long),
        }
        for side in ("real", "fake"):
            for name, value in empty.items():
                attr = f"{side}_{name}"
                if hasattr(self, attr) and isinstance(getattr(self, attr), list) and not getattr(self, attr):
                    getattr(self, attr).append(value.to(self.real_sum.device))
        super()._sync_dist(*args, **kwargs)

    def has_reference(self) -> bool:
        """True when reference statistics were accumulated or loaded."""
        return self._reference_loaded or float(self.real_n) > 0

    def compute(self) -> dict[str, Tensor]:
        """``fid``, ``is_mean``, ``is_std`` and, with ``kid_prc_num_samples > 0``, ``kid_mean``, ``kid_std``,
        ``precision``, ``recall`` (float32 scalars)."""
        if float(self.real_n) < 2:
            raise RuntimeError(
                "GenerationMetrics has no reference statistics (fewer than 2 real samples): update(..., real=True) "
                "or load_reference(path) first"
            )
        if float(self.fake_n) < 2:
            raise RuntimeError("GenerationMetrics needs at least 2 generated samples: call update(..., real=False)")
        mu_r, cov_r = mean_cov(self.real_n, self.real_sum, self.real_outer)
        mu_f, cov_f = mean_cov(self.fake_n, self.fake_sum, self.fake_outer)
        out = {"fid": frechet_distance(mu_r, cov_r, mu_f, cov_f)}
        logits = _ordered(self.fake_logits, self.fake_logit_positions)
        out["is_mean"], out["is_std"] = inception_score(logits, min(self.is_splits, logits.shape[0]))
        if self.kid_prc_num_samples > 0 and _nonempty(self.real_keys) and _nonempty(self.fake_keys):
            real = _smallest(self.real_features, self.real_keys, self.kid_prc_num_samples)[0]
            fake = _smallest(self.fake_features, self.fake_keys, self.kid_prc_num_samples)[0]
            out["kid_mean"], out["kid_std"] = kernel_inception_distance(real, fake)
            if min(real.shape[0], fake.shape[0]) > 3:
                out["precision"], out["recall"] = precision_recall(real, fake)
            else:
                out["precision"] = out["recall"] = math.nan
        return {key: torch.tensor(value, dtype=torch.float32, device=self.device) for key, value in out.items()}

    def reset(self) -> None:
        """Clear the generated side; the reference stays."""
        kept = {name: getattr(self, name) for name in _REAL_STATES}
        kept = {k: (list(v) if isinstance(v, list) else v.clone()) for k, v in kept.items()}
        super().reset()
        for name, value in kept.items():
            setattr(self, name, value)

    def reset_reference(self) -> None:
        """Clear everything, the reference included."""
        super().reset()
        self._reference_loaded = False

    def _metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return {
            **metadata,
            "feature_dim": self.feature_dim,
            "kid_prc_num_samples": self.kid_prc_num_samples,
            "kid_prc_subset": f"{SUBSET_RULE}, seed {self.subset_seed}",
        }

    def save_reference(self, path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
        """Save the reference statistics (gathered over DDP ranks; rank 0 writes) with ``metadata``.

        Call it on every rank under DDP.
        """
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            if float(self.real_n) < 2:
                raise RuntimeError("no reference statistics to save: call update(..., real=True) first")
            tensors = {name: getattr(self, name) for name in ("real_n", "real_sum", "real_outer")}
            if _nonempty(self.real_keys):  # the subset itself (the kid_prc_num_samples smallest keys)
                tensors["real_features"], tensors["real_keys"] = _smallest(
                    self.real_features, self.real_keys, self.kid_prc_num_samples
                )
            else:
                tensors["real_features"] = torch.zeros(0, self.feature_dim)
                tensors["real_keys"] = torch.zeros(0, dtype=torch.long)
        if not _is_distributed() or torch.distributed.get_rank() == 0:
            save_payload(path, self._metadata(metadata), tensors)
        return Path(path)

    def load_reference(self, path: str | os.PathLike, metadata: dict[str, Any]) -> bool:
        """Load reference statistics saved by :meth:`save_reference`; False when there is no file.

        Under DDP every rank loads the file; rank 0 holds the statistics and the other ranks empty states, so the
        reduced statistics equal the file's.

        Raises:
            ValueError: the file is not a reference file or its metadata differ.
        """
        payload = load_payload(path, self._metadata(metadata))
        if payload is None:
            return False
        self.reset_reference()
        if not _is_distributed() or torch.distributed.get_rank() == 0:
            device = self.real_sum.device
            for name in ("real_n", "real_sum", "real_outer"):
                setattr(self, name, payload[name].to(device=device, dtype=torch.float64))
            if payload["real_features"].shape[0]:
                self.real_features = [payload["real_features"].to(device)]
                self.real_keys = [payload["real_keys"].to(device)]
        self._reference_loaded = True
        self._computed = None
        return True
