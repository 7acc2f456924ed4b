"""A run's exclusive locks on its checkpoint folder and weights file (``runtime/runlock.py``):
a second run is refused at once naming the first (its pid), a dead run's lock is taken over,
and the temporary files a killed write left are removed only once no live run owns them.

Every two-process test is bounded: subprocesses run with timeouts and are killed at the end.
"""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.errors import UsageError
from dlrun.runtime import checkpoint as C
from dlrun.runtime.cli import main
from dlrun.runtime.runlock import RunLock, file_lock_path, folder_lock_path

NETS = Path(__file__).resolve().parent / "nets"
# a process that holds the lock of the folder argv[1] until its stdin closes
HOLD = ("import sys; from dlrun.runtime.runlock import RunLock; "
        "lock = RunLock.for_folder(sys.argv[1]).acquire(); print('locked', flush=True); sys.stdin.read()")


def _cmd(*args):
    return [sys.executable, "-m", "dlrun", *map(str, args)]


@pytest.fixture
def run_dir(tmp_path):
    shutil.copy(NETS / "resume.net", tmp_path / "resume.net")
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 120)
    x = rng.normal(0, 1, (120, 20)) + y[:, None]
    np.savez(tmp_path / "resume.npz", x=x.astype(np.float32), y=y)
    return tmp_path


@pytest.fixture
def holder():
    """``start(folder)`` runs a process holding ``folder``'s lock; all are killed at the end."""
    procs = []

    def start(folder):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=60)


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)


def test_a_held_lock_is_refused_naming_its_owner_and_a_dead_owners_is_taken_over(tmp_path, holder):
    proc = holder(tmp_path)
    with pytest.raises(UsageError) as err:
        RunLock.for_folder(tmp_path).acquire()
    text = str(err.value)
    assert f"pid {proc.pid}" in text and "in use by another dlrun run" in text and str(tmp_path) in text
    _kill(proc)
    # the dead run's lock file is still there, naming it; the kernel dropped its flock
    lock_file = Path(folder_lock_path(tmp_path))
    assert f'"pid": {proc.pid}' in lock_file.read_text()
    lock = RunLock.for_folder(tmp_path).acquire()
    assert f'"pid": {os.getpid()}' in lock_file.read_text()
    # held here: another taker in this process is refused too
    with pytest.raises(UsageError, match="this process"):
        RunLock.for_folder(tmp_path).acquire()
    lock.release()
    assert not lock_file.exists()
    with RunLock.for_file(tmp_path / "w.npz"):
        assert Path(file_lock_path(tmp_path / "w.npz")) == tmp_path / ".w.npz.lock"
        assert (tmp_path / ".w.npz.lock").exists()
    assert not (tmp_path / ".w.npz.lock").exists()


def test_a_planted_symlink_or_fifo_at_the_lock_path_is_refused(tmp_path):
    (tmp_path / "victim").write_text("keep me")
    os.symlink(tmp_path / "victim", folder_lock_path(tmp_path))
    with pytest.raises(UsageError, match="cannot create the lock file"):
        RunLock.for_folder(tmp_path).acquire()
    assert (tmp_path / "victim").read_text() == "keep me"
    os.mkfifo(file_lock_path(tmp_path / "w.npz"))
    with pytest.raises(UsageError, match="not a regular file"):
        RunLock.for_file(tmp_path / "w.npz").acquire()


def _start_training(run_dir, *extra):
    """A long run of resume.net on its default paths, returned once its first epoch is done
    (it holds its locks and has written a checkpoint)."""
    proc = subprocess.Popen(_cmd("train", run_dir / "resume.net", "--epochs", 100000, *extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith("epoch "):
            break
    assert proc.poll() is None
    return proc


def test_a_second_run_is_refused_while_the_first_lives_then_takes_over_its_files(run_dir):
    ck = run_dir / "resume.ckpt"
    first = _start_training(run_dir)
    try:
        # what a write killed by SIGKILL leaves: a temporary file of the weights and of a checkpoint
        weights_tmp = run_dir / ".resume.weights.npz.k3j_a8q2.tmp"
        ckpt_tmp = ck / ".ckpt-000009-000000.npz.zz81_x0q.tmp"
        unrelated = run_dir / ".notes.txt.k3j_a8q2.tmp"
        for p in (weights_tmp, ckpt_tmp, unrelated):
            p.write_bytes(b"half a file")
        for extra in ((), ("--checkpoint-dir", run_dir / "other.ckpt"), ("--out", run_dir / "other.npz", "--checkpoint-dir", ck)):
            p = subprocess.run(_cmd("train", run_dir / "resume.net", "--epochs", 1, *extra),
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 2, p.stderr
            assert "Traceback" not in p.stderr and f"pid {first.pid}" in p.stderr, p.stderr
            assert "in use by another dlrun run" in p.stderr and "epoch 1" not in p.stderr, p.stderr
        # the refused runs touched nothing: the live run's files are all there, it still runs
        assert weights_tmp.exists() and ckpt_tmp.exists() and C.list_checkpoints(ck)
        assert first.poll() is None
        assert not (run_dir / "other.ckpt").exists() and not (run_dir / "other.npz").exists()
    finally:
        _kill(first)
    # the first run died holding its locks: the next run takes them over and cleans up
    p = subprocess.run(_cmd("train", run_dir / "resume.net", "--epochs", 1, "--quiet"),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert not weights_tmp.exists() and not ckpt_tmp.exists()
    assert unrelated.exists()  # another file's temporary file is not this run's to remove
    assert not (ck / ".dlrun.lock").exists() and not (run_dir / ".resume.weights.npz.lock").exists()


def test_api_fit_locks_its_checkpoint_folder(run_dir, holder):
    model = dlrun.load(run_dir / "resume.net")
    ck = run_dir / "ck"
    ck.mkdir()
    proc = holder(ck)
    with pytest.raises(UsageError, match=f"pid {proc.pid}"):
        model.fit(epochs=1, checkpoint=ck)
    _kill(proc)
    model.fit(epochs=1, checkpoint=ck)
    assert C.list_checkpoints(ck) and not (ck / ".dlrun.lock").exists()
    # a fit that fails after taking the lock releases it
    other = dlrun.loads((run_dir / "resume.net").read_text().replace("lr=3e-3", "lr=1e-2"), base_dir=run_dir)
    with pytest.raises(UsageError, match="lr"):
        other.fit(epochs=2, checkpoint=ck, resume=True)
    assert not (ck / ".dlrun.lock").exists()
    model.fit(epochs=1, checkpoint=ck)


def test_cli_and_api_hold_the_lock_during_the_run(run_dir, monkeypatch, capsys):
    """While training, the checkpoint folder and the weights file are locked (checked from
    inside the run), and both locks are gone once it ends."""
    from dlrun.runtime import train

    seen = []
    real = train.Trainer.run

    def run(self):
        for target in (RunLock.for_folder(run_dir / "resume.ckpt"), RunLock.for_file(run_dir / "resume.weights.npz")):
            with pytest.raises(UsageError, match="this process"):
                target.acquire()
            seen.append(target)
        return real(self)

    monkeypatch.setattr(train.Trainer, "run", run)
    assert main(["train", str(run_dir / "resume.net"), "--epochs", "1", "--quiet"]) == 0, capsys.readouterr().err
    assert len(seen) == 2
    assert not (run_dir / "resume.ckpt" / ".dlrun.lock").exists()
    assert not (run_dir / ".resume.weights.npz.lock").exists()
