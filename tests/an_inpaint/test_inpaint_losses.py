"""Reconstruction losses of an_inpaint against direct formulas."""

import pytest
import torch

from an_inpaint.losses import compose, masked_l1, reconstruction_loss, spatial_discount


def _rect_mask(h, w, top, left, mh, mw, batch=1):
    mask = torch.zeros(batch, 1, h, w)
    mask[:, :, top : top + mh, left : left + mw] = 1
    return mask


class TestSpatialDiscount:
    @pytest.mark.parametrize(("mh", "mw"), [(5, 7), (6, 6), (1, 4), (9, 3)])
    def test_rectangle_vs_formula(self, mh, mw):
        gamma = 0.9
        mask = _rect_mask(12, 12, 2, 3, mh, mw)
        weights = spatial_discount(mask, gamma)
        expected = torch.zeros(12, 12)
        for i in range(mh):
            for j in range(mw):
                # DeepFill v1's max(gamma^min(i, H-i), gamma^min(j, W-j)), made symmetric (H-1-i, W-1-j).
                expected[2 + i, 3 + j] = max(gamma ** min(i, mh - 1 - i), gamma ** min(j, mw - 1 - j))
        torch.testing.assert_close(weights[0, 0], expected)

    def test_border_counts_as_known(self):
        weights = spatial_discount(_rect_mask(6, 6, 0, 0, 3, 3), 0.5)
        assert weights[0, 0, 0, 0] == 1.0
        assert weights[0, 0, 2, 2] == 1.0
        assert weights[0, 0, 1, 1] == 0.5

    def test_free_form_and_per_sample(self):
        mask = torch.zeros(2, 1, 7, 7)
        mask[0, 0, 1:6, 1:6] = 1
        mask[0, 0, 3, 3] = 0  # a known pixel inside the hole
        weights = spatial_discount(mask, 0.5)
        assert weights[0, 0, 2, 2] == 1.0  # next to the known centre pixel
        assert weights[1].sum() == 0
        assert (weights[0][mask[0] == 0] == 0).all()

    def test_gamma_one_is_the_mask(self):
        mask = _rect_mask(8, 8, 1, 2, 5, 4, batch=2)
        torch.testing.assert_close(spatial_discount(mask, 1.0), mask)

    def test_exception(self):
        with pytest.raises(ValueError, match="gamma"):
            spatial_discount(torch.zeros(1, 1, 4, 4), 0.0)
        with pytest.raises(ValueError, match="shape"):
            spatial_discount(torch.zeros(1, 4, 4), 0.9)


class TestReconstructionLoss:
    def test_values(self):
        torch.manual_seed(0)
        target = torch.rand(2, 3, 8, 8) * 2 - 1
        coarse = torch.rand(2, 3, 8, 8) * 2 - 1
        refined = torch.rand(2, 3, 8, 8) * 2 - 1
        mask = _rect_mask(8, 8, 2, 2, 4, 4, batch=2)
        out = reconstruction_loss(coarse, refined, target, mask, hole_weight=1.2, known_weight=1.3, coarse_weight=1.1)
        disc = spatial_discount(mask, 0.9)

        def hole(p):
            # DeepFill: mean over the hole box of the discounted L1 (normalised by the hole area, not the weights)
            return (disc * (p - target).abs())[:, :, 2:6, 2:6].mean()

        def known(p):
            return ((1 - mask) * (p - target).abs()).mean() / (1 - mask).mean()

        torch.testing.assert_close(out["hole"], 1.1 * hole(coarse) + hole(refined))
        torch.testing.assert_close(out["known"], 1.1 * known(coarse) + known(refined))
        torch.testing.assert_close(out["loss"], 1.2 * out["hole"] + 1.3 * out["known"])

    def test_zero_for_perfect_prediction(self):
        target = torch.rand(1, 3, 8, 8)
        out = reconstruction_loss(target, target, target, _rect_mask(8, 8, 1, 1, 3, 3))
        assert out["loss"].item() == 0.0

    def test_masked_l1_empty_weight(self):
        assert masked_l1(torch.ones(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), torch.zeros(1, 1, 2, 2)).item() == 0.0

    def test_gradcheck(self):
        target = torch.rand(1, 3, 6, 6, dtype=torch.float64)
        mask = _rect_mask(6, 6, 1, 1, 3, 4).double()
        coarse = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
        refined = torch.rand(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda c, r: reconstruction_loss(c, r, target, mask)["loss"], (coarse, refined))


def test_compose():
    pred, image = torch.full((1, 3, 4, 4), 5.0), torch.zeros(1, 3, 4, 4)
    mask = _rect_mask(4, 4, 1, 1, 2, 2)
    out = compose(pred, image, mask)
    assert out[0, :, 1:3, 1:3].eq(5).all()
    assert out.sum() == 5 * 3 * 4
