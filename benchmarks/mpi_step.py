"""Step time and allreduce time of data-parallel training (runtime/parallel.py) on this machine.

    python benchmarks/mpi_step.py            # runs both configurations and prints a table
    python benchmarks/mpi_step.py --json F   # also writes the figures to F

The MNIST MLP of ``models/mnist_mlp.net`` (784-512-256-10 with batch norm and dropout,
537,354 parameters with batch norm's, 2.15 MB of float32 gradients), global batch 128, trained on synthetic
uint8 images (the step's time does not depend on the pixel values):

- N = 1: one process, two BLAS threads;
- N = 2: ``mpiexec -n 2``, one BLAS thread per rank.

A step is measured as an epoch of ``Model.fit`` divided by its batches (the second of two
epochs, so set-up and first touches are excluded), median of ``--repeats`` runs. The
allreduce alone (``World.sum_into``, in place, float32) is timed on buffers of 1 KiB to
1 MiB and of the model's gradient, to fit an alpha-beta model (docs/scaling.md).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = [256 * 4 ** k for k in range(6)]   # float32 elements: 1 KiB ... 1 MiB (and the MLP's gradient)


def worker(rows: int, repeats: int) -> dict:
    import dlrun
    from dlrun.runtime.parallel import world

    comm = world()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (rows, 784), dtype=np.uint8)
    y = rng.integers(0, 10, rows)
    text = (ROOT / "models" / "mnist_mlp.net").read_text()
    step = []
    for _ in range(repeats):
        model = dlrun.loads(text, base_dir=str(ROOT / "models"))
        history = model.fit(x, y, epochs=2, batch_size=128)
        batches = -(-rows // 128)
        step.append(history.epochs[-1]["seconds"] / batches)
    allreduce = {}
    if comm.parallel:
        for n in SIZES + [model.network.param_count]:
            buf = np.ones(n, np.float32)
            times = []
            for _ in range(30):
                comm.sum(np.zeros(1))  # line the ranks up
                t0 = time.perf_counter()
                comm.sum_into(buf)
                times.append(time.perf_counter() - t0)
            allreduce[n * 4] = float(np.median(times))
    params = model.network.param_count
    return {"ranks": comm.size, "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"), "params": params,
            "step_seconds": float(np.median(step)), "allreduce_seconds_by_bytes": allreduce}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=128 * 120, help="training rows per epoch (default 15360)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", metavar="F")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        out = worker(args.rows, args.repeats)
        from dlrun.runtime.parallel import world

        if world().lead:
            print(json.dumps(out))
        return
    mpiexec = Path(sys.executable).parent / "mpiexec"
    me = [sys.executable, __file__, "--worker", "--rows", str(args.rows), "--repeats", str(args.repeats)]
    runs = []
    for cmd, threads in ((me, "2"), ([str(mpiexec), "-n", "2"] + me, "1")):
        env = {**os.environ, "OPENBLAS_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    one, two = runs
    grad_bytes = one["params"] * 4
    ar = two["allreduce_seconds_by_bytes"]
    print(f"MNIST MLP, {one['params']} parameters ({grad_bytes / 1e6:.2f} MB of float32 gradients), batch 128")
    print(f"N=1 (2 BLAS threads): step {one['step_seconds'] * 1e3:.2f} ms")
    print(f"N=2 (1 BLAS thread each): step {two['step_seconds'] * 1e3:.2f} ms, "
          f"of which the gradient allreduce {ar[str(grad_bytes)] * 1e3:.2f} ms")
    print("allreduce (N=2, shared memory), bytes -> ms:")
    for b, t in sorted(((int(k), v) for k, v in ar.items())):
        print(f"  {b:>10}  {t * 1e3:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"one": one, "two": two}, indent=1) + "\n")


if __name__ == "__main__":
    main()
