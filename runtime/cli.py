"""The ``dlrun`` command.

    dlrun model.net                 # = dlrun train model.net (a first word that is neither a
                                    # command nor a model file is refused: "did you mean")
    dlrun train|eval|predict|gradcheck|time ...   (runtime/cli_train.py)
    dlrun check|summary|fmt ...              (runtime/cli_dsl.py; never imports the kernels)
    dlrun --version

Exit codes: 0 success, 1 failure during a run, 2 bad input. Errors raised on purpose
(``dlrun.errors.DlrunError``) are printed without a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from dlrun._version import __version__
from dlrun.errors import DlrunError

# subcommand -> (module that defines ``add_arguments(parser)`` and ``run(args) -> int``, help,
# what it does when an MPI launcher started several processes, see ``_under_mpiexec``)
COMMANDS = {
    "train": ("dlrun.runtime.cli_train", "train a model (the default command)", "parallel"),
    "eval": ("dlrun.runtime.cli_train", "evaluate saved weights on the model's data", "rank0"),
    "predict": ("dlrun.runtime.cli_train", "predict with saved weights", "rank0"),
    "gradcheck": ("dlrun.runtime.cli_train", "finite-difference check of every gradient", "refuse"),
    "export": ("dlrun.runtime.cli_train", "write trained weights as an ONNX model (the onnx extra)", "rank0"),
    "time": ("dlrun.runtime.cli_train", "time every layer's forward and backward pass and the optimizer step",
             "refuse"),
    "check": ("dlrun.runtime.cli_dsl", "parse and check model files", "rank0"),
    "summary": ("dlrun.runtime.cli_dsl", "table of layers, shapes, parameters and FLOPs", "rank0"),
    "fmt": ("dlrun.runtime.cli_dsl", "print a model file in canonical form", "rank0"),
}

# why a command is refused under mpiexec
_REFUSED = {
    "gradcheck": "it checks the gradients of one process's network, not those of a data-parallel run",
    "time": "it times one process's layers, not a data-parallel step (docs/scaling.md measures those)",
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors exit 2 through one path."""

    def error(self, message):
        raise DlrunError(f"{self.prog}: error: {message}\n{self.format_usage().rstrip()}")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``dlrun`` parser: every command listed; the options of ``command`` only, or of every
    command when None. ``main`` fills in only the command it runs, so ``dlrun check`` neither
    imports ``cli_train`` nor builds its options (all nine: 2.5 ms of CPU, one: 1.1 ms)."""
    parser = _Parser(prog="dlrun", description="Train, evaluate and run .net models.")
    parser.add_argument("--version", action="version", version=f"dlrun {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    parser.commands = {}   # name -> its parser (an unknown option is reported with its usage)
    for name, (module, help_text, _) in COMMANDS.items():
        p = parser.commands[name] = sub.add_parser(name, help=help_text, description=help_text)
        if command is None or name == command:
            importlib.import_module(module).add_arguments(name, p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # `dlrun model.net ...` is `dlrun train model.net ...`
        if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
            _check_not_a_command(argv[0])
            argv.insert(0, "train")
        parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")
        if not argv:
            parser.print_help()
            return 2
        args, unknown = parser.parse_known_args(argv)
        if unknown:   # argparse would word it with the top-level usage
            parser.commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
        if not _under_mpiexec(args.command):
            return 0
        module = importlib.import_module(COMMANDS[args.command][0])
        return int(module.run(args.command, args) or 0)
    except DlrunError as err:
        err = _settled(err)
        if str(err) and _reports(err):  # a rank of a data-parallel run whose peer reported it prints nothing
            print(str(err), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("dlrun: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _under_mpiexec(command) -> bool:
    """Whether this process runs ``command``. Under ``mpiexec -n N`` (N > 1) each command does
    what ``COMMANDS`` says: "parallel" (train) on every rank; "rank0" on rank 0 alone, the
    other ranks returning here (exit 0, no output), so output appears once and files are
    written once; "refuse": exit 2 with the reason, said by rank 0. MPI is not initialised
    for these (the rank comes from the launcher's environment)."""
    from dlrun.runtime.parallel import launched_rank, launched_size

    size = launched_size()
    mode = COMMANDS[command][2]
    if size <= 1 or mode == "parallel":
        return True
    if mode == "refuse":
        from dlrun.errors import UsageError

        raise UsageError(f"dlrun {command} does not run data-parallel: {_REFUSED[command]}; "
                         f"run it without mpiexec (started as one of {size} processes)")
    if launched_rank() != 0:
        return False
    print(f"dlrun {command}: rank 0 of {size} runs it alone (it does not run data-parallel; "
          f"the other processes exit)", file=sys.stderr)
    return True


def _reports(err) -> bool:
    """Whether this process prints ``err``: always, except under mpiexec on a rank other than 0
    when no data-parallel run settled who reports (then every rank met the same error: a bad
    command line, a command refused, mpi4py missing; rank 0 says it)."""
    from dlrun.runtime.parallel import current, launched_rank, launched_size

    if current() is not None or launched_size() <= 1:
        return True
    try:
        return launched_rank() == 0
    except DlrunError:  # the rank is unknown without a world, and none can be made
        return True


def _settled(err):
    """Under mpiexec, the error the ranks agree to report (``parallel.World.fail``): the
    first rank that failed prints it, the others exit with its code silently."""
    parallel = sys.modules.get("dlrun.runtime.parallel")
    if parallel is None or parallel.current() is None:
        return err  # no run was started: nothing to settle
    try:
        parallel.current().fail(err)
    except DlrunError as settled:
        return settled
    return err


def _check_not_a_command(word: str) -> None:
    """Refuse a first word that is neither a command nor a model file: ``dlrun trian x.net``
    would otherwise train a model file named 'trian'."""
    import os

    if word.lower().endswith(".net") or os.path.sep in word or "." in word or os.path.exists(word):
        return
    from dlrun.dsl.diagnostics import suggest
    from dlrun.errors import UsageError

    raise UsageError(f"dlrun: error: unknown command '{word}'{suggest(word, COMMANDS)}; "
                     f"a model file to train ends in .net")


if __name__ == "__main__":
    sys.exit(main())
