"""Generation metrics for class-conditional GANs, one concern per file.

* :mod:`~common.metrics.generation.features`: the TF-ported Inception-v3 extractor (the protocol's backbone), a
  random stand-in for tests and CPU demos, uint8 quantisation and autocast-free extraction;
* :mod:`~common.metrics.generation.fid`: Frechet distance (also in the small-sample ``n x n`` form), running
  mean / covariance, KID (torch-fidelity);
* :mod:`~common.metrics.generation.inception_score`: IS as torch-fidelity computes it;
* :mod:`~common.metrics.generation.precision_recall`: improved precision / recall (torch-fidelity);
* :mod:`~common.metrics.generation.intra_fid`: the SN-GAN projection intra-FID protocol (per class);
* :mod:`~common.metrics.generation.cache`: reference statistics on disk;
* :mod:`~common.metrics.generation.metrics`: :class:`GenerationMetrics`, the torchmetrics ``Metric`` holding the
  pooled statistics (DDP-reducible).

The evaluation protocol that combines them (sample counts, seeds, reference splits) is
``an_gan.evaluation.GenerationEvaluator``.
"""

from common.metrics.generation.cache import (
    REFERENCE_FORMAT,
    class_reference_path,
    load_payload,
    reference_cache_path,
    save_payload,
)
from common.metrics.generation.features import (
    INCEPTION_WEIGHTS_URL,
    InceptionFeatureExtractor,
    RandomProjectionExtractor,
    default_inception_weights_path,
    extract,
    extractor_name,
    feature_dim,
    strict_float32,
    to_uint8,
    unit_to_uint8,
)
from common.metrics.generation.fid import (
    frechet_distance,
    frechet_distance_to_features,
    kernel_inception_distance,
    mean_cov,
)
from common.metrics.generation.inception_score import inception_score
from common.metrics.generation.intra_fid import (
    PAPER_INTRA_FID_CLASSES,
    ClassStatistics,
    class_frechet_distance,
    resolve_intra_fid_classes,
)
from common.metrics.generation.metrics import GenerationMetrics
from common.metrics.generation.precision_recall import precision_recall

__all__ = [
    "INCEPTION_WEIGHTS_URL",
    "PAPER_INTRA_FID_CLASSES",
    "REFERENCE_FORMAT",
    "ClassStatistics",
    "GenerationMetrics",
    "InceptionFeatureExtractor",
    "RandomProjectionExtractor",
    "class_frechet_distance",
    "class_reference_path",
    "default_inception_weights_path",
    "extract",
    "extractor_name",
    "feature_dim",
    "frechet_distance",
    "frechet_distance_to_features",
    "inception_score",
    "kernel_inception_distance",
    "load_payload",
    "mean_cov",
    "precision_recall",
    "reference_cache_path",
    "resolve_intra_fid_classes",
    "save_payload",
    "strict_float32",
    "to_uint8",
    "unit_to_uint8",
]
