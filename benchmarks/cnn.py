"""dlrun against PyTorch eager on issue 12's CNN recipe: training steps, predict latency and
dlrun's per-layer times, in interleaved rounds.

    python benchmarks/cnn.py [--quick] [--threads 1,2] [--batches 64,256] [--rounds N]
                             [--mnist DIR] [--markdown FILE] [--baseline CHECKOUT]

Recipe: input 1x28x28, conv2d 16 3x3 same, batchnorm, relu, maxpool 2x2, conv2d 32 3x3 same,
batchnorm, relu, maxpool 2x2, flatten, dense 128 relu, dropout 0.25, dense 10 softmax;
cross-entropy, Adam 1e-3, float32. PyTorch runs the same layers (nn.Conv2d / BatchNorm2d /
MaxPool2d / Linear, its oneDNN convolutions), eager, default Adam.

Each tool runs in its own child process per thread count (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS
and torch.set_num_threads all set to the count), so neither's thread pool spins next to the
other's. Rounds are interleaved: every round runs each tool once per batch size, in an order
rotated from round to round, after a warm-up round. Reported: the median over rounds and the
[min-max] of the round medians; ratios dlrun / PyTorch are taken per round (paired) and their
median reported, because this shared machine has slow windows. The load average is printed
before and after.

- training step: forward, loss, backward and the optimizer step on one batch of MNIST images
  (``--mnist``, read with dlrun's IDX reader; random images when the folder is absent). The
  epoch time is the median step times the 60,000 / batch steps of an MNIST epoch
  (extrapolated: no data loading, shuffling or metrics).
- predict latency: ``Model.predict`` (dlrun) and ``model.eval()`` + ``torch.no_grad()`` (PyTorch)
  at batch 1 and 64, median microseconds per call.
- per-layer times (dlrun only): each layer's forward (training mode) and backward, median ms.

``--quick`` is a smoke run (one round, few steps). ``--baseline CHECKOUT`` adds a third tool,
the dlrun of another checkout with its kernels built in place (``python setup.py build_ext
--inplace``), e.g. the commit before a change, run in the same interleaved rounds: a
before/after table measured under the same load.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_MNIST = os.path.normpath(os.path.join(REPO, "..", "shared", "data", "mnist"))
EPOCH_SAMPLES = 60000

RECIPE = """dlrun 1
model cnn_recipe {
  input 1x28x28
  conv2d 16 3x3 padding=same
  batchnorm
  relu
  maxpool 2x2
  conv2d 32 3x3 padding=same
  batchnorm
  relu
  maxpool 2x2
  flatten
  dense 128 relu
  dropout 0.25
  dense 10 softmax
  loss cross_entropy
  optimizer adam lr=1e-3
  train batch=64 seed=1
}
"""


# ---- children -------------------------------------------------------------------------------

def load_images(mnist, n):
    """(n, 784) float32 in [0, 1] and (n,) int64 labels: MNIST's first n training images when
    the folder holds them (dlrun's IDX reader), else seeded random ones."""
    import numpy as np

    for ext in ("", ".gz"):
        xp = os.path.join(mnist, "train-images-idx3-ubyte" + ext)
        yp = os.path.join(mnist, "train-labels-idx1-ubyte" + ext)
        if os.path.isfile(xp) and os.path.isfile(yp):
            from dlrun.runtime.data.idx import read_idx

            x = read_idx(xp)[:n].reshape(n, 784).astype(np.float32) / 255
            y = read_idx(yp)[:n].astype(np.int64)
            return x, y, "mnist"
    rng = np.random.default_rng(0)
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), "random"


