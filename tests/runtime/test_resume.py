"""Bit-exact resume: ``dlrun train`` killed with a real SIGKILL at random moments (and
stopped by SIGINT/SIGTERM mid-epoch), then resumed with ``--resume``, ends with parameter
arrays identical to an uninterrupted run with the same seed.

The model (``nets/resume.net``) carries every piece of state a resume must restore: batch
norm running statistics, dropout's generator, Adam's moments and step count, shuffling,
early stopping with restore-best, standardisation statistics.

``DLRUN_RESUME_TRIALS`` sets the number of SIGKILL trials (default 5).
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlrun.runtime.checkpoint import list_checkpoints, read_checkpoint

NETS = Path(__file__).resolve().parent / "nets"
TRIALS = int(os.environ.get("DLRUN_RESUME_TRIALS", "5"))


def _cmd(*args):
    return [sys.executable, "-m", "dlrun", *map(str, args)]


def _run(*args, timeout=600):
    proc = subprocess.run(_cmd(*args), capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def _write_data(folder):
    rng = np.random.default_rng(11)
    n, d = 2000, 20
    centers = rng.normal(0, 1.5, (3, d))
    y = rng.integers(0, 3, n)
    x = (centers[y] + rng.normal(0, 2.0, (n, d))) * 5 + 40  # far from standardised
    np.savez(folder / "resume.npz", x=x.astype(np.float32), y=y)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The model, its data, and an uninterrupted reference run (with its wall time)."""
    folder = tmp_path_factory.mktemp("resume")
    shutil.copy(NETS / "resume.net", folder / "resume.net")
    _write_data(folder)
    p = _run("train", folder / "resume.net", "--quiet", "--json", "--out", folder / "ref.npz",
             "--checkpoint-dir", folder / "ref.ckpt")
    assert p.returncode == 0, p.stderr
    return folder, folder / "ref.npz", json.loads(p.stdout)["train_seconds"]


def _assert_same_parameters(path, reference):
    a, b = np.load(path), np.load(reference)
    keys = [k for k in b.files if k.startswith(("param.", "state.", "preprocess."))]
    assert keys and sorted(k for k in a.files if k.startswith(("param.", "state.", "preprocess."))) == sorted(keys)
    for k in keys:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs from the uninterrupted run"


def _assert_checkpoints_intact(folder):
    for path in list_checkpoints(folder):
        read_checkpoint(path)  # raises on a torn or damaged file


def test_resume_after_completion_is_a_no_op_and_extension_continues(setup, tmp_path):
    folder, reference, _ = setup
    ck = folder / "ref.ckpt"
    files = list_checkpoints(ck)
    assert len(files) == 2 and Path(files[0]).name == "ckpt-000040-000000.npz"
    _assert_checkpoints_intact(ck)
    # the checkpoint is also a weights file
    p = _run("eval", folder / "resume.net", "--weights", files[0])
    assert p.returncode == 0, p.stderr
    # nothing left to train: the same final weights again
    out = tmp_path / "again.npz"
    p = _run("train", folder / "resume.net", "--quiet", "--resume", "--out", out, "--checkpoint-dir", ck)
    assert p.returncode == 0, p.stderr
    _assert_same_parameters(out, reference)


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_a_random_moment_then_resume_is_bit_exact(setup, tmp_path, trial):
    folder, reference, seconds = setup
    rng = random.Random(1000 + trial)
    ck = tmp_path / "ck"
    out = tmp_path / "w.npz"
    args = ("train", folder / "resume.net", "--out", out, "--checkpoint-dir", ck)
    kills = []
    # one or two kills; the first of trial 0 during start-up, the others at a random moment
    # of the training loop (inside a batch, an evaluation or a checkpoint write)
    for k in range(1 + trial % 2):
        proc = subprocess.Popen(_cmd(*args, *(("--resume",) if kills else ())),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if trial == 0 and k == 0:
            delay = 0.3
        else:
            # training starts once the data is loaded: the summary line is printed then
            first = proc.stderr.readline()
            assert first.startswith(b"resume:") or b"resuming" in first or b"checkpoint" in first, first
            delay = rng.uniform(0.0, 0.6) * seconds
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=120)
        assert b"Traceback" not in err, err.decode()
        # whatever instant the kill hit (even inside a checkpoint write): no torn file
        _assert_checkpoints_intact(ck)
        newest = list_checkpoints(ck)
        kills.append((round(delay, 2), proc.returncode, Path(newest[0]).name if newest else None))
        assert not out.exists() or proc.returncode == 0
    p = _run(*args, "--resume")
    assert p.returncode == 0, p.stderr
    _assert_same_parameters(out, reference)
    assert not [n for n in os.listdir(ck) if n.endswith(".tmp")], "temporary files left behind"
    print(f"trial {trial}: killed {kills} (delay s, returncode, newest checkpoint) -> resumed bit-exact")


def _start_and_signal(args, signum, after_epochs=1):
    """Start a run, wait until ``after_epochs`` epoch lines were printed, send ``signum``."""
    proc = subprocess.Popen(_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith("epoch ") and sum(l.startswith("epoch ") for l in seen) >= after_epochs:
            proc.send_signal(signum)
            break
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    return proc.returncode, "".join(seen) + rest


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_and_sigint_checkpoint_mid_epoch_then_resume_is_bit_exact(setup, tmp_path, signum, code):
    folder, reference, _ = setup
    ck = tmp_path / "ck"
    out = tmp_path / "w.npz"
    args = ("train", folder / "resume.net", "--out", out, "--checkpoint-dir", ck)
    rc, err = _start_and_signal(args, signum, after_epochs=2)
    assert "Traceback" not in err, err
    assert rc == code, err
    name = "SIGTERM" if signum == signal.SIGTERM else "SIGINT"
    assert f"interrupted by {name}" in err and "--resume" in err, err
    assert not out.exists()  # no weights from an unfinished run
    newest = list_checkpoints(ck)[0]
    arrays = read_checkpoint(newest)
    epochs_done, batches_done = (int(v) for v in arrays["ckpt.position"])
    assert epochs_done >= 2
    assert str(newest) in err
    # a mid-epoch checkpoint unless the signal landed exactly on an epoch boundary
    if batches_done:
        assert f"epoch {epochs_done + 1}, after batch {batches_done}/" in err
    p = _run(*args, "--resume", "--quiet")
    assert p.returncode == 0, p.stderr
    _assert_same_parameters(out, reference)


def test_extending_epochs_on_resume_equals_a_longer_run(setup, tmp_path):
    folder, _, _ = setup
    short, long_ = tmp_path / "short", tmp_path / "long"
    for d, epochs in ((short, 3), (long_, 5)):
        d.mkdir()
        p = _run("train", folder / "resume.net", "--quiet", "--epochs", epochs, "--out", d / "w.npz",
                 "--checkpoint-dir", d / "ck")
        assert p.returncode == 0, p.stderr
    p = _run("train", folder / "resume.net", "--quiet", "--resume", "--epochs", 5, "--out", short / "w.npz",
             "--checkpoint-dir", short / "ck")
    assert p.returncode == 0, p.stderr
    _assert_same_parameters(short / "w.npz", long_ / "w.npz")
