"""The training loop: batches, forward, loss, backward, optimizer step, validation,
early stopping, history.

One step, with every array preallocated::

    take_affine(x, idx, a, b, xin)   # gather + preprocessing + conversion to the model
                                     # dtype in one pass (uint8 stays uint8 until here; with
                                     # `augment`, gathered raw, changed, then converted)
    logits = net.forward(xin, training=True, logits=True)
    loss = net.loss(logits, y, grad) # fused softmax/sigmoid + loss, dLoss/dlogits
    net.backward(grad)               # every layer, into the flat gradient buffer
    optimizer.step()                 # clip, penalties and update fused per segment

Batches: an epoch walks the (shuffled) rows in batches of ``batch_size``, the last one
shorter. In a model with batch norm a last batch of a single row is folded into the one
before it (``batch_plan``): batch statistics of one sample are meaningless (variance 0, no
gradient through the layer), and folding keeps every row trained on, deterministically.
Batch size 1 with batch norm is refused.

Reported metrics per epoch: ``loss`` (the mean data loss over the epoch's batches, as
trained, i.e. in training mode; with ``target standardize``, in standardized units) and
``accuracy`` for classifiers or ``mse``/``mae``/``r2`` for regression (always in the
targets' own units); ``val_*`` the same on the validation split in inference mode; ``penalty``
the L1/L2 term ``sum l1*|w| + l2/2*w^2`` at the end of the epoch when regularisation is
on (it is reported separately, never folded into ``loss``, so ``loss`` and ``val_loss``
are comparable).
"""
from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from dlrun.errors import TrainingError, UsageError
from dlrun.kernels.chain import take_affine
from dlrun.runtime.data.augment import Augmenter
from dlrun.runtime.metrics import Accumulator
from dlrun.runtime.network import rng_for
from dlrun.runtime.schedules import Schedule


# input dtypes ``take_affine`` gathers and converts itself
_RAW_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))


@dataclass
class History:
    """What a training run did.

    ``epochs``: one dict of metrics per epoch run (``loss``, ``accuracy`` or ``mse``/``mae``/
    ``r2``, the same with a ``val_`` prefix when there is validation data, ``seconds``).
    ``epochs_run``, ``best_epoch`` (1-based, by the monitored metric), ``monitor``,
    ``stopped_early``, ``restored_best`` (the weights are those of ``best_epoch``).

    >>> h = History(epochs=[{"loss": 0.9}, {"loss": 0.5}], best_epoch=2, monitor="loss")
    >>> h.epochs_run, h.metric("loss"), h.final["loss"]
    (2, [0.9, 0.5], 0.5)
    """

    epochs: list = field(default_factory=list)
    best_epoch: int | None = None
    monitor: str = "loss"
    stopped_early: bool = False
    restored_best: bool = False
    seconds: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.epochs)

    def metric(self, name: str) -> list:
        """The values of one metric, epoch by epoch."""
        return [e.get(name) for e in self.epochs]

    @property
    def final(self) -> dict:
        """Metrics of the last epoch run."""
        return dict(self.epochs[-1]) if self.epochs else {}

    @property
    def best(self) -> dict:
        """Metrics of the best epoch."""
        return dict(self.epochs[self.best_epoch - 1]) if self.best_epoch else {}

    def to_dict(self) -> dict:
        return {
            "epochs_run": self.epochs_run,
            "best_epoch": self.best_epoch,
            "monitor": self.monitor,
            "stopped_early": self.stopped_early,
            "restored_best": self.restored_best,
            "seconds": self.seconds,
            "epochs": [dict(e) for e in self.epochs],
        }

    def __repr__(self):
        return (f"History(epochs_run={self.epochs_run}, best_epoch={self.best_epoch}, "
                f"stopped_early={self.stopped_early}, final={self.final})")


# shorter spellings for a progress line that must fit a terminal's width
_SHORT = {"accuracy": "acc", "penalty": "pen"}
# how a progress line shows a value other than with 4 decimals (a rate of 1e-5 would be 0.0000)
_FORMATS = {"lr": ".3g"}


