"""``train.ConsoleProgress`` on a fake 80-column terminal: what stays visible on each line."""
import gc
import io
from pathlib import Path

import pytest

from dlrun.runtime.cli import main
from dlrun.runtime.train import ConsoleProgress, fit_epoch_line

MODELS = Path(__file__).resolve().parents[2] / "models"

REGRESSION = {"loss": 4.1075, "mse": 4.1075, "mae": 1.6251, "r2": 0.1234, "val_loss": 4.2031,
              "val_mse": 4.2031, "val_mae": 1.7012, "val_r2": 0.1011, "seconds": 0.05}
CLASSIFIER = {"loss": 0.1234, "accuracy": 0.97, "penalty": 0.0021, "val_loss": 0.2345,
              "val_accuracy": 0.95, "seconds": 0.12}


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal; its width comes from COLUMNS (no real tty)."""

    def isatty(self):
        return True

    def fileno(self):
        raise io.UnsupportedOperation("fileno")


def visible_lines(text):
    """What a terminal shows: after each carriage return the line is overwritten."""
    return [line.rsplit("\r", 1)[-1] for line in text.split("\n")]


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    return FakeTerminal()


@pytest.mark.parametrize("metrics, shown", [
    (REGRESSION, "val loss 4.2031 mse 4.2031 mae 1.7012 r2 0.1011"),
    (CLASSIFIER, "val loss 0.2345 acc 0.9500"),
])
def test_finished_epoch_line_keeps_the_validation_metrics_on_80_columns(terminal, metrics, shown):
    p = ConsoleProgress(terminal)
    for epoch in (1, 2):
        p.start_epoch(epoch, 150, 20)
        for b in range(20):
            p.batch(b + 1, 4.5)
        p.end_epoch(epoch, metrics)
    lines = [line for line in visible_lines(terminal.getvalue()) if line]
    assert len(lines) == 2 and lines[1].startswith("epoch 2/150  loss ")
    for line in lines:
        assert len(line) < 80 and shown in line, line


def test_fit_epoch_line_shortens_only_as_needed():
    full = "epoch 3/9  loss 0.1234  accuracy 0.9700  penalty 0.0021  val_loss 0.2345  val_accuracy 0.9500  (0.12s)"
    assert fit_epoch_line("epoch 3/9", CLASSIFIER, 200) == full
    assert fit_epoch_line("epoch 3/9", CLASSIFIER, 85) == \
        "epoch 3/9  loss 0.1234 acc 0.9700 pen 0.0021 | val loss 0.2345 acc 0.9500 (0.12s)"
    assert fit_epoch_line("epoch 3/9", CLASSIFIER, 80) == \
        "epoch 3/9  loss 0.1234 acc 0.9700 pen 0.0021 | val loss 0.2345 acc 0.9500"
    assert fit_epoch_line("epoch 3/9", {"loss": 0.5, "seconds": 1.0}, 80) == "epoch 3/9  loss 0.5000  (1.00s)"
    assert len(fit_epoch_line("epoch 3/9", REGRESSION, 30)) == 29


def test_message_and_close_leave_no_stale_bar(terminal):
    p = ConsoleProgress(terminal)
    p.start_epoch(1, 5, 100)
    for b in range(30):
        p.batch(b + 1, 0.5)
    p.message("stopping at the next batch boundary")
    p.close()
    terminal.write("interrupted\n")
    del p
    gc.collect()
    text = terminal.getvalue()
    lines = visible_lines(text)
    assert "stopping at the next batch boundary" in lines
    assert text.endswith("interrupted\n")  # nothing drawn after the message
    assert any(line.startswith("epoch 1/5:  30%") for line in lines)  # the bar where it stopped


def test_training_error_mid_epoch_is_not_followed_by_a_redrawn_bar(terminal, tmp_path, monkeypatch):
    net = tmp_path / "explode.net"
    text = (MODELS / "iris_petal.net").read_text().replace("optimizer adam lr=0.01", "optimizer sgd lr=1e6")
    net.write_text(text.replace('"data/', f'"{MODELS}/data/'))
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(["train", str(net), "--no-checkpoint", "--out", str(tmp_path / "w.npz")]) == 1
    gc.collect()
    text = terminal.getvalue()
    assert "the loss is" in text
    assert text.rstrip("\n").rsplit("\n", 1)[-1].startswith("epoch 1, batch"), text[-400:]
