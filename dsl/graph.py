"""The graph pass: layers in file order, with their references (``from=NAME``, the names an
``add``/``concat`` joins, the two ends of a ``residual`` block), become the checked graph:
references resolved ("did you mean"), cycles refused, layers put in topological order,
every shape inferred by the layer's spec, outputs that nothing uses warned about.

The model's output is its last layer in the file; each other layer feeds at least one.
``inputs`` of an ``ir.Model`` built in Python are already indices; they are checked here too.
"""
from __future__ import annotations

import heapq
from typing import NamedTuple

from dlrun.dsl import ir
from dlrun.dsl.diagnostics import Reporter, suggest
from dlrun.dsl.ir import Pos
from dlrun.dsl.layers import ShapeError, dims, spec
from dlrun.dsl.output import layer_label


class InputRef(NamedTuple):
    """A reference from one layer to another while the file is elaborated: by ``name``, or
    ``back`` places before it in file order (a ``residual`` block's ends)."""

    name: str | None
    pos: Pos
    back: int = 0


class LazyWord:
    """The keyword span of a layer, computed only when a diagnostic needs it."""

    __slots__ = ("r", "pos")

    def __init__(self, r, pos):
        self.r, self.pos = r, pos


def _line(layer) -> str:
    return f", line {layer.pos.line}" if layer.pos.line > 0 else ""


def build_graph(layers, r: Reporter, residual_at=frozenset()) -> list | None:
    """File-order layers (``inputs``: ``InputRef`` tuples, or ``()`` for the previous line)
    -> the layers in topological order with index ``inputs`` and shapes; None after errors.
    ``residual_at``: positions of the ``add`` layers that close a ``residual`` block."""
    if not layers:
        return None
    ok = True
    first = layers[0]
    if spec(first.kind).inputs != 0:
        r.error(LazyWord(r, first.pos), "the first layer must be 'input', e.g. 'input 64' or 'input 28x28'")
        return None
    names = {l.name: i for i, l in enumerate(layers) if l.name is not None}
    inputs: list[list[int]] = []
    for i, layer in enumerate(layers):
        if spec(layer.kind).inputs == 0:
            if i > 0:
                r.error(LazyWord(r, layer.pos), f"'input' must come first and only once (the model's "
                        f"input is on line {first.pos.line})")
                ok = False
            inputs.append([])
            continue
        if not layer.inputs:
            inputs.append([i - 1])
            continue
        resolved = []
        for ref in layer.inputs:
            if isinstance(ref, int) and not isinstance(ref, bool):   # an IR built in Python
                if not 0 <= ref < len(layers) or ref == i:
                    r.error(LazyWord(r, layer.pos), f"layer {i} ({layer.kind}) takes input {ref}, "
                            f"which is not another layer of the model (0..{len(layers) - 1})")
                    ok = False
                else:
                    resolved.append(ref)
            elif not isinstance(ref, InputRef):
                r.error(LazyWord(r, layer.pos), f"layer {i} ({layer.kind}): inputs must be layer "
                        f"indices, got {ref!r}")
                ok = False
            elif ref.name is None:
                if i - ref.back < 0:
                    r.error(ref.pos, "'residual' needs a layer before it: its input")
                    ok = False
                else:
                    resolved.append(i - ref.back)
            elif ref.name not in names:
                r.error(ref.pos, f"unknown layer '{ref.name}'" + suggest(ref.name, sorted(names),
                                                                          show_known=True))
                ok = False
            elif names[ref.name] == i:
                r.error(ref.pos, f"layer '{ref.name}' cannot take its own output as its input")
                ok = False
            else:
                resolved.append(names[ref.name])
        inputs.append(resolved)
    if not ok:
        return None
    out_index = len(layers) - 1
    consumers = [[] for _ in layers]
    for i, ins in enumerate(inputs):
        for j in ins:
            consumers[j].append(i)
    if consumers[out_index]:
        user = layers[consumers[out_index][0]]
        r.error(LazyWord(r, user.pos), f"this layer takes the output of the model's last layer "
                f"(line {layers[out_index].pos.line}); the last layer is the model's output and feeds "
                "no other layer")
        return None
    order = _topological(layers, inputs, consumers, out_index, r)
    if order is None:
        return None
    where = {old: new for new, old in enumerate(order)}
    shapes: list = [None] * len(layers)
    typed = []
    for new, old in enumerate(order):
        layer = layers[old]
        ins = [where[j] for j in inputs[old]]
        node = ir.Layer(layer.kind, layer.params, layer.name, None, layer.pos,
                        () if ins in ([], [new - 1]) else tuple(ins))
        typed.append(node)
        in_shapes = [shapes[j] for j in ins]
        if any(s is None for s in in_shapes):
            ok = False
            continue
        s = spec(layer.kind)
        sources = [layer_label(typed[j], j) for j in ins]
        try:
            shape = s.infer(node, in_shapes, sources)
        except ShapeError as err:
            message = str(err)
            if layer.pos in residual_at:
                message = (f"'residual' adds its input to its block's output, but the block changes "
                           f"the shape from {dims(in_shapes[0])} to {dims(in_shapes[1])}; end the "
                           f"block with a layer giving {dims(in_shapes[0])}, or project the input "
                           "with 'from=' and 'add' instead")
            r.error(err.pos if err.pos is not None else LazyWord(r, layer.pos), message)
            ok = False
            continue
        warning = s.warning(node, in_shapes)
        if warning:
            r.warning(LazyWord(r, layer.pos), warning)
        shapes[new] = tuple(shape)
        typed[new] = ir.Layer(node.kind, node.params, node.name, tuple(shape), node.pos, node.inputs)
    for old, users in enumerate(consumers):
        if not users and old != out_index:
            layer = layers[old]
            r.warning(LazyWord(r, layer.pos), f"the output of {layer_label(layer, where[old])} is not "
                      "used by any layer (only the last layer is the model's output), so it does "
                      "not reach the loss: the layers that only it uses never train")
    return typed if ok else None


def _topological(layers, inputs, consumers, out_index, r: Reporter) -> list | None:
    """Kahn's order, earliest line first among the ready layers and the output last (a
    file whose references all point upwards keeps its order); None after a cycle error."""
    waiting = [len(ins) for ins in inputs]
    ready = [i for i, n in enumerate(waiting) if n == 0 and i != out_index]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in consumers[i]:
            waiting[j] -= 1
            if waiting[j] == 0 and j != out_index:
                heapq.heappush(ready, j)
    if waiting[out_index] == 0 and len(order) == len(layers) - 1:
        return order + [out_index]
    stuck = {i for i in range(len(layers)) if i not in set(order) and i != out_index}
    # walk back through stuck inputs until a layer repeats: that is the cycle
    i = min(stuck) if stuck else out_index
    path = []
    while i not in path:
        path.append(i)
        i = next(j for j in inputs[i] if j in stuck)
    cycle = path[path.index(i):] + [i]
    ref_layer = layers[cycle[0]]
    ref = next((x for x in ref_layer.inputs if isinstance(x, InputRef)), None)
    text = " -> ".join(f"'{layers[k].name or layers[k].kind}' (line {layers[k].pos.line})"
                       for k in reversed(cycle))
    r.error(ref.pos if ref is not None else LazyWord(r, ref_layer.pos),
            f"layers form a cycle: {text}; each layer must take inputs computed before it")
    return None
