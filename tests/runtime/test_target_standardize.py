"""``target standardize``: a regression model trains on standardized targets (statistics of
the training split, saved with the weights) and answers in the targets' own units: predict,
evaluate's mse/mae/r2, dlrun eval/predict and the ONNX export."""
import json
import subprocess
import sys

import numpy as np
import pytest

import dlrun
from dlrun.errors import DslError, WeightsError


def _text(target=True, loss="mse", out="dense 2", data=""):
    block = "\n  target standardize" if target else ""
    return (f"dlrun 1\nmodel r {{\n  data {{{data}{block}\n  }}\n  input 3\n  dense 16 tanh\n  {out}\n"
            f"  loss {loss}\n  optimizer adam lr=0.01\n  train epochs=15 batch=32 seed=1\n}}\n")


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3)).astype(np.float32)
    base = np.stack([x @ np.array([1.0, -2.0, 0.5]), np.sin(2 * x[:, 1]) + x[:, 2]], axis=1)
    return x, 1e4 + np.array([500.0, 0.01]) * base   # a large offset, two very different scales


def test_training_equals_training_on_prescaled_targets_and_answers_in_original_units():
    x, y = _data()
    m = dlrun.loads(_text())
    m.fit(x, y)
    t = m.preprocessor.target
    np.testing.assert_array_equal(t.mean, y.mean(axis=0))
    np.testing.assert_allclose(t.std, y.std(axis=0), rtol=1e-12)
    # the same run on targets standardized by hand: the same weights, bit for bit
    pre = dlrun.loads(_text(target=False))
    ys = (y - t.mean) / t.std
    pre.fit(x, ys)
    assert np.array_equal(m.network.store.flat, pre.network.store.flat)
    mine, theirs = m.evaluate(x, y), pre.evaluate(x, ys)
    assert mine["r2"] == pytest.approx(theirs["r2"], rel=1e-9)
    assert mine["r2"] > 0.8
    # predictions and metrics are in y's units
    p = m.predict(x)
    np.testing.assert_allclose(p, pre.predict(x) * t.std + t.mean, rtol=1e-6)
    err = p.astype(np.float64) - y
    assert mine["mse"] == pytest.approx(float((err ** 2).mean()), rel=1e-4)
    assert mine["mae"] == pytest.approx(float(np.abs(err).mean()), rel=1e-4)
    # the loss stays what training minimises: in standardized units
    assert mine["loss"] == pytest.approx(theirs["loss"], rel=1e-9)


def test_without_it_large_targets_train_badly():
    # what the statement is for (and the pre-scaled baseline of the test above)
    x, y = _data()
    raw = dlrun.loads(_text(target=False))
    raw.fit(x, y)
    assert raw.evaluate(x, y)["r2"] < 0.5


def test_statistics_are_saved_and_weights_without_them_are_refused(tmp_path):
    x, y = _data()
    m = dlrun.loads(_text())
    m.fit(x, y)
    path = m.save(tmp_path / "w.npz")
    again = dlrun.loads(_text(), weights=path)
    assert np.array_equal(again.predict(x), m.predict(x))
    assert again.evaluate(x, y) == m.evaluate(x, y)
    with pytest.raises(WeightsError, match="trained on standardized targets.*add 'target standardize'"):
        dlrun.loads(_text(target=False), weights=path)
    plain = dlrun.loads(_text(target=False))
    plain.fit(x, y)
    plain_path = plain.save(tmp_path / "plain.npz")
    with pytest.raises(WeightsError, match="standardizes the targets.*holds? no target statistics"):
        dlrun.loads(_text(), weights=plain_path)


def test_refused_on_classification_models():
    with pytest.raises(DslError, match=r"4:3: error: 'target standardize' standardizes a regression model's "
                                       r"targets, but the loss 'cross_entropy' trains a classifier"):
        dlrun.loads(_text(loss="cross_entropy", out="dense 2 softmax"))
    with pytest.raises(DslError, match="unknown value 'normalize' for 'kind'"):
        dlrun.loads(_text().replace("target standardize", "target normalize"))


def test_cli_train_eval_predict_in_original_units(tmp_path):
    x, y = _data()
    np.savez(tmp_path / "train.npz", x=x, y=y)
    net = tmp_path / "r.net"
    net.write_text(_text(data='\n    train "train.npz"\n    validation 0.2'))
    run = lambda *a: subprocess.run([sys.executable, "-m", "dlrun", *map(str, a)], capture_output=True, text=True)
    p = run("train", net, "--out", tmp_path / "w.npz", "--quiet")
    assert p.returncode == 0, p.stderr
    p = run("eval", net, "--weights", tmp_path / "w.npz", "--json")
    assert p.returncode == 0, p.stderr
    val = json.loads(p.stdout)["metrics"]["validation"]
    assert val["mse"] > 100.0 and val["r2"] > 0.5   # mse in y's units (y's first std is ~1000)
    p = run("predict", net, "--weights", tmp_path / "w.npz", "--input", tmp_path / "train.npz",
            "--output", tmp_path / "p.npy")
    assert p.returncode == 0, p.stderr
    pred = np.load(tmp_path / "p.npy")
    assert abs(float(pred[:, 0].mean()) - 1e4) < 500


def test_onnx_export_matches_predict(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from dlrun.runtime.export import export_onnx

    x, y = _data()
    m = dlrun.loads(_text())
    m.fit(x, y)
    path = export_onnx(m, tmp_path / "r.onnx")
    got = ort.InferenceSession(str(path)).run(None, {"input": x})[0]
    want = m.predict(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=0)
    assert np.max(np.abs(got - want) / np.abs(want)) <= 1e-5
