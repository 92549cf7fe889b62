"""The inpainting generator (output dict, options, gradients) and the critics (crops, mask weighting by value)."""

import functools

import pytest
import torch

from an_inpaint.critics import GlobalCritic, LocalCritic, MaskedPatchCritic
from an_inpaint.fill import harmonic_fill
from an_inpaint.generator import InpaintGenerator, compose, known_statistics
from common.layers import AttentiveNorm2d, ContextualAttention2d, SelfAttention2d

AN4 = functools.partial(AttentiveNorm2d, num_entities=4)
#: The attention branches: the paper's AN model, DeepFill v1's CA, CA then AN; the SA and none ablations.
BRANCHES = {
    "an": {"long_range": AN4},
    "contextual": {"long_range": None, "contextual_attention": ContextualAttention2d},
    "contextual+an": {"long_range": AN4, "contextual_attention": ContextualAttention2d},
    "sa": {"long_range": SelfAttention2d},
    "none": {"long_range": None},
}


def _generator(branch: str, **kwargs) -> InpaintGenerator:
    return InpaintGenerator(cnum=4, **BRANCHES[branch], **kwargs)


def _batch(b=2, h=32, w=48):
    torch.manual_seed(0)
    image = torch.rand(b, 3, h, w) * 2 - 1
    mask = torch.zeros(b, 1, h, w)
    mask[0, :, 4:20, 8:24] = 1
    mask[-1, :, 12:28, 24:40] = 1
    return image, mask


def _an_layers(gen):
    return [m for m in gen.modules() if isinstance(m, AttentiveNorm2d)]


ATTENTION_BRANCH = ("attention_encoder", "attention_pre", "contextual", "attention_post", "attention_out")


def _branch_modules(gen, kind):
    """Modules of type ``kind`` inside the refinement stage's attention branch."""
    parts = [getattr(gen, name) for name in ATTENTION_BRANCH if getattr(gen, name) is not None]
    return [m for part in parts for m in part.modules() if isinstance(m, kind)]


