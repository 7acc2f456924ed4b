"""The Python API: ``dlrun.load``, ``dlrun.loads``, ``Model``, ``History``.

    >>> import dlrun, numpy as np
    >>> model = dlrun.loads('''
    ... dlrun 1
    ... model xor {
    ...   input 2
    ...   dense 8 tanh
    ...   dense 1 sigmoid
    ...   loss binary_cross_entropy
    ...   optimizer adam lr=0.05
    ...   train epochs=300 batch=4 seed=1
    ... }''')
    >>> x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    >>> y = np.array([0, 1, 1, 0])
    >>> history = model.fit(x, y)
    >>> history.epochs_run
    300
    >>> model.predict_classes(x).tolist()
    [0, 1, 1, 0]
    >>> model.evaluate(x, y)["accuracy"]
    1.0
"""
from __future__ import annotations

import os
import threading
from contextlib import contextmanager

import numpy as np

from dlrun.errors import UsageError
from dlrun.runtime.train import History, Trainer, evaluate as _evaluate

__all__ = ["load", "loads", "Model", "History"]

# input dtypes the inference chain converts itself (others go through Preprocessor.apply)
#: the vocabulary of an embedding awaiting the data in a model's outline (shapes only: never trained
#: or run)
_STAND_IN_VOCAB = 2

_CHAIN_INPUTS = (np.dtype(np.uint8), np.dtype(np.float32), np.dtype(np.float64))


def load(path, weights=None, seed=None, lr=None) -> "Model":
    """Parse, check and build the model in the ``.net`` file ``path``.

    Relative data paths in the file resolve against the file's folder. ``weights``: a
    weights file to load (see ``Model.save``). ``seed``: instead of the file's ``train seed=``
    for initialisation, shuffling and dropout (as ``dlrun train --seed``; the held-out
    fractions of the file's data stay drawn from the file's seed). ``lr``: instead of the file's
    optimizer ``lr=`` (as ``dlrun train --lr``; a schedule moves it as it would the file's).
    Raises ``dlrun.DslError`` for a bad model file, ``dlrun.WeightsError`` for weights that do not fit.

    >>> import dlrun, os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path = os.path.join(folder, "tiny.net")
    >>> with open(path, "w") as f:
    ...     _ = f.write("dlrun 1\\nmodel tiny {\\n input 3\\n dense 2 softmax\\n"
    ...                 " loss cross_entropy\\n optimizer sgd lr=0.1\\n}\\n")
    >>> model = dlrun.load(path)
    >>> model.name, model.input_shape, model.output_shape
    ('tiny', (3,), (2,))
    """
    from dlrun import dsl

    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
        raise UsageError(f"{path}: not a regular file, expected a .net model file")
    found: list = []
    model_ir = dsl.load_file(path, warnings=found)
    model = Model(model_ir, base_dir=os.path.dirname(os.path.abspath(path)), path=path, warnings=found, seed=seed,
                  lr=lr)
    _issue(found)
    if weights is not None:
        model.load_weights(weights)
    return model


def loads(text: str, base_dir=".", weights=None, seed=None, lr=None) -> "Model":
    """Like ``load`` for the text of a model file; data paths resolve against ``base_dir``."""
    from dlrun import dsl

    found: list = []
    model_ir = dsl.parse(text, "<string>", warnings=found)
    model = Model(model_ir, base_dir=os.path.abspath(os.fspath(base_dir)), warnings=found, seed=seed, lr=lr)
    _issue(found)
    if weights is not None:
        model.load_weights(weights)
    return model


