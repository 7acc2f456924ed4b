"""``dlrun export``: an ONNX model that ONNX Runtime runs to what ``dlrun predict`` gives
(preprocessing included), for every example model that can be exported; the others are
refused with the reason."""
import shutil
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.runtime.cli import main

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (a test extra) is not installed")

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED = ["iris", "iris_petal", "xor", "digits", "digits_cnn", "digits_resnet"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    dest = tmp_path_factory.mktemp("models")
    for name in SHIPPED:
        shutil.copy(MODELS / f"{name}.net", dest)
    shutil.copytree(MODELS / "data", dest / "data")
    return dest


@pytest.mark.parametrize("name", SHIPPED)
def test_onnx_runtime_gives_what_predict_gives(folder, name, tmp_path):
    net, w, out = folder / f"{name}.net", tmp_path / "w.npz", tmp_path / f"{name}.onnx"
    assert main(["train", str(net), "--epochs", "2", "--quiet", "--out", str(w), "--no-checkpoint"]) == 0
    assert main(["export", str(net), "--weights", str(w), "--output", str(out)]) == 0
    model = dlrun.load(net, weights=w)
    sp = model.splits()
    x = np.concatenate([s.x for s in (sp.train, sp.validation, sp.test) if s is not None])
    want = model.predict(x)
    sess = ort.InferenceSession(str(out))
    got = sess.run(None, {"input": np.asarray(x, np.float32).reshape((len(x),) + model.input_shape)})[0]
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-5


def test_models_without_an_onnx_form_are_refused_naming_why(tmp_path, capsys):
    seq = ("dlrun 1\nmodel s {\n  input 12\n  embedding 4 vocab=20\n  conv1d 3 3 relu\n  global_maxpool\n"
           "  dense 2 softmax\n  loss cross_entropy\n  optimizer adam\n}\n")
    m = dlrun.loads(seq)
    rng = np.random.default_rng(0)
    m.fit(rng.integers(1, 20, (16, 12)).astype(np.float32), np.arange(16) % 2, epochs=1)
    w = m.save(tmp_path / "s.npz")
    (tmp_path / "s.net").write_text(seq)
    assert main(["export", str(tmp_path / "s.net"), "--weights", str(w), "--output", str(tmp_path / "s.onnx")]) == 2
    assert "layer 1 (embedding, line 4) has no ONNX form" in capsys.readouterr().err
    assert not (tmp_path / "s.onnx").exists()
    assert main(["export", str(tmp_path / "s.net"), "--weights", str(w), "--output", str(tmp_path / "s.txt")]) == 2
    assert "ending in .onnx" in capsys.readouterr().err


def test_text_models_are_refused_because_their_tokenizer_is_outside_the_graph(tmp_path):
    from dlrun.runtime.export import build_onnx

    text = (MODELS / "langid.net").read_text()
    m = dlrun.loads(text.replace("  embedding 64\n", "  embedding 64 vocab=50\n"))
    with pytest.raises(dlrun.UsageError, match="this model reads texts, whose tokenizer runs outside any graph"):
        build_onnx(m)


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_cnn"])
def test_the_mnist_examples_export_with_their_initial_weights(name, tmp_path):
    # their data are not shipped; their preprocessing (a fixed scale) needs none, and the
    # network with its initial weights is the same graph as a trained one
    model = dlrun.load(MODELS / f"{name}.net")
    if not model.preprocessor.fitted:
        pytest.skip(f"{name}.net's preprocessing is fitted on its data, which is not shipped")
    w = model.save(tmp_path / "w.npz")
    assert main(["export", str(MODELS / f"{name}.net"), "--weights", str(w), "--output", str(tmp_path / "m.onnx")]) == 0
    x = np.random.default_rng(1).integers(0, 256, (9,) + model.input_shape).astype(np.float32)
    want = dlrun.load(MODELS / f"{name}.net", weights=w).predict(x)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"input": x})[0]
    assert np.abs(got - want).max() <= 1e-5


def test_a_sequence_batchnorm_exports_per_channel(tmp_path):
    # numbers shaped T x C (no tokenizer): batch norm's scale and shift broadcast over time
    text = ("dlrun 1\nmodel s {\n  input 6x3\n  batchnorm\n  activation tanh\n  flatten\n  dense 2 softmax\n"
            "  loss cross_entropy\n  optimizer adam lr=0.05\n  train epochs=3 batch=8 seed=1\n}\n")
    m = dlrun.loads(text)
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 1, (40, 18)) * np.tile([1.0, 5.0, 0.2], 6) + np.tile([3.0, -2.0, 0.0], 6))
    m.fit(x.astype(np.float32), (x[:, 0] > 3).astype(int))
    assert m.network.compute[0].state["running_mean"].shape == (3,)
    from dlrun.runtime.export import export_onnx

    out = export_onnx(m, tmp_path / "s.onnx")
    got = ort.InferenceSession(str(out)).run(None, {"input": x.astype(np.float32).reshape(40, 6, 3)})[0]
    assert np.abs(got - m.predict(x.astype(np.float32))).max() <= 1e-5
