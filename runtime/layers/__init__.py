"""Runtime layers, one file per layer, registered under their DSL keyword."""
from dlrun.runtime.layers.registry import LAYERS, make_layer, register
from dlrun.runtime.layers.base import Layer, ParamSpec

# importing a module registers its layer
from dlrun.runtime.layers import (  # noqa: E402,F401
    input, dense, conv2d, pool, embedding, conv1d, pool1d, global_pool, activation, batchnorm, dropout,
    flatten, add, concat)

__all__ = ["LAYERS", "Layer", "ParamSpec", "make_layer", "register"]
