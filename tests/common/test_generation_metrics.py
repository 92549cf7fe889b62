"""Tests for common.metrics.generation: FID / IS / intra-FID against direct numpy + scipy computations."""

import math
import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from common.metrics.generation import (
    INCEPTION_WEIGHTS_URL,
    PAPER_INTRA_FID_CLASSES,
    GenerationMetrics,
    InceptionFeatureExtractor,
    RandomProjectionExtractor,
    default_inception_weights_path,
    frechet_distance,
    inception_score,
    reference_cache_path,
)

NUM_CLASSES = 4


class TableExtractor(nn.Module):
    """Stand-in extractor whose features/logits are read from pixel 0 of each image: known features, exactly."""

    extractor_name = "table"

    def __init__(self, features: torch.Tensor, logits: torch.Tensor) -> None:
        super().__init__()
        self.features, self.logits = features, logits
        self.feature_dim = features.shape[1]
        self.num_logits = logits.shape[1]

    def forward(self, images):
        assert images.dtype == torch.uint8
        index = images[:, 0, 0, 0].long() + 256 * images[:, 1, 0, 0].long()
        return self.features[index], self.logits[index]


def index_images(indices: torch.Tensor, size: int = 8) -> torch.Tensor:
    """uint8 images whose first pixel encodes an index (< 65536) in its red and green channels."""
    images = torch.zeros(len(indices), 3, size, size, dtype=torch.uint8)
    images[:, 0, 0, 0] = (indices % 256).to(torch.uint8)
    images[:, 1, 0, 0] = (indices // 256).to(torch.uint8)
    return images


def numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid-style reference: np.cov + scipy.linalg.sqrtm."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def numpy_is(logits: np.ndarray, splits: int) -> tuple[float, float]:
    perm = np.random.RandomState(2020).permutation(len(logits))
    logits = logits[perm].astype(np.float64)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    n, scores = len(p), []
    for i in range(splits):
        chunk = p[i * n // splits : (i + 1) * n // splits]
        q = chunk.mean(0, keepdims=True)
        scores.append(np.exp((chunk * (np.log(chunk) - np.log(q))).sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


@pytest.fixture
def table_setup():
    """Known features for 600 real and 500 fake samples of 4 classes, D = 6, K = 5."""
    gen = torch.Generator().manual_seed(0)
    n_real, n_fake, d, k = 600, 500, 6, 5
    real_labels = torch.randint(0, NUM_CLASSES, (n_real,), generator=gen)
    fake_labels = torch.randint(0, NUM_CLASSES, (n_fake,), generator=gen)
    mix = torch.randn(d, d, generator=gen)
    real_f = torch.randn(n_real, d, generator=gen) @ mix + real_labels[:, None].float()
    fake_f = 1.3 * torch.randn(n_fake, d, generator=gen) @ mix + 0.5 + 0.8 * fake_labels[:, None].float()
    logits = 3 * torch.randn(n_real + n_fake, k, generator=gen)
    features = torch.cat([real_f, fake_f]).double()
    extractor = TableExtractor(features, logits)
    real_images = index_images(torch.arange(n_real))
    fake_images = index_images(torch.arange(n_real, n_real + n_fake))
    return extractor, real_images, real_labels, fake_images, fake_labels


def test_fid_is_intra_fid_match_numpy_scipy(table_setup):
    extractor, real_images, real_labels, fake_images, fake_labels = table_setup
    metric = GenerationMetrics(extractor, num_classes=NUM_CLASSES, intra_fid_classes=[0, 2, 3], is_splits=10)
    metric.update(real_images, real_labels, real=True)
    metric.update(fake_images, fake_labels, real=False)
    out = metric.compute()

    feats = extractor.features.numpy()
    real_f, fake_f = feats[:600], feats[600:]
    assert out["fid"].item() == pytest.approx(numpy_fid(real_f, fake_f), rel=1e-5)
    is_mean, is_std = numpy_is(extractor.logits[600:].numpy(), 10)
    assert out["is_mean"].item() == pytest.approx(is_mean, rel=1e-5)
    assert out["is_std"].item() == pytest.approx(is_std, rel=1e-4)
    per_class = []
    for c in (0, 2, 3):
        expected = numpy_fid(real_f[real_labels.numpy() == c], fake_f[fake_labels.numpy() == c])
        assert out[f"intra_fid/{c}"].item() == pytest.approx(expected, rel=1e-5)
        per_class.append(expected)
    assert out["intra_fid"].item() == pytest.approx(np.mean(per_class), rel=1e-5)
    assert "intra_fid/1" not in out
    assert set(out) == {"fid", "is_mean", "is_std", "intra_fid", "intra_fid/0", "intra_fid/2", "intra_fid/3"}


def test_inception_score_matches_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = 2 * torch.randn(103, 7, generator=torch.Generator().manual_seed(1))
    reference = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(reference["inception_score_mean"], rel=1e-10)
    assert std == pytest.approx(reference["inception_score_std"], rel=1e-8)


def test_inception_score_extremes():
    k = 7
    assert inception_score(torch.zeros(70, k), splits=10) == pytest.approx((1.0, 0.0), abs=1e-9)
    confident = 60.0 * torch.eye(k).repeat(20, 1)  # every class equally often, each sample certain
    mean, std = inception_score(confident, splits=1)
    assert mean == pytest.approx(k, rel=1e-6)
    assert std == 0.0
    with pytest.raises(ValueError, match="N >= splits"):
        inception_score(torch.zeros(5, k), splits=10)


@pytest.mark.parametrize("singular", [False, True])
def test_frechet_distance_matches_scipy(singular):
    rng = np.random.default_rng(3)
    d = 16
    n = 8 if singular else 200  # n < d: rank-deficient covariances
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = 0.7 * rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 0.3
    expected = numpy_fid(a, b)
    t = [torch.from_numpy(x) for x in (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))]
    assert frechet_distance(*t) == pytest.approx(expected, rel=1e-6, abs=1e-6)


def test_frechet_distance_of_identical_distributions_is_zero():
    rng = np.random.default_rng(4)
    a = torch.from_numpy(rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)))
    mu, sigma = a.mean(0), torch.from_numpy(np.cov(a.numpy(), rowvar=False))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
    with pytest.raises(ValueError, match="incompatible"):
        frechet_distance(mu, sigma, mu[:5], sigma)


def test_fid_of_same_images_is_zero_with_random_projection():
    images = torch.rand(40, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(40) % 3
    metric = GenerationMetrics(RandomProjectionExtractor(), num_classes=3, is_splits=2)
    assert metric.intra_fid_classes == [0, 1, 2]  # no Table 2 class exists among 3 classes: all classes
    metric.update(images, labels, real=True)
    metric.update(images, labels, real=False)
    out = metric.compute()
    assert abs(out["fid"].item()) < 1e-4
    assert abs(out["intra_fid"].item()) < 1e-4
    assert out["is_mean"].item() >= 1.0


def test_batch_split_updates_equal_one_update(table_setup):
    extractor, real_images, real_labels, fake_images, fake_labels = table_setup
    whole = GenerationMetrics(extractor, num_classes=NUM_CLASSES, is_splits=5)
    whole.update(real_images, real_labels, real=True)
    whole.update(fake_images, fake_labels, real=False)
    parts = GenerationMetrics(extractor, num_classes=NUM_CLASSES, is_splits=5)
    for chunk in torch.arange(600).split(77):
        parts.update(real_images[chunk], real_labels[chunk], real=True)
    for chunk in torch.arange(500).split(64):
        parts.update(fake_images[chunk], fake_labels[chunk], real=False)
    a, b = whole.compute(), parts.compute()
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
def test_reset_fake_keeps_reference(table_setup):
    extractor, real_images, real_labels, fake_images, fake_labels = table_setup
    metric = GenerationMetrics(extractor, num_classes=NUM_CLASSES, is_splits=5)
    metric.update(real_images, real_labels, real=True)
    metric.update(fake_images, fake_labels, real=False)
    first = metric.compute()
    metric.reset_fake()
    assert metric.has_reference()
    assert metric.fake_n.item() == 0
    assert metric.fake_logits == []
    with pytest.raises(RuntimeError, match="at least 2 generated"):
        metric.compute()
    metric.update(fake_images, fake_labels, real=False)
    second = metric.compute()
    for key in first:
        torch.testing.assert_close(first[key], second[key])
    metric.reset()  # like reset_real_features=False
    assert metric.has_reference()
    metric.reset_reference()
    assert not metric.has_reference()
    metric.update(fake_images, fake_labels, real=False)
    with pytest.raises(RuntimeError, match="no reference statistics"):
        metric.compute()


def test_save_load_reference_round_trip(table_setup, tmp_path):
    extractor, real_images, real_labels, fake_images, fake_labels = table_setup
    source = GenerationMetrics(extractor, num_classes=NUM_CLASSES, intra_fid_classes=[1, 3], is_splits=5)
    source.update(real_images, real_labels, real=True)
    path = reference_cache_path(tmp_path / "cache", "digits_train_r32_ab12", source.extractor_name)
    assert path == tmp_path / "cache" / "digits_train_r32_ab12__table.pt"
    source.save_reference(path)
    assert path.is_file()
    assert not list(path.parent.glob("*.tmp*"))

    target = GenerationMetrics(extractor, num_classes=NUM_CLASSES, intra_fid_classes=[1, 3], is_splits=5)
    assert not target.has_reference()
    assert target.load_reference(tmp_path / "missing.pt") is False
    assert target.load_reference(path) is True
    assert target.has_reference()
    source.update(fake_images, fake_labels, real=False)
    target.update(fake_images, fake_labels, real=False)
    a, b = source.compute(), target.compute()
    for key in a:
        torch.testing.assert_close(a[key], b[key])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"num_classes": 5}, "num_classes"),
        ({"intra_fid_classes": [1, 2]}, "intra_fid_classes"),
    ],
)
def test_load_reference_rejects_mismatched_metadata(table_setup, tmp_path, kwargs, field):
    extractor, real_images, real_labels, _, _ = table_setup
    source = GenerationMetrics(extractor, num_classes=NUM_CLASSES, intra_fid_classes=[1, 3])
    source.update(real_images, real_labels, real=True)
    path = source.save_reference(tmp_path / "ref.pt")
    other = GenerationMetrics(extractor, **{"num_classes": NUM_CLASSES, "intra_fid_classes": [1, 3], **kwargs})
    with pytest.raises(ValueError, match=field):
        other.load_reference(path)


