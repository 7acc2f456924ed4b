"""BLAS threads: how many OpenBLAS threads a run uses, decided in this one place.

dlrun's kernels call the OpenBLAS that SciPy carries (``scipy.linalg.cython_blas``) and NumPy
carries a second one; each runs its own pool of threads, and both are set together
(threadpoolctl, every loaded BLAS) -- a pool left at its default keeps spinning threads next
to the other's, the trap ``docs/architecture.md`` describes.

    parse("auto") -> "auto";  parse("2") -> 2;  parse("0") -> UsageError
    with blas_threads(spec, work=flops): ...   # spec: an int >= 1 or "auto"; the count is chosen once

``auto`` (the CLI's default) picks the count from the cores this process may run on
(``os.sched_getaffinity``) less the cores other processes keep busy (``/proc/stat`` since
the last look, this process's own CPU time taken off; the 1-minute load average where there
is no ``/proc/stat``), and from the work of one call: a step under ``SMALL_WORK_FLOPS``
runs one thread. Under ``mpiexec`` the ranks on this machine share its cores
(``cores // ranks``, at least 1: one thread per rank on two cores), and
``OPENBLAS_NUM_THREADS``, when set, is an upper bound.

Measured on this 2-core machine (``dlrun time``, 1 vs 2 threads interleaved, 3 rounds,
load 1.6-2.1): the MNIST MLP's training step was faster on one thread up to batch 32
(batch 16: 1.1-1.5 ms vs 3.0; batch 32: 2.1-2.5 vs 2.7-3.3; about 100 MFLOP per step),
even at 64 (3.5-3.8 vs 3.6-3.7, 200 MFLOP), and faster on two from 128 (5.4-5.6 vs 4.5-5.2,
410 MFLOP) and 512 (16.5-18.6 vs 11.0-12.8); the CNN recipe's step (per-sample convolution
GEMMs that OpenBLAS does not split) gained nothing at batch 16 and 64 and showed the
2-thread outliers (62 and 286 ms against 13 and 51) of a pool waiting for a descheduled
thread.
"""
from __future__ import annotations

import contextlib
import math
import os
import time

from dlrun.errors import UsageError

AUTO = "auto"

#: FLOPs of one call (a training step: forward and backward; a predict batch: forward) under
#: which one BLAS thread is used (the crossover measured above lies between 200 and 410 MFLOP)
SMALL_WORK_FLOPS = 300e6

#: a core counts as free when others keep it busy less than this fraction of the time
BUSY_MARGIN = 0.25

#: environment variables through which MPI launchers give the ranks on this machine
LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")


def parse(value, flag="--threads"):
    """``value`` as a thread count (int >= 1) or ``"auto"``; anything else is a ``UsageError``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == AUTO:
            return AUTO
        try:
            n = int(text, 10)
        except ValueError:
            raise UsageError(f"{flag}: expected a whole number of threads >= 1 or 'auto', "
                             f"got {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{flag}: expected a whole number of threads >= 1 or 'auto', got {value!r}")
    else:
        n = value
    if n < 1:
        raise UsageError(f"{flag}: expected a whole number of threads >= 1 or 'auto', got {value!r}")
    return n


def cores() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _stat_busy():
    """(busy ticks, total ticks) summed over the CPUs this process may run on, or None."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):
        allowed = None
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    busy = total = 0
    seen = False
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *fields = line.split()
        if allowed is not None and int(name[3:]) not in allowed:
            continue
        v = [int(x) for x in fields[:8]]   # user nice system idle iowait irq softirq steal
        idle = v[3] + v[4]
        busy += sum(v) - idle
        total += sum(v)
        seen = True
    return (busy, total) if seen else None


_last = None   # (wall time, /proc/stat reading, own CPU seconds) of the last look

#: a last look older than this (seconds) says nothing about now: a fresh window is sampled
MAX_AGE = 30.0


