"""Numeric guards: non-finite losses, gradients or parameters stop training with a message
naming the epoch, the batch and the first layer where they appear (exit 1), and the last
good checkpoint stays intact and loadable."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.errors import TrainingError
from dlrun.runtime.checkpoint import list_checkpoints, read_checkpoint

NETS = Path(__file__).resolve().parent / "nets"


def _dlrun(*args):
    p = subprocess.run([sys.executable, "-m", "dlrun", *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    return p


@pytest.fixture
def diverge(tmp_path):
    for name in ("diverge.net", "line.csv"):
        shutil.copy(NETS / name, tmp_path / name)
    return tmp_path / "diverge.net"


def test_lr_1e6_stops_with_exit_1_naming_epoch_batch_and_layer(diverge):
    p = _dlrun("train", diverge)
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    # sgd lr=1e6: the weights grow ~1e6-fold per step and overflow float32 in epoch 5
    assert last.startswith("epoch 5, batch 1/1: ")
    assert "non-finite" in last and "layer 1 (dense, line 11)" in last and "'w'" in last, last
    assert "lower the learning rate (lr=1e+06)" in last
    assert "epoch 4/30" in p.stderr  # four epochs were trained and reported
    assert not (diverge.parent / "diverge.weights.npz").exists()  # no weights from a failed run

    # the last good checkpoint is intact, finite and loadable
    ck = diverge.parent / "diverge.ckpt"
    newest = list_checkpoints(ck)[0]
    # epoch 4's, or an earlier one when the next epochs ended while it was still being written
    # (these epochs take microseconds)
    assert read_checkpoint(newest)["ckpt.position"].tolist() in ([1, 0], [2, 0], [3, 0], [4, 0])
    _assert_all_good(ck)
    before = Path(newest).read_bytes()
    model = dlrun.load(diverge, weights=newest)
    assert np.isfinite(model.network.store.flat).all()
    p = _dlrun("eval", diverge, "--weights", newest)
    assert p.returncode == 0, p.stderr

    # resuming from it fails again at the same place (deterministic); every checkpoint left
    # is good (the one resumed from unchanged, unless two newer good ones replaced it)
    p = _dlrun("train", diverge, "--resume")
    assert p.returncode == 1 and f"resuming from {newest}" in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == last
    assert not Path(newest).exists() or Path(newest).read_bytes() == before
    _assert_all_good(ck)


def _assert_all_good(folder):
    for path in list_checkpoints(folder):
        arrays = read_checkpoint(path)
        assert all(np.isfinite(arrays[k]).all() for k in arrays if k.startswith("param."))


def _small_model():
    return dlrun.loads("""dlrun 1
model g {
  input 4
  dense 8 relu
  batchnorm
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=2 batch=8 seed=0
}""")


def _data(n=64):
    rng = np.random.default_rng(0)
    return rng.normal(0, 1, (n, 4)).astype(np.float32), rng.integers(0, 3, n)


def test_non_finite_parameter_is_named_at_the_first_batch():
    model = _small_model()
    x, y = _data()
    model.fit(x, y, epochs=1)
    model.network.named_params()[2][2][1] = np.nan  # batchnorm's gamma (layer 2)
    with pytest.raises(TrainingError) as info:
        model.fit(x, y, epochs=1)
    msg = str(info.value)
    assert msg.startswith("epoch 1, batch 1/8: the loss is nan")
    assert "layer 2 (batchnorm" in msg and "'gamma'" in msg, msg


def test_non_finite_input_after_preprocessing_is_named():
    model = _small_model()
    x, y = _data()
    model.fit(x, y, epochs=1)
    from dlrun.runtime.train import first_nonfinite

    bad = x[:8].copy()
    bad[3, 1] = np.inf
    assert first_nonfinite(model.network, bad) == "the input batch (after preprocessing)"
    assert first_nonfinite(model.network, x[:8]) is None


def test_overflowing_gradient_with_clipping_is_caught():
    model = dlrun.loads("""dlrun 1
model c {
  input 2
  dense 4 tanh
  dense 1
  loss mse
  optimizer sgd lr=1e6 clip_norm=1e30
  train epochs=50 batch=16 seed=0
}""")
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (16, 2)).astype(np.float32)
    y = rng.normal(0, 1, (16, 1)).astype(np.float32)
    with pytest.raises(TrainingError, match=r"^epoch \d+, batch 1/1: .*(non-finite|gradient norm|loss is)") as info:
        model.fit(x, y)
    assert "lower the learning rate" in str(info.value)


def test_healthy_training_is_not_stopped():
    model = _small_model()
    x, y = _data()
    history = model.fit(x, y, epochs=3)
    assert history.epochs_run == 3 and np.isfinite(history.final["loss"])
