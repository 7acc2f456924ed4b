"""Every layer kind of the ``.net`` language, one spec per kind, registered by keyword.

Adding a layer kind (the checklist is in docs/architecture.md): its spec here (a module
with a ``LayerSpec`` subclass, listed in ``_MODULES``), its runtime layer in
``runtime/layers/``, its kernel in ``kernels/`` (if it computes anything), its entry in the
layer contract test, a bad file in ``tests/dsl/bad/`` and its section of docs/language.md.
``tests/test_layer_registry.py`` fails when any of these is missing.
"""
from __future__ import annotations

from dlrun.dsl import tables as T
from dlrun.dsl.layers.add import Add
from dlrun.dsl.layers.activation import Activation
from dlrun.dsl.layers.base import MANY, DataMismatch, LayerSpec, ShapeError, dims, prod
from dlrun.dsl.layers.batchnorm import BatchNorm
from dlrun.dsl.layers.concat import Concat
from dlrun.dsl.layers.conv1d import Conv1D
from dlrun.dsl.layers.conv2d import Conv2D
from dlrun.dsl.layers.dense import Dense
from dlrun.dsl.layers.dropout import Dropout
from dlrun.dsl.layers.embedding import Embedding
from dlrun.dsl.layers.flatten import Flatten
from dlrun.dsl.layers.global_pool import GlobalAvgPool, GlobalMaxPool
from dlrun.dsl.layers.input import Input
from dlrun.dsl.layers.pool import AvgPool, MaxPool
from dlrun.dsl.layers.pool1d import AvgPool1D, MaxPool1D

#: keyword -> spec, in the order the reference documents them.
SPECS: dict[str, LayerSpec] = {s.kind: s for s in (
    Input(), Dense(), Conv2D(), MaxPool(), AvgPool(), Embedding(), Conv1D(), MaxPool1D(), AvgPool1D(),
    GlobalAvgPool(), GlobalMaxPool(), Activation(), BatchNorm(), Dropout(), Flatten(), Add(), Concat())}


#: statement keyword -> the spec of the layer it makes ('relu' -> the activation layer).
KEYWORDS: dict[str, LayerSpec] = {kw: s for s in SPECS.values() for kw in s.keywords()}


def spec(kind: str) -> LayerSpec:
    return SPECS[kind]


def awaiting(model) -> list[tuple[int, str]]:
    """``(index, what)`` of every layer of ``model`` (an ``ir.Model``) that still takes a
    size from the data (``LayerSpec.awaits``): its network can be built only after them."""
    return [(i, w) for i, layer in enumerate(model.layers) if (w := spec(layer.kind).awaits(layer))]


def settle(model, vocab_size):
    """``model`` with what its layers take from the data filled in (``LayerSpec.from_data``)
    from the data's token id count ``vocab_size`` (None: no token ids); the file's own
    values are checked against the data. Raises ``DataMismatch`` (its ``index`` names the
    layer)."""
    from dataclasses import replace

    layers = []
    for i, layer in enumerate(model.layers):
        try:
            extra = spec(layer.kind).from_data(layer, vocab_size)
        except DataMismatch as e:
            e.index = i
            raise
        layers.append(replace(layer, params={**layer.params, **extra}) if extra else layer)
    if all(a is b for a, b in zip(layers, model.layers)):
        return model
    return replace(model, layers=tuple(layers))


def layer_keywords() -> tuple[str, ...]:
    """Keywords that make a layer: the layer names plus every activation name (an
    activation layer is written as its activation: ``relu``, ``leaky_relu(0.2)``)."""
    return tuple(k for k in SPECS if k != "activation") + tuple(T.ACTIVATIONS)


__all__ = ["KEYWORDS", "MANY", "SPECS", "DataMismatch", "LayerSpec", "ShapeError", "awaiting", "dims",
           "layer_keywords", "prod", "settle", "spec"]
