"""Tests of the class-conditional generator and projection discriminator (an_gan.networks)."""

import pytest
import torch
from torch.nn.utils import parametrize

from an_gan.networks import LONG_RANGE_CHOICES, ConditionalBatchNorm2d, Discriminator, Generator
from an_gan.sampling import class_weights, interpolate_classes
from common.layers import AttentiveNorm2d, SelfAttention2d

K = 5


def _d_block(long_range: str, resolution: int) -> int:
    # SA on 128x128 maps needs a (16384 x 4096) attention matrix per sample: the SA-GAN config uses block 1.
    return 1 if (long_range == "sa" and resolution == 128) else 0


def _randomise_class_embeddings(g: Generator) -> None:
    # at initialisation every class has gain 1 and bias 0, so all classes would give the same image
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, ConditionalBatchNorm2d):
                m.gain.weight.normal_(1.0, 0.5)
                m.bias.weight.normal_(0.0, 0.5)


class TestGenerator:
    @pytest.mark.parametrize("resolution", [32, 64, 128])
    @pytest.mark.parametrize("long_range", LONG_RANGE_CHOICES)
    def test_cardinality(self, resolution, long_range):
        torch.manual_seed(0)
        g = Generator(K, resolution, z_dim=8, ch=1, long_range=long_range, num_entities=4)
        out = g(torch.randn(2, 8), torch.tensor([0, K - 1]))
        assert out.shape == (2, 3, resolution, resolution)
        assert out.abs().max() <= 1.0
        assert len(g.blocks) == {32: 3, 64: 4, 128: 5}[resolution]

    @pytest.mark.parametrize("resolution", [32, 64, 128])
    def test_an_placement(self, resolution):
        g = Generator(K, resolution, z_dim=8, ch=2, long_range="an", long_range_block=2, num_entities=4)
        layers = [m for m in g.modules() if isinstance(m, AttentiveNorm2d)]
        assert len(layers) == 1
        assert g.long_range_layer is layers[0] is g.blocks[2].long_range
        seen = {}
        layers[0].register_forward_hook(lambda mod, inp, out: seen.update(shape=inp[0].shape))
        g(torch.randn(2, 8), torch.tensor([1, 2]))
        # block 2 works on 32x32 maps whatever the output size; width = ch * G_WIDTHS[resolution][3]
        expected_channels = 2 * {32: 4, 64: 2, 128: 4}[resolution]
        assert tuple(seen["shape"]) == (2, expected_channels, 32, 32)

    def test_sa_and_none(self):
        g_sa = Generator(K, 32, z_dim=8, ch=1, long_range="sa", long_range_block=1)
        sa = [m for m in g_sa.modules() if isinstance(m, SelfAttention2d)]
        assert len(sa) == 1 and g_sa.blocks[1].long_range is sa[0]
        assert all(parametrize.is_parametrized(c) for c in sa[0].modules() if isinstance(c, torch.nn.Conv2d))
        g_none = Generator(K, 32, z_dim=8, ch=1, long_range="none")
        assert not any(isinstance(m, (AttentiveNorm2d, SelfAttention2d)) for m in g_none.modules())

    def test_spectral_norm_switch(self):
        with_sn = Generator(K, 32, z_dim=8, ch=1, spectral_norm=True)
        without = Generator(K, 32, z_dim=8, ch=1, spectral_norm=False)
        assert parametrize.is_parametrized(with_sn.blocks[0].conv1) and parametrize.is_parametrized(with_sn.linear)
        assert not any(parametrize.is_parametrized(m) for m in without.modules())

    def test_class_weights_equal_labels(self):
        torch.manual_seed(0)
        g = Generator(K, 32, z_dim=8, ch=1, num_entities=4).eval()
        _randomise_class_embeddings(g)
        z, y = torch.randn(3, 8), torch.tensor([0, 3, 4])
        torch.testing.assert_close(g(z, class_weights(y, K)), g(z, y))

    def test_interpolation_endpoints(self):
        torch.manual_seed(0)
        g = Generator(K, 32, z_dim=8, ch=1, num_entities=4).eval()
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
        with pytest.raises(ValueError, match="long_range must be"):
            Generator(K, 32, long_range="attention")
        with pytest.raises(ValueError, match="long_range_block"):
            Generator(K, 32, long_range_block=3)
        with pytest.raises(ValueError, match="num_classes"):
            Generator(0, 32)
        g = Generator(K, 32, z_dim=8, ch=1)
        with pytest.raises(ValueError, match="labels must lie"):
            g(torch.randn(2, 8), torch.tensor([0, K]))
        with pytest.raises(ValueError, match="z must have shape"):
            g(torch.randn(2, 9), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="class weights"):
            g(torch.randn(2, 8), torch.rand(2, K + 1))


class TestDiscriminator:
    @pytest.mark.parametrize("resolution", [32, 64, 128])
    @pytest.mark.parametrize("long_range", LONG_RANGE_CHOICES)
    def test_cardinality(self, resolution, long_range):
        torch.manual_seed(0)
        d = Discriminator(
            K,
            resolution,
            ch=1,
            long_range=long_range,
            long_range_block=_d_block(long_range, resolution),
            num_entities=4,
        )
        out = d(torch.randn(2, 3, resolution, resolution), torch.tensor([0, K - 1]))
        assert out.shape == (2,)
        assert len(d.blocks) == {32: 3, 64: 4, 128: 5}[resolution]

    def test_an_in_first_block(self):
        d = Discriminator(K, 128, ch=2, long_range="an", num_entities=4)
        layers = [m for m in d.modules() if isinstance(m, AttentiveNorm2d)]
        assert len(layers) == 1 and d.blocks[0].long_range is layers[0]
        seen = {}
        layers[0].register_forward_hook(lambda mod, inp, out: seen.update(shape=inp[0].shape))
        d(torch.randn(1, 3, 128, 128), torch.tensor([0]))
        assert tuple(seen["shape"]) == (1, 2, 128, 128)
        assert all(parametrize.is_parametrized(m) for m in (d.blocks[0].conv1, d.linear, d.embed))

    def test_projection_term(self):
        torch.manual_seed(0)
        d = Discriminator(K, 32, ch=2, num_entities=4).eval()  # eval: deterministic AN and spectral norm
        x = torch.randn(3, 3, 32, 32)
        y1, y2 = torch.tensor([0, 1, 2]), torch.tensor([4, 1, 0])
        h = d.features(x)
        embed = d.embed.weight  # spectrally normalised embedding matrix (K, C)
        manual = h @ d.linear.weight.t() + d.linear.bias
        manual = manual.squeeze(1) + (embed[y1] * h).sum(1)
        torch.testing.assert_close(d(x, y1), manual)
        # changing the label changes only the projection term: D(x, y1) - D(x, y2) = <e(y1) - e(y2), h>
        torch.testing.assert_close(d(x, y1) - d(x, y2), ((embed[y1] - embed[y2]) * h).sum(1))
        assert d(x, y1)[1] == d(x, y2)[1]

    def test_exception(self):
        d = Discriminator(K, 32, ch=1, num_entities=4)
        with pytest.raises(ValueError, match="expected images"):
            d(torch.randn(2, 3, 64, 64), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="labels must be integers"):
            d(torch.randn(2, 3, 32, 32), torch.rand(2))
        with pytest.raises(ValueError, match="long_range_block"):
            Discriminator(K, 32, long_range_block=3)


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
