"""Golden bad files: each ``tests/dsl/bad/*.net`` starts with one ``# expect: LINE:COL: fragment``
comment per error it must produce, in source order; the checker must report exactly those."""
import re
from pathlib import Path

import pytest

from dlrun.dsl import load_file
from dlrun.errors import DslError

BAD = Path(__file__).parent / "bad"
FILES = sorted(BAD.glob("*.net"))
EXPECT = re.compile(rb"^# expect: (\d+):(\d+): (.*)$")


def expectations(path):
    out = []
    for line in path.read_bytes().splitlines():
        m = EXPECT.match(line)
        if not m:
            break
        out.append((int(m.group(1)), int(m.group(2)), m.group(3).decode("utf-8")))
    return out


def test_enough_distinct_mistakes():
    assert len(FILES) >= 40
    # distinct: no two files pin the same first message
    firsts = {expectations(f)[0][2] for f in FILES}
    assert len(firsts) >= 40


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_bad_file(path):
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' header"
    with pytest.raises(DslError) as info:
        load_file(path)
    errors = [d for d in info.value.diagnostics if d.severity == "error"]
    got = [(d.line, d.col, d.message) for d in errors]
    assert len(got) == len(expected), "\n".join(d.format() for d in errors)
    for (line, col, fragment), (gline, gcol, message) in zip(expected, got):
        assert (gline, gcol) == (line, col), message
        assert fragment in message
    # in source order
    assert [(d.line, d.col) for d in errors] == sorted((d.line, d.col) for d in errors)
    # the rendered message names the file and position, and never a grammar token name
    text = str(info.value)
    assert str(path) in text
    for internal in ("_NL", "$END", "RBRACE", "LPAR", "NUMBER", "Token(", "<END-OF-FILE>"):
        assert internal not in text


def test_caret_under_the_span():
    path = BAD / "unknown_activation.net"
    with pytest.raises(DslError) as info:
        load_file(path)
    lines = info.value.diagnostics[0].format().split("\n")
    assert lines[0].endswith("unknown activation 'rleu' (did you mean 'relu'? known: linear, relu, "
                             "leaky_relu, elu, sigmoid, tanh, softplus, gelu, swish, softmax)")
    assert lines[1] == "      dense 128 rleu"
    assert lines[2] == "                ^~~~"
