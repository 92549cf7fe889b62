"""Tests of the class-conditional generator and projection discriminator (an_gan.networks, an_gan.blocks)."""

import functools
import json

import pytest
import torch
from torch.nn.utils import parametrize

from an_gan.blocks import ConditionalBatchNorm2d, GBlock
from an_gan.networks import Discriminator, Generator, count_parameters
from an_gan.predict import class_weights, interpolate_classes
from common.layers import AttentiveNorm2d, SelfAttention2d
from common.layers.factories import layer_factory

K = 5
AN4 = functools.partial(AttentiveNorm2d, num_entities=4)
#: The long-range layers of Tables 1 and 4 as the configs pass them: AN, "AN w BN", SA-GAN, none (SN-GAN).
LONG_RANGE = {"an": AN4, "an_bn": functools.partial(AN4, stats="batch"), "sa": SelfAttention2d, "none": None}


def conv(i: int, o: int, k: int) -> int:
    return k * k * i * o + o


def reference_counts(classes: int = 1000, ch: int = 64, z: int = 128) -> dict[str, int]:
    """Parameters of the published 128-px networks, layer by layer from their code (not from ours).

    G: pfnet-research/sngan_projection gen_models/resnet.py + resblocks.py (== SA-GAN's generator.py): Linear(z,
    4*4*16ch), five up-blocks (conv1 in->out, conv2 out->out, 1x1 shortcut, two categorical cBNs of 2*K*C), BN(ch),
    conv 3x3 ch->3. D: six blocks (optimized 3->ch; ch->2ch->4ch->8ch->16ch down-sampling; 16ch->16ch), Linear(16ch,
    1), Embed(K, 16ch); conv1 to the output width (SA-GAN discriminator.py) or keeping the input width
    (sngan_projection dis_models/resblocks.py: hidden_channels = in_channels).
    """
    g = z * 16 * ch * 16 + 16 * ch * 16
    for a, b in ((16, 16), (16, 8), (8, 4), (4, 2), (2, 1)):
        i, o = a * ch, b * ch
        g += conv(i, o, 3) + conv(o, o, 3) + conv(i, o, 1) + 2 * classes * (i + o)
    g += 2 * ch + conv(ch, 3, 3)
    d = {}
    for wide in (True, False):
        total = conv(3, ch, 3) + conv(ch, ch, 3) + conv(3, ch, 1)
        for a, b, down in ((1, 2, 1), (2, 4, 1), (4, 8, 1), (8, 16, 1), (16, 16, 0)):
            i, o = a * ch, b * ch
            h = o if wide else i
            total += conv(i, h, 3) + conv(h, o, 3) + (conv(i, o, 1) if (i != o or down) else 0)
        d[wide] = total + 16 * ch + 1 + classes * 16 * ch
    return {"g": g, "d_wide": d[True], "d_narrow": d[False]}


@functools.cache
def counted(kind: str) -> int:
    """Parameters of one 128-px, 1000-class network (each built once per test session)."""
    build = {
        "g_none": lambda: Generator(long_range=None),
        "g_an": lambda: Generator(),
        "g_an_before": lambda: Generator(an_placement="before_cbn"),
        "g_sa": lambda: Generator(long_range=SelfAttention2d, long_range_block=2),
        "g_sa64": lambda: Generator(long_range=SelfAttention2d, long_range_block=3),
        "d_none": lambda: Discriminator(long_range=None),
        "d_narrow": lambda: Discriminator(long_range=None, wide=False),
        "d_an": lambda: Discriminator(),
        "d_sa": lambda: Discriminator(long_range=SelfAttention2d, long_range_block=1),
        "d_sa64": lambda: Discriminator(long_range=SelfAttention2d, long_range_block=0),
        "d_five": lambda: Discriminator(long_range=None, num_blocks=5),
    }[kind]
    return count_parameters(build())


