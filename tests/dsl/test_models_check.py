"""Every shipped model file parses and checks clean (no errors, no warnings)."""
from pathlib import Path

import pytest

from dlrun.dsl import load_file

MODELS = sorted((Path(__file__).parents[2] / "models").glob("*.net"))


@pytest.mark.skipif(not MODELS, reason="models/ has no .net files yet")
@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_model_checks_clean(path):
    warnings = []
    model = load_file(path, warnings=warnings)
    assert not warnings, "\n".join(w.format() for w in warnings)
    assert model.path == str(path)
    assert model.layers[0].kind == "input"
    assert all(layer.shape for layer in model.layers)
