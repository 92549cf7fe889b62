"""Tests for common.metrics.generation: FID / IS / KID / precision-recall / intra-FID against numpy, scipy and
brute-force references, the reference cache, and the Inception extractor's offline behaviour."""

import math
import urllib.error

import numpy as np
import pytest
import scipy.linalg
import torch

from common.metrics.generation import (
    INCEPTION_WEIGHTS_URL,
    PAPER_INTRA_FID_CLASSES,
    ClassStatistics,
    GenerationMetrics,
    InceptionFeatureExtractor,
    RandomProjectionExtractor,
    class_frechet_distance,
    class_reference_path,
    default_inception_weights_path,
    extract,
    frechet_distance,
    frechet_distance_to_features,
    inception_score,
    kernel_inception_distance,
    load_payload,
    reference_cache_path,
    resolve_intra_fid_classes,
    save_payload,
    strict_float32,
    to_uint8,
)
from common.metrics.generation import metrics as metrics_module
from common.metrics.generation.metrics import subset_keys

META = {"extractor_name": "table", "key": "toy"}


def numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid-style reference: np.cov + scipy.linalg.sqrtm."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


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


def numpy_kid(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 of KID (Binkowski et al. 2018)."""
    d, m = a.shape[1], a.shape[0]
    kernel = lambda x, y: (x @ y.T / d + 1) ** 3  # noqa: E731
    kxx, kyy, kxy = kernel(a, a), kernel(b, b), kernel(a, b)
    return float((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


def brute_precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkaanniemi et al. 2019 by brute force: balls of k-th nearest-neighbour radius within each set."""

    def radii(x):
        dist = np.linalg.norm(x[:, None] - x[None], axis=-1)
        return np.sort(dist, axis=1)[:, k]  # index 0 is the point itself

    r_real, r_fake = radii(real), radii(fake)
    cross = np.linalg.norm(fake[:, None] - real[None], axis=-1)  # (fake, real)
    precision = (cross <= r_real[None]).any(axis=1).mean()
    recall = (r_fake[None] >= cross.T).any(axis=1).mean()
    return float(precision), float(recall)


@pytest.fixture
def features():
    """Known features: 300 real and 250 generated, D = 6, with 5-way logits for the generated ones."""
    gen = torch.Generator().manual_seed(0)
    mix = torch.randn(6, 6, generator=gen)
    real = (torch.randn(300, 6, generator=gen) @ mix).double()
    fake = (1.3 * torch.randn(250, 6, generator=gen) @ mix + 0.5).double()
    logits = 3 * torch.randn(250, 5, generator=gen)
    return real, fake, logits


def _filled(real, fake, logits, kid_prc=100, splits=10, chunk=None):
    metric = GenerationMetrics(6, is_splits=splits, kid_prc_num_samples=kid_prc)
    chunk = chunk or max(len(real), len(fake))
    for idx in torch.arange(len(real)).split(chunk):
        metric.update(real[idx], None, idx, real=True)
    for idx in torch.arange(len(fake)).split(chunk):
        metric.update(fake[idx], logits[idx], idx, real=False)
    return metric


class TestGenerationMetrics:
    def test_fid_is_kid_pr_match_references(self, features):
        real, fake, logits = features
        out = _filled(real, fake, logits, kid_prc=100).compute()
        assert set(out) == {"fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall"}
        assert out["fid"].item() == pytest.approx(numpy_fid(real.numpy(), fake.numpy()), rel=1e-5)
        is_mean, is_std = numpy_is(logits.numpy(), 10)
        assert out["is_mean"].item() == pytest.approx(is_mean, rel=1e-5)
        assert out["is_std"].item() == pytest.approx(is_std, rel=1e-4)
        # on the seeded random subsets: the 100 smallest keys of each side
        real_subset, fake_subset = (x[torch.argsort(subset_keys(torch.arange(len(x))))[:100]] for x in (real, fake))
        precision, recall = brute_precision_recall(real_subset.numpy(), fake_subset.numpy())
        assert out["precision"].item() == pytest.approx(precision, abs=1e-6)
        assert out["recall"].item() == pytest.approx(recall, abs=1e-6)

    def test_kid_against_unbiased_mmd(self, features):
        real, fake, _ = features
        # one subset of all samples is a permutation, which the unbiased MMD^2 does not see
        mean, std = kernel_inception_distance(real[:200], fake[:200], subsets=1, subset_size=200)
        assert mean == pytest.approx(numpy_kid(real[:200].numpy(), fake[:200].numpy()), rel=1e-9)
        assert std == 0.0
        same = kernel_inception_distance(real[:150], real[150:], subsets=5, subset_size=100)[0]
        assert abs(same) < 0.1 * kernel_inception_distance(real, fake, subsets=5, subset_size=100)[0]

    def test_order_and_batching_do_not_matter(self, features):
        real, fake, logits = features
        whole = _filled(real, fake, logits).compute()
        parts = _filled(real, fake, logits, chunk=37).compute()
        shuffled = GenerationMetrics(6, is_splits=10, kid_prc_num_samples=100)  # fed in reverse order
        for idx in torch.arange(len(real)).flip(0).split(41):
            shuffled.update(real[idx], None, idx, real=True)
        for idx in torch.arange(len(fake)).flip(0).split(23):
            shuffled.update(fake[idx], logits[idx], idx, real=False)
        for other in (parts, shuffled.compute()):
            for key in whole:
                torch.testing.assert_close(whole[key], other[key], rtol=1e-6, atol=1e-6)

    def test_kid_pr_subset_is_a_seeded_random_subset(self):
        """The KID / P&R rows are the kid_prc_num_samples smallest keys of their positions: not the first rows of a
        class-sorted set, the same rows however the updates are ordered, batched or pruned, other rows for another
        seed."""
        n, k, per_class = 40, 4, 100  # a class-sorted set: class c at positions c * 100 .. c * 100 + 99
        positions = torch.arange(k * per_class)
        expected = set(torch.argsort(subset_keys(positions, seed=0))[:n].tolist())
        counts = np.bincount([p // per_class for p in expected], minlength=k)
        assert counts.min() >= 4 and counts.max() <= 20, counts  # every class, about n / k each (first-N: 40/0/0/0)
        assert set(torch.argsort(subset_keys(positions, seed=1))[:n].tolist()) != expected
        features = torch.randn(k * per_class, 6, generator=torch.Generator().manual_seed(0)).double()
        for order in (positions, positions.flip(0), positions[torch.randperm(len(positions))]):
            for chunk in (7, 400):  # chunks of 7 prune many times (more than 2n rows stored)
                metric = GenerationMetrics(6, kid_prc_num_samples=n)
                for idx in order.split(chunk):
                    metric.update(features[idx], None, idx, real=True)
                    assert sum(t.shape[0] for t in metric.real_keys) <= 2 * n + chunk
                kept = torch.cat(metric.real_features)[torch.argsort(torch.cat(metric.real_keys))[:n]]
                torch.testing.assert_close(
                    kept, features[sorted(expected, key=lambda p: subset_keys(torch.tensor([p]))[0].item())].float()
                )

    def test_self_score_of_a_class_sorted_set(self, monkeypatch):
        """Four well-separated classes scored against the same distribution, the reference fed in dataset order
        (class-sorted) and the generated side in the evaluator's canonical order (class-balanced): KID within noise
        of 0, precision and recall near 1. With the former first-N selection planted back (keys = positions) the
        reference subset is class 0 only and the same checks fail."""
        gen = torch.Generator().manual_seed(0)
        centres, k, per_class = torch.rand(4, 8, generator=gen), 4, 400

        def scores():
            metric = GenerationMetrics(8, is_splits=2, kid_prc_num_samples=200)
            real, fake = (
                torch.cat([c + 0.1 * torch.randn(per_class, 8, generator=gen) for c in centres]) for _ in "rf"
            )
            metric.update(real.double(), None, torch.arange(k * per_class), real=True)
            canonical = torch.arange(per_class).repeat(k) * k + torch.arange(k).repeat_interleave(per_class)
            metric.update(fake.double(), torch.randn(k * per_class, 5, generator=gen), canonical, real=False)
            return {key: value.item() for key, value in metric.compute().items()}

        good = scores()
        assert abs(good["kid_mean"]) < 0.01 and good["precision"] >= 0.75 and good["recall"] >= 0.75, good
        monkeypatch.setattr(metrics_module, "subset_keys", lambda positions, seed=0: positions.cpu().long())
        planted = scores()
        assert not (abs(planted["kid_mean"]) < 0.01 and planted["precision"] >= 0.75), planted
        assert planted["kid_mean"] > 0.05 and planted["precision"] < 0.5, planted  # what the first-N rule gave

    @pytest.mark.filterwarnings("ignore:The ``compute`` method:UserWarning")
    def test_reset_keeps_reference(self, features):
        real, fake, logits = features
        metric = _filled(real, fake, logits)
        first = metric.compute()
        metric.reset()
        assert metric.has_reference() and metric.fake_n.item() == 0
        with pytest.raises(RuntimeError, match="at least 2 generated"):
            metric.compute()
        metric.update(fake, logits, torch.arange(len(fake)), real=False)
        second = metric.compute()
        for key in first:
            torch.testing.assert_close(first[key], second[key])
        metric.reset_reference()
        assert not metric.has_reference()
        metric.update(fake, logits, torch.arange(len(fake)), real=False)
        with pytest.raises(RuntimeError, match="no reference statistics"):
            metric.compute()

    def test_save_load_reference(self, features, tmp_path):
        real, fake, logits = features
        source = _filled(real, fake, logits)
        path = reference_cache_path(tmp_path / "cache", "digits_train_r32_ab12", "table")
        assert path == tmp_path / "cache" / "digits_train_r32_ab12__table.pt"
        source.save_reference(path, META)
        assert path.is_file() and not list(path.parent.glob("*.tmp*"))
        target = GenerationMetrics(6, is_splits=10, kid_prc_num_samples=100)
        assert target.load_reference(tmp_path / "missing.pt", META) is False
        assert target.load_reference(path, META) is True
        target.update(fake, logits, torch.arange(len(fake)), real=False)
        a, b = source.compute(), target.compute()
        for key in a:
            torch.testing.assert_close(a[key], b[key])
        with pytest.raises(ValueError, match="extractor_name: file has 'table'"):
            target.load_reference(path, {**META, "extractor_name": "other"})
        with pytest.raises(ValueError, match="kid_prc_num_samples"):
            GenerationMetrics(6, kid_prc_num_samples=5).load_reference(path, META)
        with pytest.raises(ValueError, match="kid_prc_subset: file has '.*seed 0', expected '.*seed 3'"):
            GenerationMetrics(6, kid_prc_num_samples=100, subset_seed=3).load_reference(path, META)
        stale = torch.load(path, weights_only=True)
        del stale["kid_prc_subset"]  # a cache written under the former first-N rule
        torch.save(stale, tmp_path / "stale.pt")
        with pytest.raises(ValueError, match="kid_prc_subset: file has None.*Delete the file"):
            target.load_reference(tmp_path / "stale.pt", META)
        torch.save({"something": torch.zeros(3)}, tmp_path / "foreign.pt")
        with pytest.raises(ValueError, match="not a generation reference file"):
            target.load_reference(tmp_path / "foreign.pt", META)

    def test_exception(self):
        metric = GenerationMetrics(6)
        with pytest.raises(ValueError, match=r"features \(N, 6\)"):
            metric.update(torch.zeros(3, 5), None, torch.arange(3), real=True)
        with pytest.raises(ValueError, match="positions"):
            metric.update(torch.zeros(3, 6), None, torch.arange(2), real=True)
        with pytest.raises(ValueError, match="logits"):
            metric.update(torch.zeros(3, 6), None, torch.arange(3), real=False)
        with pytest.raises(RuntimeError, match="no reference statistics"):
            metric.compute()
        with pytest.raises(ValueError, match="feature_dim"):
            GenerationMetrics(0)


class TestFrechetDistance:
    @pytest.mark.parametrize("singular", [False, True])
    def test_matches_scipy(self, singular):
        rng = np.random.default_rng(3)
        d = 16
        n = 8 if singular else 200  # n < d: rank-deficient covariances
        a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        b = 0.7 * rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 0.3
        t = [torch.from_numpy(x) for x in (a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))]
        assert frechet_distance(*t) == pytest.approx(numpy_fid(a, b), rel=1e-6, abs=1e-6)

    @pytest.mark.parametrize("n", [5, 12, 40])
    def test_small_sample_form_equals_the_full_one(self, n):
        rng = np.random.default_rng(4)
        d = 12
        a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
        b = rng.normal(size=(300, d)) @ rng.normal(size=(d, d)) + 1.0
        mu2, sigma2 = torch.from_numpy(b.mean(0)), torch.from_numpy(np.cov(b, rowvar=False))
        value = frechet_distance_to_features(torch.from_numpy(a), mu2, sigma2)
        assert value == pytest.approx(numpy_fid(a, b), rel=1e-6)
        full = frechet_distance(torch.from_numpy(a.mean(0)), torch.from_numpy(np.cov(a, rowvar=False)), mu2, sigma2)
        assert value == pytest.approx(full, rel=1e-6)

    def test_identical_distributions_and_errors(self):
        rng = np.random.default_rng(4)
        a = torch.from_numpy(rng.normal(size=(500, 12)) @ rng.normal(size=(12, 12)))
        mu, sigma = a.mean(0), torch.from_numpy(np.cov(a.numpy(), rowvar=False))
        assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8
        with pytest.raises(ValueError, match="incompatible"):
            frechet_distance(mu, sigma, mu[:5], sigma)
        with pytest.raises(ValueError, match="incompatible"):
            frechet_distance_to_features(a[:1], mu, sigma)


class TestIntraFID:
    def test_class_frechet_distance_both_paths(self):
        rng = np.random.default_rng(5)
        for n_real in (5, 30):  # below and above D = 8: the n x n and the D x D route
            real = rng.normal(size=(n_real, 8))
            fake = rng.normal(size=(50, 8)) * 1.2 + 0.1
            stats = ClassStatistics(8)
            for chunk in np.array_split(fake, 3):
                stats.update(torch.from_numpy(chunk))
            value = class_frechet_distance(torch.from_numpy(real).float(), stats)
            assert value == pytest.approx(numpy_fid(real.astype(np.float32).astype(np.float64), fake), rel=1e-5)
        assert math.isnan(class_frechet_distance(torch.zeros(1, 8), stats))
        with pytest.raises(ValueError, match="at least 2 generated"):
            class_frechet_distance(torch.zeros(4, 8), ClassStatistics(8))

    def test_class_lists(self):
        assert resolve_intra_fid_classes("table2", 1000) == list(PAPER_INTRA_FID_CLASSES)
        assert PAPER_INTRA_FID_CLASSES == (825, 974, 979, 991, 14, 141, 247, 282)
        assert resolve_intra_fid_classes("all", 3) == [0, 1, 2]
        assert resolve_intra_fid_classes(None, 3) == [] == resolve_intra_fid_classes([], 3)
        with pytest.raises(ValueError, match="outside"):
            resolve_intra_fid_classes([5], 3)
        with pytest.raises(ValueError, match="duplicates"):
            resolve_intra_fid_classes([1, 1], 3)


class TestInceptionScore:
    def test_matches_torch_fidelity(self):
        from torch_fidelity.metric_isc import isc_features_to_metric

        logits = 2 * torch.randn(103, 7, generator=torch.Generator().manual_seed(1))
        reference = isc_features_to_metric(logits, splits=10, shuffle=True, rng_seed=2020)
        mean, std = inception_score(logits, splits=10)
        assert mean == pytest.approx(reference["inception_score_mean"], rel=1e-10)
        assert std == pytest.approx(reference["inception_score_std"], rel=1e-8)

    def test_extremes(self):
        k = 7
        assert inception_score(torch.zeros(70, k), splits=10) == pytest.approx((1.0, 0.0), abs=1e-9)
        confident = 60.0 * torch.eye(k).repeat(20, 1)  # every class equally often, each sample certain
        mean, std = inception_score(confident, splits=1)
        assert mean == pytest.approx(k, rel=1e-6) and std == 0.0
        with pytest.raises(ValueError, match="N >= splits"):
            inception_score(torch.zeros(5, k), splits=10)


class TestFeatures:
    def test_uint8_and_float_images_give_the_same_features(self):
        gen = torch.Generator().manual_seed(5)
        as_uint8 = torch.randint(0, 256, (30, 3, 20, 20), generator=gen, dtype=torch.uint8)
        as_float = as_uint8.float() / 255 + (torch.rand(30, 3, 20, 20, generator=gen) - 0.5) / 1000  # rounds back
        assert torch.equal(to_uint8(as_float), as_uint8) and torch.equal(to_uint8(as_float.half()), as_uint8)
        extractor = RandomProjectionExtractor()
        torch.testing.assert_close(extract(extractor, as_float)[0], extract(extractor, as_uint8)[0])
        with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
            to_uint8(as_float * 2 - 1)
        with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
            to_uint8(as_uint8[:, :1])

    def test_autocast_does_not_change_the_features(self):
        images = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(6))
        plain = extract(RandomProjectionExtractor(), images)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = extract(RandomProjectionExtractor(), images)
        for a, b in zip(plain, mixed, strict=True):
            assert b.dtype == torch.float32
            torch.testing.assert_close(a, b)

    def test_random_projection_extractor_is_deterministic(self):
        images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        f1, l1 = RandomProjectionExtractor()(images)
        f2, l2 = RandomProjectionExtractor()(images)
        assert f1.shape == (5, 16) and l1.shape == (5, 10)
        torch.testing.assert_close(f1, f2)
        torch.testing.assert_close(l1, l2)
        assert not torch.equal(RandomProjectionExtractor(seed=1)(images)[0], f1)
        with pytest.raises(ValueError, match="uint8"):
            RandomProjectionExtractor()(images.float())


def test_cache_files(tmp_path):
    path = reference_cache_path(tmp_path, "imagenet/val r128", "inc:v3")
    assert path.parent == tmp_path and path.name == "imagenet_val_r128__inc_v3.pt"
    class_path = class_reference_path(tmp_path, "imagenet_train", "inc", 14)
    assert class_path == tmp_path / "imagenet_train__inc" / "class_0014.pt"
    save_payload(class_path, {"class": 14}, {"features": torch.ones(2, 3)})
    assert torch.equal(load_payload(class_path, {"class": 14})["features"], torch.ones(2, 3))
    assert load_payload(tmp_path / "none.pt", {}) is None
    with pytest.raises(ValueError, match="class: file has 14, expected 15"):
        load_payload(class_path, {"class": 15})


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


def _ddp_worker(rank, world, init_file, out_dir, real, fake, logits):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        metric = GenerationMetrics(6, is_splits=5, kid_prc_num_samples=100)
        for side, values in (("real", real), ("fake", fake)):  # contiguous shards, as the evaluator makes them
            lo, hi = rank * len(values) // world, (rank + 1) * len(values) // world
            idx = torch.arange(lo, hi)
            metric.update(values[idx], logits[idx] if side == "fake" else None, idx, real=side == "real")
        computed = metric.compute()
        metric.save_reference(f"{out_dir}/ref.pt", META)  # gathers across ranks, rank 0 writes
        torch.distributed.barrier()
        fresh = GenerationMetrics(6, is_splits=5, kid_prc_num_samples=100)
        assert fresh.load_reference(f"{out_dir}/ref.pt", META)
        idx = torch.arange(rank * len(fake) // world, (rank + 1) * len(fake) // world)
        fresh.update(fake[idx], logits[idx], idx, real=False)
        reloaded = fresh.compute()
        if rank == 0:
            torch.save({"computed": computed, "reloaded": reloaded}, f"{out_dir}/result.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_ddp_two_ranks_match_single_process(features, tmp_path):
    """Under gloo DDP the reduced states give the single-process scores (IS, KID and P&R in the canonical order);
    a loaded reference is not double counted."""
    import torch.multiprocessing as mp

    real, fake, logits = features
    expected = _filled(real, fake, logits, splits=5).compute()
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path), real, fake, logits), nprocs=2, join=True)
    result = torch.load(tmp_path / "result.pt")
    for name in ("computed", "reloaded"):
        for key in expected:
            torch.testing.assert_close(result[name][key], expected[key], rtol=1e-5, atol=1e-5)


def test_strict_float32_switches_tf32_off_and_restores_the_flags():
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = (cudnn.allow_tf32, matmul.allow_tf32)
    try:
        for start in (True, False):
            cudnn.allow_tf32 = matmul.allow_tf32 = start
            with strict_float32():
                assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
            assert (cudnn.allow_tf32, matmul.allow_tf32) == (start, start)
        with pytest.raises(KeyError), strict_float32():
            raise KeyError("restored on errors too")
        assert (cudnn.allow_tf32, matmul.allow_tf32) == (False, False)
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before
