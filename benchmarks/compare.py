"""dlrun against PyTorch, a hand-written NumPy MLP and ONNX Runtime, side by side in one run.

    python benchmarks/compare.py [--json FILE] [--rounds N] [--mnist DIR] [--quick]

The work (the same in every tool): the MNIST MLP 784-512-256-10, ReLU, batch norm after each
hidden dense, dropout 0.2, softmax cross-entropy, Adam lr 1e-3, float32, inputs scaled to
[0, 1], a fresh permutation each epoch. Measured:

- training: seconds per epoch at batch 32, 128 and 512, and the test accuracy after the same
  number of epochs in every tool (they must agree within 0.3 points, else the speed
  comparison is void);
- GEMM floor: NumPy sgemm on the 8 GEMM shapes of one training step (3 forward, 3 weight
  gradients, 2 input gradients) -> the FLOP-bound epoch time, and each tool's epoch as a
  multiple of it;
- inference latency at batch 1 and 64 (median and p99 microseconds per call);
- start-up: process wall time of ``dlrun check models/mnist_mlp.net`` vs
  ``python -c "import torch"`` (and an empty ``python -c pass`` for scale);
- peak resident memory (VmHWM) of one training epoch at batch 128, a fresh process per tool;
- profile: cProfile of one dlrun epoch at batch 128 (own time per function).

Tools: ``dlrun`` (its Python API on ``models/mnist_mlp.net``), ``pytorch`` (eager, default
Adam), ``numpy`` (``numpy_mlp.py``), ``onnxruntime`` (inference only, on the NumPy model's
weights); ``pytorch-fused`` (Adam(fused=True)) on request with ``--tools``. A tool that is
not installed, or fails, is reported and left out; the run goes on.

Every tool runs in its own child process (``_compare_tools.py``). Timings are interleaved:
each round runs every tool once per batch size, in an order rotated from round to round,
after a warm-up round; results are the median and min-max over the rounds, and ratios to
PyTorch are taken per round (paired) because this machine has slow windows in which 2-thread
work runs 1.3-2x slower. Children get the environment less OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE (they pick a slower OpenBLAS kernel); the kernel that then runs is reported.

``--quick`` is a smoke run: epochs on the first 6000 training samples (times scaled to a
full epoch and labelled so), one round after warm-up, fewer latency calls. Its accuracy
check is not meaningful.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOOLS_PY = os.path.join(HERE, "_compare_tools.py")
DEFAULT_MNIST = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mnist"))
MODEL_FILE = os.path.join("models", "mnist_mlp.net")
TRAIN_TOOLS = ("dlrun", "pytorch", "pytorch-fused", "numpy")
INFER_TOOLS = ("dlrun", "pytorch", "numpy", "onnxruntime")
KNOWN_TOOLS = ("dlrun", "pytorch", "pytorch-fused", "numpy", "onnxruntime")
DEFAULT_TOOLS = ("dlrun", "pytorch", "numpy", "onnxruntime")   # pytorch-fused on request
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ACCURACY_TOLERANCE = 0.3   # percentage points
PARTS = ("train", "latency", "profile", "startup", "memory")
BUSY_LOAD = 1.0            # 1-minute load average above which the machine was not quiet
N_TRAIN = 60000

sys.path.insert(0, HERE)
from _compare_data import MnistMissing, check_folder  # noqa: E402
from _compare_tools import gemm_shapes  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# -- child processes ---------------------------------------------------------------------

class ToolError(Exception):
    """A tool failed during a command; the run goes on without it."""


class Worker:
    """One tool in a child process, driven by JSON lines (see ``_compare_tools.py``)."""

    def __init__(self, tool, args, env, log_dir):
        self.tool = tool
        self.timeout = args.timeout
        self.log_path = os.path.join(log_dir, f"{tool}.log")
        self.log_file = open(self.log_path, "w")
        cmd = [sys.executable, TOOLS_PY, tool, "--mnist", args.mnist,
               "--label-smoothing", repr(args.label_smoothing)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log_file, env=env, cwd=REPO, text=True,
                                     bufsize=1)
        first = self._read()
        self.unavailable = None
        if not first.get("ok"):
            self.unavailable = first.get("unavailable") or first.get("error")
            if first.get("traceback"):
                log(first["traceback"])
            self.close()

    def _read(self):
        # One request, one reply line: nothing is buffered between replies, so select() on
        # the pipe tells whether the reply has started within the timeout.
        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            self.proc.kill()
            raise ToolError(f"{self.tool}: no reply within {self.timeout:g} s; worker killed "
                            f"(its stderr: {self.log_path})")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.log_file.flush()
            tail = open(self.log_path).read()[-2000:]
            raise ToolError(f"{self.tool}: worker exited (code {self.proc.returncode}); "
                            f"its stderr ends with:\n{tail}")
        return json.loads(line)

    def call(self, cmd, **kw):
        if self.unavailable:
            raise ToolError(f"{self.tool}: {self.unavailable}")
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if not reply.get("ok"):
            raise ToolError(f"{self.tool}: {cmd} failed: {reply.get('error')}\n"
                            f"{reply.get('traceback', '')}")
        return reply

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


EXPECTED_LAYERS = ("input 784", "dense 512 relu he_normal", "batchnorm momentum=0.9 eps=1e-05",
                   "dropout 0.2", "dense 256 relu he_normal", "batchnorm momentum=0.9 eps=1e-05",
                   "dropout 0.2", "dense 10 softmax xavier_uniform")


def file_recipe():
    """What ``models/mnist_mlp.net`` says that the PyTorch and NumPy versions must copy.

    Returns ``{"label_smoothing": float, "notes": [...]}``; a note when the file's layers
    are not the network ``_compare_tools.torch_model`` and ``numpy_mlp`` build.
    """
    path = os.path.join(REPO, MODEL_FILE)
    try:
        from dlrun import dsl

        m = dsl.load_file(path)
    except Exception as e:   # dlrun missing or the file broken: the dlrun tool will say why
        return {"label_smoothing": 0.0,
                "notes": [f"{MODEL_FILE} could not be read ({type(e).__name__}: {e}); "
                          "PyTorch and NumPy use plain cross-entropy"]}
    layers = []
    for layer in m.layers:
        p = layer.params
        if layer.kind == "input":
            layers.append(f"input {' '.join(map(str, p['shape']))}")
        elif layer.kind == "dense":
            init = p["init"] or ("he_normal" if p["activation"].name == "relu" else "xavier_uniform")
            layers.append(f"dense {p['units']} {p['activation'].name} {init}")
        elif layer.kind == "batchnorm":
            layers.append(f"batchnorm momentum={p['momentum']:g} eps={p['eps']:g}")
        elif layer.kind == "dropout":
            layers.append(f"dropout {p['rate']:g}")
        else:
            layers.append(layer.kind)
    notes = []
    if tuple(layers) != EXPECTED_LAYERS or m.loss.name != "cross_entropy":
        notes.append(f"**{MODEL_FILE} is not the network the other tools build**: file "
                     f"{'; '.join(layers)}; loss {m.loss.name} -- expected "
                     f"{'; '.join(EXPECTED_LAYERS)}; loss cross_entropy")
    ls = float(m.loss.params.get("label_smoothing") or 0.0)
    opt = m.optimizer
    if opt.name != "adam" or abs(float(opt.params.get("lr", 0)) - 1e-3) > 1e-12:
        notes.append(f"**{MODEL_FILE} trains with {opt.name} {dict(opt.params)}**, the others "
                     "with Adam lr 1e-3")
    return {"label_smoothing": ls, "layers": layers, "notes": notes}


def child_env(keep_blas_env):
    """This process's environment, less the OpenBLAS overrides unless asked to keep them."""
    env = dict(os.environ)
    removed = {}
    if not keep_blas_env:
        for k in BLAS_ENV:
            if k in env:
                removed[k] = env.pop(k)
    return env, removed