@pytest.mark.slow
class TestParameterCounts:
    """Pinned against the SN-GAN projection / SA-GAN ImageNet-128 networks (see an_gan.networks)."""

    def test_reference_figures(self):
        ref = reference_counts()
        assert ref == {"g": 41_996_931, "d_wide": 39_443_137, "d_narrow": 30_041_857}
        assert counted("g_none") == ref["g"]
        assert counted("d_none") == ref["d_wide"]
        assert counted("d_narrow") == ref["d_narrow"]
        # the literal "five residual blocks" reading drops the last 1024 -> 1024 block
        assert counted("d_five") == ref["d_wide"] - (conv(1024, 1024, 3) * 2)

    def test_sagan_total_is_bigans_81_5m(self):
        # BigGAN (Brock et al. 2019) Table 1: "SA-GAN baseline, Param (M) 81.5" for G + D
        sa_g, sa_d = SelfAttention2d(256), SelfAttention2d(128)  # after G block 2 (256 ch), D block 1 (128 ch)
        assert count_parameters(sa_g) == 256 * 32 * 2 + 256 * 128 * 2 + 1  # q, k; v, out; gamma
        assert counted("g_sa") == counted("g_none") + count_parameters(sa_g)
        assert counted("d_sa") == counted("d_none") + count_parameters(sa_d)
        assert round((counted("g_sa") + counted("d_sa")) / 1e6, 1) == 81.5
        # sagan.yaml: attention on the 64x64 maps (generator_test_64 / discriminator_test_64), 128 and 64 channels
        sa_g64, sa_d64 = SelfAttention2d(128), SelfAttention2d(64)
        assert counted("g_sa64") == counted("g_none") + count_parameters(sa_g64)
        assert counted("d_sa64") == counted("d_none") + count_parameters(sa_d64)
        assert counted("g_sa64") + counted("d_sa64") == 81_465_670

    def test_an_model(self):
        an_g, an_d = count_parameters(AttentiveNorm2d(256, 16)), count_parameters(AttentiveNorm2d(64, 16))
        ref = reference_counts()
        assert counted("g_an") == ref["g"] - 2 * 1000 * 256 + an_g  # AN takes the place of block 2's cBN2
        assert counted("g_an_before") == ref["g"] + an_g
        assert counted("d_an") == ref["d_wide"] + an_d


