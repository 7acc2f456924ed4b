"""The tools ``compare.py`` races, each behind the same small interface, and the worker loop.

Every tool runs in its own child process (``python benchmarks/_compare_tools.py TOOL ...``)
so thread pools, allocators and imports never share a process. The parent sends one JSON
command per line on stdin and reads one JSON reply per line; the tool's own prints go to
stderr (file descriptor 1 is redirected) so they cannot corrupt the protocol.

Runner interface (``setup`` builds the model for one batch size; models of different batch
sizes live side by side so the parent can interleave them):

    info() -> dict                       versions, threads, BLAS libraries and their kernel
    setup(batch, seed)                   a fresh, untrained model for that batch size
    epoch(batch) -> float                one training epoch (fresh permutation); mean loss
    evaluate(batch) -> float             test accuracy in eval mode
    predict(batch, x) -> probabilities   eval mode; x float32 (n, 784) in [0, 1], or the raw
                                         uint8 pixels when ``raw_input`` (dlrun scales itself)

Worker commands (JSON ``{"cmd": ...}``): info, setup, epoch (seconds, CPU seconds, loss),
evaluate, latency (per-call ns), gemm (NumPy runner: the step's 8 GEMMs), export (NumPy
runner: weights for ONNX), load (ONNX Runtime: build the session), profile (cProfile of
one epoch), rss, quit.

``python benchmarks/_compare_tools.py TOOL --memory`` instead trains one epoch in this fresh
process and prints its peak resident memory (VmHWM) as one JSON line.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
MODEL_FILE = os.path.join(REPO, "models", "mnist_mlp.net")
THREADS = 2          # every tool's threads (--threads; compare.py's contention workload runs 1 and 2)
HIDDEN = (512, 256)
DROPOUT = 0.2
LR = 1e-3
LABEL_SMOOTHING = 0.0   # set from --label-smoothing (compare.py reads the model file's value)


class ToolUnavailable(Exception):
    """The tool cannot run here (not installed, or its API is not there yet)."""


def proc_status_kib(field):
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM), or None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def blas_info():
    """The BLAS libraries loaded in this process (threadpoolctl), or a reason why not."""
    try:
        import threadpoolctl
    except ImportError:
        return [{"error": "threadpoolctl not installed"}]
    keep = ("user_api", "internal_api", "num_threads", "version", "architecture",
            "threading_layer", "prefix")
    return [{k: d.get(k) for k in keep} for d in threadpoolctl.threadpool_info()]


class Runner:
    name = "?"
    #: predict() takes raw uint8 pixels (the tool scales them itself) instead of float32 in [0, 1]
    raw_input = False

    def __init__(self, data):
        self.x, self.y, self.xt, self.yt = data
        self.models = {}

    def info(self):
        return {"numpy": np.__version__, "blas": blas_info(),
                "openblas_env": {k: os.environ.get(k) for k in
                                 ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                                  "OMP_NUM_THREADS")}}

    def model(self, batch):
        try:
            return self.models[batch]
        except KeyError:
            raise RuntimeError(f"{self.name}: no model for batch {batch}; send setup first") from None


class NumpyRunner(Runner):
    """The hand-written NumPy reference (``benchmarks/numpy_mlp.py``)."""

    name = "numpy"

    def __init__(self, data):
        super().__init__(data)
        from numpy_mlp import NumpyMLP
        self.cls = NumpyMLP

    def setup(self, batch, seed):
        self.models[batch] = self.cls(784, HIDDEN, 10, dropout=DROPOUT, lr=LR,
                                     label_smoothing=LABEL_SMOOTHING, seed=seed)

    def epoch(self, batch):
        return self.model(batch).train_epoch(self.x, self.y, batch)

    def evaluate(self, batch):
        return self.model(batch).evaluate(self.xt, self.yt)[1]

    def predict(self, batch, x):
        return self.model(batch).predict(x)

    def export(self, batch, path):
        np.savez(path, **self.model(batch).export())

    def gemm(self, batch, repeats):
        """Best and median seconds of each of the 8 GEMMs of one training step at this batch."""
        return gemm_times(batch, repeats)


def gemm_shapes(batch, hidden=HIDDEN):
    """The 8 GEMMs of one training step as (name, m, k, n, trans_a, trans_b): C (m, n)
    (784-hidden[0]-hidden[1]-10: the recipe's, or the size sweep's widths)."""
    d0, d1, d2, d3 = 784, hidden[0], hidden[1], 10
    return [
        ("fwd1 X W1", batch, d0, d1, False, False),
        ("fwd2 H1 W2", batch, d1, d2, False, False),
        ("fwd3 H2 W3", batch, d2, d3, False, False),
        ("dW3 H2^T dZ3", d2, batch, d3, True, False),
        ("dH2 dZ3 W3^T", batch, d3, d2, False, True),
        ("dW2 H1^T dZ2", d1, batch, d2, True, False),
        ("dH1 dZ2 W2^T", batch, d2, d1, False, True),
        ("dW1 X^T dZ1", d0, batch, d1, True, False),
    ]


def gemm_times(batch, repeats, shapes=None):
    """``[(name, flops, best seconds, median seconds)]`` of ``np.matmul(op(A), op(B), out=C)``
    for each GEMM of ``shapes`` (default: the MLP's ``gemm_shapes(batch)``).

    The best of ``repeats`` calls is the floor (a burst of a few ms is easily hit by other
    work on the machine; the best call is what the hardware and BLAS can do).
    """
    rng = np.random.default_rng(0)
    out = []
    for name, m, k, n, ta, tb in shapes or gemm_shapes(batch):
        a = rng.random((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.random((n, k) if tb else (k, n), dtype=np.float32)
        c = np.empty((m, n), np.float32)
        a_op = a.T if ta else a
        b_op = b.T if tb else b
        for _ in range(3):
            np.matmul(a_op, b_op, out=c)
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.matmul(a_op, b_op, out=c)
            ts.append(time.perf_counter() - t0)
        out.append((name, 2.0 * m * k * n, float(np.min(ts)), float(np.median(ts))))
    return out


class TorchRunner(Runner):
    """PyTorch eager, idiomatic: float32 tensors in memory, nn.Sequential, torch.optim.Adam."""

    name = "pytorch"
    adam_options = {}
    #: predict() converts its input with ``tensor`` (else: float32 as given, no copy)
    convert_predict = False
    #: evaluate() on this many test rows at a time (None: all at once)
    eval_chunk = None

    def __init__(self, data):
        try:
            import torch
        except ImportError as e:
            raise ToolUnavailable(f"PyTorch not installed ({e}); pip install torch==2.13.0") from None
        self.torch = torch
        torch.set_num_threads(THREADS)
        x, y, xt, yt = data
        # The usual PyTorch set-up: the whole set as one tensor (images: float32 in [0, 1]).
        self.X = self.tensor(x)
        self.Y = torch.from_numpy(y.astype(np.int64))
        self.Xt = self.tensor(xt)
        self.Yt = torch.from_numpy(yt.astype(np.int64))
        self.models = {}
        self.xt, self.yt = xt, yt

    def tensor(self, x):
        """A tool's input array as the tensor its network takes (uint8 pixels: scaled)."""
        return self.torch.from_numpy(x).float().div_(255.0)

    def build(self, torch):
        """``(network, learning rate, label smoothing)`` of a fresh model."""
        return torch_model(torch, DROPOUT), LR, LABEL_SMOOTHING

    def info(self):
        d = super().info()
        t = self.torch
        d.update(torch=t.__version__, torch_threads=t.get_num_threads(),
                 torch_interop_threads=t.get_num_interop_threads(),
                 torch_parallel=t.__config__.parallel_info().splitlines()[:8],
                 mkldnn=bool(t.backends.mkldnn.is_available()))
        return d

    def setup(self, batch, seed):
        t = self.torch
        nn = t.nn
        t.manual_seed(seed)
        model, lr, self.label_smoothing = self.build(t)
        opt = t.optim.Adam(model.parameters(), lr=lr, **self.adam_options)
        gen = t.Generator().manual_seed(seed)
        self.models[batch] = (model, opt, gen)

    def epoch(self, batch):
        t = self.torch
        model, opt, gen = self.model(batch)
        model.train()
        n = self.X.shape[0]
        perm = t.randperm(n, generator=gen)
        total = 0.0
        loss_fn = t.nn.functional.cross_entropy
        for start in range(0, n, batch):
            idx = perm[start:start + batch]
            xb, yb = self.X[idx], self.Y[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb, label_smoothing=self.label_smoothing)
            loss.backward()
            opt.step()
            total += loss.item() * idx.shape[0]
        return total / n

    def evaluate(self, batch):
        t = self.torch
        model = self.model(batch)[0]
        model.eval()
        step = self.eval_chunk or self.Xt.shape[0]
        with t.inference_mode():
            pred = t.cat([model(self.Xt[i:i + step]).argmax(1) for i in range(0, self.Xt.shape[0], step)])
        return float((pred == self.Yt).float().mean())

    def predict(self, batch, x):
        t = self.torch
        model = self.model(batch)[0]
        model.eval()
        with t.inference_mode():
            return t.softmax(model(self.tensor(x) if self.convert_predict else t.from_numpy(x)), 1).numpy()


class TorchFusedRunner(TorchRunner):
    """PyTorch eager with ``Adam(fused=True)`` (one kernel for the whole update)."""

    name = "pytorch-fused"
    adam_options = {"fused": True}


def torch_model(torch, dropout, hidden=HIDDEN):
    """The network in the model file's order and initialisation, as an nn.Sequential
    (``hidden``: the widths of the two hidden layers; the size sweep changes them)."""
    nn = torch.nn
    layers, d_in = [], 784
    for d in hidden:
        dense = nn.Linear(d_in, d)
        nn.init.kaiming_normal_(dense.weight, nonlinearity="relu")   # He normal (fan_in)
        nn.init.zeros_(dense.bias)
        layers += [dense, nn.ReLU(), nn.BatchNorm1d(d), nn.Dropout(dropout)]
        d_in = d
    out = nn.Linear(d_in, 10)
    nn.init.xavier_uniform_(out.weight)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


class DlrunRunner(Runner):
    """dlrun through its Python API: ``dlrun.loads(text, base_dir=...)`` and ``Model.fit``."""

    name = "dlrun"
    raw_input = True    # the model file's ``scale 1/255`` runs inside predict()

    def __init__(self, data, model_file=MODEL_FILE, text=None, base_dir=None):
        super().__init__(data)
        try:
            import dlrun
            self.dlrun = dlrun
            self.loads = dlrun.loads
        except (ImportError, AttributeError) as e:
            raise ToolUnavailable(f"dlrun's Python API is not available ({e})") from None
        if text is None:
            if not os.path.isfile(model_file):
                raise ToolUnavailable(f"{model_file} does not exist yet")
            with open(model_file, encoding="utf-8") as f:
                text = f.read()
            self.model_file = os.path.relpath(model_file, REPO)
        else:
            self.model_file = "(recipe text)"
        self.text = text
        self.base_dir = base_dir or os.path.dirname(MODEL_FILE)

    def info(self):
        d = super().info()
        d.update(dlrun=self.dlrun.__version__, model_file=self.model_file,
                 dlrun_path=os.path.dirname(self.dlrun.__file__))
        return d

    def model_text(self, batch, seed):
        """The model file with its batch size and seed replaced (when it states them), and
        without its data block's ``validation F``: every tool trains on all the rows it is
        given, with no validation pass (``fit(x, y)`` would hold that fraction out)."""
        text = self.text
        text = re.sub(r"(\bbatch(?:_size)?\b\s*[:=]?\s*)\d+", lambda m: m.group(1) + str(batch), text)
        text = re.sub(r"(\bseed\b\s*[:=]?\s*)\d+", lambda m: m.group(1) + str(seed), text)
        text = re.sub(r"(?m)^[ \t]*validation[ \t]+[0-9.eE+-]+[ \t]*(#.*)?$\n?", "", text)
        return text

    def setup(self, batch, seed):
        self.models[batch] = self.loads(self.model_text(batch, seed), base_dir=self.base_dir)

    def epoch(self, batch):
        # fit() continues from the current weights and optimizer state; uint8 images are
        # scaled per batch by the file's preprocessing.
        history = self.model(batch).fit(self.x, self.y, epochs=1, batch_size=batch)
        held = [k for k in history.final if k.startswith("val_")]
        if held:    # rows held out and a validation pass timed: not the other tools' epoch
            raise RuntimeError(f"dlrun ran a validation pass ({', '.join(held)}) inside the timed epoch")
        return float(history.final.get("loss", float("nan")))

    def evaluate(self, batch):
        return float(self.model(batch).evaluate(self.xt, self.yt)["accuracy"])

    def predict(self, batch, x):
        return self.model(batch).predict(x)


class OrtRunner(Runner):
    """ONNX Runtime, inference only, on a graph built from the NumPy reference's weights."""

    name = "onnxruntime"

    def __init__(self, data):
        super().__init__(data)
        try:
            import onnx  # noqa: F401
            import onnxruntime
        except ImportError as e:
            raise ToolUnavailable(f"onnxruntime/onnx not installed ({e})") from None
        self.ort = onnxruntime

    def info(self):
        d = super().info()
        import onnx
        d.update(onnxruntime=self.ort.__version__, onnx=onnx.__version__,
                 intra_op_threads=THREADS)
        return d

    def load(self, batch, path, fold=True):
        """Build the session from weights exported by the NumPy runner (``export``)."""
        w = dict(np.load(path))
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.models[batch] = self.ort.InferenceSession(
            build_onnx(w, fold).SerializeToString(), so, providers=["CPUExecutionProvider"])

    def evaluate(self, batch):
        p = self.predict(batch, np.multiply(self.xt, np.float32(1 / 255), dtype=np.float32))
        return float((p.argmax(1) == self.yt).mean())

    def predict(self, batch, x):
        return self.model(batch).run(None, {"x": x})[0]


def build_onnx(w, fold=True):
    """ONNX graph of the eval-mode network, softmax at the end.

    ``fold``: Gemm -> Relu per hidden layer with each batch norm folded into the next Gemm
    (the smallest graph, what the NumPy reference runs too); else Gemm -> Relu ->
    BatchNormalization per hidden layer as the model is written.
    """
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    eps = float(w["bn_eps"])

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), name))

    prev = "x"
    for i in range(len(HIDDEN) if fold else 0):
        init(f"w{i}", w[f"folded_w{i}"])
        init(f"b{i}", w[f"folded_b{i}"])
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"z{i}"]))
        nodes.append(helper.make_node("Relu", [f"z{i}"], [f"a{i}"]))
        prev = f"a{i}"
    for i in range(0 if fold else len(HIDDEN)):
        for k in ("w", "b", "gamma", "beta", "mean", "var"):
            init(f"{k}{i}", w[f"{k}{i}"])
        nodes.append(helper.make_node("Gemm", [prev, f"w{i}", f"b{i}"], [f"z{i}"]))
        nodes.append(helper.make_node("Relu", [f"z{i}"], [f"r{i}"]))
        nodes.append(helper.make_node("BatchNormalization",
                                      [f"r{i}", f"gamma{i}", f"beta{i}", f"mean{i}", f"var{i}"],
                                      [f"a{i}"], epsilon=eps))
        prev = f"a{i}"
    init("w_out", w[f"folded_w{len(HIDDEN)}"] if fold else w["w_out"])
    init("b_out", w[f"folded_b{len(HIDDEN)}"] if fold else w["b_out"])
    nodes.append(helper.make_node("Gemm", [prev, "w_out", "b_out"], ["logits"]))
    nodes.append(helper.make_node("Softmax", ["logits"], ["prob"], axis=1))
    graph = helper.make_graph(
        nodes, "mnist_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 784])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["n", 10])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


RUNNERS = {"numpy": NumpyRunner, "pytorch": TorchRunner, "pytorch-fused": TorchFusedRunner,
           "dlrun": DlrunRunner, "onnxruntime": OrtRunner}


# -- the worker loop ---------------------------------------------------------------------

def latency(runner, batch, n, calls, warmup, xt):
    """Per-call wall times (ns) of ``predict`` on n test rows; a different slice each call.

    The input is float32 in [0, 1], or the raw uint8 pixels for a tool whose model scales
    its inputs itself (dlrun's model file says ``scale 1/255``).
    """
    x_all = xt[:max(n * 16, 64)]
    if not runner.raw_input:
        x_all = np.multiply(x_all, np.float32(1 / 255), dtype=np.float32)
    slices = [np.ascontiguousarray(x_all[i * n:(i + 1) * n]) for i in range(x_all.shape[0] // n)]
    for i in range(warmup):
        runner.predict(batch, slices[i % len(slices)])
    out = []
    clock = time.perf_counter_ns
    for i in range(calls):
        x = slices[i % len(slices)]
        t0 = clock()
        runner.predict(batch, x)
        out.append(clock() - t0)
    return out


def profile_epoch(runner, batch, top):
    """One epoch under cProfile: the ``top`` functions by own time, and the epoch's wall."""
    import cProfile
    import pstats

    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    runner.epoch(batch)
    prof.disable()
    wall = time.perf_counter() - t0
    st = pstats.Stats(prof)
    rows = []
    for (path, line, func), (cc, nc, tt, ct, _) in st.stats.items():
        where = os.path.relpath(path, REPO) if path.startswith(REPO) else os.path.basename(path)
        rows.append({"function": f"{where}:{line}({func})" if line else func,
                     "calls": nc, "own_s": tt, "cumulative_s": ct})
    rows.sort(key=lambda r: -r["own_s"])
    return {"wall_s": wall, "top": rows[:top]}


def limit_blas():
    """Every loaded BLAS pool to ``THREADS`` (as ``dlrun --threads`` does), for the process's life."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=THREADS, user_api="blas")


def handle(runner, msg, xt):
    cmd = msg["cmd"]
    if cmd == "info":
        return runner.info()
    if cmd == "setup":
        runner.setup(msg["batch"], msg.get("seed", 0))
        limit_blas()    # the BLAS libraries loaded by now (dlrun's kernels bring SciPy's)
        return {}
    if cmd == "epoch":
        c0, t0 = time.process_time(), time.perf_counter()
        loss = runner.epoch(msg["batch"])
        # CPU seconds of every thread of this process: cpu/wall shows the threads really used
        # (and, when far below the thread count, that the machine was busy with others).
        return {"seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
                "loss": loss}
    if cmd == "evaluate":
        return {"accuracy": runner.evaluate(msg["batch"])}
    if cmd == "export":
        runner.export(msg["batch"], msg["path"])
        return {}
    if cmd == "load":
        runner.load(msg["batch"], msg["path"], msg.get("fold", True))
        return {}
    if cmd == "gemm":
        return {"gemms": runner.gemm(msg["batch"], msg.get("repeats", 50))}
    if cmd == "latency":
        return {"ns": latency(runner, msg["batch"], msg["n"], msg["calls"], msg.get("warmup", 50), xt)}
    if cmd == "layers":
        return {"layers": runner.layers(msg["batch"], msg.get("reps", 20))}
    if cmd == "profile":
        return {"profile": profile_epoch(runner, msg["batch"], msg.get("top", 15))}
    if cmd == "rss":
        return {"vmrss_kib": proc_status_kib("VmRSS"), "vmhwm_kib": proc_status_kib("VmHWM")}
    raise ValueError(f"unknown command {cmd!r}")


WORKLOADS = ("mlp", "cnn", "text", "audio", "sweep")


def load_data(tool, args):
    """The data tuple ``(x, y, xt, yt)`` of ``tool`` in ``args.workload`` and the training rows
    of a full epoch. mlp / cnn: MNIST from ``--mnist`` (uint8; ``--limit`` keeps the first
    training rows); text / audio: the arrays ``compare.py`` prepared with dlrun's data block
    (``--data``)."""
    if args.workload in ("mlp", "cnn", "sweep"):
        from _compare_data import load_mnist
        return load_mnist(args.mnist, args.limit), 60000
    from _compare_seq import load_arrays
    return load_arrays(args.data, tool), int(np.load(args.data)["n_full"])


def make_runner(tool, args, data):
    """``(runner, test inputs for latency)`` of ``tool`` in ``args.workload`` on ``data``."""
    if args.workload == "mlp":
        table = RUNNERS
    elif args.workload == "cnn":
        from _compare_cnn import RUNNERS as table
    elif args.workload == "sweep":
        from _compare_sweep import RUNNERS as table
    else:
        from _compare_seq import runners
        table = runners(args.workload, args.data_root, args.data)
    if tool not in table:
        raise ToolUnavailable(f"no {tool} runner for the {args.workload} workload")
    return table[tool](data), data[2]


def serve(tool, args):
    """Answer JSON commands on stdin until EOF or ``quit``; the first reply says ready or why not."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)           # the tool's own prints go to stderr
    sys.stdout = sys.stderr

    def reply(obj):
        proto.write(json.dumps(obj) + "\n")

    try:
        data, full = load_data(tool, args)
        runner, xt = make_runner(tool, args, data)
        described = {"train": int(data[0].shape[0]), "train_full": full}
    except ToolUnavailable as e:
        reply({"ok": False, "unavailable": str(e)})
        return 0
    except Exception as e:  # the parent reports it and goes on without this tool
        reply({"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        return 1
    reply({"ok": True, "pid": os.getpid(), "data": described})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "quit":
            break
        try:
            reply({"ok": True, **handle(runner, msg, xt)})
        except Exception as e:
            reply({"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
    return 0


def memory(tool, args):
    """Train one epoch in this fresh process; print peak RSS and its parts as one JSON line."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    rec = {"ok": True, "rss_start_kib": proc_status_kib("VmRSS")}
    try:
        data, _ = load_data(tool, args)
        rec["rss_data_kib"] = proc_status_kib("VmRSS")
        runner, _ = make_runner(tool, args, data)
        del data
        rec["rss_ready_kib"] = proc_status_kib("VmRSS")
        runner.setup(args.batch, 0)
        t0 = time.perf_counter()
        runner.epoch(args.batch)
        rec["seconds"] = time.perf_counter() - t0
        rec["vmhwm_kib"] = proc_status_kib("VmHWM")
    except ToolUnavailable as e:
        rec = {"ok": False, "unavailable": str(e)}
    except Exception as e:
        rec = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    proto.write(json.dumps(rec) + "\n")
    return 0


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description="compare.py's worker: one tool in this process")
    p.add_argument("tool", choices=sorted(set(RUNNERS) | {"prepare"}))
    p.add_argument("--workload", choices=WORKLOADS, default="mlp")
    p.add_argument("--mnist", help="MNIST folder (mlp, cnn)")
    p.add_argument("--data", help="the prepared arrays (text, audio; written by 'prepare')")
    p.add_argument("--data-root", help="the folder the model file's data paths resolve against")
    p.add_argument("--limit", type=int, default=None, help="train on the first N samples only")
    p.add_argument("--memory", action="store_true", help="one epoch, then print peak RSS")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=2, help="BLAS (and PyTorch intra-op) threads")
    args = p.parse_args(argv)
    global LABEL_SMOOTHING, THREADS
    LABEL_SMOOTHING = args.label_smoothing
    THREADS = args.threads
    sys.path.insert(0, HERE)
    if args.tool == "prepare":
        # dlrun reads the model file's data block once; the arrays go to --data as .npz
        from _compare_seq import prepare
        print(json.dumps(prepare(args.workload, args.data_root, args.data, args.limit)))
        return 0
    if args.memory:
        return memory(args.tool, args)
    return serve(args.tool, args)


if __name__ == "__main__":
    # the workload modules import this file as _compare_tools: let them find this very module,
    # so that their ToolUnavailable is the one serve() catches
    sys.modules.setdefault("_compare_tools", sys.modules[__name__])
    raise SystemExit(main())
