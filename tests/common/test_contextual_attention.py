"""Tests for ``common.layers.contextual_attention`` (Yu et al., CVPR 2018 contextual attention)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from common.layers.contextual_attention import ContextualAttention2d, _diagonal_sum, offsets_to_image


def _photo(size: int = 96) -> torch.Tensor:
    """A real photograph (scikit-image's cat), (1, 3, size, size), on the 0-255 scale of DeepFill's demo.

    Matching is by normalised correlation, so flat black areas (where every patch matches equally) are avoided.
    """
    img = torch.from_numpy(np.ascontiguousarray(data.chelsea())).permute(2, 0, 1).float().unsqueeze(0)
    img = img[..., :, 50:350]  # square crop (300x300)
    return F.interpolate(img, size=(size, size), mode="area")


def _reference(fg, bg, mask, ksize=3, rate=2, fuse_k=3, scale=10.0):
    """Per-sample reimplementation with convolutions, following the TF layer's description step by step."""
    outs = []
    batch, channels, height, width = fg.shape
    eye = torch.eye(fuse_k, dtype=fg.dtype).view(1, 1, fuse_k, fuse_k)
    for i in range(batch):
        fi = fg[i : i + 1, :, ::rate, ::rate]
        bi = bg[i : i + 1, :, ::rate, ::rate]
        h, w = fi.shape[-2:]
        n = h * w
        filters = F.unfold(bi, ksize, padding=ksize // 2)[0].t().reshape(n, channels, ksize, ksize)
        norms = filters.flatten(1).norm(dim=1).clamp_min(1e-4).view(n, 1, 1, 1)
        y = F.conv2d(fi, filters / norms, padding=ksize // 2)  # (1, n, h, w)
        y = y.permute(0, 2, 3, 1).reshape(1, 1, n, n)
        y = F.conv2d(y, eye, padding=fuse_k // 2)
        y = y.reshape(h, w, h, w).permute(1, 0, 3, 2).reshape(1, 1, n, n)
        y = F.conv2d(y, eye, padding=fuse_k // 2)
        y = y.reshape(w, h, w, h).permute(1, 0, 3, 2).reshape(h, w, n)
        valid = torch.ones(n, dtype=fg.dtype)
        if mask is not None:
            mi = F.interpolate(mask[i : i + 1].to(fg.dtype), size=(height, width), mode="nearest")[0, 0, ::rate, ::rate]
            padded = F.pad(mi, (ksize // 2,) * 4)
            for q in range(n):
                r, c = divmod(q, w)
                if padded[r : r + ksize, c : c + ksize].mean() > 0:
                    valid[q] = 0.0
        y = torch.softmax(y * valid * scale, dim=-1) * valid
        y = y.permute(2, 0, 1).unsqueeze(0)  # (1, n, h, w)
        raw = F.unfold(bg[i : i + 1], 2 * rate, stride=rate, padding=rate // 2)[0].t()
        raw = raw.reshape(n, channels, 2 * rate, 2 * rate)
        outs.append(F.conv_transpose2d(y, raw, stride=rate, padding=rate // 2) / 4.0)
    return torch.cat(outs)


def test_matches_per_sample_convolution_reference():
    gen = torch.Generator().manual_seed(0)
    fg = torch.randn(3, 4, 16, 24, generator=gen)
    bg = torch.randn(3, 4, 16, 24, generator=gen)
    mask = torch.zeros(3, 1, 16, 24)
    mask[0, :, 2:8, 4:12] = 1
    mask[1, :, 8:16, 0:6] = 1
    mask[2, :, 5:9, 15:20] = 1
    ca = ContextualAttention2d()
    torch.testing.assert_close(ca(fg, bg, mask), _reference(fg, bg, mask), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ca(fg, bg), _reference(fg, bg, None), rtol=1e-4, atol=1e-5)


def test_diagonal_sum_equals_identity_kernel_convolution():
    scores = torch.randn(2, 12, 20)
    for k in (1, 3, 5):
        eye = torch.eye(k).view(1, 1, k, k)
        expected = F.conv2d(scores.unsqueeze(1), eye, padding=k // 2).squeeze(1)
        torch.testing.assert_close(_diagonal_sum(scores, k), expected)


@pytest.mark.parametrize("mask_kind", ["none", "zeros"])
def test_reconstructs_input_from_its_own_patches(mask_kind):
    img = _photo(64)
    mask = None if mask_kind == "none" else torch.zeros(1, 1, 64, 64)
    ca = ContextualAttention2d()
    out = ca(img, img, mask)
    # The outermost 2 pixels are covered by fewer than 2x2 paste-back patches (as in DeepFill): interior only.
    err = (out - img).abs()[..., 2:-2, 2:-2]
    assert err.max() < 0.05  # on a 0-255 scale
    assert torch.all(ca.last_offsets[..., 1:-1, 1:-1] == 0)


def test_reconstructs_b_from_a_patches_inside_the_hole():
    big = _photo(96)
    shift = (20, 24)
    img_a = big[..., 0:64, 0:64]
    img_b = big[..., shift[0] : shift[0] + 64, shift[1] : shift[1] + 64]  # B[y, x] = A[y + 20, x + 24]
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 12:32, 10:30] = 1  # the shifted sources (rows 32-51, cols 34-53 of A) are outside the hole
    ca = ContextualAttention2d()
    out = ca(img_b, img_a, mask)
    hole = mask.bool().expand_as(out)
    err = (out - img_b).abs()[hole]
    assert err.mean() < 1.0
    assert err.max() < 8.0
    offsets = ca.last_offsets[0, :, 7:15, 6:14]  # matching-resolution positions inside the hole
    assert torch.all(offsets[0] == shift[0] // 2)
    assert torch.all(offsets[1] == shift[1] // 2)
    # Without the attention layer, the hole of B would not be recoverable from A at the same positions.
    assert (img_a - img_b).abs()[hole].mean() > 10 * err.mean()


def test_per_sample_masks_equal_one_by_one():
    gen = torch.Generator().manual_seed(1)
    fg = torch.randn(3, 8, 32, 24, generator=gen)
    bg = torch.randn(3, 8, 32, 24, generator=gen)
    masks = torch.zeros(3, 1, 64, 48)  # a different resolution from the features: resized (nearest)
    masks[0, :, 8:40, 8:24] = 1
    masks[1, :, 30:60, 20:46] = 1
    masks[2, :, 0:16, 0:48] = 1
    ca = ContextualAttention2d()
    batched = ca(fg, bg, masks)
    batched_offsets = ca.last_offsets.clone()
    for i in range(3):
        single = ca(fg[i : i + 1], bg[i : i + 1], masks[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], single, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(batched_offsets[i : i + 1], ca.last_offsets)
    # The masks really differ in effect: using sample 0's mask for everyone (the TF behaviour) changes sample 1.
    shared = ca(fg, bg, masks[0:1])
    assert not torch.allclose(shared[1], batched[1], atol=1e-3)


def _valid_patch_map(mask: torch.Tensor) -> torch.Tensor:
    """(B, h, w) bool: matching-resolution background patches whose 3x3 zero-padded mask window is all known."""
    m = mask[:, :, ::2, ::2]
    return F.avg_pool2d(m, 3, stride=1, padding=1)[:, 0] == 0


def test_hole_patches_get_no_attention():
    gen = torch.Generator().manual_seed(2)
    fg = torch.rand(2, 3, 32, 32, generator=gen) * 255
    bg = torch.rand(2, 3, 32, 32, generator=gen) * 255
    mask = torch.zeros(2, 1, 32, 32)
    mask[0, :, 8:20, 10:24] = 1
    mask[1, :, 16:30, 2:12] = 1
    hole = mask.bool().expand_as(bg)
    bg_wild = bg.clone()
    bg_wild[hole] = 1e6
    bg_wild_neg = bg.clone()
    bg_wild_neg[hole] = -1e6

    # Without propagation, the scores of valid patches do not depend on the hole: the output is invariant.
    ca = ContextualAttention2d(fuse=False)
    torch.testing.assert_close(ca(fg, bg_wild, mask), ca(fg, bg_wild_neg, mask))

    # With propagation (DeepFill's default), hole scores leak into the fused scores of neighbouring valid
    # patches, but hole patches themselves still get exactly zero weight: the -1e6 content never appears.
    # The foreground holds the same wild content, so its hole positions would match the hole patches best.
    ca = ContextualAttention2d()
    valid = _valid_patch_map(mask)
    for foreground in (fg, bg_wild_neg):
        out = ca(foreground, bg_wild_neg, mask)
        assert out.min() >= 0
        assert out.max() <= 255
        for i in range(2):
            src_y = ca.last_offsets[i, 0] + torch.arange(16).view(16, 1)
            src_x = ca.last_offsets[i, 1] + torch.arange(16).view(1, 16)
            assert valid[i][src_y.long(), src_x.long()].all()
    # Without the mask, the wild content is attended to and shows up in the output.
    assert ca(bg_wild_neg, bg_wild_neg).min() < -1000


def test_fully_masked_background_gives_zeros():
    x = torch.randn(1, 4, 16, 16)
    out = ContextualAttention2d()(x, x, torch.ones(1, 1, 16, 16))
    assert torch.isfinite(out).all()
    assert torch.count_nonzero(out) == 0


def test_gradcheck():
    gen = torch.Generator().manual_seed(3)
    fg = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    bg = torch.randn(1, 2, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    mask[..., 0:2, 0:4] = 1
    ca = ContextualAttention2d(softmax_scale=2.0)
    assert torch.autograd.gradcheck(lambda f, b: ca(f, b, mask), (fg, bg), eps=1e-6, atol=1e-5, fast_mode=True)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((2, 4, 16, 16), {}),
        ((1, 8, 24, 40), {}),
        ((3, 2, 32, 8), {}),
        ((2, 3, 16, 24), {"rate": 1}),
        ((2, 3, 16, 24), {"rate": 4, "ksize": 1}),
        ((2, 3, 16, 24), {"stride": 2}),
        ((2, 3, 16, 24), {"fuse": False}),
        ((2, 3, 24, 24), {"rate": 3, "fuse_k": 5}),
    ],
)
def test_shapes(shape, kwargs):
    x = torch.randn(*shape)
    mask = torch.zeros(shape[0], 1, shape[2], shape[3])
    mask[..., : shape[2] // 2, : shape[3] // 2] = 1
    ca = ContextualAttention2d(**kwargs)
    out = ca(x, x, mask)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    rate = kwargs.get("rate", 2)
    assert ca.last_offsets.shape == (shape[0], 2, shape[2] // rate, shape[3] // rate)
    assert not ca.last_offsets.requires_grad
    image = offsets_to_image(ca.last_offsets)
    assert image.shape == (shape[0], 3, shape[2] // rate, shape[3] // rate)
    assert image.min() >= 0
    assert image.max() <= 1


def test_offsets_to_image_colours():
    offsets = torch.zeros(1, 2, 2, 2)
    offsets[0, :, 0, 1] = torch.tensor([0.0, 3.0])  # right
    offsets[0, :, 1, 0] = torch.tensor([0.0, -3.0])  # left
    offsets[0, :, 1, 1] = torch.tensor([3.0, 0.0])  # down
    image = offsets_to_image(offsets)
    torch.testing.assert_close(image[0, :, 0, 0], torch.ones(3))  # no displacement: white
    colours = [image[0, :, 0, 1], image[0, :, 1, 0], image[0, :, 1, 1]]
    for c in colours:  # full length: fully saturated (one channel at 0)
        assert c.min() < 1e-6
    assert not torch.allclose(colours[0], colours[1])
    assert not torch.allclose(colours[0], colours[2])
    with pytest.raises(ValueError, match="offsets"):
        offsets_to_image(torch.zeros(1, 3, 2, 2))


def test_errors():
    ca = ContextualAttention2d()
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match="4-D"):
        ca(x[0], x[0])
    with pytest.raises(ValueError, match="does not match background"):
        ca(x, torch.randn(2, 3, 16, 24))
    with pytest.raises(ValueError, match="does not match background"):
        ca(x, torch.randn(2, 4, 16, 16))
    with pytest.raises(ValueError, match="mask batch size 3"):
        ca(x, x, torch.zeros(3, 1, 16, 16))
    with pytest.raises(ValueError, match="mask must have shape"):
        ca(x, x, torch.zeros(2, 2, 16, 16))
    with pytest.raises(ValueError, match="mask must have shape"):
        ca(x, x, torch.zeros(2, 16, 16))
    with pytest.raises(ValueError, match="divisible by 2"):
        ca(torch.randn(1, 3, 15, 16), torch.randn(1, 3, 15, 16))
    with pytest.raises(ValueError, match="divisible by 4"):
        ContextualAttention2d(rate=4)(torch.randn(1, 3, 18, 16), torch.randn(1, 3, 18, 16))
    for kwargs in ({"ksize": 2}, {"fuse_k": 4}, {"stride": 0}, {"rate": 0}, {"softmax_scale": 0.0}):
        with pytest.raises(ValueError):
            ContextualAttention2d(**kwargs)


def test_device(device):
    gen = torch.Generator().manual_seed(4)
    fg = torch.randn(2, 4, 16, 16, generator=gen)
    bg = torch.randn(2, 4, 16, 16, generator=gen)
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 4:10, 4:10] = 1
    ca = ContextualAttention2d()
    expected = ca(fg, bg, mask)
    out = ca(fg.to(device), bg.to(device), mask.to(device))
    assert out.device.type == device.type
    assert ca.last_offsets.device.type == device.type
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-4)
