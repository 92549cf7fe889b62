"""The AN investigation knobs of the inpainting study (not in the paper): AN in the coarse stage too
(``InpaintGenerator(coarse_long_range=...)``) and a separate learning rate for AN's parameters
(``ANInpaint(an_lr_scale=...)``)."""

import pytest
import torch

from an_inpaint.critics import GlobalCritic, LocalCritic
from an_inpaint.generator import InpaintGenerator
from an_inpaint.module import ANInpaint
from common.layers import AttentiveNorm2d, an_rho

pytestmark = pytest.mark.timeout(60)


def _generator(**kwargs) -> InpaintGenerator:
    return InpaintGenerator(cnum=4, long_range=lambda c: AttentiveNorm2d(c, num_entities=4), **kwargs)


def test_coarse_long_range_adds_an_after_the_coarse_dilated_convolutions():
    plain = _generator()
    both = _generator(coarse_long_range=lambda c: AttentiveNorm2d(c, num_entities=4))
    assert set(an_rho(plain)) == {"attention_post.0"}
    assert set(an_rho(both)) == {"coarse.4", "attention_post.0"}
    assert isinstance(both.coarse[4], AttentiveNorm2d) and both.coarse[4].num_features == 16
    image, mask = torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 8:24] = 1
    out = both(image, mask)
    assert out["refined"].shape == (2, 3, 32, 32)
    assert set(both.layouts()) == {"coarse.4", "attention_post.0"}
    with pytest.raises(ValueError, match="coarse_long_range must be"):
        _generator(coarse_long_range="AttentiveNorm2d")


@pytest.mark.parametrize("scale", [1.0, 10.0])
def test_an_lr_scale_gives_an_parameters_their_own_learning_rate(scale):
    generator = _generator()
    module = ANInpaint(
        generator=generator,
        global_critic=GlobalCritic(input_size=32, cnum=4),
        local_critic=LocalCritic(input_size=16, cnum=4),
        g_optimizer=lambda params: torch.optim.Adam(params, lr=2e-4),
        an_lr_scale=scale,
    )
    g_opt, _ = module.configure_optimizers()
    an = {id(p) for p in generator.attention_post[0].parameters()}
    lrs = {id(p): group["lr"] for group in g_opt.param_groups for p in group["params"]}
    assert set(lrs) == {id(p) for p in generator.parameters()}  # every parameter once
    assert all(lr == pytest.approx(2e-4 * scale if key in an else 2e-4) for key, lr in lrs.items())
    with pytest.raises(ValueError, match="an_lr_scale must be > 0"):
        ANInpaint(generator=_generator(), an_lr_scale=0.0)
