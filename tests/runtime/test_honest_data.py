"""Issue 9 items 1-3: CSV features matched by header name, the validation/test split saved with
the weights, and the data block's preprocessing checked against the weights."""
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.dsl import ir
from dlrun.errors import DataError, WeightsError
from dlrun.runtime import data as D

MODELS = Path(__file__).resolve().parents[2] / "models"
pytestmark = pytest.mark.skipif(not (MODELS / "iris.net").exists(), reason="models/ not present")


def dlrun_cli(*args):
    proc = subprocess.run([sys.executable, "-m", "dlrun", *map(str, args)], capture_output=True, text=True,
                          timeout=600)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _iris(tmp_path, epochs=5, edit=None):
    """A copy of models/iris.net (few epochs) and its data in tmp_path."""
    shutil.copytree(MODELS / "data", tmp_path / "data", dirs_exist_ok=True)
    text = (MODELS / "iris.net").read_text().replace("epochs=150", f"epochs={epochs}")
    if edit is not None:
        text = edit(text)
    path = tmp_path / "iris.net"
    path.write_text(text)
    return path


def _permuted_csv(src, dest, order, rename=None):
    lines = Path(src).read_text().splitlines()
    out = []
    for k, line in enumerate(lines):
        cells = line.split(",")
        if k == 0 and rename:
            cells = [rename.get(c, c) for c in cells]
        out.append(",".join(cells[i] for i in order))
    Path(dest).write_text("\n".join(out) + "\n")
    return dest