class _Guard:
    """Who may use a ``Model`` at the same time: ``fit`` and ``load_weights`` change the
    parameters and run alone; ``predict``, ``evaluate`` and ``save`` read them and may run
    together (each thread on buffers of its own). A call that would overlap the other
    kind, from another thread, raises ``UsageError`` instead of interleaving silently (two
    fits mixed their steps; a prediction during a fit read half-updated weights). A call
    from the fitting thread itself (a progress callback between batches) is allowed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._readers = 0
        self._writer = None   # thread id of the running fit / load_weights
        self._writing = ""

    @contextmanager
    def reading(self, what):
        me = threading.get_ident()
        with self._lock:
            if self._writer is not None and self._writer != me:
                raise UsageError(f"{what} called while {self._writing} runs on this model in another "
                                 f"thread: the weights change under it; wait for {self._writing} to "
                                 "finish (join its thread)")
            inside = self._writer == me
            if not inside:
                self._readers += 1
        try:
            yield
        finally:
            if not inside:
                with self._lock:
                    self._readers -= 1

    @contextmanager
    def writing(self, what):
        me = threading.get_ident()
        with self._lock:
            if self._writer == me:
                raise UsageError(f"{what} called from inside {self._writing} on the same model "
                                 "(a progress callback?)")
            if self._writer is not None:
                raise UsageError(f"{what} called while {self._writing} runs on this model in another "
                                 "thread: their updates would interleave; call them one after the "
                                 "other (join the first thread), or use one model per thread")
            if self._readers:
                raise UsageError(f"{what} called while predict(), evaluate() or save() run on this "
                                 "model in another thread: they would read weights that change under "
                                 "them; wait for them to finish")
            self._writer, self._writing = me, what
        try:
            yield
        finally:
            with self._lock:
                self._writer, self._writing = None, ""


def _issue(found):
    """The checker's warnings as Python warnings (``dlrun.ModelWarning``), one each, pointing
    at the caller of ``load``/``loads``."""
    import warnings

    from dlrun.errors import ModelWarning

    for d in found:
        warnings.warn(d.format().split("\n")[0], ModelWarning, stacklevel=3)


def check_override(name, value, label=None) -> None:
    """``lr`` (a positive finite number) or ``seed`` (an integer >= 0) given instead of the
    file's; None keeps the file's. UsageError quoting the value (named ``label``, e.g. the
    command line's ``--lr``) otherwise: a bad rate used to fail only at the first optimizer
    step, a negative seed inside NumPy. The one rule for the API and the command line."""
    import numbers

    if value is None:
        return
    label = label or name
    if name == "seed":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
            raise UsageError(f"{label} must be an integer >= 0, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < float("inf"):
        raise UsageError(f"{label} must be a positive number, got {value!r}")


def model_inputs(model_path, model_ir, base_dir):
    """``(role, path)`` of every file a model reads: its model file (None for a model made
    from a string) and the files of its data block, resolved as training resolves them."""
    from dlrun.dsl import ir
    from dlrun.runtime.data import resolve_path

    found = [("the model file", model_path)]
    data = model_ir.data
    for role in ("train", "validation", "test"):
        src = getattr(data, role, None) if data is not None else None
        if isinstance(src, ir.Source):
            what = "training" if role == "train" else role
            found.append((f"the {what} data", str(resolve_path(src.path, base_dir))))
            if src.labels:
                found.append((f"the {what} labels", str(resolve_path(src.labels, base_dir))))
    return found


class Model:
    """A built network with its training settings, data and preprocessing.

    Usually made by ``dlrun.load`` / ``dlrun.loads``. Attributes: ``ir`` (the checked model),
    ``network`` (the runtime network), ``class_names`` (when the labels had names),
    ``feature_names`` (the training CSV's feature columns: CSV inputs are matched by these
    names), ``history`` (of the last ``fit``), ``warnings`` (the checker's warnings about the model
    file, ``dsl.diagnostics.Diagnostic`` objects; ``load``/``loads`` also issue each as a
    ``dlrun.ModelWarning``).
    """

    def __init__(self, model_ir, base_dir=".", path=None, *, dtype=None, seed=None, lr=None, warnings=()):
        from dlrun.dsl.layers import awaiting, settle
        from dlrun.runtime.data import Preprocessor
        from dlrun.runtime.network import Network, rng_for

        check_override("lr", lr)
        check_override("seed", seed)
        self.ir = model_ir
        self.path = path
        self.warnings = list(warnings)
        self.base_dir = os.fspath(base_dir)
        # the network; while a layer takes a size from the data (an embedding's vocabulary),
        # None until fit() or load_weights() settles it, with an outline (the same network
        # over stand-in sizes) answering shapes, dtype and seed meanwhile
        self._net_args = {"dtype": dtype, "seed": seed}
        self._awaiting = awaiting(model_ir)
        self._net = None if self._awaiting else Network(model_ir, **self._net_args)
        self._outline = self._net or Network(settle(model_ir, _STAND_IN_VOCAB), **self._net_args)
        self._lr = lr
        self.optimizer = None
        steps = model_ir.data.preprocess if model_ir.data is not None else ()
        from dlrun.runtime.data.load import band_groups

        bands = band_groups(model_ir.data, model_ir.input_shape) if model_ir.data is not None else None
        self.preprocessor = Preprocessor(steps, bands=bands,
                                         target=model_ir.data.target if model_ir.data is not None else None)
        self.class_names = None
        self.history = None
        self._splits = None
        self._data_record = None  # data.DataRecord of the data trained on (or of the loaded weights)
        self._shuffle_rng = rng_for(self._outline.seed, "shuffle")
        self._local = threading.local()  # per-thread inference networks (see predict)
        self._guard = _Guard()            # fit runs alone (see _Guard)

    def __getstate__(self):
        """For pickle (joblib's workers, scikit-learn's fitted estimators): all but the
        per-thread inference networks and the guard's lock, which are made anew on loading."""
        state = dict(self.__dict__)
        del state["_local"], state["_guard"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()
        self._guard = _Guard()

    # -- the network ---------------------------------------------------------------------
    @property
    def network(self):
        """The runtime network (``runtime.network.Network``). A model whose layers take a
        size from the data (an ``embedding`` without ``vocab=``) has it once ``fit`` or
        ``load_weights`` has read that size; before, UsageError."""
        if self._net is None:
            index, what = self._awaiting[0]
            layer = self.ir.layers[index]
            raise UsageError(f"{self._where(layer)}{self.name}: '{layer.kind}' takes {what} from the data, "
                             "so the network exists once fit() or load_weights() has read it")
        return self._net

    def _where(self, layer) -> str:
        return f"{self.path}:{layer.pos.line}: " if self.path and layer.pos.line else ""

    def _network_for(self, vocab_size, error=None):
        """The network for data of ``vocab_size`` token ids (None: no token ids): this
        model's own, checked against the data's vocabulary, or, while its layers await the
        data, a new one over the sizes the data settle (not yet this model's: see
        ``_use_network``). ``error``: the exception class of a disagreement (DataError)."""
        from dlrun.dsl.layers import DataMismatch, settle
        from dlrun.errors import DataError
        from dlrun.runtime.network import Network

        try:
            model = settle(self.ir if self._awaiting else self._net.model, vocab_size)
        except DataMismatch as e:
            raise (error or DataError)(f"{self._where(self.ir.layers[e.index])}{e}") from None
        if self._net is not None and model == self._net.model:
            return self._net
        return Network(model, **self._net_args)

    def _use_network(self, net) -> None:
        """Make ``net`` (from ``_network_for``) this model's network; a new one (weights
        trained on another vocabulary) comes with a new optimizer at the next fit."""
        if net is not self._net:
            self._net = self._outline = net
            self.optimizer = None

    # -- description ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.ir.name

    @property
    def input_shape(self) -> tuple:
        return tuple(self._outline.input_shape)

    @property
    def output_shape(self) -> tuple:
        return tuple(self._outline.output_shape)

    @property
    def feature_names(self) -> list | None:
        return None if self._data_record is None else self._data_record.feature_names

    @property
    def tokenizer(self):
        """A text model's tokenizer (``data.tokens.Tokenizer``: settings and vocabulary, from
        ``fit`` or the loaded weights), else None."""
        return None if self._data_record is None else self._data_record.tokenizer

    @property
    def vocab_size(self) -> int | None:
        """A text model's token id count (the reserved 0 = padding and 1 = out of vocabulary
        included), once known from ``fit`` or the loaded weights; else None."""
        return None if self._data_record is None else self._data_record.vocab_size

    @property
    def task(self) -> str:
        """'classification', 'binary' or 'regression' (decided by the loss)."""
        return self._outline.task

    def summary(self) -> str:
        """The table ``dlrun summary`` prints (``dsl/summary.py``): layers, output shapes,
        parameter counts and FLOPs per sample, in the network's dtype.

        >>> import dlrun
        >>> m = dlrun.loads("dlrun 1\\nmodel s {\\n input 4\\n dense 3 relu as hidden\\n"
        ...                 " dense 2 softmax\\n loss cross_entropy\\n optimizer adam\\n}\\n")
        >>> print(m.summary())  # doctest: +NORMALIZE_WHITESPACE
        model s: input 4 -> output 2, loss cross_entropy, optimizer adam, dtype float32
        #  layer    type           output shape  params  FLOPs/sample
        -------------------------------------------------------------
        0  input_0  input          4                  0             0
        1  hidden   dense relu     3                 15            30
        2  dense_2  dense softmax  2                  8            24
        -------------------------------------------------------------
        total parameters: 23 trainable
        parameter memory: 92 B (float32)
        FLOPs per sample (forward): 54 (54)
        """
        from dataclasses import replace

        from dlrun.dsl.summary import summarize

        model = self.ir if self._net is None else self._net.model   # with the sizes the data settled
        if model.train.dtype != self._outline.dtype.name:
            model = replace(model, train=replace(model.train, dtype=self._outline.dtype.name))
        return summarize(model).rstrip("\n")

    def __repr__(self):
        return f"<dlrun.Model {self.name!r} input={self.input_shape} output={self.output_shape}>"

    # -- data ----------------------------------------------------------------------------
    def splits(self):
        """The model file's data (loaded, checked and split once, then cached).

        The held-out fractions are drawn from the file's ``train seed=`` (a ``seed`` given to
        the model moves initialisation, shuffling and dropout only); with loaded weights,
        the split saved in them is used and the data are checked against its fingerprints.
        """
        if self._splits is None:
            from dlrun.runtime.data import load_splits

            self._splits = load_splits(
                self.ir.data, base_dir=self.base_dir, input_shape=self.input_shape,
                n_outputs=self._outline.output_features, task=self.task, seed=self.ir.train.seed,
                saved=self._data_record, dtype=self._outline.dtype,
            )
        sp = self._splits
        self._use_network(self._network_for(sp.vocab_size))
        if self.class_names is not None and sp.class_names is not None and sp.class_names != self.class_names:
            from dlrun.errors import DataError

            raise DataError(
                f"the data's classes ({', '.join(sp.class_names)}) differ from those the weights were "
                f"trained on ({', '.join(self.class_names)})")
        return sp

    def _dataset(self, x, y, source, class_names=None):
        from dlrun.runtime.data import class_names_of, make_dataset

        names = class_names if class_names is not None else self.class_names
        if names is None and y is not None and self.task != "regression":
            names = class_names_of(np.asarray(y))
        ds = make_dataset(x, y, input_shape=self.input_shape, n_outputs=self._outline.output_features,
                          task=self.task, class_names=names, source=source, layout=self._layout)
        return ds, names

    def _check_range(self, x, source="x"):
        """``x`` (checked arrays) against the model's dtype after preprocessing (data.check_model_range)."""
        from dlrun.runtime.data import check_model_range

        check_model_range(x, self.preprocessor, self._outline.dtype, source, lambda i, j: f"x[{i}], feature {j}")
        return x

    @property
    def _layout(self):
        """The data block's ``layout`` (how image arrays are ordered), or None."""
        return self.ir.data.layout if self.ir.data is not None else None

    def _hold_out(self, train, seed):
        """``(train, validation)`` of arrays given to ``fit``: the file's ``validation F``
        fraction held out as the file's own data would be (``data.split.draw_split``), or
        ``(train, None)`` without one. Copies: the caller's arrays are left as they are."""
        from dlrun.errors import DataError
        from dlrun.runtime.data import Dataset
        from dlrun.runtime.data.split import draw_split

        data = self.ir.data
        fraction = data.validation if data is not None and isinstance(data.validation, float) else None
        if not fraction:
            return train, None
        pos = draw_split(train, {"validation": fraction}, self.task,
                         int(self.ir.train.seed if seed is None else seed))
        keep, held = pos["train"], pos["validation"]
        if held.shape[0] == 0 or keep.shape[0] == 0:
            raise DataError(f"x: the data block's validation {fraction:g} of {len(train)} samples leaves "
                            f"{'no validation' if held.shape[0] == 0 else 'no training'} samples; pass "
                            "validation_data=(xv, yv) or more samples")
        return (Dataset(train.x[keep], train.y[keep], "x"),
                Dataset(train.x[held], train.y[held], "x (validation split)"))

    def _text_column(self):
        return self.ir.data.text if self.ir.data is not None else None

    def _inputs(self, x, source="x"):
        """Check inputs for prediction: (n, *input_shape), (n, features), or another shape
        the data rules read into the input (``data.checks.input_reading``); for a text
        model also a list of strings, tokenized with its vocabulary."""
        from dlrun.runtime.data.tokens import as_texts

        path = isinstance(x, (str, os.PathLike))
        texts = None if path else as_texts(x)
        if (path or texts is not None) and self.tokenizer is None and self._text_column() is not None:
            raise UsageError(f"{self.name} reads texts: its vocabulary comes from fit() or load_weights(); "
                             f"call one of them first")
        if texts is not None and self.tokenizer is not None:
            return self.tokenizer.encode(texts, self._outline.dtype, source=source)
        audio = self.ir.data.audio if self.ir.data is not None else None
        if audio is not None and isinstance(x, (list, tuple)) and x \
                and all(isinstance(c, np.ndarray) and c.ndim == 1 for c in x):
            # a list of clips (1-D waveforms at the data block's rate): features as for WAV files
            from dlrun.runtime.data.audio import waveforms_to_input

            return self._check_range(waveforms_to_input(x, audio, self.input_shape, source), source)
        if isinstance(x, (str, os.PathLike)):
            from dlrun.runtime.data import load_inputs

            label = self.ir.data.label if self.ir.data is not None else None
            record = self._data_record
            # a path given to the API is relative to the working folder, like open()
            return load_inputs(os.path.abspath(os.fspath(x)), input_shape=self.input_shape, label=label,
                               feature_names=self.feature_names,
                               against=record.origin if record is not None else "",
                               pre=self.preprocessor, dtype=self._outline.dtype, layout=self._layout,
                               resize=self.ir.data.resize if self.ir.data is not None else None,
                               tokenizer=self.tokenizer, text=self._text_column(),
                               audio=self.ir.data.audio if self.ir.data is not None else None)
        if isinstance(x, np.ndarray) and x.dtype.kind in "uif" and x.ndim >= 2 and x.shape[0] > 0:
            # fast path for well-formed arrays (what a serving loop passes); anything else,
            # including non-finite values, takes the checking path for its error message
            shape = x.shape[1:]
            as_is = shape == self.input_shape and _reads_as_is(shape, self.input_shape, self._layout)
            if (as_is or (x.ndim == 2 and shape[0] == self._outline.input_features)) \
                    and (x.dtype.kind != "f" or np.isfinite(x).all()):
                return self._check_range(x, source)
        ds, _ = self._dataset(x, None, source)
        return self._check_range(ds.x, source)

    # -- training ------------------------------------------------------------------------
    def fit(self, x=None, y=None, *, validation_data=None, epochs=None, batch_size=None, progress=None,
            checkpoint=None, resume=False, seed=None) -> History:
        """Train; returns a ``History``.

        Without arguments, trains on the model file's own data (train/validation splits)
        with its settings. With arrays, ``x`` (n, *input_shape) and ``y`` (class indices or
        names, 0/1 for binary, (n, outputs) for regression); ``validation_data=(xv, yv)``, or
        else, when the file's data block says ``validation F``, that fraction of ``x, y`` is
        held out (stratified by class for a classifier; drawn from ``seed``, default the file's
        ``train seed=``), so early stopping and ``val_`` metrics work as with the file's data.
        ``epochs``/``batch_size`` override the file's values. Calling ``fit`` again
        continues training from the current weights and optimizer state. ``progress``:
        True prints a line (or a bar, on a terminal) per epoch to stderr; or an object
        with ``start_epoch``/``batch``/``end_epoch`` methods (see ``train.ConsoleProgress``).
        ``checkpoint``: a folder to write a checkpoint into after every epoch (or a
        ``dlrun.runtime.checkpoint.Checkpointer``); ``resume=True`` continues from the newest
        intact checkpoint there, ending with the weights an uninterrupted run would have. The
        folder is locked while ``fit`` runs: another run using it (another process, or another
        ``fit`` here) is refused with ``UsageError`` naming the run that holds it.

        One ``fit`` at a time per model: calling ``fit`` (or ``predict``/``evaluate``/
        ``save``/``load_weights``) from another thread while one runs raises ``UsageError``.
        """
        from dlrun.runtime.parallel import world

        comm = world()  # under mpiexec: data-parallel over its processes (runtime/parallel.py)
        with self._guard.writing("fit()"):
            comm.begin()
            try:
                return self._fit(x, y, validation_data=validation_data, epochs=epochs, batch_size=batch_size,
                                 progress=progress, checkpoint=checkpoint, resume=resume, seed=seed)
            except BaseException as err:
                comm.fail(err)  # one process: raises err; MPI: reported once, or every rank ends
                raise

    def _fit(self, x, y, *, validation_data, epochs, batch_size, progress, checkpoint, resume, seed=None) -> History:
        from dlrun.runtime.optimizers import Optimizer

        if (x is None) != (y is None):
            raise UsageError("fit() takes both x and y, or neither (to use the model file's data)")
        validation = None
        if x is None:
            if validation_data is not None:
                raise UsageError("validation_data needs x and y (the model file's data brings its own)")
            sp = self.splits()
            train, validation = sp.train, sp.validation
            if not self.preprocessor.fitted or self.preprocessor.needs_fit:
                self.preprocessor = sp.preprocessor
            self.class_names = sp.class_names
            self._data_record = sp.record
        else:
            # arrays bring no vocabulary: a layer awaiting one is an error (the tokens the
            # model was loaded with, if any, still hold)
            self._use_network(self._network_for(self.vocab_size))
            train, names = self._dataset(x, y, "x")
            if validation_data is not None:
                try:
                    xv, yv = validation_data
                except (TypeError, ValueError):
                    raise UsageError("validation_data must be a pair (x, y)") from None
                validation, _ = self._dataset(xv, yv, "validation_data", names)
            else:
                train, validation = self._hold_out(train, seed)
            self.class_names = names
            if self._data_record is not None:
                # arrays bring no split and no column names: keep only the names known so far
                from dlrun.runtime.data import DataRecord

                self._data_record = DataRecord(self.feature_names, origin=self._data_record.origin,
                                               tokenizer=self._data_record.tokenizer)
            if not self.preprocessor.fitted:
                self.preprocessor.fit(train.x)
            self._check_range(train.x)
            if validation is not None:
                self._check_range(validation.x, "validation_data")
        # 'target standardize': from the training targets, once (a loaded model keeps its own)
        self.preprocessor.fit_targets(train.y)
        own_progress = progress is True
        if own_progress:
            from dlrun.runtime.train import ConsoleProgress

            progress = ConsoleProgress()
        elif progress is False:
            progress = None
        if self.optimizer is None:
            self.optimizer = Optimizer(self.ir.optimizer, self.network.store, lr=self._lr)
        t = self.ir.train
        if isinstance(checkpoint, (str, os.PathLike)):
            import warnings

            from dlrun.runtime.checkpoint import open_checkpointer
            from dlrun.runtime.parallel import world

            checkpoint = open_checkpointer(checkpoint, self, writer=world().lead, resume=resume,
                                           batch_size=batch_size, lr=self._lr,
                                           epochs=epochs,
                                           class_names=self.class_names, quiet=True, data=self._data_record,
                                           report=lambda m: warnings.warn(m, stacklevel=3))
        elif resume and checkpoint is None:
            raise UsageError("fit(resume=True) needs checkpoint=FOLDER")
        try:
            trainer = Trainer(
                self.network, self.optimizer, train, self.preprocessor, validation=validation,
                epochs=t.epochs if epochs is None else epochs,
                batch_size=t.batch_size if batch_size is None else batch_size,
                shuffle=t.shuffle, early_stopping=self.ir.early_stopping, progress=progress,
                checkpoint=checkpoint,
            )
            trainer.shuffle_rng = self._shuffle_rng
            self.history = trainer.run()
        except BaseException:
            if own_progress:
                progress.close()  # a bar cut short ends where it stood, not redrawn after the error
            if checkpoint is not None:
                # the last good checkpoint lands before the error; the folder's lock is released
                checkpoint.close(quiet=True)
            raise
        if checkpoint is not None:
            checkpoint.close()
        return self.history

    # -- inference -----------------------------------------------------------------------
    def _require_fitted(self):
        if not self.preprocessor.fitted:
            raise UsageError(
                "the model's preprocessing statistics are not fitted: call fit() or load_weights() first")

    def evaluate(self, x=None, y=None, *, split="test", batch_size=256, report=False) -> dict:
        """Loss and metrics in inference mode: ``{"loss", "accuracy"}`` for classifiers (and
        the file's ``metrics=``: ``f1``, ``precision``, ``recall``, ``mse``, ``mae``),
        ``{"loss", "mse", "mae", "r2"}`` for regression. ``report=True`` adds, for a
        classifier, ``"report"``: ``{"classes", "confusion" (rows: true class, columns:
        predicted), "per_class": {class: {precision, recall, f1, support}}}``.

        Without arrays, evaluates the model file's ``split`` ('test', 'validation' or 'train').
        Safe to call from several threads at once (each runs its own copy of the buffers).
        """
        with self._guard.reading("evaluate()"):
            return self._evaluate(x, y, split, batch_size, report)

    def _evaluate(self, x, y, split, batch_size, report=False) -> dict:
        if (x is None) != (y is None):
            raise UsageError("evaluate() takes both x and y, or neither (to use the model file's data)")
        if x is None:
            if split not in ("train", "validation", "test"):
                raise UsageError(f"split must be 'train', 'validation' or 'test', got {split!r}")
            sp = self.splits()
            ds = getattr(sp, split)
            if ds is None:
                raise UsageError(f"the model file's data has no {split} split")
            if not self.preprocessor.fitted:
                self.preprocessor = sp.preprocessor
        else:
            ds, _ = self._dataset(x, y, "x")
        self._require_fitted()
        if x is not None:
            self._check_range(ds.x)
        # the calling thread's copy of the buffers: the network's own are fit()'s
        result = _evaluate(self._inference_network(), ds, self.preprocessor, batch_size, confusion=report)
        if "confusion" in result:
            from dlrun.runtime.metrics import class_report

            confusion = result.pop("confusion")
            names = self.class_names or [str(i) for i in range(confusion.shape[0])]
            result["report"] = class_report(confusion, names)
        return result

    def predict(self, x, batch_size=256) -> np.ndarray:
        """Class probabilities (n, classes) -- for binary models P(class 1) (n, 1) -- or
        regression outputs (n, outputs), in the model's dtype. ``x``: (n, *input_shape)
        or (n, features), or the path of an input file; a model that reads sound also takes
        a list of 1-D waveforms at its data block's rate (cut or padded, then its features).

        Safe to call from several threads at once: each thread runs its own copy of the
        network's buffers over the shared parameters (the kernels release the GIL)."""
        with self._guard.reading("predict()"):
            return self._predict(x, batch_size)

    def _predict(self, x, batch_size) -> np.ndarray:
        self._require_fitted()
        xs = self._inputs(x)
        net = self._inference_network()
        n = xs.shape[0]
        out = np.empty((n, net.output_features), net.dtype)
        if n == 0:
            return out
        bs = max(1, min(int(batch_size), n))
        x2 = xs.reshape(n, -1)
        chain = net.inference_chain()
        if chain is not None and x2.dtype in _CHAIN_INPUTS:
            # the fast path: preprocessing and every layer in one kernel call per batch
            if not x2.flags.c_contiguous:
                x2 = np.ascontiguousarray(x2)
            a, b = self.preprocessor.affine
            if n <= bs:
                return self._in_target_units(chain.run(x2, a, b, out))
            for start in range(0, n, bs):
                stop = min(start + bs, n)
                chain.run(x2[start:stop], a, b, out[start:stop])
            return self._in_target_units(out)
        buf = np.empty((bs, x2.shape[1]), net.dtype)
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            xin = buf[: stop - start]
            self.preprocessor.apply(x2[start:stop], xin)
            out[start:stop] = net.predict(xin)
        return self._in_target_units(out)

    def _in_target_units(self, out):
        """The network's outputs in the targets' units: ``target standardize`` trained the
        network on standardized targets, so its outputs are mapped back (in place)."""
        target = self.preprocessor.target
        return out if target is None else target.restore(out)

    def _inference_network(self):
        local = self._local
        net = getattr(local, "net", None)
        if net is None or local.source is not self.network:
            net = local.net = self.network.inference_copy()
            local.source = self.network
        return net

    def predict_classes(self, x, batch_size=256) -> np.ndarray:
        """Predicted labels: class names when the training labels had names, else class
        indices (int64). Binary models predict 1 when P(class 1) >= 0.5."""
        if self.task == "regression":
            raise UsageError(f"predict_classes() needs a classifier; {self.name} is a regression model "
                             f"(loss {self.ir.loss.name}): use predict()")
        from dlrun.runtime.losses import class_indices

        idx = class_indices(self.predict(x, batch_size), self.task)
        if self.class_names is not None:
            return np.asarray(self.class_names)[idx]
        return idx

    # -- weights -------------------------------------------------------------------------
    def save(self, path, *, force=False) -> str:
        """Write the weights, batch-norm statistics, preprocessing (steps and statistics), class
        names, feature names and the validation/test split with a fingerprint of the data
        to ``path`` (.npz, atomically). Returns the absolute path.

        As ``dlrun train --out``: ``dlrun.UsageError`` when ``path`` is the model file or one
        of its data files, or an existing file that is not a dlrun weights file (unless
        ``force=True``; an input of the model is refused even then).

        Under ``mpiexec`` every rank calls ``save``: rank 0 alone checks and writes the file,
        the others wait until it is written and return its path (or raise rank 0's error)."""
        from dlrun.runtime.parallel import world

        return world().on_lead(lambda: self._write(path, force))

    def _write(self, path, force) -> str:
        """``save`` on this process alone (``dlrun train``'s rank 0, the others gone)."""
        from dlrun.runtime.fileio import refuse_inputs
        from dlrun.runtime.weights import check_replaceable, save_weights

        refuse_inputs(os.fspath(path), "save()", model_inputs(self.path, self.ir, self.base_dir), "path")
        check_replaceable(os.fspath(path), "save()", force, force_hint="pass force=True")
        with self._guard.reading("save()"):
            return save_weights(path, self.network, self.preprocessor, self.class_names, self._data_record)

    def load_weights(self, path) -> "Model":
        """Load a file written by ``save``; ``dlrun.WeightsError`` if it is damaged, belongs to
        a different architecture (the first differing layer is named) or to other
        preprocessing (the model file's data block must have the steps, order and scale
        factors the weights were trained with; the first difference is named)."""
        with self._guard.writing("load_weights()"):
            return self._load_weights(path)

    def _load_weights(self, path) -> "Model":
        from dlrun.errors import WeightsError
        from dlrun.runtime.data import Preprocessor, preprocess_difference
        from dlrun.runtime.weights import apply_weights, check_weights, read_data_record, read_meta, read_npz

        path = os.fspath(path)
        arrays = read_npz(path)
        net = self._net
        if self._awaiting:   # the layers awaiting the data take its sizes from those trained on
            read_meta(arrays, path)
            record = read_data_record(arrays, path)
            net = self._network_for(None if record is None else record.vocab_size, error=WeightsError)
        loaded = check_weights(arrays, path, net)
        steps = self.ir.data.preprocess if self.ir.data is not None else ()
        if loaded.preprocess_spec is not None:
            diff = preprocess_difference(loaded.preprocess_spec, steps)
            if diff:
                where = f"{self.path}: " if self.path else ""
                raise WeightsError(
                    f"{where}the data block's preprocessing differs from the one {path} was trained with: "
                    f"{diff} (weights only fit their own preprocessing: restore it, or train again)")
        self._check_tokenizer(loaded.data.tokenizer if loaded.data is not None else None, path)
        where = f"{self.path}: " if self.path else ""
        try:
            pre = Preprocessor.from_state(steps, loaded.preprocess,
                                          target=self.ir.data.target if self.ir.data is not None else None,
                                          outputs=self._outline.output_features)
        except WeightsError as err:
            raise WeightsError(f"{where}{path}: {err}") from None
        if self.task != "regression" and loaded.class_names is not None:
            if len(loaded.class_names) != (self._outline.output_features if self.task == "classification" else 2):
                from dlrun.errors import WeightsError

                raise WeightsError(f"{path}: {len(loaded.class_names)} class names do not fit the model's outputs")
        apply_weights(loaded, net)
        self._use_network(net)
        self.preprocessor = pre
        self.class_names = loaded.class_names
        self._data_record = loaded.data
        self._splits = None  # read again: the weights' split and column names apply
        return self


    def _check_tokenizer(self, saved, path) -> None:
        """The data block's text column and ``tokens`` against the tokenizer saved in the
        weights ``path`` (None: trained on numbers); WeightsError naming the first difference."""
        from dlrun.errors import WeightsError
        from dlrun.runtime.data.tokens import tokenizer_difference

        where = f"{self.path}: " if self.path else ""
        text = self._text_column()
        if saved is None and text is not None:
            raise WeightsError(f"{where}the data block reads the text column '{text}', but {path} was trained "
                               f"on numbers (it holds no vocabulary); train the text model again")
        if saved is None:
            return
        if text is None:
            raise WeightsError(f"{where}{path} was trained on texts ({saved.describe()}), but the model "
                               f"file's data block names no text column: add 'text COLUMN' and "
                               f"'{saved.describe()}'")
        diff = tokenizer_difference(saved, self.ir.data.tokens, self.input_shape)
        if diff:
            raise WeightsError(f"{where}the data block's tokens differ from those {path} was trained with: "
                               f"{diff} (the weights only fit their own tokenizer: write "
                               f"'{saved.describe()}', or train again)")


def _reads_as_is(shape, input_shape, layout) -> bool:
    """Whether samples of ``shape`` are the input as they are (a refusal is left to the
    checking path, which words it)."""
    from dlrun.errors import DataError
    from dlrun.runtime.data.checks import input_reading

    try:
        return input_reading(shape, input_shape, layout, "x") == "as is"
    except DataError:
        return False
