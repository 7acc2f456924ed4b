"""``dlrun train|eval|predict|gradcheck``.

Importing this module stays light (argparse only): ``dlrun check`` builds the same
argument parser, and must not pay for numpy, scipy or the kernels. Everything heavy is
imported inside ``run``.

Progress and messages go to stderr; ``--json`` prints one JSON object on stdout at the
end. Exit codes: 0 success, 1 failure during a run (``TrainingError``, gradcheck
failure), 2 bad input (raised as ``DlrunError`` and printed without a traceback by
``cli.main``).
"""
from __future__ import annotations

import os
import sys


THREADS_HELP = ("BLAS threads: a number >= 1, or 'auto' (the default): the cores not kept busy by other "
                "processes, one thread when a step is small (docs/architecture.md, Threads)")


def add_arguments(name, parser):
    parser.add_argument("model", help="the .net model file")
    if name in ("train", "eval", "predict", "time"):
        parser.add_argument("--threads", default="auto", metavar="N|auto", help=THREADS_HELP)
    if name == "train":
        parser.add_argument("--epochs", type=int, metavar="N", help="override the file's epochs")
        parser.add_argument("--batch-size", type=int, metavar="N", help="override the file's batch size")
        parser.add_argument("--lr", type=float, metavar="X", help="override the optimizer's learning rate")
        parser.add_argument("--seed", type=int, metavar="N", help="override the file's seed")
        parser.add_argument("--data-root", metavar="DIR", help="resolve data paths against DIR instead of the model's folder")
        parser.add_argument("--out", metavar="W.npz", help="weights file to write (default: NAME.weights.npz next to the model)")
        parser.add_argument("--checkpoint-dir", metavar="DIR",
                            help="folder of the checkpoints written after every epoch and on SIGINT/SIGTERM "
                                 "(default: NAME.ckpt next to the weights file)")
        parser.add_argument("--resume", action="store_true",
                            help="continue from the newest intact checkpoint in the checkpoint folder")
        parser.add_argument("--no-checkpoint", action="store_true", help="write no checkpoints")
        parser.add_argument("--force", action="store_true",
                            help="let --out replace an existing file that is not a dlrun weights file")
        parser.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
        parser.add_argument("--plot", metavar="FILE.png",
                            help="write the loss and metric curves per epoch (training vs validation, the best "
                                 "epoch marked) to FILE (.png, .pdf or .svg; needs pip install 'dlrun[plot]')")
        parser.add_argument("--log-dir", metavar="DIR",
                            help="write every epoch's loss, metrics and rate as TensorBoard scalars into DIR "
                                 "(tensorboard --logdir DIR; needs pip install 'dlrun[tensorboard]')")
        parser.add_argument("--quiet", action="store_true",
                            help="no progress output: only the test result (when the data has a test split)")
    elif name == "eval":
        parser.add_argument("--weights", required=True, metavar="W.npz", help="weights file written by train")
        parser.add_argument("--data-root", metavar="DIR", help="resolve data paths against DIR instead of the model's folder")
        parser.add_argument("--split", choices=("train", "validation", "test"), action="append",
                            help="split(s) to evaluate (default: every split the data has)")
        parser.add_argument("--json", action="store_true", help="print the metrics as JSON on stdout")
    elif name == "predict":
        parser.add_argument("--weights", required=True, metavar="W.npz", help="weights file written by train")
        parser.add_argument("--input", required=True, metavar="FILE", help="inputs: .npz, .npy, .csv, IDX images, an image file or a folder of images")
        parser.add_argument("--output", metavar="FILE", help="write to FILE (.csv or .npy) instead of stdout (CSV)")
        parser.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
        parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="rows per forward pass (default 256)")
    elif name == "export":
        parser.add_argument("--weights", required=True, metavar="W.npz", help="weights file written by train")
        parser.add_argument("--output", required=True, metavar="FILE.onnx", help="the ONNX model to write")
        parser.add_argument("--force", action="store_true", help="replace an existing file at --output")
    elif name == "time":
        parser.add_argument("--batch-size", type=int, metavar="N", help="samples per step (default: the file's batch)")
        parser.add_argument("--rounds", type=int, default=20, metavar="N", help="timed steps (default 20; median shown)")
        parser.add_argument("--warmup", type=int, default=3, metavar="N", help="untimed steps first (default 3)")
        parser.add_argument("--json", action="store_true", help="print the timings as JSON on stdout")
    elif name == "gradcheck":
        parser.add_argument("--batch-size", type=int, default=4, metavar="N", help="random samples (default 4)")
        parser.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random batch and weights")
        parser.add_argument("--entries", type=int, default=24, metavar="N",
                            help="entries compared one by one per tensor, chosen at random (default 24; 0 = every entry)")
        parser.add_argument("--directions", type=int, default=3, metavar="N",
                            help="random directions over each whole tensor also compared (default 3)")
        parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")


