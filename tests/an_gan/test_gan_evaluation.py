"""Tests of the evaluation protocol (an_gan.evaluation, an_gan.noise) on a synthetic class tree of real files."""

import functools
import threading

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from torch import nn

from an_gan.evaluation import GenerationEvaluator
from an_gan.networks import Generator
from an_gan.noise import (
    NOISE_CHUNK,
    ClassSampleDataset,
    batch_inputs,
    class_counts,
    class_noise,
    generate_batch,
    pack_batches,
    positions,
)
from common.data.class_images import ClassFolderDataModule
from common.layers import AttentiveNorm2d
from common.metrics.generation import RandomProjectionExtractor, extract
from common.visualization import save_png, to_unit

TRAIN_COUNTS = (6, 9, 7)  # images per class in the tree's train folder


class ToyGenerator(nn.Module):
    """A deterministic "generator": a class colour plus noise-driven texture, 16x16."""

    def __init__(self, num_classes: int = 3, z_dim: int = 16) -> None:
        super().__init__()
        self.num_classes, self.z_dim, self.resolution = num_classes, z_dim, 16
        self.mix = nn.Parameter(torch.randn(z_dim, 3 * 16 * 16, generator=torch.Generator().manual_seed(0)) / 4)

    def forward(self, z, y):
        colour = torch.stack([(y == c).float() for c in range(3)], dim=1)[:, :, None, None] * 1.6 - 0.8
        return torch.tanh(colour + (z @ self.mix).view(-1, 3, 16, 16))


