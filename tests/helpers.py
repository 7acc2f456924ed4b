"""Shared test helpers: finite differences and per-dtype tolerances.

Imported by tests as ``from helpers import ...`` (``tests/conftest.py`` puts this folder on
``sys.path``; it does not put the source tree there, so tests run against the installed package).
"""
import numpy as np

# (rtol, atol) for comparing a kernel with its NumPy reference
TOL = {np.float32: (2e-5, 2e-6), np.float64: (1e-12, 1e-13)}
DTYPES = [np.float32, np.float64]


def tol(dtype):
    """Tolerances for ``np.testing.assert_allclose`` in the given dtype."""
    rtol, atol = TOL[np.dtype(dtype).type]
    return {"rtol": rtol, "atol": atol}


def numeric_grad(f, x, h=1e-4):
    """4th-order central difference of the scalar ``f()`` with respect to ``x`` (float64, in place).

    df/dx_i ~= (-f(x+2h) + 8 f(x+h) - 8 f(x-h) + f(x-2h)) / (12 h)
    """
    g = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        vals = []
        for step in (2 * h, h, -h, -2 * h):
            flat[i] = orig + step
            vals.append(float(f()))
        flat[i] = orig
        gflat[i] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
    return g


def max_rel_error(analytic, numeric):
    """max |a - n| / max(|a|, |n|, 1e-8), the figure reported in gradient-check assertions."""
    a, n = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    denom = np.maximum(np.maximum(np.abs(a), np.abs(n)), 1e-8)
    return float(np.max(np.abs(a - n) / denom)) if a.size else 0.0


def assert_grad_close(analytic, numeric, tol=1e-6, what="gradient"):
    err = max_rel_error(analytic, numeric)
    assert err <= tol, f"{what}: max relative error {err:.3e} > {tol:.0e}"
