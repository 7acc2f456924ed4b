"""``dlrun export model.net --weights W --output model.onnx``: the trained network as an ONNX
model (the ``onnx`` package, the ``onnx`` extra: ``pip install 'dlrun[onnx]'``).

The graph takes what ``dlrun predict`` takes as an array, before preprocessing: float32
``input`` of shape ``(N, *input shape)`` (``(N, features)``, or ``(N, C, H, W)`` for an
image model: pixel values as read, e.g. 0-255), applies the data block's ``scale`` /
``standardize`` / ``minmax`` as one ``Mul`` and ``Add`` (the preprocessing's per-feature
``x * a + b``), then every layer as it runs at inference (dropout is not in the graph,
batch norm uses the running statistics), and returns ``output``: what ``Model.predict``
returns (class probabilities, P(class 1) for a binary model, or the regression outputs; with
``target standardize`` one more ``Mul`` and ``Add`` map them back to the targets' units).
Every tensor is float32 (a float64 model is exported in float32).

Each runtime layer says how it is written (``Layer.to_onnx(graph, inputs)``, the one place
per kind); a layer without an ONNX form (the sequence layers, whose pooling over each
sample's valid steps has no plain ONNX equivalent here) is refused naming it, and so is a
model whose inputs are texts or sound (their tokenizer or audio features run outside any
graph).
"""
from __future__ import annotations

import math
import os

import numpy as np

from dlrun.errors import UsageError

OPSET = 17


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise UsageError("export needs the onnx package: pip install 'dlrun[onnx]'") from None
    return onnx


class Graph:
    """Builds an ONNX graph: ``const(array)``, ``node(op, inputs, **attributes)`` (returns
    the output's name), ``activation(name, alpha, x)``."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.nodes, self.inits = [], []
        self._n = 0

    def name(self, hint="t"):
        self._n += 1
        return f"{hint}_{self._n}"

    def const(self, array, hint="c") -> str:
        from onnx import numpy_helper

        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(np.float32)
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op, inputs, hint=None, out=None, **attrs) -> str:
        out = out or self.name(hint or op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [out], **attrs))
        return out

    def activation(self, name, alpha, x) -> str:
        if name == "linear":
            return x
        simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus"}
        if name in simple:
            return self.node(simple[name], [x])
        if name == "leaky_relu":
            return self.node("LeakyRelu", [x], alpha=float(alpha))
        if name == "elu":
            return self.node("Elu", [x], alpha=float(alpha))
        if name == "softmax":
            return self.node("Softmax", [x], axis=-1)
        if name == "swish":
            return self.node("Mul", [x, self.node("Sigmoid", [x])])
        if name == "gelu":   # the tanh form the kernels compute
            cube = self.node("Mul", [self.node("Mul", [x, x]), x])
            inner = self.node("Add", [x, self.node("Mul", [cube, self.const(np.float32(0.044715))])])
            t = self.node("Tanh", [self.node("Mul", [inner, self.const(np.float32(math.sqrt(2 / math.pi)))])])
            half = self.node("Mul", [x, self.const(np.float32(0.5))])
            return self.node("Mul", [half, self.node("Add", [t, self.const(np.float32(1.0))])])
        raise UsageError(f"export: the activation '{name}' has no ONNX form here")

    def scale_shift(self, x, scale, shift, shape, channels_last=False) -> str:
        """``x * scale + shift`` with per-channel (or per-feature) vectors broadcast over
        a per-sample ``shape`` (C, H, W), (T, C) with ``channels_last``, or (features,)."""
        if channels_last:
            bshape = (1,) * len(shape) + (len(scale),)
        else:
            bshape = (1, len(scale)) + (1,) * (len(shape) - 1)
        s = self.const(np.asarray(scale, np.float64).reshape(bshape))
        b = self.const(np.asarray(shift, np.float64).reshape(bshape))
        return self.node("Add", [self.node("Mul", [x, s]), b])


def _refuse_inputs(model) -> None:
    data = model.ir.data
    if data is None:
        return
    if data.text is not None:
        raise UsageError(f"{model.name}: export takes numeric inputs; this model reads texts, whose "
                         "tokenizer runs outside any graph (export the layers after it is not supported)")
    if data.audio is not None:
        raise UsageError(f"{model.name}: export takes numeric inputs; this model reads sound, whose "
                         "audio features are computed outside any graph")


def build_onnx(model):
    """The ``onnx.ModelProto`` of a ``dlrun.Model`` with its weights (see the module doc)."""
    onnx = require_onnx()
    from onnx import TensorProto, helper

    _refuse_inputs(model)
    net = model.network
    g = Graph(onnx)
    shape = tuple(net.input_shape)
    def per_feature(v):   # a scalar, or one value per feature laid out as the input
        v = np.asarray(v, np.float64)
        return v.reshape(()) if v.size == 1 else v.reshape((1,) + shape)

    a, b = (per_feature(v) for v in model.preprocessor.affine)
    x = "input"
    if not (a.size == 1 and float(a) == 1.0 and b.size == 1 and float(b) == 0.0):
        x = g.node("Add", [g.node("Mul", [x, g.const(a)], hint="scaled"), g.const(b)], hint="preprocessed")
    outs = {0: x}
    for layer in net.compute:
        ins = [outs[j] for j in layer.inputs]
        y = layer.to_onnx(g, ins)
        if y is None:
            raise UsageError(f"export: {layer.describe()} has no ONNX form; models with it cannot be exported")
        outs[layer.index] = y
    y = outs[net.compute[-1].index]
    if net.loss.proba_act is not None:
        y = g.activation(net.loss.proba_act, 0.0, y)
    target = model.preprocessor.target
    if target is not None:   # 'target standardize': the outputs back in the targets' units
        if not target.fitted:
            raise UsageError(f"export: {model.name} standardizes its targets, but their statistics are "
                             "not fitted: load the weights first")
        y = g.scale_shift(y, target.std, target.mean, (int(net.output_features),))
    g.node("Identity", [y], out="output")
    graph = helper.make_graph(
        g.nodes, model.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", int(net.output_features)])],
        initializer=g.inits)
    proto = helper.make_model(graph, producer_name="dlrun", opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = min(proto.ir_version, 8)   # readable by ONNX Runtime releases of the last years
    onnx.checker.check_model(proto)
    return proto


def export_onnx(model, path) -> str:
    """Write ``build_onnx(model)`` to ``path`` (atomically); returns the path."""
    proto = build_onnx(model)
    path = os.fspath(path)
    from dlrun.runtime.weights import write_file

    write_file(path, lambda f: f.write(proto.SerializeToString()))
    return path