class TestInpaintGenerator:
    @pytest.mark.parametrize("attention", list(BRANCHES))
    def test_output_dict(self, attention):
        gen = _generator(attention)
        image, mask = _batch()
        out = gen(image, mask)
        assert set(out) == {"coarse", "refined", "inpainted"} | ({"offsets"} if "contextual" in attention else set())
        for key in ("coarse", "refined", "inpainted"):
            assert out[key].shape == image.shape
            assert out[key].abs().max() <= 1
        # "inpainted" is the refined output composited: the known pixels are the input's, exactly.
        torch.testing.assert_close(out["inpainted"], compose(out["refined"], image, mask), rtol=0, atol=0)
        assert torch.equal(out["inpainted"][mask.expand_as(image) == 0], image[mask.expand_as(image) == 0])
        assert any(isinstance(m, ContextualAttention2d) for m in gen.modules()) == ("contextual" in attention)
        assert bool(_an_layers(gen)) == ("an" in attention.split("+"))
        if "contextual" in attention:
            assert out["offsets"].shape == (2, 2, 4, 6)  # 1/4 resolution, matched at rate 2
        assert any(isinstance(m, SelfAttention2d) for m in gen.modules()) == (attention == "sa")
        for layout in gen.layouts().values():
            assert layout.shape == (2, 4, 8, 12)

    def test_ablation_branches_hold_only_their_module(self):
        """ "none": no long-range module in the attention branch, a plain conv where CA was (the same depth as the CA
        branch); "sa": exactly one SelfAttention2d at the branch's 1/4-resolution, 4 * cnum-channel maps."""
        ca, none, sa = (_generator(a) for a in ("contextual", "none", "sa"))
        long_range = (SelfAttention2d, AttentiveNorm2d, ContextualAttention2d)
        assert _branch_modules(none, long_range) == [] and none.contextual is None
        assert [type(m) for m in _branch_modules(sa, long_range)] == [SelfAttention2d]
        assert [m for m in sa.modules() if isinstance(m, long_range)] == _branch_modules(sa, long_range)
        (block,) = _branch_modules(sa, SelfAttention2d)
        assert block.num_features == 16 and sa.attention_post[0] is block  # where CA's output was
        convs = {name: len(_branch_modules(g, torch.nn.Conv2d)) for name, g in (("ca", ca), ("none", none))}
        assert convs["none"] == convs["ca"] + 1  # CA replaced by one 3x3 conv; every other layer as in DeepFill

        # Everything outside the attention branch is the same network (the same parameter names and shapes).
        def outside(gen):
            return {k: v.shape for k, v in gen.state_dict().items() if not k.startswith(ATTENTION_BRANCH)}

        assert outside(none) == outside(sa) == outside(ca)
        # SA sees the 1/4-resolution maps: capture its input shape.
        seen = []
        block.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
        image, mask = _batch()
        sa(image, mask)
        assert seen == [(2, 16, 8, 12)]
        # Another module with CA (not one of the five): CA, then the module in the stand-in conv's place.
        ca_sa = InpaintGenerator(cnum=4, long_range=SelfAttention2d, contextual_attention=ContextualAttention2d)
        assert isinstance(ca_sa.attention_post[0], SelfAttention2d) and ca_sa.contextual is not None
        assert ca_sa(image, mask)["refined"].shape == image.shape

    def test_branch_layout_and_checkpoint_names(self):
        """The five branches are built as before the layers became arguments: the same modules in the same places,
        so the same state-dict names (checkpoints of every branch keep loading)."""

        def names(module):
            return [type(m).__name__ for m in (module if isinstance(module, torch.nn.Sequential) else [module])]

        expected = {
            "an": (["Conv2d"], ["AttentiveNorm2d", "ELU", "Sequential"], "attention_post.0.entities.weight"),
            "contextual": (["Conv2d", "ReLU"], ["Conv2d", "ELU"], None),
            "contextual+an": (["Conv2d", "ReLU"], ["Conv2d", "AttentiveNorm2d", "ELU"], "attention_post.1.rho"),
            "sa": (["Conv2d", "ReLU"], ["SelfAttention2d", "Sequential"], "attention_post.0.gamma"),
            "none": (["Conv2d", "ReLU"], ["Sequential", "Sequential"], None),
        }
        for branch, (pre, post, key) in expected.items():
            gen = _generator(branch)
            assert names(gen.attention_pre) == pre and names(gen.attention_post) == post, branch
            assert key is None or key in gen.state_dict(), branch
            assert (gen.contextual is not None) == ("contextual" in branch)

    @pytest.mark.parametrize("attention", ["sa", "none"])
    def test_gradients_reach_the_ablation_branch(self, attention):
        gen = _generator(attention)
        if attention == "sa":
            (block,) = _branch_modules(gen, SelfAttention2d)
            with torch.no_grad():
                block.gamma.fill_(0.5)  # gamma starts at 0, which would hide the query/key/value from the loss
        image, mask = _batch()
        (gen(image, mask)["refined"] * mask).sum().backward()
        for name in ("attention_encoder", "attention_pre", "attention_post", "attention_out"):
            for pname, p in getattr(gen, name).named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, f"{name}.{pname}"

    def test_hole_content_is_ignored(self):
        for normalize in (False, True):
            gen = _generator("contextual", normalize_known=normalize).eval()
            image, mask = _batch()
            other = image * (1 - mask) + torch.rand_like(image) * mask
            for key, value in gen(image, mask).items():
                torch.testing.assert_close(value, gen(other, mask)[key])

    def test_an_options(self):
        # Default: the paper's eq. 5 (per-region affine), the input itself normalised.
        (an,) = _an_layers(InpaintGenerator(cnum=4))
        assert an.beta is not None and an.alpha is not None
        assert an.value is None
        # The authors' inpainting layer: no affine, a value projection of C channels.
        authors = functools.partial(AttentiveNorm2d, affine=False, value_projection=True)
        (an,) = _an_layers(InpaintGenerator(cnum=4, long_range=authors))
        assert an.beta is None and an.alpha is None
        assert an.value.weight.shape == (16, 16, 1, 1)
        # Every argument of the layer reaches it, implementation included.
        settings = {"num_entities": 8, "temperature": 0.5, "self_sampling": False, "affine": False, "stats": "batch",
                    "eps": 1e-3, "value_projection": True, "implementation": "reference"}  # fmt: skip
        for ca in (None, ContextualAttention2d):
            gen = InpaintGenerator(
                cnum=4, long_range=functools.partial(AttentiveNorm2d, **settings), contextual_attention=ca
            )
            (an,) = _an_layers(gen)
            assert {k: getattr(an, k) for k in settings} == settings
        # And CA's: its settings, DeepFill's by default.
        gen = _generator("contextual")
        assert (gen.contextual.softmax_scale, gen.contextual.rate, gen.contextual.ksize) == (10.0, 2, 3)
        scaled = InpaintGenerator(
            cnum=4, long_range=None, contextual_attention=functools.partial(ContextualAttention2d, softmax_scale=5.0)
        )
        assert scaled.contextual.softmax_scale == 5.0

    def test_branch_widths(self):
        def widths(gen, branch):
            return [m.out_channels for m in getattr(gen, branch).modules() if isinstance(m, torch.nn.Conv2d)][:4]

        deepfill, authors = InpaintGenerator(cnum=4), InpaintGenerator(cnum=4, branch_widths="authors")
        assert widths(deepfill, "hallucination") == [4, 4, 8, 8]
        assert widths(deepfill, "attention_encoder") == [4, 4, 8, 16]
        assert widths(authors, "hallucination") == [4, 8, 8, 16]
        assert widths(authors, "attention_encoder") == [4, 8, 8, 16]
        image, mask = _batch()
        assert authors(image, mask)["refined"].shape == image.shape

    def test_normalize_known_is_equivariant_to_the_known_colours(self):
        """In standardised units the output follows an affine change of the known pixels exactly (no clipping)."""
        gen = InpaintGenerator(cnum=4, normalize_known=True).eval()
        image, mask = _batch()
        image = image * 0.3  # keep every output far from the [-1, 1] clip
        with torch.no_grad():
            for p in gen.parameters():
                p.mul_(0.5)
            base = gen(image, mask)
            moved = gen(image * 0.5 + 0.2, mask)
        assert base["refined"].abs().max() < 0.9
        torch.testing.assert_close(moved["refined"], base["refined"] * 0.5 + 0.2, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(moved["coarse"], base["coarse"] * 0.5 + 0.2, rtol=1e-4, atol=1e-5)
        mean, std = known_statistics(image, mask)
        known = image[0][:, mask[0, 0] == 0]
        torch.testing.assert_close(mean[0, :, 0, 0], known.mean(dim=1))
        torch.testing.assert_close(std[0, :, 0, 0], known.std(dim=1, unbiased=False))

    def test_harmonic_fill_start(self):
        """hole_fill="harmonic": an untrained generator returns the harmonic fill; the residual lives in the hole."""
        gen = InpaintGenerator(cnum=4, hole_fill="harmonic").eval()
        image, mask = _batch()
        out = gen(image, mask)
        expected = harmonic_fill(image, mask).clamp(-1, 1)
        torch.testing.assert_close(out["coarse"], expected)
        torch.testing.assert_close(out["refined"], expected)
        # The fill is harmonic: inside the hole each pixel is the mean of its 4 neighbours (away from the border).
        fill = harmonic_fill(image, mask, iterations=400)
        inner = mask[:, :, 1:-1, 1:-1] > 0
        neighbours = (fill[:, :, :-2, 1:-1] + fill[:, :, 2:, 1:-1] + fill[:, :, 1:-1, :-2] + fill[:, :, 1:-1, 2:]) / 4
        assert (fill[:, :, 1:-1, 1:-1] - neighbours).abs()[inner.expand_as(neighbours)].max() < 1e-3
        with torch.no_grad():
            gen.refine_decoder[-1][0].bias.fill_(0.1)
        moved = gen(image, mask)["refined"]
        assert torch.equal(moved[mask.expand_as(image) == 0], out["refined"][mask.expand_as(image) == 0])
        assert (moved - out["refined"]).abs().max() > 0.05

    @pytest.mark.parametrize("hole_fill", ["mixture", "telea"])
    def test_hole_fill_is_blank_or_harmonic(self, hole_fill):
        """Only the paper's blank hole and the in-graph harmonic start exist ("mixture", a learned mix of OpenCV
        fills run inside forward(), was removed); anything else is refused with the accepted values."""
        with pytest.raises(ValueError, match=f"hole_fill must be 'blank' or 'harmonic', got '{hole_fill}'"):
            InpaintGenerator(cnum=4, hole_fill=hole_fill)

    def test_gradients_reach_every_branch(self):
        """refined -> decoder, hallucination, attention (AN and CA) and coarse stage all get gradients."""
        gen = _generator("contextual+an")
        (an,) = _an_layers(gen)
        with torch.no_grad():
            an.rho.fill_(0.5)  # rho starts at 0, which would hide AN's own parameters from the loss
        image, mask = _batch()
        out = gen(image, mask)
        (out["refined"] * mask).sum().backward()
        for name in ("refine_decoder", "hallucination", "attention_encoder", "attention_pre", "attention_post"):
            grads = [p.grad for p in getattr(gen, name).parameters()]
            assert all(g is not None and g.abs().sum() > 0 for g in grads), name
        for name in ("entities", "beta", "alpha", "rho", "key", "query", "t"):
            module_or_param = getattr(an, name)
            params = (
                list(module_or_param.parameters())
                if isinstance(module_or_param, torch.nn.Module)
                else [module_or_param]
            )
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params), f"AN {name}"
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in gen.coarse.parameters())

    def test_refinement_sees_the_coarse_result(self):
        gen = _generator("an").eval()
        image, mask = _batch()
        with torch.no_grad():
            before = gen(image, mask)["refined"]
            for p in gen.coarse.parameters():
                p.add_(torch.randn_like(p))
            after = gen(image, mask)["refined"]
        assert (after - before).abs().max() > 1e-6

    def test_exception(self):
        gen = InpaintGenerator(cnum=4)
        image, mask = _batch(h=36)
        with pytest.raises(ValueError, match="divisible by 8"):
            gen(image, mask)
        image, mask = _batch()
        with pytest.raises(ValueError, match="mask must have shape"):
            gen(image, mask[:, :, :16])
        with pytest.raises(ValueError, match="long_range must be a layer class"):
            InpaintGenerator(long_range="an")  # the layer itself, not a name
        with pytest.raises(ValueError, match="contextual_attention must be ContextualAttention2d"):
            InpaintGenerator(contextual_attention="contextual")
        with pytest.raises(ValueError, match="must build a ContextualAttention2d"):
            InpaintGenerator(cnum=4, contextual_attention=torch.nn.Identity)
        with pytest.raises(ValueError, match="branch_widths"):
            InpaintGenerator(branch_widths="wide")
        with pytest.raises(ValueError, match="hole_fill"):
            InpaintGenerator(hole_fill="telea")


