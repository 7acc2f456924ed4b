"""The layer contract shared by every layer in ``runtime/layers/``.

A layer is built from a checked ``ir.Layer`` and the per-sample shape that flows into it:

    layer = Dense(node, in_shape=(64,))
    layer.output_shape((64,))          # pure shape inference, == node.shape
    layer.build(np.float32, rng)       # allocate (or bind) and initialise parameters
    y = layer.forward(x, training)     # x (n, in_features) -> y (n, out_features)
    dx = layer.backward(dy)            # writes parameter gradients, returns dx (or None)

Inside the runtime every activation is a C-contiguous 2-D array ``(n, features)`` holding
the per-sample shape (any rank: ``(C, H, W)`` in C order is ``(n, C*H*W)``), which makes
``flatten`` free and lets every kernel see plain matrices. The output shape comes from the
layer kind's spec in ``dsl/layers/`` (the checker's rule). A layer that joins several
outputs (``joins``) takes a list of inputs and returns a list of input gradients.

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

from dlrun.dsl.layers import SPECS, ShapeError
from dlrun.errors import UsageError


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
    """Base class: the spec's shape, no parameters, no state."""

    kind = ""
    #: takes a list of inputs (``add``, ``concat``): ``forward(xs)``, ``backward -> [dx]``
    joins = False
    #: its forward can stop before its own activation (``logits=True``) for a fused loss
    activation_inside = False
    #: the activation a standalone activation layer applies (None for other layers)
    standalone_activation = None
    #: a dense layer before it keeps its default initialisation's reasoning (the scale of
    #: what reaches the next activation is unchanged in kind): batchnorm, dropout, flatten
    keeps_init = False

    def __init__(self, node, in_shape, index: int = 0):
        self.node = node
        self.index = index
        self.spec = SPECS[node.kind]
        self.inputs = (index - 1,) if index > 0 else ()  # set by the network
        self.producers = []   # the layers feeding it (set by the network)
        if self.joins:   # a list of shapes, one per input
            self.in_shapes = [tuple(int(d) for d in s) for s in in_shape]
            self.in_shape = self.in_shapes[0]
            self.out_shape = self.output_shape(self.in_shapes)
        else:
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
        """The spec's shape inference (``dsl/layers/``): one rule for checker and runtime."""
        shapes = [tuple(s) for s in in_shape] if self.joins else [tuple(in_shape)]
        try:
            return tuple(int(d) for d in self.spec.infer(self.node, shapes, ["its input"] * len(shapes)))
        except ShapeError as err:
            raise UsageError(f"{self.describe()}: {err}") from None

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

    # -- valid steps of sequences -------------------------------------------------------
    def in_lengths(self):
        """The valid steps of each sample of this layer's input (int64 (n,)), from the layer
        feeding it, or None when nothing before it knows (no embedding)."""
        return self.producers[0].out_lengths() if self.producers else None

    def out_lengths(self):
        """The valid steps of this layer's output: its input's when it keeps the time axis
        (dropout, batchnorm, activations), else None; window layers map them."""
        if self.joins or len(self.out_shape) != 2 or len(self.in_shape) != 2 \
                or self.out_shape[0] != self.in_shape[0]:
            return None
        return self.in_lengths()

    # -- hooks the network calls (defaults: nothing to do) ------------------------------
    def see_followers(self, followers):
        """The layers that take this layer's output alone, in order (see Dense)."""

    def random_input(self, rng, n):
        """Random input rows this layer accepts when it reads the model's input (gradcheck);
        None: any numbers."""
        return None

    def seed_from(self, rng):
        """Draw this layer's own random stream from the network's dropout generator."""

    def random_state(self):
        """The generator position to save in a checkpoint (None: no randomness)."""
        return None

    def set_random_state(self, state):
        pass

    def set_randomness(self, enabled: bool):
        """gradcheck turns randomness (dropout masks) off."""

    def set_shard(self, start: int, total: int):
        """Data-parallel training (``runtime/parallel.py``): the next forward sees rows
        ``start:`` of a global batch of ``total`` rows (what is drawn per row, such as
        dropout masks, is drawn as for the whole batch)."""

    def set_world(self, world):
        """Data-parallel training: the ``parallel.World`` whose ranks hold the rest of each
        batch (a layer with batch statistics sums them over it)."""

    def add_to_chain(self, chain, inputs=None) -> bool:
        """Append this layer's inference to a ``kernels.chain.Chain``, reading the chain's
        current value (a layer that ``joins`` gets its inputs' ``chain.value`` handles in
        ``inputs``); False when it has no chain form (the network then predicts layer by
        layer)."""
        return False

    def to_onnx(self, graph, inputs) -> str | None:
        """Write this layer's inference into ``graph`` (``runtime.export.Graph``) reading
        the tensors named ``inputs`` (each ``(N, *shape)`` of the layer feeding it); returns
        its output's name, ``(N, *out_shape)``, or None when it has no ONNX form (the
        export is then refused naming the layer)."""
        return None

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
