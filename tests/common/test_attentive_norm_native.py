"""The compiled C passes of the fused AttentiveNorm2d (common.layers.attentive_norm_native) against the chunked torch
passes, pass by pass and for the whole layer; the fallbacks; the build (cache, failure)."""

import platform
import shutil
from pathlib import Path

import pytest
import torch

from common.layers import attentive_norm_chunked as chunked
from common.layers import attentive_norm_native as native
from common.layers.attentive_norm import AttentiveNorm2d

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


def test_builds_here():
    """With a C compiler the compiled passes are built and used (else the CPU speed path would silently be gone)."""
    assert native.available(), native.build_error()


def test_vector_width_follows_the_machine():
    """The default build uses the CPU's own vector width (a wider type spills registers: ~8x slower on AVX2)."""
    info = native.build_info()
    assert info is not None and info["flags"] == " ".join(native._FLAGS)
    if platform.machine() in ("x86_64", "AMD64") and Path("/proc/cpuinfo").exists():
        flags = {
            f
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
            for f in line.split()
        }
        expected = 16 if "avx512f" in flags else 8 if "avx" in flags else 4
        assert info["vector_width"] == expected, (info, sorted(f for f in flags if f.startswith("avx")))
    assert info["block"] % info["vector_width"] == 0


def _inputs(b, c, n, hw, seed=0, broadcast=False):
    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    rows = 1 if broadcast else b
    x = r(b, c, hw) * 2 + 1
    return {
        "xf": x,
        "gf": r(b, c, hw),
        "cx": x.mean(2, keepdim=True)[:rows],
        "wlb": r(rows, n, 1 + c) * 0.5,
        "coeffs": r(rows, 2 * c, n) * 0.3,
        "pu": r(b, n, 1 + 4 * c) * 0.3,
        "h3": r(b, 3 * c, n) * 0.3,
        "wl_t": r(rows, c, n) * 0.3,
    }


# (20, ..., 37): small maps, several samples per C call (runs of 3 and a last run of 2 on 2 threads, all 20 on 1)
SHAPES = [
    (3, 8, 4, 91, False),
    (2, 5, 3, 1, True),
    (2, 16, 16, 9797, True),
    (1, 32, 16, 4160, False),
    (20, 6, 5, 37, False),
    (20, 6, 5, 37, True),
]


def _compare_passes(b, c, n, hw, broadcast):
    t = _inputs(b, c, n, hw, broadcast=broadcast)
    results = {}
    for mod in (native, chunked):
        s = torch.empty(b, n, hw)
        moments = mod.layout_and_moments(t["xf"], t["cx"], t["wlb"], None, s, True)
        s_only = torch.empty(b, n, hw)
        assert mod.layout_and_moments(t["xf"], t["cx"], t["wlb"], None, s_only, False) is None
        out = torch.empty(b, c, hw)
        mod.output(t["xf"], s, t["cx"], None, t["coeffs"], out)
        dgo = mod.output_gradient_moments(t["gf"], t["xf"], s, t["cx"], None)
        dx = torch.empty(b, c, hw)
        dwlb, dwv, dvsum = mod.input_gradient(t["gf"], t["xf"], s, t["cx"], None, t["pu"], t["h3"], t["wl_t"], dx)
        assert dwv is None and dvsum is None
        results[mod.__name__] = (s, s_only, moments, out, dgo, dx, dwlb)
    names = ["s", "s_only", "moments", "out", "dgo", "dx", "dwlb"]
    for name, a, e in zip(names, *results.values(), strict=True):
        atol = 2e-5 * max(e.abs().max().item(), 1.0)
        assert a.dtype == e.dtype == torch.float32 and a.shape == e.shape, name
        torch.testing.assert_close(a, e, rtol=0, atol=atol, msg=lambda m, name=name: f"{name}: {m}")
    s = results[native.__name__][0]
    torch.testing.assert_close(s.sum(1), torch.ones(b, hw))  # a softmax over the entities


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("b", "c", "n", "hw", "broadcast"), SHAPES)
def test_passes_match_chunked(threads, b, c, n, hw, broadcast):
    """Every pass, odd pixel counts (block tails), one pixel, several pixel ranges per sample, (1, ...) broadcast."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _compare_passes(b, c, n, hw, broadcast)
    finally:
        torch.set_num_threads(previous)


@pytest.mark.parametrize(
    "defines",
    [("-DVW=4",), ("-DVW=8", "-DTA=3"), ("-DVW=16", "-DTA=4"), ("-DVW=8", "-DBLK=64"), ("-DVW=4", "-DTA=1")],
)
def test_vector_widths_and_tiles(monkeypatch, tmp_path, defines):
    """Every vector width (SSE 4, AVX 8, AVX-512 16 floats; the default follows the machine), register tile and
    block size the C file can be built with computes the same passes, whatever this machine's default is."""
    monkeypatch.setattr(native, "_STATE", {"lib": None, "tried": False, "error": None})
    monkeypatch.setattr(native, "_FLAGS", [*native._FLAGS, *defines])
    monkeypatch.setenv("AN_NATIVE_CACHE", str(tmp_path))
    assert native.available(), native.build_error()
    for shape in [(3, 8, 4, 91, False), (1, 13, 7, 4160, True)]:
        _compare_passes(*shape)


