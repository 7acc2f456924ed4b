"""dlrun.sklearn: NetClassifier / NetRegressor in scikit-learn's workflows and estimator checks."""
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from dlrun.errors import DataError, DataMismatchError, UsageError  # noqa: E402
from dlrun.sklearn import NetClassifier, NetRegressor  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
IRIS = str(ROOT / "models" / "iris.net")
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def tiny(inputs, outputs, kind="classifier", epochs=20):
    """A small model file: ``inputs`` features, ``outputs`` units (1 sigmoid: binary)."""
    if kind == "regressor":
        act, loss = "linear", "mse"
    elif outputs == 1:
        act, loss = "sigmoid", "binary_cross_entropy"
    else:
        act, loss = "softmax", "cross_entropy"
    return (f"dlrun 1\nmodel tiny {{\n  input {inputs}\n  dense 8 tanh\n  dense {outputs} {act}\n"
            f"  loss {loss}\n  optimizer adam lr=0.05\n  train epochs={epochs} batch=16 seed=0\n}}\n")


# -- the workflows -------------------------------------------------------------------------
def test_cross_val_score_on_iris(iris):
    X, y = iris
    scores = cross_val_score(NetClassifier(IRIS, epochs=20), X, y, cv=5)
    assert scores.shape == (5,) and scores.mean() > 0.8, scores


def test_grid_search_over_the_learning_rate(iris):
    X, y = iris
    search = GridSearchCV(NetClassifier(IRIS, epochs=10), {"lr": [1e-4, 0.05]}, cv=3).fit(X, y)
    assert search.best_params_ == {"lr": 0.05}
    low, high = search.cv_results_["mean_test_score"]
    assert high > low
    assert search.best_estimator_.model_.optimizer.lr == 0.05


def test_pipeline_with_a_scaler(iris):
    X, y = iris
    pipe = Pipeline([("scale", StandardScaler()), ("net", NetClassifier(IRIS, epochs=20))])
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.8, scores
    assert pipe.fit(X, y).score(X, y) > 0.8


def test_clone_keeps_the_params_and_drops_the_fit(iris):
    X, y = iris
    est = NetClassifier(IRIS, lr=0.02, epochs=5, batch=8, seed=4).fit(X, y)
    copy = clone(est)
    assert copy.get_params() == {"net": IRIS, "lr": 0.02, "epochs": 5, "batch": 8, "seed": 4}
    assert not hasattr(copy, "model_") and not hasattr(copy, "classes_")


def test_a_fitted_estimator_pickles(iris):
    import pickle

    X, y = iris
    est = NetClassifier(IRIS, epochs=3).fit(X, y)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict_proba(X), est.predict_proba(X))


# -- labels --------------------------------------------------------------------------------
def test_string_labels_are_the_sorted_classes(iris):
    X, y = iris
    names = np.array(["virginica", "setosa", "versicolor"])[y]   # not in sorted order
    est = NetClassifier(IRIS, epochs=30).fit(X, names)
    assert est.classes_.tolist() == ["setosa", "versicolor", "virginica"]
    pred = est.predict(X)
    assert set(pred) <= set(est.classes_)
    proba = est.predict_proba(X)
    assert proba.shape == (150, 3) and proba.dtype == np.float64
    np.testing.assert_array_equal(pred, est.classes_[proba.argmax(axis=1)])
    assert est.score(X, names) > 0.8


def test_integer_labels_that_are_not_0_to_k_minus_1(iris):
    X, y = iris
    labels = np.array([30, -5, 12])[y]
    est = NetClassifier(IRIS, epochs=30).fit(X, labels)
    assert est.classes_.tolist() == [-5, 12, 30]
    assert est.score(X, labels) > 0.8
    assert set(est.predict(X).tolist()) <= {-5, 12, 30}


