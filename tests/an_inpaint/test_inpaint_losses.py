"""Loss objects of an_inpaint against hand computations: DeepFill's exact discounted L1, the hole form, WGAN-GP."""

import numpy as np
import pytest
import torch
from torch import nn

from an_inpaint.losses import ReconstructionLoss, WGANGPLoss, deepfill_discount, masked_l1, spatial_discount


def _rect_mask(h, w, top, left, mh, mw, batch=1):
    mask = torch.zeros(batch, 1, h, w)
    mask[:, :, top : top + mh, left : left + mw] = 1
    return mask


def _out(coarse, refined):
    return {"coarse": coarse, "refined": refined}


class TestDeepFillDiscount:
    def test_hand_values(self):
        # DeepFill v1: max(gamma^min(i, H - i), gamma^min(j, W - j)), i, j from the box edge (0-based).
        weights = deepfill_discount(4, 4, gamma=0.5, dtype=torch.float64)
        expected = torch.tensor(
            [
                [1.0, 1.0, 1.0, 1.0],
                [1.0, 0.5, 0.5, 0.5],
                [1.0, 0.5, 0.25, 0.5],
                [1.0, 0.5, 0.5, 0.5],
            ],
            dtype=torch.float64,
        )
        torch.testing.assert_close(weights, expected)

    def test_exception(self):
        with pytest.raises(ValueError, match="gamma"):
            deepfill_discount(4, 4, gamma=1.5)


class TestReconstructionLossDeepFill:
    def test_hand_computed_value_includes_the_known_strip(self):
        """An 8x8 box (box_size 0.5 of 16) around a 6x4 hole shrunk symmetrically inside it, as DeepFill draws."""
        torch.manual_seed(0)
        target = torch.rand(2, 3, 16, 16) * 2 - 1
        coarse, refined = torch.rand_like(target) * 2 - 1, torch.rand_like(target) * 2 - 1
        mask = torch.zeros(2, 1, 16, 16)
        mask[0, :, 3:9, 6:10] = 1  # box rows 2..9, cols 4..11 (hole 6x4 centred in it)
        mask[1, :, 8:16, 8:16] = 1  # box = the hole, bottom-right corner
        loss_fn = ReconstructionLoss(hole_weight=1.2, known_weight=1.3, coarse_weight=1.1, gamma=0.9)
        loss, logs = loss_fn(_out(coarse, refined), {"image": target, "mask": mask})

        def box_term(pred):
            total = 0.0
            for b, (t, c) in enumerate([(2, 4), (8, 8)]):
                for i in range(8):
                    for j in range(8):
                        weight = max(0.9 ** min(i, 8 - i), 0.9 ** min(j, 8 - j))
                        total += weight * (pred[b, :, t + i, c + j] - target[b, :, t + i, c + j]).abs().sum()
            return total / (2 * 8 * 8 * 3)  # DeepFill: the mean over batch, box pixels and channels

        def known_term(pred):
            known = 1 - mask
            return ((pred - target).abs() * known).mean() / known.mean()

        hole = 1.1 * box_term(coarse) + box_term(refined)
        known = 1.1 * known_term(coarse) + known_term(refined)
        torch.testing.assert_close(logs["hole"], hole)
        torch.testing.assert_close(logs["known"], known)
        torch.testing.assert_close(loss, 1.2 * hole + 1.3 * known)
        # The known strip inside the box counts: changing the prediction there changes the hole term.
        strip = coarse.clone()
        strip[0, :, 2, 4] += 0.5  # inside the box, outside the hole
        _, moved = loss_fn(_out(strip, refined), {"image": target, "mask": mask})
        assert moved["hole"] > logs["hole"]
        # ... but pixels outside the box do not enter the hole term.
        far = coarse.clone()
        far[0, :, 15, 0] += 0.5
        _, same = loss_fn(_out(far, refined), {"image": target, "mask": mask})
        torch.testing.assert_close(same["hole"], logs["hole"])

    def test_hole_larger_than_the_box_is_an_error(self):
        mask = _rect_mask(16, 16, 0, 0, 12, 4)
        image = torch.zeros(1, 3, 16, 16)
        with pytest.raises(ValueError, match="discount='hole'"):
            ReconstructionLoss()(_out(image, image), {"image": image, "mask": mask})

    def test_differs_from_the_hole_form(self):
        torch.manual_seed(1)
        target = torch.rand(1, 3, 16, 16)
        pred = torch.rand_like(target)
        mask = _rect_mask(16, 16, 5, 5, 6, 6)
        batch = {"image": target, "mask": mask}
        _, deepfill = ReconstructionLoss()(_out(pred, pred), batch)
        _, hole = ReconstructionLoss(discount="hole")(_out(pred, pred), batch)
        assert abs(float(deepfill["hole"]) - float(hole["hole"])) > 1e-3

    def test_exception(self):
        with pytest.raises(ValueError, match="discount"):
            ReconstructionLoss(discount="box")
        with pytest.raises(ValueError, match="box_size"):
            ReconstructionLoss(box_size=0)


