"""The layer contract shared by every layer in ``runtime/layers/``.

A layer is built from a checked ``ir.Layer`` and the per-sample shape that flows into it:

    layer = Dense(node, in_shape=(64,))
    layer.output_shape((64,))          # pure shape inference, == node.shape
    layer.build(np.float32, rng)       # allocate (or bind) and initialise parameters
    y = layer.forward(x, training)     # x (n, in_features) -> y (n, out_features)
    dx = layer.backward(dy)            # writes parameter gradients, returns dx (or None)

Inside the runtime every activation is a C-contiguous 2-D array ``(n, features)``: a
per-sample shape such as ``(28, 28)`` is bookkeeping only (all current layers act on
features), which makes ``flatten`` free and lets every kernel see plain matrices.

Buffers (outputs, saved values, input gradients) belong to the layer and are allocated
once per batch capacity and then reused; a batch of ``n`` rows works on views of the
first ``n`` rows, so a short last batch costs no allocation. The arrays a layer returns
stay valid until its next ``forward``/``backward``.

Parameters are not owned by the layer: ``build`` receives an ``alloc(name, shape)``
callback from the network that hands out views into one flat parameter buffer and one
flat gradient buffer (see ``runtime/params.py``). Without it (a layer used on its own,
as in the contract test) the layer allocates standalone arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParamSpec:
    """One trainable tensor: ``role`` is 'weight' (penalised by l1/l2), 'bias', 'scale'
    or 'shift'. ``l1``/``l2`` are the penalties that apply to it (already resolved
    against the global ``regularize``)."""

    name: str
    shape: tuple[int, ...]
    role: str
    l1: float = 0.0
    l2: float = 0.0


def standalone_alloc(dtype):
    """An ``alloc`` that gives each tensor its own zeroed parameter and gradient array."""

    def alloc(name, shape):
        return np.zeros(shape, dtype), np.zeros(shape, dtype)

    return alloc


class Layer:
    """Base class: identity shape, no parameters, no state."""

    kind = ""

    def __init__(self, node, in_shape, index: int = 0):
        self.node = node
        self.index = index
        self.in_shape = tuple(int(d) for d in in_shape)
        self.out_shape = self.output_shape(self.in_shape)
        self.in_features = int(np.prod(self.in_shape, dtype=np.int64))
        self.out_features = int(np.prod(self.out_shape, dtype=np.int64))
        self.dtype = None
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.state: dict[str, np.ndarray] = {}  # non-trainable arrays saved with the weights
        # False for layers below which nothing has parameters: no input gradient needed.
        self.need_dx = True
        self._buffers: dict[str, np.ndarray] = {}
        self._views: dict[str, tuple] = {}  # name -> (n, buf[:n]) of the last call

    # -- description -------------------------------------------------------------------
    def describe(self) -> str:
        """``layer 2 (dense 'hidden1', line 7)`` for messages."""
        label = self.kind if not self.node.name else f"{self.kind} '{self.node.name}'"
        where = f", line {self.node.pos.line}" if self.node.pos.line else ""
        return f"layer {self.index} ({label}{where})"

    @property
    def key(self) -> str:
        """Stable name of this layer in weights files: ``3.dense``."""
        return f"{self.index}.{self.kind}"

    # -- contract ----------------------------------------------------------------------
    def output_shape(self, in_shape):
        return tuple(in_shape)

    def param_specs(self, l1: float = 0.0, l2: float = 0.0) -> list[ParamSpec]:
        """The trainable tensors; ``l1``/``l2`` are the global penalties (weights only)."""
        return []

    def build(self, dtype, rng, alloc=None):
        """Allocate (through ``alloc``) and initialise the parameters; reset buffers."""
        self.dtype = np.dtype(dtype)
        alloc = alloc or standalone_alloc(self.dtype)
        for spec in self.param_specs():
            p, g = alloc(spec.name, spec.shape)
            self.params[spec.name] = p
            self.grads[spec.name] = g
        self.release_buffers()
        self.init_params(rng)
        self.init_state()

    def init_params(self, rng):
        """Fill ``self.params`` with initial values (default: zeros, already there)."""

    def init_state(self):
        """Allocate and reset non-trainable state (e.g. running statistics)."""

    def forward(self, x, training: bool):
        return x

    def backward(self, dy):
        return dy

    # -- buffers -----------------------------------------------------------------------
    def buffer(self, name: str, n: int, features: int, dtype=None) -> np.ndarray:
        """The first ``n`` rows of a reusable ``(capacity, features)`` buffer.

        Capacity only grows (to the largest batch seen), so steady-state training and
        inference allocate nothing.
        """
        hit = self._views.get(name)
        if hit is not None and hit[0] == n:  # the common case: same batch size as last time
            return hit[1]
        buf = self._buffers.get(name)
        if buf is None or buf.shape[0] < n:
            buf = np.empty((n, features), dtype or self.dtype)
            self._buffers[name] = buf
        view = buf[:n]
        self._views[name] = (n, view)
        return view

    def release_buffers(self):
        self._buffers = {}
        self._views = {}
