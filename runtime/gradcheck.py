"""Finite-difference check of every gradient of a whole network (``dlrun gradcheck``).

The network is built in float64 with dropout off (batch norm keeps its training-mode
batch statistics, the path whose backward is least trivial), fed a small random batch of
the declared input shape with random targets of the right kind, and for every trainable
tensor the analytic gradient of the mean loss is compared with a 4th-order central
difference ``(-f(p+2h) + 8f(p+h) - 8f(p-h) + f(p-2h)) / 12h`` at up to ``max_entries``
entries per tensor (all of them for small tensors).

Relative error of a tensor::

    max_i |a_i - n_i| / max(|a_i|, |n_i|, 1e-3 * max_j max(|a_j|, |n_j|), 1e-12)

An element far smaller than the tensor's largest gradient is judged against a floor of
1e-3 of that largest value: finite differences carry a round-off error of about
``eps * |loss| / h`` that would otherwise make exact zeros (dead ReLUs) look wrong, while a
genuinely wrong element still shows up, amplified by at most 1e3.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-6


def relative_error(analytic, numeric) -> float:
    """The per-tensor figure described in the module docstring (0.0 for empty tensors)."""
    a = np.asarray(analytic, np.float64).ravel()
    n = np.asarray(numeric, np.float64).ravel()
    if a.size == 0:
        return 0.0
    mag = np.maximum(np.abs(a), np.abs(n))
    floor = max(1e-3 * float(mag.max()), 1e-12)
    return float(np.max(np.abs(a - n) / np.maximum(mag, floor)))


def central_difference(f, x, index, h):
    """4th-order central difference of scalar ``f()`` with respect to ``x.flat[index]``."""
    flat = x.reshape(-1)
    orig = flat[index]
    vals = []
    for step in (2 * h, h, -h, -2 * h):
        flat[index] = orig + step
        vals.append(float(f()))
    flat[index] = orig
    return (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)


@dataclass
class TensorCheck:
    layer: str
    name: str
    shape: tuple
    checked: int
    max_abs_grad: float
    rel_error: float

    @property
    def ok(self) -> bool:
        return self.rel_error <= TOLERANCE