def busy_elsewhere(window=0.05) -> float:
    """Cores kept busy by other processes: since the last call when that was under
    ``MAX_AGE`` seconds ago (a program calling ``fit`` per epoch gets the average over the
    epoch), else over ``window`` seconds; from ``/proc/stat`` less this process's own CPU
    time; the 1-minute load average without ``/proc/stat``."""
    global _last
    now = (time.monotonic(), _stat_busy(), _own_cpu())
    if now[1] is None:
        try:
            return float(os.getloadavg()[0])
        except (AttributeError, OSError):
            return 0.0
    if _last is None or not window <= now[0] - _last[0] <= MAX_AGE:
        if _last is None or now[0] - _last[0] > MAX_AGE:
            _last = now
        time.sleep(window)
        now = (time.monotonic(), _stat_busy(), _own_cpu())
    before, _last = _last, now
    ticks = now[1][1] - before[1][1]
    if ticks <= 0:
        return 0.0
    n = cores()
    wall = now[0] - before[0]
    busy_cores = n * (now[1][0] - before[1][0]) / ticks      # every process's, in cores
    own_cores = (now[2] - before[2]) / wall if wall > 0 else 0.0
    return max(0.0, busy_cores - own_cores)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def local_ranks(environ=None) -> int:
    """The processes an MPI launcher started on this machine (1 when not under one)."""
    env = os.environ if environ is None else environ
    for name in LOCAL_SIZE_VARIABLES:
        try:
            return max(1, int(env.get(name, "")))
        except ValueError:
            continue
    from dlrun.runtime.parallel import launched_size

    return launched_size(env)


def choose(spec, work=None, shared=True) -> tuple[int, str]:
    """``(threads, why)``: ``spec`` itself when a count, else the ``auto`` choice for a call
    of ``work`` FLOPs (None: unknown, not counted); ``shared``: the MPI ranks on this machine
    all run it (training; False for a command rank 0 runs alone)."""
    spec = parse(spec)
    if spec != AUTO:
        return spec, "as asked"
    n = cores()
    ranks = local_ranks() if shared else 1
    if ranks > 1:
        free, why = max(1, n // ranks), f"{n} cores shared by {ranks} MPI ranks"
    else:
        busy = busy_elsewhere()
        free = max(1, min(n, math.floor(n - busy + BUSY_MARGIN)))
        why = f"{free} of {n} cores free (others busy on {busy:.1f})"
    if work is not None and work < SMALL_WORK_FLOPS and free > 1:
        free, why = 1, f"{work / 1e6:.0f} MFLOP per call, under {SMALL_WORK_FLOPS / 1e6:.0f}"
    cap = os.environ.get("OPENBLAS_NUM_THREADS", "").strip()
    if cap.isdigit() and 0 < int(cap) < free:
        free, why = int(cap), f"OPENBLAS_NUM_THREADS={cap}"
    return free, f"auto: {why}"


def step_flops(model_ir, rows, training=True) -> float:
    """FLOPs of one call on ``rows`` samples: the forward pass (``dlrun summary``'s count),
    times 3 in training (the backward pass costs about twice the forward)."""
    from dlrun.dsl.summary import layer_costs

    per_sample = sum(r["flops"] or 0 for r in layer_costs(model_ir))   # None: a size awaiting the data
    return per_sample * rows * (3 if training else 1)


def pools():
    """Every BLAS threadpoolctl sees in this process (NumPy's and SciPy's OpenBLAS, once
    the kernels have loaded the latter): ``[{"prefix", "num_threads", ...}]``."""
    from threadpoolctl import threadpool_info

    return [d for d in threadpool_info() if d.get("user_api") == "blas"]


@contextlib.contextmanager
def blas_threads(spec, work=None, shared=True):
    """Run the block with every BLAS pool at the count ``choose(spec, work, shared)`` gives;
    yields ``(threads, why)``; the pools' counts are restored afterwards."""
    import numpy  # noqa: F401  -- NumPy's OpenBLAS
    import scipy.linalg.cython_blas  # noqa: F401  -- the kernels' OpenBLAS
    from threadpoolctl import threadpool_limits

    n, why = choose(spec, work, shared)
    with threadpool_limits(limits=n, user_api="blas"):
        yield n, why