def format_metrics(metrics, keys=None, *, short=False, sep="  ") -> str:
    """``loss 0.1234  accuracy 0.9700 ...`` (without ``seconds``); ``short``: ``acc``, ``pen``."""
    parts = []
    for k, v in metrics.items():
        if k == "seconds" or (keys is not None and k not in keys):
            continue
        name = _SHORT.get(k, k) if short else k
        parts.append(f"{name} {v:{_FORMATS.get(k, '.4f')}}" if isinstance(v, float) else f"{name} {v}")
    return sep.join(parts)


def fit_epoch_line(head, metrics, width) -> str:
    """The end-of-epoch line ``head  loss ...  (0.12s)`` in at most ``width - 1`` columns.

    Shortened only as far as needed, in this order: the validation metrics grouped after
    ``| val`` with short names (``acc``, ``pen``), then without the epoch's seconds, then the
    training part reduced to its loss; the validation metrics are the last thing cut.
    """
    seconds = f"({metrics.get('seconds', 0.0):.2f}s)"
    train = [k for k in metrics if k != "seconds" and not k.startswith("val_")]
    val = {k[4:]: v for k, v in metrics.items() if k.startswith("val_")}
    candidates = [f"{head}  {format_metrics(metrics)}  {seconds}"]  # as the plain line
    for keep, with_seconds in ((train, True), (train, False), (train[:1], False)):
        line = f"{head}  {format_metrics(metrics, keep, short=True, sep=' ')}"
        if val:
            line += f" | val {format_metrics(val, short=True, sep=' ')}"
        candidates.append(f"{line} {seconds}" if with_seconds else line)
    limit = max(1, width - 1)  # the last column would wrap on some terminals
    for line in candidates:
        if len(line) <= limit:
            return line
    return candidates[-1][:limit]


def _columns(stream) -> int:
    """Columns of the terminal ``stream`` writes to; else of the process's terminal
    (``COLUMNS`` first); 0 when unknown."""
    import os
    import shutil

    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((0, 0)).columns


