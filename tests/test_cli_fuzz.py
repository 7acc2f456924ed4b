"""CLI fuzz over the installed command: model files mutated byte by byte and token by
token, given to ``dlrun check`` and ``dlrun train``. Whatever the file, the command ends
(no hang) with exit 0, 1 or 2, prints no Python traceback, and a failed ``train`` leaves no
weights file and no temporary file behind.

Deterministic by default; ``DLRUN_FUZZ_SEED`` picks other mutations and
``DLRUN_FUZZ_SCALE`` multiplies the number of cases (CI keeps the default: 500 files checked, 60 trainings, well under a minute).
"""
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("DLRUN_FUZZ_SEED", "20261128"))
SCALE = float(os.environ.get("DLRUN_FUZZ_SCALE", "1"))
CHECK_BATCHES, CHECK_PER_BATCH = max(1, int(10 * SCALE)), 50
TRAIN_CASES = max(1, int(60 * SCALE))
TIMEOUT = 120

TRAIN_SEED = """dlrun 1
# a small model with every block, trained by the fuzz test on its own data
model fuzz {
  data {
    train "fuzz.csv"
    label y
    validation 0.25
    standardize
  }
  let width = 8
  input 3
  repeat 2 {
    dense width relu init=he l2=1e-4
    batchnorm momentum=0.9
    dropout 0.1
  }
  dense 3 softmax
  loss cross_entropy label_smoothing=0.05
  regularize l2=1e-4
  optimizer adam lr=0.01 clip_norm=5
  train epochs=2 batch=8 seed=3 metrics=[accuracy]
  early_stopping monitor=val_loss patience=2 restore_best
}
"""

VOCAB = ["{", "}", "(", ")", "[", "]", "=", ",", '"', "#", "\n", "x", "*", "/", "+", "-", "0", "-1", "1", "2",
         "0.5", "1e-300", "1e300", "65536", "2147483648", "nan", "inf", "dense", "input", "repeat", "let",
         "data", "train", "model", "dlrun", "loss", "optimizer", "relu", "softmax", "flatten", "batchnorm",
         "dropout", "as", "true", "false", "float64", "\"../../etc/passwd\"", "\"/dev/zero\"", "\t", "é", "\x00"]
TOKEN = re.compile(r"\s+|[A-Za-z_][A-Za-z_0-9]*|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\"[^\"\n]*\"|.", re.S)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 2:
            del b[i:i + rng.randint(1, 20)]
        elif op == 3:
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[j:j + rng.randint(1, 30)]
        elif op == 4:
            del b[i:]
        else:
            b[i:i] = rng.choice([b"\xef\xbb\xbf", b"\xff\xfe", b"\r", b"\x00", "é€😀".encode(), b"\xc3"])
    return bytes(b)


def mutate_tokens(text: str, rng: random.Random) -> str:
    toks = TOKEN.findall(text)
    words = [t for t in toks if not t.isspace()]
    for _ in range(rng.randint(1, 3)):
        if not toks:
            break
        i = rng.randrange(len(toks))
        op = rng.randrange(5)
        if op == 0:
            toks[i] = rng.choice(VOCAB)
        elif op == 1:
            toks[i] = rng.choice(words)
        elif op == 2:
            del toks[i]
        elif op == 3:
            toks.insert(i, toks[i])
        else:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks)


NUMBERS = ["0", "-1", "1", "2", "3", "0.5", "1e-300", "1e300", "1e-9", "65536", "2147483648", "99999999999999999999",
           "0.999999", "1/3", "2*3", "nan", "inf"]


def mutate_values(text: str, rng: random.Random) -> str:
    """Replace one to three numbers: the file stays well-formed, the values get hostile."""
    toks = TOKEN.findall(text)
    nums = [i for i, t in enumerate(toks) if t[:1].isdigit()]
    for _ in range(rng.randint(1, 3)):
        toks[rng.choice(nums)] = rng.choice(NUMBERS)
    return "".join(toks)


def mutate(seed: bytes, k: int, rng: random.Random) -> bytes:
    if k % 3 == 0:
        return mutate_bytes(seed, rng)
    text = seed.decode("utf-8")
    return (mutate_tokens(text, rng) if k % 3 == 1 else mutate_values(text, rng)).encode("utf-8")


def mutants(seeds, count, rng):
    out = []
    for k in range(count):
        seed = rng.choice(seeds)
        out.append(mutate(seed, k, rng))
    return out


def _dlrun(args, cwd):
    try:
        p = subprocess.run([sys.executable, "-m", "dlrun", *map(str, args)], capture_output=True,
                           timeout=TIMEOUT, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"dlrun {' '.join(map(str, args))} did not finish in {TIMEOUT}s")
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def _seed_files():
    files = sorted((ROOT / "models").glob("*.net")) + sorted((ROOT / "tests" / "runtime" / "nets").glob("*.net"))
    return [f.read_bytes() for f in files] + [TRAIN_SEED.encode()]


@pytest.mark.parametrize("batch", range(CHECK_BATCHES))
def test_check_never_crashes(tmp_path, batch):
    rng = random.Random(SEED * 1000 + batch)
    files = []
    for k, content in enumerate(mutants(_seed_files(), CHECK_PER_BATCH, rng)):
        p = tmp_path / f"m{k:03d}.net"
        p.write_bytes(content)
        files.append(p)
    code, out = _dlrun(["check", *files], tmp_path)
    if "Traceback" in out or code not in (0, 1, 2):
        # find the file to blame, for the report
        for p in files:
            c1, o1 = _dlrun(["check", p], tmp_path)
            if "Traceback" in o1 or c1 not in (0, 1, 2):
                pytest.fail(f"dlrun check crashed (exit {c1}) on:\n{p.read_bytes()!r}\n{o1}")
        pytest.fail(f"dlrun check crashed (exit {code}):\n{out}")


@pytest.fixture(scope="module")
def fuzz_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzzdata")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 48)
    x = rng.normal(0, 1, (48, 3)) + y[:, None]
    with open(d / "fuzz.csv", "w") as f:
        f.write("a,b,c,y\n")
        for row, label in zip(x, y):
            f.write(f"{row[0]:.4f},{row[1]:.4f},{row[2]:.4f},{'pqr'[label]}\n")
    return d


def test_the_train_seed_trains(fuzz_data, tmp_path):
    (fuzz_data / "seed.net").write_text(TRAIN_SEED)
    code, out = _dlrun(["train", fuzz_data / "seed.net", "--quiet", "--out", tmp_path / "w.npz",
                        "--checkpoint-dir", tmp_path / "ck"], tmp_path)
    assert code == 0, out


@pytest.mark.parametrize("case", range(TRAIN_CASES))
def test_train_never_crashes(fuzz_data, tmp_path, case):
    rng = random.Random(SEED * 7 + case)
    content = mutate(TRAIN_SEED.encode(), case, rng)
    net = fuzz_data / f"case{case}.net"
    net.write_bytes(content)
    out = tmp_path / "w.npz"
    code, text = _dlrun(["train", net, "--epochs", 1, "--quiet", "--out", out, "--checkpoint-dir", tmp_path / "ck"],
                        tmp_path)
    assert "Traceback" not in text, f"{content!r}\n{text}"
    assert code in (0, 1, 2), f"exit {code}\n{content!r}\n{text}"
    if code != 0:
        assert text.strip(), f"exit {code} without a message\n{content!r}"
        assert not out.exists(), "a failed run wrote weights"
    assert not list(tmp_path.rglob("*.tmp")), "a temporary file was left behind"
