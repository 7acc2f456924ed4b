"""A network built from a checked ``ir.Model``: layers, flat parameters, loss head.

    net = Network(model)                      # float32 unless the file says float64
    logits = net.forward(x, training=True, logits=True)
    loss = net.loss(logits, y, grad)          # fused kernels; grad = dLoss/dlogits
    net.backward(grad)                        # fills net.store.grad
    probs = net.predict(x)                    # inference: dropout off, BN running stats

``x`` is always a C-contiguous ``(n, features)`` array in the network's dtype.
Randomness comes from ``seed`` (the file's ``train seed=`` by default) through one
``numpy.random.Generator(PCG64)`` stream per purpose, so initialisation, shuffling and
dropout do not disturb each other.
"""
from __future__ import annotations

import copy

import numpy as np

from dlrun.errors import UsageError
from dlrun.kernels import activations as kact
from dlrun.kernels.chain import Chain
from dlrun.runtime.layers import make_layer
from dlrun.runtime.losses import LossHead
from dlrun.runtime.params import ParamStore

# one random stream per purpose, all derived from the run's seed
PURPOSES = {"init": 1, "shuffle": 2, "dropout": 3, "gradcheck": 4}


def rng_for(seed: int, purpose: str) -> np.random.Generator:
    """The random generator of ``purpose`` ('init', 'shuffle', 'dropout', ...) for ``seed``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), PURPOSES[purpose]])))


def model_output(model):
    """The model's ``ir.Output`` as the checker recorded it; a model built in Python without
    the checker gets the same decision (``dsl/output.py``), its problems raised here."""
    if model.output is not None:
        return model.output
    from dlrun.dsl.output import decide_output

    output, problems = decide_output(model.layers, model.loss.name)
    if problems:
        where = f"{model.path}: " if model.path else ""
        raise UsageError(where + problems[0][1])
    return output


class Network:
    """Layers in order (``self.layers[0]`` is the input), parameters in ``self.store``."""

    def __init__(self, model, dtype=None, seed=None):
        self.model = model
        self.dtype = np.dtype(dtype or model.train.dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise UsageError(f"dtype must be float32 or float64, got {self.dtype}")
        self.seed = int(model.train.seed if seed is None else seed)
        self.input_shape = tuple(model.input_shape)
        self.input_features = int(np.prod(self.input_shape, dtype=np.int64))

        # layers, with shapes inferred here and checked against the checker's
        self.layers = []
        shape = self.input_shape
        for i, node in enumerate(model.layers):
            layer = make_layer(node, shape, i)
            if node.shape is not None and tuple(node.shape) != layer.out_shape:
                raise UsageError(
                    f"{layer.describe()}: runtime output shape {layer.out_shape} differs from the "
                    f"checked shape {tuple(node.shape)}"
                )
            self.layers.append(layer)
            shape = layer.out_shape
        self.output_shape = shape
        self.output_features = int(np.prod(shape, dtype=np.int64))
        compute = [l for l in self.layers if l.kind != "input"]

        # a dense with a linear activation takes its default init from the activation
        # layer that follows it (dense -> batchnorm -> dropout -> activation relu)
        for i, layer in enumerate(compute):
            if layer.kind == "dense" and layer.act == "linear":
                for nxt in compute[i + 1:]:
                    if nxt.kind == "activation":
                        layer.init_activation = nxt.act
                        break
                    if nxt.kind not in ("batchnorm", "dropout", "flatten"):
                        break

        # the loss head, and which layers training runs (up to the logits): read from the
        # IR, where the checker decided them
        output = model_output(model)
        self.loss = LossHead(model.loss, output)
        self.task = self.loss.task
        self._head_dense = None   # dense whose activation the fused loss replaces
        self._tail = None         # standalone activation layer the fused loss replaces
        body = list(compute)
        if self.loss.fused:
            final_layer = self.layers[output.layer]
            if final_layer is not compute[-1]:
                raise UsageError(f"{final_layer.describe()}: the fused {output.activation} is not the "
                                 "last layer (the IR's output does not match its layers)")
            if final_layer.kind == "dense":
                self._head_dense = final_layer
            else:
                self._tail = body.pop()
        self.body = body
        self.compute = compute

        # backward stops at the first layer with parameters; it needs no input gradient
        first = next((i for i, l in enumerate(body) if l.param_specs()), None)
        self._backward_layers = [] if first is None else list(reversed(body[first:]))
        if first is not None:
            body[first].need_dx = False

        # parameters: one flat buffer; weights carry the global or per-layer penalties
        reg = model.regularize
        specs = [(l.key, s) for l in compute for s in l.param_specs(float(reg.l1), float(reg.l2))]
        self.store = ParamStore(specs, self.dtype)
        self.init_parameters()
        self._proba_buf = None
        self._chain = None

    # -- set-up --------------------------------------------------------------------------
    def init_parameters(self, seed=None):
        """(Re-)initialise every parameter and state from ``seed`` (default: the network's)."""
        seed = self.seed if seed is None else int(seed)
        init_rng = rng_for(seed, "init")
        drop_rng = rng_for(seed, "dropout")
        self.store.flat[...] = 0
        self.store.grad[...] = 0
        for layer in self.compute:
            layer.build(self.dtype, init_rng, self.store.alloc_for(layer.key))
            if layer.kind == "dropout":
                layer.seed = int(drop_rng.integers(0, 2**63 - 1))
                layer.counter = 0
        self._chain = None   # build() made new running-statistic arrays

    def param_layers(self):
        return [l for l in self.compute if l.params]

    # -- passes --------------------------------------------------------------------------
    def forward(self, x, training: bool = False, logits: bool = False):
        """Run the network on ``x`` (n, features); ``logits=True`` stops before a fused
        output activation (what the loss head consumes)."""
        head = self._head_dense
        for layer in self.body:
            if layer is head:
                x = layer.forward(x, training, logits=logits)
            else:
                x = layer.forward(x, training)
        if self._tail is not None and not logits:
            x = self._tail.forward(x, training)
        return x

    def backward(self, grad):
        """Backpropagate ``grad`` (dLoss/d(logits)) through every layer; fills ``store.grad``.
        ``grad`` is overwritten."""
        for layer in self._backward_layers:
            grad = layer.backward(grad)

    def predict(self, x):
        """Inference outputs for ``x`` (n, features): class probabilities for classification
        (softmax / sigmoid applied to linear logits), raw outputs for regression.
        The returned array is a reused buffer: copy it to keep it."""
        out = self.forward(x, training=False, logits=False)
        act = self.loss.proba_act
        if act is None:
            return out
        buf = self._proba_buf
        if buf is None or buf.shape[0] < out.shape[0]:
            buf = self._proba_buf = np.empty(out.shape, self.dtype)
        buf = buf[: out.shape[0]]
        kact.activation_forward(act, out, buf)
        return buf

    def inference_chain(self):
        """The whole inference pass (``predict``'s maths, preprocessing excluded) as one
        ``kernels.chain.Chain``: built once, it holds this network's parameter and running
        statistic arrays themselves (training shows through) and buffers of its own.
        ``chain.run(x, a, b, out)`` converts raw rows (``x * a + b``) and runs every layer
        with the GIL released. None when a layer has no chain form."""
        if self._chain is None:
            chain = Chain(self.dtype, self.input_features)
            layers = list(self.body) + ([self._tail] if self._tail is not None else [])
            for layer in layers:
                if layer.kind == "dense":
                    chain.add_dense(layer.params["w"], layer.params.get("b"), layer.act, layer.alpha)
                elif layer.kind == "batchnorm":
                    p, st = layer.params, layer.state
                    chain.add_batchnorm(p["gamma"], p["beta"], st["running_mean"], st["running_var"],
                                        layer.eps)
                elif layer.kind == "activation":
                    chain.add_activation(layer.act, layer.alpha)
                elif layer.kind not in ("dropout", "flatten", "input"):
                    return None
            if self.loss.proba_act is not None:
                chain.add_activation(self.loss.proba_act)
            self._chain = chain
        return self._chain

    def inference_copy(self) -> "Network":
        """A network sharing this one's parameters and running statistics (the same
        arrays, so later training shows through) with buffers of its own: one per thread
        makes ``predict`` safe to call from many threads at once."""
        clone = copy.copy(self)
        mapping = {}
        for layer in self.layers:
            twin = copy.copy(layer)
            twin.release_buffers()
            mapping[id(layer)] = twin
        remap = lambda seq: [mapping[id(l)] for l in seq]
        clone.layers = remap(self.layers)
        clone.compute = remap(self.compute)
        clone.body = remap(self.body)
        clone._backward_layers = remap(self._backward_layers)
        clone._head_dense = mapping[id(self._head_dense)] if self._head_dense is not None else None
        clone._tail = mapping[id(self._tail)] if self._tail is not None else None
        clone._proba_buf = None
        clone._chain = None
        return clone

    def release_buffers(self):
        for layer in self.layers:
            layer.release_buffers()
        self._proba_buf = None
        self._chain = None

    # -- state ---------------------------------------------------------------------------
    def named_params(self):
        """[(layer, name, array)] of every trainable tensor, in layer order."""
        return [(l, n, a) for l in self.compute for n, a in l.params.items()]

    def named_state(self):
        """[(layer, name, array)] of every non-trainable saved array (running statistics)."""
        return [(l, n, a) for l in self.compute for n, a in l.state.items()]

    @property
    def param_count(self) -> int:
        return self.store.count