class ConsoleProgress:
    """Progress on ``stream`` (default stderr): a tqdm bar per epoch on a terminal, one plain
    line per epoch otherwise; nothing at all when ``quiet``.

    On a terminal the finished epoch's bar is replaced by its metrics on one line that fits
    the width (``fit_epoch_line``). ``message(text)`` prints above a running bar;
    ``close()`` ends a bar cut short (an interrupt, an error) where it stood, so nothing
    redraws it after the message that follows.

    The protocol ``Trainer`` calls (any object with these methods can be passed as
    ``progress``): ``start_epoch(epoch, epochs, batches)``, ``batch(done, running_loss)``,
    ``end_epoch(epoch, metrics)``.
    """

    def __init__(self, stream=None, quiet=False):
        import sys

        stream = sys.stderr if stream is None else stream
        self.stream = stream
        self.quiet = quiet
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.bar = None
        self.width = 0

    def start_epoch(self, epoch, epochs, batches):
        self.epochs = epochs
        if self.quiet or not self.tty:
            return
        from tqdm import tqdm

        # measured once per epoch; a terminal that reports no width gets a fixed one
        self.width = _columns(self.stream) or 100
        self.bar = tqdm(total=batches, desc=f"epoch {epoch}/{epochs}", file=self.stream, unit="batch",
                        leave=True, ncols=self.width)
        self._pending = 0

    def batch(self, done, running_loss):
        if self.bar is not None:
            self._pending += 1
            if self._pending >= 8 or done == self.bar.total:
                self.bar.update(self._pending)
                self._pending = 0
                self.bar.set_postfix_str(f"loss {running_loss:.4f}", refresh=False)

    def end_epoch(self, epoch, metrics):
        head = f"epoch {epoch}/{self.epochs}"
        if self.bar is not None:
            self.bar.leave = False  # cleared: the metrics line below takes its place
            self.bar.close()
            self.bar = None
            print(fit_epoch_line(head, metrics, self.width), file=self.stream, flush=True)
        elif not self.quiet:
            print(f"{head}  {format_metrics(metrics)}  ({metrics.get('seconds', 0.0):.2f}s)",
                  file=self.stream, flush=True)

    def message(self, text):
        """Print ``text`` on its own line above the running bar (or plainly)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self):
        """End a running bar where it stands (its own line); the next output starts below."""
        if self.bar is not None:
            bar, self.bar = self.bar, None
            if self._pending:
                bar.update(self._pending)
            bar.close()


class Feeder:
    """Mini-batches of one dataset as preallocated ``(x, y)`` buffers in the model's dtype."""

    def __init__(self, dataset, preprocessor, dtype, target_dtype, capacity, augment=None):
        x = dataset.x
        self.n = int(x.shape[0])
        self.x = x.reshape(self.n, -1)  # a view: inputs stay in their stored dtype
        self.features = self.x.shape[1]
        self.pre = preprocessor
        self.capacity = int(capacity)
        self.xin = np.empty((self.capacity, self.features), dtype)
        # uint8/float inputs are gathered and preprocessed by one kernel pass (no raw copy)
        self.fused = self.x.dtype in _RAW_DTYPES and self.x.flags.c_contiguous
        # augmented rows are gathered raw, changed, then preprocessed (data/augment.py)
        self.augment = augment
        self.xraw = None if self.fused and augment is None else np.empty((self.capacity, self.features), self.x.dtype)
        self.y = None
        if dataset.y is not None:
            y = dataset.y
            if preprocessor.target is not None:   # 'target standardize': trained on (y - mean) / std
                y = preprocessor.target.standardize(y)
            # targets converted once (they are small next to the inputs)
            self.y = np.ascontiguousarray(y.reshape(self.n) if target_dtype == np.int64 else y.reshape(self.n, -1),
                                          dtype=target_dtype)
            self.yb = np.empty((self.capacity,) + self.y.shape[1:], target_dtype)

    def take(self, idx, epoch=None):
        """Rows ``idx`` (int array, at most ``capacity``) -> (x, y) views of the buffers;
        augmented as drawn for ``epoch`` when the feeder has an augmenter."""
        n = idx.shape[0]
        xin = self.xin[:n]
        if self.augment is not None and epoch is not None:
            xraw = self.xraw[:n]
            np.take(self.x, idx, axis=0, out=xraw)
            self.augment.apply(xraw, idx, epoch)
            if self.fused and self.pre.fitted:
                a, b = self.pre.affine
                take_affine(xraw, None, a, b, xin)
            else:
                self.pre.apply(xraw, xin)
        elif self.fused and self.pre.fitted and idx.dtype == np.int64 and idx.flags.c_contiguous:
            a, b = self.pre.affine
            take_affine(self.x, idx, a, b, xin)
        else:
            xraw = self.xraw[:n] if self.xraw is not None else np.empty((n, self.features), self.x.dtype)
            np.take(self.x, idx, axis=0, out=xraw)
            self.pre.apply(xraw, xin)
        if self.y is None:
            return xin, None
        yb = self.yb[:n]
        np.take(self.y, idx, axis=0, out=yb)
        return xin, yb

    def slice(self, start, stop):
        """Rows ``start:stop`` in order (no gather needed)."""
        n = stop - start
        xin = self.xin[:n]
        if self.fused and self.pre.fitted:
            a, b = self.pre.affine
            take_affine(self.x[start:stop], None, a, b, xin)
        else:
            self.pre.apply(self.x[start:stop], xin)
        return xin, (None if self.y is None else self.y[start:stop])


def evaluate(net, dataset, preprocessor, batch_size=256, confusion=False) -> dict:
    """Inference-mode loss and metrics of ``net`` on a labelled dataset; ``confusion``: a
    classifier's also has ``"confusion"``, its confusion matrix (rows: true class, columns:
    predicted; int64)."""
    n = len(dataset)
    if n == 0:
        raise UsageError("cannot evaluate on an empty dataset")
    batch_size = max(1, min(int(batch_size), n))
    feed = Feeder(dataset, preprocessor, net.dtype, net.loss.target_dtype(net.dtype), batch_size)
    acc = Accumulator(net.task, net.output_features, batch_size, net.model.train.metrics, confusion=confusion,
                      target_std=preprocessor.target_std)
    grad = np.empty((batch_size, net.output_features), net.dtype)
    total = 0.0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        x, y = feed.slice(start, stop)
        out = net.forward(x, training=False, logits=True)
        total += net.loss(out, y, grad[: stop - start]) * (stop - start)
        acc.update(out, y)
    result = {"loss": total / n, **acc.result()}
    if confusion and acc.track:
        result["confusion"] = acc.confusion
    return result


