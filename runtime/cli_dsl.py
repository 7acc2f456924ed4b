"""``dlrun check | summary | fmt``: the model-language commands.

This module and everything it imports stay free of numpy, scipy and the kernels, so
``dlrun check`` starts quickly (``check --data`` imports numpy to read the data files).

    dlrun check FILE... [--ir]    exit 0 and one line per valid file; exit 2 and diagnostics.
                                  --ir prints one JSON document: the model's IR for one file;
                                  for several, an object keyed by each file as given (null for
                                  a file that failed)
    dlrun check FILE... --data [--data-root DIR]
                                  also open each model's data files (headers, shapes, labels)
                                  and check them against the model; problems are reported at
                                  the data statement's line. Off by default: checking a model
                                  file needs no data, and stays fast and free of numpy
    dlrun summary FILE            layers, output shapes, parameters, FLOPs per sample
    dlrun fmt FILE [--write]      canonical form on stdout, or rewritten in place (atomically)
"""
from __future__ import annotations

import os
import sys


def add_arguments(name, parser):
    if name == "check":
        parser.add_argument("files", nargs="+", metavar="FILE", help="model files (.net)")
        parser.add_argument("--ir", action="store_true", help="print the checked IR as JSON")
        parser.add_argument("--data", action="store_true",
                            help="also check the data files against the model (headers, shapes, labels)")
        parser.add_argument("--data-root", metavar="DIR",
                            help="with --data: resolve data paths against DIR instead of the model's folder")
    elif name == "summary":
        parser.add_argument("file", metavar="FILE", help="model file (.net)")
    elif name == "fmt":
        parser.add_argument("files", nargs="+", metavar="FILE", help="model files (.net)")
        parser.add_argument("--write", "-w", action="store_true",
                            help="rewrite the files in place instead of printing")
        parser.add_argument("--check", action="store_true",
                            help="exit 1 and list the files that are not in canonical form")


def run(name, args) -> int:
    if name == "check":
        return _check(args)
    if name == "summary":
        return _summary(args)
    if name == "fmt":
        return _fmt(args)
    raise ValueError(name)


def print_warnings(warnings):
    """The checker's warnings on stderr, each once (every command that reads a model file)."""
    for w in warnings:
        print(w.format(), file=sys.stderr)


def _check(args) -> int:
    from dlrun.dsl import ir, load_file
    from dlrun.errors import DslError

    if args.data_root and not args.data:
        from dlrun.errors import UsageError

        raise UsageError("dlrun check: --data-root needs --data")
    status = 0
    irs: dict = {}  # --ir: file -> checked model (None when it failed), printed as one JSON document
    for path in args.files:
        warnings: list = []
        irs[path] = None
        try:
            model = load_file(path, warnings=warnings)
        except DslError as err:
            print(str(err), file=sys.stderr)
            n = sum(1 for d in err.diagnostics if d.severity == "error")
            print(f"{path}: {n} error{'s' if n != 1 else ''}", file=sys.stderr)
            status = 2
            continue
        print_warnings(warnings)
        data_note = ""
        if args.data:
            ok, data_note = _check_data(path, model, args)
            if not ok:
                status = 2
                continue
        if args.ir:
            irs[path] = model
        else:
            params = _param_count(model)
            params = f"{params:,} parameters" if params is not None else "parameters sized by the data"
            w = f", {len(warnings)} warning{'s' if len(warnings) != 1 else ''}" if warnings else ""
            print(f"{path}: ok: model {model.name}, {len(model.layers)} layers, "
                  f"{'x'.join(map(str, model.input_shape))} -> {'x'.join(map(str, model.output_shape))}, "
                  f"{params}, loss {model.loss.name}, optimizer {model.optimizer.name}{w}"
                  f"{data_note}")
    if args.ir:
        import json

        if len(args.files) == 1:
            if irs[args.files[0]] is not None:
                print(ir.to_json(irs[args.files[0]]))
        else:
            print(json.dumps({p: None if m is None else ir.to_dict(m) for p, m in irs.items()}, indent=2))
    return status


def _check_data(path, model, args) -> tuple[bool, str]:
    """``check --data`` of one checked model: (ok, text for the ok line); problems on stderr."""
    from types import SimpleNamespace

    from dlrun.dsl import read_source
    from dlrun.dsl.diagnostics import Reporter
    from dlrun.dsl.parser import check_text
    from dlrun.errors import DlrunError
    from dlrun.runtime.cli_train import _base_dir, _warnings_on_stderr
    from dlrun.runtime.data.check import check_data

    if model.data is None or model.data.train is None:
        return True, "; data: none named"
    with _warnings_on_stderr():  # e.g. a test CSV's columns in another order (matched by name)
        problems, samples = check_data(model, _base_dir(SimpleNamespace(model=path, data_root=args.data_root)))
    if problems:
        try:
            text = check_text(read_source(path), path)[0]
        except DlrunError:  # the file changed since it was checked: no source line shown
            text = None
        reporter = Reporter(text, path)
        for pos, message in problems:
            reporter.error(pos, message)
        for d in reporter.errors:
            print(d.format(), file=sys.stderr)
        n = len(problems)
        print(f"{path}: {n} data error{'s' if n != 1 else ''}", file=sys.stderr)
        return False, ""
    data = model.data
    parts = [f"{role} {samples[role]:,} samples" if role in samples else f"{role} {getattr(data, role):g} of train"
             for role in ("train", "validation", "test") if getattr(data, role) is not None]
    return True, f"; data ok ({', '.join(parts)})"


def _param_count(model) -> int | None:
    """The model's trainable parameters; None while some layer's size awaits the data."""
    from dlrun.dsl.summary import layer_costs

    counts = [r["params"] for r in layer_costs(model)]
    return None if None in counts else sum(counts)


def _summary(args) -> int:
    from dlrun.dsl import load_file, summarize

    warnings: list = []
    model = load_file(args.file, warnings=warnings)
    print_warnings(warnings)
    sys.stdout.write(summarize(model))
    return 0


def _fmt(args) -> int:
    from dlrun.dsl import format_source, read_source
    from dlrun.errors import DslError, UsageError

    if args.write and args.check:
        raise UsageError("dlrun fmt: --write and --check cannot be combined")
    status = 0
    for path in args.files:
        try:
            text = read_source(path)
            out = format_source(text, path)
        except DslError as err:
            print(str(err), file=sys.stderr)
            status = 2
            continue
        if args.check:
            if out != text:
                print(f"{path}: not in canonical form (run 'dlrun fmt --write {path}')")
                status = max(status, 1)
        elif args.write:
            if out != text:
                write_atomic(path, out)
                print(f"{path}: reformatted", file=sys.stderr)
        else:
            sys.stdout.write(out)
    return status


def write_atomic(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (see ``fileio.replace_atomically``); the file
    keeps its permission bits, and a symlink keeps pointing at the rewritten target."""
    from dlrun.errors import UsageError
    from dlrun.runtime.fileio import replace_atomically

    path = os.path.realpath(path)  # through a symlink: rewrite its target, keep the link
    try:  # replace_atomically keeps the replaced file's permission bits
        replace_atomically(path, lambda f: f.write(text), binary=False)
    except OSError as err:
        raise UsageError(f"{path}: cannot write: {err.strerror or err}") from None
