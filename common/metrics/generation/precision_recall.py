"""Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019) by torch-fidelity on given features.

Each sample's k-th nearest neighbour distance within its own set defines a ball; precision is the fraction of
generated samples inside some real ball, recall the fraction of real samples inside some generated ball (k = 3 as in
the paper and torch-fidelity). torch-fidelity computes it on VGG-16 features by default; here it runs on whatever
features the caller passes (the evaluator passes the same Inception pool features as FID and KID).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["precision_recall"]


def precision_recall(real: Tensor, fake: Tensor, neighborhood: int = 3) -> tuple[float, float]:
    """(precision, recall) of generated features ``fake`` (N, D) against real features ``real`` (M, D).

    Runs torch-fidelity's ``prc_features_to_metric`` (batched distance computation, ``save_cpu_ram``).
    """
    from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_features_to_metric

    if min(real.shape[0], fake.shape[0]) <= neighborhood:
        raise ValueError(
            f"precision/recall with k={neighborhood} needs more than {neighborhood} samples per side, got "
            f"{real.shape[0]} real and {fake.shape[0]} fake"
        )
    out = prc_features_to_metric(
        fake.detach().float(), real.detach().float(), prc_neighborhood=neighborhood, save_cpu_ram=True, verbose=False
    )
    return float(out[KEY_METRIC_PRECISION]), float(out[KEY_METRIC_RECALL])
