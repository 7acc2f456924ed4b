"""Kernel benchmark: every dlrun kernel against the equivalent NumPy expression, in one run.

    python benchmarks/kernels.py [--dtype float32|float64|both] [--repeats N] [--quick]

Shapes are those of the MNIST MLP (batch 128, 784 -> 512 -> 256 -> 10). Each row times a
dlrun kernel and its NumPy equivalent *interleaved* (kernel, NumPy, kernel, NumPy, ...) so that
both see the same machine state, and reports the median time of each and their ratio.
The NumPy side is written the fast way (``out=`` buffers, in-place ufuncs, no temporaries that
can be avoided), so the ratio measures fusion and typed loops, not sloppy NumPy. The speedup
column is the median of the per-sample ratios (each kernel sample paired with the adjacent
NumPy sample), which is robust to slow windows on a shared machine.

Targets (issue 2): dense forward/backward >= 0.9 x the throughput of NumPy's matmul on the same
GEMMs ("vs matmul" rows: the NumPy side does only the GEMMs, the kernel also does the bias,
activation and bias gradient); every fused element-wise kernel (bias + activation, batch norm
forward/backward, softmax cross-entropy, Adam) >= 2 x faster than NumPy.

NumPy and SciPy each bring their own OpenBLAS, each with its own thread pool (no OpenMP anywhere
in dlrun). The GEMM rows alternate blocks of calls with a pause between them (``--settle``),
because alternating the two pools call by call makes their spinning threads fight (see
``compare_blas``); the other rows alternate call batches directly.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

from dlrun.kernels.activations import activation_backward, activation_forward
from dlrun.kernels.batchnorm import (batchnorm_backward, batchnorm_forward_eval,
                                     batchnorm_forward_train)
from dlrun.kernels.dense import dense_backward, dense_forward
from dlrun.kernels.dropout import dropout_backward, dropout_forward

try:
    from dlrun.kernels.losses import softmax_cross_entropy
except ImportError:          # kernel not built in this checkout
    softmax_cross_entropy = None
try:
    from dlrun.kernels.optim import adam_update
except ImportError:
    adam_update = None

BATCH = 128
LAYERS = [(784, 512), (512, 256), (256, 10)]


def timed(fn, inner):
    """Seconds per call of ``fn``, over ``inner`` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t0) / inner


def compare(ours, ref, repeats):
    """Interleaved medians (seconds) of ``ours`` and ``ref``, alternating sample by sample."""
    ours(), ref()                                   # warm-up: caches, page faults
    t = timed(ours, 3)
    inner = max(1, min(200, int(2e-3 / max(t, 1e-7))))   # ~2 ms per sample
    a, b = [], []
    for r in range(repeats):
        if r % 2:
            b.append(timed(ref, inner))
            a.append(timed(ours, inner))
        else:
            a.append(timed(ours, inner))
            b.append(timed(ref, inner))
    return _summary(a, b)


def _summary(a, b):
    """(median of ours, median of ref, median of the per-sample ratios ref / ours): the ratio
    is paired sample by sample, so a slow window of the shared machine hits both sides."""
    ratios = [y / x for x, y in zip(a, b)]
    return statistics.median(a), statistics.median(b), statistics.median(ratios)


def compare_blas(ours, ref, repeats, settle):
    """Medians (seconds) of ``ours`` and ``ref`` when both call BLAS, alternating *blocks* of
    calls separated by ``settle`` seconds of sleep.

    NumPy and SciPy each load their own OpenBLAS, and an OpenBLAS pool's threads keep spinning
    for a while after each call. Alternating the two libraries call by call therefore makes two
    pools of spinning threads fight over the cores: on this 2-core machine a 128x784x512 sgemm
    then takes ~40-80 ms instead of ~0.8 ms, on both sides. After ``settle`` seconds the other
    pool is asleep; each sample is the median per-call time of a block (the first call of a
    block pays the pool's wake-up)."""
    def block(fn, k):
        times = []
        for _ in range(k):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    ours(), ref()
    k = max(5, min(50, int(5e-3 / max(timed(ours, 3), 1e-7))))
    a, b = [], []
    for r in range(repeats):
        order = ((ours, a), (ref, b)) if r % 2 == 0 else ((ref, b), (ours, a))
        for fn, out in order:
            time.sleep(settle)
            out.append(block(fn, k))
    return _summary(a, b)


