"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a weights file (``weights.py``: parameters, batch-norm running statistics,
preprocessing statistics, class names, metadata; so ``dlrun eval --weights`` reads it too)
plus the training state, in the same pickle-free ``.npz``:

    ckpt.format_version   int64, FORMAT_VERSION (a newer format is refused)
    ckpt.model            str, JSON of the model file's canonical IR (``model_identity``)
    ckpt.settings         str, JSON of the run's settings that shape the trajectory
                          (batch size, seed, learning rate, shuffle, dtype)
    ckpt.data             str, sha256 of the training and validation arrays
    ckpt.position         int64 [epochs completed, batches done in the next epoch]
    ckpt.optim.{name}     optimizer state (moments, velocity, ...; ``steps`` = step count,
                          which is also the position of any schedule)
    ckpt.rng.shuffle      str, JSON of the shuffle generator's state at the start of the
                          epoch in progress (the epoch's order is drawn again from it)
    ckpt.dropout.{layer}  uint64 [seed, counter] of each dropout layer's counter-based generator
    ckpt.epoch.*          running loss sum and metric sums of the epoch in progress
    ckpt.history          str, JSON of the history so far (per-epoch metrics, best epoch)
    ckpt.early            str, JSON of the early-stopping state (best value, epoch, wait)
    ckpt.schedule         str, JSON of a plateau schedule's state (cuts, best, wait; with a schedule)
    ckpt.best.*           the best epoch's parameters and statistics (restore-best)
    ckpt.checksum         str, sha256 over every other array (name, dtype, shape, bytes)

Files are ``ckpt-EEEEEE-BBBBBB.npz`` (epochs completed, batches done in the next epoch),
written atomically (temporary file in the folder, fsync, rename, fsync of the folder), the
newest ``KEEP`` kept. A run holds the folder's exclusive lock (``runlock``, file
``.dlrun.lock``) from start to end, so a second run into the same folder is refused and the
temporary files a killed write left behind can be removed safely. Loading checks the zip,
refuses pickles, checks the format version and verifies the checksum, so a damaged file is
reported as such; ``newest_good`` then falls back to the previous one.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np

from dlrun.dsl import ir
from dlrun.errors import DlrunError, UsageError, WeightsError
from dlrun.runtime import weights as wts
from dlrun.runtime.fileio import remove_stale_temps
from dlrun.runtime.runlock import RunLock
from dlrun.runtime.data import data_fingerprint  # noqa: F401  (one definition, in data/split.py)

FORMAT_VERSION = 1
KEEP = 2
_NAME = re.compile(r"^ckpt-(\d{6,})-(\d{6,})\.npz$")
_SIGNALS = {2: ("SIGINT", 130), 15: ("SIGTERM", 143)}


class Interrupted(DlrunError):
    """Training stopped on SIGINT/SIGTERM after writing a checkpoint; exit 130 / 143."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.signum = signum
        self.exit_code = _SIGNALS.get(signum, ("", 128 + signum))[1]


# -- identity of a run --------------------------------------------------------------------
def model_identity(model_ir) -> dict:
    """The canonical IR of a model file without source positions, its path and
    ``train.epochs`` (extending a run is allowed). ``output`` is left out: the checker
    derives it from the layers and the loss (checkpoints written before it existed lack it).
    A layer's ``inputs`` appear only where it does not take the layer before it."""
    d = ir.to_dict(model_ir, positions=False)
    d.pop("path", None)
    d.pop("output", None)
    for layer in d.get("layers", ()):
        if isinstance(layer, dict) and not layer.get("inputs"):
            # a layer taking the one before it: written as before graphs existed, so the
            # checkpoints of a straight line of layers keep resuming
            layer.pop("inputs", None)
    if d.get("schedule") is None:   # a model without a schedule: as written before schedules
        d.pop("schedule", None)
    train = d.get("train")
    if isinstance(train, dict):
        train.pop("epochs", None)
    data = d.get("data")
    if isinstance(data, dict):
        for key in ("text", "tokens", "audio"):  # a model without texts or sound: as written before them
            if data.get(key) is None:
                data.pop(key, None)
    return d


