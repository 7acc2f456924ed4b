"""``dlrun train --log-dir DIR``: every epoch's scalars as TensorBoard event files, through
``tensorboardX`` (a well-kept stand-alone writer; the ``tensorboard`` extra:
``pip install 'dlrun[tensorboard]'``), so ``tensorboard --logdir DIR`` shows the run.

Tags: ``train/loss``, ``train/<metric>``, ``validation/loss``, ``validation/<metric>``,
``lr`` (with a schedule) and ``seconds`` per epoch, at step = the epoch (from 1). The
writer wraps the run's progress reporter (``train.ConsoleProgress``), so training itself is
not touched.
"""
from __future__ import annotations

from dlrun.errors import UsageError


def require_writer():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise UsageError("--log-dir needs tensorboardX: pip install 'dlrun[tensorboard]'") from None
    return SummaryWriter


def tag(name: str) -> str:
    """The TensorBoard tag of a history key: 'val_loss' -> 'validation/loss'."""
    if name.startswith("val_"):
        return f"validation/{name[4:]}"
    if name in ("lr", "seconds"):
        return name
    return f"train/{name}"


class ScalarLog:
    """A progress reporter that forwards to ``inner`` and writes each finished epoch's
    metrics to ``log_dir``."""

    def __init__(self, inner, log_dir: str):
        self.inner = inner
        self.writer = require_writer()(logdir=log_dir)

    def start_epoch(self, epoch, epochs, batches):
        if self.inner is not None:
            self.inner.start_epoch(epoch, epochs, batches)

    def batch(self, done, running_loss):
        if self.inner is not None:
            self.inner.batch(done, running_loss)

    def end_epoch(self, epoch, metrics):
        for name, value in metrics.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(tag(name), float(value), epoch)
        self.writer.flush()
        if self.inner is not None:
            self.inner.end_epoch(epoch, metrics)

    def message(self, text):
        if self.inner is not None:
            self.inner.message(text)

    def close(self):
        self.writer.close()
        if self.inner is not None:
            self.inner.close()
