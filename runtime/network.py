"""A network built from a checked ``ir.Model``: layers, flat parameters, loss head.

    net = Network(model)                      # float32 unless the file says float64
    logits = net.forward(x, training=True, logits=True)
    loss = net.loss(logits, y, grad)          # fused kernels; grad = dLoss/dlogits
    net.backward(grad)                        # fills net.store.grad
    probs = net.predict(x)                    # inference: dropout off, BN running stats

``x`` is always a C-contiguous ``(n, features)`` array in the network's dtype (a
per-sample shape of any rank, C-major: ``(n, C*H*W)`` holds ``(n, C, H, W)``).
Randomness comes from ``seed`` (the file's ``train seed=`` by default) through one
``numpy.random.Generator(PCG64)`` stream per purpose, so initialisation, shuffling and
dropout do not disturb each other.
"""
from __future__ import annotations

import copy

import numpy as np

from dlrun.dsl import ir
from dlrun.errors import UsageError
from dlrun.kernels import activations as kact
from dlrun.kernels.chain import Chain
from dlrun.runtime.layers import make_layer
from dlrun.runtime.losses import LossHead
from dlrun.runtime.params import ParamStore

# one random stream per purpose, all derived from the run's seed
PURPOSES = {"init": 1, "shuffle": 2, "dropout": 3, "gradcheck": 4, "timing": 5}


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
    """Layers in topological order (``self.layers[0]`` is the input, the last the output),
    parameters in ``self.store``. ``layer.inputs`` are the indices of the layers feeding a
    layer: a straight line of layers (every layer taking the one before it) runs as a
    chain, any other graph with the outputs of every layer kept for the layers using them."""

    def __init__(self, model, dtype=None, seed=None):
        self.model = model
        self.dtype = np.dtype(dtype or model.train.dtype)
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise UsageError(f"dtype must be float32 or float64, got {self.dtype}")
        self.seed = int(model.train.seed if seed is None else seed)
        self.input_shape = tuple(model.input_shape)
        self.input_features = int(np.prod(self.input_shape, dtype=np.int64))

        # layers, with shapes inferred by their specs and checked against the checker's
        self.layers = []
        nodes = model.layers
        for i, node in enumerate(nodes):
            ins = ir.layer_inputs(nodes, i)
            if any(not 0 <= j < i for j in ins):
                raise UsageError(f"layer {i} ({node.kind}): inputs {ins} are not layers before it "
                                 "(the IR's layers must be in topological order)")
            shapes = [self.layers[j].out_shape for j in ins] or [self.input_shape]
            layer = make_layer(node, shapes if len(ins) > 1 else shapes[0], i)
            layer.inputs = ins
            if node.shape is not None and tuple(node.shape) != layer.out_shape:
                raise UsageError(
                    f"{layer.describe()}: runtime output shape {layer.out_shape} differs from the "
                    f"checked shape {tuple(node.shape)}"
                )
            self.layers.append(layer)
        if self.layers[0].spec.inputs != 0 or any(l.spec.inputs == 0 for l in self.layers[1:]):
            raise UsageError("the first layer, and only the first, must be 'input'")
        self.output_shape = self.layers[-1].out_shape
        self.output_features = int(np.prod(self.output_shape, dtype=np.int64))
        compute = self.layers[1:]
        self.consumers = [[] for _ in self.layers]
        for layer in compute:
            for j in layer.inputs:
                self.consumers[j].append(layer.index)
        self.is_chain = all(layer.inputs == (layer.index - 1,) for layer in compute)
        for layer in compute:
            layer.producers = [self.layers[j] for j in layer.inputs]

        # a layer whose default init follows the activation after it (dense linear, then
        # batchnorm / dropout / an activation layer) sees the layers that follow it alone
        for layer in compute:
            layer.see_followers(self._followers(layer))

        # the loss head, and which layers training runs (up to the logits): read from the
        # IR, where the checker decided them
        output = model_output(model)
        self.loss = LossHead(model.loss, output)
        self.task = self.loss.task
        self._head_dense = None   # layer whose own activation the fused loss replaces
        self._tail = None         # standalone activation layer the fused loss replaces
        body = list(compute)
        if self.loss.fused:
            final_layer = self.layers[output.layer]
            if final_layer is not compute[-1]:
                raise UsageError(f"{final_layer.describe()}: the fused {output.activation} is not the "
                                 "last layer (the IR's output does not match its layers)")
            if final_layer.activation_inside:
                self._head_dense = final_layer
            else:
                self._tail = body.pop()
        self.body = body
        self.compute = compute

        # backward runs through the layers with parameters at or below them; a layer needs
        # an input gradient only when some layer below it has parameters
        below = [False] * len(self.layers)
        for layer in compute:
            below[layer.index] = bool(layer.param_specs()) or any(below[j] for j in layer.inputs)
        for layer in compute:
            layer.need_dx = any(below[j] for j in layer.inputs)
        self._backward_layers = [l for l in reversed(body) if below[l.index]]
        self._wants_grad = below

        # parameters: one flat buffer; weights carry the global or per-layer penalties
        reg = model.regularize
        specs = [(l.key, s) for l in compute for s in l.param_specs(float(reg.l1), float(reg.l2))]
        self.store = ParamStore(specs, self.dtype)
        self.init_parameters()
        self._proba_buf = None
        self._chain = None

    def random_inputs(self, rng, n: int):
        """``n`` random rows of what this network takes (gradcheck): standard normal values,
        or what the layers reading the input ask for (an embedding: token ids)."""
        for layer in self.compute:
            if 0 in layer.inputs:
                x = layer.random_input(rng, n)
                if x is not None:
                    return x
        return rng.standard_normal((n, self.input_features))

    def _followers(self, layer) -> list:
        """The layers after ``layer`` that take its output alone, in order, as far as each
        is the only user of the one before."""
        out = []
        while len(self.consumers[layer.index]) == 1:
            nxt = self.layers[self.consumers[layer.index][0]]
            if len(nxt.inputs) != 1:
                break
            out.append(nxt)
            layer = nxt
        return out

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
            layer.seed_from(drop_rng)
        self._chain = None   # build() made new running-statistic arrays

    def set_world(self, world):
        """Data-parallel training over ``world`` (``runtime/parallel.py``): layers with batch
        statistics sum them over its ranks (None: one process)."""
        for layer in self.compute:
            layer.set_world(world)
            layer.set_shard(0, 0)   # whole batches until told otherwise

    def set_shard(self, start: int, total: int):
        """The next training forward runs rows ``start:`` of a global batch of ``total`` rows
        (``total`` 0: whole batches)."""
        for layer in self.compute:
            layer.set_shard(start, total)

    def param_layers(self):
        return [l for l in self.compute if l.params]

    # -- passes --------------------------------------------------------------------------
    def forward(self, x, training: bool = False, logits: bool = False):
        """Run the network on ``x`` (n, features); ``logits=True`` stops before a fused
        output activation (what the loss head consumes)."""
        head = self._head_dense
        if self.is_chain:
            for layer in self.body:
                if layer is head:
                    x = layer.forward(x, training, logits=logits)
                else:
                    x = layer.forward(x, training)
        else:
            for layer, x in self.walk(x, training, logits):
                pass
        if self._tail is not None and not logits:
            x = self._tail.forward(x, training)
        return x

    def walk(self, x, training: bool = False, logits: bool = False):
        """Yield ``(layer, output)`` for every layer of the body in order (a graph keeps
        each output until the layers using it have run)."""
        outs = [None] * len(self.layers)
        outs[0] = x
        head = self._head_dense
        for layer in self.body:
            ins = layer.inputs
            if layer.joins:
                y = layer.forward([outs[j] for j in ins], training)
            elif layer is head:
                y = layer.forward(outs[ins[0]], training, logits=logits)
            else:
                y = layer.forward(outs[ins[0]], training)
            outs[layer.index] = y
            yield layer, y

    def backward(self, grad):
        """Backpropagate ``grad`` (dLoss/d(logits)) through every layer; fills ``store.grad``.
        ``grad`` is overwritten. In a graph, the gradients flowing into a layer whose output
        feeds several layers are summed."""
        if self.is_chain:
            for layer in self._backward_layers:
                grad = layer.backward(grad)
            return
        wants = self._wants_grad
        pending = {self.body[-1].index: grad}
        for layer in self._backward_layers:
            g = pending.pop(layer.index, None)
            if g is None:   # its output reaches no loss (a warned-about unused branch)
                continue
            dx = layer.backward(g)
            parts = dx if layer.joins else ((dx,) if dx is not None else ())
            for j, d in zip(layer.inputs, parts):
                if not wants[j]:
                    continue
                have = pending.get(j)
                if have is None:
                    pending[j] = d
                else:
                    np.add(have, d, out=have)

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
        with the GIL released. None when a layer has no chain form.

        A graph runs as one chain too: each layer reads the values of the layers feeding it
        (``chain.use``; a join gets their handles). A network with image layers, or a graph,
        gets an exact chain: bit for bit what ``predict`` gives layer by layer (a straight
        MLP's chain takes its measured shortcuts: equal to rounding). The chain's buffers are
        its own: one per thread (``inference_copy`` makes one each)."""
        if self._chain is None:
            chain = Chain(self.dtype, self.input_shape)
            values = {0: chain.value}
            layers = list(self.body) + ([self._tail] if self._tail is not None else [])
            for layer in layers:
                if layer.joins:
                    joined = layer.add_to_chain(chain, [values[j] for j in layer.inputs])
                else:
                    chain.use(values[layer.inputs[0]])
                    joined = layer.add_to_chain(chain)
                if not joined:
                    return None
                values[layer.index] = chain.value
                if tuple(chain.shape) != tuple(layer.out_shape):
                    raise RuntimeError(f"{layer.describe()}: the inference chain's samples have "
                                       f"shape {chain.shape} after it; the layer gives "
                                       f"{layer.out_shape}")
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
        for twin in clone.layers:
            twin.producers = remap(twin.producers)
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
