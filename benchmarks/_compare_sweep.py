"""The size sweep of ``compare.py`` (``--workloads sweep``): how the training step's time grows
with the work, dlrun against PyTorch eager, with the GEMM floor beside it.

Configurations (each a name such as ``mlp-h1024-b256-s20``, parsed by ``parse_config``):

- ``mlp``: the MNIST MLP recipe of ``models/mnist_mlp.net`` -- 784 inputs, two hidden dense
  layers (ReLU, He normal), each followed by batch norm and dropout 0.2, a dense 10 softmax
  output: 3 dense layers -- with both hidden layers of width H = 64, 256, 1024, 2048, at batch
  32 and 256; the file's loss (label smoothing) and Adam lr 1e-3, float32;
- ``cnn``: the CNN recipe of ``_compare_cnn.py`` at batch 16, 64 and 256.

A step is one batch's forward, backward and Adam update. Each tool times ``s`` consecutive
steps as one epoch of its own loop on the first ``s x batch`` MNIST training images (so the
per-epoch costs, a permutation and the ``fit`` call, are shared by ``s`` steps); step time =
epoch / s. The GEMM floor of a configuration is the best time of its step's GEMMs (the MLP's
8, the CNN's 11, each over the whole batch) through NumPy's sgemm in the dlrun worker
(``_compare_tools.gemm_times``, the figure the MLP and CNN tables use), measured in the same
rounds; FLOPs per step are those GEMMs' 2mkn, the plot's x axis.

Worker side: ``RUNNERS`` (dlrun, pytorch) multiplex the configurations behind the runner
interface of ``_compare_tools.py``: the protocol's ``batch`` carries the configuration's name.
Parent side: ``part_sweep`` (rounds, records, the ratio table, the plot).
"""
from __future__ import annotations

import os
import re
import time

import numpy as np

WIDTHS = (64, 256, 1024, 2048)
MLP_BATCHES = (32, 256)
CNN_BATCHES = (16, 64, 256)
#: work per timed epoch (FLOPs of the step's GEMMs x steps) the step count aims at, and its bounds
TARGET_FLOPS = 20e9
QUICK_TARGET_FLOPS = 0.3e9
STEPS = (5, 200)
QUICK_STEPS = (2, 8)


def config_name(kind, batch, steps, width=None):
    """``mlp-h1024-b256-s20`` (both hidden layers 1024 wide), ``mlp-h512_256-b128-s50`` (the
    recipe's own widths), ``cnn-b64-s10``."""
    if kind == "mlp":
        w = "_".join(map(str, width)) if isinstance(width, tuple) else str(width)
        return f"{kind}-h{w}-b{batch}-s{steps}"
    return f"{kind}-b{batch}-s{steps}"


def parse_config(name):
    """``(kind, hidden widths (a pair) or None, batch, steps)`` of a configuration's name."""
    m = re.fullmatch(r"(mlp)-h(\d+)(?:_(\d+))?-b(\d+)-s(\d+)|(cnn)-b(\d+)-s(\d+)", name)
    if not m:
        raise ValueError(f"not a sweep configuration: {name!r}")
    if m.group(1):
        w = int(m.group(2))
        return "mlp", (w, int(m.group(3) or w)), int(m.group(4)), int(m.group(5))
    return "cnn", None, int(m.group(7)), int(m.group(8))


def shapes(kind, width, batch):
    """The step's GEMMs (``gemm_times`` shapes)."""
    from _compare_cnn import cnn_gemm_shapes
    from _compare_tools import gemm_shapes

    return gemm_shapes(batch, _pair(width)) if kind == "mlp" else cnn_gemm_shapes(batch)


def _pair(width):
    return width if isinstance(width, tuple) else (width, width)


def step_flops(kind, width, batch):
    return sum(2.0 * m * k * n for _, m, k, n, _, _ in shapes(kind, width, batch))