def first_difference(old, new, where="") -> str | None:
    """``'optimizer.params.lr: 0.001 in the checkpoint, 0.01 now'`` for the first place two
    JSON-like values differ (None when equal)."""
    if isinstance(old, dict) and isinstance(new, dict):
        if old.get("node") == "Layer" and new.get("node") == "Layer" and old.get("kind") != new.get("kind"):
            return f"{where}: a {old.get('kind')} layer in the checkpoint, a {new.get('kind')} layer now"
        for key in list(old) + [k for k in new if k not in old]:
            if key == "node":
                continue
            sub = f"{where}.{key}" if where else str(key)
            if key not in old:
                return f"{sub}: absent in the checkpoint, {_show(new[key])} now"
            if key not in new:
                return f"{sub}: {_show(old[key])} in the checkpoint, absent now"
            found = first_difference(old[key], new[key], sub)
            if found:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list):
        for i, (a, b) in enumerate(zip(old, new)):
            found = first_difference(a, b, f"{where}[{i}]")
            if found:
                return found
        if len(old) != len(new):
            return f"{where}: {len(old)} entries in the checkpoint, {len(new)} now"
        return None
    if old != new or type(old) is not type(new):
        return f"{where}: {_show(old)} in the checkpoint, {_show(new)} now"
    return None


def _show(v) -> str:
    if isinstance(v, dict):
        if v.get("node") == "Layer":
            return f"a {v.get('kind')} layer"
        if "node" in v:
            return f"{v['node']} {v.get('name', '')}".strip()
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _describe_place(where: str, model_ir) -> str:
    """``layers[2].params.units`` -> ``layer 2 (dense, line 7): params.units``."""
    m = re.match(r"^layers\[(\d+)\]\.?(.*)$", where)
    if m and int(m.group(1)) < len(model_ir.layers):
        node = model_ir.layers[int(m.group(1))]
        line = f", line {node.pos.line}" if node.pos.line else ""
        return f"layer {m.group(1)} ({node.kind}{line})" + (f": {m.group(2)}" if m.group(2) else "")
    return where


# -- files ---------------------------------------------------------------------------------
def checkpoint_name(epochs_done: int, batches_done: int) -> str:
    return f"ckpt-{int(epochs_done):06d}-{int(batches_done):06d}.npz"


def is_checkpoint_name(name: str) -> bool:
    return _NAME.match(name) is not None


def list_checkpoints(folder) -> list[str]:
    """Checkpoint files in ``folder``, newest (furthest in training) first."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        m = _NAME.match(name)
        if m:
            found.append(((int(m.group(1)), int(m.group(2))), os.path.join(folder, name)))
    found.sort(reverse=True)
    return [p for _, p in found]


def checksum(arrays: dict) -> str:
    """sha256 over every array but ``ckpt.checksum``: name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        if key == "ckpt.checksum":
            continue
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def write_checkpoint(path, arrays: dict) -> str:
    """Write ``arrays`` with format version and checksum to ``path``, atomically."""
    arrays = dict(arrays)
    arrays["ckpt.format_version"] = np.array(FORMAT_VERSION, np.int64)
    arrays["ckpt.checksum"] = np.array(checksum(arrays))
    return wts.write_npz(path, arrays)


def read_checkpoint(path) -> dict:
    """Every array of a checkpoint, after checking pickles, format version and checksum."""
    path = os.fspath(path)
    arrays = wts.read_npz(path, "checkpoint")
    if "ckpt.format_version" not in arrays or "ckpt.checksum" not in arrays:
        raise WeightsError(f"{path}: not a dlrun checkpoint (no ckpt.format_version / ckpt.checksum)")
    try:
        version = int(arrays["ckpt.format_version"])
    except (TypeError, ValueError):
        raise WeightsError(f"{path}: damaged checkpoint (ckpt.format_version)") from None
    if version > FORMAT_VERSION:
        raise WeightsError(f"{path}: checkpoint format {version}; this dlrun reads format "
                           f"{FORMAT_VERSION} and older: upgrade dlrun")
    stored = arrays["ckpt.checksum"]
    if stored.dtype.kind != "U" or stored.ndim != 0 or str(stored) != checksum(arrays):
        raise WeightsError(f"{path}: damaged checkpoint (checksum mismatch: the contents changed after writing)")
    return arrays


def newest_good(folder, report=None):
    """``(path, arrays)`` of the newest checkpoint in ``folder`` that reads back intact, or
    ``(None, None)``. ``report(message)`` hears about every damaged file skipped."""
    for path in list_checkpoints(folder):
        try:
            return path, read_checkpoint(path)
        except WeightsError as err:
            if report is not None:
                report(f"{err}; trying the previous checkpoint")
    return None, None