def run(name, args) -> int:
    command = {"train": _train, "eval": _eval, "predict": _predict, "gradcheck": _gradcheck, "time": _time,
               "export": _export}[name]
    if getattr(args, "threads", None) is not None:  # refused before anything is read
        from dlrun.runtime.threads import parse

        args.threads = parse(args.threads)
    try:
        return command(args)
    except MemoryError as err:
        from dlrun.errors import TrainingError

        detail = f" ({err})" if str(err) else ""
        raise TrainingError(f"dlrun {name}: out of memory{detail}") from None


# -- helpers ------------------------------------------------------------------------------
def _err(msg):
    print(msg, file=sys.stderr)


class _warnings_on_stderr:
    """Python warnings raised inside (e.g. CSV columns matched by name in another order)
    become one ``warning: ...`` line each on stderr."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("always")
        warnings.showwarning = lambda m, *a, **k: _err(f"warning: {m}")
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def _positive(value, flag):
    from dlrun.errors import UsageError

    if value is not None and value < 1:
        raise UsageError(f"{flag} must be >= 1, got {value}")


def _blas_threads(args, model_ir, rows, training):
    """The BLAS thread count of this command's run (``--threads``; runtime/threads.py)."""
    from dlrun.runtime.cli import COMMANDS
    from dlrun.runtime.threads import blas_threads, step_flops

    # under mpiexec the ranks share the cores only where they all run the command (train)
    shared = COMMANDS.get(getattr(args, "command", None) or "train", (None, None, "parallel"))[2] == "parallel"
    return blas_threads(args.threads, work=step_flops(model_ir, rows, training), shared=shared)


def _load_ir(path):
    from dlrun import dsl
    from dlrun.errors import UsageError

    if not os.path.exists(path):
        raise UsageError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory, expected a .net model file")
    if not os.path.isfile(path):  # a device or a pipe could be read forever
        raise UsageError(f"{path}: not a regular file, expected a .net model file")
    from dlrun.runtime.cli_dsl import print_warnings

    warnings: list = []
    model_ir = dsl.load_file(path, warnings=warnings)
    print_warnings(warnings)  # once, on stderr, as 'dlrun check' shows them
    return model_ir


def _base_dir(args):
    from dlrun.errors import UsageError

    if getattr(args, "data_root", None):
        if not os.path.isdir(args.data_root):
            raise UsageError(f"--data-root {args.data_root}: no such directory")
        return os.path.abspath(args.data_root)
    return os.path.dirname(os.path.abspath(args.model))


def _fmt_metrics(metrics) -> str:
    from dlrun.runtime.train import format_metrics

    return format_metrics(metrics)


def _default_weights_path(model_path):
    stem = os.path.basename(model_path)
    if stem.endswith(".net"):
        stem = stem[:-4]
    return os.path.join(os.path.dirname(os.path.abspath(model_path)), stem + ".weights.npz")


