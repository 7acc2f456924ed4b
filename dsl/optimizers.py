"""Every optimizer of the ``.net`` language, one spec per optimizer, registered by name: its
hyperparameters (``tables.Param``: name, type, range, default, doc) and the rules between
them. The checker, ``dlrun fmt``, the language reference and the runtime read these. Pure
Python.

In the IR every ``Optimizer.params`` holds all of ``IR_PARAMS`` (in that order): the ones an
optimizer does not take are filled with the neutral values of ``FILL``, which it ignores.
The runtime keys its update rules by the same names (``runtime/optimizers.py``: the update
kernel and the state arrays; a test holds the two to one list). Adding an optimizer:
docs/architecture.md, "Adding an optimizer".
"""
from __future__ import annotations

from dlrun.dsl import tables as T

_LR = "learning rate"
_CLIP = T.Param("clip_norm", "float", None, lo=0.0, lo_open=True, nullable=True,
                doc="clip the global gradient norm (off by default)")
_BETAS = (
    T.Param("beta1", "float", 0.9, lo=0.0, hi=1.0, hi_open=True, doc="decay of the first moment"),
    T.Param("beta2", "float", 0.999, lo=0.0, hi=1.0, hi_open=True, doc="decay of the second moment"),
    T.Param("eps", "float", 1e-8, lo=0.0, lo_open=True, doc="added to the denominator"),
)


def _lr(default: float) -> T.Param:
    return T.Param("lr", "float", default, lo=0.0, lo_open=True, doc=_LR)


class OptimizerSpec:
    """Base of every optimizer spec; an optimizer overrides what differs."""

    name = ""
    params: tuple = ()

    def problem(self, params: dict) -> str | None:
        """A rule between its bound parameters that they break (a message), or None."""
        return None


class SGD(OptimizerSpec):
    name = "sgd"
    params = (
        _lr(0.01),
        T.Param("momentum", "float", 0.0, lo=0.0, hi=1.0, hi_open=True, doc="velocity := momentum*velocity + g"),
        T.Param("nesterov", "bool", False, doc="Nesterov momentum (needs momentum > 0)"),
        _CLIP,
    )

    def problem(self, params):
        if params.get("nesterov") and params.get("momentum", 0.0) == 0.0:
            return "nesterov=true needs momentum > 0 (e.g. momentum=0.9)"
        return None


class Adam(OptimizerSpec):
    name = "adam"
    params = (_lr(1e-3),) + _BETAS + (
        T.Param("weight_decay", "float", 0.0, lo=0.0, doc="decoupled weight decay p -= lr*weight_decay*p (AdamW)"),
        _CLIP,
    )


class AdamW(OptimizerSpec):
    name = "adamw"
    params = (_lr(1e-3),) + _BETAS + (
        T.Param("weight_decay", "float", 0.01, lo=0.0, doc="decoupled weight decay p -= lr*weight_decay*p"),
        _CLIP,
    )


class RMSprop(OptimizerSpec):
    name = "rmsprop"
    params = (
        _lr(1e-3),
        T.Param("rho", "float", 0.9, lo=0.0, hi=1.0, hi_open=True, doc="decay of the squared-gradient average"),
        T.Param("eps", "float", 1e-7, lo=0.0, lo_open=True, doc="added to the denominator"),
        _CLIP,
    )


class Adagrad(OptimizerSpec):
    name = "adagrad"
    params = (
        _lr(0.01),
        T.Param("eps", "float", 1e-7, lo=0.0, lo_open=True, doc="added to the denominator"),
        _CLIP,
    )


#: name -> spec, in the order the reference documents them.
OPTIMIZERS: dict[str, OptimizerSpec] = {s.name: s for s in (SGD(), Adam(), AdamW(), RMSprop(), Adagrad())}

#: The value the IR gives each parameter an optimizer does not take (ignored by it); its
#: keys, in this order, are every ``Optimizer.params`` (``IR_PARAMS``).
FILL = {"lr": 0.01, "momentum": 0.0, "nesterov": False, "beta1": 0.9, "beta2": 0.999,
        "eps": 1e-8, "rho": 0.9, "weight_decay": 0.0, "clip_norm": None}
IR_PARAMS = tuple(FILL)


def optimizer(name: str) -> OptimizerSpec:
    return OPTIMIZERS[name]


def ir_params(name: str, params: dict) -> dict:
    """The IR's ``Optimizer.params``: ``params`` (bound against the spec of ``name``) with
    every other name of ``IR_PARAMS`` filled from ``FILL``, in ``IR_PARAMS`` order."""
    full = dict(FILL)
    full.update(params)
    return {k: full[k] for k in IR_PARAMS}
