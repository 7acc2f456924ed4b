"""``dlrun train|eval|predict|gradcheck`` through the installed command (a subprocess each)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

MODELS = Path(__file__).resolve().parents[2] / "models"
pytestmark = pytest.mark.skipif(not (MODELS / "iris.net").exists(), reason="models/ not present")


def dlrun(*args, cwd=None):
    proc = subprocess.run([sys.executable, "-m", "dlrun", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc


@pytest.fixture
def models(tmp_path):
    """A private copy of models/ (training writes weights next to the model file)."""
    dest = tmp_path / "models"
    shutil.copytree(MODELS, dest, ignore=shutil.ignore_patterns("*.weights.npz"))
    return dest


def test_train_eval_predict_iris(models, tmp_path):
    p = dlrun("train", models / "iris.net", "--json", "--quiet")
    # --quiet keeps the run's result (the test line) and drops the progress
    assert p.stderr.startswith("test: loss ") and p.stderr.count("\n") == 1, p.stderr
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["model"] == "iris"
    assert set(out["metrics"]) == {"train", "validation", "test"}
    assert out["metrics"]["test"]["accuracy"] >= 0.9
    weights = models / "iris.weights.npz"
    assert out["weights"] == str(weights) and weights.exists()
    assert out["best_epoch"] >= 1 and out["epochs_run"] >= out["best_epoch"]

    e = dlrun("eval", models / "iris.net", "--weights", weights, "--json")
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["metrics"]["test"] == out["metrics"]["test"]
    e = dlrun("eval", models / "iris.net", "--weights", weights, "--split", "test")
    assert e.returncode == 0 and e.stdout.startswith("test: loss ")

    pr = dlrun("predict", models / "iris.net", "--weights", weights, "--input", models / "data" / "iris.csv")
    assert pr.returncode == 0, pr.stderr
    lines = pr.stdout.splitlines()
    assert lines[0] == "label" and len(lines) == 151
    assert set(lines[1:]) <= {"setosa", "versicolor", "virginica"}
    pr = dlrun("predict", models / "iris.net", "--weights", weights, "--input", models / "data" / "iris.csv",
               "--proba", "--output", tmp_path / "p.csv")
    assert pr.returncode == 0, pr.stderr
    rows = (tmp_path / "p.csv").read_text().splitlines()
    assert rows[0] == "setosa,versicolor,virginica"
    np.testing.assert_allclose([sum(map(float, r.split(","))) for r in rows[1:]], 1, rtol=1e-5)
    pr = dlrun("predict", models / "iris.net", "--weights", weights, "--input", models / "data" / "iris.csv",
               "--output", tmp_path / "p.npy")
    assert pr.returncode == 0, pr.stderr
    labels = np.load(tmp_path / "p.npy", allow_pickle=False)
    assert labels.shape == (150,) and labels.dtype.kind == "U"


def test_plain_progress_lines_and_overrides(models, tmp_path):
    out = tmp_path / "w.npz"
    p = dlrun(models / "iris.net", "--epochs", 3, "--batch-size", 8, "--lr", 0.02, "--seed", 5, "--out", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ""
    assert [l.split()[1] for l in p.stderr.splitlines() if l.startswith("epoch ")] == ["1/3", "2/3", "3/3"]
    assert "test: loss" in p.stderr and str(out) in p.stderr
    assert out.exists() and not (models / "iris.weights.npz").exists()


def test_two_runs_give_identical_weights(models, tmp_path):
    for name in ("a", "b"):
        p = dlrun("train", models / "digits.net", "--epochs", 3, "--quiet", "--out", tmp_path / f"{name}.npz")
        assert p.returncode == 0, p.stderr
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        assert a.files == b.files
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_gradcheck_command(models):
    p = dlrun("gradcheck", models / "iris.net")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "rel. error" in p.stdout and "iris: ok" in p.stdout
    p = dlrun("gradcheck", models / "digits.net", "--json")
    assert p.returncode == 0
    res = json.loads(p.stdout)
    assert res["ok"] and len(res["tensors"]) == 6


def test_input_errors_exit_2_without_traceback(models, tmp_path):
    iris = models / "iris.net"
    bad = tmp_path / "bad.net"
    bad.write_text("dlrun 1\nmodel m {\n input 4\n dense 3 rleu\n}\n")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o500)
    cases = [
        (["train", tmp_path / "missing.net"], "no such model file"),
        (["train", bad], "rleu"),
        (["train", iris, "--epochs", 0], "--epochs must be >= 1"),
        (["train", iris, "--lr", -1], "--lr must be a positive number"),
        (["train", iris, "--out", tmp_path / "nowhere" / "w.npz"], "does not exist"),
        (["train", iris, "--data-root", tmp_path / "nodir"], "no such directory"),
        (["train", iris, "--data-root", tmp_path], "iris.csv"),
        (["eval", iris, "--weights", tmp_path / "none.npz"], "no such weights file"),
        (["eval", iris, "--weights", tmp_path / "junk.npz"], "not a weights file"),
        (["predict", iris, "--weights", tmp_path / "junk.npz", "--input", models / "data" / "iris.csv",
          "--output", tmp_path / "o.txt"], "expected .csv or .npy"),
        (["train", iris, "--epochs", "many"], "invalid int value"),
        (["eval", iris], "--weights"),
    ]
    if os.geteuid() != 0:  # root can write anywhere
        cases.append((["train", iris, "--out", ro / "w.npz"], "cannot write"))
    for args, message in cases:
        p = dlrun(*args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert message in p.stderr, (args, p.stderr)
        assert "epoch 1" not in p.stderr  # refused before training started


def test_wrong_architecture_weights_exit_2(models, tmp_path):
    w = tmp_path / "digits.npz"
    assert dlrun("train", models / "digits.net", "--epochs", 1, "--quiet", "--out", w).returncode == 0
    p = dlrun("eval", models / "iris.net", "--weights", w)
    assert p.returncode == 2
    assert "different architecture" in p.stderr and "layer 0 (input" in p.stderr


def test_failure_during_training_exits_1(models, tmp_path):
    net = tmp_path / "explode.net"
    text = (models / "iris_petal.net").read_text()
    text = text.replace("optimizer adam lr=0.01", "optimizer sgd lr=1e6")
    text = text.replace('"data/', f'"{models}/data/')
    net.write_text(text)
    p = dlrun("train", net, "--quiet")
    assert p.returncode == 1, p.stderr
    assert "the loss is" in p.stderr


def test_predict_input_errors(models, tmp_path):
    w = tmp_path / "w.npz"
    assert dlrun("train", models / "iris.net", "--epochs", 1, "--quiet", "--out", w).returncode == 0
    (tmp_path / "short.csv").write_text("a,b\n1,2\n")
    for args, message in [
        (["--input", tmp_path / "missing.csv"], "missing.csv"),
        (["--input", tmp_path / "short.csv"], "short.csv"),
    ]:
        p = dlrun("predict", models / "iris.net", "--weights", w, *args)
        assert p.returncode == 2, p.stderr
        assert message in p.stderr


def test_regression_and_binary_predict(models, tmp_path):
    w = tmp_path / "petal.npz"
    p = dlrun("train", models / "iris_petal.net", "--json", "--quiet", "--out", w)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert set(out["metrics"]["test"]) == {"loss", "mse", "mae", "r2"}
    assert out["metrics"]["test"]["r2"] >= 0.9
    pr = dlrun("predict", models / "iris_petal.net", "--weights", w, "--input", models / "data" / "iris_regression.csv")
    assert pr.returncode == 0, pr.stderr
    lines = pr.stdout.splitlines()
    assert lines[0] == "output" and len(lines) == 151
    assert all(-1 < float(v) < 4 for v in lines[1:])
    pr = dlrun("predict", models / "iris_petal.net", "--weights", w, "--input", models / "data" / "iris_regression.csv",
               "--proba")
    assert pr.returncode == 2 and "--proba needs a classifier" in pr.stderr

    net = tmp_path / "xor_bce.net"
    net.write_text((models / "xor.net").read_text().replace("loss mse", "loss binary_cross_entropy")
                   .replace('"data/', f'"{models}/data/'))
    w = tmp_path / "xor.npz"
    assert dlrun("train", net, "--quiet", "--out", w).returncode == 0
    pr = dlrun("predict", net, "--weights", w, "--input", models / "data" / "xor.csv")
    assert pr.returncode == 0, pr.stderr
    assert pr.stdout.splitlines() == ["label", "0", "1", "1", "0"]
    pr = dlrun("predict", net, "--weights", w, "--input", models / "data" / "xor.csv", "--proba")
    assert pr.stdout.splitlines()[0] == "p(1)"


def test_every_command_that_reads_a_model_prints_its_warnings_once(models, tmp_path):
    # issue 9, item 5: the checker's warnings vanished in train (and eval, predict, gradcheck)
    text = (models / "iris.net").read_text().replace("  input 4\n", "  input 4\n  flatten\n")
    text = text.replace("epochs=150", "epochs=2")
    net = models / "warned.net"
    net.write_text(text)
    weights = tmp_path / "w.npz"
    runs = {
        "train": dlrun("train", net, "--quiet", "--no-checkpoint", "--out", weights),
        "check": dlrun("check", net),
        "summary": dlrun("summary", net),
    }
    runs["eval"] = dlrun("eval", net, "--weights", weights)
    runs["predict"] = dlrun("predict", net, "--weights", weights, "--input", models / "data" / "iris.csv")
    runs["gradcheck"] = dlrun("gradcheck", net)
    for name, p in runs.items():
        assert p.returncode == 0, (name, p.stderr)
        assert p.stderr.count("warning: 'flatten' does nothing here") == 1, (name, p.stderr)
        assert "does nothing" not in p.stdout, name


def test_data_root_run_that_would_replace_weights_next_to_the_model_warns(models, tmp_path):
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    shutil.copy(models / "data" / "iris.csv", root / "data" / "iris.csv")
    first = dlrun("train", models / "iris.net", "--epochs", 1, "--data-root", root)
    assert first.returncode == 0 and "warning: --data-root" not in first.stderr, first.stderr
    again = dlrun("train", models / "iris.net", "--epochs", 1, "--data-root", root, "--force")
    assert again.returncode == 0, again.stderr
    assert f"the weights go next to the model file, to {models / 'iris.weights.npz'}" in again.stderr
