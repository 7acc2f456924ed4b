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
    # fenced blocks first (their three backticks would pair the prose's code spans wrongly)
    fences = re.findall(r"^```[a-z]*\n(.*?)^```", doc, re.S | re.M)
    prose = re.sub(r"^```[a-z]*\n.*?^```", "", doc, flags=re.S | re.M)
    quoted = set(re.findall(r"`([^`\s]+)`", prose))
    # words inside code spans with spaces or in example blocks count too
    spans = re.findall(r"`([^`]+)`", prose) + fences
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(spans)))
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


def _section(doc, title):
    start = doc.index(f"\n## {title}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end >= 0 else None]


def test_maths_is_described_as_computed():
    # the statements of docs/language.md that the runtime's maths must match (each pinned by
    # a runtime test: tests/kernels/test_activations.py::test_gelu_is_the_tanh_form,
    # tests/runtime/test_train.py::test_clip_norm_clips_the_data_gradient_and_the_penalty_is_added_after,
    # ::test_weight_decay_applies_to_weights_only_and_segments_merge,
    # tests/runtime/test_data.py::test_cross_entropy_refuses_probability_targets)
    doc = DOC.read_text(encoding="utf-8")
    gelu = next(line for line in doc.splitlines() if line.startswith("| `gelu` |"))
    assert "tanh(√(2/π)·(x + 0.044715·x³))" in gelu, gelu
    assert "relu(NaN)` is NaN" in _section(doc, "Activations")
    loss = _section(doc, "Loss")
    assert "probabilities as targets" not in loss
    assert "soft targets, are refused" in loss
    optimizer = _section(doc, "Optimizer")
    assert "clips the gradient of the data\n  loss" in optimizer
    assert "are applied afterwards" in optimizer and "not clipped" in optimizer
    assert "weight matrices of `dense` layers only" in optimizer
    assert "after `clip_norm` has clipped the data gradient" in _section(doc, "Regularization")