def first_nonfinite(net, x) -> str | None:
    """Where non-finite values first appear: a parameter, the input batch, or the output
    of a layer when ``x`` is run through the network again (for error messages)."""
    for layer in net.compute:
        for name, p in layer.params.items():
            if not np.isfinite(p).all():
                return f"{layer.describe()}, parameter '{name}'"
    if x is None:
        return None
    if not np.isfinite(x).all():
        return "the input batch (after preprocessing)"
    with np.errstate(all="ignore"):
        for layer, h in net.walk(x, False):
            if not np.isfinite(h).all():
                return f"{layer.describe()}, output"
    return None


def check_parameters(net, epoch, done, batches, opt) -> None:
    """Raise ``TrainingError`` when a parameter is no longer finite (before a checkpoint is
    written, so the last good checkpoint stays the newest). One float64 sum over the flat
    buffer (cannot overflow for float32 parameters); the slow scan only runs on failure."""
    flat = net.store.flat
    with np.errstate(all="ignore"):
        ok = math.isfinite(float(flat.sum(dtype=np.float64))) or bool(np.isfinite(flat).all())
    if ok:
        return
    where = first_nonfinite(net, None) or "a parameter"
    raise TrainingError(
        f"epoch {epoch}, batch {done}/{batches}: non-finite values after the update, first in {where}; "
        f"lower the learning rate (lr={opt.lr:g}) or check the data")


class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", mode="min", patience=5, min_delta=0.0, restore_best=True):
        self.monitor = monitor
        self.mode = mode if mode in ("min", "max") else ("max" if monitor.endswith("accuracy") or
                                                          monitor.endswith("r2") else "min")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.restore_best = bool(restore_best)
        self.best = None
        self.best_epoch = None
        self.wait = 0

    def improved(self, value) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def update(self, epoch, value) -> bool:
        """Record ``value`` of ``epoch``; True when training should stop."""
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return False
        self.wait += 1
        # as Keras and Lightning: stop after ``patience`` epochs in a row without improvement
        return self.wait >= self.patience


def batch_plan(n: int, batch_size: int, fold_single: bool) -> tuple[int, int]:
    """``(batches, capacity)`` of an epoch over ``n`` rows: batch ``b`` is rows
    ``[b*batch_size, min((b+1)*batch_size, n))`` of the epoch's order, the last batch ending
    at ``n``. With ``fold_single`` (a model with batch norm) a last batch of a single row is
    folded into the one before it (which then has ``batch_size + 1`` rows), so that every row
    is trained on and no batch-norm batch has one sample."""
    batches = math.ceil(n / batch_size)
    if fold_single and batches > 1 and n % batch_size == 1:
        return batches - 1, batch_size + 1
    return batches, batch_size