def mlp_text(text, width):
    """The model file with its hidden widths set to ``width`` (a pair; its other lines as written)."""
    width = _pair(width)
    dense = re.findall(r"(?m)^\s*dense\s+(\d+)", text)
    if len(dense) != 3:
        raise ValueError(f"models/mnist_mlp.net: expected 3 dense layers, found {len(dense)}")
    n = [0]

    def hidden(m):
        n[0] += 1
        return m.group(1) + (str(width[n[0] - 1]) if n[0] <= 2 else m.group(2))

    return re.sub(r"(?m)^(\s*dense\s+)(\d+)", hidden, text)


# -- worker side -------------------------------------------------------------------------

class SweepRunner:
    """Every configuration of one tool; ``batch`` in the protocol is a configuration's name."""

    name = "?"

    def __init__(self, data):
        self.data = data
        self.runners = {}

    def sub(self, config):
        """A runner of the MLP or CNN workload on the configuration's first images."""
        kind, width, batch, steps = parse_config(config)
        x, y, xt, yt = self.data
        n = steps * batch
        if n > x.shape[0]:
            raise ValueError(f"{config}: needs {n} training images, {x.shape[0]} loaded")
        return self.make(kind, width, (x[:n], y[:n], xt[:batch], yt[:batch])), batch

    def info(self):
        return self.make("cnn", None, tuple(a[:1] for a in self.data)).info()

    def setup(self, config, seed):
        runner, batch = self.sub(config)
        runner.setup(batch, seed)
        self.runners[config] = (runner, batch)

    def epoch(self, config):
        runner, batch = self.runners[config]
        return runner.epoch(batch)

    def gemm(self, config, repeats):
        from _compare_tools import gemm_times

        kind, width, batch, _ = parse_config(config)
        return gemm_times(batch, repeats, shapes(kind, width, batch))


class DlrunSweep(SweepRunner):
    name = "dlrun"

    def make(self, kind, width, data):
        from _compare_cnn import DlrunCnnRunner
        from _compare_tools import MODEL_FILE, DlrunRunner

        if kind == "cnn":
            return DlrunCnnRunner(data)
        with open(MODEL_FILE, encoding="utf-8") as f:
            return DlrunRunner(data, text=mlp_text(f.read(), width))


class TorchSweep(SweepRunner):
    name = "pytorch"

    def make(self, kind, width, data):
        from _compare_cnn import TorchCnnRunner
        import _compare_tools as ct

        if kind == "cnn":
            return TorchCnnRunner(data)

        class Mlp(ct.TorchRunner):
            def build(self, torch):
                return ct.torch_model(torch, ct.DROPOUT, _pair(width)), ct.LR, ct.LABEL_SMOOTHING

        return Mlp(data)


RUNNERS = {"dlrun": DlrunSweep, "pytorch": TorchSweep}


# -- parent side -------------------------------------------------------------------------

def configurations(args):
    """The configurations' names in the order they run (small to large work)."""
    target = QUICK_TARGET_FLOPS if args.quick else TARGET_FLOPS
    lo, hi = QUICK_STEPS if args.quick else STEPS
    out = []
    for kind, widths, batches in (("mlp", args.sweep_widths, args.sweep_batches),
                                  ("cnn", [None], args.sweep_cnn_batches)):
        for w in widths:
            for b in batches:
                steps = int(min(hi, max(lo, round(target / step_flops(kind, w, b)))))
                out.append(config_name(kind, b, steps, w))
    return sorted(out, key=lambda c: step_flops(*_kwb(c)))


def _kwb(config):
    kind, width, batch, _ = parse_config(config)
    return kind, width, batch


def describe(config):
    kind, width, batch, steps = parse_config(config)
    return (f"MLP 784-{width[0]}-{width[1]}-10" if kind == "mlp" else "CNN recipe"), batch, steps


def rows_needed(configs):
    """Training images the workers load: the largest configuration's steps x batch."""
    return max(parse_config(c)[2] * parse_config(c)[3] for c in configs)