class TestGenerator:
    @pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128])
    @pytest.mark.parametrize("long_range", LONG_RANGE)
    def test_cardinality(self, resolution, long_range):
        torch.manual_seed(0)
        block = {8: 0, 16: 1}.get(resolution, 2)
        g = Generator(K, resolution, z_dim=8, ch=1, long_range=LONG_RANGE[long_range], long_range_block=block)
        out = g(torch.randn(2, 8), torch.tensor([0, K - 1]))
        assert out.shape == (2, 3, resolution, resolution)
        assert out.abs().max() <= 1.0
        assert len(g.blocks) == {8: 1, 16: 2, 32: 3, 64: 4, 128: 5}[resolution]

    @pytest.mark.parametrize("placement", ["replace_cbn", "before_cbn"])
    def test_an_placement(self, placement):
        g = Generator(K, 64, z_dim=8, ch=2, long_range=AN4, long_range_block=2, an_placement=placement)
        block = g.blocks[2]
        layers = [m for m in g.modules() if isinstance(m, AttentiveNorm2d)]
        assert layers == [block.attention] and g.long_range_layer is block.attention
        assert (block.bn2 is None) == (placement == "replace_cbn")
        assert all(b.bn2 is not None for i, b in enumerate(g.blocks) if i != 2)
        seen = {}
        block.attention.register_forward_hook(lambda mod, inp, out: seen.update(an=inp[0].shape))
        if block.bn2 is not None:
            block.bn2.register_forward_hook(lambda mod, inp, out: seen.update(bn_input=inp[0]))
            block.attention.register_forward_hook(lambda mod, inp, out: seen.update(an_output=out))
        g(torch.randn(2, 8), torch.tensor([1, 2]))
        assert tuple(seen["an"]) == (2, 2 * 2, 32, 32)  # block 2: 32x32 maps, ch * G_WIDTHS[64][3]
        if placement == "before_cbn":
            assert seen["bn_input"] is seen["an_output"]  # AN feeds the cBN

    def test_replace_cbn_block_matches_manual_forward(self):
        torch.manual_seed(0)
        an = functools.partial(AttentiveNorm2d, num_entities=2)
        block = GBlock(4, 6, K, attention=an, an_placement="replace_cbn", spectral_norm=False).eval()
        with torch.no_grad():
            block.attention.rho.fill_(0.7)
        x, y = torch.randn(3, 4, 5, 5), torch.tensor([0, 1, 4])
        h = block.conv1(torch.nn.functional.interpolate(torch.relu(block.bn1(x, y)), scale_factor=2))
        h = block.conv2(torch.relu(block.attention(h)))
        expected = h + block.shortcut(torch.nn.functional.interpolate(x, scale_factor=2))
        torch.testing.assert_close(block(x, y), expected)

    def test_sa_between_blocks(self):
        g = Generator(K, 32, z_dim=8, ch=1, long_range=SelfAttention2d, long_range_block=1)
        sa = [m for m in g.modules() if isinstance(m, SelfAttention2d)]
        assert sa == [g.self_attention] and g.long_range_layer is g.self_attention
        assert all(b.attention is None for b in g.blocks)
        assert all(parametrize.is_parametrized(c) for c in (sa[0].query, sa[0].key, sa[0].value, sa[0].out))
        seen = {}
        g.self_attention.register_forward_hook(lambda mod, inp, out: seen.update(shape=inp[0].shape))
        g(torch.randn(2, 8), torch.tensor([0, 1]))
        assert tuple(seen["shape"]) == (2, 4, 16, 16)  # after block 1 (8 -> 16)
        g_none = Generator(K, 32, z_dim=8, ch=1, long_range=None)
        assert not any(isinstance(m, (AttentiveNorm2d, SelfAttention2d)) for m in g_none.modules())
        assert isinstance(g_none.long_range_layer, torch.nn.Identity)
        g_plain = Generator(K, 32, z_dim=8, ch=1, long_range=SelfAttention2d, long_range_block=1, spectral_norm=False)
        assert not any(parametrize.is_parametrized(m) for m in g_plain.modules())  # SN follows the network's switch

    def test_every_an_argument_reaches_the_layer(self):
        """The layer itself is the argument: a partial sets any of AN's arguments, in G and in D, and the network's
        ``config`` (the checkpoint stamp) records them as a config would write them."""
        settings = {"num_entities": 8, "temperature": 0.5, "self_sampling": False, "affine": False, "stats": "batch",
                    "eps": 1e-3, "value_projection": True, "implementation": "reference"}  # fmt: skip
        an = functools.partial(AttentiveNorm2d, **settings)
        g = Generator(K, 32, z_dim=8, ch=1, long_range=an, long_range_block=1)
        d = Discriminator(K, 32, ch=1, long_range=an)
        for net in (g, d):
            layer = net.long_range_layer
            assert isinstance(layer, AttentiveNorm2d) and net.self_attention is None
            assert {k: getattr(layer, k) for k in settings} == settings
            assert not any(parametrize.is_parametrized(m) for m in layer.modules())  # AN's convs: never SN
            spec = json.loads(json.dumps(net.config["long_range"]))  # plain values (the checkpoint stamp)
            assert spec == {"class_path": "common.layers.attentive_norm.AttentiveNorm2d", "init_args": settings}
            rebuilt = type(net)(**{**net.config, "long_range": layer_factory(spec)})
            assert rebuilt.state_dict().keys() == net.state_dict().keys()
        g(torch.randn(2, 8), torch.tensor([0, 1]))
        assert Generator(K, 32, z_dim=8, ch=1, long_range=None).config["long_range"] is None

    def test_sync_batchnorm_conversion(self):
        """--trainer.sync_batchnorm (multi-GPU) converts every BN, those inside the conditional BNs included."""
        g = Generator(K, 32, z_dim=8, ch=1, long_range=AN4)
        count = sum(isinstance(m, torch.nn.BatchNorm2d) for m in g.modules())
        synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(g)
        assert count == 6 and sum(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules()) == count
        assert synced.eval()(torch.randn(2, 8), torch.tensor([0, 1])).shape == (2, 3, 32, 32)

    def test_spectral_norm_switch(self):
        with_sn = Generator(K, 32, z_dim=8, ch=1, spectral_norm=True)
        without = Generator(K, 32, z_dim=8, ch=1, spectral_norm=False)
        assert parametrize.is_parametrized(with_sn.blocks[0].conv1) and parametrize.is_parametrized(with_sn.linear)
        assert not any(parametrize.is_parametrized(m) for m in without.modules())

    def test_class_weights_equal_labels(self):
        torch.manual_seed(0)
        g = Generator(K, 32, z_dim=8, ch=1, long_range=AN4).eval()
        _randomise_class_embeddings(g)
        z, y = torch.randn(3, 8), torch.tensor([0, 3, 4])
        torch.testing.assert_close(g(z, class_weights(y, K)), g(z, y))

    def test_interpolation_endpoints(self):
        torch.manual_seed(0)
        g = Generator(K, 32, z_dim=8, ch=1, long_range=AN4).eval()
        _randomise_class_embeddings(g)
        z = torch.randn(8)
        frames = interpolate_classes(g, z, 1, 3, steps=5)
        assert frames.shape == (5, 3, 32, 32)
        torch.testing.assert_close(frames[0], g(z[None], torch.tensor([1]))[0])
        torch.testing.assert_close(frames[-1], g(z[None], torch.tensor([3]))[0])
        assert not torch.allclose(frames[2], frames[0])

    def test_exception(self):
        with pytest.raises(ValueError, match="resolution"):
            Generator(K, 48)
        with pytest.raises(ValueError, match="long_range must be a layer class"):
            Generator(K, 32, long_range="an")  # the layer itself, not a name
        with pytest.raises(ValueError, match="long_range_block"):
            Generator(K, 32, long_range_block=3)
        with pytest.raises(ValueError, match="an_placement"):
            Generator(K, 32, an_placement="after")
        with pytest.raises(ValueError, match="num_classes"):
            Generator(0, 32)
        g = Generator(K, 32, z_dim=8, ch=1)
        with pytest.raises(ValueError, match="labels must lie"):
            g(torch.randn(2, 8), torch.tensor([0, K]))
        with pytest.raises(ValueError, match="z must have shape"):
            g(torch.randn(2, 9), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="class weights"):
            g(torch.randn(2, 8), torch.rand(2, K + 1))


