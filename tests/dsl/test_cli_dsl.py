"""dlrun check / summary / fmt through a real process: exit codes, output, no tracebacks."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MODELS = sorted((Path(__file__).resolve().parents[2] / "models").glob("*.net"))
BAD = Path(__file__).resolve().parent / "bad"

GOOD = """dlrun 1
# a comment
model tiny {
  let w = 8
  input 4
  repeat 2 {
    dense  w relu   as h
  }
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=1e-2
}
"""


def dlrun(*args, cwd=None):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "dlrun", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "tiny.net"
    path.write_text(GOOD)
    return path


def test_check_ok(good):
    r = dlrun("check", good)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("\n") == 1
    assert "ok: model tiny" in r.stdout and "4 -> 3" in r.stdout
    assert "Traceback" not in r.stderr


def test_check_several_files_one_bad(good):
    r = dlrun("check", good, BAD / "unknown_activation.net", good)
    assert r.returncode == 2
    assert r.stdout.count("ok: model tiny") == 2
    assert "unknown_activation.net:5:13: error: unknown activation 'rleu'" in r.stderr
    assert "^~~~" in r.stderr and "Traceback" not in r.stderr


def test_check_ir_is_json(good):
    r = dlrun("check", good, "--ir")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["node"] == "Model" and [l["name"] for l in data["layers"]][1:3] == ["h_1", "h_2"]


def test_check_prints_warnings_and_passes(tmp_path):
    path = tmp_path / "w.net"
    path.write_text(GOOD.replace("loss cross_entropy", "loss mse"))
    r = dlrun("check", path)
    assert r.returncode == 0
    assert "warning: softmax output feeding 'mse'" in r.stderr
    assert "1 warning" in r.stdout


@pytest.mark.parametrize("name", ["missing_version", "binary_garbage", "empty_file", "unclosed_block",
                                  "many_errors_in_order", "elf_binary"])
def test_check_bad_exits_2_without_traceback(name):
    r = dlrun("check", BAD / f"{name}.net")
    assert r.returncode == 2
    assert "error:" in r.stderr and "Traceback" not in r.stderr


def test_check_missing_file_and_usage():
    r = dlrun("check", "/nonexistent/model.net")
    assert r.returncode == 2 and "no such model file" in r.stderr and "Traceback" not in r.stderr
    r = dlrun("check")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_summary(good):
    r = dlrun("summary", good)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "output shape" in out and "FLOPs/sample" in out
    # 4*8+8 + 8*8+8 + 8*3+3 = 139 parameters
    assert "total parameters: 139 trainable" in out
    assert "parameter memory: 556 B (float32)" in out
    assert "h_1" in out and "h_2" in out


def test_summary_bad_file():
    r = dlrun("summary", BAD / "dense_on_image_needs_flatten.net")
    assert r.returncode == 2 and "add 'flatten'" in r.stderr and "Traceback" not in r.stderr


def test_fmt_prints_canonical(good):
    r = dlrun("fmt", good)
    assert r.returncode == 0, r.stderr
    assert "    dense w relu as h\n" in r.stdout and "# a comment" in r.stdout
    assert good.read_text() == GOOD  # untouched without --write


def test_fmt_write_is_atomic_and_idempotent(good):
    mode = 0o640
    os.chmod(good, mode)
    r = dlrun("fmt", good, "--write")
    assert r.returncode == 0, r.stderr
    text = good.read_text()
    assert "    dense w relu as h\n" in text
    assert os.stat(good).st_mode & 0o777 == mode
    assert sorted(p.name for p in good.parent.iterdir()) == ["tiny.net"]  # no temp file left
    r = dlrun("fmt", good, "--check")
    assert r.returncode == 0 and r.stdout == ""
    good.write_text(GOOD)
    r = dlrun("fmt", good, "--check")
    assert r.returncode == 1 and "not in canonical form" in r.stdout


def test_fmt_syntax_error_leaves_file_alone(tmp_path):
    path = tmp_path / "b.net"
    path.write_text("dlrun 1\nmodel m {\n  dense 3,\n}\n")
    before = path.read_bytes()
    r = dlrun("fmt", path, "--write")
    assert r.returncode == 2 and "unexpected ','" in r.stderr and "Traceback" not in r.stderr
    assert path.read_bytes() == before


@pytest.mark.skipif(not MODELS, reason="models/ has no .net files yet")
def test_check_every_model_clean():
    r = dlrun("check", *MODELS)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # no warnings either
    assert r.stdout.count(": ok: ") == len(MODELS)


def test_check_does_not_import_numpy_or_kernels(good):
    code = ("import sys\nfrom dlrun.runtime.cli import main\nrc = main(['check', %r])\n"
            "heavy = [m for m in ('numpy', 'scipy', 'dlrun.kernels') if m in sys.modules]\n"
            "print('HEAVY', heavy)\nsys.exit(rc)" % str(good))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout


def test_fmt_write_through_symlink_keeps_the_link(good, tmp_path):
    link = tmp_path / "link.net"
    link.symlink_to(good)
    r = dlrun("fmt", link, "--write")
    assert r.returncode == 0, r.stderr
    assert link.is_symlink() and "    dense w relu as h\n" in good.read_text()


def test_check_ir_of_several_files_is_one_json_document(good, tmp_path):
    other = tmp_path / "other.net"
    other.write_text(GOOD.replace("model tiny", "model other"))
    r = dlrun("check", "--ir", good, other, BAD / "unknown_activation.net")
    assert r.returncode == 2
    data = json.loads(r.stdout)  # one document, not one per file
    assert list(data) == [str(good), str(other), str(BAD / "unknown_activation.net")]
    assert data[str(good)]["name"] == "tiny" and data[str(other)]["name"] == "other"
    assert data[str(BAD / "unknown_activation.net")] is None
    assert "unknown activation 'rleu'" in r.stderr


@pytest.mark.parametrize("command", ["check", "fmt", "summary", "train"])
def test_number_past_the_int_string_limit_is_a_diagnostic(tmp_path, command):
    # 5,000 digits raised Python's int-to-string ValueError: a traceback and exit 1
    path = tmp_path / "big.net"
    path.write_text("dlrun 1\nmodel m {\n  input 4\n  dense " + "9" * 5000 + " relu\n"
                    "  dense 3 softmax\n  loss cross_entropy\n  optimizer adam\n}\n")
    out = dlrun(command, path)
    assert out.returncode == 2, out.stderr[-500:]
    assert f"{path}:4:9: error: number of 5,000 characters is too long" in out.stderr
    assert "Traceback" not in out.stderr