def test_a_binary_model_gives_two_probability_columns():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 2))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    est = NetClassifier(tiny(2, 1), epochs=40).fit(X, y)
    assert est.classes_.tolist() == ["no", "yes"]
    proba = est.predict_proba(X)
    assert proba.shape == (80, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    np.testing.assert_array_equal(est.predict(X), est.classes_[(proba[:, 1] >= 0.5).astype(int)])
    assert est.score(X, y) > 0.8


def test_classes_in_y_must_match_the_outputs(iris):
    X, y = iris
    keep = y < 2
    with pytest.raises(DataMismatchError, match=r"y holds 2 class\(es\) \(0, 1\), but iris has 3: its output "
                                                r"layer has 3 units") as err:
        NetClassifier(IRIS, epochs=1).fit(X[keep], y[keep])
    assert isinstance(err.value, ValueError) and isinstance(err.value, DataError)
    with pytest.raises(DataMismatchError, match="tells two classes apart"):
        NetClassifier(tiny(4, 1), epochs=1).fit(X, y)


# -- inputs --------------------------------------------------------------------------------
def test_X_columns_must_match_the_input(iris):
    X, y = iris
    with pytest.raises(DataMismatchError, match=r"iris.net: X has 3 feature\(s\) per sample, but iris reads 4 "
                                                r"\('input 4'\)"):
        NetClassifier(IRIS, epochs=1).fit(X[:, :3], y)
    est = NetClassifier(IRIS, epochs=1).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but NetClassifier is expecting 4"):
        est.predict(X[:, :3])


def test_an_image_model_takes_flat_rows():
    text = ("dlrun 1\nmodel img {\n  input 1x4x4\n  conv2d 2 3x3 padding=same\n  relu\n  flatten\n  dense 2 softmax\n"
            "  loss cross_entropy\n  optimizer adam lr=0.01\n  train epochs=2 batch=8 seed=0\n}\n")
    rng = np.random.default_rng(1)
    X, y = rng.random((20, 16)), np.arange(20) % 2
    est = NetClassifier(text).fit(X, y)
    assert est.n_features_in_ == 16 and est.predict_proba(X).shape == (20, 2)
    with pytest.raises(DataMismatchError, match=r"reads 16 \('input 1 x 4 x 4'\)"):
        NetClassifier(text).fit(X[:, :15], y)


def test_the_model_file_kind_must_match_the_estimator(iris):
    X, y = iris
    with pytest.raises(UsageError, match="NetRegressor needs a regressor model file, but iris's loss "
                                         "cross_entropy makes it a classification model: use NetClassifier"):
        NetRegressor(IRIS).fit(X, y)
    with pytest.raises(UsageError, match="use NetRegressor"):
        NetClassifier(tiny(4, 1, "regressor")).fit(X, y)


def test_bad_params_are_refused_at_fit(iris):
    X, y = iris
    NetClassifier(IRIS, lr=-1, epochs="x", batch=0, seed=-3)   # the constructor only stores them
    for params, message in [({"lr": -1}, "lr must be a positive number, got -1"),
                            ({"lr": float("nan")}, "lr must be a positive number, got nan"),
                            ({"seed": -3}, "seed must be an integer >= 0, got -3"),
                            ({"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
                            ({"epochs": "x"}, "epochs must be an integer >= 1, got 'x'"),
                            ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
                            ({"batch": 0}, "batch size must be an integer >= 1, got 0")]:
        with pytest.raises(UsageError, match=message):
            NetClassifier(IRIS, **params).fit(X, y)
    with pytest.raises(UsageError, match="net must be the path of a .net file or its text, got int"):
        NetClassifier(3).fit(X, y)
    with pytest.raises(UsageError, match="NetRegressor: net must be the path of a .net file or its text, "
                                         "got NoneType"):
        NetRegressor().fit(X, y)


def test_a_missing_file_is_a_dsl_error(iris, tmp_path):
    from dlrun.errors import DslError

    X, y = iris
    with pytest.raises(DslError, match="nothere.net"):
        NetClassifier(str(tmp_path / "nothere.net")).fit(X, y)


# -- params and refits ---------------------------------------------------------------------
def test_set_params_reaches_the_training(iris):
    X, y = iris
    est = NetClassifier(IRIS, epochs=2)
    est.fit(X, y)
    assert est.history_.epochs_run == 2 and est.model_.optimizer.lr == 0.01   # the file's lr
    est.set_params(epochs=4, lr=0.003)
    est.fit(X, y)
    assert est.history_.epochs_run == 4 and est.model_.optimizer.lr == 0.003
    first = est.set_params(seed=1).fit(X, y).predict_proba(X)
    other = est.set_params(seed=2).fit(X, y).predict_proba(X)
    assert not np.array_equal(first, other)


def test_batch_sets_the_batch_size(iris, monkeypatch):
    from dlrun.runtime import train

    seen = []
    real = train.Trainer.__init__

    def spy(self, *args, **kwargs):
        seen.append(kwargs["batch_size"])
        real(self, *args, **kwargs)

    monkeypatch.setattr(train.Trainer, "__init__", spy)
    X, y = iris
    NetClassifier(IRIS, epochs=1).fit(X, y)
    NetClassifier(IRIS, epochs=1, batch=5).fit(X, y)
    assert seen == [16, 5]   # the file's batch=16, then the override


def test_refit_starts_from_fresh_weights(iris):
    X, y = iris
    once = NetClassifier(IRIS, epochs=5).fit(X, y).predict_proba(X)
    est = NetClassifier(IRIS, epochs=5)
    est.fit(X, y)
    model = est.model_
    est.fit(X, y)   # a second fit: a new model, not five more epochs of the first
    assert est.model_ is not model
    np.testing.assert_array_equal(est.predict_proba(X), once)
    # fitted on other data first: the refit is as if the first never happened
    rng = np.random.default_rng(3)
    est = NetClassifier(IRIS, epochs=5).fit(rng.normal(size=(60, 4)), np.arange(60) % 3)
    np.testing.assert_array_equal(est.fit(X, y).predict_proba(X), once)


def test_the_file_text_works_as_the_path_does(iris):
    X, y = iris
    text = Path(IRIS).read_text()
    a = NetClassifier(IRIS, epochs=3).fit(X, y).predict_proba(X)
    b = NetClassifier(text, epochs=3).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)


def test_regressor_one_and_several_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3
    est = NetRegressor(tiny(3, 1, "regressor"), epochs=100).fit(X, y)
    assert est.predict(X).shape == (200,) and est.predict(X).dtype == np.float64
    assert est.score(X, y) > 0.9
    Y = np.column_stack([y, -y])
    est = NetRegressor(tiny(3, 2, "regressor"), epochs=60).fit(X, Y)
    assert est.predict(X).shape == (200, 2) and est.score(X, Y) > 0.9
    with pytest.raises(DataMismatchError, match=r"y has 1 target\(s\) per sample, but tiny has 2 output"):
        NetRegressor(tiny(3, 2, "regressor")).fit(X, y)
    assert cross_val_score(NetRegressor(tiny(3, 1, "regressor"), epochs=50), X, y, cv=3).mean() > 0.8


def test_without_scikit_learn_the_import_names_the_extra():
    import subprocess

    code = ("import sys\nsys.modules['sklearn'] = None  # import sklearn -> ImportError\n"
            "import dlrun\n"
            "try:\n    import dlrun.sklearn\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "dlrun.sklearn needs scikit-learn (not installed): pip install 'dlrun[sklearn]'" in out


# -- the README ----------------------------------------------------------------------------
def _readme_section():
    start = README.index("\n## Using dlrun from scikit-learn\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def test_readme_example_runs(monkeypatch, capsys):
    block = re.search(r"```python\n(.*?)```", _readme_section(), re.S).group(1)
    monkeypatch.chdir(ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the example runs without a warning
        exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "cross-validated accuracy" in out and "best lr" in out and "[0 0] (2, 3)" in out


# -- scikit-learn's estimator checks -------------------------------------------------------
# The model file fixes the input size and the number of outputs, and the checks fit data of
# many shapes. So each check whose data have a shape runs on a model file sized for that
# data: (kind, inputs, outputs) -> the checks that run on it (the shape-free checks run on
# every file). On the other files such a check is an expected failure (the refusal of data
# that do not fit), with the file it runs on as the reason.
SHAPED = {
    ("classifier", 3, 3): ["check_dict_unchanged", "check_dont_overwrite_parameters",
                           "check_f_contiguous_array_estimator", "check_fit2d_predict1d",
                           "check_fit_score_takes_y", "check_methods_sample_order_invariance",
                           "check_methods_subset_invariance", "check_supervised_y_2d",
                           "check_classifiers_one_label"],
    ("classifier", 3, 1): ["check_estimators_nan_inf", "check_estimators_pickle", "check_pipeline_consistency"],
    ("classifier", 2, 3): ["check_estimators_fit_returns_self", "check_estimators_overwrite_params",
                           "check_readonly_memmap_input"],
    ("classifier", 2, 1): ["check_fit_check_is_fitted", "check_fit_idempotent", "check_n_features_in",
                           "check_classifier_data_not_an_array"],
    ("classifier", 4, 3): ["check_n_features_in_after_fitting", "check_positive_only_tag_during_fit"],
    ("classifier", 5, 1): ["check_estimators_dtypes"],
    ("classifier", 10, 4): ["check_dtype_object", "check_fit2d_1sample"],
    ("regressor", 3, 1): ["check_dict_unchanged", "check_dont_overwrite_parameters", "check_estimators_nan_inf",
                          "check_estimators_pickle", "check_f_contiguous_array_estimator",
                          "check_fit2d_predict1d", "check_fit_score_takes_y",
                          "check_methods_sample_order_invariance", "check_methods_subset_invariance",
                          "check_pipeline_consistency", "check_supervised_y_2d"],
    ("regressor", 2, 1): ["check_estimators_fit_returns_self", "check_estimators_overwrite_params",
                          "check_fit_check_is_fitted", "check_fit_idempotent", "check_n_features_in",
                          "check_readonly_memmap_input"],
    ("regressor", 4, 1): ["check_n_features_in_after_fitting", "check_positive_only_tag_during_fit",
                          "check_regressors_no_decision_function"],
    ("regressor", 5, 1): ["check_estimators_dtypes"],
    ("regressor", 10, 1): ["check_dtype_object", "check_fit2d_1sample", "check_regressors_int",
                           "check_regressors_train", "check_regressor_data_not_an_array"],
    ("regressor", 10, 5): ["check_regressor_multioutput"],
}
# checks that apply to no model file (the list README.md gives)
NEVER = {
    "classifier": {
        "check_classifiers_train": "fits one estimator on 3-class y and then on 2-class y: a model file has "
                                   "one output size, and y of another class count is refused",
        "check_classifiers_classes": "fits one estimator on 3-class and on 2-class y (as above)",
    },
    "regressor": {},
}
ESTIMATORS = {key: (NetClassifier if key[0] == "classifier" else NetRegressor)(tiny(key[1], key[2], key[0]))
              for key in SHAPED}
KEY_OF = {est.net: key for key, est in ESTIMATORS.items()}


def expected_failed_checks(estimator):
    key = KEY_OF[estimator.net]
    kind, inputs, outputs = key
    failing = dict(NEVER[kind])
    for other, checks in SHAPED.items():
        if other[0] != kind or other == key:
            continue
        for check in checks:
            if check not in SHAPED[key]:
                failing[check] = (f"its data do not fit 'input {inputs}' with {outputs} output(s) (refused): "
                                  f"runs on the {kind} with input {other[1]}, {other[2]} output(s)")
    return failing


def test_every_shaped_check_runs_somewhere():
    for kind in ("classifier", "regressor"):
        shaped = [c for key, checks in SHAPED.items() if key[0] == kind for c in checks]
        assert len(shaped) == len(set(shaped)), kind          # each on one file
        assert not set(shaped) & set(NEVER[kind]), kind


def test_readme_lists_the_checks_that_never_apply():
    section = _readme_section()
    listed = set(re.findall(r"`(check_\w+)`", section[section.index("apply to no file"):]))
    assert listed == {c for checks in NEVER.values() for c in checks}


@pytest.mark.skipif(tuple(int(p) for p in sklearn.__version__.split(".")[:2]) < (1, 6),
                    reason="expected_failed_checks= is scikit-learn 1.6's")
@pytest.mark.parametrize("key", list(SHAPED), ids=lambda k: f"{k[0]}-input{k[1]}-outputs{k[2]}")
def test_sklearn_estimator_checks(key):
    """scikit-learn's estimator checks, the ones that cannot apply to this file marked as
    expected failures (``expected_failed_checks``); any other failure fails the test."""
    from sklearn.utils.estimator_checks import check_estimator

    estimator = ESTIMATORS[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # ModelWarning, sklearn's FutureWarnings: not what is checked
        results = check_estimator(estimator, expected_failed_checks=expected_failed_checks(estimator),
                                  on_fail=None, on_skip=None)
    status = {}
    for r in results:   # a check can run more than once (pickle: also on read-only memory maps)
        if status.get(r["check_name"]) in (None, "passed"):
            status[r["check_name"]] = r["status"]
    failed = {r["check_name"]: f"{type(r['exception']).__name__}: {r['exception']}"
              for r in results if r["status"] == "failed"}
    assert not failed, failed
    ran_here = [c for c in SHAPED[key] if status[c] != "passed"]
    assert all(status[c] == "skipped" for c in ran_here), {c: status[c] for c in ran_here}  # pandas absent
    for check in NEVER[key[0]]:
        assert status[check] == "xfail", check
    # the checks of no shape (clone, params, tags, sparse and complex input refused, ...) pass on every file
    shaped = {c for k, checks in SHAPED.items() if k[0] == key[0] for c in checks}
    free = {c: st for c, st in status.items() if c not in shaped and c not in NEVER[key[0]]}
    assert all(st in ("passed", "skipped") for st in free.values()), free
    assert sum(st == "passed" for st in free.values()) >= 20
