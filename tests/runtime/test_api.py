"""The public Python API: docstring examples run; models from files train, save, load, predict."""
import doctest
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.errors import DslError, UsageError

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("module", ["dlrun.runtime.api", "dlrun.runtime.train", "dlrun.runtime.metrics"])
def test_docstring_examples_run(module):
    import importlib

    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if module.endswith("api"):
        assert result.attempted >= 10


def test_public_names_are_documented():
    for name in ("load", "loads", "Model", "History"):
        obj = getattr(dlrun, name)
        assert obj.__doc__ and len(obj.__doc__) > 40, name
    for name in ("fit", "evaluate", "predict", "predict_classes", "save", "load_weights", "summary"):
        assert getattr(dlrun.Model, name).__doc__, name


def test_bad_model_text_raises_dsl_error():
    with pytest.raises(DslError):
        dlrun.loads("dlrun 1\nmodel m {\n input 4\n dense 3 rleu\n}\n")


def _copy_model(tmp_path, name):
    shutil.copytree(MODELS / "data", tmp_path / "data")
    shutil.copy(MODELS / name, tmp_path / name)
    return tmp_path / name


@pytest.mark.skipif(not (MODELS / "iris.net").exists(), reason="models/iris.net not present")
def test_iris_from_file_trains_and_predicts_names(tmp_path):
    path = _copy_model(tmp_path, "iris.net")
    model = dlrun.load(path)
    h = model.fit()
    assert isinstance(h, dlrun.History) and h.epochs_run >= 1
    assert model.class_names == ["setosa", "versicolor", "virginica"]
    test = model.evaluate()
    assert test["accuracy"] >= 0.9
    x = model.splits().test.x
    labels = model.predict_classes(x)
    assert set(labels) <= set(model.class_names)
    proba = model.predict(x)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-5)
    w = tmp_path / "iris.weights.npz"
    model.save(w)
    again = dlrun.load(path, weights=w)
    np.testing.assert_array_equal(again.predict(x), proba)
    assert list(again.predict_classes(x)) == list(labels)
    assert again.evaluate() == test
    # inputs from a file (the CSV itself: the label column is dropped)
    assert len(again.predict_classes(str(tmp_path / "data" / "iris.csv"))) == 150


def test_fit_continues_and_predict_checks_inputs():
    model = dlrun.loads("dlrun 1\nmodel m {\n input 3\n dense 4 relu\n dense 2 softmax\n"
                        " loss cross_entropy\n optimizer adam lr=0.01\n train epochs=2 batch=8\n}\n")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = (x[:, 0] > 0).astype(int)
    model.fit(x, y, epochs=3, batch_size=4)
    steps = model.optimizer.steps
    model.fit(x, y, epochs=1)
    assert model.optimizer.steps == steps + 5
    assert model.predict(x[:1]).shape == (1, 2)
    with pytest.raises(dlrun.DataError):
        model.predict(np.zeros((2, 4)))
    with pytest.raises(dlrun.DataError):
        model.predict(np.array([[np.nan, 0, 0]]))
    with pytest.raises(UsageError):
        model.fit(x)
    with pytest.raises(UsageError, match="regression"):
        dlrun.loads("dlrun 1\nmodel r {\n input 3\n dense 1 linear\n loss mse\n optimizer sgd\n}\n").predict_classes(x)


def test_untrained_model_with_fitted_preprocessing_needs_fit_first():
    model = dlrun.loads('dlrun 1\nmodel m {\n data {\n  train "x.npz"\n  standardize\n }\n input 3\n'
                        ' dense 2 softmax\n loss cross_entropy\n optimizer sgd\n}\n')
    with pytest.raises(UsageError, match="fit"):
        model.predict(np.zeros((1, 3)))


