"""Python-to-kernel call overhead of the ``def`` wrappers: tiny calls, where the argument checks
and the dtype dispatch are most of the time, and one normal-size dense layer.

    python benchmarks/wrapper_overhead.py [--repeats R] [--number N] [--kernels DIR]

Each row is timed with ``timeit``: R repeats of N back-to-back calls; the table gives the best
per-call time (the least disturbed by other processes on a shared machine), the median and the
spread (max - best over the repeats, divided by the best). ``--kernels DIR`` loads the kernel
extension modules (``dense*.so`` ...) from DIR instead of the installed package, to compare a
saved build against the current one in the same conditions.
"""
import argparse
import glob
import importlib.util
import os
import statistics
import timeit

import numpy as np


def load(name, kernels_dir):
    if kernels_dir is None:
        return importlib.import_module(f"dlrun.kernels.{name}")
    path = glob.glob(os.path.join(kernels_dir, f"{name}.*.so"))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def cases(kernels_dir):
    dense = load("dense", kernels_dir)
    act = load("activations", kernels_dir)
    optim = load("optim", kernels_dir)
    losses = load("losses", kernels_dir)
    rng = np.random.default_rng(0)

    def f32(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, w, b, y = f32(4, 8), f32(8, 8), f32(8), f32(4, 8)
    ax, ay = f32(4, 8), f32(4, 8)
    p, g, m, v = f32(64), f32(64), np.zeros(64, np.float32), np.zeros(64, np.float32)
    z, lab, gz = f32(4, 8), np.arange(4, dtype=np.int64) % 8, f32(4, 8)
    X, W, B, Y = f32(128, 784), f32(784, 512) * 0.05, f32(512), f32(128, 512)
    return [
        ("dense_forward 4x8x8 relu", lambda: dense.dense_forward(x, w, b, y, "relu")),
        ("activation_forward relu 4x8", lambda: act.activation_forward("relu", ax, ay)),
        ("adam_update 64", lambda: optim.adam_update(p, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 1)),
        ("softmax_cross_entropy 4x8", lambda: losses.softmax_cross_entropy(z, lab, gz)),
        ("dense_forward 128x784x512 relu", lambda: dense.dense_forward(X, W, B, Y, "relu")),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--number", type=int, default=2000, help="calls per repeat (tiny calls)")
    ap.add_argument("--kernels", default=None, help="folder of kernel .so files to load instead")
    args = ap.parse_args()
    print(f"{'call':34s} {'best':>10s} {'median':>10s} {'spread':>8s}")
    for name, fn in cases(args.kernels):
        big = "128x" in name
        number = max(1, args.number // 400) if big else args.number
        repeats = max(5, args.repeats // 10) if big else args.repeats
        fn()
        times = [t / number for t in timeit.repeat(fn, number=number, repeat=repeats)]
        best, med = min(times), statistics.median(times)
        unit, scale = ("ms", 1e3) if big else ("us", 1e6)
        print(f"{name:34s} {best * scale:8.3f}{unit} {med * scale:8.3f}{unit} "
              f"{(max(times) - best) / best:7.0%}")


if __name__ == "__main__":
    main()
