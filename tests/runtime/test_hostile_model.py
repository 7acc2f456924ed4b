"""Hostile model files at the runtime boundary: ``dlrun.load`` never executes anything from a
model file, paths in it resolve relative to the file (not the working folder, no shell or
variable expansion), and models too large for the machine are refused before allocation."""
import os

import numpy as np
import pytest

import dlrun
from dlrun.errors import DataError, DlrunError
from dlrun.runtime.cli import main

TEMPLATE = """dlrun 1
model h {{
  data {{
    train "{path}"
    label y
  }}
  input 2
  dense {units} relu
  dense 2 softmax
  loss cross_entropy
  optimizer sgd lr=0.1
  train epochs=1 batch=4
}}
"""


def _csv(path):
    path.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(8)))


@pytest.mark.parametrize("path", ["$(touch {m}).csv", "`touch {m}`.csv", "$HOME/d.csv", "~/d.csv",
                                  "d; touch {m}; .csv", "{{m}}.csv", "%(m)s.csv"])
def test_paths_are_never_expanded_or_executed(tmp_path, capsys, path):
    marker = tmp_path / "pwned"
    net = tmp_path / "h.net"
    net.write_text(TEMPLATE.format(path=path.replace("{m}", str(marker)), units=4))
    code = main(["train", str(net), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2 and "not found" in err, err
    assert not marker.exists()
    with pytest.raises(DataError):
        dlrun.load(net).fit()
    assert not marker.exists()


def test_paths_resolve_relative_to_the_model_file(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    _csv(tmp_path / "sub" / "d.csv")
    net = tmp_path / "sub" / "h.net"
    net.write_text(TEMPLATE.format(path="d.csv", units=4))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _csv(elsewhere / "d.csv")  # a decoy in the working folder
    (elsewhere / "d.csv").write_text("a,b,y\n1,2,9\n")
    monkeypatch.chdir(elsewhere)
    model = dlrun.load(os.path.relpath(net))
    assert len(model.splits().train) == 8
    assert main(["train", os.path.relpath(net), "--quiet", "--out", str(tmp_path / "w.npz")]) == 0


def test_a_model_too_large_for_memory_is_refused_before_allocation(tmp_path, capsys):
    _csv(tmp_path / "d.csv")
    net = tmp_path / "h.net"
    net.write_text(TEMPLATE.format(path="d.csv", units=2_000_000_000))
    code = main(["train", str(net), "--quiet"])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert "memory" in err or "at most" in err, err
    with pytest.raises(DlrunError):
        dlrun.load(net)