def _randomise_class_embeddings(g: Generator) -> None:
    # at initialisation every class has gain 1 and bias 0, so all classes would give the same image
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.gain.weight.normal_(1.0, 0.5)
                m.bias.weight.normal_(0.0, 0.5)


class TestDiscriminator:
    @pytest.mark.parametrize("resolution", [8, 16, 32, 64, 128])
    @pytest.mark.parametrize("long_range", LONG_RANGE)
    def test_cardinality(self, resolution, long_range):
        torch.manual_seed(0)
        block = 1 if long_range == "sa" else 0
        d = Discriminator(K, resolution, ch=1, long_range=LONG_RANGE[long_range], long_range_block=block)
        out = d(torch.randn(2, 3, resolution, resolution), torch.tensor([0, K - 1]))
        assert out.shape == (2,)
        assert len(d.blocks) == {8: 3, 16: 3, 32: 4, 64: 5, 128: 6}[resolution]

    def test_an_in_first_block_and_sa_after_second(self):
        d = Discriminator(K, 128, ch=2, long_range=AN4)
        layers = [m for m in d.modules() if isinstance(m, AttentiveNorm2d)]
        assert layers == [d.blocks[0].attention]
        seen = {}
        layers[0].register_forward_hook(lambda mod, inp, out: seen.update(an=inp[0].shape))
        d(torch.randn(1, 3, 128, 128), torch.tensor([0]))
        assert tuple(seen["an"]) == (1, 2, 128, 128)
        assert all(parametrize.is_parametrized(m) for m in (d.blocks[0].conv1, d.linear, d.embed))
        d_sa = Discriminator(K, 128, ch=2, long_range=SelfAttention2d, long_range_block=1)
        d_sa.self_attention.register_forward_hook(lambda mod, inp, out: seen.update(sa=inp[0].shape))
        d_sa(torch.randn(1, 3, 128, 128), torch.tensor([0]))
        assert tuple(seen["sa"]) == (1, 4, 32, 32)  # SA-GAN's d_block2 output: 32x32, 2 ch
        sa = d_sa.self_attention
        assert all(parametrize.is_parametrized(c) for c in (sa.query, sa.key, sa.value, sa.out))

    def test_projection_term(self):
        torch.manual_seed(0)
        d = Discriminator(K, 32, ch=2, long_range=AN4).eval()  # eval: deterministic AN and spectral norm
        x = torch.randn(3, 3, 32, 32)
        y1, y2 = torch.tensor([0, 1, 2]), torch.tensor([4, 1, 0])
        h = d.features(x)
        embed = d.embed.weight  # spectrally normalised embedding matrix (K, C)
        manual = (h @ d.linear.weight.t() + d.linear.bias).squeeze(1) + (embed[y1] * h).sum(1)
        torch.testing.assert_close(d(x, y1), manual)
        torch.testing.assert_close(d(x, y1) - d(x, y2), ((embed[y1] - embed[y2]) * h).sum(1))

    def test_exception(self):
        d = Discriminator(K, 32, ch=1, long_range=AN4)
        with pytest.raises(ValueError, match="expected images"):
            d(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="labels must be integers"):
            d(torch.randn(2, 3, 32, 32), torch.rand(2))
        with pytest.raises(ValueError, match="long_range_block"):
            Discriminator(K, 32, long_range_block=4)
        with pytest.raises(ValueError, match="long_range_block"):
            Discriminator(K, 32, long_range=SelfAttention2d, long_range_block=3)  # SA needs a block after it
        with pytest.raises(ValueError, match="long_range must be a layer class"):
            Discriminator(K, 32, long_range="sa")
        with pytest.raises(ValueError, match="num_blocks"):
            Discriminator(K, 128, num_blocks=7)


class TestConditionalBatchNorm2d:
    def test_init_is_plain_bn(self):
        cbn = ConditionalBatchNorm2d(3, K)
        x = torch.randn(4, 3, 5, 5)
        torch.testing.assert_close(
            cbn(x, torch.tensor([0, 1, 2, 3])), torch.nn.functional.batch_norm(x, None, None, training=True)
        )

    def test_per_class_affine(self):
        cbn = ConditionalBatchNorm2d(2, K).eval()
        with torch.no_grad():
            cbn.gain.weight[3] = torch.tensor([2.0, 3.0])
            cbn.bias.weight[3] = torch.tensor([-1.0, 1.0])
        x = torch.randn(1, 2, 2, 2)
        expected = cbn.bn(x) * torch.tensor([2.0, 3.0]).view(1, 2, 1, 1) + torch.tensor([-1.0, 1.0]).view(1, 2, 1, 1)
        torch.testing.assert_close(cbn(x, torch.tensor([3])), expected)

    def test_gradcheck(self):
        cbn = ConditionalBatchNorm2d(2, 3).double()
        x = torch.randn(3, 2, 2, 2, dtype=torch.float64, requires_grad=True)
        w = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda a, b: cbn(a, b), (x, w))
