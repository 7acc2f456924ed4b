"""Fuzzing: valid files mutated by bytes and by tokens. Whatever the input, the only
exception is DslError, every diagnostic has a valid position and renders, and a file
that does parse gives a well-formed model. 2 x 1,000 examples."""
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dlrun.dsl import format_model, format_source, ir, parse, parse_syntax
from dlrun.dsl.parser import decode_source
from dlrun.errors import DslError

HERE = Path(__file__).resolve().parent
SEEDS = [
    """dlrun 1
model digits {
  data {
    train "data/digits.npz"
    validation 0.15
    test 0.15
    scale 1/16
  }
  let width = 128
  input 64
  repeat 2 {
    dense width relu init=he l2=1e-4 as hidden
    batchnorm momentum=0.9 eps=1e-5
    dropout 0.2
  }
  dense width*2 leaky_relu(alpha=0.1)
  tanh
  dense 10 softmax
  loss cross_entropy label_smoothing=0.1
  regularize l2=1e-4 l1=1e-5
  optimizer adam lr=1e-3 beta1=0.9 beta2=0.999 eps=1e-8 weight_decay=0 clip_norm=1.0
  train epochs=60 batch=32 seed=42 shuffle=true dtype=float32 metrics=[accuracy]
  early_stopping monitor=val_loss mode=min patience=8 min_delta=0 restore_best
}
""",
    """# iris
dlrun 1
model iris {
  data {
    train "iris.csv"
    label species
    validation 0.2
    standardize
  }
  input 4
  dense 16 relu
  dense 3 softmax
  loss cross_entropy
  optimizer sgd lr=0.1 momentum=0.9 nesterov=true
  train epochs=100 batch=16 metrics=[accuracy]
}
""",
    """dlrun 1
model img {
  input 1x28x28
  flatten
  dense 32 elu(0.5)
  dropout 0.1
  dense 1 sigmoid
  loss binary_cross_entropy
  optimizer rmsprop(lr=0.01)
}
""",
]
SEEDS += [p.read_text(encoding="utf-8") for p in sorted((HERE.parents[1] / "models").glob("*.net"))]
SEED_BYTES = [s.encode() for s in SEEDS]

TOKEN = re.compile(r'"[^"\n]*"|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9.xeE+-]*|#[^\n]*|\n|[ \t]+|.')
VOCAB = ["dlrun", "model", "let", "as", "repeat", "data", "dense", "input", "loss", "optimizer",
         "train", "relu", "softmax", "leaky_relu(", "{", "}", "(", ")", "[", "]", "=", ",", "-", "+",
         "*", "/", "\n", " ", "0", "1", "-1", "1e999", "0.5", "28x28", "x", '"', '"a.npz"', "#",
         "true", "false", "width", "1/0", "99999999999999999999", "\t", "\r", "\ufeff", "é", "\x00",
         "((((((((((", "))))", "repeat 10000 {", "lr=", "as as", ";", "'"]


def assert_clean_failure(err: DslError, text_lines: int):
    assert err.diagnostics, "DslError without diagnostics"
    for d in err.diagnostics:
        assert d.severity == "error"
        assert 0 <= d.line <= text_lines + 1, (d.line, text_lines)
        assert d.col >= 0 and (d.line == 0) == (d.col == 0)
        if d.line:
            assert d.end_line >= d.line
        rendered = d.format()
        assert d.message in rendered and "Traceback" not in rendered
        for internal in ("_NL", "$END", "<END-OF-FILE>", "Token(", "RBRACE"):
            assert internal not in d.message


def shape_of(node):
    """A syntax tree without positions (what formatting must preserve)."""
    if isinstance(node, ir.Pos):
        return None
    if isinstance(node, tuple):
        return (type(node).__name__,) + tuple(shape_of(v) for v in node if not isinstance(v, ir.Pos))
    return node


def check_formatter(text: str):
    """Any text with valid syntax formats to text with the same syntax tree, idempotently."""
    try:
        _, tree = parse_syntax(text)
    except DslError:
        return
    out = format_source(text)
    _, again = parse_syntax(out)
    assert shape_of(again) == shape_of(tree), out
    assert format_source(out) == out


def run(data: bytes):
    text, diags = decode_source(data, "fuzz.net")
    if diags:
        assert len(diags) == 1
        assert_clean_failure(DslError(diags), data.count(b"\n") + 1)
        return
    check_formatter(text)
    try:
        model = parse(text, "fuzz.net")
    except DslError as err:
        assert_clean_failure(err, text.count("\n") + 1)
        return
    assert isinstance(model, ir.Model)
    assert model.layers[0].kind == "input" and all(l.shape for l in model.layers)
    parse(format_model(model))  # a model that checks can always be printed and re-read


# DLRUN_FUZZ_EXAMPLES raises the count for a longer local run (CI uses 1,000 per test).
FUZZ = settings(max_examples=int(os.environ.get("DLRUN_FUZZ_EXAMPLES", "1000")), deadline=None,
                suppress_health_check=list(HealthCheck))


@FUZZ
@given(seed=st.sampled_from(SEED_BYTES),
       edits=st.lists(st.tuples(st.sampled_from(["insert", "delete", "replace", "duplicate"]),
                                st.floats(0, 1), st.binary(min_size=1, max_size=4)), min_size=1, max_size=6))
def test_byte_mutations(seed, edits):
    data = bytearray(seed)
    for op, where, blob in edits:
        i = int(where * len(data))
        if op == "insert":
            data[i:i] = blob
        elif op == "delete":
            del data[i:i + len(blob)]
        elif op == "replace":
            data[i:i + len(blob)] = blob
        else:
            data[i:i] = data[i:i + 1 + len(blob) * 4]
    run(bytes(data))


@FUZZ
@given(seed=st.sampled_from(SEEDS),
       edits=st.lists(st.tuples(st.sampled_from(["delete", "replace", "swap", "duplicate", "insert"]),
                                st.floats(0, 1), st.sampled_from(VOCAB), st.floats(0, 1)), min_size=1, max_size=5))
def test_token_mutations(seed, edits):
    tokens = TOKEN.findall(seed)
    for op, where, word, other in edits:
        if not tokens:
            tokens = [word]
            continue
        i = min(int(where * len(tokens)), len(tokens) - 1)
        j = min(int(other * len(tokens)), len(tokens) - 1)
        if op == "delete":
            del tokens[i]
        elif op == "replace":
            tokens[i] = word
        elif op == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "duplicate":
            tokens[i:i] = tokens[min(i, j):max(i, j) + 1][:20]
        else:
            tokens.insert(i, word)
    run("".join(tokens).encode("utf-8", "surrogatepass"))


@pytest.mark.parametrize("text", [
    "dlrun 1\nmodel m {\n  input 4\n  dense " + "(" * 5000 + "1" + ")" * 5000 + "\n}",
    "dlrun 1\nmodel m {\n  input 4\n  dense " + "-" * 5000 + "1\n}",
    "dlrun 1\nmodel m {\n" + "repeat 2 {\n" * 300 + "}\n" * 300 + "}",
    "dlrun 1\nmodel m {\n  input 4\n  repeat 10000 {\n    repeat 10000 {\n      dense 1\n    }\n  }\n}",
    "dlrun 1\nmodel m {\n  input 4\n  dense 99999999999999999999999999999\n  dense 1e308*1e308\n}",
    "dlrun 1\nmodel m {\n  input 2147483647x2147483647\n}",
])
def test_pathological_inputs(text):
    run(text.encode())