def _text(obj) -> np.ndarray:
    return np.array(json.dumps(obj))


def _json(arrays, key, path):
    a = arrays.get(key)
    if a is None or a.dtype.kind != "U" or a.ndim != 0:
        raise WeightsError(f"{path}: damaged checkpoint ({key} missing or not a string)")
    try:
        return json.loads(str(a))
    except ValueError:
        raise WeightsError(f"{path}: damaged checkpoint ({key} is not JSON)") from None


# -- the checkpointer a Trainer calls --------------------------------------------------------
class Checkpointer:
    """Writes checkpoints of a ``Trainer`` into ``folder`` and restores one.

    ``resume``: checkpoint arrays to continue from (``newest_good``), with ``resume_path``.
    ``settings``: the run's settings that must match on resume (see ``ckpt.settings``).
    ``every_epoch``: False (the default) lets an epoch that ends while the previous checkpoint
    is still being written skip its own, so epochs shorter than a write (tiny models) are not
    slowed down; the final epoch's and an interrupt's are always written.
    ``stop_signal`` is set by a signal handler; the trainer checks it at every batch
    boundary, writes a checkpoint and raises ``Interrupted``.
    """

    def __init__(self, folder, *, model_ir, settings: dict, class_names=None, resume=None,
                 resume_path=None, keep=KEEP, every_epoch=False, data=None):
        self.folder = os.path.abspath(os.fspath(folder))
        self.model_ir = model_ir
        self.identity = json.loads(json.dumps(model_identity(model_ir)))  # as read back
        self.settings = dict(settings)
        self.class_names = class_names
        self.data = data  # the DataRecord saved with the weights (feature names, split)
        self.resume = resume
        self.resume_path = resume_path
        self.keep = int(keep)
        self.every_epoch = every_epoch
        self.stop_signal = None
        self.written: list[str] = []
        self.last_path = None
        self._data_hash = None
        self._pool = None      # one background writer: the next epoch runs during the fsync
        self._pending = None
        self.lock = None       # the folder's RunLock when this checkpointer took it: close releases it
        self.writer = True     # False on the ranks other than 0 of a data-parallel run (reads only)

    # -- folder ---------------------------------------------------------------------------
    @staticmethod
    def prepare_folder(folder) -> str:
        """Create ``folder`` if needed and check it is writable (before any training)."""
        folder = os.path.abspath(os.fspath(folder))
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise UsageError(f"--checkpoint-dir {folder}: exists and is not a directory")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise UsageError(f"--checkpoint-dir {folder}: cannot create it ({err.strerror or err})") from None
        wts.check_writable(os.path.join(folder, checkpoint_name(0, 0)))
        return folder

    def last_good(self) -> str | None:
        """The newest checkpoint this run can be resumed from: the last one it wrote, else
        the one it resumed from."""
        return self.written[-1] if self.written else self.resume_path

    def resume_hint(self) -> str:
        last = self.last_good()
        if last is None:
            return "no checkpoint was written yet (--resume would start from the beginning)"
        return f"--resume will continue from the last good checkpoint, {last}"

    def _prune(self):
        # keep the newest files of this run; a checkpoint resumed from counts as this run's
        mine = list(self.written)
        if self.resume_path:
            mine.insert(0, self.resume_path)
        keep = set(mine[-self.keep:])
        for path in list_checkpoints(self.folder):
            if path not in keep:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    # -- capture ----------------------------------------------------------------------------
    def save(self, trainer, epochs_done, batches_done, epoch_rng_state, total=0.0, acc=None,
             wait=False, skip_if_busy=False) -> str | None:
        """Capture the state of ``trainer`` at a batch boundary (copies, so training may go on)
        and write it; returns the file's path. The write runs in a background thread unless
        ``wait``; ``flush``/``close`` wait for it (at most one write is in flight). With
        ``skip_if_busy`` (and not ``every_epoch``), nothing is done while a write is in flight
        (returns None)."""
        if not self.writer:  # data-parallel training: rank 0 alone writes
            return None
        if skip_if_busy and not self.every_epoch and self._pending is not None and not self._pending.done():
            return None
        net, opt = trainer.net, trainer.opt
        if self._data_hash is None:
            self._data_hash = data_fingerprint(trainer.train, trainer.validation)
        arrays = {k: np.array(v, copy=True) for k, v in wts.weights_arrays(net, trainer.pre, self.class_names, self.data).items()}
        arrays["ckpt.model"] = _text(self.identity)
        arrays["ckpt.settings"] = _text(self.settings)
        arrays["ckpt.data"] = np.array(self._data_hash)
        arrays["ckpt.position"] = np.array([epochs_done, batches_done], np.int64)
        for k, v in opt.state_dict().items():
            arrays[f"ckpt.optim.{k}"] = v
        arrays["ckpt.rng.shuffle"] = _text(epoch_rng_state)
        for layer in net.compute:
            state = layer.random_state()
            if state is not None:
                arrays[f"ckpt.dropout.{layer.key}"] = state
        arrays["ckpt.epoch.total"] = np.array(float(total), np.float64)
        if acc is not None:
            arrays["ckpt.epoch.count"] = np.array(acc.count, np.int64)
            arrays["ckpt.epoch.correct"] = np.array(acc.correct, np.int64)
            for name in ("sse", "sae", "sum_y", "sum_y2"):
                arrays[f"ckpt.epoch.{name}"] = np.array(getattr(acc, name), np.float64)
            if acc.track:
                arrays["ckpt.epoch.confusion"] = acc.confusion.copy()
        arrays["ckpt.history"] = _text(trainer.history.to_dict())
        stopper = trainer.stopper
        arrays["ckpt.early"] = _text({
            "best_value": trainer.best_value,
            "best": stopper.best if stopper else None,
            "best_epoch": stopper.best_epoch if stopper else None,
            "wait": stopper.wait if stopper else 0,
        })
        if trainer.schedule is not None:
            arrays["ckpt.schedule"] = _text(trainer.schedule.state())
        if trainer.best_snap is not None:
            flat, states = trainer.best_snap
            arrays["ckpt.best.flat"] = flat
            for i, s in enumerate(states):
                arrays[f"ckpt.best.state.{i}"] = s
        path = os.path.join(self.folder, checkpoint_name(epochs_done, batches_done))
        self.flush()
        self.last_path = path
        if wait:
            self._write(path, arrays)
        else:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dlrun-checkpoint")
            self._pending = self._pool.submit(self._write, path, arrays)
        return path

    def _write(self, path, arrays):
        try:
            write_checkpoint(path, arrays)
        except WeightsError as err:  # disk full, folder made read-only, ...
            raise WeightsError(f"{err}; the checkpoint was not written: {self.resume_hint()}") from None
        if path in self.written:
            self.written.remove(path)
        self.written.append(path)
        self._prune()

    def flush(self):
        """Wait for the write in flight; a failed write raises its ``WeightsError`` here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self, quiet=False):
        """Finish the pending write and stop the writer thread (``quiet``: swallow its error,
        when another exception is already on its way)."""
        try:
            self.flush()
        except Exception:
            if not quiet:
                raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    # -- restore ----------------------------------------------------------------------------
    def check_compatible(self, arrays=None, path=None, trainer=None):
        """Refuse a checkpoint of another model file, other settings or other data."""
        arrays = self.resume if arrays is None else arrays
        path = path or self.resume_path
        saved = _json(arrays, "ckpt.model", path)
        diff = first_difference(saved, self.identity)
        if diff:
            place, _, detail = diff.partition(": ")
            raise UsageError(
                f"{path}: the model file changed since this checkpoint was written "
                f"({_describe_place(place, self.model_ir)}: {detail}); only train.epochs may change "
                f"on --resume (start a new run with another --checkpoint-dir)")
        old = _json(arrays, "ckpt.settings", path)
        for key, value in self.settings.items():
            if key in old and old[key] != value:
                raise UsageError(
                    f"{path}: the checkpoint was trained with {key} {old[key]}, this run asks for "
                    f"{value}; a resumed run keeps its settings (only --epochs may change)")
        if trainer is not None:
            data = arrays.get("ckpt.data")
            if self._data_hash is None:
                self._data_hash = data_fingerprint(trainer.train, trainer.validation)
            if data is None or str(data) != self._data_hash:
                raise UsageError(f"{path}: the training or validation data differ from those the "
                                 f"checkpoint was trained on")

    def restore(self, trainer, acc):
        """Put ``trainer`` in the checkpoint's state; returns ``(epochs_done, batches_done, total)``."""
        arrays, path = self.resume, self.resume_path
        self.check_compatible(arrays, path, trainer)
        net, opt = trainer.net, trainer.opt
        loaded = wts.check_weights(arrays, path, net)
        try:
            pos = [int(v) for v in np.asarray(arrays["ckpt.position"]).reshape(-1)]
            epochs_done, batches_done = pos[0], pos[1]
        except (KeyError, ValueError, IndexError, TypeError):
            raise WeightsError(f"{path}: damaged checkpoint (ckpt.position)") from None
        optim = {k[len("ckpt.optim."):]: v for k, v in arrays.items() if k.startswith("ckpt.optim.")}
        if "steps" not in optim:
            raise WeightsError(f"{path}: damaged checkpoint (no optimizer step count)")
        if trainer.pre.fitted and trainer.pre.needs_fit:
            for k, v in trainer.pre.state().items():
                saved = loaded.preprocess.get(k)
                if saved is None or saved.shape != v.shape or not np.array_equal(saved, v):
                    raise UsageError(f"{path}: the preprocessing statistics ({k}) differ from the "
                                     f"checkpoint's: the training data changed")
        wts.apply_weights(loaded, net)
        opt.load_state_dict(optim)
        for layer in net.compute:
            if layer.random_state() is not None:
                a = arrays.get(f"ckpt.dropout.{layer.key}")
                if a is None or a.shape != (2,):
                    raise WeightsError(f"{path}: damaged checkpoint (no generator state for {layer.describe()})")
                layer.set_random_state(a)
        trainer.shuffle_rng.bit_generator.state = _json(arrays, "ckpt.rng.shuffle", path)
        hist = _json(arrays, "ckpt.history", path)
        h = trainer.history
        h.epochs = [dict(e) for e in hist.get("epochs", [])]
        h.best_epoch = hist.get("best_epoch")
        h.stopped_early = bool(hist.get("stopped_early", False))
        early = _json(arrays, "ckpt.early", path)
        trainer.best_value = early.get("best_value")
        if trainer.stopper is not None:
            trainer.stopper.best = early.get("best")
            trainer.stopper.best_epoch = early.get("best_epoch")
            trainer.stopper.wait = int(early.get("wait") or 0)
        if trainer.schedule is not None:
            if "ckpt.schedule" not in arrays:
                raise WeightsError(f"{path}: damaged checkpoint (no state of the schedule)")
            state = _json(arrays, "ckpt.schedule", path)
            try:
                trainer.schedule.load_state(state)
            except (TypeError, ValueError, AttributeError):
                raise WeightsError(f"{path}: damaged checkpoint (ckpt.schedule)") from None
        if "ckpt.best.flat" in arrays:
            flat = arrays["ckpt.best.flat"]
            states = [arrays.get(f"ckpt.best.state.{i}") for i, _ in enumerate(net.named_state())]
            if flat.shape != net.store.flat.shape or any(
                    s is None or s.shape != a.shape for s, (_, _, a) in zip(states, net.named_state())):
                raise WeightsError(f"{path}: damaged checkpoint (best-epoch snapshot)")
            trainer.best_snap = (flat.astype(net.dtype), [s.astype(net.dtype) for s in states])
        total = float(arrays.get("ckpt.epoch.total", 0.0))
        if batches_done and acc is not None:
            acc.reset()
            try:
                acc.count = int(arrays["ckpt.epoch.count"])
                acc.correct = int(arrays["ckpt.epoch.correct"])
                for name in ("sse", "sae", "sum_y", "sum_y2"):
                    getattr(acc, name)[...] = arrays[f"ckpt.epoch.{name}"]
                if acc.track:
                    acc.confusion[...] = arrays["ckpt.epoch.confusion"]
            except (KeyError, ValueError, TypeError):
                raise WeightsError(f"{path}: damaged checkpoint (metrics of the epoch in progress)") from None
        return epochs_done, batches_done, total



