"""Transparent-huge-page advice for the fused AttentiveNorm2d's fresh full-size CPU buffers
(common.layers.huge_pages): the advice reaches the kernel (the mapping's VmFlags), small or disabled buffers are
left alone, and the layer's results do not depend on it."""

import importlib
import sys
from pathlib import Path

import pytest
import torch

from common.layers import huge_pages
from common.layers.attentive_norm import AttentiveNorm2d

fused = importlib.import_module("common.layers.attentive_norm_fused")  # the package re-exports the function's name

THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
linux_thp = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not THP.exists(), reason="needs Linux with transparent huge pages"
)


def _vm_flags(address: int) -> set[str]:
    """The VmFlags of the mapping of this process that holds ``address`` (from /proc/self/smaps)."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()[0]
        if "-" in head and ":" not in head:
            lo, hi = (int(v, 16) for v in head.split("-"))
            inside = lo <= address < hi
        elif inside and head == "VmFlags:":
            return set(line.split()[1:])
    raise AssertionError(f"no mapping holds {address:#x}")


def _middle(t: torch.Tensor) -> int:
    return t.data_ptr() + t.numel() * t.element_size() // 2


@linux_thp
def test_advice_reaches_the_mapping(monkeypatch):
    monkeypatch.setattr(huge_pages, "ENABLED", True)
    t = huge_pages.empty_like_huge(torch.empty(3, 1 << 20))  # 12 MiB
    assert t.shape == (3, 1 << 20) and t.dtype == torch.float32
    assert "hg" in _vm_flags(_middle(t))
    t.fill_(2.0)  # usable as any tensor
    assert t.sum().item() == 2.0 * 3 * (1 << 20)


def test_small_disabled_and_non_cpu_are_left_alone(monkeypatch):
    assert not huge_pages.advise_huge_pages(torch.empty(1000))  # below MIN_BYTES
    monkeypatch.setattr(huge_pages, "ENABLED", False)
    assert not huge_pages.advise_huge_pages(torch.empty(4, 1 << 20))
    assert not huge_pages.advise_huge_pages(torch.empty(4, 1 << 20, device="meta"))


@linux_thp
@pytest.mark.parametrize("train", [True, False])
def test_fused_layer_buffers_are_advised_and_results_unchanged(monkeypatch, train):
    """The fused path's output, layout and input gradient (each >= 4 MiB here) come back advised; with the advice off
    every value and gradient is bit-identical."""
    torch.manual_seed(0)
    layer = AttentiveNorm2d(32, num_entities=16, implementation="fused").train(train)
    x = torch.randn(1, 32, 256, 256)  # 8 MiB; the layout (16 entities) 4 MiB
    grad_out = torch.randn_like(x)
    positions = torch.rand(1, 128 * 128).topk(16, dim=1).indices
    layer.sample_positions = lambda batch, num_pooled, device: positions
    results = {}
    for enabled in (True, False):
        monkeypatch.setattr(huge_pages, "ENABLED", enabled)
        xi = x.clone().requires_grad_(True)
        y = layer(xi)
        (dx,) = torch.autograd.grad(y, [xi], grad_out)
        if enabled:  # (with the advice off the memory may still lie in a mapping advised before)
            assert all("hg" in _vm_flags(_middle(t)) for t in (y, layer.layout, dx))
        results[enabled] = (y, layer.layout, dx)
    for a, e in zip(*results.values(), strict=True):
        assert torch.equal(a, e)


def test_fused_empty_like_keeps_the_memory_format():
    x = torch.randn(1, 16, 8, 8).to(memory_format=torch.channels_last)
    assert fused._empty_like(x).is_contiguous(memory_format=torch.channels_last)
    assert fused._empty_like(torch.randn(1, 16, 8, 8)).is_contiguous()