class TestCritics:
    def test_global(self):
        image, mask = _batch(h=32, w=32)
        critic = GlobalCritic(input_size=32, cnum=4)
        assert critic(image, mask).shape == (2,)
        with pytest.raises(ValueError, match="input_size"):
            critic(torch.zeros(1, 3, 64, 64))

    def test_local_deepfill_box_holds_hole_and_context(self):
        """DeepFill: a fixed box of input_size around the hole, hole shrunk symmetrically inside it."""
        image = torch.rand(2, 3, 64, 64)
        mask = torch.zeros(2, 1, 64, 64)
        mask[0, :, 10 + 3 : 10 + 32 - 3, 20 + 1 : 20 + 32 - 1] = 1  # drawn in the box at (10, 20)
        mask[1, :, 40:60, 50:64] = 1  # near the corner: the box moves inside the image
        critic = LocalCritic(input_size=32, cnum=4)
        crops = critic.crop(image, mask)
        torch.testing.assert_close(crops[0], image[0, :, 10:42, 20:52])
        torch.testing.assert_close(crops[1], image[1, :, 32:64, 32:64])
        # The context strip inside the box changes the score; pixels outside the box do not.
        inside, outside = image.clone(), image.clone()
        inside[0, :, 11, 21] += 1
        outside[0, :, 50, 5] += 1
        scores = critic(image, mask)
        assert critic(inside, mask)[0] != scores[0]
        torch.testing.assert_close(critic(outside, mask), scores)
        big = torch.zeros(1, 1, 64, 64)
        big[:, :, 0:40, 0:10] = 1
        with pytest.raises(ValueError, match="fixed 32x32 box"):
            critic(image[:1], big)

    def test_local_resize(self):
        image, mask = _batch()
        critic = LocalCritic(input_size=16, cnum=4, crop="resize")
        torch.testing.assert_close(critic.crop(image, mask)[0], image[0, :, 4:20, 8:24])  # 16x16: no resize
        assert critic(image, mask).shape == (2,)
        with pytest.raises(ValueError, match="crop"):
            LocalCritic(crop="tight")

    def test_masked_patch_weighting_by_value(self):
        critic = MaskedPatchCritic(cnum=4)
        image = torch.rand(1, 3, 64, 64)
        assert critic.score_map(image).shape == (1, 1, 4, 4)
        scores = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4)
        critic.score_map = lambda x: scores  # a known score map
        mask = torch.zeros(1, 1, 64, 64)
        mask[:, :, 0:16, 0:16] = 1  # all of patch (0, 0)
        mask[:, :, 16:24, 16:32] = 1  # half of patch (1, 1)
        # weights: patch (0, 0) -> 1, patch (1, 1) -> 0.5; scores 0 and 5.
        assert critic(image, mask).item() == pytest.approx((1 * 0 + 0.5 * 5) / 1.5)
        with pytest.raises(ValueError, match="needs the mask"):
            critic(image, None)