def test_load_reference_rejects_other_extractor_and_foreign_files(table_setup, tmp_path):
    extractor, real_images, real_labels, _, _ = table_setup
    source = GenerationMetrics(extractor, num_classes=NUM_CLASSES)
    source.update(real_images, real_labels, real=True)
    path = source.save_reference(tmp_path / "ref.pt")
    other = GenerationMetrics(RandomProjectionExtractor(feature_dim=6), num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match="extractor_name: file has 'table'"):
        other.load_reference(path)
    torch.save({"something": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a GenerationMetrics reference file"):
        source.load_reference(tmp_path / "foreign.pt")


def test_uint8_and_float_inputs_are_equivalent():
    gen = torch.Generator().manual_seed(5)
    as_uint8 = torch.randint(0, 256, (30, 3, 20, 20), generator=gen, dtype=torch.uint8)
    as_float = as_uint8.float() / 255 + (torch.rand(30, 3, 20, 20, generator=gen) - 0.5) / 1000  # rounds back
    labels = torch.arange(30) % 2
    results = []
    for images in (as_uint8, as_float, as_float.half()):
        metric = GenerationMetrics(RandomProjectionExtractor(), num_classes=2, is_splits=3)
        metric.update(images, labels, real=True)
        metric.update(images.flip(0), labels, real=False)
        metric.update(as_uint8[:10], labels[:10], real=False)
        results.append(metric.compute())
    for other in results[1:]:
        for key in results[0]:
            torch.testing.assert_close(results[0][key], other[key])


def test_bad_inputs_raise():
    metric = GenerationMetrics(RandomProjectionExtractor(), num_classes=3)
    images = torch.rand(4, 3, 16, 16)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        metric.update(images * 2 - 1, torch.zeros(4, dtype=torch.long), real=True)
    with pytest.raises(ValueError, match="labels must lie in"):
        metric.update(images, torch.tensor([0, 1, 2, 3]), real=True)
    with pytest.raises(ValueError, match="integer labels"):
        metric.update(images, torch.zeros(3, dtype=torch.long), real=True)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        metric.update(images[:, :1], torch.zeros(4, dtype=torch.long), real=True)
    with pytest.raises(ValueError, match="outside"):
        GenerationMetrics(RandomProjectionExtractor(), num_classes=3, intra_fid_classes=[5])
    with pytest.raises(RuntimeError, match="no reference statistics"):
        metric.compute()


def test_default_intra_classes_are_the_paper_table2_classes():
    metric = GenerationMetrics(RandomProjectionExtractor(), num_classes=1000)
    assert metric.intra_fid_classes == list(PAPER_INTRA_FID_CLASSES) == [825, 974, 979, 991, 14, 141, 247, 282]
    assert GenerationMetrics(RandomProjectionExtractor(), num_classes=200).intra_fid_classes == [14, 141]


def test_intra_fid_is_nan_for_classes_without_samples(table_setup):
    extractor, real_images, real_labels, fake_images, fake_labels = table_setup
    metric = GenerationMetrics(extractor, num_classes=NUM_CLASSES, intra_fid_classes=[0, 1], is_splits=2)
    metric.update(real_images, real_labels, real=True)
    keep = fake_labels != 1
    metric.update(fake_images[keep], fake_labels[keep], real=False)
    out = metric.compute()
    assert math.isnan(out["intra_fid/1"].item())
    assert out["intra_fid"].item() == pytest.approx(out["intra_fid/0"].item())


def test_extractor_without_size_attributes_is_probed():
    class Plain(nn.Module):
        def forward(self, images):
            x = images.float().mean(dim=(2, 3))
            return torch.cat([x, x**2], dim=1), x

    metric = GenerationMetrics(Plain(), num_classes=2, is_splits=1)
    assert metric.feature_dim == 6
    assert metric.extractor_name == "Plain"
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    metric.update(images, torch.arange(10) % 2, real=True)
    metric.update(images, torch.arange(10) % 2, real=False)
    assert abs(metric.compute()["fid"].item()) < 1e-6


def test_random_projection_extractor_is_deterministic():
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    f1, l1 = RandomProjectionExtractor()(images)
    f2, l2 = RandomProjectionExtractor()(images)
    assert f1.shape == (5, 16)
    assert l1.shape == (5, 10)
    torch.testing.assert_close(f1, f2)
    torch.testing.assert_close(l1, l2)
    assert not torch.equal(RandomProjectionExtractor(seed=1)(images)[0], f1)
    with pytest.raises(ValueError, match="uint8"):
        RandomProjectionExtractor()(images.float())


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """Empty torch hub cache and a download that fails at once, as on a machine without network."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    calls = []

    def no_network(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return calls


def test_inception_without_weights_offline_raises_helpful_error(offline, tmp_path):
    expected_target = tmp_path / "torch_home" / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    assert default_inception_weights_path() == expected_target
    with pytest.raises(RuntimeError) as info:
        InceptionFeatureExtractor()
    message = str(info.value)
    assert INCEPTION_WEIGHTS_URL in message
    assert str(expected_target) in message
    assert "weights_path" in message
    assert offline == [INCEPTION_WEIGHTS_URL]

    with pytest.raises(RuntimeError, match="does not exist") as info:
        InceptionFeatureExtractor(weights_path=str(tmp_path / "nope.pth"))
    assert INCEPTION_WEIGHTS_URL in str(info.value)


def test_generation_metrics_builds_offline_and_fails_on_first_use(offline):
    metric = GenerationMetrics(num_classes=1000)  # no extractor yet: constructing must not need the weights
    assert metric.feature_dim == 2048
    assert metric.extractor_name == "inception-v3-tf-2015-12-05"
    assert offline == []
    with pytest.raises(RuntimeError, match="weights-inception-2015-12-05"):
        metric.update(torch.rand(2, 3, 8, 8), torch.tensor([1, 2]), real=True)


def test_inception_extractor_loads_local_weights_file(offline, tmp_path, monkeypatch):
    """The real torch-fidelity network loads a local weights file (random weights here: shapes only)."""
    import torch_fidelity.feature_extractor_inceptionv3 as tf_inception

    # Build the torch-fidelity module once without weights to get a state dict of the right structure.
    with monkeypatch.context() as patch:
        patch.setattr(tf_inception, "load_state_dict_from_url", lambda *a, **k: None)
        patch.setattr(tf_inception.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        template = tf_inception.FeatureExtractorInceptionV3("template", ["2048"])
    weights = tmp_path / "inception.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in template.state_dict().items()}, weights)

    extractor = InceptionFeatureExtractor(weights_path=str(weights))
    extractor.train()
    assert not extractor.net.training
    features, logits = extractor(torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8))
    assert features.shape == (2, 2048)
    assert logits.shape == (2, 1008)
    assert torch.isfinite(features).all()
    assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="uint8"):
        extractor(torch.rand(2, 3, 40, 40))


def test_reference_cache_path_is_filesystem_safe(tmp_path):
    path = reference_cache_path(tmp_path, "imagenet/val r128", "inc:v3")
    assert path.parent == tmp_path
    assert path.name == "imagenet_val_r128__inc_v3.pt"


def _ddp_worker(rank, world, init_file, out_dir, features, logits, real_labels, fake_labels):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        extractor = TableExtractor(features, logits)
        n_real, n_fake = len(real_labels), len(fake_labels)
        real_idx = torch.arange(n_real)[rank::world]
        fake_idx = torch.arange(n_fake)[rank::world]
        metric = GenerationMetrics(extractor, num_classes=NUM_CLASSES, intra_fid_classes=[0, 3], is_splits=5)
        metric.update(index_images(real_idx), real_labels[real_idx], real=True)
        metric.update(index_images(n_real + fake_idx), fake_labels[fake_idx], real=False)
        computed = metric.compute()
        metric.save_reference(f"{out_dir}/ref.pt")  # gathers across ranks, rank 0 writes
        torch.distributed.barrier()
        fresh = GenerationMetrics(extractor, num_classes=NUM_CLASSES, intra_fid_classes=[0, 3], is_splits=5)
        assert fresh.load_reference(f"{out_dir}/ref.pt")
        assert fresh.has_reference()
        fresh.update(index_images(n_real + fake_idx), fake_labels[fake_idx], real=False)
        reloaded = fresh.compute()
        if rank == 0:
            torch.save({"computed": computed, "reloaded": reloaded}, f"{out_dir}/result.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_match_single_process(table_setup, tmp_path):
    """Sum-reduced states under gloo DDP give the single-process scores; a loaded reference is not double counted."""
    import torch.multiprocessing as mp

    extractor, real_images, real_labels, fake_images, fake_labels = table_setup
    single = GenerationMetrics(extractor, num_classes=NUM_CLASSES, intra_fid_classes=[0, 3], is_splits=5)
    single.update(real_images, real_labels, real=True)
    single.update(fake_images, fake_labels, real=False)
    expected = single.compute()
    args = (2, str(tmp_path / "init"), str(tmp_path), extractor.features, extractor.logits, real_labels, fake_labels)
    mp.spawn(_ddp_worker, args=args, nprocs=2, join=True)
    result = torch.load(tmp_path / "result.pt")
    for name in ("computed", "reloaded"):
        for key in ("fid", "intra_fid", "intra_fid/0", "intra_fid/3"):
            torch.testing.assert_close(result[name][key], expected[key], rtol=1e-5, atol=1e-5)
        # IS: the gathered logits are in rank order, so the permuted splits differ; the score stays close
        assert result[name]["is_mean"].item() == pytest.approx(expected["is_mean"].item(), rel=0.05)


def test_autocast_does_not_change_the_scores():
    """Under bf16 mixed precision the extractor and the sums still run in float32/float64."""
    gen = torch.Generator().manual_seed(6)
    real, fake = torch.rand(40, 3, 16, 16, generator=gen), torch.rand(40, 3, 16, 16, generator=gen) ** 2
    labels = torch.arange(40) % 2
    results = []
    for autocast in (False, True):
        metric = GenerationMetrics(RandomProjectionExtractor(), num_classes=2, is_splits=2)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            metric.update(real, labels, real=True)
            metric.update(fake, labels, real=False)
        results.append(metric.compute())
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key])