class Table:
    def __init__(self):
        self.rows = []

    def add(self, name, shape, dtype, ours, ref, speedup, target):
        ok = "" if target is None else ("ok" if speedup >= target else "MISS")
        self.rows.append((name, shape, np.dtype(dtype).name, ours * 1e6, ref * 1e6, speedup,
                          "" if target is None else f">= {target:g}", ok))
        r = self.rows[-1]
        print(f"{r[0]:<34} {r[1]:<16} {r[2]:<8} {r[3]:>10.1f} {r[4]:>10.1f} {r[5]:>7.2f}x "
              f"{r[6]:>7} {r[7]}", flush=True)

    @staticmethod
    def header():
        print(f"{'kernel':<34} {'shape':<16} {'dtype':<8} {'dlrun us':>10} {'numpy us':>10} "
              f"{'speedup':>8} {'target':>7}")
        print("-" * 100)


def bench_dense(table, dtype, repeats, rng, settle):
    blas_repeats = max(5, repeats // 2)
    for d_in, d_out in LAYERS:
        x = rng.standard_normal((BATCH, d_in)).astype(dtype)
        w = (rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(dtype)
        b = rng.standard_normal(d_out).astype(dtype)
        y, ref_y = np.empty((BATCH, d_out), dtype), np.empty((BATCH, d_out), dtype)
        shape = f"{BATCH}x{d_in}x{d_out}"
        act = "relu" if d_out != 10 else "linear"

        def ours():
            dense_forward(x, w, b, y, act)

        def np_matmul():
            np.matmul(x, w, out=ref_y)

        def np_full():
            np.matmul(x, w, out=ref_y)
            np.add(ref_y, b, out=ref_y)
            if act == "relu":
                np.maximum(ref_y, 0, out=ref_y)

        table.add(f"dense_forward {act} vs matmul", shape, dtype,
                  *compare_blas(ours, np_matmul, blas_repeats, settle), 0.9)
        table.add(f"dense_forward {act} vs numpy", shape, dtype,
                  *compare_blas(ours, np_full, blas_repeats, settle), None)

        dz = rng.standard_normal((BATCH, d_out)).astype(dtype)
        dx, dw, db = np.empty_like(x), np.empty_like(w), np.empty_like(b)
        rdx, rdw, rdb = np.empty_like(x), np.empty_like(w), np.empty_like(b)

        def ours_b():
            dense_backward(x, w, dz, dx, dw, db)

        def np_matmuls():
            np.matmul(dz, w.T, out=rdx)
            np.matmul(x.T, dz, out=rdw)

        def np_full_b():
            np.matmul(dz, w.T, out=rdx)
            np.matmul(x.T, dz, out=rdw)
            np.sum(dz, axis=0, out=rdb)

        table.add("dense_backward vs matmul", shape, dtype,
                  *compare_blas(ours_b, np_matmuls, blas_repeats, settle), 0.9)
        table.add("dense_backward vs numpy", shape, dtype,
                  *compare_blas(ours_b, np_full_b, blas_repeats, settle), None)


def np_activation(name, z, b, y):
    """NumPy y := f(z + b), in place in y."""
    np.add(z, b, out=y)
    if name == "relu":
        np.maximum(y, 0, out=y)
    elif name == "sigmoid":
        np.negative(y, out=y)
        np.exp(y, out=y)
        np.add(y, 1, out=y)
        np.reciprocal(y, out=y)
    elif name == "tanh":
        np.tanh(y, out=y)
    elif name == "gelu":
        t = y * y
        t *= 0.044715
        t += 1
        t *= y
        t *= np.sqrt(2 / np.pi)
        np.tanh(t, out=t)
        t += 1
        y *= t
        y *= 0.5
    elif name == "softmax":
        y -= y.max(axis=1, keepdims=True)
        np.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)


def np_activation_grad(name, y, dy, dx):
    if name == "relu":
        np.multiply(dy, y > 0, out=dx)
    elif name == "sigmoid":
        np.subtract(1, y, out=dx)
        dx *= y
        dx *= dy
    elif name == "tanh":
        np.multiply(y, y, out=dx)
        np.subtract(1, dx, out=dx)
        dx *= dy
    elif name == "softmax":
        s = (dy * y).sum(axis=1, keepdims=True)
        np.subtract(dy, s, out=dx)
        dx *= y


def bench_activations(table, dtype, repeats, rng):
    for d in (512, 256):
        z = rng.standard_normal((BATCH, d)).astype(dtype)
        b = rng.standard_normal(d).astype(dtype)
        y, ry = np.empty_like(z), np.empty_like(z)
        for name in ("relu", "sigmoid", "tanh", "gelu"):
            table.add(f"bias+{name} forward", f"{BATCH}x{d}", dtype,
                      *compare(lambda: activation_forward(name, z, y, bias=b),
                               lambda: np_activation(name, z, b, ry), repeats), 2.0)
        dy = rng.standard_normal((BATCH, d)).astype(dtype)
        dx, rdx = np.empty_like(z), np.empty_like(z)
        for name in ("relu", "sigmoid", "tanh"):
            activation_forward(name, z, y, bias=b)
            table.add(f"{name} backward", f"{BATCH}x{d}", dtype,
                      *compare(lambda: activation_backward(name, y, dy, dx),
                               lambda: np_activation_grad(name, y, dy, rdx), repeats), None)
    z = rng.standard_normal((BATCH, 10)).astype(dtype)
    b = rng.standard_normal(10).astype(dtype)
    y, ry = np.empty_like(z), np.empty_like(z)
    table.add("bias+softmax forward", f"{BATCH}x10", dtype,
              *compare(lambda: activation_forward("softmax", z, y, bias=b),
                       lambda: np_activation("softmax", z, b, ry), repeats), 2.0)


def bench_batchnorm(table, dtype, repeats, rng):
    for d in (512, 256):
        x = (rng.standard_normal((BATCH, d)) * 2 + 1).astype(dtype)
        gamma = rng.uniform(0.5, 1.5, d).astype(dtype)
        beta = rng.standard_normal(d).astype(dtype)
        rm, rv = np.zeros(d, dtype), np.ones(d, dtype)
        rrm, rrv = np.zeros(d, dtype), np.ones(d, dtype)
        y, xhat, inv = np.empty_like(x), np.empty_like(x), np.empty(d, dtype)
        ry, rxhat = np.empty_like(x), np.empty_like(x)
        n = BATCH

        def np_train():
            mu = x.mean(axis=0)
            var = x.var(axis=0)
            rinv = 1 / np.sqrt(var + 1e-5)
            np.subtract(x, mu, out=rxhat)
            np.multiply(rxhat, rinv, out=rxhat)
            np.multiply(rxhat, gamma, out=ry)
            np.add(ry, beta, out=ry)
            rrm[...] = 0.9 * rrm + 0.1 * mu
            rrv[...] = 0.9 * rrv + 0.1 * var * (n / (n - 1))

        table.add("batchnorm_forward_train", f"{BATCH}x{d}", dtype,
                  *compare(lambda: batchnorm_forward_train(x, gamma, beta, rm, rv, 0.9, 1e-5,
                                                           y, xhat, inv),
                           np_train, repeats), 2.0)

        def np_eval():
            s = gamma / np.sqrt(rv + 1e-5)
            np.multiply(x, s, out=ry)
            np.add(ry, beta - rm * s, out=ry)

        table.add("batchnorm_forward_eval", f"{BATCH}x{d}", dtype,
                  *compare(lambda: batchnorm_forward_eval(x, gamma, beta, rm, rv, 1e-5, y),
                           np_eval, repeats), None)

        dy = rng.standard_normal((BATCH, d)).astype(dtype)
        dx, dg, dbt = np.empty_like(x), np.empty(d, dtype), np.empty(d, dtype)
        rdx = np.empty_like(x)

        def np_back():
            dbeta = dy.sum(axis=0)
            dgamma = np.einsum("ij,ij->j", dy, xhat)
            np.multiply(xhat, dgamma / n, out=rdx)
            np.add(rdx, dbeta / n, out=rdx)
            np.subtract(dy, rdx, out=rdx)
            np.multiply(rdx, gamma * inv, out=rdx)

        table.add("batchnorm_backward", f"{BATCH}x{d}", dtype,
                  *compare(lambda: batchnorm_backward(dy, xhat, gamma, inv, dx, dg, dbt),
                           np_back, repeats), 2.0)


def bench_dropout(table, dtype, repeats, rng):
    x = rng.standard_normal((BATCH, 512)).astype(dtype)
    y, mask = np.empty_like(x), np.empty(x.shape, np.uint8)
    ry, rmask = np.empty_like(x), np.empty(x.shape, bool)
    gen = np.random.default_rng(0)
    u = np.empty(x.shape, dtype)
    scale = dtype(1 / 0.8)

    def np_fwd():
        gen.random(out=u, dtype=dtype)
        np.greater_equal(u, 0.2, out=rmask)
        np.multiply(x, rmask, out=ry)
        np.multiply(ry, scale, out=ry)

    table.add("dropout_forward (rate 0.2)", f"{BATCH}x512", dtype,
              *compare(lambda: dropout_forward(x, 0.2, 7, 0, y, mask), np_fwd, repeats), None)
    dy, dx, rdx = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    dy[...] = x

    def np_bwd():
        np.multiply(dy, rmask, out=rdx)
        np.multiply(rdx, scale, out=rdx)

    table.add("dropout_backward", f"{BATCH}x512", dtype,
              *compare(lambda: dropout_backward(dy, mask, 0.2, dx), np_bwd, repeats), None)


def bench_losses(table, dtype, repeats, rng):
    if softmax_cross_entropy is None:
        print("(softmax_cross_entropy: dlrun.kernels.losses not built, row skipped)")
        return
    z = (rng.standard_normal((BATCH, 10)) * 3).astype(dtype)
    labels = rng.integers(0, 10, BATCH).astype(np.int64)
    grad, rgrad = np.empty_like(z), np.empty_like(z)
    rows = np.arange(BATCH)

    def np_ce():
        m = z.max(axis=1, keepdims=True)
        np.subtract(z, m, out=rgrad)
        np.exp(rgrad, out=rgrad)
        s = rgrad.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(s[:, 0]) + m[:, 0] - z[rows, labels]))
        np.divide(rgrad, s, out=rgrad)
        rgrad[rows, labels] -= 1
        np.divide(rgrad, BATCH, out=rgrad)
        return loss

    table.add("softmax_cross_entropy", f"{BATCH}x10", dtype,
              *compare(lambda: softmax_cross_entropy(z, labels, grad), np_ce, repeats), 2.0)


