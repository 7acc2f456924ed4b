"""Bad data through the installed CLI: one message naming the file, exit 2, no traceback."""
import gzip
import subprocess
import sys

import pytest

MODEL = """dlrun 1
model m {{
  data {{
    train "{train}"{labels}{label}
  }}
  input 4
  dense 3 softmax
  loss cross_entropy
  optimizer adam
  train epochs=1
}}
"""


def run_train(tmp_path, train, labels=None):
    text = MODEL.format(train=train, labels=f' labels="{labels}"' if labels else "",
                        label="\n    label species" if train.endswith(".csv") else "")
    (tmp_path / "m.net").write_text(text)
    return subprocess.run([sys.executable, "-m", "dlrun", "train", str(tmp_path / "m.net"), "--quiet"],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name, content, fragment", [
    ("bad.csv", "a,b,c,d,species\n1,2,3,4,cat\n1,2,?,4,dog\n", "line 3, column 3 'c': expected a number, got '?'"),
    ("ragged.csv", "a,b,c,d,species\n1,2,3,4,cat\n1,2,3,dog\n", "line 3: 4 cells, but the header"),
    ("nan.csv", "a,b,c,d,species\n1,2,3,4,cat\n1,2,3,nan,dog\n1,2,3,4,emu\n", "line 3, column 4 'd': non-finite"),
    ("wide.csv", "a,b,c,d,e,species\n1,2,3,4,5,cat\n", "5 features"),
    ("empty.csv", "", "is empty"),
    ("missing.csv", None, "not found"),
])
def test_bad_csv(tmp_path, name, content, fragment):
    if content is not None:
        (tmp_path / name).write_text(content)
    p = run_train(tmp_path, name)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr
    assert name in p.stderr and fragment in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_truncated_gz_idx(tmp_path):
    raw = bytes([0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(36)
    (tmp_path / "im-idx3-ubyte.gz").write_bytes(gzip.compress(raw)[:-12])
    (tmp_path / "lb-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9]) + bytes(9))
    p = run_train(tmp_path, "im-idx3-ubyte.gz", labels="lb-idx1-ubyte")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "im-idx3-ubyte.gz" in p.stderr and "truncated" in p.stderr, p.stderr