def test_summary_lists_layers():
    model = dlrun.loads("dlrun 1\nmodel m {\n input 3\n dense 4 relu as hidden\n dense 2 softmax\n"
                        " loss cross_entropy\n optimizer adam\n}\n")
    text = model.summary()
    row = next(line for line in text.splitlines() if line.split()[1:2] == ["hidden"])
    assert row.split()[2:4] == ["dense", "relu"]
    assert "total parameters: 26 trainable" in text
    assert repr(model) == "<dlrun.Model 'm' input=(3,) output=(2,)>"


def test_predict_from_many_threads_matches_single_thread():
    from concurrent.futures import ThreadPoolExecutor

    model = dlrun.loads("dlrun 1\nmodel m {\n input 20\n dense 64 relu\n batchnorm\n dropout 0.3\n"
                        " dense 5 softmax\n loss cross_entropy\n optimizer adam lr=0.01\n train epochs=2\n}\n")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 20)).astype(np.float32)
    model.fit(x, rng.integers(0, 5, 300))
    inputs = [x[i * 30:(i + 1) * 30 + (i % 3) * 7] for i in range(10)]
    expected = [model.predict(xi, batch_size=16) for xi in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(5):
            got = list(pool.map(lambda xi: model.predict(xi, batch_size=16), inputs * 4))
            for i, g in enumerate(got):
                np.testing.assert_array_equal(g, expected[i % len(inputs)])


def test_classifier_can_report_mse_and_mae_of_probabilities():
    model = dlrun.loads("dlrun 1\nmodel m {\n input 2\n dense 3 softmax\n loss cross_entropy\n"
                        " optimizer adam lr=0.01\n train epochs=2 metrics=[accuracy, mse, mae]\n}\n")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 2))
    y = rng.integers(0, 3, 50)
    h = model.fit(x, y)
    assert {"accuracy", "mse", "mae"} <= set(h.final)
    ev = model.evaluate(x, y)
    p = model.predict(x).astype(np.float64)
    onehot = np.eye(3)[y]
    np.testing.assert_allclose(ev["mse"], np.mean((p - onehot) ** 2), rtol=1e-5)
    np.testing.assert_allclose(ev["mae"], np.mean(np.abs(p - onehot)), rtol=1e-5)


_WARNED = ("dlrun 1\nmodel w {\n input 4\n flatten\n dense 3 softmax\n loss cross_entropy\n"
           " optimizer adam\n}\n")


def test_load_and_loads_issue_the_checkers_warnings(tmp_path):
    # issue 9, item 5: warnings reach API users as Python warnings and stay on the model
    path = tmp_path / "w.net"
    path.write_text(_WARNED)
    for make, where in ((lambda: dlrun.loads(_WARNED), "<string>:4:2"), (lambda: dlrun.load(path), f"{path}:4:2")):
        with pytest.warns(dlrun.ModelWarning) as record:
            model = make()
        assert len(record) == 1
        message = str(record[0].message)
        assert message.startswith(f"{where}: warning: 'flatten' does nothing here") and "\n" not in message
        assert record[0].filename == __file__   # points at the caller
        assert [w.message for w in model.warnings] == [message.split("warning: ", 1)[1]]
    clean = dlrun.loads(_WARNED.replace(" flatten\n", ""))
    assert clean.warnings == []


def test_save_never_overwrites_the_models_inputs_or_a_foreign_file(tmp_path):
    # As `dlrun train --out`: Model.save replaced the training CSV with a zip, exit 0.
    shutil.copytree(MODELS, tmp_path / "m")
    m = dlrun.load(tmp_path / "m" / "xor.net")
    m.fit(epochs=1, progress=False)
    data = tmp_path / "m" / "data" / "xor.csv"
    before = data.read_bytes()
    for target, force in [(data, False), (data, True), (tmp_path / "m" / "xor.net", True)]:
        with pytest.raises(UsageError, match="of this run; writing it would destroy it"):
            m.save(target, force=force)
    assert data.read_bytes() == before
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    with pytest.raises(UsageError, match="not a dlrun weights file.*force=True"):
        m.save(notes)
    assert notes.read_text() == "mine"
    w = tmp_path / "w.npz"
    m.save(w)
    m.save(w)  # a weights file is replaced without asking
    m.save(notes, force=True)
    assert notes.read_bytes()[:2] == b"PK"