def _count(value, what) -> None:
    """Epochs and batch sizes are whole numbers >= 1 (2.5 epochs used to train 2)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise UsageError(f"{what} must be an integer >= 1, got {value!r}")


class Trainer:
    """Runs epochs of ``net`` on a training dataset; see the module docstring."""

    def __init__(self, net, optimizer, train, preprocessor, *, validation=None, epochs=10, batch_size=32,
                 shuffle=True, seed=None, early_stopping=None, progress=None, checkpoint=None, world=None):
        if len(train) == 0:
            raise UsageError("the training set is empty")
        _count(batch_size, "batch size")
        _count(epochs, "epochs")
        self.net = net
        self.opt = optimizer
        self.train = train
        self.validation = validation if validation is not None and len(validation) else None
        self.pre = preprocessor
        # class_weight=balanced: from the training labels, once (a resumed run's checkpoint
        # holds the same numbers, and a loaded model keeps those it was trained with)
        if train.y is not None:
            net.loss.fit_class_weight(train.y, net.output_features)
        self.epochs = int(epochs)
        self.batch_size = min(int(batch_size), len(train))
        norms = [l for l in net.compute if l.spec.batch_statistics]
        if norms and self.batch_size == 1:
            why = ("the training set has 1 sample" if len(train) == 1 else "batch size 1")
            raise UsageError(
                f"{why} with {norms[0].describe()}: batch norm normalises every feature over the "
                "batch, and over one sample its output is beta and every gradient through it 0; "
                "use a batch size >= 2")
        # a last batch of one row would pull batch norm's running variance toward 0 (and
        # give it no gradient): that row joins the batch before it (see ``batch_plan``)
        self.fold_single = bool(norms)
        self.shuffle = shuffle
        self.seed = net.seed if seed is None else int(seed)
        # data-parallel over the MPI ranks when started by mpiexec (runtime/parallel.py)
        if world is None:
            from dlrun.runtime.parallel import world as current_world

            world = current_world()
        self.world = world
        self.progress = progress if world.lead else None  # rank 0 alone reports
        self.stopper = None
        self.monitor = "val_loss" if self.validation is not None else "loss"
        if early_stopping is not None:
            es = early_stopping
            if es.monitor.startswith("val_") and self.validation is None:
                warnings.warn(
                    f"early stopping monitors '{es.monitor}' but there is no validation data: "
                    f"training runs all {self.epochs} epochs", stacklevel=3)
            else:
                self.stopper = EarlyStopping(es.monitor, es.mode, es.patience, es.min_delta, es.restore_best)
                self.monitor = es.monitor
        self.max_mode = self.stopper.mode == "max" if self.stopper else self.monitor.endswith("accuracy")
        self.shuffle_rng = rng_for(self.seed, "shuffle")
        # checkpoints and resume (``checkpoint.Checkpointer``); the state they save
        self.checkpoint = checkpoint
        self.history = None
        self.best_value = None
        self.best_snap = None
        self.schedule = None   # the run's runtime.schedules.Schedule (set by run)

    def _best_snapshot(self):
        return self.net.store.flat.copy(), [a.copy() for _, _, a in self.net.named_state()]

    def _restore(self, snap):
        flat, states = snap
        self.net.store.flat[...] = flat
        for (_, _, a), s in zip(self.net.named_state(), states):
            a[...] = s

    def _interrupt(self, epoch, done, batches, rng_state, total, acc):
        """Checkpoint at this batch boundary (``done`` batches of ``epoch`` run) and stop."""
        from dlrun.runtime.checkpoint import Interrupted, _SIGNALS

        ck = self.checkpoint
        signum = ck.stop_signal
        if done:
            check_parameters(self.net, epoch, done, batches, self.opt)
            path = ck.save(self, epoch - 1, done, rng_state, total, acc, wait=True)
        else:
            ck.flush()
            path = ck.last_path
        name = _SIGNALS.get(signum, (f"signal {signum}",))[0]
        where = f"epoch {epoch}, after batch {done}/{batches}" if done else f"the end of epoch {epoch - 1}"
        raise Interrupted(f"interrupted by {name} at {where}: checkpoint {path}; "
                          f"continue with --resume", signum)

    def run(self) -> History:
        net, opt = self.net, self.opt
        bs = self.batch_size
        n = len(self.train)
        batches, cap = batch_plan(n, bs, self.fold_single)
        comm = self.world
        par = comm.parallel
        if par:
            smallest = min(bs, n - (batches - 1) * bs)
            if smallest < comm.size:
                raise UsageError(
                    f"a batch of {smallest} rows cannot be split between {comm.size} processes (each "
                    f"computes a contiguous part of every batch and needs at least one row; the "
                    f"batch size is {bs} and the training set has {n} rows): use at most {smallest} "
                    f"processes or another batch size")
        net.set_world(comm if par else None)
        try:
            return self._run(comm, batches, cap)
        finally:
            net.set_world(None)

    def _run(self, comm, batches, cap):
        from dlrun.runtime.checkpoint import Interrupted

        net, opt = self.net, self.opt
        bs = self.batch_size
        n = len(self.train)
        par = comm.parallel
        feed = Feeder(self.train, self.pre, net.dtype, net.loss.target_dtype(net.dtype), cap,
                      Augmenter.for_model(net.model, self.seed))
        acc = Accumulator(net.task, net.output_features, cap, net.model.train.metrics,
                          target_std=self.pre.target_std)
        sched = self.schedule = (None if net.model.schedule is None
                                 else Schedule(net.model.schedule, opt.base_lr, self.epochs, batches))
        grad_buf = np.empty((cap, net.output_features), net.dtype)
        history = self.history = History(monitor=self.monitor)
        self.best_value, self.best_snap = None, None
        started = time.perf_counter()
        ck = self.checkpoint
        first_epoch, first_batch, carried_total = 1, 0, 0.0
        if ck is not None and ck.resume is not None:
            done, first_batch, carried_total = ck.restore(self, acc)
            first_epoch = done + 1
            if par and not comm.lead:
                # the sums of the epoch in progress are the whole batch's: rank 0 carries them
                carried_total = 0.0
                acc.reset()
        comm.agree()  # every rank is set up (or all stop here, the error reported once)
        try:
            self._epochs(comm, feed, acc, grad_buf, batches, first_epoch, first_batch, carried_total, started)
        except Interrupted as err:  # every rank stops at the same batch boundary
            comm.finish()
            if par and not comm.lead:  # rank 0 wrote the checkpoint and says so
                raise Interrupted("", err.signum) from None
            raise
        except BaseException as err:
            comm.fail(err)  # under MPI: "rank R: message" and every rank ends
        comm.finish()
        return history

    def _epochs(self, comm, feed, acc, grad_buf, batches, first_epoch, first_batch, carried_total, started):
        from dlrun.runtime.parallel import check_same_weights, shard

        net, opt = self.net, self.opt
        bs = self.batch_size
        n = len(self.train)
        par = comm.parallel
        history = self.history
        sched = self.schedule
        forward, backward, loss_fn, step = net.forward, net.backward, net.loss, opt.step
        ck = self.checkpoint
        for epoch in range(first_epoch, self.epochs + 1):
            if history.stopped_early:
                break
            t0 = time.perf_counter()
            # the epoch's order is drawn from this state again on resume
            rng_state = self.shuffle_rng.bit_generator.state if ck is not None else None
            order = self.shuffle_rng.permutation(n) if self.shuffle else np.arange(n)
            start = 0
            if epoch == first_epoch and first_batch:
                start, total = first_batch, carried_total  # acc restored by ck.restore
            else:
                acc.reset()
                total = 0.0
            seen = min(start * bs, n)  # rows in ``total`` (rank 0's, when carried over)
            if self.progress:
                self.progress.start_epoch(epoch, self.epochs, batches)
            for b in range(start, batches):
                stop = n if b == batches - 1 else (b + 1) * bs
                idx = order[b * bs:stop]
                m = idx.shape[0]
                if par:  # this rank's contiguous part of the global batch
                    lo, hi = shard(m, comm.size, comm.rank)
                    net.set_shard(lo, m)
                    idx = idx[lo:hi]
                mr = idx.shape[0]
                x, y = feed.take(idx, epoch)
                out = forward(x, True, True)
                grad = grad_buf[:mr]
                loss = loss_fn(out, y, grad)
                if not math.isfinite(loss):
                    where = first_nonfinite(net, x)
                    raise TrainingError(
                        f"epoch {epoch}, batch {b + 1}/{batches}: the loss is {loss}"
                        f"{'; first non-finite values: ' + where if where else ''}; "
                        f"lower the learning rate (lr={opt.lr:g}) or check the data")
                total += loss * mr
                acc.update(out, y)
                if par:
                    # the loss is the mean over this rank's mr rows: scaled by mr / m, the
                    # ranks' gradients sum to the gradient of the global batch's mean
                    np.multiply(grad, mr / m, out=grad)
                    # after the allreduce the buffer holds every rank's gradient, while a layer
                    # may write only part of its own (embedding: the rows of its batch's ids,
                    # trusting the rest to be its zeros): cleared before each backward
                    net.store.grad.fill(0)
                backward(grad)
                if sched is not None:
                    opt.lr = sched.rate(epoch, b)
                if par:
                    comm.sum_into(net.store.grad)
                step()
                if opt.last_grad_norm is not None and not math.isfinite(opt.last_grad_norm):
                    # the clipping pass computes the norm anyway: a free check of every gradient
                    raise TrainingError(
                        f"epoch {epoch}, batch {b + 1}/{batches}: the gradient norm is "
                        f"{opt.last_grad_norm}; lower the learning rate (lr={opt.lr:g}) or check the data")
                seen += mr
                if self.progress:  # under MPI: rank 0's running loss, over its own rows
                    self.progress.batch(b + 1, total / seen)
                if par and ck is not None:  # a signal stops every rank at the same batch
                    sig = comm.max_int(ck.stop_signal or 0)
                    ck.stop_signal = sig or None
                if ck is not None and ck.stop_signal is not None and b + 1 < batches:
                    if par:
                        total = self._reduce_epoch_sums(total, acc)
                    self._interrupt(epoch, b + 1, batches, rng_state, total, acc)
            check_parameters(net, epoch, batches, batches, opt)
            if par:
                total = self._reduce_epoch_sums(total, acc)
                check_same_weights(comm, net, epoch)
            metrics = {"loss": total / n, **acc.result()}
            if any(s.l1 or s.l2 for s in net.store.segments):
                metrics["penalty"] = net.store.penalty()
            if self.validation is not None:
                val = evaluate(net, self.validation, self.pre, max(bs, 256))
                metrics.update({f"val_{k}": v for k, v in val.items()})
            if sched is not None:
                metrics["lr"] = sched.last   # the rate of the epoch's last batch
                sched.end_epoch(metrics)
            metrics["seconds"] = time.perf_counter() - t0
            history.epochs.append(metrics)
            if self.progress:
                self.progress.end_epoch(epoch, metrics)
            if self.monitor not in metrics:
                raise UsageError(
                    f"early stopping monitors '{self.monitor}', which this run does not report "
                    f"(reported: {', '.join(k for k in metrics if k != 'seconds')})")
            value = metrics[self.monitor]
            better = self.best_value is None or (value > self.best_value if self.max_mode else value < self.best_value)
            stop = False
            if self.stopper is not None:
                stop = self.stopper.update(epoch, value)
                if self.stopper.best_epoch == epoch:
                    history.best_epoch = epoch
                    if self.stopper.restore_best:
                        self.best_snap = self._best_snapshot()
                if stop:
                    history.stopped_early = True
            elif better:
                self.best_value = value
                history.best_epoch = epoch
            if ck is not None:
                if par:  # a signal that came during validation: every rank sees it here
                    ck.stop_signal = comm.max_int(ck.stop_signal or 0) or None
                last = stop or epoch == self.epochs or ck.stop_signal is not None
                ck.save(self, epoch, 0, self.shuffle_rng.bit_generator.state, skip_if_busy=not last)
                if ck.stop_signal is not None and epoch < self.epochs and not stop:
                    self._interrupt(epoch + 1, 0, batches, None, 0.0, None)
            if stop:
                break
        self._finish(history, started)

    def _reduce_epoch_sums(self, total, acc):
        """The epoch's loss sum and metric sums of every rank added (on every rank)."""
        v = self.world.sum(np.concatenate(([total], acc.sums())))
        acc.set_sums(v[1:])
        return float(v[0])

    def _finish(self, history, started):
        if self.stopper is not None and self.stopper.restore_best and self.best_snap is not None \
                and history.best_epoch != history.epochs_run:
            self._restore(self.best_snap)
            history.restored_best = True
        history.seconds = time.perf_counter() - started