class DlrunTool:
    name = "dlrun"

    def __init__(self, x, y):
        import numpy as np

        import dlrun
        from dlrun.runtime.optimizers import Optimizer

        self.np, self.x, self.y = np, x, y
        self.model = dlrun.loads(RECIPE)
        self.net = self.model.network
        self.opt = Optimizer(self.model.ir.optimizer, self.net.store)
        self.model.preprocessor.fit(x)       # identity preprocessing: lets predict() run
        self.grads = {}

    def info(self):
        import numpy as np

        import dlrun
        return {"dlrun": dlrun.__version__, "dlrun_path": os.path.dirname(dlrun.__file__),
                "numpy": np.__version__}

    def _batch(self, b):
        x, y = self.x[:b], self.y[:b].astype(self.net.loss.target_dtype(self.net.dtype))
        if b not in self.grads:
            self.grads[b] = self.np.empty((b, self.net.output_features), self.net.dtype)
        return x, y, self.grads[b]

    def step(self, b):
        x, y, g = self._batch(b)
        out = self.net.forward(x, True, True)
        self.net.loss(out, y, g)
        self.net.backward(g)
        self.opt.step()

    def predict(self, b):
        self.model.predict(self.x[:b])

    def layers(self, b, reps):
        """Median ms of each body layer's forward (training) and backward."""
        np, net = self.np, self.net
        x, y, g = self._batch(b)
        fw = {l.index: [] for l in net.body}
        bw = {l.index: [] for l in net.body}
        for _ in range(reps):
            h = x
            for layer in net.body:
                t = time.perf_counter()
                h = layer.forward(h, True, logits=True) if layer is net._head_dense else layer.forward(h, True)
                fw[layer.index].append(time.perf_counter() - t)
            net.loss(h, y, g)
            d = g
            for layer in net._backward_layers:
                t = time.perf_counter()
                d = layer.backward(d)
                bw[layer.index].append(time.perf_counter() - t)
            self.opt.step()
        rows = []
        for layer in net.body:
            f, bk = fw[layer.index], bw[layer.index]
            rows.append([f"{layer.index}:{layer.kind}", float(np.median(f)) * 1e3,
                         float(np.median(bk)) * 1e3 if bk else None])
        return rows


class TorchTool:
    name = "pytorch"

    def __init__(self, x, y, threads):
        import torch
        from torch import nn

        torch.set_num_threads(threads)
        torch.manual_seed(1)
        self.torch = torch
        self.model = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = nn.CrossEntropyLoss()
        self.x = torch.from_numpy(x.reshape(-1, 1, 28, 28).copy())
        self.y = torch.from_numpy(y)

    def info(self):
        t = self.torch
        return {"torch": t.__version__, "threads": t.get_num_threads(),
                "interop_threads": t.get_num_interop_threads()}

    def step(self, b):
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss(self.model(self.x[:b]), self.y[:b])
        loss.backward()
        self.opt.step()

    def predict(self, b):
        self.model.eval()
        with self.torch.no_grad():
            self.torch.softmax(self.model(self.x[:b]), 1)


def child(tool, threads, mnist, max_batch):
    x, y, source = load_images(mnist, max_batch)
    runner = DlrunTool(x, y) if tool == "dlrun" else TorchTool(x, y, threads)

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    reply({"ready": True, "info": runner.info(), "data": source})
    for line in sys.stdin:
        msg = json.loads(line)
        op, b = msg["op"], msg.get("batch")
        if op == "quit":
            return
        if op == "layers":
            reply({"layers": runner.layers(b, msg["reps"])})
            continue
        fn = runner.step if op == "train" else runner.predict
        for _ in range(msg["warmup"]):
            fn(b)
        times = []
        for _ in range(msg["calls"]):
            t = time.perf_counter()
            fn(b)
            times.append(time.perf_counter() - t)
        reply({"times": times})


# ---- parent ---------------------------------------------------------------------------------

class Child:
    def __init__(self, tool, threads, args, max_batch):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        src = args.baseline if tool == "baseline" else None
        kind = "dlrun" if tool == "baseline" else tool
        # python -c BOOT script args: BOOT swaps in the checkout's dlrun, then runs the script
        cmd = [sys.executable] + (["-c", _SRC_BOOT] if src else []) + [
            os.path.abspath(__file__), "--child", kind, "--threads", str(threads),
            "--mnist", args.mnist, "--max-batch", str(max_batch)]
        cwd = os.path.abspath(src) if src else None
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                  cwd=cwd)
        self.hello = self.read()

    def read(self):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.p.args} ended ({self.p.wait()})")
        return json.loads(line)

    def ask(self, **msg):
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()
        return self.read()

    def close(self):
        try:
            self.p.stdin.write(json.dumps({"op": "quit"}) + "\n")
            self.p.stdin.close()
        except OSError:
            pass
        self.p.wait()