@pytest.mark.parametrize("scale", [1 / 64, 1.0, 16.0])
def test_layout_softmax_against_float64(scale):
    """The C pass's own exp (range reduction + polynomial) inside the softmax, from nearly uniform layouts to logits
    hundreds apart (AN's temperature makes them peaked; exp of < -87 is clamped), against float64 softmax. Integer
    inputs and dyadic weights make the float32 logits exact, so what is compared is the exp and the normalisation."""
    g = torch.Generator().manual_seed(3)
    xf = torch.randint(-3, 4, (2, 8, 777), generator=g).float()
    wlb = torch.randint(-8, 9, (2, 16, 9), generator=g).float() / 8 * scale
    s = torch.empty(2, 16, 777)
    native.layout_and_moments(xf, torch.zeros(2, 8, 1), wlb, None, s, False)
    logits = wlb.double() @ torch.cat([torch.ones(2, 1, 777), xf], dim=1).double()
    assert scale < 1 or (logits.amax(1) - logits.amin(1)).max() > (200 if scale > 1 else 10)
    torch.testing.assert_close(s.double(), torch.softmax(logits, dim=1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("train", [True, False])
def test_layer_native_equals_chunked(monkeypatch, train):
    """The layer's output, layout and every gradient with the compiled passes equal the chunked passes'."""
    torch.manual_seed(0)
    layer = AttentiveNorm2d(16, num_entities=8, implementation="fused").train(train)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    x = torch.randn(2, 16, 33, 35) * 2 + 3
    grad_out = torch.randn_like(x)
    positions = torch.rand(2, 16 * 17).topk(8, dim=1).indices
    layer.sample_positions = lambda batch, num_pooled, device: positions
    results = {}
    for enabled in (True, False):
        monkeypatch.setattr(native, "ENABLED", enabled)
        xi = x.clone().requires_grad_(True)
        y = layer(xi)
        grads = torch.autograd.grad(y, [xi, *layer.parameters()], grad_out, allow_unused=True)
        results[enabled] = (y, layer.layout, *grads)
    for k, (a, e) in enumerate(zip(*results.values(), strict=True)):
        assert (a is None) == (e is None), k
        if e is not None:
            torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-5 * max(e.abs().max().item(), 1.0))


def test_falls_back_to_chunked(monkeypatch):
    """Disabled, float64, a value projection or a non-contiguous tensor: the chunked pass runs instead."""
    calls = []
    original = chunked.output
    monkeypatch.setattr(chunked, "output", lambda *a: calls.append(a[0].dtype) or original(*a))
    t = _inputs(2, 4, 3, 50)
    s = torch.softmax(torch.randn(2, 3, 50), dim=1)
    out = torch.empty(2, 4, 50)
    native.output(t["xf"], s, t["cx"], None, t["coeffs"], out)
    assert calls == []  # compiled
    native.output(t["xf"].double(), s.double(), t["cx"].double(), None, t["coeffs"].double(), out.double())
    native.output(t["xf"], s, t["cx"], torch.eye(4), t["coeffs"], out)
    native.output(t["xf"].transpose(1, 2).contiguous().transpose(1, 2), s, t["cx"], None, t["coeffs"], out)
    monkeypatch.setattr(native, "ENABLED", False)
    native.output(t["xf"], s, t["cx"], None, t["coeffs"], out)
    assert calls == [torch.float64, torch.float32, torch.float32, torch.float32]
    assert not native.supported(t["xf"])


def test_build_cache_and_failure(monkeypatch, tmp_path):
    """The library is built once into the cache folder, named by a hash; a failing compiler leaves the chunked path
    with the reason recorded, and the layer still computes the same result."""
    monkeypatch.setattr(native, "_STATE", {"lib": None, "tried": False, "error": None})
    monkeypatch.setenv("AN_NATIVE_CACHE", str(tmp_path / "cache"))
    assert native.available()
    built = list((tmp_path / "cache").glob("attentive_norm_*.so"))
    assert len(built) == 1 and not list((tmp_path / "cache").glob("tmp*"))
    layer = AttentiveNorm2d(8, num_entities=4, implementation="fused").eval()
    x = torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        expected = layer(x)
    monkeypatch.setattr(native, "_STATE", {"lib": None, "tried": False, "error": None})
    monkeypatch.setenv("AN_NATIVE_CACHE", str(tmp_path / "other"))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert not native.available()
    assert "FileNotFoundError" in native.build_error() or "failed" in native.build_error()
    with torch.no_grad():
        torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)
