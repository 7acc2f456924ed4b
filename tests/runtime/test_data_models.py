"""Every example model in models/ finds its data, and the data fits the model."""
from pathlib import Path

import numpy as np
import pytest

from dlrun.dsl import load_file
from dlrun.runtime import data as D

ROOT = Path(__file__).parents[2]
MODELS = sorted((ROOT / "models").glob("*.net"))
SHARED = ROOT.parent / "shared"  # data root holding data/mnist/ for mnist_mlp.net


def test_the_examples_are_there():
    names = {p.stem for p in MODELS}
    assert {"digits", "iris", "xor", "iris_petal", "mnist_mlp"} <= names


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_model_data_loads_and_fits(path):
    model = load_file(str(path))
    base = path.parent
    if not (base / model.data.train.path).exists():  # MNIST, langid, spoken digits: not shipped
        if not (SHARED / model.data.train.path).exists():
            pytest.skip(f"{model.data.train.path} not found under {SHARED}")
        base = SHARED
    task = D.task_for_loss(model.loss.name)
    n_out = int(np.prod(model.output_shape))
    splits = D.load_splits(model.data, base_dir=base, input_shape=model.input_shape, n_outputs=n_out,
                           task=task, seed=model.train.seed)
    for ds in (splits.train, splits.validation, splits.test):
        if ds is None:
            continue
        assert ds.x.shape[1:] == tuple(model.input_shape)
        assert ds.y is not None and len(ds.y) == len(ds)
        if task == "classification":
            assert ds.y.min() >= 0 and ds.y.max() < n_out
    out = np.empty((min(8, len(splits.train)), int(np.prod(model.input_shape))), np.float32)
    splits.preprocessor.apply(splits.train.x[: out.shape[0]], out)
    assert np.isfinite(out).all()
