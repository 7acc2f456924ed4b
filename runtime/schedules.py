"""Learning-rate schedules: the rate of every batch of a run, from ``ir.Schedule``.

The formulas, and whether a schedule moves per epoch or per batch, are documented with the
specs in ``dsl/schedules.py``; the rules here are keyed by the same names (a test holds the
two lists equal). The rate of a batch depends only on its position (epoch, batch) and, for
``plateau``, on the cuts made so far, which ``state``/``load_state`` carry through
checkpoints, so a resumed run follows the rates of an uninterrupted one.

    s = Schedule(model.schedule, base_lr=opt.base_lr, epochs=10, batches=94)
    opt.lr = s.rate(epoch, batch)          # before every step (epoch from 1, batch from 0)
    s.end_epoch(metrics)                   # after the epoch's validation (plateau watches it)
"""
from __future__ import annotations

import math
import warnings

from dlrun.dsl import tables as T
from dlrun.dsl.schedules import SCHEDULES
from dlrun.errors import UsageError


class _Rule:
    """One schedule's formula: ``rate(s, epoch, t, total)``, the rate at epoch ``epoch`` (from
    1) with ``t`` batches done after the warm-up out of ``total`` (``s``: the Schedule, for
    its base rate and parameters); ``end_epoch(s, metrics)`` after each epoch."""

    def rate(self, s, epoch, t, total):
        return s.base_lr

    def end_epoch(self, s, metrics):
        pass


class _Step(_Rule):
    def rate(self, s, epoch, t, total):
        return s.base_lr * s.p["gamma"] ** ((epoch - 1) // s.p["every"])


class _MultiStep(_Rule):
    def rate(self, s, epoch, t, total):
        return s.base_lr * s.p["gamma"] ** sum(1 for m in s.p["at"] if m <= epoch - 1)


class _Exponential(_Rule):
    def rate(self, s, epoch, t, total):
        return s.base_lr * s.p["gamma"] ** (epoch - 1)


class _Cosine(_Rule):
    def rate(self, s, epoch, t, total):
        lo = s.p["min_lr"]
        return lo + (s.base_lr - lo) * 0.5 * (1.0 + math.cos(math.pi * t / total))


class _Plateau(_Rule):
    def rate(self, s, epoch, t, total):
        return max(s.base_lr * s.p["factor"] ** s.cuts, min(s.p["min_lr"], s.base_lr))

    def end_epoch(self, s, metrics):
        monitor = s.p["monitor"]
        if monitor not in metrics:
            raise UsageError(f"schedule plateau monitors '{monitor}', which this run does not report "
                             f"(reported: {', '.join(k for k in metrics if k not in ('seconds', 'lr'))})")
        value = float(metrics[monitor])
        delta = s.p["min_delta"]
        better = s.best is None or (value > s.best + delta if monitor in T.MAXIMIZED_MONITORS
                                    else value < s.best - delta)
        if better:
            s.best, s.wait = value, 0
            return
        s.wait += 1
        if s.wait >= s.p["patience"]:
            s.cuts += 1
            s.wait = 0


RULES = {"constant": _Rule(), "step": _Step(), "multistep": _MultiStep(), "exponential": _Exponential(),
         "cosine": _Cosine(), "plateau": _Plateau()}


class Schedule:
    """The rates of one run (``fit``): ``epochs`` of ``batches`` batches from ``base_lr``."""

    def __init__(self, sched, base_lr: float, epochs: int, batches: int):
        self.name = sched.name
        self.p = dict(sched.params)
        self.rule = RULES[sched.name]
        self.base_lr = float(base_lr)
        self.epochs, self.batches = int(epochs), int(batches)
        self.warmup = int(self.p.get("warmup", 0))
        if self.warmup >= self.epochs:
            raise UsageError(f"schedule {self.name} warmup={self.warmup} epochs leaves none of this run's "
                             f"{self.epochs} epochs at the full rate; expected warmup < {self.epochs}")
        self.warmup_steps = self.warmup * self.batches
        self.cuts, self.best, self.wait = 0, None, 0   # plateau's watch on its monitor
        self.last = self.base_lr

    def rate(self, epoch: int, batch: int) -> float:
        """The rate of batch ``batch`` (from 0) of epoch ``epoch`` (from 1)."""
        step = (epoch - 1) * self.batches + batch
        lr = self.rule.rate(self, epoch, max(step - self.warmup_steps, 0),
                            self.epochs * self.batches - self.warmup_steps)
        if step < self.warmup_steps:
            lr *= (step + 1) / self.warmup_steps
        self.last = lr
        return lr

    def end_epoch(self, metrics: dict) -> None:
        """After an epoch (and its validation): plateau counts whether its monitor improved."""
        self.rule.end_epoch(self, metrics)

    def state(self) -> dict:
        return {"cuts": self.cuts, "best": self.best, "wait": self.wait, "epochs": self.epochs}

    def load_state(self, state: dict) -> None:
        """The state of ``state()`` (a checkpoint's); a schedule that spans the run and was
        saved by a run of other length warns that the remaining rates follow this run's."""
        epochs = state.get("epochs")
        if SCHEDULES[self.name].spans_run and epochs is not None and int(epochs) != self.epochs:
            warnings.warn(f"schedule {self.name} spans the run's epochs: the checkpoint's run had {int(epochs)}, "
                          f"this one has {self.epochs}, so the remaining rates follow a {self.epochs}-epoch "
                          "schedule (neither run's exactly)", stacklevel=2)
        self.cuts = int(state.get("cuts", 0))
        best = state.get("best")
        self.best = None if best is None else float(best)
        self.wait = int(state.get("wait", 0))
