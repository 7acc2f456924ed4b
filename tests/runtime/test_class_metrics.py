"""Precision, recall and F1 (macro) as metrics and monitors, r2 as a metric name, and the
confusion matrix with per-class figures of ``dlrun eval`` / ``Model.evaluate(report=True)``."""
import json

import numpy as np
import pytest

import dlrun
from dlrun.runtime.metrics import Accumulator, class_scores


def _reference(truth, pred, k):
    """Macro precision, recall, F1 with explicit loops (0 where a class is never predicted/present)."""
    p, r, f = [], [], []
    for c in range(k):
        tp = sum(1 for t, q in zip(truth, pred) if t == c and q == c)
        predicted = sum(1 for q in pred if q == c)
        present = sum(1 for t in truth if t == c)
        pc = tp / predicted if predicted else 0.0
        rc = tp / present if present else 0.0
        p.append(pc)
        r.append(rc)
        f.append(2 * pc * rc / (pc + rc) if pc + rc else 0.0)
    return np.mean(p), np.mean(r), np.mean(f)


def test_macro_scores_of_the_accumulator_match_their_definition_batch_by_batch():
    rng = np.random.default_rng(0)
    k, n = 4, 203
    y = rng.integers(0, k, n)
    logits = rng.standard_normal((n, k))
    logits[:, 3] -= 10   # class 3 is never predicted: its precision is 0, not NaN
    acc = Accumulator("classification", k, 64, requested=("f1", "precision", "recall"))
    for s in range(0, n, 64):
        acc.update(logits[s:s + 64], y[s:s + 64])
    got = acc.result()
    p, r, f = _reference(y, logits.argmax(1), k)
    assert got["precision"] == pytest.approx(p) and got["recall"] == pytest.approx(r)
    assert got["f1"] == pytest.approx(f)
    assert acc.confusion.sum() == n and np.trace(acc.confusion) == acc.correct
    binary = Accumulator("binary", 1, 8, requested=("f1",))
    out = np.array([[2.0], [-1.0], [0.5], [-3.0], [1.0]])
    binary.update(out, np.array([1.0, 1.0, 0.0, 0.0, 1.0]))
    assert binary.confusion.tolist() == [[1, 1], [1, 2]]   # rows: true 0, 1; columns: predicted
    assert binary.result()["f1"] == pytest.approx(_reference([1, 1, 0, 0, 1], [1, 0, 1, 0, 1], 2)[2])
    assert set(class_scores([[0, 0], [0, 0]])["f1"]) == {0.0}


MODEL = """dlrun 1
model c {
  data {
    train "d.npz"
    validation 0.25
    test 0.25
  }
  input 4
  dense 8 relu
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.05
  train epochs=4 batch=16 metrics=[f1, precision, recall]
  early_stopping monitor=val_f1 patience=10
}
"""


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 160)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((160, 4)) + 1.5 * y[:, None], y=y)
    (tmp_path / "c.net").write_text(MODEL)
    return tmp_path


def test_f1_precision_recall_are_metrics_and_monitors(folder):
    m = dlrun.load(folder / "c.net")
    assert m.ir.early_stopping.mode == "max"   # auto: larger is better
    h = m.fit(progress=False)
    assert {"f1", "precision", "recall", "val_f1"} <= set(h.final)
    r = m.evaluate(split="test", report=True)
    rep = r["report"]
    assert np.array(rep["confusion"]).sum() == 40 and rep["classes"] == ["0", "1", "2"]
    per = rep["per_class"]
    assert np.mean([per[c]["f1"] for c in rep["classes"]]) == pytest.approx(r["f1"])
    assert "report" not in m.evaluate(split="test")


def test_r2_is_a_regression_metric_and_class_scores_need_classes():
    reg = ("dlrun 1\nmodel r {\n  input 2\n  dense 1\n  loss mse\n  optimizer adam\n"
           "  train metrics=[r2]\n  early_stopping monitor=r2\n}\n")
    m = dlrun.loads(reg)
    assert m.ir.early_stopping.mode == "max"
    with pytest.raises(dlrun.DslError, match="metric 'f1' needs class labels"):
        dlrun.loads(reg.replace("metrics=[r2]", "metrics=[f1]").replace("monitor=r2", "monitor=loss"))
    clf = "dlrun 1\nmodel c {\n  input 2\n  dense 2 softmax\n  loss cross_entropy\n  optimizer adam\n  train metrics=[r2]\n}\n"
    with pytest.raises(dlrun.DslError, match="metric 'r2' scores regression outputs"):
        dlrun.loads(clf)


def test_eval_prints_the_confusion_matrix_and_puts_the_report_in_json(folder, capsys):
    from dlrun.runtime.cli import main

    assert main(["train", str(folder / "c.net"), "--quiet"]) == 0
    capsys.readouterr()
    weights = str(folder / "c.weights.npz")
    assert main(["eval", str(folder / "c.net"), "--weights", weights, "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "confusion (rows: true class, columns: predicted)" in out and "precision  recall      f1  support" in out
    assert main(["eval", str(folder / "c.net"), "--weights", weights, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["reports"]) == {"train", "validation", "test"}
    assert sum(map(sum, report["reports"]["test"]["confusion"])) == 40
