"""docs/language.md: every example parses and checks; every name of the tables is documented."""
import re
from pathlib import Path

import pytest

from dlrun.dsl import format_source, parse, tables

DOC = Path(__file__).resolve().parents[2] / "docs" / "language.md"
BLOCK = re.compile(r"^```net\n(.*?)^```", re.S | re.M)


def blocks():
    return BLOCK.findall(DOC.read_text(encoding="utf-8"))


def test_doc_has_examples():
    assert len(blocks()) >= 10


@pytest.mark.parametrize("index", range(len(blocks()) if DOC.exists() else 0))
def test_example_parses_and_checks(index):
    text = blocks()[index]
    warnings = []
    model = parse(text, f"language.md#example{index}", warnings=warnings)
    assert not warnings, [w.format() for w in warnings]
    assert model.layers[0].kind == "input"
    # examples are written in canonical form
    assert format_source(text) == text


def test_every_table_name_is_documented():
    doc = DOC.read_text(encoding="utf-8")
    quoted = set(re.findall(r"`([^`\s]+)`", doc))
    # words inside code spans with spaces or in example blocks count too
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(re.findall(r"`([^`]+)`", doc))))
    missing = []
    for group, names in tables.all_names().items():
        for name in names:
            if name not in quoted and name not in words:
                missing.append(f"{group}: {name}")
    assert not missing, "names missing from docs/language.md: " + ", ".join(missing)


def test_check_output_quoted_in_the_docs_is_what_check_prints(capsys, monkeypatch):
    """A quoted `NAME.net: ok: ...` line is the start of what `dlrun check models/NAME.net` prints."""
    from dlrun.runtime import cli

    quoted = re.findall(r"`(\w+\.net: ok: [^`]*?)(?:, \.\.\.)?`", DOC.read_text(encoding="utf-8"))
    assert quoted
    monkeypatch.chdir(DOC.parents[1] / "models")
    for line in quoted:
        assert cli.main(["check", line.split(":")[0]]) == 0
        assert capsys.readouterr().out.startswith(line), line
