"""benchmarks/compare.py: the smoke run of every workload, and the PyTorch references being
the networks of the model files.

The smoke runs need the shared data (``../shared`` next to the checkout, or the folder in
``DLRUN_DATA_ROOT``); without it they skip, and the run is checked to say so. Without PyTorch
(a benchmark-only dependency) the run goes on with dlrun alone and says PyTorch is missing.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
DATA_ROOT = Path(os.environ.get("DLRUN_DATA_ROOT") or ROOT.parent / "shared")
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnx") is not None

# workload -> (data folder it needs, record prefix, batch option)
WORKLOADS = {
    "mlp": ("mnist", "", ["--batch-sizes", "32"]),
    "cnn": ("mnist", "cnn/", ["--cnn-batch-sizes", "32"]),
    "text": ("langid", "text/", ["--seq-batch", "32"]),
    "audio": ("spoken_digits", "audio/", ["--seq-batch", "32"]),
}


def run_compare(tmp_path, *args, timeout=900):
    out = tmp_path / "run.json"
    md = tmp_path / "run.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "compare.py"), "--json", str(out), "--markdown", str(md), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), md.read_text(), proc.stderr


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_quick_run_of_each_workload(tmp_path, workload):
    folder, prefix, batch = WORKLOADS[workload]
    if not (DATA_ROOT / "data" / folder).is_dir():
        pytest.skip(f"{DATA_ROOT / 'data' / folder} not found (set DLRUN_DATA_ROOT)")
    got, md, _ = run_compare(
        tmp_path, "--quick", "--workloads", workload, "--data-root", str(DATA_ROOT), "--limit", "64",
        "--rounds", "1", "--warmup", "0", "--latency-calls", "10", "--parts", "train,latency", *batch)
    works = {(r["work"], r["tool"]) for r in got["records"]}
    assert (f"{prefix}train_epoch_b32", "dlrun") in works
    assert (f"{prefix}predict_latency_b1", "dlrun") in works
    assert (f"{prefix}predict_latency_b64", "dlrun") in works
    rec = next(r for r in got["records"] if r["work"] == f"{prefix}train_epoch_b32" and r["tool"] == "dlrun")
    assert rec["partial_epoch_samples"] == 64 and rec["time_scaled_to_full_epoch"] > 1
    if HAVE_TORCH:
        assert (f"{prefix}train_epoch_b32", "pytorch") in works
        assert "paired_ratio_to_pytorch" in rec
        acc = next(r for r in got["records"] if r["work"] == f"{prefix}test_accuracy_b32" and r["tool"] == "dlrun")
        assert acc["agrees"] is None      # partial epochs: no verdict
    else:
        assert any("pytorch skipped: PyTorch not installed" in n for n in got["notes"]), got["notes"]
    if workload == "cnn" and HAVE_ORT:
        # ONNX Runtime runs dlrun's trained weights: its accuracy must be dlrun's
        assert (f"{prefix}predict_latency_b1", "onnxruntime") in works
        assert any("ONNX Runtime runs a graph built from dlrun's trained weights" in n for n in got["notes"])
    # what the report must say about the run
    assert "Command: `python benchmarks/compare.py" in md
    assert re.search(r"Load average \(1 / 5 / 15 min\) at start: [\d.]+ [\d.]+ [\d.]+; at end: [\d.]+", md)
    assert "Machine: " in md and "Partial epochs" in md and "Smoke run" in md
    assert got["meta"]["workloads"][workload]["train_samples"] == 64


def test_absent_data_is_said_per_workload(tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    got, md, err = run_compare(tmp_path, "--quick", "--data-root", str(empty), "--parts", "train,latency,memory")
    notes = " ".join(got["notes"])
    for name, (folder, _, _) in WORKLOADS.items():
        assert got["meta"]["workloads"][name]["skipped"]
        assert str(empty / "data" / folder) in got["meta"]["workloads"][name]["skipped"]
    assert notes.count("--data-root") >= 4
    assert "Workloads: none; mlp skipped; cnn skipped; text skipped; audio skipped" in md
    assert not got["records"]


def test_missing_pytorch_is_said_not_failed(tmp_path):
    # a PyTorch that cannot be imported: the run goes on with dlrun and says why PyTorch is left out
    if not (DATA_ROOT / "data" / "spoken_digits").is_dir():
        pytest.skip(f"{DATA_ROOT / 'data' / 'spoken_digits'} not found (set DLRUN_DATA_ROOT)")
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("hidden by the test")\n')
    env = dict(os.environ, PYTHONPATH=str(fake.parent))
    out = tmp_path / "run.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "compare.py"), "--quick", "--workloads", "audio", "--data-root",
         str(DATA_ROOT), "--limit", "32", "--rounds", "1", "--warmup", "0", "--parts", "train",
         "--json", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert "Audio: models/spoken_digits.net: pytorch skipped: PyTorch not installed (hidden by the test); " \
           "pip install torch==2.13.0" in got["notes"]
    assert {r["tool"] for r in got["records"]} == {"dlrun"}


@pytest.mark.parametrize("model", ["mnist_mlp", "langid"])
def test_dlrun_trains_on_every_row_it_is_given(model):
    # the model files hold out 'validation 0.1' of arrays given to fit(); the benchmark's
    # dlrun epoch must train on all the rows the other tools train on, with no validation pass
    sys.path.insert(0, str(BENCH))
    try:
        import _compare_tools as ct
    finally:
        sys.path.remove(str(BENCH))
    rng = np.random.default_rng(0)
    if model == "mnist_mlp":
        x = rng.integers(0, 256, (60, 784), dtype=np.uint8)
        runner = ct.DlrunRunner((x, rng.integers(0, 10, 60), x[:10], rng.integers(0, 10, 10)))
    else:
        x = rng.integers(0, 40, (60, 200)).astype(np.float32)
        text = re.sub(r"(\bembedding\s+\d+)", r"\1 vocab=40", (ROOT / "models" / "langid.net").read_text())
        runner = ct.DlrunRunner((x, rng.integers(0, 8, 60), x[:10], rng.integers(0, 8, 10)), text=text,
                                base_dir=str(ROOT))
    assert re.search(r"^\s*validation\s", runner.text, re.M)      # the file says it
    assert not re.search(r"^\s*validation\s", runner.model_text(16, 0), re.M)
    runner.setup(16, 0)
    runner.epoch(16)
    final = runner.model(16).history.final
    assert not [k for k in final if k.startswith("val_")], final


def test_unknown_workload_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(BENCH / "compare.py"), "--workloads", "mlp,video"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown workload(s) video; known: mlp, cnn, text, audio" in proc.stderr


def test_markdown_replaces_only_the_run_between_markers(tmp_path):
    sys.path.insert(0, str(BENCH))
    try:
        from compare import RUN_BEGIN, RUN_END, write_markdown
    finally:
        sys.path.remove(str(BENCH))
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\nintro\n\n{RUN_BEGIN}\nold run\n{RUN_END}\n\n## History\nkept\n")
    write_markdown(str(path), "# new run\n\nfigures\n")
    text = path.read_text()
    assert "old run" not in text and "# new run\n\nfigures" in text
    assert text.startswith("# Results\n\nintro\n\n" + RUN_BEGIN) and text.endswith("## History\nkept\n")


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch not installed (benchmark-only dependency)")
@pytest.mark.parametrize("model", ["langid", "spoken_digits"])
def test_pytorch_reference_is_the_model_files_network(model):
    # The PyTorch network compare.py races is translated from the model file: with dlrun's
    # weights copied in it gives dlrun's probabilities, padding ignored in the max over time.
    import torch

    import dlrun
    from dlrun import dsl

    sys.path.insert(0, str(BENCH))
    try:
        from _compare_seq import torch_seq_net
    finally:
        sys.path.remove(str(BENCH))
    path = ROOT / "models" / f"{model}.net"
    text = path.read_text()
    vocab = None
    if model == "langid":
        vocab = 40
        text = re.sub(r"(\bembedding\s+\d+)", rf"\1 vocab={vocab}", text)
    m = dlrun.loads(text, base_dir=str(ROOT))
    rng = np.random.default_rng(0)
    shape = m.input_shape
    if model == "langid":
        x = np.zeros((5,) + shape, np.float32)
        for i, n in enumerate((1, 7, 60, 150, shape[0])):     # texts of different lengths, zero-padded
            x[i, :n] = rng.integers(2, vocab, n)
    else:
        x = rng.standard_normal((5,) + shape).astype(np.float32)
    m.preprocessor.fit(x)
    for layer in m.network.body:
        if layer.kind == "batchnorm":   # statistics per (step, channel) feature: their order matters
            for arr, lo in ((layer.params["gamma"], 0.5), (layer.params["beta"], -0.5),
                            (layer.state["running_mean"], -0.5), (layer.state["running_var"], 0.5)):
                arr[...] = rng.uniform(lo, lo + 1, arr.shape)
    want = m.predict(x)

    torch.manual_seed(0)
    net, _ = torch_seq_net(torch, dsl.load_file(str(path)), vocab)
    with torch.no_grad():
        mods = [mod for mod in net.mods if any(True for _ in mod.parameters())]
        layers = [layer for layer in m.network.body if layer.params]
        assert len(mods) == len(layers)
        for mod, layer in zip(mods, layers):
            p = layer.params
            if layer.kind == "embedding":
                mod.weight.copy_(torch.from_numpy(np.asarray(p["w"])))
            elif layer.kind == "conv1d":                      # dlrun (K, C, F) -> (F, C, K)
                mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.asarray(p["w"]).transpose(2, 1, 0))))
                mod.bias.copy_(torch.from_numpy(np.asarray(p["b"])))
            elif layer.kind == "dense":                       # dlrun (in, out) -> (out, in)
                mod.weight.copy_(torch.from_numpy(np.ascontiguousarray(np.asarray(p["w"]).T)))
                mod.bias.copy_(torch.from_numpy(np.asarray(p["b"])))
            elif layer.kind == "batchnorm":
                mod.weight.copy_(torch.from_numpy(np.asarray(p["gamma"])))
                mod.bias.copy_(torch.from_numpy(np.asarray(p["beta"])))
                mod.running_mean.copy_(torch.from_numpy(np.asarray(layer.state["running_mean"])))
                mod.running_var.copy_(torch.from_numpy(np.asarray(layer.state["running_var"])))
            else:
                raise AssertionError(f"unexpected layer with parameters: {layer.kind}")
        net.eval()
        xin = torch.from_numpy(x).long() if model == "langid" else torch.from_numpy(standardized(m, x))
        got = torch.softmax(net(xin), 1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def standardized(m, x):
    flat = np.empty((x.shape[0], int(np.prod(x.shape[1:]))), np.float32)
    m.preprocessor.apply(x.reshape(x.shape[0], -1), flat)
    return flat.reshape(x.shape)


def test_quick_run_of_the_size_sweep_and_the_thread_contention(tmp_path):
    # one smoke run of both: the sweep's step times, GEMM floor, ratio table and plot; dlrun
    # and PyTorch at 1 and 2 threads with and without a busy core; load average per workload
    if not (DATA_ROOT / "data" / "mnist").is_dir():
        pytest.skip(f"{DATA_ROOT / 'data' / 'mnist'} not found (set DLRUN_DATA_ROOT)")
    if not HAVE_TORCH:   # the sweep and threads workloads stop without it (not yet said and skipped)
        pytest.skip("PyTorch is not installed (pip install torch==2.13.0): the sweep compares against it")
    png = tmp_path / "sweep.png"
    got, md, _ = run_compare(
        tmp_path, "--quick", "--workloads", "sweep,threads", "--data-root", str(DATA_ROOT), "--rounds", "1",
        "--warmup", "0", "--parts", "train", "--sweep-widths", "64", "--sweep-batches", "32",
        "--sweep-cnn-batches", "16", "--sweep-plot", str(png))
    works = {(r["work"], r["tool"]) for r in got["records"]}
    mlp = next(r for r in got["records"] if r["work"].startswith("sweep/step_mlp-h64-b32-") and r["tool"] == "dlrun")
    cnn = next(r for r in got["records"] if r["work"].startswith("sweep/step_cnn-b16-") and r["tool"] == "dlrun")
    assert mlp["model"] == "MLP 784-64-64-10" and mlp["batch"] == 32 and mlp["step_gflop"] > 0
    assert cnn["step_gflop"] > mlp["step_gflop"]
    for r in (mlp, cnn):
        assert (r["work"].replace("step_", "gemm_floor_"), "numpy-sgemm") in works
        assert "x_gemm_floor" in r
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "#### Size sweep: training step time, dlrun vs PyTorch eager" in md
    assert "| MLP 784-64-64-10 | 32 |" in md and "| CNN recipe | 16 |" in md
    assert "3 dense layers" in md
    for name in ("sweep", "threads"):
        before, after = got["meta"]["workloads"][name]["loadavg_before_after"]
        assert len(before) == 3 and len(after) == 3
    assert md.count("Load average (1 / 5 / 15 min) before: ") == 2
    assert "#### BLAS threads under contention: ms per training step" in md
    states = {(r["tool"], r["state"]) for r in got["records"] if r["work"].startswith("threads/step_mlp-h512_256-b128")}
    assert {("dlrun-1t", "as is"), ("dlrun-2t", "as is"), ("dlrun-1t", "busy"), ("dlrun-2t", "busy")} <= states
    if HAVE_TORCH:
        assert "paired_ratio_to_pytorch" in mlp
        assert ("pytorch-2t", "busy") in states
        assert any(t["target"].startswith("sweep: lowest speed-up vs PyTorch") for t in got["targets"])


def test_sweep_configurations_cover_the_issue():
    sys.path.insert(0, str(BENCH))
    try:
        import compare
        from _compare_sweep import configurations, mlp_text, parse_config
    finally:
        sys.path.remove(str(BENCH))
    args = compare.parse_args([])
    got = [parse_config(c) for c in configurations(args)]
    assert sorted((w[0], b) for k, w, b, _ in got if k == "mlp") == \
        sorted((w, b) for w in (64, 256, 1024, 2048) for b in (32, 256))
    assert sorted(b for k, _, b, _ in got if k == "cnn") == [16, 64, 256]
    assert all(s >= 5 for _, _, _, s in got)
    assert "sweep" in args.workloads and "threads" in args.workloads      # in the default run
    assert args.sweep_plot.endswith(os.path.join("benchmarks", "sweep.png"))
    assert compare.parse_args(["--quick"]).sweep_plot is None
    # the full run writes RESULTS.md and results.json; a partial or smoke run only when asked
    assert args.markdown == str(BENCH / "RESULTS.md") and args.json == str(BENCH / "results.json")
    for partial in (["--quick"], ["--workloads", "sweep"], ["--parts", "train"], ["--limit", "100"]):
        got = compare.parse_args(partial)
        assert got.markdown is None and got.json is None, partial
    text = mlp_text((ROOT / "models" / "mnist_mlp.net").read_text(), 1024)
    assert re.findall(r"(?m)^\s*dense\s+(\d+)", text) == ["1024", "1024", "10"]