def part_sweep(args, workers, res, tables):
    """Interleaved rounds over every configuration: dlrun and PyTorch alternate (the order
    rotated per round), then the configuration's GEMM floor; records ``sweep/step_<config>``
    per tool, the ratio table and (``args.sweep_plot``) the PNG."""
    from compare import ToolError, log, rotated, stats

    configs = configurations(args)
    tools = [t for t in ("dlrun", "pytorch") if t in workers]
    failed = set()
    for c in configs:
        for t in tools:
            try:
                workers[t].call("setup", batch=c, seed=args.seed)
            except ToolError as e:
                log(f"  {e}")
                failed.add((t, c))
    times = {(c, t): [] for c in configs for t in tools}
    floors = {c: [] for c in configs}
    for r in range(args.warmup + args.rounds):
        label = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}/{args.rounds}"
        for i, c in enumerate(configs):
            steps = parse_config(c)[3]
            line = []
            for t in rotated(tools, r + i):
                if (t, c) in failed:
                    continue
                time.sleep(args.pause)
                try:
                    sec = workers[t].call("epoch", batch=c)["seconds"] / steps
                except ToolError as e:
                    log(f"  {e}")
                    failed.add((t, c))
                    continue
                if r >= args.warmup:
                    times[(c, t)].append(sec)
                line.append(f"{t} {1e3 * sec:.2f} ms")
            if "dlrun" in workers and ("gemm", c) not in failed:
                try:
                    g = workers["dlrun"].call("gemm", batch=c, repeats=args.gemm_repeats)["gemms"]
                    floor = sum(x[2] for x in g)
                    if r >= args.warmup:
                        floors[c].append(floor)
                    line.append(f"GEMM floor {1e3 * floor:.2f} ms")
                except ToolError as e:
                    log(f"  {e}")
                    failed.add(("gemm", c))
            log(f"[sweep {label}] {c}: " + ", ".join(line))
    rows = []
    for c in configs:
        what, batch, steps = describe(c)
        kind, width, _, _ = parse_config(c)
        flops = step_flops(kind, width, batch)
        ref = None
        if times.get((c, "pytorch")):
            ref = {"median": float(np.median(times[(c, "pytorch")])), "rounds": times[(c, "pytorch")]}
        extra = {"config": c, "model": what, "batch": batch, "steps_per_epoch": steps, "step_gflop": flops / 1e9}
        if floors[c]:
            res.add(f"sweep/gemm_floor_{c}", "numpy-sgemm", "s", floors[c], **extra)
        for t in tools:
            v = times[(c, t)]
            if not v:
                continue
            rec = res.add(f"sweep/step_{c}", t, "s", v, ref=ref if t != "pytorch" else None, **extra)
            if len(floors[c]) == len(v):
                rec["x_gemm_floor"] = stats([a / f for a, f in zip(v, floors[c])])
        rows.append(c)
    tables.append(sweep_table(args, res, rows, tools))
    if getattr(args, "sweep_plot", None):
        try:
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
            plot(res, rows, args.sweep_plot, f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
                 f"{args.rounds} rounds{' (--quick smoke run)' if args.quick else ''}, "
                 f"1-minute load average {load:.2f} at the end")
            res.notes.append(f"size sweep: plot written to {os.path.relpath(args.sweep_plot)}")
        except Exception as e:    # matplotlib missing or the file not writable: said, not fatal
            res.notes.append(f"size sweep: no plot ({type(e).__name__}: {e})")
    return failed


