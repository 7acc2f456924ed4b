"""Every ``models/*.net``: gradients check out; a short MNIST run when the data is there."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlrun import dsl
from dlrun.runtime.gradcheck import check_network

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILES = sorted((ROOT / "models").glob("*.net"))
MNIST_ROOT = ROOT.parent / "shared"


@pytest.mark.skipif(not MODEL_FILES, reason="no models/*.net yet")
@pytest.mark.parametrize("path", MODEL_FILES, ids=[p.stem for p in MODEL_FILES])
def test_gradcheck_passes_on_every_model(path):
    results = check_network(dsl.load_file(str(path)))
    bad = [f"{r.layer} {r.name}: {r.rel_error:.2e}" for r in results if not r.ok]
    assert not bad, bad
    assert results


@pytest.mark.skipif(not (MNIST_ROOT / "data" / "mnist").is_dir(),
                    reason="MNIST not found in ../shared/data/mnist")
def test_mnist_mlp_short_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dlrun", "train", str(ROOT / "models" / "mnist_mlp.net"), "--data-root",
         str(MNIST_ROOT), "--epochs", "1", "--json", "--quiet", "--out", str(tmp_path / "w.npz")],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["epochs_run"] == 1
    assert out["metrics"]["test"]["accuracy"] >= 0.95


@pytest.mark.skipif(not (MNIST_ROOT / "data" / "langid").is_dir(),
                    reason="langid not found in ../shared/data/langid")
def test_langid_short_run(tmp_path):
    # two epochs of models/langid.net: the text pipeline (CSV text column, tokens, embedding,
    # conv1d, max over time ignoring padding) learns the languages
    proc = subprocess.run(
        [sys.executable, "-m", "dlrun", "train", str(ROOT / "models" / "langid.net"), "--data-root",
         str(MNIST_ROOT), "--epochs", "2", "--json", "--quiet", "--out", str(tmp_path / "w.npz")],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["metrics"]["test"]["accuracy"] >= 0.93
