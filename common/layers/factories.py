"""Layers given to the networks as arguments, and how to read such an argument back.

The networks of both tasks take their long-range module itself, in the style of timm's ``norm_layer`` arguments: a
layer class called with the channel count, such as ``AttentiveNorm2d`` (Wang et al., "Attentive Normalization for
Conditional Image Generation", CVPR 2020) or ``SelfAttention2d`` (SA-GAN, Zhang et al. 2019), or a partial of it
with its settings, ``functools.partial(AttentiveNorm2d, num_entities=8)``. A config writes the same thing as a
``class_path`` with ``init_args``, which jsonargparse (LightningCLI) turns into such a partial, so every argument of
the layer is reachable from the config without being renamed on the way.

* :func:`layer_class`: the class a factory builds (the networks place an AN layer inside a block and any other
  module after it);
* :func:`layer_spec`: a factory as ``{"class_path", "init_args"}``, plain values only (the networks' ``config``
  and the checkpoint stamp);
* :func:`layer_factory`: the inverse, for code that reads config files without the CLI (benchmarks, notebooks).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = ["builds", "layer_class", "layer_factory", "layer_spec"]

LayerFactory = Callable[..., nn.Module]


def layer_class(factory: LayerFactory | None) -> type | None:
    """The class that ``factory`` instantiates: ``factory`` itself when it is a class, the class a
    ``functools.partial`` wraps (also jsonargparse's, whose arguments hold the class), else ``None`` (a plain
    function, or ``None``)."""
    while isinstance(factory, functools.partial):
        classes = [a for a in (factory.func, *factory.args) if isinstance(a, type)]
        if classes:
            return classes[-1]
        factory = factory.func
    return factory if isinstance(factory, type) else None


def builds(factory: LayerFactory | None, cls: type) -> bool:
    """True when ``factory`` builds a ``cls`` (or a subclass of it)."""
    built = layer_class(factory)
    return built is not None and issubclass(built, cls)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return repr(value)


def layer_spec(factory: LayerFactory | None) -> dict[str, Any] | None:
    """``factory`` as a config writes it: ``{"class_path": ..., "init_args": {...}}`` (the keyword arguments of its
    partials, outer ones winning; values other than numbers, strings, lists and dicts as their ``repr``), or ``None``.

    Example:
        >>> from common.layers import AttentiveNorm2d
        >>> layer_spec(functools.partial(AttentiveNorm2d, num_entities=8))
        {'class_path': 'common.layers.attentive_norm.AttentiveNorm2d', 'init_args': {'num_entities': 8}}
    """
    if factory is None:
        return None
    partials = []
    inner = factory
    while isinstance(inner, functools.partial):
        partials.append(inner)
        inner = inner.func
    target = layer_class(factory) or inner
    init_args: dict[str, Any] = {}
    for part in reversed(partials):
        init_args.update(part.keywords)
    path = f"{target.__module__}.{getattr(target, '__qualname__', type(target).__qualname__)}"
    return {"class_path": path, "init_args": _plain(init_args)}


def layer_factory(spec: str | dict[str, Any] | None) -> LayerFactory | None:
    """The factory a config's ``class_path`` (a string, or a dict with ``init_args``) describes; ``None`` stays
    ``None``. The inverse of :func:`layer_spec`.

    Example:
        >>> make = layer_factory({"class_path": "common.layers.AttentiveNorm2d", "init_args": {"num_entities": 8}})
        >>> make(32).num_entities
        8
    """
    if spec is None:
        return None
    path, init_args = (spec, {}) if isinstance(spec, str) else (spec["class_path"], spec.get("init_args") or {})
    module, _, name = path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    return functools.partial(cls, **init_args) if init_args else cls