# A dlrun from another checkout: its folders take the place of the installed dlrun's.
_SRC_BOOT = """
import importlib.util, os, sys
src = os.getcwd()
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
exec(compile(open(script).read(), script, "exec"), {"__name__": "__main__", "__file__": script})
"""


def med(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def spread(v):
    return f"{med(v):.2f} [{min(v):.2f}-{max(v):.2f}]"


def run(args):
    threads = [int(t) for t in args.threads.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    lat_batches = [1, 64]
    rounds = 1 if args.quick else args.rounds
    steps = 5 if args.quick else args.steps
    calls = 20 if args.quick else args.calls
    load0 = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    results = {"threads": {}}
    tools = ("dlrun", "pytorch") + (("baseline",) if args.baseline else ())
    ours = [t for t in tools if t != "pytorch"]
    for th in threads:
        kids = {t: Child(t, th, args, max(batches + lat_batches)) for t in tools}
        info = {t: k.hello for t, k in kids.items()}
        train = {(t, b): [] for t in tools for b in batches}
        lat = {(t, b): [] for t in tools for b in lat_batches}
        ratio_train = {(t, b): [] for t in ours for b in batches}
        ratio_lat = {(t, b): [] for t in ours for b in lat_batches}
        for r in range(rounds + 1):           # round 0 is the warm-up
            order = list(tools) if r % 2 == 0 else list(reversed(tools))
            got = {}
            for b in batches:
                for t in order:
                    got[t, "train", b] = med(kids[t].ask(op="train", batch=b, warmup=2, calls=steps)["times"])
            for b in lat_batches:
                for t in order:
                    got[t, "predict", b] = med(kids[t].ask(op="predict", batch=b, warmup=3, calls=calls)["times"])
            if r == 0:
                continue
            for b in batches:
                for t in tools:
                    train[t, b].append(got[t, "train", b] * 1e3)
                for t in ours:
                    ratio_train[t, b].append(got[t, "train", b] / got["pytorch", "train", b])
            for b in lat_batches:
                for t in tools:
                    lat[t, b].append(got[t, "predict", b] * 1e6)
                for t in ours:
                    ratio_lat[t, b].append(got[t, "predict", b] / got["pytorch", "predict", b])
            print(f"threads {th} round {r}/{rounds} done", flush=True)
        layers = {(t, b): kids[t].ask(op="layers", batch=b, reps=3 if args.quick else args.layer_reps)["layers"]
                  for t in ours for b in batches}
        for k in kids.values():
            k.close()
        results["threads"][th] = {"info": info, "train": train, "lat": lat, "ratio_train": ratio_train,
                                  "ratio_lat": ratio_lat, "layers": layers, "ours": ours}
    load1 = os.getloadavg()
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}", flush=True)
    results.update(load=(load0, load1), started=started, rounds=rounds, steps=steps, calls=calls,
                   batches=batches, lat_batches=lat_batches)
    return results


def markdown(res, args, argv):
    L = []
    when = res["started"].strftime("%Y-%m-%d %H:%M UTC")
    L.append(f"## CNN recipe (issue 12): dlrun vs PyTorch eager ({when})")
    L.append("")
    L.append(f"Command: `python benchmarks/cnn.py {' '.join(argv)}`".replace("python benchmarks/cnn.py  ", ""))
    L.append("")
    L.append(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
             f"Python {platform.python_version()}. Load average (1/5/15 min) before: "
             + " ".join(f"{v:.2f}" for v in res["load"][0]) + "; after: "
             + " ".join(f"{v:.2f}" for v in res["load"][1]) + " (2 cores shared with other work).")
    L.append("")
    L.append(f"{res['rounds']} interleaved rounds after a warm-up round; per round the median of {res['steps']} "
             f"training steps / {res['calls']} predict calls; shown: median over rounds [min-max]; "
             "ratio = dlrun / PyTorch per round, median [min-max]. Epoch = median step x "
             f"{EPOCH_SAMPLES} / batch steps (extrapolated).")
    L.append("")
    names = {"dlrun": "dlrun", "baseline": "dlrun baseline", "pytorch": "PyTorch"}
    for th, r in res["threads"].items():
        ours = r["ours"]
        L.append(f"### {th} thread{'s' if th > 1 else ''}")
        L.append("")
        for t in ours + ["pytorch"]:
            h = r["info"][t]
            i = h["info"]
            what = (f"dlrun {i.get('dlrun')} ({i.get('dlrun_path')})" if t != "pytorch" else
                    f"torch {i.get('torch')} (set_num_threads {i.get('threads')})")
            L.append(f"- {names[t]}: {what}; data: {h['data']}")
        L.append("")
        L.append("| batch | tool | ms/step | / PyTorch (paired) | s/epoch |")
        L.append("| ---: | --- | --- | --- | ---: |")
        for b in res["batches"]:
            steps = -(-EPOCH_SAMPLES // b)
            for t in ours + ["pytorch"]:
                v = r["train"][t, b]
                ratio = spread(r["ratio_train"][t, b]) if t != "pytorch" else "1"
                L.append(f"| {b} | {names[t]} | {spread(v)} | {ratio} | {med(v) * steps / 1e3:.1f} |")
        L.append("")
        L.append("| predict batch | tool | µs per call | / PyTorch (paired) |")
        L.append("| ---: | --- | --- | --- |")
        for b in res["lat_batches"]:
            for t in ours + ["pytorch"]:
                ratio = spread(r["ratio_lat"][t, b]) if t != "pytorch" else "1"
                L.append(f"| {b} | {names[t]} | {spread(r['lat'][t, b])} | {ratio} |")
        L.append("")
        L.append("Per layer (median ms of " + ("3" if args.quick else str(args.layer_reps))
                 + " steps, forward in training mode / backward):")
        L.append("")
        cols = [(t, b) for b in res["batches"] for t in ours]
        L.append("| layer | " + " | ".join(f"{names[t]} b{b} fwd | {names[t]} b{b} bwd" for t, b in cols) + " |")
        L.append("| --- |" + " ---: | ---: |" * len(cols))
        first = r["layers"][cols[0]]
        for i, row in enumerate(first):
            cells = []
            for key in cols:
                _, f, bk = r["layers"][key][i]
                cells += [f"{f:.3f}", "" if bk is None else f"{bk:.3f}"]
            L.append(f"| {row[0]} | " + " | ".join(cells) + " |")
        L.append("")
    return "\n".join(L) + "\n"


def write_section(path, text):
    """Replace the '## CNN recipe' section of ``path`` (up to the next '## ') or append it."""
    old = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmark results\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.startswith("## CNN recipe")), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        new = "".join(lines[:start]) + text + ("\n" + "".join(lines[end:]) if end < len(lines) else "")
    with open(path, "w", encoding="utf-8") as f:
        f.write(new)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: one round, few steps")
    ap.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2")
    ap.add_argument("--batches", default="64,256", help="training batch sizes")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="training steps per tool per round")
    ap.add_argument("--calls", type=int, default=100, help="predict calls per tool per round")
    ap.add_argument("--layer-reps", type=int, default=20)
    ap.add_argument("--mnist", default=DEFAULT_MNIST)
    ap.add_argument("--markdown", help="write the CNN section into this file (e.g. benchmarks/RESULTS.md)")
    ap.add_argument("--baseline", help="also run the dlrun of this checkout (kernels built in place)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--max-batch", type=int, default=256, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args.child, int(args.threads), args.mnist, args.max_batch)
        return 0
    res = run(args)
    text = markdown(res, args, argv)
    print(text)
    if args.markdown:
        write_section(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
