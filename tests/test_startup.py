"""Start-up stays light (issue 16, item 7): ``import dlrun`` loads no kernel, and ``dlrun check``
imports only the modules checking a file needs. Each case runs in a fresh interpreter (the
conftest's PYTHONSAFEPATH keeps it on the installed package) and prints what it imported."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "models" / "digits.net")

# what a case prints: the dlrun modules loaded, and whether numpy / scipy were
REPORT = ("import json, sys\n"
          "print(json.dumps({'dlrun': sorted(m for m in sys.modules if m.startswith('dlrun.')),\n"
          "                  'numpy': 'numpy' in sys.modules, 'scipy': 'scipy' in sys.modules}))\n")


def imported(code: str) -> dict:
    r = subprocess.run([sys.executable, "-c", code + "\n" + REPORT], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_cli(*argv: str) -> str:
    return f"from dlrun.runtime.cli import main\nassert main({list(argv)!r}) == 0\n"


def test_import_dlrun_loads_no_kernels_numpy_or_runtime():
    got = imported("import dlrun")
    assert [m for m in got["dlrun"] if m.startswith("dlrun.kernels.")] == []
    assert [m for m in got["dlrun"] if m.startswith("dlrun.runtime")] == []
    assert not got["numpy"] and not got["scipy"]


def test_the_lazy_api_names_load_the_runtime_on_first_use():
    got = imported("import dlrun\nassert 'Model' in dir(dlrun)\nassert dlrun.load.__module__ == 'dlrun.runtime.api'")
    assert "dlrun.runtime.api" in got["dlrun"] and "dlrun.kernels.dense" in got["dlrun"]


def test_check_imports_only_the_model_language_side_of_the_cli():
    got = imported(run_cli("check", DIGITS))
    runtime = {m for m in got["dlrun"] if m.startswith("dlrun.runtime")}
    # the dispatch (cli, parallel's launcher environment) and the command; not cli_train's options
    assert runtime <= {"dlrun.runtime", "dlrun.runtime.cli", "dlrun.runtime.parallel", "dlrun.runtime.cli_dsl"}
    assert not any(m.startswith("dlrun.kernels") for m in got["dlrun"])
    assert not got["numpy"] and not got["scipy"]


def test_check_data_reads_the_data_without_scipy_or_kernels():
    got = imported(run_cli("check", "--data", DIGITS))
    assert got["numpy"]  # the data files are read
    assert not got["scipy"], "scipy is imported by 'check --data' of a model without audio"
    assert not any(m.startswith("dlrun.kernels") for m in got["dlrun"])


def test_every_command_still_takes_its_own_options():
    # only the chosen command's options are filled in: each must still parse its own
    from dlrun.runtime.cli import COMMANDS, build_parser

    for name in COMMANDS:
        full = build_parser().commands[name]
        alone = build_parser(name).commands[name]
        assert [a.option_strings for a in alone._actions] == [a.option_strings for a in full._actions]
