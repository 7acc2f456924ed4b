"""The small example models reach the figures the README promises (they train in seconds)."""
from pathlib import Path

import numpy as np
import pytest

import dlrun

MODELS = Path(__file__).parents[2] / "models"


@pytest.mark.parametrize("name, metric, at_least", [
    ("digits", "accuracy", 0.97),
    ("iris", "accuracy", 0.93),
    ("iris_petal", "r2", 0.90),
])
def test_example_reaches_its_test_figure(name, metric, at_least):
    model = dlrun.load(str(MODELS / f"{name}.net"))
    model.fit(progress=False)
    result = model.evaluate()  # the file's test split
    assert result[metric] >= at_least, result


def test_xor_learns_the_truth_table():
    model = dlrun.load(str(MODELS / "xor.net"))
    model.fit(progress=False)
    out = model.predict(np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64))
    assert out.shape == (4, 1)
    assert (np.abs(out[:, 0] - [0, 1, 1, 0]) < 0.2).all(), out


def test_iris_predicts_names():
    model = dlrun.load(str(MODELS / "iris.net"))
    model.fit(progress=False)
    names = model.predict_classes(np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]))
    assert list(names) == ["setosa", "virginica"]
