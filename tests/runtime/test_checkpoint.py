"""Checkpoint files: contents, atomic writing, integrity checks, pruning, what --resume
refuses (a changed model file, other settings, other data) and what it allows (more epochs)."""
import errno
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from dlrun.errors import WeightsError
from dlrun.runtime import checkpoint as C
from dlrun.runtime.cli import main

NETS = Path(__file__).resolve().parent / "nets"


def _write_data(folder, n=120, seed=11):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(0, 1, (n, 20)) + y[:, None]
    np.savez(folder / "resume.npz", x=x.astype(np.float32), y=y)


@pytest.fixture
def run_dir(tmp_path):
    shutil.copy(NETS / "resume.net", tmp_path / "resume.net")
    _write_data(tmp_path)
    return tmp_path


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, err


def _train(capsys, folder, *extra, epochs=3):
    code, err = cli(capsys, "train", folder / "resume.net", "--quiet", "--epochs", epochs, *extra)
    assert code == 0, err
    return err


def test_contents_round_trip_and_pruning(run_dir, capsys):
    _train(capsys, run_dir, epochs=4)
    ck = run_dir / "resume.ckpt"  # the default: next to the weights file
    files = C.list_checkpoints(ck)
    # the last epoch's is always written; an earlier one may have been skipped while the
    # previous write was in flight (epochs shorter than a write); at most two are kept
    assert Path(files[0]).name == "ckpt-000004-000000.npz" and len(files) <= 2
    arrays = C.read_checkpoint(files[0])
    assert arrays["ckpt.position"].tolist() == [4, 0]
    assert int(arrays["ckpt.optim.steps"]) == 4 * 48  # 96 training samples, batch 2
    assert {"ckpt.optim.m", "ckpt.optim.v", "ckpt.rng.shuffle", "ckpt.history", "ckpt.early",
            "ckpt.best.flat", "ckpt.dropout.3.dropout", "ckpt.data", "ckpt.model"} <= set(arrays)
    assert any(k.startswith("preprocess.") for k in arrays)
    assert any(k.startswith("state.2.batchnorm") for k in arrays)
    assert len(json.loads(str(arrays["ckpt.history"]))["epochs"]) == 4
    state = json.loads(str(arrays["ckpt.rng.shuffle"]))
    assert state["bit_generator"] == "PCG64"
    # the checkpoint's parameters are those of the weights file written at the end
    # (restore-best aside, which only applies to the final weights)
    with np.load(run_dir / "resume.weights.npz") as w:
        hist = json.loads(str(arrays["ckpt.history"]))
        if hist["best_epoch"] == 4:
            for k in w.files:
                if k.startswith("param."):
                    assert arrays[k].tobytes() == w[k].tobytes()
    # no pickled objects anywhere
    with np.load(files[0], allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)
    assert not [n for n in os.listdir(ck) if n.endswith(".tmp")]


