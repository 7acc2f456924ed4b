"""``dlrun train --log-dir``: the run's per-epoch scalars as TensorBoard event files."""
import sys
from pathlib import Path

import pytest

from dlrun.runtime.cli import main

pytest.importorskip("tensorboardX", reason="the tensorboard extra (tensorboardX) is not installed")
MODELS = Path(__file__).resolve().parents[2] / "models"


def _scalars(folder):
    """tag -> [(step, value)] read back from the event files with tensorboardX's own protobufs."""
    import struct

    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i:i + 8])
            event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
            i += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_log_dir_holds_every_epoch_s_loss_metrics_and_validation(tmp_path):
    logs = tmp_path / "logs"
    assert main(["train", str(MODELS / "iris.net"), "--epochs", "3", "--quiet", "--out", str(tmp_path / "w.npz"),
                 "--log-dir", str(logs)]) == 0
    s = _scalars(logs)
    assert {"train/loss", "train/accuracy", "validation/loss", "validation/accuracy", "seconds"} <= set(s)
    assert [step for step, _ in s["train/loss"]] == [1, 2, 3]


def test_log_dir_without_the_writer_is_refused_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    assert main(["train", str(MODELS / "iris.net"), "--epochs", "1", "--out", str(tmp_path / "w.npz"),
                 "--log-dir", str(tmp_path / "logs")]) == 2
    assert "pip install 'dlrun[tensorboard]'" in capsys.readouterr().err
    assert not (tmp_path / "w.npz").exists()