def _tree(root, counts, seed):
    rng = np.random.default_rng(seed)
    for c, n in enumerate(counts):
        for i in range(n):
            array = rng.integers(0, 80, size=(16, 16, 3), dtype=np.uint8)
            array[..., c] += 150
            (root / f"class{c}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / f"class{c}" / f"{i:03d}.png")
    return root


@pytest.fixture
def data(tmp_path):
    train = _tree(tmp_path / "train", TRAIN_COUNTS, 0)
    val = _tree(tmp_path / "val", (4, 4, 4), 1)
    return ClassFolderDataModule(str(train), resolution=16, batch_size=4, num_workers=0, val_root=str(val))


def _evaluator(**kwargs):
    defaults = {
        "num_samples": 9,
        "seed": 3,
        "batch_size": 4,
        "reference_split": "val",
        "intra_fid_classes": [0, 2],
        "intra_fid_num_per_class": 5,
        "intra_fid_split": "train",
        "is_splits": 3,
        "kid_prc_num_samples": 6,
        "feature_extractor": RandomProjectionExtractor(feature_dim=4, num_logits=3),
        "reference_cache_dir": None,
    }
    defaults.update(kwargs)
    return GenerationEvaluator(**defaults)


def numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    """pytorch-fid-style reference: np.cov + scipy.linalg.sqrtm."""
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(scipy.linalg.sqrtm(s1 @ s2))
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


class TestSamples:
    def test_streams_do_not_depend_on_how_they_are_drawn(self):
        whole = class_noise(7, 2, 0, 3 * NOISE_CHUNK + 5, 8)
        parts = torch.cat([class_noise(7, 2, a, b, 8) for a, b in ((0, 1), (1, 70), (70, 3 * NOISE_CHUNK + 5))])
        torch.testing.assert_close(parts, whole)
        assert not torch.equal(class_noise(7, 1, 0, 4, 8), whole[:4])
        assert not torch.equal(class_noise(8, 2, 0, 4, 8), whole[:4])
        dataset = ClassSampleDataset([2, 0], 3, 8, seed=7)
        torch.testing.assert_close(dataset.z[:3], whole[:3])
        assert dataset.labels.tolist() == [2, 2, 2, 0, 0, 0] and dataset.indices.tolist() == [0, 1, 2] * 2

    def test_counts_and_positions(self):
        assert class_counts(11, 4) == [3, 3, 3, 2]
        assert positions(1, 0, 3, 4).tolist() == [1, 5, 9]  # labels cycle: position % K == class
        with pytest.raises(ValueError):
            class_counts(-1, 3)


class TestIntraFID:
    """SN-GAN projection protocol: class c's training images vs a fixed number of generated images of class c."""

    def test_matches_numpy_scipy_per_class(self, data):
        evaluator = _evaluator()
        g = ToyGenerator()
        scores = evaluator.evaluate(g, data)
        extractor = evaluator.feature_extractor
        train = data.dataset("train")
        train.hflip = False  # the reference is never flipped (the training loader flips)
        per_class = []
        for c in (0, 2):
            real = torch.stack([train[i]["image"] for i in np.flatnonzero(train.labels == c)])
            assert real.shape[0] == TRAIN_COUNTS[c]  # every training image of the class, nothing else
            fake = g(class_noise(3, c, 0, 5, 16), torch.full((5,), c))  # the first 5 images of its stream
            real_f = extract(extractor, to_unit(real))[0].double().numpy()
            fake_f = extract(extractor, to_unit(fake))[0].double().numpy()
            expected = numpy_fid(real_f, fake_f)
            assert scores[f"intra_fid/{c}"] == pytest.approx(expected, rel=1e-5, abs=1e-6)
            per_class.append(expected)
        assert "intra_fid/1" not in scores
        assert scores["intra_fid"] == pytest.approx(np.mean(per_class), rel=1e-5)
        assert set(evaluator.last_intra_fid) == {0, 2}

    def test_fid_set_and_reference_split(self, data):
        evaluator = _evaluator(intra_fid_classes=None)
        g = ToyGenerator()
        scores = evaluator.evaluate(g, data)
        assert "intra_fid" not in scores
        extractor = evaluator.feature_extractor
        real = torch.stack([data.dataset("val")[i]["image"] for i in range(len(data.dataset("val")))])
        fake = torch.cat([g(class_noise(3, c, 0, 3, 16), torch.full((3,), c)) for c in range(3)])  # 9 = 3 per class
        expected = numpy_fid(*(extract(extractor, to_unit(x))[0].double().numpy() for x in (real, fake)))
        assert scores["fid"] == pytest.approx(expected, rel=1e-5)
        other = _evaluator(intra_fid_classes=None, reference_split="train").evaluate(g, data)
        assert other["fid"] != pytest.approx(scores["fid"])  # the reference split is what it says

    def test_class_choices(self, data):
        assert _evaluator(intra_fid_classes="all").classes(3) == [0, 1, 2]
        with pytest.raises(ValueError, match="outside"):
            _evaluator(intra_fid_classes="table2").classes(3)  # the Table 2 classes need ImageNet's 1000
        with pytest.raises(ValueError, match="'all', 'table2'"):
            _evaluator(intra_fid_classes="some").classes(3)


class TestEvaluator:
    def test_folder_scores_equal_generator_scores(self, data, tmp_path):
        g = ToyGenerator()
        direct = _evaluator().evaluate(g, data)
        out = tmp_path / "samples"
        items = ClassSampleDataset(range(3), 5, 16, seed=3)  # max(3 for FID, 5 for intra-FID) per class
        with torch.no_grad():
            for image, y, j in zip(to_unit(g(items.z, items.labels)), items.labels, items.indices, strict=True):
                save_png(image, out / f"{int(y):04d}" / f"{int(j):06d}.png")
        from_folder = _evaluator().score_folder(out, data)
        assert from_folder.keys() == direct.keys()
        for key, value in direct.items():
            assert from_folder[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        (out / "0001" / "000004.png").unlink()
        with pytest.raises(ValueError, match="class 1 needs"):
            _evaluator(intra_fid_classes="all").score_folder(out, data)
        (out / "0009").mkdir()
        with pytest.raises(ValueError, match="neither a class index"):
            _evaluator().score_folder(out, data)

    def test_reference_cache_is_used(self, data, tmp_path):
        evaluator = _evaluator(reference_cache_dir=str(tmp_path / "refs"))
        first = evaluator.evaluate(ToyGenerator(), data)
        assert len(list((tmp_path / "refs").glob("*.pt"))) == 1
        assert len(list((tmp_path / "refs").glob("*/class_*.pt"))) == 2  # one file per intra-FID class

        class NoImages(ClassFolderDataModule):
            def reference_dataloader(self, *args, **kwargs):
                raise AssertionError("the cache should have been used")

        cached = NoImages(data.hparams.root, resolution=16, num_workers=0, val_root=data.hparams.val_root)
        second = _evaluator(reference_cache_dir=str(tmp_path / "refs")).evaluate(ToyGenerator(), cached)
        assert second == pytest.approx(first)

    def test_evaluation_draws_nothing_from_the_global_rngs(self, data, tmp_path):
        # Cold cache (the reference loaders run) and warm cache (they do not): a seeded training run must not see
        # the difference, so neither may touch torch's, numpy's or Python's global random state.
        import random

        def states():
            return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()

        for cache in ("cold", "warm"):
            before = states()
            _evaluator(reference_cache_dir=str(tmp_path / "refs")).evaluate(ToyGenerator(), data)
            after = states()
            assert torch.equal(before[0], after[0]), f"{cache} cache: torch's global RNG was used"
            assert np.array_equal(before[1], after[1]), f"{cache} cache: numpy's global RNG was used"
            assert before[2] == after[2], f"{cache} cache: Python's global RNG was used"

    @pytest.mark.slow
    def test_ranks_whose_reference_caches_differ_agree(self, data, tmp_path):
        # A relative reference_cache_dir resolves against each process's working folder: rank 0's cache warm and
        # rank 1's cold must give the one-process scores, not a rank waiting in a collective the other never joins.
        import torch.multiprocessing as mp

        expected = _evaluator(reference_cache_dir=str(tmp_path / "refs0")).evaluate(ToyGenerator(), data)
        assert list((tmp_path / "refs0").glob("*.pt"))  # rank 0's cache is warm, rank 1's (refs1) is empty
        roots = (data.hparams.root, data.hparams.val_root)
        mp.spawn(_cache_worker, args=(2, str(tmp_path / "init"), str(tmp_path), roots), nprocs=2, join=True)
        scores = torch.load(tmp_path / "scores.pt")
        assert scores == pytest.approx(expected, rel=1e-5, abs=1e-6)

    def test_processes_share_the_classes(self):
        plan = _evaluator(intra_fid_classes="all", num_samples=10).plan(3)
        assert plan == [(0, 4, 5), (1, 3, 5), (2, 3, 5)]
        shares = [[row for row in plan if row[0] % 2 == rank] for rank in (0, 1)]  # what run(rank, world=2) takes
        assert sorted(shares[0] + shares[1]) == plan and not set(shares[0]) & set(shares[1])

    def test_builds_offline_and_fails_on_first_use(self, monkeypatch, tmp_path):
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # empty cache, and no network:
        monkeypatch.setattr(
            torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline"))
        )
        evaluator = GenerationEvaluator()  # constructing must not need the Inception weights
        assert evaluator.extractor_name == "inception-v3-tf-2015-12-05"
        with pytest.raises(RuntimeError, match="weights-inception-2015-12-05"):
            evaluator.feature_extractor  # noqa: B018

    def test_exception(self, data):
        with pytest.raises(ValueError, match="num_samples"):
            GenerationEvaluator(num_samples=1)
        with pytest.raises(ValueError, match="is_splits"):
            GenerationEvaluator(num_samples=5, is_splits=10)
        with pytest.raises(ValueError, match="4 classes but the reference data 3"):
            _evaluator().evaluate(ToyGenerator(num_classes=4), data)


class _Recording(nn.Module):
    """Wraps a generator or an extractor and keeps what it was called with / returned (CPU copies)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, []
        for name in ("num_classes", "z_dim", "feature_dim", "num_logits", "extractor_name"):
            if hasattr(inner, name):
                setattr(self, name, getattr(inner, name))

    def forward(self, *args):
        self.calls.append(tuple(a.detach().cpu().clone() for a in args))
        return self.inner(*args)


def _cache_worker(rank, world, init_file, out_dir, roots):
    from datetime import timedelta

    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timedelta(seconds=60)
    )
    try:
        data = ClassFolderDataModule(roots[0], resolution=16, batch_size=4, num_workers=0, val_root=roots[1])
        evaluator = _evaluator(reference_cache_dir=f"{out_dir}/refs{rank}")
        evaluator.prepare(data, "cpu", rank, world)
        scores = evaluator.run(ToyGenerator(), data, "cpu", rank, world)
        if rank == 0:
            torch.save(scores, f"{out_dir}/scores.pt")
    finally:
        torch.distributed.destroy_process_group()


def _small_generator():
    """The real AN generator at toy width: 3 classes, 16x16, AN in block 1."""
    torch.manual_seed(0)
    an = functools.partial(AttentiveNorm2d, num_entities=4)
    return Generator(3, 16, z_dim=8, ch=2, long_range=an, long_range_block=1).eval()


class TestBatchesAndOverlap:
    def test_pack_batches(self):
        assert pack_batches([(0, 3), (1, 2)], 4) == [((0, 0, 3), (1, 0, 1)), ((1, 1, 2),)]
        counts = [(2, 7), (0, 0), (1, 12), (5, 1)]
        for size in (1, 3, 5, 20, 100):
            batches = pack_batches(counts, size)
            assert [sum(b - a for _, a, b in s) for s in batches[:-1]] == [size] * (len(batches) - 1)
            flat = [(c, j) for s in batches for c, a, b in s for j in range(a, b)]
            assert flat == [(c, j) for c, n in counts for j in range(n)]  # class-major, every image once
        with pytest.raises(ValueError, match="batch_size must be >= 1"):
            pack_batches(counts, 0)
        with pytest.raises(ValueError, match="image count must be >= 0"):
            pack_batches([(0, -1)], 2)

    def test_batch_inputs_are_the_class_streams(self):
        z, y = batch_inputs([(2, 5, 9), (0, 0, 3)], seed=4, z_dim=8)
        torch.testing.assert_close(
            z, torch.cat([class_noise(4, 2, 5, 9, 8), class_noise(4, 0, 0, 3, 8)]), rtol=0, atol=0
        )
        assert y.tolist() == [2] * 4 + [0] * 3

    @pytest.mark.parametrize("intra", [None, [0, 2]])
    def test_overlapped_equals_sequential_by_value(self, data, device, intra):
        results = {}
        for overlap in (False, True):
            g = _Recording(_small_generator()).to(device)
            extractor = _Recording(RandomProjectionExtractor(feature_dim=4, num_logits=3))
            evaluator = _evaluator(
                num_samples=23,
                batch_size=4,
                overlap=overlap,
                feature_extractor=extractor,
                intra_fid_classes=intra,
                intra_fid_num_per_class=10,
            )
            results[overlap] = (evaluator.evaluate(g, data, device), g.calls, extractor.calls)
        (seq, seq_g, seq_x), (ovl, ovl_g, ovl_x) = results[False], results[True]
        assert seq.keys() == ovl.keys() and all(seq[k] == ovl[k] for k in seq), (seq, ovl)  # exactly equal
        assert len(seq_g) == len(ovl_g) == (6 if intra is None else 7)  # 23 or 10 + 8 + 10 images, in 4s
        assert len(seq_x) == len(ovl_x) > len(seq_g)  # every generated batch, plus the reference batches
        for a, b in zip(seq_g + seq_x, ovl_g + ovl_x, strict=True):  # the same (z, y) and extractor inputs, in order
            assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))

    def test_images_do_not_depend_on_the_batch_size(self, data):
        per_size = {}
        for size in (3, 64):
            g = _Recording(_small_generator())
            scores = _evaluator(num_samples=23, batch_size=size, intra_fid_classes=[1]).evaluate(g, data)
            z, y = (torch.cat([call[i] for call in g.calls]) for i in (0, 1))
            per_size[size] = scores, z, y
        (a, za, ya), (b, zb, yb) = per_size[3], per_size[64]
        assert torch.equal(za, zb) and torch.equal(ya, yb)  # the same (z, y) per image
        assert ya.tolist() == [0] * 8 + [1] * 8 + [2] * 7  # class-major; class 1 (intra-FID) has 8 = max(8, 5)
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)

    def test_folder_overlap_equals_sequential(self, data, tmp_path):
        g = ToyGenerator()
        items = ClassSampleDataset(range(3), 5, 16, seed=3)
        with torch.no_grad():
            for image, y, j in zip(to_unit(g(items.z, items.labels)), items.labels, items.indices, strict=True):
                save_png(image, tmp_path / "s" / f"{int(y):04d}" / f"{int(j):06d}.png")
        seq = _evaluator(overlap=False).score_folder(tmp_path / "s", data)
        assert _evaluator(overlap=True).score_folder(tmp_path / "s", data) == seq

    def test_generator_errors_reach_the_caller(self, data):
        class Broken(ToyGenerator):
            def forward(self, z, y):
                if self.calls == 1:
                    raise RuntimeError("generator failed on batch 2")
                self.calls += 1
                return super().forward(z, y)

        for overlap in (False, True):
            g = Broken()
            g.calls = 0
            with pytest.raises(RuntimeError, match="failed on batch 2"):
                _evaluator(overlap=overlap).evaluate(g, data)

    def test_extractor_errors_stop_the_producer(self, data):
        class Failing(RandomProjectionExtractor):
            calls = 0

            def forward(self, images):
                Failing.calls += 1
                if Failing.calls == 5:  # 3 reference batches, then the second generated one
                    raise RuntimeError("extractor failed")
                return super().forward(images)

        threads = threading.active_count()
        evaluator = _evaluator(num_samples=30, overlap=True, feature_extractor=Failing(feature_dim=4, num_logits=3))
        with pytest.raises(RuntimeError, match="extractor failed") as info:
            evaluator.evaluate(ToyGenerator(), data)
        assert threading.active_count() == threads  # joined at once, although the traceback is still alive
        assert info.value is not None

    def test_bad_settings(self):
        with pytest.raises(ValueError, match="batch_size >= 1"):
            GenerationEvaluator(batch_size=0)
        with pytest.raises(TypeError, match="overlap must be True or False"):
            GenerationEvaluator(overlap="yes")


def test_extractor_runs_without_tf32(data):
    """On CUDA cuDNN would run Inception's float32 convolutions in TF32; the evaluator switches that off."""
    seen = []

    class Flags(RandomProjectionExtractor):
        def forward(self, images):
            seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
            return super().forward(images)

    before = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default
    try:
        _evaluator(feature_extractor=Flags(feature_dim=4, num_logits=3)).evaluate(ToyGenerator(), data)
        assert seen and set(seen) == {(False, False)}
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("overlap", [False, True])
def test_no_host_synchronisation_per_batch_on_cuda(data, overlap):
    """The batch loop (inputs, generation, quantisation, features, statistics) never waits for the GPU."""
    device = torch.device("cuda")
    generator = ToyGenerator().to(device)  # no label check: the evaluator's own path is what is tested
    extractor = RandomProjectionExtractor(feature_dim=4, num_logits=3).to(device)
    evaluator = _evaluator(num_samples=30, intra_fid_classes=None, overlap=overlap, feature_extractor=extractor)
    evaluator.prepare(data, device)
    evaluator.metrics(device).reset()
    counts = {c: (f, i) for c, f, i in evaluator.plan(3)}
    batches = pack_batches([(c, max(n)) for c, n in counts.items()], evaluator.batch_size)
    produce = functools.partial(generate_batch, generator, evaluator.seed, device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            evaluator._score(batches, produce, counts, data, device, "generating", True)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert float(evaluator.metrics(device).fake_n) == 30


def test_intra_fid_only_protocol(data):
    """num_samples 0: no FID set (and no pooled reference pass), the intra-FID of the chosen classes as usual."""

    class NoPooledReference(type(data)):
        def reference_dataloader(self, split, classes=None, *args, **kwargs):
            assert classes is not None, "the pooled reference should not be read"
            return super().reference_dataloader(split, classes, *args, **kwargs)

    only = NoPooledReference(data.hparams.root, resolution=16, num_workers=0, val_root=data.hparams.val_root)
    scores = _evaluator(num_samples=0).evaluate(ToyGenerator(), only)
    assert set(scores) == {"intra_fid", "intra_fid/0", "intra_fid/2"}
    assert scores["intra_fid/2"] == pytest.approx(_evaluator().evaluate(ToyGenerator(), data)["intra_fid/2"])
    with pytest.raises(ValueError, match="nothing to compute"):
        _evaluator(num_samples=0, intra_fid_classes=None)