def test_damaged_checkpoints_are_reported_and_resume_falls_back(run_dir, capsys):
    _train(capsys, run_dir, epochs=2)
    _train(capsys, run_dir, "--resume", epochs=3)  # keeps the checkpoint it resumed from
    ck = run_dir / "resume.ckpt"
    newest, previous = C.list_checkpoints(ck)
    assert Path(previous).name == "ckpt-000002-000000.npz"
    good = Path(newest).read_bytes()
    # a changed array with a valid zip: only the checksum can tell
    with np.load(newest) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param.1.dense.w"] = arrays["param.1.dense.w"] + np.float32(1e-3)
    np.savez(newest, **arrays)
    with pytest.raises(WeightsError, match="checksum mismatch"):
        C.read_checkpoint(newest)
    for damaged, match in [(good[: len(good) // 2], "damaged"), (b"", "empty"), (good[:-1], "damaged")]:
        Path(newest).write_bytes(damaged)
        with pytest.raises(WeightsError, match=match):
            C.read_checkpoint(newest)
    path, arrays = C.newest_good(ck, report=(reports := []).append)
    assert path == previous and len(reports) == 1 and Path(newest).name in reports[0]
    # --resume says so and continues from the previous one, to the same result
    code, err = cli(capsys, "train", run_dir / "resume.net", "--epochs", 3, "--resume",
                    "--out", run_dir / "resumed.npz", "--checkpoint-dir", ck)
    assert code == 0, err
    assert "damaged" in err and "trying the previous checkpoint" in err
    assert "ckpt-000002-000000.npz (the end of epoch 2)" in err
    _train(capsys, run_dir, "--out", run_dir / "full.npz", "--checkpoint-dir", run_dir / "full.ckpt")
    with np.load(run_dir / "resumed.npz") as a, np.load(run_dir / "full.npz") as b:
        for k in b.files:
            if k.startswith(("param.", "state.")):
                assert a[k].tobytes() == b[k].tobytes(), k


def test_newer_format_and_pickles_are_refused(run_dir, capsys, tmp_path):
    _train(capsys, run_dir, epochs=1)
    path = C.list_checkpoints(run_dir / "resume.ckpt")[0]
    arrays = C.read_checkpoint(path)
    newer = dict(arrays, **{"ckpt.format_version": np.array(99, np.int64)})
    newer["ckpt.checksum"] = np.array(C.checksum(newer))
    np.savez(tmp_path / "newer.npz", **newer)
    with pytest.raises(WeightsError, match="format 99.*upgrade dlrun"):
        C.read_checkpoint(tmp_path / "newer.npz")
    # an object array would be unpickled by np.load(allow_pickle=True): it is refused, and
    # the object's __reduce__ (which would create a file) never runs
    marker = tmp_path / "pwned"
    obj = np.empty(1, dtype=object)
    obj[0] = _Evil(str(marker))
    np.savez(tmp_path / "evil.npz", **dict(arrays, **{"ckpt.optim.m": obj}))
    with pytest.raises(WeightsError, match="pickled"):
        C.read_checkpoint(tmp_path / "evil.npz")
    assert not marker.exists()


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_resume_refuses_a_changed_model_naming_what_differs(run_dir, capsys):
    _train(capsys, run_dir, epochs=2)
    net = run_dir / "resume.net"
    text = net.read_text()
    for old, new, expected in [
        ("dense 48 relu", "dense 64 relu", "layer 1 (dense, line 12): params.units: 48 in the checkpoint, 64 now"),
        ("dropout 0.3", "dropout 0.4", "params.rate: 0.3 in the checkpoint, 0.4 now"),
        ("optimizer adam lr=3e-3", "optimizer adam lr=1e-3", "optimizer.params.lr: 0.003 in the checkpoint, 0.001 now"),
        ("seed=7", "seed=8", "train.seed: 7 in the checkpoint, 8 now"),
        ("  dense 24 tanh\n", "", "layer 4 (dense, line 15): params.units: 24 in the checkpoint, 3 now"),
    ]:
        net.write_text(text.replace(old, new))
        code, err = cli(capsys, "train", net, "--quiet", "--resume")
        assert code == 2, err
        assert "the model file changed" in err and expected in err, err
        assert "only train.epochs may change" in err
    net.write_text(text)
    # CLI overrides that change the trajectory are refused too
    code, err = cli(capsys, "train", net, "--quiet", "--resume", "--lr", "0.01")
    assert code == 2 and "lr 0.003" in err and "0.01" in err, err
    code, err = cli(capsys, "train", net, "--quiet", "--resume", "--batch-size", "4")
    assert code == 2 and "batch_size 2" in err, err
    # other training data
    _write_data(run_dir, seed=12)
    code, err = cli(capsys, "train", net, "--quiet", "--resume")
    assert code == 2 and "data differ" in err, err
    _write_data(run_dir)
    # comments, formatting and epochs may change
    net.write_text("# a comment\n" + text.replace("epochs=40", "epochs=3").replace("  dense", "    dense"))
    code, err = cli(capsys, "train", net, "--resume")
    assert code == 0, err
    assert "resuming from" in err and "epoch 3/3" in err and "epoch 2/3" not in err


def test_resume_without_checkpoints_starts_from_the_beginning(run_dir, capsys):
    code, err = cli(capsys, "train", run_dir / "resume.net", "--epochs", 1, "--resume")
    assert code == 0, err
    assert "no checkpoint in" in err and "starting from the beginning" in err


def test_a_new_run_replaces_an_earlier_runs_checkpoints(run_dir, capsys):
    _train(capsys, run_dir, epochs=3)
    code, err = cli(capsys, "train", run_dir / "resume.net", "--epochs", 1)
    assert code == 0 and "holds checkpoints of an earlier run" in err
    assert [Path(p).name for p in C.list_checkpoints(run_dir / "resume.ckpt")] == ["ckpt-000001-000000.npz"]


def test_checkpoint_folder_problems_are_reported_before_training(run_dir, capsys):
    (run_dir / "afile").write_text("x")
    code, err = cli(capsys, "train", run_dir / "resume.net", "--checkpoint-dir", run_dir / "afile")
    assert code == 2 and "not a directory" in err and "epoch 1" not in err
    code, err = cli(capsys, "train", run_dir / "resume.net", "--checkpoint-dir", run_dir / "afile" / "sub")
    assert code == 2 and "cannot create" in err and "epoch 1" not in err
    code, err = cli(capsys, "train", run_dir / "resume.net", "--no-checkpoint", "--resume")
    assert code == 2 and "cannot be combined" in err
    code, err = cli(capsys, "train", run_dir / "resume.net", "--no-checkpoint", "--epochs", 1)
    assert code == 0 and not (run_dir / "resume.ckpt").exists()


def test_stale_temporary_files_are_cleaned(run_dir, capsys):
    ck = run_dir / "resume.ckpt"
    ck.mkdir()
    (ck / ".ckpt-000001-000000.npz.abc123.tmp").write_bytes(b"half a checkpoint")
    _train(capsys, run_dir, "--resume", epochs=1)
    assert not [n for n in os.listdir(ck) if n.endswith(".tmp")]


def test_first_difference():
    assert C.first_difference({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]}) == "a[1].b: 2 in the checkpoint, 3 now"
    assert C.first_difference({"a": 1}, {"a": 1}) is None
    assert C.first_difference({"a": True}, {"a": 1}) is not None
    assert "2 entries in the checkpoint, 3 now" in C.first_difference({"a": [1, 2]}, {"a": [1, 2, 3]})


def test_python_api_checkpoint_and_resume(tmp_path):
    import dlrun

    text = (NETS / "resume.net").read_text()
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 90)
    x = (rng.normal(0, 1, (90, 20)) + y[:, None]).astype(np.float32)
    full = dlrun.loads(text, base_dir=tmp_path)
    val = (x[70:], y[70:])
    x, y = x[:70], y[:70]
    full.fit(x, y, epochs=4, validation_data=val)
    first = dlrun.loads(text, base_dir=tmp_path)
    first.fit(x, y, epochs=2, validation_data=val, checkpoint=tmp_path / "ck")
    assert C.list_checkpoints(tmp_path / "ck")
    second = dlrun.loads(text, base_dir=tmp_path)  # a new process, in effect
    history = second.fit(x, y, epochs=4, validation_data=val, checkpoint=tmp_path / "ck", resume=True)
    assert history.epochs_run == 4 and len(history.epochs) == 4
    assert second.network.store.flat.tobytes() == full.network.store.flat.tobytes()
    with pytest.raises(dlrun.UsageError, match="needs checkpoint"):
        second.fit(x, y, resume=True)


def test_resume_with_fewer_epochs_than_the_checkpoint_says_what_it_does(capsys, run_dir):
    _train(capsys, run_dir, epochs=3)
    ck = run_dir / "resume.ckpt"
    newest = C.list_checkpoints(ck)[0]
    code, err = cli(capsys, "train", run_dir / "resume.net", "--quiet", "--resume", "--epochs", 2)
    assert code == 0, err
    assert (f"note: {newest} is at the end of epoch 3, beyond the 2 epochs asked for: no epoch is run, "
            "the weights are the checkpoint's") in err
    code, err = cli(capsys, "train", run_dir / "resume.net", "--quiet", "--resume", "--epochs", 3)
    assert code == 0 and f"note: {newest} already holds all 3 epochs: no epoch is run" in err
    code, err = cli(capsys, "train", run_dir / "resume.net", "--quiet", "--resume", "--epochs", 4)
    assert code == 0 and "note:" not in err  # epoch 4 is trained


def test_resume_of_a_run_that_stopped_early_says_nothing_is_left(capsys, run_dir):
    net = run_dir / "resume.net"
    net.write_text(net.read_text().replace("patience=1000", "patience=1"))
    assert main(["train", str(net), "--quiet", "--epochs", "40", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stopped_early"]
    code, err = cli(capsys, "train", net, "--quiet", "--resume", "--epochs", 50)
    assert code == 0, err
    assert "stopped early (early stopping, at epoch" in err and "no epoch is run" in err


@pytest.mark.parametrize("first, second, code, name", [
    (signal.SIGTERM, signal.SIGTERM, 143, "SIGTERM"),
    (signal.SIGINT, signal.SIGINT, 130, "SIGINT"),
    (signal.SIGINT, signal.SIGTERM, 143, "SIGTERM"),
])
def test_a_second_signal_stops_at_once_with_its_exit_code_naming_the_last_checkpoint(
        run_dir, capsys, monkeypatch, first, second, code, name):
    from dlrun.runtime import cli_train, train

    handled = []
    real_handler = cli_train._stop_signals._handler
    real_start = train.ConsoleProgress.start_epoch

    def handler(self, signum, frame):
        handled.append(signum)
        return real_handler(self, signum, frame)

    def start_epoch(self, epoch, epochs, batches):
        self.epoch_now = epoch
        real_start(self, epoch, epochs, batches)

    def batch(self, done, loss):
        # in the middle of epoch 2 (epoch 1's checkpoint is written): a signal, and once it
        # was handled, a second one before the batch boundary is reached
        if self.epoch_now == 2 and done == 5:
            os.kill(os.getpid(), first)
            while not handled:
                time.sleep(0.001)
            os.kill(os.getpid(), second)
            while len(handled) < 2:
                time.sleep(0.001)

    monkeypatch.setattr(cli_train._stop_signals, "_handler", handler)
    monkeypatch.setattr(train.ConsoleProgress, "start_epoch", start_epoch)
    monkeypatch.setattr(train.ConsoleProgress, "batch", batch)
    code_got, err = cli(capsys, "train", run_dir / "resume.net", "--epochs", 3)
    assert code_got == code, err
    last = run_dir / "resume.ckpt" / "ckpt-000001-000000.npz"
    assert f"stopped at once by a second {name}: --resume will continue from the last good checkpoint, {last}" in err
    assert "interrupted" not in err.replace(f"stopped at once", "")
    assert not (run_dir / "resume.weights.npz").exists()
    monkeypatch.undo()
    _train(capsys, run_dir, "--resume", epochs=3)


def _failing_writes(monkeypatch, fails):
    """Make every atomic write of a file whose name satisfies ``fails`` fail as on a full disk."""
    from dlrun.runtime import weights

    real = weights.replace_atomically

    def replace(path, write, **kw):
        if fails(os.path.basename(path)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write, **kw)

    monkeypatch.setattr(weights, "replace_atomically", replace)


def test_a_failed_checkpoint_write_names_the_checkpoint_resume_continues_from(run_dir, capsys, monkeypatch):
    ck = run_dir / "resume.ckpt"
    _failing_writes(monkeypatch, lambda name: name.startswith("ckpt-") and name != "ckpt-000001-000000.npz")
    code, err = cli(capsys, "train", run_dir / "resume.net", "--epochs", 4)
    assert code == 2, err
    assert "No space left on device" in err and "the checkpoint was not written" in err, err
    assert f"--resume will continue from the last good checkpoint, {ck / 'ckpt-000001-000000.npz'}" in err, err
    assert [Path(p).name for p in C.list_checkpoints(ck)] == ["ckpt-000001-000000.npz"]
    assert not [n for n in os.listdir(ck) if n.endswith(".tmp")]
    monkeypatch.undo()
    code, err = cli(capsys, "train", run_dir / "resume.net", "--epochs", 4, "--resume")
    assert code == 0 and "resuming from" in err and "ckpt-000001-000000.npz" in err, err


def test_a_failed_first_checkpoint_write_says_there_is_none_yet(run_dir, capsys, monkeypatch):
    _failing_writes(monkeypatch, lambda name: name.startswith("ckpt-"))
    code, err = cli(capsys, "train", run_dir / "resume.net", "--epochs", 2)
    assert code == 2 and "no checkpoint was written yet" in err, err


def test_a_failed_final_weights_write_says_resume_writes_them(run_dir, capsys, monkeypatch):
    _failing_writes(monkeypatch, lambda name: name == "resume.weights.npz")
    code, err = cli(capsys, "train", run_dir / "resume.net", "--epochs", 2)
    assert code == 2, err
    last = run_dir / "resume.ckpt" / "ckpt-000002-000000.npz"
    assert f"--resume will continue from the last good checkpoint, {last} and write the weights" in err, err
    monkeypatch.undo()
    _train(capsys, run_dir, "--resume", epochs=2)
    assert (run_dir / "resume.weights.npz").exists()
