"""dlrun against PyTorch (and NumPy, ONNX Runtime) on every workload, side by side in one run.

    python benchmarks/compare.py        # every workload; writes benchmarks/RESULTS.md (its run
                                        # section), benchmarks/results.json and benchmarks/sweep.png

    python benchmarks/compare.py [--workloads mlp,cnn,text,audio,sweep,threads] [--data-root DIR] [--rounds N]
                                 [--json FILE] [--markdown FILE] [--baseline CHECKOUT] [--quick]

Workloads (each the same network in every tool; ``--workloads`` chooses, default all):

- ``mlp``: the MNIST MLP of ``models/mnist_mlp.net`` (784-512-256-10, ReLU, batch norm after
  each hidden dense, dropout 0.2, softmax cross-entropy, Adam lr 1e-3, float32) at batch 32,
  128 and 512 in dlrun, PyTorch, a hand-written NumPy version (``numpy_mlp.py``) and ONNX
  Runtime (inference, on the NumPy model's weights);
- ``cnn``: issue 12's CNN recipe on MNIST (``_compare_cnn.py``) at batch 64 and 256 in dlrun
  and PyTorch; ONNX Runtime (inference) on a graph built from dlrun's trained weights;
- ``text``: ``models/langid.net`` (embedding, conv1d, max over time ignoring padding, dense)
  and ``audio``: ``models/spoken_digits.net`` (log-mel, conv1d, batch norm, pooling, dense) in
  dlrun and the same networks in PyTorch, translated from the model files
  (``_compare_seq.py``); both tools train on the arrays dlrun's data block makes, once;
- ``sweep``: the training step time of the MNIST MLP recipe with hidden widths 64-2048 at
  batch 32 and 256 and of the CNN recipe at batch 16-256, dlrun vs PyTorch eager, against
  the FLOPs per step and the GEMM floor (``_compare_sweep.py``; a ratio table, and the plot
  ``benchmarks/sweep.png``, ``--sweep-plot``);
- ``threads``: the MLP recipe (batch 128) and the CNN recipe (batch 64) in dlrun and PyTorch,
  each at 1 and 2 threads, once on the machine as it is and once beside ``python -c "while 1:
  pass"`` pinned to one core (``_compare_sweep.part_contention``).

MNIST is read from ``DATA_ROOT/data/mnist`` (or ``--mnist``), the text and audio data from
``DATA_ROOT`` as ``dlrun train --data-root DATA_ROOT`` does (default ``../shared``); a
workload whose data is absent is skipped and the report says so.

Measured per workload:

- training: seconds per epoch (whole epochs in each tool's own loop, a fresh permutation each
  epoch) and the test accuracy after the same number of epochs in every tool (they must agree
  within 0.3 points, 0.5 for text and audio, else the speed comparison is void);
- GEMM floor (MLP, CNN): NumPy sgemm on the GEMMs of one training step -> the FLOP-bound
  epoch time, and each tool's epoch as a multiple of it;
- inference latency at batch 1 and 64 (median and p99 microseconds per call);
- peak resident memory (VmHWM) of one training epoch, a fresh process per tool;
- profile: cProfile of one dlrun epoch (own time per function); for the CNN also dlrun's time
  per layer;
- once: start-up, the process wall time of ``dlrun check models/mnist_mlp.net`` vs
  ``python -c "import torch"`` (and an empty ``python -c pass`` for scale).

A tool that is not installed (PyTorch and ONNX Runtime are benchmark-only: ``pip install
torch==2.13.0 onnxruntime onnx``), or fails, is reported and left out; the run goes on.
``--baseline CHECKOUT`` races the dlrun of another checkout as ``dlrun-baseline`` in the
same rounds (a before/after comparison under the same load).

Every tool runs in its own child process (``_compare_tools.py``), two threads (the ``threads``
workload: 1 and 2). Timings are
interleaved: each round runs every tool once per batch size, in an order rotated from round
to round, after a warm-up round; results are the median and min-max over the rounds, and
ratios to PyTorch are taken per round (paired) because this machine has slow windows in which
2-thread work runs 1.3-2x slower. The load average is reported at the start and the end,
and before and after each workload.
Children get the environment less OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (they pick a
slower OpenBLAS kernel); the kernel that then runs is reported.

``--quick`` is a smoke run: epochs on the first training samples (MLP 6000, CNN 1000, text
1000, audio 400; ``--limit N`` for all; times scaled to a full epoch and labelled so), one
round after warm-up, fewer latency calls. Its accuracy check is not meaningful.
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
DEFAULT_DATA_ROOT = os.path.normpath(os.path.join(REPO, "..", "shared"))
MODEL_FILE = os.path.join("models", "mnist_mlp.net")
TRAIN_TOOLS = ("dlrun", "dlrun-baseline", "pytorch", "pytorch-fused", "numpy")
INFER_TOOLS = ("dlrun", "dlrun-baseline", "pytorch", "numpy", "onnxruntime")
KNOWN_TOOLS = ("dlrun", "pytorch", "pytorch-fused", "numpy", "onnxruntime")
DEFAULT_TOOLS = ("dlrun", "pytorch", "numpy", "onnxruntime")   # pytorch-fused on request
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
ACCURACY_TOLERANCE = 0.3   # percentage points (MLP, CNN: issues 6 and 12)
SEQ_TOLERANCE = 0.5        # text, audio (issue 13)
PARTS = ("train", "latency", "profile", "startup", "memory")
BUSY_LOAD = 1.0            # 1-minute load average above which the machine was not quiet

sys.path.insert(0, HERE)
# _compare_sweep imports this file as ``compare``: let it find this very module (its ToolError)
sys.modules.setdefault("compare", sys.modules[__name__])
from _compare_data import MnistMissing, check_folder  # noqa: E402
from _compare_sweep import CNN_BATCHES as SWEEP_CNN_BATCHES  # noqa: E402
from _compare_sweep import MLP_BATCHES as SWEEP_MLP_BATCHES  # noqa: E402
from _compare_sweep import WIDTHS as SWEEP_WIDTHS  # noqa: E402


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# -- child processes ---------------------------------------------------------------------

class ToolError(Exception):
    """A tool failed during a command; the run goes on without it."""


class Worker:
    """One tool in a child process, driven by JSON lines (see ``_compare_tools.py``)."""

    def __init__(self, tool, args, env, log_dir, wl):
        self.tool = tool
        self.timeout = args.timeout
        self.log_path = os.path.join(log_dir, f"{wl.name}-{tool}.log")
        self.log_file = open(self.log_path, "w")
        cmd = [sys.executable, TOOLS_PY, tool] + wl.worker_args
        if tool == "dlrun-baseline":    # dlrun's runner on the dlrun of another checkout
            cmd = [sys.executable, "-c", BASELINE_BOOT, TOOLS_PY, "dlrun"] + wl.worker_args
            env = dict(env, DLRUN_BASELINE_SRC=args.baseline)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log_file, env=env, cwd=REPO, text=True,
                                     bufsize=1)
        first = self._read()
        self.unavailable = None
        self.data = first.get("data")      # training rows used / of a full epoch
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


# The dlrun of another checkout (its kernels built in place: python setup.py build_ext --inplace):
# its folders take the place of the installed dlrun's, then the worker script runs.
BASELINE_BOOT = """
import importlib.util, os, sys
src = os.environ["DLRUN_BASELINE_SRC"]
sys.path.insert(0, src)
import dlrun
for name, folder in (("dlrun.dsl", "dsl"), ("dlrun.kernels", "kernels"), ("dlrun.runtime", "runtime")):
    spec = importlib.util.spec_from_file_location(name, os.path.join(src, folder, "__init__.py"),
                                                  submodule_search_locations=[os.path.join(src, folder)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
script = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(script))
exec(compile(open(script).read(), script, "exec"), {"__name__": "__main__", "__file__": script})
"""


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


# -- workloads ---------------------------------------------------------------------------

WORKLOADS = ("mlp", "cnn", "text", "audio", "sweep", "threads")
QUICK_LIMITS = {"mlp": 6000, "cnn": 1000, "text": 1000, "audio": 400}
WORKLOAD_TOOLS = {"mlp": None, "cnn": ("dlrun", "pytorch", "onnxruntime"),
                  "text": ("dlrun", "pytorch"), "audio": ("dlrun", "pytorch"), "sweep": ("dlrun", "pytorch"),
                  "threads": ("dlrun", "pytorch")}


class Workload:
    """One network raced in every tool that has it: the worker arguments, batch sizes and
    the words its tables use. ``used``/``full`` (training rows per epoch / of a full epoch)
    come from the first worker's ready reply."""

    def __init__(self, name, title, batches, latency_batch, memory_batch, tolerance, worker_args,
                 latency_input, data_what, recipe, gemm_tool=None, gemm_what="", test=None):
        self.name, self.title, self.batches = name, title, list(batches)
        self.latency_batch, self.memory_batch, self.tolerance = latency_batch, memory_batch, tolerance
        self.worker_args, self.latency_input, self.data_what = worker_args, latency_input, data_what
        self.recipe, self.gemm_tool, self.gemm_what, self.test = recipe, gemm_tool, gemm_what, test
        self.used = self.full = None
        self.notes = []

    @property
    def prefix(self):
        """Record names: the MLP's as before (``train_epoch_b128``), others ``cnn/...``."""
        return "" if self.name == "mlp" else self.name + "/"

    @property
    def partial(self):
        return bool(self.used and self.full and self.used < self.full)

    @property
    def scale(self):
        return self.full / self.used if self.partial else 1.0


def file_batch(model_file):
    from dlrun import dsl

    return int(dsl.load_file(os.path.join(REPO, model_file)).train.batch_size)


def make_workload(name, args, tmp):
    """The ``Workload`` ``name`` for this run, or a string saying why it cannot run here."""
    limit = args.limit if args.limit is not None else (QUICK_LIMITS.get(name) if args.quick else None)
    lim = ["--limit", str(limit)] if limit else []
    if name in ("mlp", "cnn", "sweep", "threads"):
        try:
            check_folder(args.mnist)
        except MnistMissing as e:
            return (f"MNIST not found ({e}): training, latency and memory are skipped; "
                    f"pass --mnist DIR with the four IDX files, or --data-root DIR holding data/mnist")
    if name == "mlp":
        return Workload(
            "mlp", "MLP (models/mnist_mlp.net)", args.batch_sizes,
            128 if 128 in args.batch_sizes else args.batch_sizes[0], 128, ACCURACY_TOLERANCE,
            ["--workload", "mlp", "--mnist", args.mnist, "--label-smoothing", repr(args.label_smoothing)] + lim,
            "a float32 array in [0, 1] (dlrun: the raw uint8 pixels, which its model file scales by "
            "1/255 inside predict)", "MNIST as uint8",
            "784-512-256-10, dense+ReLU, batch norm, dropout 0.2; softmax cross-entropy"
            + (f" with label smoothing {args.label_smoothing:g} (the file's; PyTorch and NumPy use the same)"
               if args.label_smoothing else "")
            + "; Adam lr 1e-3; He normal / Xavier uniform initialisation; float32",
            gemm_tool="numpy", gemm_what="the 8 GEMMs: 3 forward, 3 weight gradients, 2 input gradients",
            test=10000)
    if name == "sweep":
        # every configuration's step count is its own (small in --quick): --limit does not apply
        from _compare_sweep import configurations, rows_needed

        return Workload(
            "sweep", "Size sweep (MNIST MLP widths, CNN recipe batches)", [], None, None, None,
            ["--workload", "sweep", "--mnist", args.mnist, "--label-smoothing", repr(args.label_smoothing),
             "--limit", str(rows_needed(configurations(args)))],
            "", "MNIST as uint8",
            f"the MNIST MLP recipe (784-H-H-10: 3 dense layers) at widths H = "
            f"{', '.join(map(str, args.sweep_widths))} x batch {', '.join(map(str, args.sweep_batches))}; "
            f"the CNN recipe at batch {', '.join(map(str, args.sweep_cnn_batches))} (benchmarks/_compare_sweep.py)",
            test=None)
    if name == "threads":
        from _compare_sweep import contention_configs, rows_needed

        return Workload(
            "threads", "BLAS threads under contention (MLP recipe, CNN recipe)", [], None, None, None,
            ["--workload", "sweep", "--mnist", args.mnist, "--label-smoothing", repr(args.label_smoothing),
             "--limit", str(rows_needed(contention_configs(args)))],
            "", "MNIST as uint8",
            "models/mnist_mlp.net's network (784-512-256-10) at batch 128 and the CNN recipe at batch 64, "
            "dlrun and PyTorch eager each at 1 and 2 threads (benchmarks/_compare_sweep.py)", test=None)
    if name == "cnn":
        return Workload(
            "cnn", "CNN recipe (issue 12)", args.cnn_batch_sizes, args.cnn_batch_sizes[0],
            args.cnn_batch_sizes[0], ACCURACY_TOLERANCE,
            ["--workload", "cnn", "--mnist", args.mnist] + lim,
            "a float32 array (n, 784) in [0, 1] for every tool", "MNIST as uint8",
            "input 1x28x28, conv2d 16 3x3 same, batchnorm, relu, maxpool 2x2, conv2d 32 3x3 same, "
            "batchnorm, relu, maxpool 2x2, flatten, dense 128 relu, dropout 0.25, dense 10 softmax; "
            "cross-entropy, Adam 1e-3, float32, images scaled to [0, 1] once (benchmarks/_compare_cnn.py); "
            "PyTorch: the same layers with its default initialisation",
            gemm_tool="dlrun", gemm_what="each layer's forward, weight-gradient and input-gradient "
            "product over the whole batch (im2col columns of all samples side by side; none for the "
            "first convolution's input gradient)", test=10000)
    # text / audio: dlrun's data block makes the arrays both tools train on, once
    from _compare_seq import MODELS, data_paths

    model_file = os.path.relpath(MODELS[name], REPO)
    missing = [p for p in data_paths(name, args.data_root) if not os.path.exists(p)]
    if missing:
        return (f"{model_file}'s data not found ({', '.join(missing)}): the {name} workload is "
                f"skipped; pass --data-root DIR (the folder holding data/, as for `dlrun train "
                f"{model_file} --data-root DIR`)")
    out = os.path.join(tmp, f"{name}.npz")
    cmd = [sys.executable, TOOLS_PY, "prepare", "--workload", name, "--data-root", args.data_root,
           "--data", out] + lim
    p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return f"{model_file}: reading its data with dlrun failed (exit {p.returncode}): {p.stderr.strip()[-800:]}"
    batch = args.seq_batch or file_batch(model_file)
    wl = Workload(
        name, ("Text: " if name == "text" else "Audio: ") + model_file, [batch], batch, batch, SEQ_TOLERANCE,
        ["--workload", name, "--data", out, "--data-root", args.data_root],
        "the prepared float32 arrays ("
        + ("token ids" if name == "text" else "log-mel frames; PyTorch's standardized by dlrun's fitted "
           "preprocessor, dlrun's standardized inside predict") + ")",
        "the prepared arrays",
        f"the network of {model_file} (its optimizer and learning rate, batch {batch}) in both tools; "
        "PyTorch's translated layer by layer (benchmarks/_compare_seq.py)", test=info["test"])
    wl.data_info = info
    wl.notes.append(
        f"{wl.title}: data read by dlrun's data block in {info['load_seconds']:.2f} s "
        f"({'tokenize' if name == 'text' else 'WAV decode, log-mel features'}; all splits): "
        f"{info['train']} of {info['train_full']} training rows used"
        + (f" (the file's validation split of {info['validation_held_out']} left out)"
           if info["validation_held_out"] else "")
        + f", {info['test']} test rows, input {'x'.join(map(str, info['shape']))}")
    return wl


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
        self.profile = {}

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

def part_train(args, wl, workers, res, tables):
    tools = [t for t in TRAIN_TOOLS if t in workers]
    batches = wl.batches
    scale = wl.scale
    P = wl.prefix
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
            if wl.gemm_tool in workers and wl.gemm_tool not in failed and "gemm" not in failed:
                time.sleep(args.pause)
                try:
                    g = workers[wl.gemm_tool].call("gemm", batch=b, repeats=args.gemm_repeats)["gemms"]
                except ToolError as e:
                    log(f"  {e}")
                    failed.add("gemm")
                    continue
                steps = -(-wl.full // b)
                floor = steps * sum(x[2] for x in g)
                if r >= args.warmup:
                    floors[b].append(floor)
                    gemm_detail[b].append(g)
                line.append(f"GEMM floor {floor:.2f}s")
            log(f"[{wl.name} train {label}] batch {b}: " + ", ".join(line))
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
    partial = f" (partial epochs of {wl.used} samples, time x{scale:g})" if wl.partial else ""
    for b in batches:
        fl = floors[b]
        if fl:
            flops = sum(x[1] for x in gemm_detail[b][0])
            step_times = [sum(x[2] for x in g) for g in gemm_detail[b]]
            gflops = [flops / s / 1e9 for s in step_times]
            res.add(f"{P}gemm_floor_epoch_b{b}", "numpy-sgemm", "s", fl,
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
            if wl.partial:
                extra["partial_epoch_samples"] = wl.used
                extra["time_scaled_to_full_epoch"] = scale
            if (b, t) in acc:
                extra["test_accuracy"] = acc[(b, t)]
            if len(fl) == len(v):
                extra["x_gemm_floor"] = stats([a / f for a, f in zip(v, fl)])
            rec = res.add(f"{P}train_epoch_b{b}", t, "s", v, ref=ref if t != "pytorch" else None, **extra)
            if t == "pytorch":
                rec["ratio_to_pytorch"] = 1.0
        # Accuracy agreement.
        if (b, "pytorch") in acc:
            for t in tools:
                if (b, t) in acc:
                    diff = 100 * (acc[(b, t)] - acc[(b, "pytorch")])
                    hist = acc_hist[(b, t)]
                    res.add(f"{P}test_accuracy_b{b}", t, "fraction", [acc[(b, t)]],
                            batch=b, epochs=n_rounds, diff_points_vs_pytorch=diff,
                            per_epoch=hist, mean_last3=float(np.mean(hist[-3:])),
                            diff_points_mean_last3_vs_pytorch=100 * (
                                np.mean(hist[-3:]) - np.mean(acc_hist[(b, "pytorch")][-3:])),
                            tolerance_points=wl.tolerance,
                            agrees=bool(abs(diff) <= wl.tolerance) if not wl.partial else None)
        elif acc:
            for t in tools:
                if (b, t) in acc:
                    res.add(f"{P}test_accuracy_b{b}", t, "fraction", [acc[(b, t)]], batch=b, epochs=n_rounds)

    # Table.
    lines = [f"#### Training: seconds per epoch{partial}",
             "",
             f"{args.rounds} interleaved rounds after {args.warmup} warm-up; whole epochs of "
             f"{wl.used} training samples, timed in the tool's own loop; median [min-max]; "
             "speed-up = PyTorch / tool per round (median [min-max]); "
             + (f"floor = FLOP-bound epoch from the step's GEMMs (NumPy sgemm, {wl.gemm_what}); "
                if wl.gemm_tool else "")
             + f"accuracy on the {wl.test} test samples after "
             f"{n_rounds} epochs. CPU s = CPU time of all the tool's threads per epoch "
             "(median; about 2x the wall time when both cores are the tool's).",
             "",
             "| batch | tool | s/epoch | speed-up vs PyTorch | x GEMM floor | CPU s/epoch | test accuracy |",
             "| ---: | --- | --- | --- | --- | ---: | --- |"]
    for b in batches:
        f = res.get(f"{P}gemm_floor_epoch_b{b}", "numpy-sgemm")
        for t in tools:
            r = res.get(f"{P}train_epoch_b{b}", t)
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
            a_rec = res.get(f"{P}test_accuracy_b{b}", t)
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
            r = res.get(f"{P}test_accuracy_b{b}", t)
            if r and t != "pytorch" and "diff_points_vs_pytorch" in r:
                ok = r["agrees"]
                verdict = ("n/a (--quick)" if ok is None else
                           "agrees" if ok else "DISAGREES: speed comparison void")
                acc_lines.append(f"- batch {b}: {t} {100 * r['median']:.2f} % vs PyTorch "
                                 f"{100 * res.get(f'{P}test_accuracy_b{b}', 'pytorch')['median']:.2f} % "
                                 f"({r['diff_points_vs_pytorch']:+.2f} points, tolerance "
                                 f"{wl.tolerance}): {verdict}; mean of the last "
                                 f"{min(3, len(r['per_epoch']))} epochs "
                                 f"{r['diff_points_mean_last3_vs_pytorch']:+.2f} points")
    if acc_lines:
        tables.append(f"Accuracy agreement after {n_rounds} epochs:\n\n" + "\n".join(acc_lines))

    gl = ["#### GEMM floor: the GEMMs of one training step (NumPy sgemm, µs)", "",
          f"Best of {args.gemm_repeats} calls per round (median over rounds); the floor is their "
          "sum times the steps per epoch. In brackets: the median call.", "",
          "| GEMM | " + " | ".join(f"batch {b}" for b in batches) + " |",
          "| --- |" + " ---: |" * len(batches)]
    recs = {b: res.get(f"{P}gemm_floor_epoch_b{b}", "numpy-sgemm") for b in batches}
    if all(recs.values()):
        names = list(recs[batches[0]]["gemms"])
        for nm in names:
            gl.append(f"| {nm} | " + " | ".join(f"{recs[b]['gemms'][nm]['best_us']:.1f} "
                                                f"({recs[b]['gemms'][nm]['median_us']:.1f})"
                                                for b in batches) + " |")
        gl.append("| step GFLOP/s | " + " | ".join(f"{recs[b]['gflops']['median']:.0f}"
                                                    for b in batches) + " |")
        tables.append("\n".join(gl))


def onnx_from_dlrun(args, wl, workers, res, b, tmp):
    """CNN: ONNX Runtime's session from dlrun's trained weights; its test accuracy must be dlrun's."""
    path = os.path.join(tmp, f"{wl.name}_dlrun_weights.npz")
    if "dlrun" not in workers:
        raise ToolError("onnxruntime: needs the dlrun worker's trained weights")
    try:
        a_dl = workers["dlrun"].call("evaluate", batch=b)["accuracy"]
    except ToolError:
        workers["dlrun"].call("setup", batch=b, seed=args.seed)
        workers["dlrun"].call("epoch", batch=b)
        a_dl = workers["dlrun"].call("evaluate", batch=b)["accuracy"]
    workers["dlrun"].call("export", batch=b, path=path)
    workers["onnxruntime"].call("load", batch=b, path=path)
    a_ort = workers["onnxruntime"].call("evaluate", batch=b)["accuracy"]
    res.notes.append(f"{wl.title}: ONNX Runtime runs a graph built from dlrun's trained weights (the "
                     f"batch-{b} model; Conv, BatchNormalization, Relu, MaxPool, Flatten, Gemm as "
                     f"the layers are written, softmax at the end): test accuracy {100 * a_ort:.2f} % "
                     f"(dlrun {100 * a_dl:.2f} %)")
    if abs(a_ort - a_dl) > 0.001:
        raise ToolError(f"onnxruntime: graph disagrees with dlrun ({a_ort} vs {a_dl})")


def part_latency(args, wl, workers, res, tables, tmp):
    tools = [t for t in INFER_TOOLS if t in workers]
    b = wl.latency_batch
    P = wl.prefix
    ready = []
    for t in tools:
        try:
            if t == "onnxruntime" and wl.name != "mlp":
                onnx_from_dlrun(args, wl, workers, res, b, tmp)
            elif t == "onnxruntime":
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
    lines = ["#### Inference latency (µs per predict call, eval mode)", "",
             f"{args.rounds} interleaved rounds of {args.latency_calls} calls at batch 1 and "
             f"{max(args.latency_calls // 4, 50)} at batch 64, after warm-up; "
             "median and p99 over all calls, [min-max] of the per-round medians; "
             f"ratio = tool / PyTorch median. Model: the one trained at batch {b} above. "
             f"Input: {wl.latency_input}.", "",
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
                log(f"[{wl.name} latency batch {n}] round {r - args.warmup + 1}/{args.rounds}: " +
                    ", ".join(f"{t} {medians[t][-1]:.0f}us" for t in samples if medians[t]))
        pooled = {t: np.concatenate(samples[t]) for t in samples if samples[t]}
        ref = None
        if "pytorch" in pooled:
            ref = {"median": float(np.median(pooled["pytorch"])), "rounds": medians["pytorch"]}
        for t in pooled:
            med = float(np.median(pooled[t]))
            p99 = float(np.percentile(pooled[t], 99))
            rec = res.add(f"{P}predict_latency_b{n}", t, "us", medians[t],
                          ref=ref if t != "pytorch" else None,
                          batch=n, calls=int(pooled[t].size), p99=p99, pooled_median=med)
            rec["median"] = med   # the median over every call (the per-round medians are in rounds)
            if ref is not None:
                rec["ratio_to_pytorch"] = med / ref["median"]
        ort = res.get(f"{P}predict_latency_b{n}", "onnxruntime")
        for t in pooled:
            rec = res.get(f"{P}predict_latency_b{n}", t)
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


def part_profile(args, wl, workers, res, tables):
    """cProfile of one dlrun training epoch: where its time goes (the CNN: and per layer)."""
    if "dlrun" not in workers:
        return
    b = wl.latency_batch
    if wl.name == "cnn":
        part_layers(args, wl, workers, res, tables)
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
    res.profile[wl.name] = prof
    wall = prof["wall_s"]
    lines = [f"#### Where one dlrun epoch goes (cProfile, batch {b}"
             + (f", {wl.used} samples" if wl.partial else "") + ")", "",
             f"Epoch wall under the profiler: {wall:.2f} s. Own time per function (BLAS and "
             "Cython kernels count in the Python function that calls them).", "",
             "| function | calls | own s | share |", "| --- | ---: | ---: | ---: |"]
    for r in prof["top"]:
        lines.append(f"| `{r['function']}` | {r['calls']} | {r['own_s']:.3f} | "
                     f"{100 * r['own_s'] / wall:.0f} % |")
    tables.append("\n".join(lines))


def part_layers(args, wl, workers, res, tables):
    """dlrun's per-layer forward (training mode) and backward times at each batch size."""
    got = {}
    for b in wl.batches:
        try:
            got[b] = workers["dlrun"].call("layers", batch=b, reps=args.layer_reps)["layers"]
        except ToolError as e:
            log(f"  {e}")
    if not got:
        return
    res.add(f"{wl.prefix}layers_ms", "dlrun", "ms", [0.0], per_batch={str(b): v for b, v in got.items()})
    bs = list(got)
    lines = [f"#### dlrun per layer (median ms of {args.layer_reps} training steps on one batch)", "",
             "Forward in training mode / backward, each layer timed alone (the sum is about one step).", "",
             "| layer | " + " | ".join(f"b{b} fwd | b{b} bwd" for b in bs) + " |",
             "| --- |" + " ---: | ---: |" * len(bs)]
    for i, row in enumerate(got[bs[0]]):
        cells = []
        for b in bs:
            _, f, bk = got[b][i]
            cells += [f"{f:.3f}", "" if bk is None else f"{bk:.3f}"]
        lines.append(f"| {row[0]} | " + " | ".join(cells) + " |")
    lines.append("| step (sum) | " + " | ".join(
        f"{sum(r[1] for r in got[b]):.2f} | {sum(r[2] or 0 for r in got[b]):.2f}" for b in bs) + " |")
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


def part_memory(args, wl, env, res, tables, tools):
    mb = wl.memory_batch
    lines = [f"#### Peak resident memory of one training epoch (batch {mb}, a fresh "
             "process each)", "",
             f"VmHWM of the process; 'data' = resident after loading {wl.data_what} (the same "
             "loader for all), 'ready' = after the tool's own set-up (PyTorch converts the set "
             "to tensors)" + (f"; epochs of {wl.used} samples" if wl.partial else "") + ".", "",
             "| tool | peak MiB | interpreter MiB | + data MiB | ready MiB | ratio to PyTorch |",
             "| --- | ---: | ---: | ---: | ---: | --- |"]
    got = {}
    for t in tools:
        cmd = [sys.executable, TOOLS_PY, t, "--memory", "--batch", str(mb)] + wl.worker_args
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
        log(f"[{wl.name} memory] {t}: peak {rec['vmhwm_kib'] / 1024:.0f} MiB")
    ref = got.get("pytorch")
    for t, rec in got.items():
        mib = rec["vmhwm_kib"] / 1024
        r = res.add(f"{wl.prefix}peak_rss_train_epoch_b{mb}", t, "MiB", [mib],
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
        out.append({"target": "dlrun check wall (s; issue 16 item 7)", "value": s["median"], "goal": "<= 0.10",
                    "met": s["median"] <= 0.10})
    m = res.get("peak_rss_train_epoch_b128", "dlrun")
    if m and "ratio_to_pytorch" in m:
        out.append({"target": "training peak RSS / PyTorch", "value": m["ratio_to_pytorch"],
                    "goal": "<= 0.4", "met": m["ratio_to_pytorch"] <= 0.4})
    for r in res.records:
        if r["work"].startswith("test_accuracy_b") and r["tool"] == "dlrun" and r.get("agrees") is not None:
            out.append({"target": f"test accuracy vs PyTorch, batch {r['batch']} (points)",
                        "value": r["diff_points_vs_pytorch"], "goal": f"abs(d) <= {ACCURACY_TOLERANCE}",
                        "met": r["agrees"]})
    out += workload_targets(res, "cnn", "CNN", {64: 3.0, 256: 2.0}, floor=(64, 2.0), latency=0.4,
                            ort=1.0, memory=0.5)
    out += sweep_targets(res)
    out += workload_targets(res, "text", "text", {None: 2.0})
    out += workload_targets(res, "audio", "audio", {None: 2.0})
    return out


def sweep_targets(res):
    """Issue 16's size-sweep goals: not slower than PyTorch anywhere, >= 1.5x where fixed costs
    dominate (the smallest step), within 1.3x of the GEMM floor where GEMMs dominate (the
    largest MLP step)."""
    recs = [r for r in res.records if r["work"].startswith("sweep/step_") and r["tool"] == "dlrun"
            and r.get("paired_ratio_to_pytorch")]
    if not recs:
        return []
    sp = {r["config"]: 1 / r["paired_ratio_to_pytorch"]["median"] for r in recs}
    worst = min(sp, key=sp.get)
    small = min(recs, key=lambda r: r["step_gflop"])
    out = [{"target": f"sweep: lowest speed-up vs PyTorch ({worst})", "value": sp[worst], "goal": ">= 1x",
            "met": sp[worst] >= 1.0},
           {"target": f"sweep: speed-up where fixed costs dominate ({small['config']})",
            "value": sp[small["config"]], "goal": ">= 1.5x", "met": sp[small["config"]] >= 1.5}]
    big = max((r for r in recs if r["config"].startswith("mlp") and "x_gemm_floor" in r),
              key=lambda r: r["step_gflop"], default=None)
    if big is not None:
        x = big["x_gemm_floor"]["median"]
        out.append({"target": f"sweep: step / GEMM floor where GEMMs dominate ({big['config']})", "value": x,
                    "goal": "<= 1.3", "met": x <= 1.3})
    return out


def workload_targets(res, name, label, speedups, floor=None, latency=None, ort=None, memory=None):
    """Issue 12's (CNN) and issue 13's (text, audio) targets this run measured."""
    P = name + "/"
    out = []
    trained = sorted({r["batch"] for r in res.records
                      if r["work"].startswith(P + "train_epoch_b") and r["tool"] == "dlrun"})
    for b in trained:
        goal = speedups.get(b, speedups.get(None))
        r = res.get(f"{P}train_epoch_b{b}", "dlrun")
        a = res.get(f"{P}test_accuracy_b{b}", "dlrun")
        void = a is not None and a.get("agrees") is False
        if goal is not None and r.get("paired_ratio_to_pytorch"):
            sp = 1 / r["paired_ratio_to_pytorch"]["median"]
            out.append({"target": f"{label} training speed-up vs PyTorch, batch {b}"
                        + (" (void: accuracy differs)" if void else ""), "value": sp,
                        "goal": f">= {goal:g}x", "met": sp >= goal and not void})
        if floor and b == floor[0] and "x_gemm_floor" in r:
            x = r["x_gemm_floor"]["median"]
            out.append({"target": f"{label} epoch at batch {b} / GEMM floor", "value": x,
                        "goal": f"<= {floor[1]:g}", "met": x <= floor[1]})
        if a is not None and a.get("agrees") is not None:
            out.append({"target": f"{label} test accuracy vs PyTorch, batch {b} (points)",
                        "value": a["diff_points_vs_pytorch"], "goal": f"abs(d) <= {a['tolerance_points']:g}",
                        "met": a["agrees"]})
    for n in (1, 64):
        dl = res.get(f"{P}predict_latency_b{n}", "dlrun")
        if dl is None:
            continue
        if latency is not None and "ratio_to_pytorch" in dl:
            out.append({"target": f"{label} predict latency / PyTorch, batch {n}", "value": dl["ratio_to_pytorch"],
                        "goal": f"<= {latency:g}", "met": dl["ratio_to_pytorch"] <= latency})
        if ort is not None and "ratio_to_onnxruntime" in dl:
            out.append({"target": f"{label} predict latency / ONNX Runtime, batch {n}",
                        "value": dl["ratio_to_onnxruntime"], "goal": f"<= {ort:g}",
                        "met": dl["ratio_to_onnxruntime"] <= ort})
    for r in res.records:
        if memory is not None and r["work"].startswith(P + "peak_rss") and r["tool"] == "dlrun" \
                and "ratio_to_pytorch" in r:
            out.append({"target": f"{label} training peak RSS / PyTorch", "value": r["ratio_to_pytorch"],
                        "goal": f"<= {memory:g}", "met": r["ratio_to_pytorch"] <= memory})
    return out


# -- machine -----------------------------------------------------------------------------

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
            parts.append(f"{k} {info[k]}" + (f" ({os.path.relpath(info['dlrun_path'], REPO)})"
                                            if k == "dlrun" and info.get("dlrun_path") else ""))
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
    p.add_argument("--json", metavar="FILE", help="write every record (and the targets) as JSON "
                   "(default for a full run: benchmarks/results.json)")
    p.add_argument("--markdown", metavar="FILE",
                   help="also write the tables to FILE (default for a full run: benchmarks/RESULTS.md); "
                        "a FILE holding the markers "
                        f"'{RUN_BEGIN}' and '{RUN_END}' (benchmarks/RESULTS.md) keeps what lies outside them")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"workloads to run, comma-separated from {','.join(WORKLOADS)} (default all)")
    p.add_argument("--rounds", type=int, default=None, help="measured rounds (default 5; 1 with --quick)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up rounds before measuring (default 1)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, metavar="DIR",
                   help="the folder holding data/mnist, data/langid and data/spoken_digits, as for "
                        f"`dlrun train --data-root` (default {DEFAULT_DATA_ROOT})")
    p.add_argument("--mnist", default=None, metavar="DIR",
                   help="folder with the four MNIST IDX files (default DATA_ROOT/data/mnist)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: partial epochs (" + ", ".join(f"{k} {v}" for k, v in QUICK_LIMITS.items())
                        + " samples), 1 round, fewer calls")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="train every workload on its first N training samples (times scaled to a full "
                        "epoch, labelled)")
    p.add_argument("--batch-sizes", default="32,128,512", help="MLP training batch sizes")
    p.add_argument("--cnn-batch-sizes", default="64,256",
                   help="CNN training batch sizes (the first also serves latency and memory)")
    p.add_argument("--sweep-widths", default=",".join(map(str, SWEEP_WIDTHS)),
                   help="size sweep: hidden widths of the MLP (both hidden layers)")
    p.add_argument("--sweep-batches", default=",".join(map(str, SWEEP_MLP_BATCHES)),
                   help="size sweep: MLP batch sizes")
    p.add_argument("--sweep-cnn-batches", default=",".join(map(str, SWEEP_CNN_BATCHES)),
                   help="size sweep: CNN batch sizes")
    p.add_argument("--sweep-plot", metavar="FILE.png", default=None,
                   help="size sweep: the plot of step time against FLOPs per step (default "
                        "benchmarks/sweep.png; none with --quick unless given)")
    p.add_argument("--seq-batch", type=int, default=None,
                   help="text and audio training batch (default: each model file's)")
    p.add_argument("--tools", default=",".join(DEFAULT_TOOLS),
                   help=f"tools to run, comma-separated from {','.join(KNOWN_TOOLS)} "
                        f"(default {','.join(DEFAULT_TOOLS)}; pytorch-fused = Adam(fused=True), "
                        "MLP training only; numpy: MLP only; onnxruntime: MLP and CNN inference)")
    p.add_argument("--parts", default=",".join(PARTS),
                   help=f"parts to run, comma-separated from {','.join(PARTS)} (default all; "
                        "profile = cProfile of one dlrun epoch, and the CNN's per-layer times)")
    p.add_argument("--latency-calls", type=int, default=None, help="predict calls per round at batch 1")
    p.add_argument("--layer-reps", type=int, default=None, help="CNN per-layer: steps timed (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pause", type=float, default=0.2,
                   help="seconds of idle between tools (lets spinning threads park)")
    p.add_argument("--timeout", type=float, default=1800,
                   help="seconds a tool may take for one command before it is killed")
    p.add_argument("--baseline", metavar="CHECKOUT",
                   help="also race the dlrun of another checkout (kernels built in place with "
                        "`python setup.py build_ext --inplace`), e.g. the commit before a change, as "
                        "the tool dlrun-baseline in the same interleaved rounds")
    p.add_argument("--keep-blas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE for the children")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.latency_calls is None:
        args.latency_calls = 200 if args.quick else 1000
    if args.layer_reps is None:
        args.layer_reps = 3 if args.quick else 20
    args.gemm_repeats = 10 if args.quick else 30
    args.startup_rounds = 3 if args.quick else max(args.rounds, 5)
    # A full run (every workload and part, whole epochs, not --quick) is the one RESULTS.md holds:
    # it writes there unless told otherwise; any other run writes only what it is asked to.
    full = (not args.quick and args.limit is None and args.workloads == ",".join(WORKLOADS)
            and args.parts == ",".join(PARTS))
    if full:
        args.markdown = args.markdown or os.path.join(HERE, "RESULTS.md")
        args.json = args.json or os.path.join(HERE, "results.json")
    if args.sweep_plot is None and not args.quick:
        args.sweep_plot = os.path.join(HERE, "sweep.png")
    for name in ("batch_sizes", "cnn_batch_sizes", "sweep_widths", "sweep_batches", "sweep_cnn_batches"):
        raw = getattr(args, name)
        try:
            setattr(args, name, [int(b) for b in raw.split(",") if b])
        except ValueError:
            p.error(f"--{name.replace('_', '-')} must be comma-separated integers, got {raw!r}")
        if not getattr(args, name) or min(getattr(args, name)) < 1:
            p.error(f"--{name.replace('_', '-')}: {'widths' if 'widths' in name else 'batch sizes'} >= 1, "
                    f"got {raw!r}")
    args.tools = [t for t in args.tools.split(",") if t]
    args.parts = [t for t in args.parts.split(",") if t]
    args.workloads = [t for t in args.workloads.split(",") if t]
    for what, got, known in (("tool", args.tools, KNOWN_TOOLS), ("part", args.parts, PARTS),
                             ("workload", args.workloads, WORKLOADS)):
        bad = [t for t in got if t not in known]
        if bad:
            p.error(f"unknown {what}(s) {', '.join(bad)}; known: {', '.join(known)}")
    if not args.workloads:
        p.error("--workloads: name at least one of " + ", ".join(WORKLOADS))
    if args.rounds < 1 or args.warmup < 0:
        p.error("--rounds must be >= 1, --warmup >= 0")
    if args.seq_batch is not None and args.seq_batch < 1:
        p.error(f"--seq-batch must be >= 1, got {args.seq_batch}")
    if args.limit is not None and args.limit < 1:
        p.error(f"--limit must be >= 1, got {args.limit}")
    if args.baseline:
        if not os.path.isdir(os.path.join(args.baseline, "runtime")):
            p.error(f"--baseline {args.baseline}: not a dlrun checkout (no runtime/ folder)")
        args.baseline = os.path.abspath(args.baseline)
        if "dlrun-baseline" not in args.tools:
            args.tools.insert(1, "dlrun-baseline")
    args.data_root = os.path.abspath(args.data_root)
    args.mnist = os.path.abspath(args.mnist or os.path.join(args.data_root, "data", "mnist"))
    return args


def start_workers(args, wl, env, tmp, meta, res):
    tools = [t for t in args.tools if WORKLOAD_TOOLS[wl.name] is None or t in WORKLOAD_TOOLS[wl.name]
             or t == "dlrun-baseline"]
    workers = {}
    for t in tools:
        if t == "onnxruntime" and "latency" not in args.parts:
            continue
        if t == "pytorch-fused" and "train" not in args.parts:
            continue
        if t != "dlrun" and not ({"train", "latency"} & set(args.parts)):
            continue    # profile only
        log(f"starting {wl.name} {t} ...")
        try:
            w = Worker(t, args, env, tmp, wl)
        except ToolError as e:
            log(f"  {e}")
            res.notes.append(f"{wl.title}: {t} failed to start")
            continue
        if w.unavailable:
            msg = f"{wl.title}: {t} skipped: {w.unavailable}"
            log("  " + msg)
            res.notes.append(msg)
            continue
        workers[t] = w
        if w.data and wl.used is None and wl.batches:   # the sweep's steps are per configuration
            wl.used, wl.full = w.data["train"], w.data["train_full"]
        info = w.call("info")
        info.pop("ok", None)
        meta["tools"].setdefault(t, info)
    return workers


def run_workload(args, wl, env, tmp, meta, res, tables):
    workers = {}
    if wl.name == "threads":   # one worker per tool and thread count
        if "train" in args.parts:
            from _compare_sweep import CONTENTION_THREADS, part_contention

            try:
                for t in [t for t in args.tools if t in WORKLOAD_TOOLS["threads"]]:
                    for n in CONTENTION_THREADS:
                        shim = Workload(f"threads-{n}t", wl.title, [], None, None, None,
                                        wl.worker_args + ["--threads", str(n)], "", "", "")
                        log(f"starting threads {t} at {n} thread(s) ...")
                        try:
                            w = Worker(t, args, env, tmp, shim)
                        except ToolError as e:
                            log(f"  {e}")
                            res.notes.append(f"{wl.title}: {t} failed to start")
                            break
                        if w.unavailable:
                            res.notes.append(f"{wl.title}: {t} skipped: {w.unavailable}")
                            break
                        workers[(t, n)] = w
                part_contention(args, workers, res, tables)
            finally:
                for w in workers.values():
                    w.close()
        return
    if wl.name == "sweep":   # training steps only
        if "train" in args.parts:
            from _compare_sweep import part_sweep

            try:
                workers = start_workers(args, wl, env, tmp, meta, res)
                part_sweep(args, workers, res, tables)
            finally:
                for w in workers.values():
                    w.close()
        return
    try:
        if {"train", "latency", "profile"} & set(args.parts):
            workers = start_workers(args, wl, env, tmp, meta, res)
            if "train" in args.parts:
                part_train(args, wl, {t: w for t, w in workers.items() if t in TRAIN_TOOLS}, res, tables)
            if "latency" in args.parts:
                part_latency(args, wl, workers, res, tables, tmp)
            if "profile" in args.parts:
                part_profile(args, wl, workers, res, tables)
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
    if "memory" in args.parts:
        tools = [t for t in args.tools if t in TRAIN_TOOLS and t not in ("pytorch-fused", "dlrun-baseline")
                 and (WORKLOAD_TOOLS[wl.name] is None or t in WORKLOAD_TOOLS[wl.name])]
        part_memory(args, wl, env, res, tables, tools)


RUN_BEGIN = "<!-- compare.py run: begin -->"
RUN_END = "<!-- compare.py run: end -->"


def summary_table(res, ran):
    """One table over every workload: dlrun against PyTorch, per round ratios with their spread."""
    lines = ["### Summary: dlrun against PyTorch eager", "",
             "Per workload and batch: seconds per epoch (median over rounds), speed-up = PyTorch / "
             "dlrun per round, median [min-max]; test accuracy of each after the same epochs; predict "
             "latency dlrun / PyTorch (median µs of every call; ONNX Runtime where it ran); peak RSS "
             "dlrun / PyTorch.", "",
             "| workload | batch | dlrun s/epoch | PyTorch s/epoch | speed-up | accuracy dlrun / PyTorch "
             "| latency b1 / PyTorch | latency b64 / PyTorch | latency b1, b64 / ONNX Runtime | peak RSS / PyTorch |",
             "| --- | ---: | ---: | ---: | --- | --- | --- | --- | --- | --- |"]
    for wl in ran:
        P = wl.prefix
        first = True
        for b in wl.batches:
            d, t = res.get(f"{P}train_epoch_b{b}", "dlrun"), res.get(f"{P}train_epoch_b{b}", "pytorch")
            if d is None:
                continue
            sp = ""
            if d.get("paired_ratio_to_pytorch"):
                pr = d["paired_ratio_to_pytorch"]
                sp = f"{1 / pr['median']:.2f}x [{1 / pr['max']:.2f}-{1 / pr['min']:.2f}]"
            ad, at = res.get(f"{P}test_accuracy_b{b}", "dlrun"), res.get(f"{P}test_accuracy_b{b}", "pytorch")
            acc = (f"{100 * ad['median']:.2f} / {100 * at['median']:.2f} %" if ad and at else
                   f"{100 * ad['median']:.2f} % / -" if ad else "")
            lat = ["", "", ""]
            mem = ""
            if first:
                for i, n in enumerate((1, 64)):
                    r = res.get(f"{P}predict_latency_b{n}", "dlrun")
                    if r and "ratio_to_pytorch" in r:
                        lat[i] = f"{r['ratio_to_pytorch']:.2f} ({r['median']:.0f} µs)"
                ort = [res.get(f"{P}predict_latency_b{n}", "dlrun") for n in (1, 64)]
                if all(r and "ratio_to_onnxruntime" in r for r in ort):
                    lat[2] = ", ".join(f"{r['ratio_to_onnxruntime']:.2f}" for r in ort)
                m = next((r for r in res.records if r["work"].startswith(P + "peak_rss") and r["tool"] == "dlrun"), None)
                if m and "ratio_to_pytorch" in m:
                    mem = f"{m['ratio_to_pytorch']:.2f} ({m['median']:.0f} MiB)"
            pt = "" if t is None else f"{t['median']:.2f}"
            lines.append(f"| {wl.name} | {b} | {d['median']:.2f} | {pt} "
                         f"| {sp} | {acc} | {lat[0]} | {lat[1]} | {lat[2]} | {mem} |")
            first = False
    return "\n".join(lines)


def write_markdown(path, text):
    """``text`` into ``path``: between the run markers when the file has them, else the whole file."""
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else ""
    if RUN_BEGIN in old and RUN_END in old.split(RUN_BEGIN, 1)[1]:
        head, rest = old.split(RUN_BEGIN, 1)
        tail = rest.split(RUN_END, 1)[1]
        text = head + RUN_BEGIN + "\n\n" + text.strip("\n") + "\n\n" + RUN_END + tail
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main(argv=None):
    args = parse_args(argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
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
            "limit": args.limit, "workloads": {}, "tools": {},
            "recipe": {"label_smoothing": recipe["label_smoothing"], "model_file": MODEL_FILE,
                       "model_layers": recipe.get("layers")}}
    if "mlp" in args.workloads:
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

    tmp = tempfile.mkdtemp(prefix="dlrun-compare-")
    ran = []
    try:
        for name in args.workloads:
            log(f"== {name} ==")
            wl = make_workload(name, args, tmp)
            if isinstance(wl, str):
                log(wl)
                res.notes.append(f"{name}: {wl}")
                meta["workloads"][name] = {"skipped": wl}
                continue
            n0 = len(tables)
            load_before = loadavg()
            run_workload(args, wl, env, tmp, meta, res, tables)
            load_after = loadavg()
            res.notes.extend(wl.notes)
            ran.append(wl)
            meta["workloads"][name] = {"title": wl.title, "recipe": wl.recipe, "batches": wl.batches,
                                       "train_samples": wl.used, "full_epoch_samples": wl.full,
                                       "data": getattr(wl, "data_info", None),
                                       "loadavg_before_after": [load_before, load_after]}
            tables.insert(n0, f"### {wl.title}\n\nRecipe: {wl.recipe}.\n\nLoad average (1 / 5 / 15 min) "
                          f"before: {fmt_load(load_before)}; after: {fmt_load(load_after)}."
                          + (f"\n\n**Partial epochs**: {wl.used} of {wl.full} training samples per "
                             f"epoch, times scaled by {wl.scale:g} to a full epoch; accuracy not "
                             "comparable." if wl.partial else ""))
            later = args.workloads[args.workloads.index(name) + 1:]
            if later or "startup" in args.parts:
                report(args, meta, res, tables, ran, load_start, removed,
                       pending=later + (["startup"] if "startup" in args.parts else []))
        if "startup" in args.parts:
            part_startup(args, env, res, tables)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report(args, meta, res, tables, ran, load_start, removed)
    return 0


def loadavg():
    return os.getloadavg() if hasattr(os, "getloadavg") else None


def fmt_load(v):
    return "unknown" if v is None else " ".join(f"{x:.2f}" for x in v)


def report(args, meta, res, tables, ran, load_start, removed, pending=()):
    """Render the run (head, summary, every table, targets); print it and write --markdown and
    --json. ``pending``: workloads still to run -- written after each workload, so a run cut
    short keeps what it measured (and says so)."""
    tables = list(tables)
    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    meta["loadavg_start_end"] = [load_start, load_end]
    for rec in res.records:     # the reference itself
        if rec["tool"] in ("pytorch", "import torch") and "test_accuracy" not in rec["work"]:
            rec.setdefault("ratio_to_pytorch", 1.0)
    tg = targets(res)

    la = fmt_load
    head = [f"## dlrun vs PyTorch / NumPy / ONNX Runtime ({meta['date_utc']})", "",
            f"Command: `{meta['command']}`", "",
            "Machine: {cpu}, {logical_cpus} logical CPUs, {memory_mib} MiB; {os}; "
            "Python {python}".format(**meta["machine"]), "",
            f"Load average (1 / 5 / 15 min) at start: {la(load_start)}; at end: {la(load_end)}; "
            f"{'written' if pending else 'finished'} {datetime.datetime.now(datetime.timezone.utc).strftime('%H:%M UTC')}", "",
            f"Workloads: {', '.join(w.name for w in ran) or 'none'}"
            + "".join(f"; {n} skipped" for n in args.workloads
                      if n not in [w.name for w in ran] and n not in pending), ""]
    if pending:
        head += [f"**Incomplete run**: written after the {ran[-1].name if ran else 'first'} workload; "
                 f"still to run: {', '.join(pending)}.", ""]
    if load_start is not None and load_start[0] > BUSY_LOAD:
        head += [f"**Warning**: the machine was busy before this run started (load {load_start[0]:.2f} on "
                 f"{os.cpu_count()} CPUs): 2-thread timings then swing by several times; only the "
                 "paired per-round ratios mean anything, and a quiet re-run is better.", ""]
    if args.quick:
        head += ["**Smoke run (--quick)**: partial epochs, one round; not figures to quote.", ""]
    if args.keep_blas_env:
        head.append("OpenBLAS environment kept as set: " +
                    ", ".join(f"{k}={os.environ.get(k)}" for k in BLAS_ENV))
    else:
        head.append("Children ran without " + " and ".join(BLAS_ENV) +
                    (f" (removed: {', '.join(f'{k}={v}' for k, v in removed.items())}; with them "
                     f"OpenBLAS would run the {meta.get('openblas_kernel_with_env_as_set')} kernel)"
                     if removed else " (neither was set)") +
                    "; the kernels that ran are listed per tool below. Every tool runs 2 threads "
                    "(the threads workload: 1 and 2).")
    head += [""] + [describe_tool(info, t) for t, info in meta["tools"].items()]
    if res.notes:
        head += [""] + [f"- {n}" for n in res.notes]
    tl = ["### Targets (issues 6, 12, 13, 16)", "", "| target | measured | goal | met |",
          "| --- | ---: | --- | --- |"]
    for t in tg:
        tl.append(f"| {t['target']} | {t['value']:.3f} | {t['goal']} | {'yes' if t['met'] else 'NO'} |")
    if not tg:
        tl.append("| (no dlrun measurement in this run) | | | |")
    text = "\n".join(head) + "\n\n" + "\n\n".join([summary_table(res, ran)] + tables + ["\n".join(tl)]) + "\n"
    if not pending:
        print(text)
    if args.markdown:
        write_markdown(args.markdown, text)
    if args.json:
        meta["finished_utc"] = None if pending else datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "records": res.records, "targets": tg, "notes": res.notes,
                       "dlrun_profile": res.profile}, f, indent=1)
        if not pending:
            log(f"wrote {args.json}")




if __name__ == "__main__":
    raise SystemExit(main())