# -- train --------------------------------------------------------------------------------
def _train(args) -> int:
    import contextlib

    from dlrun.runtime.parallel import world

    # under mpiexec: data-parallel; rank 0 alone prints, locks and writes (runtime/parallel.py)
    lead = world().lead
    created = []  # folders this run made: a run failing before writing into them removes them
    with contextlib.ExitStack() as locks:  # the run's locks on its weights file and checkpoint folder
        if not lead:  # quiet: warnings and progress come from rank 0 (errors still reach stderr)
            locks.enter_context(contextlib.redirect_stderr(locks.enter_context(open(os.devnull, "w"))))
        try:
            return _train_run(args, created, locks, lead)
        except BaseException:
            locks.close()  # removes the lock files, so the folders can be empty
            for folder in created:
                _remove_if_empty(folder)
            raise


def _train_run(args, created, locks, lead=True) -> int:
    import json
    import time
    import warnings

    _positive(args.epochs, "--epochs")
    _positive(args.batch_size, "--batch-size")
    from dlrun.errors import UsageError, WeightsError

    from dlrun.runtime.api import check_override

    check_override("lr", args.lr, "--lr")
    check_override("seed", args.seed, "--seed")
    started = time.perf_counter()
    model_ir = _load_ir(args.model)
    base = _base_dir(args)
    out = args.out or _default_weights_path(args.model)

    from dlrun.runtime.api import Model, model_inputs
    from dlrun.runtime.fileio import refuse_inputs, remove_stale_temps, same_file
    from dlrun.runtime.runlock import RunLock
    from dlrun.runtime.weights import check_replaceable, check_writable

    out = check_writable(out) if lead else os.path.abspath(out)  # before hours of training, not after
    if args.data_root and not args.out and os.path.exists(out):
        # runs of one model file on several data roots would replace each other's results
        _err(f"warning: --data-root {args.data_root}: the weights go next to the model file, to {out}, "
             f"replacing the weights there (perhaps trained on another data root); pass --out (and "
             f"--checkpoint-dir) per data root to keep them apart")
    if args.no_checkpoint and (args.resume or args.checkpoint_dir):
        raise UsageError("--no-checkpoint cannot be combined with --resume or --checkpoint-dir")
    inputs = model_inputs(args.model, model_ir, base)
    refuse_inputs(out, "--out", inputs)
    plot = None
    if args.plot:   # refused before training, not after
        from dlrun.runtime.plot import require_matplotlib

        if os.path.splitext(args.plot)[1].lower() not in (".png", ".pdf", ".svg"):
            raise UsageError(f"--plot {args.plot}: expected a .png, .pdf or .svg file name")
        plot = check_writable(args.plot) if lead else os.path.abspath(args.plot)
        refuse_inputs(plot, "--plot", inputs)
        if same_file(plot, out):
            raise UsageError(f"--plot {args.plot}: is also the weights file (--out)")
        require_matplotlib()
    if args.log_dir:
        from dlrun.runtime.tensorboard import require_writer

        refuse_inputs(os.path.abspath(args.log_dir), "--log-dir", inputs)
        if os.path.exists(args.log_dir) and not os.path.isdir(args.log_dir):
            raise UsageError(f"--log-dir {args.log_dir}: exists and is not a folder")
        require_writer()
    ckdir = None if args.no_checkpoint else os.path.abspath(args.checkpoint_dir or _default_checkpoint_dir(out))
    if ckdir is not None:
        refuse_inputs(ckdir, "--checkpoint-dir", inputs)
        if same_file(out, ckdir):
            raise UsageError(f"--out {out}: is also the checkpoint folder (choose another --out or --checkpoint-dir)")
        from dlrun.runtime.checkpoint import is_checkpoint_name

        if same_file(os.path.dirname(out), ckdir) and is_checkpoint_name(os.path.basename(out)):
            raise UsageError(f"--out {out}: is a checkpoint's name in the checkpoint folder, whose checkpoints "
                             f"the run replaces and prunes (choose another --out)")
    check_replaceable(out, "--out", args.force)
    # the run owns its weights file: a second run writing it is refused, and the temporary
    # files a killed final write left next to it can go
    if lead:
        locks.enter_context(RunLock.for_file(out, hint="choose another --out"))
        remove_stale_temps(os.path.dirname(out), lambda target: target == os.path.basename(out))
    ck_lock = None
    if ckdir is not None and lead:
        from dlrun.runtime.checkpoint import lock_folder

        fresh = not os.path.exists(ckdir)
        if fresh:
            created.append(ckdir)
        ck_lock = locks.enter_context(lock_folder(ckdir, hint="choose another --checkpoint-dir"))
    model = Model(model_ir, base_dir=base, path=args.model, seed=args.seed, lr=args.lr)
    with _warnings_on_stderr():
        splits = model.splits()  # load and check the data before training
    batch = args.batch_size or model_ir.train.batch_size
    threads, threads_why = locks.enter_context(_blas_threads(args, model.ir, batch, True))
    checkpoint = None if ckdir is None else _checkpointer(args, ckdir, model, splits, ck_lock, lead)
    from dlrun.runtime.train import ConsoleProgress

    progress = ConsoleProgress(sys.stderr, args.quiet)
    if args.log_dir and lead:  # rank 0 alone writes the log (the others report no progress)
        from dlrun.runtime.tensorboard import ScalarLog

        progress = ScalarLog(progress, args.log_dir)
    if not args.quiet:
        n_val = len(splits.validation) if splits.validation is not None else 0
        n_test = len(splits.test) if splits.test is not None else 0
        _err(f"{model.name}: {model.network.param_count} parameters, {len(splits.train)} training / "
             f"{n_val} validation / {n_test} test samples; {threads} BLAS thread{'s' if threads > 1 else ''} "
             f"({threads_why})")
    with warnings.catch_warnings(), _stop_signals(checkpoint, progress):
        warnings.simplefilter("always")
        warnings.showwarning = lambda m, *a, **k: progress.message(f"warning: {m}")
        try:
            history = model.fit(epochs=args.epochs, batch_size=args.batch_size, progress=progress,
                                checkpoint=checkpoint)
        finally:
            progress.close()  # a bar cut short ends here, before the error's message
    if not lead:
        return 0  # rank 0 evaluates and writes the results
    if not args.quiet:
        note = " (stopped early)" if history.stopped_early else ""
        best = f"; best epoch {history.best_epoch} by {history.monitor}" if history.best_epoch else ""
        restored = ", weights restored from it" if history.restored_best else ""
        _err(f"trained {history.epochs_run} epochs in {history.seconds:.1f}s{note}{best}{restored}")
    final = {}
    for split in ("train", "validation", "test"):
        ds = getattr(splits, split)
        if ds is not None and len(ds):
            final[split] = model.evaluate(split=split)
    if "test" in final:   # the run's result: shown with --quiet too
        _err(f"test: {_fmt_metrics(final['test'])}")
    try:
        model._write(out, force=args.force)  # rank 0 alone: the other ranks have returned
    except WeightsError as err:  # disk full, folder gone: the checkpoints still hold the run
        if checkpoint is None:
            raise
        raise WeightsError(f"{err}; {checkpoint.resume_hint()} and write the weights") from None
    if not args.quiet:
        _err(f"weights saved to {out}")
    if plot is not None:
        from dlrun.runtime.plot import plot_history

        plot_history(history, plot, title=f"{model.name}: {history.epochs_run} epochs")
        if not args.quiet:
            _err(f"curves saved to {plot}")
    if args.json:
        print(json.dumps({
            "model": model.name,
            "epochs_run": history.epochs_run,
            "best_epoch": history.best_epoch,
            "stopped_early": history.stopped_early,
            "metrics": final,
            "history": history.epochs,   # per epoch: loss, metrics, val_*, lr (with a schedule), seconds
            "seconds": time.perf_counter() - started,
            "train_seconds": history.seconds,
            "weights": out,
            "blas_threads": threads,
            **({"plot": plot} if plot is not None else {}),
        }))
    return 0


