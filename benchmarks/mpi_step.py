"""Step time and allreduce time of data-parallel training (runtime/parallel.py) on this machine.

    python benchmarks/mpi_step.py            # runs both configurations and prints a table
    python benchmarks/mpi_step.py --json F   # also writes the figures to F
    python benchmarks/mpi_step.py --report F # the figures, fits and tables of that run again

The MNIST MLP of ``models/mnist_mlp.net`` (784-512-256-10 with batch norm and dropout,
537,354 parameters with batch norm's, 2.15 MB of float32 gradients), global batch 128, trained on synthetic
uint8 images (the step's time does not depend on the pixel values):

- N = 1: one process, two BLAS threads;
- N = 1: one process, one BLAS thread (a rank's compute, for the projection);
- N = 2: ``mpiexec -n 2``, one BLAS thread per rank.

A step is measured as an epoch of ``Model.fit`` divided by its batches (the second of two
epochs, so set-up and first touches are excluded), median and fastest of ``--repeats`` runs. The
allreduce alone (``World.sum_into``, in place, float32) is timed on buffers of 4 bytes to
1 MiB and of the model's gradient (200 calls for messages up to 1 KiB, 30 above), and
``T = 2 alpha + S beta`` (the ring on 2 ranks) is fitted from 16 bytes on (``FIT_FROM``) by
least squares on relative errors,
so the small messages set alpha and the large ones beta, to the medians and to the fastest
calls: on a loaded machine the fastest is the closest to an idle one's, and the projection
(docs/scaling.md) uses it, with the fastest step of the repeats as a rank's compute.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# float32 elements: 4 bytes ... 1 MiB (and the MLP's gradient)
SIZES = [1, 4, 16, 64] + [256 * 4 ** k for k in range(6)]


LINKS = {"10 Gb/s": 10e9, "25 Gb/s": 25e9, "100 Gb/s": 100e9}
RANKS = (8, 64, 512)


def projection(alpha: float, grad_bytes: int, compute: float, small: float) -> list[str]:
    """Markdown rows: ring allreduce time and efficiency at RANKS ranks on LINKS, from the
    fitted alpha (s), the gradient's bytes, one rank's compute per step (s) and the small
    collectives per step; beta is the link's (8 / bits per second). A small collective costs
    2 log2(N) alpha (recursive doubling) and cannot be hidden (it sits inside forward and
    backward). Efficiency: compute / step; log-latency: 2 log2(N) alpha in place of the ring's
    2 (N-1) alpha; overlap: backward (2/3 of the compute) hides the gradient's allreduce,
    step = small + max(compute, compute / 3 + allreduce)."""
    import math

    rows = []
    for link, bits in LINKS.items():
        beta = 8.0 / bits
        for n in RANKS:
            wire = 2 * (n - 1) / n * grad_bytes * beta
            ring = 2 * (n - 1) * alpha + wire
            log = 2 * math.log2(n) * alpha + wire
            sm = small * 2 * math.log2(n) * alpha
            rows.append(f"| {link} | {n} | {ring * 1e3:.2f} | {sm * 1e3:.2f} | {compute / (compute + sm + ring):.2f} | "
                        f"{compute / (compute + sm + log):.2f} | "
                        f"{compute / (sm + max(compute, compute / 3 + log)):.2f} |")
    return rows


def worker(rows: int, repeats: int, batch: int = 128) -> dict:
    import dlrun
    from dlrun.runtime.parallel import world

    comm = world()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (rows, 784), dtype=np.uint8)
    y = rng.integers(0, 10, rows)
    # without the data block's validation split: fit(x, y) would hold 10 % out and time a
    # validation pass inside the epoch (as benchmarks/_compare_tools.py does)
    text = re.sub(r"(?m)^[ \t]*validation[ \t]+[0-9.eE+-]+[ \t]*(#.*)?$\n?", "",
                  (ROOT / "models" / "mnist_mlp.net").read_text())
    step = []
    # small collectives (World.sum: batch-norm sums, flat-bias counts, epoch sums) and steps
    # (World.sum_into: one gradient allreduce each)
    small, steps = [0], [0]
    if comm.parallel:
        plain_sum, plain_sum_into = comm.sum, comm.sum_into

        def counted(values):
            small[0] += 1
            return plain_sum(values)

        def counted_into(buf):
            steps[0] += 1
            return plain_sum_into(buf)

        comm.sum, comm.sum_into = counted, counted_into
    for _ in range(repeats):
        model = dlrun.loads(text, base_dir=str(ROOT / "models"))
        history = model.fit(x, y, epochs=2, batch_size=batch)
        if any(k.startswith("val_") for k in history.final):
            raise RuntimeError("a validation pass ran inside the timed epoch")
        batches = -(-rows // batch)
        step.append(history.epochs[-1]["seconds"] / batches)
    small_per_step = small[0] / max(steps[0], 1)
    allreduce, fastest = {}, {}
    if comm.parallel:
        comm.sum, comm.sum_into = plain_sum, plain_sum_into
        for n in SIZES + [model.network.param_count]:
            buf = np.ones(n, np.float32)
            times = []
            for _ in range(200 if n <= 256 else 30):
                comm.sum(np.zeros(1))  # line the ranks up
                t0 = time.perf_counter()
                comm.sum_into(buf)
                times.append(time.perf_counter() - t0)
            allreduce[n * 4] = float(np.median(times))
            fastest[n * 4] = float(np.min(times))
    params = model.network.param_count
    return {"ranks": comm.size, "batch": batch, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "params": params,
            "step_seconds": float(np.median(step)), "step_seconds_min": float(np.min(step)),
            "allreduce_seconds_by_bytes": allreduce, "allreduce_min_seconds_by_bytes": fastest,
            "small_collectives_per_step": small_per_step}


# a single float32 is reduced about 5x faster than 16 bytes (2.5 us against 12-17 us in two
# runs: another path inside MPICH); dlrun's collectives carry hundreds of values or more, so
# the fit starts at 16 bytes
FIT_FROM = 16


def fit_alpha_beta(by_bytes: dict) -> tuple[float, float]:
    """alpha (s per message) and beta (s per byte) of ``T = 2 alpha + S beta`` fitted to the
    times ``by_bytes`` (bytes -> s) from FIT_FROM bytes on, least squares on relative errors."""
    s = np.array(sorted(int(k) for k in by_bytes if int(k) >= FIT_FROM), np.float64)
    t = np.array([by_bytes[k] if k in by_bytes else by_bytes[str(int(k))] for k in s], np.float64)
    a = np.stack([2.0 / t, s / t], axis=1)   # rows of (2 alpha + S beta) / T = 1
    (alpha, beta), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    return float(alpha), float(beta)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=128 * 120, help="training rows per epoch (default 15360)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="F", help="also write the measurements to F")
    ap.add_argument("--report", metavar="F", help="print the figures and tables of a run written by --json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=128, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        out = worker(args.rows, args.repeats, args.batch)
        from dlrun.runtime.parallel import world

        if world().lead:
            print(json.dumps(out))
        return
    if args.report:
        r = json.loads(Path(args.report).read_text())
        report(r["load_start"], r["load_end"], r["one"], r["one_single_thread"], r["two"],
               r["one_single_thread_batch512"])
        return
    load = os.getloadavg()
    mpiexec = Path(sys.executable).parent / "mpiexec"
    me = [sys.executable, __file__, "--worker", "--rows", str(args.rows), "--repeats", str(args.repeats)]
    runs = []
    for cmd, threads in ((me, "2"), (me, "1"), ([str(mpiexec), "-n", "2"] + me, "1"), (me + ["--batch", "512"], "1")):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    one, single, two, single512 = runs
    fits = report(load, os.getloadavg(), one, single, two, single512)
    if args.json:
        Path(args.json).write_text(json.dumps({"load_start": load, "load_end": os.getloadavg(), "one": one,
                                               "one_single_thread": single, "two": two,
                                               "one_single_thread_batch512": single512,
                                               "fit": {k: {"alpha_seconds": a, "beta_seconds_per_byte": b}
                                                       for k, (a, b) in fits.items()}},
                                              indent=1) + "\n")


def report(load, load_end, one, single, two, single512) -> dict:
    """Print the figures, the fits and the projection tables; returns the fits."""
    grad_bytes = one["params"] * 4
    ar, ar_min = two["allreduce_seconds_by_bytes"], two["allreduce_min_seconds_by_bytes"]
    # on a loaded machine the fastest call is the closest to an idle machine's (the median
    # waits for the scheduler); both are shown, the projection uses the fastest
    fits = {"median": fit_alpha_beta(ar), "fastest": fit_alpha_beta(ar_min)}
    print(f"load average at the start: {load}")
    print(f"MNIST MLP, {one['params']} parameters ({grad_bytes / 1e6:.2f} MB of float32 gradients)")
    print("step (ms, median / fastest of the repeats):")
    for name, run in (("N=1, 2 BLAS threads, batch 128", one), ("N=1, 1 BLAS thread, batch 128", single),
                      ("N=2, 1 BLAS thread each, batch 128", two), ("N=1, 1 BLAS thread, batch 512", single512)):
        print(f"  {name}: {run['step_seconds'] * 1e3:.2f} / {run['step_seconds_min'] * 1e3:.2f}")
    print(f"  of N=2's step, the gradient allreduce alone: {ar[str(grad_bytes)] * 1e3:.2f} / "
          f"{ar_min[str(grad_bytes)] * 1e3:.2f}")
    print(f"small collectives per step at N=2: {two['small_collectives_per_step']:.2f}")
    print("allreduce (N=2, shared memory), bytes -> ms: median (fit), fastest (fit)")
    (am, bm), (af, bf) = fits["median"], fits["fastest"]
    for b in sorted(int(k) for k in ar):
        print(f"  {b:>10}  {ar[str(b)] * 1e3:.4f} ({(2 * am + b * bm) * 1e3:.4f})  "
              f"{ar_min[str(b)] * 1e3:.4f} ({(2 * af + b * bf) * 1e3:.4f})")
    for name, (alpha, beta) in fits.items():
        print(f"fit T = 2 alpha + S beta to the {name}: alpha {alpha * 1e6:.2f} us, beta {beta * 1e9:.3f} ns/byte "
              f"({1 / beta / 1e9:.2f} GB/s)")
    alpha = af
    small = round(two["small_collectives_per_step"])
    for rows, run in ((128, single), (512, single512)):
        compute = run["step_seconds_min"]
        print(f"\nprojection, {rows} rows per rank (compute {compute * 1e3:.2f} ms per step, "
              f"alpha {alpha * 1e6:.2f} us, {small} small collectives per step):")
        print("| link | N | ring allreduce ms | small collectives ms | E ring | E log-latency | "
              "E log-latency + overlap |")
        print("|---|---|---|---|---|---|---|")
        print("\n".join(projection(alpha, grad_bytes, compute, small)))
    print(f"load average at the end: {load_end}")
    return fits


if __name__ == "__main__":
    main()
