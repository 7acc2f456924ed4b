"""The reader's limits (dsl/parser.py, docs/language.md "Limits"): a hostile model file is
refused at the place where a limit is passed, and costs little memory on the way."""
import json
import subprocess
import sys

import pytest

from dlrun.dsl import load_file, parse
from dlrun.dsl import parser as P
from dlrun.dsl.diagnostics import MAX_SHOWN_ERRORS, SHOWN_LINE_CHARS, Diagnostic
from dlrun.errors import DslError

HEAD = "dlrun 1\nmodel m {\n  input 4\n"
TAIL = "  dense 3 softmax\n  loss cross_entropy\n  optimizer adam\n}\n"


def fill(unit: str, size: int) -> str:
    """HEAD, ``unit`` repeated, TAIL: ``size`` characters or just under."""
    return HEAD + unit * ((size - len(HEAD) - len(TAIL)) // len(unit)) + TAIL


def errors_of(call):
    with pytest.raises(DslError) as info:
        call()
    return [d for d in info.value.diagnostics if d.severity == "error"], str(info.value)


def test_file_over_the_size_limit_is_refused_where_it_is_passed(tmp_path):
    path = tmp_path / "big.net"
    path.write_text(fill("  dense 1\n", P.MAX_SOURCE_BYTES + 100))
    errors, text = errors_of(lambda: load_file(path))
    assert len(errors) == 1
    d = errors[0]
    assert "larger than the limit of 131,072 bytes (128 KiB)" in d.message
    assert d.line == (P.MAX_SOURCE_BYTES - len(HEAD)) // 10 + 4  # the line the limit falls on
    assert d.col >= 1 and f"{path}:{d.line}:{d.col}: error:" in text


def test_text_over_the_size_limit_is_refused():
    errors, _ = errors_of(lambda: parse(fill("\n", P.MAX_SOURCE_BYTES + 1)))
    assert "larger than the limit of 131,072 characters" in errors[0].message
    assert errors[0].line > 0


def test_a_huge_file_is_not_read_in_full(tmp_path):
    # 50 MB of statements took more than 60 s and GiBs; under a 1 GiB address-space limit
    # the reader must refuse it without reading it
    path = tmp_path / "huge.net"
    with open(path, "w") as f:
        f.write(HEAD)
        for _ in range(50):
            f.write("  dense 1\n" * 100_000)
        f.write(TAIL)
    code = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from dlrun.dsl import load_file\n"
        "from dlrun.errors import DslError\n"
        "try:\n"
        "    load_file(sys.argv[1])\n"
        "except DslError as err:\n"
        "    print(err.diagnostics[0].message)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-500:]
    assert "larger than the limit" in out.stdout


def test_long_line_is_refused_at_the_column_past_the_limit():
    text = HEAD + "  dense 8 relu  " + "# " + "x" * P.MAX_LINE_CHARS + "\n" + TAIL
    errors, shown = errors_of(lambda: parse(text))
    assert [(d.line, d.col) for d in errors] == [(4, P.MAX_LINE_CHARS + 1)]
    assert "at most 10,000 are accepted" in errors[0].message
    # the line is shown cut around the column, not in full
    assert max(len(line) for line in shown.split("\n")) < SHOWN_LINE_CHARS + 20


@pytest.mark.parametrize("line, message", [
    ("dense " + "1" * 4301, "number of 4,301 characters is too long"),
    ('dense 8 relu data="' + "a" * 5000 + '"', "string of 5,000 characters is too long"),
    ("dense 8 " + "a" * 257, "name of 257 characters is too long"),
    ("dense 8 " + "a" * 257 + "(1)", "name of 257 characters is too long"),
    ("let a = " + "-" * 101 + "1", "nests more than 100 levels deep"),
    ("let a = " + "[" * 101 + "1" + "]" * 101, "nests more than 100 levels deep"),
    ("let a = 1" + "*1" * 101, "nests more than 100 levels deep"),
])
def test_token_and_nesting_limits(line, message):
    errors, _ = errors_of(lambda: parse(HEAD + "  " + line + "\n" + TAIL))
    assert len(errors) == 1 and errors[0].line == 4 and errors[0].col > 1
    assert message in errors[0].message


def test_limits_apply_to_fmt_too():
    from dlrun.dsl import format_source

    errors, _ = errors_of(lambda: format_source(HEAD + "  dense " + "9" * 5000 + "\n" + TAIL))
    assert (errors[0].line, errors[0].col) == (4, 9)


def test_syntax_recovery_reparses_a_long_text_only_a_few_times(monkeypatch):
    text = fill("  dense 1\n", P.MAX_SOURCE_BYTES - 2000)
    text = text.replace("  dense 1\n", "  dense 1 ;\n", 25)
    real = P.get_parser()
    calls = []

    class Counting:
        def parse(self, work):
            calls.append(len(work))
            return real.parse(work)

    monkeypatch.setattr(P, "get_parser", lambda: Counting())
    tree, diags = P.parse_tree(text, "x.net")
    assert tree is None and diags
    assert sum(calls) <= P.MAX_PARSE_WORK
    # a short file still gets every error reported
    calls.clear()
    short = HEAD + "  dense 1 ;\n" * 5 + TAIL
    tree, diags = P.parse_tree(short, "x.net")
    assert len(diags) == 5


def test_errors_past_the_limit_are_counted_not_listed():
    text = HEAD + "  let a = 1\n" * (MAX_SHOWN_ERRORS + 51) + TAIL
    errors, shown = errors_of(lambda: parse(text))
    assert len(errors) == MAX_SHOWN_ERRORS + 1
    assert errors[-1].message == f"50 more errors from here on are not shown (the first {MAX_SHOWN_ERRORS} are)"
    assert errors[-1].line == errors[-2].line + 1


def test_long_source_line_shown_as_a_window():
    src = "x" * 500 + "dense 1 bad" + "y" * 500
    d = Diagnostic("error", "m", "p", 1, 509, 1, 512, src)
    _, shown, caret = d.format().split("\n")
    assert len(shown) <= SHOWN_LINE_CHARS + 10
    assert shown.startswith("    ...") and shown.endswith("...")
    assert shown[caret.index("^"):caret.index("^") + 3] == "bad"


HOSTILE = r'''
import json, resource, sys
from dlrun.dsl import parse
from dlrun.dsl.parser import MAX_SOURCE_BYTES
from dlrun.errors import DslError
head = "dlrun 1\nmodel m {\n  input 4\n"
tail = "  dense 3 softmax\n  loss cross_entropy\n  optimizer adam\n}\n"
def fill(unit):
    return head + unit * ((MAX_SOURCE_BYTES - len(head) - len(tail)) // len(unit)) + tail
cases = {
    "blank lines": fill("\n"),
    "comment lines": fill("# a comment\n"),
    "string": head + '  dense 3 relu data="' + "a" * 4090 + '"\n' + tail,
    "sums": fill("  let b = " + "+".join(["1"] * 40) + "\n"),
    "layers": fill("  dense 1\n"),
}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
growth = {}
for name, text in cases.items():
    try:
        parse(text)
    except DslError:
        pass
    now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    growth[name] = (now - before) // 1024
print(json.dumps(growth))
'''


def test_hostile_files_below_the_limit_cost_bounded_memory():
    out = subprocess.run([sys.executable, "-c", HOSTILE], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-800:]
    growth = json.loads(out.stdout)  # peak resident growth in MiB, cumulative
    # the old multi-line line-end token cost ~350 bytes per blank line (55 MiB here); now ~nothing
    assert growth["blank lines"] < 32 and growth["comment lines"] < 32, growth
    # the worst statements cost ~1 KiB per byte of text (Lark's tree): bounded by the file cap
    assert max(growth.values()) < 256, growth