def lock_folder(folder, *, hint="use another checkpoint folder") -> RunLock:
    """Create ``folder`` if needed (``prepare_folder``), take the run's exclusive lock on it
    (refused at once while another run holds it; ``hint`` says what to do instead), then
    remove the temporary files a killed write left there: holding the lock, no live run can
    own them. The caller releases the lock at the end of the run."""
    folder = Checkpointer.prepare_folder(folder)
    lock = RunLock.for_folder(folder, hint=hint).acquire()
    remove_stale_temps(folder, is_checkpoint_name)
    return lock


def open_checkpointer(folder, model, *, lock=None, writer=True, **options) -> Checkpointer:
    """The ``Checkpointer`` of a run of ``model`` (a ``dlrun.Model``) into ``folder`` (created
    if needed). ``options`` (``resume``, ``batch_size``, ``lr``, ``epochs``, ``class_names``,
    ``report``, ``quiet``, ``data``) as for ``_open_checkpointer``. ``lock``: the folder's ``RunLock``
    when the caller took it (``lock_folder``) and releases it; by default the folder is
    locked here and released by ``Checkpointer.close``. ``writer=False`` (the ranks other than
    0 of a data-parallel run): reads the checkpoint to resume from, takes no lock, writes
    nothing and reports nothing."""
    if not writer:
        options.update(quiet=True, report=None)
        ck = _open_checkpointer(folder, model, **options)
        ck.writer = False
        return ck
    if lock is not None:
        return _open_checkpointer(folder, model, **options)
    lock = lock_folder(folder)
    try:
        ck = _open_checkpointer(folder, model, **options)
    except BaseException:
        lock.release()
        raise
    ck.lock = lock
    return ck


