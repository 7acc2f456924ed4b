"""The README stays true: its model file is models/digits.net, its commands and API exist."""
import re
from pathlib import Path

from dlrun import dsl
from dlrun.dsl import ir
from dlrun.runtime.cli import COMMANDS, build_parser

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _blocks():
    return re.findall(r"```[a-z]*\n(.*?)```", README, flags=re.S)


def test_setup_commands_are_the_two_ci_runs():
    assert "pip install . && dlrun models/digits.net" in README
    assert "pip install '.[test]' && pytest tests" in README


def test_readme_model_is_models_digits():
    text = next(b for b in _blocks() if b.startswith("dlrun 1"))
    shown = dsl.parse(text, "README.md")
    shipped = dsl.load_file(str(ROOT / "models" / "digits.net"))
    assert ir.to_dict(shown, positions=False) | {"path": None} == ir.to_dict(shipped, positions=False) | {"path": None}


def test_readme_cli_flags_exist():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    cli = next(b for b in _blocks() if "dlrun --version" in b)
    command, checked = None, 0
    for line in cli.splitlines():
        code = line.split("#")[0]
        words = code.split()
        if words and words[0] == "dlrun":
            if len(words) < 2 or words[1].startswith("-"):
                command = None  # dlrun --version
                continue
            command = words[1] if words[1] in COMMANDS else "train"
        elif not line.startswith(" "):
            command = None
        if command is None:
            continue
        options = {o for a in sub.choices[command]._actions for o in a.option_strings}
        for flag in re.findall(r"--[a-z-]+", code):
            assert flag in options, f"README: {command} {flag} is not an option"
            checked += 1
    assert checked >= 20


def test_readme_example_models_exist():
    for name in re.findall(r"`(\w+\.net)`", README):
        assert (ROOT / "models" / name).is_file(), name


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    import shutil

    block = next(b for b in re.findall(r"```python\n(.*?)```", README, flags=re.S))
    shutil.copytree(ROOT / "models", tmp_path / "models", ignore=shutil.ignore_patterns("*.weights.npz"))
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "'accuracy'" in out and "['setosa']" in out
    assert (tmp_path / "iris.weights.npz").is_file()
    assert namespace["model"].class_names == ["setosa", "versicolor", "virginica"]