def sweep_table(args, res, configs, tools):
    lines = ["#### Size sweep: training step time, dlrun vs PyTorch eager", "",
             f"{args.rounds} interleaved rounds after {args.warmup} warm-up (per configuration dlrun and "
             "PyTorch alternate, the order rotated, then the GEMM floor); a step = forward, backward and "
             "Adam update of one batch, timed as s consecutive steps in one epoch of the tool's own loop "
             "on the first s x batch MNIST images, / s. MLP: the mnist_mlp.net recipe (784 inputs, two "
             "hidden dense layers of the width shown, each with ReLU, batch norm and dropout 0.2, a dense "
             "10 softmax output: 3 dense layers); CNN: the CNN recipe above. Speed-up = PyTorch / dlrun "
             "per round, median [min-max]; floor = the step's GEMMs alone (NumPy sgemm, best of "
             f"{args.gemm_repeats} calls, in the dlrun worker, same rounds); x floor = dlrun / floor "
             "per round (median).", "",
             "| model | batch | GFLOP/step | s | dlrun ms | PyTorch ms | speed-up vs PyTorch | GEMM floor ms "
             "| dlrun x floor | PyTorch x floor |",
             "| --- | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: |"]
    for c in configs:
        what, batch, steps = describe(c)
        d, t = res.get(f"sweep/step_{c}", "dlrun"), res.get(f"sweep/step_{c}", "pytorch")
        f = res.get(f"sweep/gemm_floor_{c}", "numpy-sgemm")
        gf = (d or t or f or {}).get("step_gflop")

        def ms(r):
            return "" if r is None else (f"{1e3 * r['median']:.2f} [{1e3 * r['min']:.2f}-"
                                         f"{1e3 * r['max']:.2f}]")
        sp = ""
        if d and d.get("paired_ratio_to_pytorch"):
            pr = d["paired_ratio_to_pytorch"]
            sp = f"{1 / pr['median']:.2f}x [{1 / pr['max']:.2f}-{1 / pr['min']:.2f}]"
        xf = {k: (f"{r['x_gemm_floor']['median']:.2f}" if r and "x_gemm_floor" in r else "")
              for k, r in (("dlrun", d), ("pytorch", t))}
        gfs = "" if gf is None else f"{gf:.3f}"
        fl = "" if f is None else f"{1e3 * f['median']:.2f}"
        lines.append(f"| {what} | {batch} | {gfs} | {steps} | {ms(d)} | {ms(t)} | {sp} | {fl} "
                     f"| {xf['dlrun']} | {xf['pytorch']} |")
    return "\n".join(lines)