def test_fit_on_arrays_holds_out_the_files_validation_fraction_stratified_and_seeded(tmp_path):
    text = ('dlrun 1\nmodel v {\n  data {\n    train "unused.npz"\n    validation 0.25\n  }\n  input 3\n'
            '  dense 3 softmax\n  loss cross_entropy\n  optimizer adam lr=0.05\n  train epochs=3 batch=8 seed=4\n'
            '  early_stopping monitor=val_loss patience=5\n}\n')
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [40, 24, 16])
    x = rng.standard_normal((80, 3)) + y[:, None]
    x_before = x.copy()
    m = dlrun.loads(text)
    h = m.fit(x, y, progress=False)
    assert "val_loss" in h.final and np.array_equal(x, x_before)   # early stopping has its validation
    held = {}
    for seed in (None, 4, 5):
        mm = dlrun.loads(text)
        train, val = mm._hold_out(mm._dataset(x, y, "x")[0], seed)
        assert len(val) == 20 and len(train) == 60
        assert np.bincount(val.y.astype(int)).tolist() == [10, 6, 4]   # stratified by class
        held[seed] = val.x.tobytes()
    assert held[None] == held[4] != held[5]   # the file's train seed by default; seed= moves it
    # validation_data= replaces the hold-out; loads(seed=) moves the initialisation
    m2 = dlrun.loads(text, seed=9)
    assert m2.network.seed == 9
    h2 = m2.fit(x, y, validation_data=(x[:10], y[:10]), progress=False, seed=5)
    assert "val_loss" in h2.final


def test_load_takes_lr_and_refuses_bad_overrides():
    x = np.random.default_rng(0).random((30, 4))
    y = np.arange(30) % 3
    model = dlrun.load(MODELS / "iris.net", lr=0.125, seed=5)
    model.fit(x, y, epochs=1)
    assert model.optimizer.lr == 0.125
    assert dlrun.loads((MODELS / "iris.net").read_text(), lr=0.25)._lr == 0.25
    for kwargs, message in [({"lr": 0}, "lr must be a positive number, got 0"),
                            ({"lr": float("inf")}, "lr must be a positive number, got inf"),
                            ({"lr": "0.1"}, "lr must be a positive number, got '0.1'"),
                            ({"seed": -1}, "seed must be an integer >= 0, got -1"),
                            ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5")]:
        with pytest.raises(UsageError, match=re.escape(message)):
            dlrun.load(MODELS / "iris.net", **kwargs)


def test_fit_refuses_epochs_and_batch_sizes_that_are_not_whole_numbers():
    # fit(epochs=2.5) used to train 2 epochs without a word
    x = np.random.default_rng(0).random((30, 4))
    y = np.arange(30) % 3
    model = dlrun.load(MODELS / "iris.net")
    for kwargs, message in [({"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
                            ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
                            ({"epochs": True}, "epochs must be an integer >= 1, got True"),
                            ({"batch_size": 8.0}, "batch size must be an integer >= 1, got 8.0"),
                            ({"batch_size": "8"}, "batch size must be an integer >= 1, got '8'")]:
        with pytest.raises(UsageError, match=re.escape(message)):
            model.fit(x, y, **kwargs)
    model.fit(x, y, epochs=np.int64(1), batch_size=np.int32(8))


def test_a_trained_model_pickles_and_predicts_the_same():
    import pickle

    x = np.random.default_rng(1).random((30, 4))
    y = np.arange(30) % 3
    model = dlrun.load(MODELS / "iris.net")
    model.fit(x, y, epochs=2)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    again.fit(x, y, epochs=1)   # its own lock and buffers: it trains on
    assert again.history.epochs_run == 1