def rotated(items, r):
    items = list(items)
    k = r % len(items) if items else 0
    return items[k:] + items[:k]


# -- statistics and records --------------------------------------------------------------

def stats(values):
    v = np.asarray(values, dtype=float)
    return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()),
            "n": int(v.size)}


def paired_ratio(tool_vals, ref_vals):
    """tool / reference per round (same round = same machine state): median, min, max."""
    r = [a / b for a, b in zip(tool_vals, ref_vals) if a is not None and b]
    return stats(r) if r else None


class Results:
    def __init__(self):
        self.records = []
        self.notes = []
        self.profile = None

    def add(self, work, tool, unit, values, ref=None, **extra):
        rec = {"work": work, "tool": tool, "unit": unit, **stats(values)}
        if ref is not None:
            rec["ratio_to_pytorch"] = rec["median"] / ref["median"]
            if "rounds" in ref and len(ref["rounds"]) == len(values):
                pr = paired_ratio(values, ref["rounds"])
                if pr:
                    rec["paired_ratio_to_pytorch"] = pr
        rec["rounds"] = [float(x) for x in values]
        rec.update(extra)
        self.records.append(rec)
        return rec

    def get(self, work, tool):
        for r in self.records:
            if r["work"] == work and r["tool"] == tool:
                return r
        return None


# -- parts -------------------------------------------------------------------------------

