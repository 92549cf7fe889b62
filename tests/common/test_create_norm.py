"""Tests for the norm-name factory ``common.layers.create_norm``."""

import pytest
import torch
from torch import nn

import common.layers as layers
from common.layers import NORM_NAMES, AttentiveNorm2d, SelfAttention2d, create_norm

EXPECTED = {
    "none": nn.Identity,
    "bn": nn.BatchNorm2d,
    "in": nn.InstanceNorm2d,
    "an": AttentiveNorm2d,
    "an_bn": AttentiveNorm2d,
    "sa": SelfAttention2d,
}


class TestCreateNorm:
    def test_names(self):
        assert set(NORM_NAMES) == set(EXPECTED)
        assert isinstance(NORM_NAMES, tuple)

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_smoke(self, name, device):
        module = create_norm(name, 16).to(device)
        assert type(module) is EXPECTED[name]
        x = torch.randn(2, 16, 8, 8, device=device)
        for mode in (True, False):
            y = module.train(mode)(x)
            assert y.shape == x.shape
            assert y.device == x.device
            assert torch.isfinite(y).all()

    def test_feature_configuration(self):
        assert create_norm("in", 8).affine
        assert not create_norm("in", 8).track_running_stats
        assert create_norm("bn", 8).num_features == 8
        an = create_norm("an", 8)
        assert an.stats == "instance"
        assert an.num_entities == 16
        assert create_norm("an_bn", 8).stats == "batch"
        # "none" ignores options meant for other norms
        assert isinstance(create_norm("none", 8, num_entities=4), nn.Identity)

    def test_feature_kwargs_forwarded(self):
        an = create_norm("an", 8, num_entities=4, self_sampling=False, affine=False, temperature=0.5)
        assert (an.num_entities, an.self_sampling, an.affine, an.temperature) == (4, False, False, 0.5)
        assert an.entities.out_channels == 4
        an_bn = create_norm("an_bn", 8, num_entities=8)
        assert (an_bn.num_entities, an_bn.stats) == (8, "batch")
        assert create_norm("an_bn", 8, stats="batch").stats == "batch"
        assert not create_norm("in", 8, affine=False).affine
        assert create_norm("bn", 8, momentum=0.5).momentum == 0.5

    def test_exception(self):
        with pytest.raises(ValueError, match=r"unknown norm name 'group'.*none, bn, in, an, an_bn, sa"):
            create_norm("group", 8)
        with pytest.raises(ValueError, match="unknown norm name"):
            create_norm("AN", 8)
        with pytest.raises(ValueError, match="an_bn"):
            create_norm("an_bn", 8, stats="instance")
        with pytest.raises(TypeError):
            create_norm("sa", 8, num_entities=4)  # SelfAttention2d takes no such option
        with pytest.raises(ValueError, match="num_entities"):
            create_norm("an", 8, num_entities=1)

    def test_reexports(self):
        assert set(layers.__all__) >= {
            "AttentiveNorm2d",
            "orthogonal_loss",
            "collect_layouts",
            "SelfAttention2d",
            "create_norm",
            "NORM_NAMES",
            "ContextualAttention2d",
        }
        for name in layers.__all__:
            assert getattr(layers, name) is not None
