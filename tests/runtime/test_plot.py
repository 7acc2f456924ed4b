"""``dlrun train --plot``: the curves of a run as an image (matplotlib, the plot extra)."""
import sys
from pathlib import Path

import pytest

from dlrun.runtime.cli import main

MODELS = Path(__file__).resolve().parents[2] / "models"
pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")


def test_train_plot_writes_the_curves_with_a_panel_per_quantity(tmp_path, capsys):
    import dlrun
    from dlrun.runtime.plot import plot_history, quantities

    png = tmp_path / "curves.png"
    assert main(["train", str(MODELS / "iris.net"), "--epochs", "3", "--out", str(tmp_path / "w.npz"),
                 "--plot", str(png)]) == 0
    assert f"curves saved to {png}" in capsys.readouterr().err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (MODELS / "iris.net").read_text().replace('"data/', f'"{MODELS}/data/')
    m = dlrun.loads(text.replace("  train epochs", "  schedule exponential gamma=0.9\n  train epochs"))
    h = m.fit(epochs=2)
    assert quantities(h) == ["loss", "accuracy", "lr"]
    svg = plot_history(h, str(tmp_path / "c.svg"))
    assert "<svg" in Path(svg).read_text()[:500]


def test_plot_is_refused_before_training_when_it_cannot_be_written(tmp_path, capsys, monkeypatch):
    args = ["train", str(MODELS / "iris.net"), "--epochs", "1", "--out", str(tmp_path / "w.npz")]
    assert main(args + ["--plot", str(tmp_path / "c.txt")]) == 2
    assert "expected a .png, .pdf or .svg" in capsys.readouterr().err
    assert main(args + ["--plot", str(MODELS / "data" / "iris.csv")]) == 2
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # as without the extra
    assert main(args + ["--plot", str(tmp_path / "c.png")]) == 2
    assert "pip install 'dlrun[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "w.npz").exists()   # nothing trained