def _open_checkpointer(folder, model, *, resume=False, batch_size=None, lr=None, epochs=None, class_names=None,
                       report=None, quiet=False, data=None) -> Checkpointer:
    """The ``Checkpointer`` of a run of ``model`` into ``folder`` (prepared and locked).
    ``resume``: continue from the newest intact checkpoint there (damaged ones are
    reported through ``report(message)`` and skipped; none at all: start from the beginning).
    ``batch_size``/``lr``: overrides of the file's values, which a resume must match.
    ``epochs``: the run's epochs (default the file's); a checkpoint that already reached them,
    or whose run stopped early, leaves nothing to train, which is reported even when ``quiet``.
    ``data``: the ``DataRecord`` of the training data, saved in every checkpoint."""
    report = report or (lambda message: None)
    folder = os.path.abspath(os.fspath(folder))  # prepared by lock_folder
    t = model.ir.train
    settings = {
        "batch_size": int(batch_size or t.batch_size),
        "seed": int(model.network.seed),
        "lr": float(lr if lr is not None else model.ir.optimizer.params["lr"]),
        "shuffle": bool(t.shuffle),
        "dtype": model.network.dtype.name,
    }
    path = arrays = None
    if resume:
        path, arrays = newest_good(folder, report=lambda m: report(f"warning: {m}"))
        if path is None and list_checkpoints(folder):
            raise WeightsError(f"--resume: no intact checkpoint in {folder} (every one is damaged, see above); "
                               f"remove them to start from the beginning")
        if path is None:
            report(f"no checkpoint in {folder}: starting from the beginning")
    elif list_checkpoints(folder) and not quiet:
        report(f"note: {folder} holds checkpoints of an earlier run; this run replaces them "
               f"(--resume continues it)")
    ck = Checkpointer(folder, model_ir=model.ir, settings=settings, class_names=class_names,
                      resume=arrays, resume_path=path, data=data)
    if arrays is not None:
        ck.check_compatible()  # a changed model file is refused before anything else
        if not quiet:
            done, batch = (int(v) for v in arrays["ckpt.position"][:2])
            where = f"epoch {done + 1}, batch {batch + 1}" if batch else f"the end of epoch {done}"
            report(f"resuming from {path} ({where})")
        nothing = _nothing_to_resume(arrays, path, int(epochs or t.epochs))
        if nothing:
            report(f"note: {nothing}")
    return ck


def _nothing_to_resume(arrays, path, epochs) -> str | None:
    """Why resuming from ``arrays`` runs no epoch of a run of ``epochs`` epochs, or None."""
    done, batch = (int(v) for v in arrays["ckpt.position"][:2])
    if _json(arrays, "ckpt.history", path).get("stopped_early"):
        return (f"the run in {path} stopped early (early stopping, at epoch {done}): no epoch is run, "
                f"the weights are the ones it ended with")
    if done < epochs:  # Trainer.run goes on with epoch done + 1 (from batch ``batch``)
        return None
    where = f"is in epoch {done + 1} (after batch {batch})" if batch else f"is at the end of epoch {done}"
    if done == epochs and not batch:
        return f"{path} already holds all {epochs} epochs: no epoch is run, the weights are the checkpoint's"
    return (f"{path} {where}, beyond the {epochs} epoch{'s' if epochs != 1 else ''} asked for: no epoch is "
            f"run, the weights are the checkpoint's (to train {epochs} epoch{'s' if epochs != 1 else ''} "
            f"from the start, do not resume)")