def plot(res, configs, path, note=""):
    """Step time against FLOPs per step, log-log: dlrun, PyTorch and the GEMM floor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 5))
    for kind, marker in (("mlp", "o"), ("cnn", "s")):
        cs = sorted((c for c in configs if parse_config(c)[0] == kind), key=lambda c: step_flops(*_kwb(c)))
        for tool, work, color in (("dlrun", "sweep/step_", "C0"), ("pytorch", "sweep/step_", "C1"),
                                  ("numpy-sgemm", "sweep/gemm_floor_", "0.4")):
            pts = [(r["step_gflop"] * 1e9, r["median"]) for c in cs
                   if (r := res.get(work + c, tool)) is not None]
            if not pts:
                continue
            x, y = zip(*sorted(pts))
            label = {"dlrun": "dlrun", "pytorch": "PyTorch eager", "numpy-sgemm": "GEMM floor"}[tool]
            ax.plot(x, [1e3 * v for v in y], marker=marker, color=color,
                    linestyle="--" if tool == "numpy-sgemm" else "-",
                    label=f"{label}, {'MLP' if kind == 'mlp' else 'CNN'}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("FLOPs per training step (the step's GEMMs)")
    ax.set_ylabel("ms per training step (median over rounds)")
    ax.set_title("Size sweep: MNIST MLP (784-H-H-10) and CNN recipe, dlrun vs PyTorch eager"
                 + (f"\n{note}" if note else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- threads under contention (--workloads threads) --------------------------------------

CONTENTION_CONFIGS = (("mlp", (512, 256), 128), ("cnn", None, 64))
CONTENTION_THREADS = (1, 2)
BUSY_CODE = "while 1: pass"


def contention_configs(args):
    target = QUICK_TARGET_FLOPS if args.quick else TARGET_FLOPS
    lo, hi = QUICK_STEPS if args.quick else STEPS
    return [config_name(k, b, int(min(hi, max(lo, round(target / step_flops(k, w, b))))), w)
            for k, w, b in CONTENTION_CONFIGS]


class Busy:
    """``python -c "while 1: pass"`` pinned to one core (the first this process may use)."""

    def __init__(self):
        import subprocess
        import sys

        core = min(os.sched_getaffinity(0))
        self.core = core
        self.proc = subprocess.Popen([sys.executable, "-c", BUSY_CODE],
                                     preexec_fn=lambda: os.sched_setaffinity(0, {core}))

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def part_contention(args, workers, res, tables):
    """dlrun and PyTorch at 1 and 2 threads (``workers``: ``{(tool, threads): Worker}``) on the
    MLP recipe (batch 128) and the CNN recipe (batch 64), each round once as the machine is and
    once beside a busy process on one core; interleaved, the order rotated per round."""
    from compare import ToolError, log, paired_ratio, rotated

    configs = contention_configs(args)
    keys = sorted(workers)
    failed = set()
    for c in configs:
        for k in keys:
            try:
                workers[k].call("setup", batch=c, seed=args.seed)
            except ToolError as e:
                log(f"  {e}")
                failed.add((k, c))
    times = {(c, k, s): [] for c in configs for k in keys for s in ("as is", "busy")}
    loads = []
    for r in range(args.warmup + args.rounds):
        for state in rotated(("as is", "busy"), r):
            busy = Busy() if state == "busy" else None
            try:
                time.sleep(1.0 if busy else args.pause)
                for i, c in enumerate(configs):
                    steps = parse_config(c)[3]
                    line = []
                    for k in rotated(keys, r + i):
                        if (k, c) in failed:
                            continue
                        time.sleep(args.pause)
                        try:
                            sec = workers[k].call("epoch", batch=c)["seconds"] / steps
                        except ToolError as e:
                            log(f"  {e}")
                            failed.add((k, c))
                            continue
                        if r >= args.warmup:
                            times[(c, k, state)].append(sec)
                        line.append(f"{k[0]} {k[1]}t {1e3 * sec:.2f} ms")
                    log(f"[threads round {r + 1 - args.warmup}, {state}] {c}: " + ", ".join(line))
                if r >= args.warmup and hasattr(os, "getloadavg"):
                    loads.append((state, os.getloadavg()[0]))
            finally:
                if busy:
                    busy.stop()
    lines = ["#### BLAS threads under contention: ms per training step", "",
             f"{args.rounds} rounds after {args.warmup} warm-up; each round times every tool at 1 and 2 threads "
             "(OpenBLAS pools through threadpoolctl; PyTorch also set_num_threads), once on the machine as it is "
             f"and once beside `python -c \"{BUSY_CODE}\"` pinned to one core (the order of the two rotated); "
             "median [min-max] ms per step (s steps per timed epoch on the first s x batch images). "
             "2t / 1t = the 2-thread step over the 1-thread step, per round (median [min-max]); "
             "> 1: two threads slower.", "",
             "| model | batch | tool | 1 thread | 2 threads | 2t / 1t | 1 thread, busy core | 2 threads, busy core "
             "| 2t / 1t, busy core |",
             "| --- | ---: | --- | --- | --- | --- | --- | --- | --- |"]

    def ms(v):
        return "" if not v else (f"{1e3 * np.median(v):.2f} [{1e3 * min(v):.2f}-{1e3 * max(v):.2f}]")

    def ratio(a, b):
        pr = paired_ratio(a, b) if a and b and len(a) == len(b) else None
        return "" if pr is None else f"{pr['median']:.2f} [{pr['min']:.2f}-{pr['max']:.2f}]"

    for c in configs:
        what, batch, steps = describe(c)
        for tool in ("dlrun", "pytorch"):
            row = []
            for state in ("as is", "busy"):
                one, two = times.get((c, (tool, 1), state)), times.get((c, (tool, 2), state))
                for n, v in ((1, one), (2, two)):
                    if v:
                        res.add(f"threads/step_{c}_{state.replace(' ', '_')}", f"{tool}-{n}t", "s", v,
                                config=c, threads=n, state=state)
                row += [ms(one), ms(two), ratio(two, one)]
            if any(row):
                lines.append(f"| {what} | {batch} | {tool} | " + " | ".join(row) + " |")
    if loads:
        lines += ["", "1-minute load average after each round's timings: " + ", ".join(
            f"{s} {v:.2f}" for s, v in loads) + "."]
    tables.append("\n".join(lines))