def _strip(path, out, prefix):
    """A copy of a weights file without the arrays whose names start with ``prefix``
    (what files written before those arrays existed look like)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith(prefix)}
    np.savez(out, **arrays)
    return out


def _csv(path, header, rows):
    Path(path).write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------------------------
# 1. CSV features are matched by header name


def _load(train, test, **kw):
    data = ir.Data(train=ir.Source(str(train)), test=ir.Source(str(test)), label="y")
    return D.load_splits(data, base_dir=None, input_shape=(3,), n_outputs=2, task="classification", seed=0, **kw)


def test_test_file_columns_in_another_order_are_matched_by_name(tmp_path):
    train = _csv(tmp_path / "train.csv", ["a", "b", "c", "y"], [[1, 2, 3, 0], [4, 5, 6, 1]])
    test = _csv(tmp_path / "test.csv", ["c", "y", "a", "b"], [[30, 1, 10, 20]])
    with pytest.warns(dlrun.DataWarning, match="another order than in the training file .*train.csv; matched by header name"):
        sp = _load(train, test)
    assert sp.test.x.tolist() == [[10.0, 20.0, 30.0]]
    assert sp.feature_names == ["a", "b", "c"]


def test_test_file_with_renamed_missing_or_unknown_columns_is_refused(tmp_path):
    train = _csv(tmp_path / "train.csv", ["a", "b", "c", "y"], [[1, 2, 3, 0], [4, 5, 6, 1]])
    renamed = _csv(tmp_path / "renamed.csv", ["a", "b", "cc", "y"], [[1, 2, 3, 0]])
    with pytest.raises(DataError, match=r"renamed.csv: no column 'c' and unknown column 'cc'; the features of "
                                        r"the training file .*train.csv are the columns 'a', 'b', 'c'"):
        _load(train, renamed)
    extra = _csv(tmp_path / "extra.csv", ["a", "b", "c", "d", "y"], [[1, 2, 3, 4, 0]])
    with pytest.raises(DataError, match="extra.csv: unknown column 'd'"):
        _load(train, extra)
    fewer = _csv(tmp_path / "fewer.csv", ["a", "c", "y"], [[1, 3, 0]])
    with pytest.raises(DataError, match="fewer.csv: no column 'b';"):
        _load(train, fewer)


def test_predict_inputs_are_matched_by_the_saved_names(tmp_path):
    path = _iris(tmp_path)
    model = dlrun.load(path)
    model.fit()
    w = model.save(tmp_path / "w.npz")
    with np.load(w) as z:
        assert z["data.feature_names"].tolist() == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    loaded = dlrun.load(path, weights=w)
    csv = tmp_path / "data" / "iris.csv"
    expected = loaded.predict(str(csv))
    perm = _permuted_csv(csv, tmp_path / "perm.csv", [3, 4, 1, 0, 2])
    with pytest.warns(dlrun.DataWarning, match="another order than in the weights .*w.npz"):
        np.testing.assert_array_equal(loaded.predict(str(perm)), expected)
    renamed = _permuted_csv(csv, tmp_path / "renamed.csv", [0, 1, 2, 3, 4], rename={"petal_width": "pw"})
    with pytest.raises(DataError, match="no column 'petal_width' and unknown column 'pw'"):
        loaded.predict(str(renamed))
    # weights written before feature names were saved: positional, as before
    old = dlrun.load(path, weights=_strip(w, tmp_path / "old.npz", "data."))
    assert old.feature_names is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(old.predict(str(csv)), expected)
        assert old.predict(str(perm)).shape == expected.shape  # positional, no check possible


def test_cli_predict_and_eval_match_columns_by_name(tmp_path):
    path = _iris(tmp_path)
    w = tmp_path / "w.npz"
    assert dlrun_cli("train", path, "--quiet", "--no-checkpoint", "--out", w).returncode == 0
    csv = tmp_path / "data" / "iris.csv"
    base = dlrun_cli("predict", path, "--weights", w, "--input", csv)
    perm = _permuted_csv(csv, tmp_path / "perm.csv", [4, 2, 0, 3, 1])
    p = dlrun_cli("predict", path, "--weights", w, "--input", perm)
    assert p.returncode == 0 and p.stdout == base.stdout
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("warning: ") and "matched by header name" in p.stderr
    renamed = _permuted_csv(csv, tmp_path / "renamed.csv", [0, 1, 2, 3, 4], rename={"sepal_length": "sl"})
    p = dlrun_cli("predict", path, "--weights", w, "--input", renamed)
    assert p.returncode == 2 and "no column 'sepal_length' and unknown column 'sl'" in p.stderr
    # the training file itself reordered: eval reads it by name, same split, same metrics
    before = json.loads(dlrun_cli("eval", path, "--weights", w, "--json").stdout)["metrics"]
    _permuted_csv(csv, csv, [4, 2, 0, 3, 1])
    e = dlrun_cli("eval", path, "--weights", w, "--json")
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["metrics"] == before
    assert "warning: " in e.stderr


# ---------------------------------------------------------------------------------------------
# 2. the validation/test split is saved with the weights


def test_seed_override_does_not_move_the_split(tmp_path):
    """`dlrun train --seed 99` then `dlrun eval`: eval's test split is training's (issue 9.2)."""
    path = _iris(tmp_path)
    w = tmp_path / "w.npz"
    t = dlrun_cli("train", path, "--seed", "99", "--quiet", "--no-checkpoint", "--json", "--out", w)
    assert t.returncode == 0, t.stderr
    e = dlrun_cli("eval", path, "--weights", w, "--json")
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["metrics"] == json.loads(t.stdout)["metrics"]
    # the split is the file's seed's (3), whatever --seed says; old weights draw the same one
    file_seed = dlrun.load(path).splits()
    seed99 = dlrun.Model(dlrun.load(path).ir, base_dir=tmp_path, seed=99).splits()
    np.testing.assert_array_equal(seed99.test.x, file_seed.test.x)
    np.testing.assert_array_equal(seed99.validation.x, file_seed.validation.x)
    old = dlrun.load(path, weights=_strip(w, tmp_path / "old.npz", "data.split"))
    np.testing.assert_array_equal(old.splits().test.x, file_seed.test.x)
    with np.load(w) as z:
        rows = z["data.split_rows"]
        split = json.loads(str(z["data.split"]))
    assert np.bincount(rows).tolist() == [90, 30, 30]
    assert split["seed"] == 3 and split["fractions"] == {"validation": 0.2, "test": 0.2}
    assert split["files"]["train"][0] == str(tmp_path / "data" / "iris.csv") and len(split["files"]["train"][1]) == 64


def test_eval_uses_the_saved_split_even_when_the_file_seed_changed(tmp_path):
    path = _iris(tmp_path)
    model = dlrun.load(path)
    model.fit()
    w = model.save(tmp_path / "w.npz")
    test_x = model.splits().test.x.copy()
    metrics = model.evaluate()
    path.write_text(path.read_text().replace("seed=3", "seed=4"))
    again = dlrun.load(path, weights=w)
    with pytest.warns(dlrun.DataWarning, match="split is the one saved with the weights .*seed 3.*seed 4 does not re-draw"):
        np.testing.assert_array_equal(again.splits().test.x, test_x)
    assert again.evaluate() == metrics
    assert not np.array_equal(dlrun.load(path).splits().test.x, test_x)  # a new run draws another split


def test_eval_refuses_changed_training_data_or_fractions(tmp_path):
    path = _iris(tmp_path)
    model = dlrun.load(path)
    model.fit()
    w = model.save(tmp_path / "w.npz")
    saved_sha = json.loads(str(np.load(w)["data.split"]))["files"]["train"][1]
    csv = tmp_path / "data" / "iris.csv"
    text = csv.read_text()
    csv.write_text(text.replace("5.1,3.5,1.4,0.2", "5.2,3.5,1.4,0.2", 1))
    with pytest.raises(DataError) as info:
        dlrun.load(path, weights=w).evaluate()
    msg = str(info.value)
    assert "iris.csv: the training data differ from those the weights" in msg and saved_sha[:16] in msg
    assert "cannot be rebuilt" in msg
    e = dlrun_cli("eval", path, "--weights", w)
    assert e.returncode == 2 and saved_sha[:16] in e.stderr
    csv.write_text(text)
    path.write_text(path.read_text().replace("test 0.2", "test 0.3"))
    with pytest.raises(DataError, match=r"holds out validation 0.2, test 0.3 of the training file, but the "
                                        r"weights .*w.npz were trained holding out validation 0.2, test 0.2"):
        dlrun.load(path, weights=w).evaluate()


def test_changed_separate_test_file_is_warned_about(tmp_path):
    train = _csv(tmp_path / "train.csv", ["a", "b", "c", "y"], [[1, 2, 3, 0], [4, 5, 6, 1]])
    test = _csv(tmp_path / "test.csv", ["a", "b", "c", "y"], [[1, 2, 3, 1]])
    record = _load(train, test).record
    record.origin = "the weights w.npz"
    _csv(test, ["a", "b", "c", "y"], [[1, 2, 4, 1]])
    with pytest.warns(dlrun.DataWarning, match="test.csv: the test data differ from those the weights w.npz were trained on"):
        _load(train, test, saved=record)


# ---------------------------------------------------------------------------------------------
# 3. the data block's preprocessing is checked against the weights


def _digits(tmp_path, edit=None):
    shutil.copytree(MODELS / "data", tmp_path / "data", dirs_exist_ok=True)
    text = (MODELS / "digits.net").read_text().replace("epochs=60", "epochs=1")
    path = tmp_path / "digits.net"
    path.write_text(text)
    model = dlrun.load(path)
    model.fit()
    w = model.save(tmp_path / "w.npz")
    return path, w, text


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("scale 1/16", "scale 1/255"),
     "step 1 is scale 0.00392156862745098 (line 9) in the model file, scale 0.0625 in the weights"),
    (lambda t: t.replace("scale 1/16", "scale 1/16\n    standardize"),
     "the model file adds step 2, standardize (line 10), which the weights were not trained with"),
    (lambda t: t.replace("    scale 1/16\n", ""),
     "the weights were trained with a step 1, scale 0.0625, which the model file lacks"),
])
def test_preprocessing_that_differs_from_the_weights_is_refused(tmp_path, edit, message):
    path, w, text = _digits(tmp_path)
    path.write_text(edit(text))
    with pytest.raises(WeightsError) as info:
        dlrun.load(path, weights=w)
    assert "digits.net: the data block's preprocessing differs from the one" in str(info.value)
    assert message in str(info.value)
    for command in (["eval"], ["predict", "--input", tmp_path / "data" / "digits.npz"]):
        p = dlrun_cli(command[0], path, "--weights", w, *command[1:])
        assert p.returncode == 2 and message in p.stderr, p.stderr


def test_scale_after_standardize_is_refused_and_old_files_still_load(tmp_path):
    path = _iris(tmp_path)
    model = dlrun.load(path)
    model.fit()
    w = model.save(tmp_path / "w.npz")
    text = path.read_text()
    path.write_text(text.replace("standardize", "standardize\n    scale 2"))
    with pytest.raises(WeightsError, match="adds step 2, scale 2.0 .line 11., which the weights were not trained"):
        dlrun.load(path, weights=w)
    path.write_text(text)
    old = _strip(w, tmp_path / "old.npz", "data.preprocess")
    assert dlrun.load(path, weights=old).evaluate() == model.evaluate()


@pytest.mark.parametrize("value", ['[{"kind": "scale"}]', '[{"kind": "sqrt"}]', '{"kind": "scale"}',
                                   '[{"kind": "standardize", "factor": 2}]', '[{"kind": "scale", "factor": "2"}]',
                                   'not json'])
def test_damaged_preprocessing_steps_in_the_weights_are_refused(tmp_path, value):
    path = _iris(tmp_path, epochs=1)
    model = dlrun.load(path)
    model.fit()
    w = model.save(tmp_path / "w.npz")
    with np.load(w) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["data.preprocess"] = np.array(value)
    np.savez(w, **arrays)
    with pytest.raises(WeightsError, match="damaged data.preprocess"):
        dlrun.load(path, weights=w)
