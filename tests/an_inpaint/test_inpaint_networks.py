"""Shapes, ranges and errors of the inpainting networks."""

import pytest
import torch

from an_inpaint.networks import GlobalCritic, InpaintGenerator, LocalCritic, MaskedPatchCritic, mask_bounding_boxes
from common.layers import AttentiveNorm2d, ContextualAttention2d


def _batch(b=2, h=32, w=48):
    torch.manual_seed(0)
    image = torch.rand(b, 3, h, w) * 2 - 1
    mask = torch.zeros(b, 1, h, w)
    mask[0, :, 4:20, 8:24] = 1
    mask[-1, :, 12:28, 24:40] = 1
    return image, mask


class TestInpaintGenerator:
    @pytest.mark.parametrize("attention", ["contextual", "an", "contextual+an"])
    def test_cardinality(self, attention):
        gen = InpaintGenerator(cnum=4, attention=attention, num_entities=4)
        image, mask = _batch()
        coarse, refined = gen(image, mask)
        assert coarse.shape == refined.shape == image.shape
        assert coarse.abs().max() <= 1
        assert refined.abs().max() <= 1
        has_ca = any(isinstance(m, ContextualAttention2d) for m in gen.modules())
        has_an = any(isinstance(m, AttentiveNorm2d) for m in gen.modules())
        assert has_ca == ("contextual" in attention)
        assert has_an == ("an" in attention.split("+"))
        if has_ca:
            assert gen.last_offsets.shape == (2, 2, 4, 6)  # 1/4 resolution, matched at rate 2
        else:
            assert gen.last_offsets is None
        layouts = gen.layouts()
        assert len(layouts) == int(has_an)
        for layout in layouts.values():
            assert layout.shape == (2, 4, 8, 12)

    def test_hole_content_is_ignored(self):
        gen = InpaintGenerator(cnum=4, attention="contextual").eval()
        image, mask = _batch()
        other = image * (1 - mask) + torch.rand_like(image) * mask
        for a, b in zip(gen(image, mask), gen(other, mask), strict=True):
            torch.testing.assert_close(a, b)

    def test_an_is_not_affine_by_default(self):
        gen = InpaintGenerator(cnum=4, attention="an")
        an = next(m for m in gen.modules() if isinstance(m, AttentiveNorm2d))
        assert an.beta is None
        assert an.alpha is None
        an = next(m for m in InpaintGenerator(cnum=4, an_affine=True).modules() if isinstance(m, AttentiveNorm2d))
        assert an.beta is not None

    def test_backward(self):
        gen = InpaintGenerator(cnum=4, attention="contextual+an", num_entities=4)
        image, mask = _batch()
        coarse, refined = gen(image, mask)
        (coarse.mean() + refined.mean()).backward()
        assert all(p.grad is not None for n, p in gen.named_parameters() if p.requires_grad and "coarse" in n)

    @pytest.mark.parametrize("attention", ["contextual", "an", "contextual+an"])
    def test_refinement_sees_the_coarse_result(self, attention):
        """DeepFill: the refinement stage gets the coarse output pasted into the hole, so changing the coarse
        network changes the refined output (inside the hole), and refined gets gradients from coarse."""
        gen = InpaintGenerator(cnum=4, attention=attention, num_entities=4).eval()
        image, mask = _batch()
        with torch.no_grad():
            _, before = gen(image, mask)
            for p in gen.coarse.parameters():
                p.add_(torch.randn_like(p))
            _, after = gen(image, mask)
        assert (after - before).abs().max() > 1e-6  # exactly 0 when the refinement input hides the coarse result
        gen = InpaintGenerator(cnum=4, attention=attention, num_entities=4)  # unsaturated coarse output
        _, refined = gen(image, mask)
        refined.mean().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.coarse.parameters())

    def test_exception(self):
        gen = InpaintGenerator(cnum=4)
        image, mask = _batch(h=36)
        with pytest.raises(ValueError, match="divisible by 8"):
            gen(image, mask)
        image, mask = _batch()
        with pytest.raises(ValueError, match="mask must have shape"):
            gen(image, mask[:, :, :16])
        with pytest.raises(ValueError, match="attention"):
            InpaintGenerator(attention="self")


class TestCritics:
    def test_global(self):
        image, mask = _batch(h=32, w=32)
        critic = GlobalCritic(input_size=32, cnum=4)
        assert critic(image, mask).shape == (2,)
        with pytest.raises(ValueError, match="input_size"):
            critic(torch.zeros(1, 3, 64, 64))

    def test_local_crops_the_hole(self):
        image, mask = _batch()
        critic = LocalCritic(input_size=16, cnum=4)
        assert critic(image, mask).shape == (2,)
        crops = critic.crop(image, mask)
        torch.testing.assert_close(crops[0], image[0, :, 4:20, 8:24])  # 16x16 box: no resize
        # Pixels outside the box do not change the score.
        other = image + (1 - mask) * 0.5
        torch.testing.assert_close(critic(image, mask), critic(other, mask))

    def test_masked_patch(self):
        image, mask = _batch()
        critic = MaskedPatchCritic(cnum=4)
        assert critic(image, mask).shape == (2,)

    def test_bounding_boxes(self):
        _, mask = _batch()
        mask[0, 0, 30, 47] = 1
        empty = torch.zeros(1, 1, 8, 8)
        assert mask_bounding_boxes(mask) == [(4, 8, 27, 40), (12, 24, 16, 16)]
        assert mask_bounding_boxes(empty) == [(0, 0, 8, 8)]