def bench_adam(table, dtype, repeats, rng):
    if adam_update is None:
        print("(adam_update: dlrun.kernels.optim not built, row skipped)")
        return
    for shape in ((784, 512), (512,)):
        p = rng.standard_normal(shape).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        m, v = np.zeros_like(p), np.zeros_like(p)
        rp, rm, rv = p.copy(), np.zeros_like(p), np.zeros_like(p)
        t1, t2 = np.empty_like(p), np.empty_like(p)
        lr, b1, b2, eps, step = 1e-3, 0.9, 0.999, 1e-7, 10
        c1, c2 = 1 - b1 ** step, 1 - b2 ** step

        def np_adam():
            np.multiply(rm, b1, out=rm)
            np.multiply(g, 1 - b1, out=t1)
            np.add(rm, t1, out=rm)
            np.multiply(rv, b2, out=rv)
            np.multiply(g, g, out=t1)
            np.multiply(t1, 1 - b2, out=t1)
            np.add(rv, t1, out=rv)
            np.divide(rv, c2, out=t2)
            np.sqrt(t2, out=t2)
            np.add(t2, eps, out=t2)
            np.divide(rm, t2, out=t1)
            np.multiply(t1, lr / c1, out=t1)
            np.subtract(rp, t1, out=rp)

        table.add("adam_update", "x".join(map(str, shape)), dtype,
                  *compare(lambda: adam_update(p, g, m, v, lr, b1, b2, eps, step),
                           np_adam, repeats), 2.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dtype", choices=["float32", "float64", "both"], default="float32")
    ap.add_argument("--repeats", type=int, default=41, help="interleaved samples per row")
    ap.add_argument("--quick", action="store_true", help="7 samples per row (smoke run)")
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="limit both OpenBLAS pools to N threads (needs threadpoolctl); "
                         "1 gives the steadiest GEMM comparison on a busy machine")
    ap.add_argument("--settle", type=float, default=0.3,
                    help="seconds of sleep between blocks of BLAS calls (see compare_blas)")
    args = ap.parse_args(argv)
    repeats = 7 if args.quick else args.repeats
    if args.blas_threads is not None:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            ap.error("--blas-threads needs threadpoolctl (pip install 'dlrun[bench]')")
        threadpool_limits(limits=args.blas_threads, user_api="blas")
    dtypes = [np.float32, np.float64] if args.dtype == "both" else [np.dtype(args.dtype).type]
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, OPENBLAS_CORETYPE="
          f"{os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, {repeats} interleaved samples "
          f"per row; times are medians per call; speedup = median of paired numpy / dlrun")
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            print(f"  {pool['user_api']}: {pool['internal_api']} {pool['version']} "
                  f"{pool.get('architecture', '')} {pool['num_threads']} threads "
                  f"({os.path.basename(pool['filepath'])})")
    except ImportError:
        pass
    table = Table()
    Table.header()
    rng = np.random.default_rng(0)
    for dtype in dtypes:
        bench_dense(table, dtype, repeats, rng, args.settle)
        time.sleep(args.settle)         # let NumPy's BLAS threads go idle
        bench_activations(table, dtype, repeats, rng)
        bench_batchnorm(table, dtype, repeats, rng)
        bench_dropout(table, dtype, repeats, rng)
        bench_losses(table, dtype, repeats, rng)
        bench_adam(table, dtype, repeats, rng)
    misses = [r for r in table.rows if r[7] == "MISS"]
    print("-" * 100)
    print(f"{len(table.rows)} rows, {len(misses)} below target"
          + ("".join(f"\n  MISS {r[0]} {r[1]} {r[2]}: {r[5]:.2f}x (target {r[6]})"
                     for r in misses)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