def _remove_if_empty(folder):
    try:
        os.rmdir(folder)  # fails (as wanted) unless the folder is empty
    except OSError:
        pass


def _default_checkpoint_dir(weights_path):
    stem = weights_path[:-4] if weights_path.endswith(".npz") else weights_path
    if stem.endswith(".weights"):
        stem = stem[: -len(".weights")]
    return stem + ".ckpt"


def _checkpointer(args, folder, model, splits, lock, lead=True):
    """The checkpointer of this run; with --resume, loaded from the newest intact file (on
    every rank of a data-parallel run; rank 0 alone writes)."""
    from dlrun.runtime.checkpoint import open_checkpointer

    return open_checkpointer(folder, model, resume=args.resume, batch_size=args.batch_size, lr=args.lr,
                             epochs=args.epochs, class_names=splits.class_names, report=_err, quiet=args.quiet,
                             lock=lock, data=splits.record, writer=lead)


class _StopNow(KeyboardInterrupt):
    """Raised by the handler of a second SIGINT/SIGTERM: stop at once."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class _stop_signals:
    """SIGINT/SIGTERM during training ask the trainer to checkpoint at the next batch
    boundary and stop (exit 130/143); a second signal stops at once, with the same exit
    code (that of the second signal) and the last good checkpoint named."""

    def __init__(self, checkpoint, progress):
        self.ck = checkpoint
        self.progress = progress

    def _handler(self, signum, frame):
        if self.ck.stop_signal is not None:
            raise _StopNow(signum)
        self.ck.stop_signal = signum
        self.progress.message("stopping at the next batch boundary after writing a checkpoint "
                              "(signal again to stop at once)")

    def __enter__(self):
        import signal

        import threading

        self.old = {}
        if self.ck is not None and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self.old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, exc_type, exc, tb):
        import signal

        for s, h in self.old.items():
            signal.signal(s, h)
        if isinstance(exc, _StopNow):
            # Model.fit has let the write in flight land (or fail) before this point
            from dlrun.runtime.checkpoint import Interrupted, _SIGNALS

            name = _SIGNALS.get(exc.signum, (f"signal {exc.signum}",))[0]
            raise Interrupted(f"stopped at once by a second {name}: {self.ck.resume_hint()}",
                              exc.signum) from None
        return False


# -- eval ---------------------------------------------------------------------------------
def _eval(args) -> int:
    with _warnings_on_stderr():
        return _eval_run(args)


def _eval_run(args) -> int:
    import json

    model_ir = _load_ir(args.model)
    from dlrun.runtime.api import Model

    model = Model(model_ir, base_dir=_base_dir(args), path=args.model)
    model.load_weights(args.weights)
    splits = model.splits()
    wanted = args.split or ["train", "validation", "test"]
    results = {}
    with _blas_threads(args, model.ir, 256, False) as (threads, _):   # evaluate's batch of 256
        for split in wanted:
            ds = getattr(splits, split)
            if ds is None:
                if args.split:
                    from dlrun.errors import UsageError

                    raise UsageError(f"{args.model}: the data has no {split} split")
                continue
            results[split] = model.evaluate(split=split, report=True)
    reports = {split: m.pop("report") for split, m in results.items() if "report" in m}
    if args.json:
        print(json.dumps({"model": model.name, "weights": os.path.abspath(args.weights), "metrics": results,
                          "blas_threads": threads, **({"reports": reports} if reports else {})}))
    else:
        for split, m in results.items():
            print(f"{split}: {_fmt_metrics(m)}")
            if split in reports:
                print(_report_text(reports[split]))
    return 0


def _report_text(report) -> str:
    """A classifier's confusion matrix (rows: true class, columns: predicted) and its
    per-class precision, recall, F1 and support, as a table indented under its split."""
    names = report["classes"]
    rows = report["confusion"]
    width = max([len(n) for n in names] + [len(str(v)) for row in rows for v in row] + [4])
    head = max(len(n) for n in names + ["true \\ predicted"])
    lines = ["  confusion (rows: true class, columns: predicted):",
             "    " + "true \\ predicted".ljust(head) + "  " + "  ".join(n.rjust(width) for n in names)]
    for name, row in zip(names, rows):
        lines.append("    " + name.ljust(head) + "  " + "  ".join(str(v).rjust(width) for v in row))
    lines.append("    " + "class".ljust(head) + "  precision  recall      f1  support")
    for name in names:
        c = report["per_class"][name]
        lines.append("    " + name.ljust(head) + f"  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:6.4f}"
                     f"  {c['support']:7d}")
    return "\n".join(lines)


# -- predict ------------------------------------------------------------------------------
def _predict(args) -> int:
    with _warnings_on_stderr():
        return _predict_run(args)


def _predict_run(args) -> int:
    import numpy as np

    from dlrun.errors import UsageError

    _positive(args.batch_size, "--batch-size")
    if args.output:
        ext = os.path.splitext(args.output)[1].lower()
        if ext not in (".csv", ".npy"):
            raise UsageError(f"--output {args.output}: unknown format {ext or '(none)'}; expected .csv or .npy")
        from dlrun.runtime.fileio import refuse_inputs
        from dlrun.runtime.weights import check_writable

        check_writable(args.output)
        refuse_inputs(args.output, "--output", [("the model file", args.model), ("the --weights file", args.weights),
                                                ("the --input file", args.input)])
    model_ir = _load_ir(args.model)
    from dlrun.runtime.api import Model

    model = Model(model_ir, base_dir=os.path.dirname(os.path.abspath(args.model)), path=args.model)
    model.load_weights(args.weights)
    from dlrun.runtime.data import input_names, input_texts

    first = "file"
    if model.tokenizer is not None:  # texts: one row each, named by the text (shortened)
        from dlrun.runtime.data.tokens import short

        texts, shown = input_texts(os.path.abspath(args.input), model_ir.data.text if model_ir.data else None)
        x = model.tokenizer.encode(texts, model.network.dtype, source=shown)
        files, first = [short(t) for t in texts.tolist()], "text"
    else:
        audio = model_ir.data.audio if model_ir.data is not None else None
        files = input_names(os.path.abspath(args.input), audio=audio)  # image and WAV files: one named row each
        x = model._inputs(os.path.abspath(args.input))
    if files is not None and len(files) != x.shape[0]:
        from dlrun.errors import DataError

        raise DataError(f"{args.input}: the folder changed while it was read ({len(files)} files listed, "
                        f"{x.shape[0]} read); run predict again")
    task = model.task
    if args.proba and task == "regression":
        raise UsageError(f"--proba needs a classifier; {model.name} is a regression model")
    with _blas_threads(args, model.ir, min(args.batch_size, max(1, x.shape[0])), False):
        p = model.predict(x, batch_size=args.batch_size)
    names = model.class_names
    if task == "regression":
        values = p
        header = ["output"] if p.shape[1] == 1 else [f"output{j}" for j in range(p.shape[1])]
    elif args.proba:
        values = p
        if task == "binary":
            header = [f"p({names[1]})" if names else "p(1)"]
        else:
            header = [str(c) for c in names] if names else [str(j) for j in range(p.shape[1])]
    else:
        from dlrun.runtime.losses import class_indices

        idx = class_indices(p, task)
        values = np.asarray(names)[idx] if names else idx
        header = ["label"]
    if args.output and args.output.lower().endswith(".npy"):
        from dlrun.runtime.weights import write_file

        write_file(args.output, lambda f: np.save(f, np.asarray(values), allow_pickle=False))
        return 0
    lines = [",".join(_csv_cell(h) for h in ([first] if files is not None else []) + header)]
    if values.ndim == 1:
        rows = [_csv_cell(v) for v in values.tolist()]
    else:
        rows = [",".join(f"{v:.9g}" for v in row) for row in values.tolist()]
    if files is not None:
        rows = [f"{_csv_cell(f)},{r}" for f, r in zip(files, rows)]
    lines.extend(rows)
    text = "\n".join(lines) + "\n"
    if args.output:
        from dlrun.runtime.weights import write_file

        write_file(args.output, lambda f: f.write(text.encode()))
    else:
        sys.stdout.write(text)
    return 0


def _csv_cell(v) -> str:
    s = str(v)
    if any(c in s for c in ',"\n'):
        s = '"' + s.replace('"', '""') + '"'
    return s


# -- gradcheck ----------------------------------------------------------------------------
def _export(args) -> int:
    from dlrun.errors import UsageError
    from dlrun.runtime.api import Model, model_inputs
    from dlrun.runtime.export import OPSET, export_onnx, require_onnx
    from dlrun.runtime.fileio import refuse_inputs

    if not args.output.lower().endswith(".onnx"):
        raise UsageError(f"--output {args.output}: expected a file name ending in .onnx")
    require_onnx()
    model_ir = _load_ir(args.model)
    model = Model(model_ir, base_dir=os.path.dirname(os.path.abspath(args.model)), path=args.model)
    out = os.path.abspath(args.output)
    refuse_inputs(out, "--output", model_inputs(args.model, model_ir, model.base_dir) + [("the weights", args.weights)])
    if os.path.exists(out) and not args.force:
        raise UsageError(f"--output {args.output}: exists (pass --force to replace it)")
    model.load_weights(args.weights)
    export_onnx(model, out)
    _err(f"{model.name}: ONNX model (opset {OPSET}) "
         f"written to {out}")
    return 0


def _time(args) -> int:
    import json

    from dlrun.errors import UsageError
    from dlrun.runtime.timing import format_timing, time_model

    model_ir = _load_ir(args.model)
    batch = model_ir.train.batch_size if args.batch_size is None else args.batch_size
    _positive(batch, "--batch-size")
    _positive(args.rounds, "--rounds")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {args.warmup}")
    with _blas_threads(args, model_ir, batch, True) as (threads, why):
        result = time_model(model_ir, batch=batch, rounds=args.rounds, warmup=args.warmup)
    result["blas_threads"], result["blas_threads_why"] = threads, why
    print(json.dumps(result) if args.json else format_timing(result))
    return 0


def _gradcheck(args) -> int:
    import json

    from dlrun.errors import UsageError

    _positive(args.batch_size, "--batch-size")
    if args.entries < 0:
        raise UsageError(f"--entries must be >= 0 (0 = every entry), got {args.entries}")
    if args.directions < 0:
        raise UsageError(f"--directions must be >= 0, got {args.directions}")
    from dlrun.runtime.api import check_override

    check_override("seed", args.seed, "--seed")
    model_ir = _load_ir(args.model)
    from dlrun.runtime.gradcheck import TOLERANCE, check_network, format_table

    results = check_network(model_ir, batch=args.batch_size, seed=args.seed, max_entries=args.entries,
                            directions=args.directions)
    ok = all(r.ok for r in results)
    if args.json:
        print(json.dumps({
            "model": model_ir.name, "ok": ok, "tolerance": TOLERANCE,
            "tensors": [{"layer": r.layer, "tensor": r.name, "shape": list(r.shape), "checked": r.checked,
                         "directions": r.directions, "max_abs_grad": r.max_abs_grad, "rel_error": r.rel_error, "ok": r.ok} for r in results],
        }))
    else:
        print(format_table(results))
        worst = max((r.rel_error for r in results), default=0.0)
        print(f"{model_ir.name}: {'ok' if ok else 'FAILED'}: max relative error {worst:.2e} "
              f"(tolerance {TOLERANCE:.0e}, float64, batch {args.batch_size})")
    return 0 if ok else 1
