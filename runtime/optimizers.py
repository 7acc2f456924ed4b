"""Optimizers over the network's flat parameter buffer.

The update of a whole network is one fused kernel call per *segment* of the flat buffer
(a run of tensors with the same penalties, see ``params.py``): typically two calls, one for
the penalised weights and one for biases and batch-norm parameters. Optimizer state
(velocity, moments, accumulators) is flat too, with the same layout.

Penalties: ``l1``/``l2`` of a segment are fused into the gradient by the kernel
(``g' = g + l1*sign(p) + l2*p``). ``weight_decay`` (adam, adamw) is decoupled
(``p -= lr*weight_decay*p``) and, like the penalties, applies to weights only.
Gradient clipping (``clip_norm``) scales the whole gradient buffer when its global L2
norm exceeds the limit, before the update. That buffer holds the data loss's gradient only:
the penalties and the decay are added inside the update, after clipping, so they are never
clipped (PyTorch's ``clip_grad_norm_`` on ``.grad``, then an optimizer's ``weight_decay``).

An optimizer's hyperparameters are its spec in ``dsl/optimizers.py``; here each name maps
to its update rule (``RULES``): the names of its state arrays (each flat, shaped like the
parameter buffer, saved in checkpoints as ``ckpt.optim.NAME``) and its update kernel call.
``Optimizer`` holds what every rule shares (learning rate, clipping, step count, segments,
state_dict).
"""
from __future__ import annotations

import numpy as np

from dlrun.dsl.optimizers import OPTIMIZERS
from dlrun.errors import UsageError, WeightsError
from dlrun.kernels import optim as kopt


class Rule:
    """One optimizer's update. ``p`` holds the IR's ``Optimizer.params`` (every name of
    ``dsl.optimizers.IR_PARAMS``); a rule reads the ones it takes in ``__init__``."""

    name = ""

    def __init__(self, p: dict):
        pass

    def state_names(self) -> tuple[str, ...]:
        """Names of its state arrays, each a flat array like the parameters (zeros at start)."""
        return ()

    def decays_weights(self) -> bool:
        """True when its update treats weights and other parameters differently (decoupled
        weight decay), so their segments may not be merged."""
        return False

    def update(self, p, g, state, lr, step, l1, l2, is_weight):
        """``p -= ...`` in place from ``g`` for one segment: ``state`` its views of the state
        arrays (in ``state_names`` order), ``step`` the 1-based step count."""
        raise NotImplementedError


class SGD(Rule):
    name = "sgd"

    def __init__(self, p):
        self.momentum = float(p.get("momentum") or 0.0)
        self.nesterov = bool(p.get("nesterov") or False)

    def state_names(self):
        return ("velocity",) if self.momentum > 0 else ()

    def update(self, p, g, state, lr, step, l1, l2, is_weight):
        kopt.sgd_update(p, g, state[0] if state else None, lr, self.momentum, self.nesterov, l1, l2)


class Adam(Rule):
    """Adam with AdamW's decoupled weight decay (on weights only)."""

    name = "adam"

    def __init__(self, p):
        self.beta1 = float(p.get("beta1", 0.9))
        self.beta2 = float(p.get("beta2", 0.999))
        self.eps = float(p.get("eps", 1e-8))
        self.weight_decay = float(p.get("weight_decay") or 0.0)

    def state_names(self):
        return ("m", "v")

    def decays_weights(self):
        return self.weight_decay > 0

    def update(self, p, g, state, lr, step, l1, l2, is_weight):
        wd = self.weight_decay if is_weight else 0.0
        kopt.adam_update(p, g, state[0], state[1], lr, self.beta1, self.beta2, self.eps, step, l1, l2, wd)


class AdamW(Adam):
    """The same update as ``adam``; only its default ``weight_decay`` differs (its spec)."""

    name = "adamw"


class RMSprop(Rule):
    name = "rmsprop"

    def __init__(self, p):
        self.rho = float(p.get("rho", 0.9))
        self.eps = float(p.get("eps", 1e-8))

    def state_names(self):
        return ("sq",)

    def update(self, p, g, state, lr, step, l1, l2, is_weight):
        kopt.rmsprop_update(p, g, state[0], lr, self.rho, self.eps, l1, l2)


class Adagrad(Rule):
    name = "adagrad"

    def __init__(self, p):
        self.eps = float(p.get("eps", 1e-8))

    def state_names(self):
        return ("acc",)

    def update(self, p, g, state, lr, step, l1, l2, is_weight):
        kopt.adagrad_update(p, g, state[0], lr, self.eps, l1, l2)


#: optimizer name -> its update rule.
RULES: dict[str, type[Rule]] = {r.name: r for r in (SGD, Adam, AdamW, RMSprop, Adagrad)}


class Optimizer:
    """``step()`` updates ``store.flat`` from ``store.grad`` in place."""

    def __init__(self, opt, store, lr: float | None = None):
        if opt.name not in RULES or opt.name not in OPTIMIZERS:
            known = [n for n in OPTIMIZERS if n in RULES]
            raise UsageError(f"unknown optimizer {opt.name!r} (known: {', '.join(known)})")
        self.name = opt.name
        p = dict(opt.params)
        self.rule = RULES[opt.name](p)
        self.lr = float(lr if lr is not None else p["lr"])
        self.base_lr = self.lr   # the rate a schedule moves (self.lr is the one in effect)
        clip = p.get("clip_norm")
        self.clip_norm = float(clip) if clip else None
        self.store = store
        self.steps = 0
        self.last_grad_norm = None
        n, dtype = store.size, store.dtype
        names = self.rule.state_names()
        self.state = {k: np.zeros(n, dtype) for k in names}
        # views per segment, built once: a step allocates nothing. Neighbouring segments
        # that the update treats alike are merged (one kernel call for the whole network
        # when there are no penalties and no weight decay).
        decays = self.rule.decays_weights()
        runs = []
        for seg in store.segments:
            if seg.stop == seg.start:
                continue
            key = (seg.l1, seg.l2, seg.is_weight if decays else False)
            if runs and runs[-1][0] == key and runs[-1][2] == seg.start:
                runs[-1][2] = seg.stop
            else:
                runs.append([key, seg.start, seg.stop, seg.is_weight])
        self._segments = []
        for (l1, l2, _), start, stop, is_weight in runs:
            sl = slice(start, stop)
            views = tuple(self.state[k][sl] for k in names)
            self._segments.append((store.flat[sl], store.grad[sl], views, l1, l2, is_weight))
        self._grad_list = [store.grad]

    def step(self):
        """Clip (if configured) and apply one update from the current gradients."""
        if self.clip_norm is not None:
            self.last_grad_norm = kopt.clip_grad_norm(self._grad_list, self.clip_norm)
        self.steps += 1
        lr, steps, update = self.lr, self.steps, self.rule.update
        for p, g, st, l1, l2, is_weight in self._segments:
            update(p, g, st, lr, steps, l1, l2, is_weight)

    # -- checkpoints -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        out = {k: v.copy() for k, v in self.state.items()}
        out["steps"] = np.array(self.steps, np.int64)
        return out

    def load_state_dict(self, state):
        for k, v in self.state.items():
            if k not in state or np.shape(state[k]) != v.shape:
                raise WeightsError(f"optimizer state '{k}' is missing or has the wrong shape")
            v[...] = state[k]
        self.steps = int(state["steps"])
