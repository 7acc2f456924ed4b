"""Every learning-rate schedule of the ``.net`` language (``schedule NAME ...``), one spec per
schedule, registered by name: its parameters (``tables.Param``) and the rules between them.
The checker, ``dlrun fmt``, the language reference and the runtime read these; the rates
themselves are computed by ``runtime/schedules.py``, keyed by the same names (a test holds
the two to one list). Pure Python.

How each one moves the optimizer's ``lr`` (the file's, or ``--lr``), over the run's epochs
``E`` and ``B`` batches per epoch, epoch ``e`` counted from 1:

    constant     lr
    step         lr * gamma ** ((e - 1) // every)                        per epoch
    multistep    lr * gamma ** (number of milestones in ``at`` <= e - 1) per epoch
    exponential  lr * gamma ** (e - 1)                                   per epoch
    cosine       min_lr + (lr - min_lr) * (1 + cos(pi * t / T)) / 2      per batch, t batches
                 done after the warm-up, T = the run's batches after the warm-up
    plateau      lr * factor ** k (not below min_lr), k the times ``monitor`` went ``patience``
                 epochs without improving (by more than ``min_delta``)   per epoch, after its
                 validation

``warmup=N`` on any of them multiplies the rate by ``(i + 1) / (N * B)`` over the first
``N`` epochs' batches (``i`` the batch counted from 0), per batch; the epoch counts of step,
multistep and exponential run from the start of training, warm-up included.
"""
from __future__ import annotations

from dlrun.dsl import tables as T

_WARMUP = T.Param("warmup", "int", 0, lo=0, hi=T.MAX_INT,
                  doc="epochs of linear warm-up at the start (per batch, from lr/(warmup*batches) to lr)")
_GAMMA = T.Param("gamma", "float", 0.1, lo=0.0, hi=1.0, lo_open=True, doc="factor applied at each step")


class ScheduleSpec:
    """Base of every schedule spec; a schedule overrides what differs."""

    name = ""
    params: tuple = ()
    #: 'epoch' or 'batch': how often the rate changes (warm-up always per batch)
    stepped = "epoch"
    #: True when the rates depend on the run's length (a resume with other --epochs changes them)
    spans_run = False
    doc = ""

    def problem(self, params: dict, epochs: int) -> str | None:
        """A rule between its bound parameters (and the run's ``epochs``) that they break
        (a message), or None."""
        if params.get("warmup", 0) >= epochs:
            return (f"warmup={params['warmup']} epochs leaves none of the run's {epochs} epochs at "
                    f"the full rate; expected warmup < {epochs}")
        return None


class Constant(ScheduleSpec):
    name = "constant"
    params = (_WARMUP,)
    doc = "the optimizer's rate throughout (with warmup=N: a warm-up, then the rate)"


class Step(ScheduleSpec):
    name = "step"
    params = (T.Param("every", "int", lo=1, hi=T.MAX_INT, doc="epochs between steps"), _GAMMA, _WARMUP)
    doc = "the rate times gamma every `every` epochs"


class MultiStep(ScheduleSpec):
    name = "multistep"
    params = (T.Param("at", "ints", lo=1, hi=T.MAX_INT, doc="the epochs after which the rate is multiplied by gamma"),
              _GAMMA, _WARMUP)
    doc = "the rate times gamma after each epoch listed in `at`"

    def problem(self, params, epochs):
        at = list(params["at"])
        if not at:
            return "'at' lists no epoch; expected e.g. at=[30, 60]"
        if any(b <= a for a, b in zip(at, at[1:])):
            return f"'at' must list epochs in increasing order, got [{', '.join(map(str, at))}]"
        return super().problem(params, epochs)


class Exponential(ScheduleSpec):
    name = "exponential"
    params = (T.Param("gamma", "float", lo=0.0, hi=1.0, lo_open=True, doc="factor applied after every epoch"),
              _WARMUP)
    doc = "the rate times gamma after every epoch"


class Cosine(ScheduleSpec):
    name = "cosine"
    params = (T.Param("min_lr", "float", 0.0, lo=0.0, doc="the rate at the end of the run"), _WARMUP)
    stepped = "batch"
    spans_run = True
    doc = "half a cosine from the rate down to min_lr over the run (after the warm-up), per batch"


class Plateau(ScheduleSpec):
    name = "plateau"
    params = (
        T.Param("factor", "float", 0.1, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                doc="the rate is multiplied by it when the monitor stalls"),
        T.Param("patience", "int", 10, lo=0, hi=T.MAX_INT, doc="epochs without improvement before a cut"),
        T.Param("monitor", "name", "val_loss", choices=T.monitor_choices(), doc="quantity watched after every epoch"),
        T.Param("min_delta", "float", 0.0, lo=0.0, doc="smallest change that counts as an improvement"),
        T.Param("min_lr", "float", 0.0, lo=0.0, doc="the rate is not cut below it"),
        _WARMUP,
    )
    doc = "the rate times factor whenever monitor has not improved for patience epochs"


#: name -> spec, in the order the reference documents them.
SCHEDULES: dict[str, ScheduleSpec] = {s.name: s for s in (
    Constant(), Step(), MultiStep(), Exponential(), Cosine(), Plateau())}
