"""``dlrun time``: a row per layer, the loss and the optimizer, shares of the step."""
import json
from pathlib import Path

import pytest

from dlrun import dsl
from dlrun.runtime.cli import main
from dlrun.runtime.timing import time_model

MODELS = Path(__file__).resolve().parents[2] / "models"


@pytest.mark.parametrize("name", ["iris.net", "digits_cnn.net", "digits_resnet.net", "langid.net"])
def test_every_layer_the_loss_and_the_optimizer_get_a_row(name):
    model = dsl.load_file(str(MODELS / name))
    r = time_model(model, batch=4, rounds=2, warmup=1)
    assert len(r["rows"]) == len(model.layers) - 1 + 2   # the input layer computes nothing
    assert r["rows"][-2]["layer"].startswith("loss ") and r["rows"][-1]["layer"].startswith("optimizer ")
    assert all(row["forward_ms"] >= 0 and row["backward_ms"] >= 0 for row in r["rows"])
    assert 0 < sum(row["share"] for row in r["rows"]) <= 1.0 + 1e-9
    assert (r["vocab_stand_in"] is not None) == (name == "langid.net")


def test_cli_table_json_and_bad_values(capsys):
    assert main(["time", str(MODELS / "digits.net"), "--rounds", "2", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "forward ms  backward ms  share" in out and "optimizer adam" in out and "batchnorm" in out
    assert main(["time", str(MODELS / "iris.net"), "--rounds", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["batch"] == 16
    assert main(["time", str(MODELS / "iris.net"), "--rounds", "0"]) == 2
    assert "--rounds must be >= 1" in capsys.readouterr().err
    assert main(["time", str(MODELS / "digits.net"), "--batch-size", "1"]) == 2
    assert "batch norm needs a batch of >= 2" in capsys.readouterr().err