def part_train(args, workers, res, tables):
    tools = [t for t in TRAIN_TOOLS if t in workers]
    batches = args.batch_sizes
    scale = N_TRAIN / args.limit if args.limit else 1.0
    times = {(b, t): [] for b in batches for t in tools}
    cpu = {(b, t): [] for b in batches for t in tools}
    acc_hist = {(b, t): [] for b in batches for t in tools}
    floors = {b: [] for b in batches}
    gemm_detail = {b: [] for b in batches}
    failed = set()

    for b in batches:
        for t in tools:
            try:
                workers[t].call("setup", batch=b, seed=args.seed)
            except ToolError as e:
                log(f"  {e}")
                failed.add(t)
    n_rounds = args.warmup + args.rounds
    for r in range(n_rounds):
        label = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}/{args.rounds}"
        for b in batches:
            line = []
            for t in rotated(tools, r):
                if t in failed:
                    continue
                time.sleep(args.pause)
                try:
                    rep = workers[t].call("epoch", batch=b)
                except ToolError as e:
                    log(f"  {e}")
                    failed.add(t)
                    continue
                sec = rep["seconds"] * scale
                if r >= args.warmup:
                    times[(b, t)].append(sec)
                    cpu[(b, t)].append(rep["cpu_seconds"] * scale)
                line.append(f"{t} {sec:.2f}s (cpu {rep['cpu_seconds'] * scale:.2f}s)")
            if "numpy" in workers and "numpy" not in failed:
                time.sleep(args.pause)
                try:
                    g = workers["numpy"].call("gemm", batch=b, repeats=args.gemm_repeats)["gemms"]
                except ToolError as e:
                    log(f"  {e}")
                    failed.add("numpy")
                    continue
                steps = -(-N_TRAIN // b)
                floor = steps * sum(x[2] for x in g)
                if r >= args.warmup:
                    floors[b].append(floor)
                    gemm_detail[b].append(g)
                line.append(f"GEMM floor {floor:.2f}s")
            log(f"[train {label}] batch {b}: " + ", ".join(line))
        # Test accuracy after every measured epoch (not timed): the last one is the check
        # (the same number of epochs in every tool); the others show its epoch-to-epoch noise.
        if r >= args.warmup:
            for b in batches:
                for t in tools:
                    if t in failed:
                        continue
                    try:
                        acc_hist[(b, t)].append(workers[t].call("evaluate", batch=b)["accuracy"])
                    except ToolError as e:
                        log(f"  {e}")
                        failed.add(t)
    acc = {k: v[-1] for k, v in acc_hist.items() if v and k[1] not in failed}

    # Records.
    partial = f" (partial epochs of {args.limit} samples, time x{scale:g})" if args.limit else ""
    for b in batches:
        fl = floors[b]
        if fl:
            flops = sum(x[1] for x in gemm_detail[b][0])
            step_times = [sum(x[2] for x in g) for g in gemm_detail[b]]
            gflops = [flops / s / 1e9 for s in step_times]
            res.add(f"gemm_floor_epoch_b{b}", "numpy-sgemm", "s", fl,
                                step_gflop=flops / 1e9, gflops=stats(gflops),
                                gemms={g[0]: {"gflop": g[1] / 1e9,
                                              "best_us": 1e6 * float(np.median(
                                                  [gd[i][2] for gd in gemm_detail[b]])),
                                              "median_us": 1e6 * float(np.median(
                                                  [gd[i][3] for gd in gemm_detail[b]]))}
                                       for i, g in enumerate(gemm_detail[b][0])})
        ref = None
        if times.get((b, "pytorch")):
            ref = {"median": float(np.median(times[(b, "pytorch")])), "rounds": times[(b, "pytorch")]}
        for t in tools:
            v = times[(b, t)]
            if not v:
                continue
            extra = {"batch": b, "epochs_for_accuracy": n_rounds, "cpu_seconds": stats(cpu[(b, t)])}
            if args.limit:
                extra["partial_epoch_samples"] = args.limit
                extra["time_scaled_to_full_epoch"] = scale
            if (b, t) in acc:
                extra["test_accuracy"] = acc[(b, t)]
            if len(fl) == len(v):
                extra["x_gemm_floor"] = stats([a / f for a, f in zip(v, fl)])
            rec = res.add(f"train_epoch_b{b}", t, "s", v, ref=ref if t != "pytorch" else None, **extra)
            if t == "pytorch":
                rec["ratio_to_pytorch"] = 1.0
        # Accuracy agreement.
        if (b, "pytorch") in acc:
            for t in tools:
                if (b, t) in acc:
                    diff = 100 * (acc[(b, t)] - acc[(b, "pytorch")])
                    hist = acc_hist[(b, t)]
                    res.add(f"test_accuracy_b{b}", t, "fraction", [acc[(b, t)]],
                            batch=b, epochs=n_rounds, diff_points_vs_pytorch=diff,
                            per_epoch=hist, mean_last3=float(np.mean(hist[-3:])),
                            diff_points_mean_last3_vs_pytorch=100 * (
                                np.mean(hist[-3:]) - np.mean(acc_hist[(b, "pytorch")][-3:])),
                            agrees=bool(abs(diff) <= ACCURACY_TOLERANCE) if not args.limit else None)
        elif acc:
            for t in tools:
                if (b, t) in acc:
                    res.add(f"test_accuracy_b{b}", t, "fraction", [acc[(b, t)]], batch=b, epochs=n_rounds)

    # Table.
    lines = [f"### Training: seconds per epoch{partial}",
             "",
             f"{args.rounds} interleaved rounds after {args.warmup} warm-up; median [min-max]; "
             "speed-up = PyTorch / tool per round (median); floor = FLOP-bound epoch from the "
             "step's 8 GEMMs (NumPy sgemm); accuracy on the 10k test set after "
             f"{n_rounds} epochs. CPU s = CPU time of all the tool's threads per epoch "
             "(median; about 2x the wall time when both cores are the tool's).",
             "",
             "| batch | tool | s/epoch | speed-up vs PyTorch | x GEMM floor | CPU s/epoch | test accuracy |",
             "| ---: | --- | --- | --- | --- | ---: | --- |"]
    for b in batches:
        f = res.get(f"gemm_floor_epoch_b{b}", "numpy-sgemm")
        for t in tools:
            r = res.get(f"train_epoch_b{b}", t)
            if r is None:
                lines.append(f"| {b} | {t} | failed | | | | |")
                continue
            sp = ""
            if r.get("paired_ratio_to_pytorch"):
                pr = r["paired_ratio_to_pytorch"]
                sp = f"{1 / pr['median']:.2f}x [{1 / pr['max']:.2f}-{1 / pr['min']:.2f}]"
            elif t == "pytorch":
                sp = "1"
            xf = f"{r['x_gemm_floor']['median']:.2f}" if "x_gemm_floor" in r else ""
            a_rec = res.get(f"test_accuracy_b{b}", t)
            if sp and a_rec is not None and a_rec.get("agrees") is False:
                sp += " (void: accuracy differs)"
            a = r.get("test_accuracy")
            lines.append(f"| {b} | {t} | {fmt_range(r)} | {sp} | {xf} | "
                         f"{r['cpu_seconds']['median']:.2f} | "
                         f"{'' if a is None else f'{100 * a:.2f} %'} |")
        if f:
            lines.append(f"| {b} | GEMM floor | {fmt_range(f)} | | 1 | | "
                         f"({f['step_gflop']:.3f} GFLOP/step at {f['gflops']['median']:.0f} GFLOP/s) |")
    tables.append("\n".join(lines))

    acc_lines = []
    for b in batches:
        for t in tools:
            r = res.get(f"test_accuracy_b{b}", t)
            if r and t != "pytorch" and "diff_points_vs_pytorch" in r:
                ok = r["agrees"]
                verdict = ("n/a (--quick)" if ok is None else
                           "agrees" if ok else "DISAGREES: speed comparison void")
                acc_lines.append(f"- batch {b}: {t} {100 * r['median']:.2f} % vs PyTorch "
                                 f"{100 * res.get(f'test_accuracy_b{b}', 'pytorch')['median']:.2f} % "
                                 f"({r['diff_points_vs_pytorch']:+.2f} points, tolerance "
                                 f"{ACCURACY_TOLERANCE}): {verdict}; mean of the last "
                                 f"{min(3, len(r['per_epoch']))} epochs "
                                 f"{r['diff_points_mean_last3_vs_pytorch']:+.2f} points")
    if acc_lines:
        tables.append(f"Accuracy agreement after {n_rounds} epochs:\n\n" + "\n".join(acc_lines))

    gl = ["### GEMM floor: the 8 GEMMs of one training step (NumPy sgemm, µs)", "",
          f"Best of {args.gemm_repeats} calls per round (median over rounds); the floor is their "
          "sum times the steps per epoch. In brackets: the median call.", "",
          "| GEMM | " + " | ".join(f"batch {b}" for b in batches) + " |",
          "| --- |" + " ---: |" * len(batches)]
    names = [s[0] for s in gemm_shapes(1)]
    recs = {b: res.get(f"gemm_floor_epoch_b{b}", "numpy-sgemm") for b in batches}
    if all(recs.values()):
        for nm in names:
            gl.append(f"| {nm} | " + " | ".join(f"{recs[b]['gemms'][nm]['best_us']:.1f} "
                                                f"({recs[b]['gemms'][nm]['median_us']:.1f})"
                                                for b in batches) + " |")
        gl.append("| step GFLOP/s | " + " | ".join(f"{recs[b]['gflops']['median']:.0f}"
                                                    for b in batches) + " |")
        tables.append("\n".join(gl))


def part_latency(args, workers, res, tables, tmp):
    tools = [t for t in INFER_TOOLS if t in workers]
    b = 128 if 128 in args.batch_sizes else args.batch_sizes[0]
    ready = []
    for t in tools:
        try:
            if t == "onnxruntime":
                if "numpy" not in workers:
                    raise ToolError("onnxruntime: needs the numpy worker's weights")
                path = os.path.join(tmp, "numpy_weights.npz")
                try:
                    workers["numpy"].call("evaluate", batch=b)
                except ToolError:
                    workers["numpy"].call("setup", batch=b, seed=args.seed)
                    workers["numpy"].call("epoch", batch=b)
                workers["numpy"].call("export", batch=b, path=path)
                workers[t].call("load", batch=b, path=path)
                a_ort = workers[t].call("evaluate", batch=b)["accuracy"]
                a_np = workers["numpy"].call("evaluate", batch=b)["accuracy"]
                res.notes.append(f"ONNX Runtime runs a graph built from the NumPy model's weights "
                                 f"(Gemm, Relu per hidden layer, each batch norm folded into the "
                                 f"next Gemm; softmax at the end): test accuracy "
                                 f"{100 * a_ort:.2f} % (NumPy {100 * a_np:.2f} %)")
                if abs(a_ort - a_np) > 0.001:
                    raise ToolError(f"onnxruntime: graph disagrees with NumPy ({a_ort} vs {a_np})")
            else:
                try:
                    workers[t].call("evaluate", batch=b)
                except ToolError:
                    # no trained model (latency without train): train one epoch first, so the
                    # batch norms hold real statistics (and dlrun's preprocessing is fitted)
                    workers[t].call("setup", batch=b, seed=args.seed)
                    workers[t].call("epoch", batch=b)
            ready.append(t)
        except ToolError as e:
            log(f"  {e}")
    lines = ["### Inference latency (µs per predict call, eval mode)", "",
             f"{args.rounds} interleaved rounds of {args.latency_calls} calls at batch 1 and "
             f"{max(args.latency_calls // 4, 50)} at batch 64, after warm-up; "
             "median and p99 over all calls, [min-max] of the per-round medians; "
             "ratio = tool / PyTorch median. Input: a float32 array in [0, 1] (dlrun: the raw "
             "uint8 pixels, which its model file scales by 1/255 inside predict).", "",
             "| batch | tool | median µs | p99 µs | per-round medians | ratio to PyTorch | ratio to ONNX Runtime |",
             "| ---: | --- | ---: | ---: | --- | --- | --- |"]
    for n in (1, 64):
        calls = args.latency_calls if n == 1 else max(args.latency_calls // 4, 50)
        samples = {t: [] for t in ready}
        medians = {t: [] for t in ready}
        for r in range(args.warmup + args.rounds):
            for t in rotated(ready, r):
                if t not in samples:
                    continue
                time.sleep(args.pause)
                try:
                    ns = workers[t].call("latency", batch=b, n=n, calls=calls, warmup=50)["ns"]
                except ToolError as e:
                    log(f"  {e}")
                    samples.pop(t)
                    continue
                if r >= args.warmup:
                    us = np.asarray(ns) / 1e3
                    samples[t].append(us)
                    medians[t].append(float(np.median(us)))
            if r >= args.warmup:
                log(f"[latency batch {n}] round {r - args.warmup + 1}/{args.rounds}: " +
                    ", ".join(f"{t} {medians[t][-1]:.0f}us" for t in samples if medians[t]))
        pooled = {t: np.concatenate(samples[t]) for t in samples if samples[t]}
        ref = None
        if "pytorch" in pooled:
            ref = {"median": float(np.median(pooled["pytorch"])), "rounds": medians["pytorch"]}
        for t in pooled:
            med = float(np.median(pooled[t]))
            p99 = float(np.percentile(pooled[t], 99))
            rec = res.add(f"predict_latency_b{n}", t, "us", medians[t],
                          ref=ref if t != "pytorch" else None,
                          batch=n, calls=int(pooled[t].size), p99=p99, pooled_median=med)
            rec["median"] = med   # the median over every call (the per-round medians are in rounds)
            if ref is not None:
                rec["ratio_to_pytorch"] = med / ref["median"]
        ort = res.get(f"predict_latency_b{n}", "onnxruntime")
        for t in pooled:
            rec = res.get(f"predict_latency_b{n}", t)
            if ort:
                rec["ratio_to_onnxruntime"] = rec["median"] / ort["median"]
                pr = paired_ratio(medians[t], medians["onnxruntime"])
                if pr and len(medians[t]) == len(medians["onnxruntime"]):
                    rec["paired_ratio_to_onnxruntime"] = pr
            to_pt = f"{rec['ratio_to_pytorch']:.2f}" if "ratio_to_pytorch" in rec else ""
            to_ort = f"{rec['ratio_to_onnxruntime']:.2f}" if ort else ""
            lines.append(f"| {n} | {t} | {rec['median']:.1f} | {rec['p99']:.1f} | "
                         f"{rec['min']:.1f}-{rec['max']:.1f} | {to_pt} | {to_ort} |")
    tables.append("\n".join(lines))


def part_profile(args, workers, res, tables):
    """cProfile of one dlrun training epoch at batch 128: where its time goes."""
    if "dlrun" not in workers:
        return
    b = 128 if 128 in args.batch_sizes else args.batch_sizes[0]
    try:
        try:
            workers["dlrun"].call("evaluate", batch=b)
        except ToolError:
            workers["dlrun"].call("setup", batch=b, seed=args.seed)
            workers["dlrun"].call("epoch", batch=b)
        prof = workers["dlrun"].call("profile", batch=b, top=12)["profile"]
    except ToolError as e:
        log(f"  {e}")
        return
    res.profile = prof
    wall = prof["wall_s"]
    lines = [f"### Where one dlrun epoch goes (cProfile, batch {b}"
             + (f", {args.limit} samples" if args.limit else "") + ")", "",
             f"Epoch wall under the profiler: {wall:.2f} s. Own time per function (BLAS and "
             "Cython kernels count in the Python function that calls them).", "",
             "| function | calls | own s | share |", "| --- | ---: | ---: | ---: |"]
    for r in prof["top"]:
        lines.append(f"| `{r['function']}` | {r['calls']} | {r['own_s']:.3f} | "
                     f"{100 * r['own_s'] / wall:.0f} % |")
    tables.append("\n".join(lines))


def part_startup(args, env, res, tables):
    dlrun_exe = shutil.which("dlrun")
    check_cmd = ([dlrun_exe] if dlrun_exe else [sys.executable, "-m", "dlrun"]) + ["check", MODEL_FILE]
    cmds = {"dlrun check": check_cmd,
            "import torch": [sys.executable, "-c", "import torch"],
            "python -c pass": [sys.executable, "-c", "pass"]}
    times = {k: [] for k in cmds}
    broken = {}
    n = args.startup_rounds
    for r in range(1 + n):
        for k in rotated(cmds, r):
            if k in broken:
                continue
            t0 = time.perf_counter()
            p = subprocess.run(cmds[k], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            dt = time.perf_counter() - t0
            if p.returncode != 0:
                broken[k] = f"exit {p.returncode}: {p.stdout.strip()[-300:]}"
                log(f"  start-up: {shlex.join(cmds[k])} failed: {broken[k]}")
                continue
            if r >= 1:
                times[k].append(dt)
    ref = {"median": float(np.median(times["import torch"])), "rounds": times["import torch"]} \
        if times["import torch"] else None
    lines = ["### Start-up: process wall time (s)", "",
             f"{n} interleaved rounds after 1 warm-up; median [min-max].", "",
             "| command | wall s | ratio to `import torch` |", "| --- | --- | --- |"]
    for k, v in times.items():
        cmd = shlex.join([os.path.basename(c) if i == 0 else c for i, c in enumerate(cmds[k])])
        if not v:
            lines.append(f"| `{cmd}` | failed: {broken.get(k, 'not run')} | |")
            continue
        rec = res.add("startup", k, "s", v, ref=ref if k != "import torch" else None,
                      command=cmd)
        lines.append(f"| `{cmd}` | {fmt_range(rec, 3)} | "
                     f"{rec.get('ratio_to_pytorch', 1.0):.3f} |")
    tables.append("\n".join(lines))


def part_memory(args, env, res, tables, tools):
    lines = ["### Peak resident memory of one training epoch (batch 128, a fresh process each)", "",
             "VmHWM of the process; 'data' = resident after loading MNIST as uint8 (the same "
             "loader for all), 'ready' = after the tool's own set-up (PyTorch converts the set "
             "to float32 tensors).", "",
             "| tool | peak MiB | interpreter MiB | + data MiB | ready MiB | ratio to PyTorch |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    got = {}
    for t in tools:
        cmd = [sys.executable, TOOLS_PY, t, "--mnist", args.mnist, "--memory", "--batch", "128",
               "--label-smoothing", repr(args.label_smoothing)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        p = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        try:
            rec = json.loads(p.stdout.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            rec = {"ok": False, "error": f"exit {p.returncode}: {p.stderr.strip()[-500:]}"}
        if not rec.get("ok"):
            log(f"  memory {t}: {rec.get('unavailable') or rec.get('error')}")
            continue
        got[t] = rec
        log(f"[memory] {t}: peak {rec['vmhwm_kib'] / 1024:.0f} MiB")
    ref = got.get("pytorch")
    for t, rec in got.items():
        mib = rec["vmhwm_kib"] / 1024
        r = res.add("peak_rss_train_epoch_b128", t, "MiB", [mib],
                    ref={"median": ref["vmhwm_kib"] / 1024} if ref and t != "pytorch" else None,
                    rss_start_mib=rec["rss_start_kib"] / 1024,
                    rss_after_data_mib=rec["rss_data_kib"] / 1024,
                    rss_ready_mib=rec["rss_ready_kib"] / 1024,
                    epoch_seconds=rec["seconds"])
        ratio = r.get("ratio_to_pytorch", 1.0 if t == "pytorch" else None)
        lines.append(f"| {t} | {mib:.0f} | {rec['rss_start_kib'] / 1024:.0f} | "
                     f"{(rec['rss_data_kib'] - rec['rss_start_kib']) / 1024:.0f} | "
                     f"{rec['rss_ready_kib'] / 1024:.0f} | "
                     f"{'' if ratio is None else f'{ratio:.2f}'} |")
    tables.append("\n".join(lines))


def fmt_range(rec, digits=2):
    return f"{rec['median']:.{digits}f} [{rec['min']:.{digits}f}-{rec['max']:.{digits}f}]"


# -- targets (issue 6) -------------------------------------------------------------------

def targets(res):
    """Each target of issue 6 that this run measured: value, goal, met."""
    out = []

    def speedup(b):
        r = res.get(f"train_epoch_b{b}", "dlrun")
        if r and r.get("paired_ratio_to_pytorch"):
            return 1 / r["paired_ratio_to_pytorch"]["median"]
        return None

    def void(b):
        a = res.get(f"test_accuracy_b{b}", "dlrun")
        return a is not None and a.get("agrees") is False

    for b, goal in ((128, 2.5), (32, 3.0), (512, 1.6)):
        s = speedup(b)
        if s is not None:
            out.append({"target": f"training speed-up vs PyTorch, batch {b}"
                        + (" (void: accuracy differs)" if void(b) else ""), "value": s,
                        "goal": f">= {goal}x", "met": s >= goal and not void(b)})
    d, n = res.get("train_epoch_b128", "dlrun"), res.get("train_epoch_b128", "numpy")
    if d and n and len(d["rounds"]) == len(n["rounds"]):
        s = 1 / paired_ratio(d["rounds"], n["rounds"])["median"]
        out.append({"target": "training speed-up vs NumPy, batch 128", "value": s,
                    "goal": ">= 1.5x", "met": s >= 1.5})
    if d and "x_gemm_floor" in d:
        x = d["x_gemm_floor"]["median"]
        out.append({"target": "epoch at batch 128 / GEMM floor", "value": x,
                    "goal": "<= 1.3", "met": x <= 1.3})
    for n_ in (1, 64):
        dl, ort = res.get(f"predict_latency_b{n_}", "dlrun"), res.get(f"predict_latency_b{n_}", "onnxruntime")
        if dl and ort:
            x = dl["median"] / ort["median"]
            out.append({"target": f"predict latency / ONNX Runtime, batch {n_}", "value": x,
                        "goal": "<= 0.9", "met": x <= 0.9})
    s = res.get("startup", "dlrun check")
    if s:
        out.append({"target": "dlrun check wall (s)", "value": s["median"], "goal": "<= 0.15",
                    "met": s["median"] <= 0.15})
    m = res.get("peak_rss_train_epoch_b128", "dlrun")
    if m and "ratio_to_pytorch" in m:
        out.append({"target": "training peak RSS / PyTorch", "value": m["ratio_to_pytorch"],
                    "goal": "<= 0.4", "met": m["ratio_to_pytorch"] <= 0.4})
    for r in res.records:
        if r["work"].startswith("test_accuracy_b") and r["tool"] == "dlrun" and r.get("agrees") is not None:
            out.append({"target": f"test accuracy vs PyTorch, batch {r['batch']} (points)",
                        "value": r["diff_points_vs_pytorch"], "goal": f"abs(d) <= {ACCURACY_TOLERANCE}",
                        "met": r["agrees"]})
    return out


# -- machine -----------------------------------------------------------------------------

def loadavg():
    """The 1-minute load average (other work on the machine shows here), or None."""
    try:
        return float(open("/proc/loadavg").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_info():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        flags = open("/proc/cpuinfo").read()
        cpu += " (AVX-512)" if "avx512f" in flags else ""
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except OSError:
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "memory_mib": mem,
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "numpy": np.__version__}


def describe_tool(info, tool):
    parts = []
    for k in ("dlrun", "torch", "onnxruntime"):
        if k in info:
            parts.append(f"{k} {info[k]}")
    parts.append(f"numpy {info.get('numpy')}")
    for bl in info.get("blas", []):
        if "error" in bl:
            parts.append(bl["error"])
        else:
            parts.append(f"{bl.get('internal_api')} {bl.get('version')} "
                         f"{bl.get('architecture') or ''} ({bl.get('num_threads')} threads, "
                         f"{bl.get('prefix')})".replace("  ", " "))
    if "torch_threads" in info:
        parts.append(f"torch threads {info['torch_threads']} (inter-op {info['torch_interop_threads']})")
    if "intra_op_threads" in info:
        parts.append(f"intra-op threads {info['intra_op_threads']}")
    return f"- {tool}: " + "; ".join(parts)


# -- main --------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", metavar="FILE", help="write every record (and the targets) as JSON")
    p.add_argument("--markdown", metavar="FILE", help="also write the tables to FILE")
    p.add_argument("--rounds", type=int, default=None, help="measured rounds (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up rounds before measuring (default 1)")
    p.add_argument("--mnist", default=DEFAULT_MNIST, metavar="DIR",
                   help=f"folder with the four MNIST IDX files (default {DEFAULT_MNIST})")
    p.add_argument("--quick", action="store_true", help="smoke run: partial epochs, 1 round")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="train on the first N samples (times scaled to 60000, labelled)")
    p.add_argument("--batch-sizes", default="32,128,512", help="training batch sizes")
    p.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                   help=f"tools to run, comma-separated from {','.join(KNOWN_TOOLS)} "
                        f"(default {','.join(DEFAULT_TOOLS)}; pytorch-fused = Adam(fused=True), "
                        "training only)")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"parts to run, comma-separated from {','.join(PARTS)} (default all; "
                        "profile = cProfile of one dlrun epoch)")
    p.add_argument("--latency-calls", type=int, default=None, help="predict calls per round at batch 1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pause", type=float, default=0.2,
                   help="seconds of idle between tools (lets spinning threads park)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds a tool may take for one command before it is killed")
    p.add_argument("--keep-blas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for the children")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.quick and args.limit is None:
        args.limit = 6000
    if args.latency_calls is None:
        args.latency_calls = 200 if args.quick else 1000
    args.gemm_repeats = 10 if args.quick else 30
    args.startup_rounds = 3 if args.quick else max(args.rounds, 5)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    args.tools = [t for t in args.tools.split(",") if t]
    args.parts = [t for t in args.parts.split(",") if t]
    bad = [t for t in args.tools if t not in KNOWN_TOOLS]
    if bad:
        p.error(f"unknown tool(s) {', '.join(bad)}; known: {', '.join(KNOWN_TOOLS)}")
    bad = [t for t in args.parts if t not in PARTS]
    if bad:
        p.error(f"unknown part(s) {', '.join(bad)}; known: {', '.join(PARTS)}")
    if args.rounds < 1 or args.warmup < 0 or any(b < 1 for b in args.batch_sizes):
        p.error("--rounds must be >= 1, --warmup >= 0, batch sizes >= 1")
    if args.limit is not None and not 0 < args.limit <= N_TRAIN:
        p.error(f"--limit must be in 1..{N_TRAIN}, got {args.limit}")
    if args.limit == N_TRAIN:
        args.limit = None
    args.mnist = os.path.abspath(args.mnist)
    return args


def main(argv=None):
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = loadavg()
    recipe = file_recipe()
    args.label_smoothing = recipe["label_smoothing"]
    env, removed = child_env(args.keep_blas_env)
    res = Results()
    tables = []
    meta = {"command": "python benchmarks/compare.py " + shlex.join(sys.argv[1:] if argv is None else argv),
            "date_utc": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine_info(),
            "openblas_env_removed_for_children": removed,
            "openblas_env_kept": bool(args.keep_blas_env),
            "rounds": args.rounds, "warmup": args.warmup, "quick": args.quick,
            "partial_epoch_samples": args.limit, "tools": {},
            "recipe": {"label_smoothing": recipe["label_smoothing"], "model_file": MODEL_FILE,
                       "model_layers": recipe.get("layers")}}
    res.notes.extend(recipe["notes"])

    if removed:
        # Which OpenBLAS kernel the environment as set would have chosen, for the record.
        probe = subprocess.run(
            [sys.executable, "-c", "import numpy, threadpoolctl, json; print(json.dumps("
             "[d.get('architecture') for d in threadpoolctl.threadpool_info()]))"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            meta["openblas_kernel_with_env_as_set"] = json.loads(probe.stdout)
        except json.JSONDecodeError:
            meta["openblas_kernel_with_env_as_set"] = None

    data_ok = True
    try:
        check_folder(args.mnist)
    except MnistMissing as e:
        data_ok = False
        msg = (f"MNIST not found ({e}): training, latency and memory are skipped; "
               f"pass --mnist DIR with the four IDX files")
        log(msg)
        res.notes.append(msg)

    tmp = tempfile.mkdtemp(prefix="dlrun-compare-")
    workers = {}
    try:
        if data_ok and ({"train", "latency", "profile"} & set(args.parts)):
            for t in args.tools:
                if t == "onnxruntime" and "latency" not in args.parts:
                    continue
                if t == "pytorch-fused" and "train" not in args.parts:
                    continue
                if t != "dlrun" and not ({"train", "latency"} & set(args.parts)):
                    continue    # profile only
                log(f"starting {t} ...")
                try:
                    w = Worker(t, args, env, tmp)
                except ToolError as e:
                    log(f"  {e}")
                    res.notes.append(f"{t}: failed to start")
                    continue
                if w.unavailable:
                    msg = f"{t}: skipped: {w.unavailable}"
                    log("  " + msg)
                    res.notes.append(msg)
                    continue
                workers[t] = w
                info = w.call("info")
                info.pop("ok", None)
                meta["tools"][t] = info
            if "train" in args.parts:
                part_train(args, {t: w for t, w in workers.items() if t in TRAIN_TOOLS}, res, tables)
            if "latency" in args.parts:
                part_latency(args, workers, res, tables, tmp)
            if "profile" in args.parts:
                part_profile(args, workers, res, tables)
            # Again at the end: libraries loaded lazily (scipy's OpenBLAS in dlrun) show now.
            for t, w in workers.items():
                try:
                    info = w.call("info")
                    info.pop("ok", None)
                    meta["tools"][t] = info
                except ToolError as e:
                    log(f"  {e}")
    finally:
        for w in workers.values():
            w.close()
    if "startup" in args.parts:
        part_startup(args, env, res, tables)
    if data_ok and "memory" in args.parts:
        part_memory(args, env, res, tables, [t for t in args.tools if t in TRAIN_TOOLS])
    shutil.rmtree(tmp, ignore_errors=True)

    meta["loadavg_start_end"] = [load_start, loadavg()]
    for rec in res.records:     # the reference itself
        if rec["tool"] in ("pytorch", "import torch") and not rec["work"].startswith("test_accuracy"):
            rec.setdefault("ratio_to_pytorch", 1.0)
    tg = targets(res)
    head = [f"## dlrun vs PyTorch / NumPy / ONNX Runtime ({meta['date_utc']})", "",
            f"Command: `{meta['command']}`", "",
            "Machine: {cpu}, {logical_cpus} logical CPUs, {memory_mib} MiB; {os}; "
            "Python {python}".format(**meta["machine"]), "",
            f"Load average (1 min) at start / end: {meta['loadavg_start_end'][0]} / "
            f"{meta['loadavg_start_end'][1]}", ""]
    if load_start is not None and load_start > BUSY_LOAD:
        head += [f"**Warning**: the machine was busy before this run started (load {load_start} on "
                 f"{os.cpu_count()} CPUs): 2-thread timings then swing by several times; only the "
                 "paired per-round ratios mean anything, and a quiet re-run is better.", ""]
    if args.keep_blas_env:
        head.append("OpenBLAS environment kept as set: " +
                    ", ".join(f"{k}={os.environ.get(k)}" for k in BLAS_ENV))
    else:
        head.append("Children ran without " + " and ".join(BLAS_ENV) +
                    (f" (removed: {', '.join(f'{k}={v}' for k, v in removed.items())}; with them "
                     f"OpenBLAS would run the {meta.get('openblas_kernel_with_env_as_set')} kernel)"
                     if removed else " (neither was set)") +
                    "; the kernels that ran are listed per tool below.")
    head.append("")
    head.append(f"Recipe: {MODEL_FILE} -- 784-512-256-10, dense+ReLU, batch norm, dropout 0.2; "
                f"softmax cross-entropy"
                + (f" with label smoothing {args.label_smoothing:g} (the file's; PyTorch and NumPy "
                   "use the same)" if args.label_smoothing else "")
                + "; Adam lr 1e-3; He normal / Xavier uniform initialisation; float32.")
    head += [""] + [describe_tool(info, t) for t, info in meta["tools"].items()]
    if args.limit:
        head += ["", f"**Partial epochs**: {args.limit} of {N_TRAIN} training samples per epoch, "
                 f"times scaled by {N_TRAIN / args.limit:g} to a full epoch; accuracy not comparable."]
    if res.notes:
        head += [""] + [f"- {n}" for n in res.notes]
    tl = ["### Targets (issue 6)", "", "| target | measured | goal | met |", "| --- | ---: | --- | --- |"]
    for t in tg:
        tl.append(f"| {t['target']} | {t['value']:.3f} | {t['goal']} | {'yes' if t['met'] else 'NO'} |")
    if not tg:
        tl.append("| (no dlrun measurement in this run) | | | |")
    text = "\n".join(head) + "\n\n" + "\n\n".join(tables + ["\n".join(tl)]) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text)
    if args.json:
        meta["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "records": res.records, "targets": tg, "notes": res.notes,
                       "dlrun_profile": res.profile}, f, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