class TestSpatialDiscountHoleForm:
    @pytest.mark.parametrize(("mh", "mw"), [(5, 7), (6, 6), (1, 4), (9, 3)])
    def test_rectangle_vs_formula(self, mh, mw):
        gamma = 0.9
        weights = spatial_discount(_rect_mask(12, 12, 2, 3, mh, mw), gamma)
        expected = torch.zeros(12, 12)
        for i in range(mh):
            for j in range(mw):
                expected[2 + i, 3 + j] = max(gamma ** min(i, mh - 1 - i), gamma ** min(j, mw - 1 - j))
        torch.testing.assert_close(weights[0, 0], expected)

    def test_border_counts_as_known_and_free_form(self):
        weights = spatial_discount(_rect_mask(6, 6, 0, 0, 3, 3), 0.5)
        assert weights[0, 0, 0, 0] == 1.0
        assert weights[0, 0, 1, 1] == 0.5
        mask = torch.zeros(2, 1, 7, 7)
        mask[0, 0, 1:6, 1:6] = 1
        mask[0, 0, 3, 3] = 0  # a known pixel inside the hole
        weights = spatial_discount(mask, 0.5)
        assert weights[0, 0, 2, 2] == 1.0
        assert weights[1].sum() == 0
        torch.testing.assert_close(spatial_discount(mask, 1.0), mask)

    def test_loss_value(self):
        torch.manual_seed(0)
        target, coarse, refined = (torch.rand(2, 3, 8, 8) * 2 - 1 for _ in range(3))
        mask = _rect_mask(8, 8, 2, 2, 4, 4, batch=2)
        loss, logs = ReconstructionLoss(coarse_weight=1.1, discount="hole")(
            _out(coarse, refined), {"image": target, "mask": mask}
        )
        disc = spatial_discount(mask, 0.9)

        def hole(p):  # sum of the discounted L1 over the hole, divided by the hole area
            return (disc * (p - target).abs())[:, :, 2:6, 2:6].mean()

        torch.testing.assert_close(logs["hole"], 1.1 * hole(coarse) + hole(refined))
        assert masked_l1(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 0.0

    def test_gradcheck(self):
        target = torch.rand(1, 3, 8, 8, dtype=torch.float64)
        mask = _rect_mask(8, 8, 2, 2, 3, 4).double()
        coarse = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
        refined = torch.rand(1, 3, 8, 8, dtype=torch.float64, requires_grad=True)
        for loss_fn in (ReconstructionLoss(), ReconstructionLoss(discount="hole")):
            assert torch.autograd.gradcheck(
                lambda c, r, f=loss_fn: f(_out(c, r), {"image": target, "mask": mask})[0], (coarse, refined)
            )


class _LinearCritic(nn.Module):
    """D(x, m) = <w, x>, whose input gradient is w everywhere."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x, mask=None):
        return (x * self.w).flatten(1).sum(1)


class TestWGANGPLoss:
    def test_hand_values_with_linear_critics(self):
        torch.manual_seed(0)
        wg, wl = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
        critics = {"global": _LinearCritic(wg), "local": _LinearCritic(wl)}
        real, fake = torch.randn(3, 3, 4, 4), torch.randn(3, 3, 4, 4)
        mask = torch.zeros(3, 1, 4, 4)
        mask[:, :, 1:3, 1:3] = 1
        adv = WGANGPLoss(lambda_adv=1e-3, lambda_gp=10.0, global_weight=0.5)
        loss, logs = adv.critic_loss(critics, real, fake, mask)

        def wgan(w):
            return (fake * w).flatten(1).sum(1).mean() - (real * w).flatten(1).sum(1).mean()

        def gp(w):  # the gradient is w everywhere; DeepFill multiplies it by the mask
            return ((w * mask).flatten(1).norm(dim=1) - 1).pow(2).mean()

        torch.testing.assert_close(logs["d_wgan"], 0.5 * wgan(wg) + wgan(wl))
        torch.testing.assert_close(logs["gp"], 0.5 * gp(wg) + gp(wl))
        torch.testing.assert_close(loss, logs["d_wgan"] + 10.0 * logs["gp"])
        g_loss, g_logs = adv.generator_loss(critics, fake, mask)
        expected = -(0.5 * (fake * wg).flatten(1).sum(1).mean() + (fake * wl).flatten(1).sum(1).mean())
        torch.testing.assert_close(g_logs["adv"], expected)
        torch.testing.assert_close(g_loss, 1e-3 * expected)
        _, unmasked = WGANGPLoss(masked_penalty=False).critic_loss(critics, real, fake, mask)
        torch.testing.assert_close(unmasked["gp"], (wg.norm() - 1) ** 2 + (wl.norm() - 1) ** 2)

    def test_exception(self):
        with pytest.raises(ValueError, match="lambda_adv"):
            WGANGPLoss(lambda_adv=-1)


def test_ssim_term_matches_skimage():
    from skimage.metrics import structural_similarity

    torch.manual_seed(2)
    target = torch.rand(2, 3, 24, 24, dtype=torch.float64) * 2 - 1
    mask = _rect_mask(24, 24, 6, 6, 12, 12, batch=2).double()
    pred = (torch.rand_like(target) * 2 - 1).requires_grad_(True)
    out = {"coarse": pred, "refined": pred, "inpainted": pred * mask + target * (1 - mask)}
    batch = {"image": target, "mask": mask}
    plain, _ = ReconstructionLoss(discount="hole")(out, batch)
    loss, logs = ReconstructionLoss(discount="hole", ssim_weight=0.5)(out, batch)
    expected = np.mean([
        structural_similarity(
            ((out["inpainted"][i] + 1) / 2).detach().permute(1, 2, 0).numpy(),
            ((target[i] + 1) / 2).permute(1, 2, 0).numpy(),
            channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0,
        )
        for i in range(2)
    ])  # fmt: skip
    assert float(logs["ssim"]) == pytest.approx(expected, abs=1e-9)
    torch.testing.assert_close(loss, plain + 0.5 * (1 - logs["ssim"]))
    loss.backward()
    assert pred.grad[:, :, 6:18, 6:18].abs().sum() > 0
    with pytest.raises(ValueError, match="ssim_weight"):
        ReconstructionLoss(ssim_weight=-1)
