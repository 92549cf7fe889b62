"""Tests of ``common.layers.factories``: the layer classes and partials that the networks take as arguments, read back
(class, config entry) and rebuilt from a config entry, also for the partials jsonargparse makes from a config."""

import functools
import json
from collections.abc import Callable

import pytest
from jsonargparse import ArgumentParser
from torch import nn

from common.layers import AttentiveNorm2d, ContextualAttention2d, SelfAttention2d
from common.layers.factories import builds, layer_class, layer_factory, layer_spec

AN_PATH = "common.layers.attentive_norm.AttentiveNorm2d"


def _from_config(value) -> Callable[[int], nn.Module] | None:
    """What LightningCLI passes to a network for ``long_range: <value>`` in a config."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--layer", type=Callable[[int], nn.Module] | None)
    return parser.instantiate(parser.parse_object({"layer": value})).layer


def test_class_partial_and_config_partial():
    nested = functools.partial(functools.partial(AttentiveNorm2d, num_entities=8), stats="batch")
    from_config = _from_config({"class_path": "common.layers.AttentiveNorm2d", "init_args": {"num_entities": 8}})
    for factory in (AttentiveNorm2d, nested, from_config):
        assert layer_class(factory) is AttentiveNorm2d
        assert builds(factory, AttentiveNorm2d) and not builds(factory, SelfAttention2d)
    assert layer_spec(AttentiveNorm2d) == {"class_path": AN_PATH, "init_args": {}}
    assert layer_spec(nested) == {"class_path": AN_PATH, "init_args": {"num_entities": 8, "stats": "batch"}}
    spec = layer_spec(from_config)  # jsonargparse's partial: every argument, defaults included
    assert spec["class_path"] == AN_PATH and spec["init_args"]["num_entities"] == 8
    assert spec["init_args"]["implementation"] == "auto" and json.loads(json.dumps(spec)) == spec
    assert layer_class(_from_config("common.layers.SelfAttention2d")) is SelfAttention2d
    assert _from_config(None) is None and layer_class(None) is None and layer_spec(None) is None
    assert not builds(None, AttentiveNorm2d)


def test_round_trip():
    for factory in (SelfAttention2d, functools.partial(AttentiveNorm2d, num_entities=4, implementation="reference")):
        rebuilt = layer_factory(layer_spec(factory))
        assert layer_spec(rebuilt) == layer_spec(factory)
        assert repr(rebuilt(16)) == repr(factory(16))
    assert layer_factory("common.layers.ContextualAttention2d") is ContextualAttention2d
    layer = layer_factory({"class_path": "common.layers.AttentiveNorm2d", "init_args": {"num_entities": 8}})(32)
    assert (layer.num_features, layer.num_entities) == (32, 8)
    assert layer_factory(None) is None


def test_plain_functions_and_odd_values():
    def make(channels: int) -> nn.Module:
        return nn.Identity()

    assert layer_class(make) is None and not builds(make, AttentiveNorm2d)
    assert layer_spec(make)["class_path"].endswith("make")
    odd = layer_spec(functools.partial(AttentiveNorm2d, eps=1e-3, extra=(1, object)))
    assert odd["init_args"]["eps"] == 1e-3 and odd["init_args"]["extra"][0] == 1
    assert isinstance(odd["init_args"]["extra"][1], str)  # not a plain value: its repr
    with pytest.raises(ModuleNotFoundError):
        layer_factory("nowhere.Layer")
