"""Hostile data files given to ``dlrun train`` (and ``predict``): every case a clear
one-line message naming the file (and row/column where it applies), exit 2, no traceback,
refused before training starts, and no weights or checkpoint file left behind."""
import gzip
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from dlrun.runtime.cli import main

CSV_NET = """dlrun 1
model c {{
  data {{
    train "{train}"
    label y
  }}
  input 3
  dense 4 tanh
  dense {classes} softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=2 batch=4 seed=0
}}
"""

NPZ_NET = """dlrun 1
model z {{
  data {{
    train "{train}"
  }}
  input {shape}
  dense 4 tanh
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=2 batch=4 seed=0
}}
"""

IDX_NET = """dlrun 1
model i {
  data {
    train "train-images-idx3-ubyte.gz" labels="train-labels-idx1-ubyte.gz"
    scale 1/255
  }
  input 4x4
  flatten
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=2 batch=4 seed=0
}
"""

GOOD_CSV = "a,b,c,y\n" + "".join(f"{i % 5},{i % 3}.5,{i % 7},{'xyz'[i % 3]}\n" for i in range(12))


def _idx(dtype_code, shape, payload):
    return struct.pack(">BBBB", 0, 0, dtype_code, len(shape)) + b"".join(struct.pack(">I", d) for d in shape) + payload


def _good_idx(folder, n=12):
    images = _idx(0x08, (n, 4, 4), bytes((i * 7) % 256 for i in range(n * 16)))
    labels = _idx(0x08, (n,), bytes(i % 3 for i in range(n)))
    return gzip.compress(images), gzip.compress(labels)


def _cases(folder: Path):
    """(name, model text, files to write {name: bytes or None for a directory}, expected message parts)."""
    good_npz = folder / "_good.npz"
    rng = np.random.default_rng(0)
    np.savez(good_npz, x=rng.normal(0, 1, (12, 3)).astype(np.float32), y=np.arange(12) % 3)
    npz_bytes = good_npz.read_bytes()
    images, labels = _good_idx(folder)

    def npz(**arrays):
        p = folder / "_tmp.npz"
        np.savez(p, **arrays)
        return p.read_bytes()

    x = rng.normal(0, 1, (12, 3)).astype(np.float32)
    y = np.arange(12) % 3
    obj = np.empty(12, dtype=object)
    obj[:] = [str(i) for i in range(12)]
    def csv(text):
        return CSV_NET.format(train="d.csv", classes=3), {"d.csv": text.encode("latin-1")}

    return [
        # CSV
        ("csv text in a numeric column", *csv(GOOD_CSV.replace("2,2.5,2,z", "2,abc,2,z", 1)),
         ["d.csv", "line 4", "'b'", "abc"]),
        ("csv ragged row", *csv(GOOD_CSV.replace("\n1,1.5,1,y\n", "\n1,1.5,y\n", 1)), ["d.csv", "line 3", "3 cells", "4 columns"]),
        ("csv wrong column count", *csv("a,b,y\n" + "".join(f"{i},{i},{'xyz'[i % 3]}\n" for i in range(12))),
         ["d.csv", "2 feature", "3"]),
        ("csv NaN", *csv(GOOD_CSV.replace("\n1,1.5,1,y\n", "\n1,nan,1,y\n", 1)), ["d.csv", "line 3, column 2", "nan"]),
        ("csv Inf", *csv(GOOD_CSV.replace("\n1,1.5,1,y\n", "\n1,1.5,inf,y\n", 1)), ["d.csv", "inf"]),
        ("csv more classes than outputs", CSV_NET.format(train="d.csv", classes=2), {"d.csv": GOOD_CSV.encode()},
         ["d.csv", "3 classes", "2"]),
        ("csv empty file", *csv(""), ["d.csv", "empty"]),
        ("csv header only", *csv("a,b,c,y\n"), ["d.csv"]),
        ("csv binary garbage", *csv("\x00\x01\x02\xff garbage"), ["d.csv"]),
        ("csv no label column", *csv(GOOD_CSV.replace("a,b,c,y", "a,b,c,label")), ["d.csv", "'y'"]),
        ("csv is a directory", CSV_NET.format(train="d.csv", classes=3), {"d.csv": None}, ["d.csv", "directory"]),
        ("csv missing", CSV_NET.format(train="nothere.csv", classes=3), {}, ["nothere.csv"]),
        # npz / npy
        ("npz truncated", NPZ_NET.format(train="d.npz", shape=3), {"d.npz": npz_bytes[: len(npz_bytes) // 2]},
         ["d.npz"]),
        ("npz empty file", NPZ_NET.format(train="d.npz", shape=3), {"d.npz": b""}, ["d.npz", "empty"]),
        ("npz not a zip", NPZ_NET.format(train="d.npz", shape=3), {"d.npz": b"hello, not a zip file"}, ["d.npz", "not an .npz file"]),
        ("npz NaN", NPZ_NET.format(train="d.npz", shape=3),
         {"d.npz": npz(x=np.where(np.arange(36).reshape(12, 3) == 7, np.nan, x), y=y)}, ["d.npz", "sample 2, feature 1", "nan"]),
        ("npz Inf", NPZ_NET.format(train="d.npz", shape=3),
         {"d.npz": npz(x=np.where(np.arange(36).reshape(12, 3) == 7, -np.inf, x), y=y)}, ["d.npz", "inf"]),
        ("npz label outside the classes", NPZ_NET.format(train="d.npz", shape=3),
         {"d.npz": npz(x=x, y=np.where(y == 2, 7, y))}, ["d.npz", "7"]),
        ("npz negative label", NPZ_NET.format(train="d.npz", shape=3),
         {"d.npz": npz(x=x, y=np.where(y == 2, -1, y))}, ["d.npz", "-1"]),
        ("npz wrong feature count", NPZ_NET.format(train="d.npz", shape=5), {"d.npz": npz(x=x, y=y)},
         ["d.npz", "3", "5"]),
        ("npz without y", NPZ_NET.format(train="d.npz", shape=3), {"d.npz": npz(x=x)}, ["d.npz", "'y'"]),
        ("npz x and y lengths differ", NPZ_NET.format(train="d.npz", shape=3), {"d.npz": npz(x=x, y=y[:5])},
         ["d.npz", "12", "5"]),
        ("npz pickled object array", NPZ_NET.format(train="d.npz", shape=3), {"d.npz": npz(x=x, y=obj)},
         ["d.npz", "pickle"]),
        ("npz text in x", NPZ_NET.format(train="d.npz", shape=3), {"d.npz": npz(x=x.astype(str), y=y)}, ["d.npz"]),
        ("npz is a directory", NPZ_NET.format(train="d.npz", shape=3), {"d.npz": None}, ["d.npz", "directory"]),
        ("npz missing", NPZ_NET.format(train="gone.npz", shape=3), {}, ["gone.npz"]),
        # IDX (.gz)
        ("idx gz truncated", IDX_NET, {"train-images-idx3-ubyte.gz": images[: len(images) // 2],
                                       "train-labels-idx1-ubyte.gz": labels}, ["train-images-idx3-ubyte.gz"]),
        ("idx gz not gzip", IDX_NET, {"train-images-idx3-ubyte.gz": b"plain bytes, no gzip",
                                      "train-labels-idx1-ubyte.gz": labels}, ["train-images-idx3-ubyte.gz"]),
        ("idx bad magic", IDX_NET, {"train-images-idx3-ubyte.gz": gzip.compress(b"\x12\x34" + gzip.decompress(images)[2:]),
                                    "train-labels-idx1-ubyte.gz": labels}, ["train-images-idx3-ubyte.gz"]),
        ("idx payload short", IDX_NET, {"train-images-idx3-ubyte.gz": gzip.compress(gzip.decompress(images)[:-10]),
                                        "train-labels-idx1-ubyte.gz": labels}, ["train-images-idx3-ubyte.gz"]),
        ("idx label count differs", IDX_NET, {"train-images-idx3-ubyte.gz": images,
                                              "train-labels-idx1-ubyte.gz": gzip.compress(_idx(0x08, (5,), bytes(5)))},
         ["idx1-ubyte.gz"]),
        ("idx label outside the classes", IDX_NET, {"train-images-idx3-ubyte.gz": images,
                                                    "train-labels-idx1-ubyte.gz": gzip.compress(_idx(0x08, (12,), bytes([9] * 12)))},
         ["9"]),
        ("idx empty file", IDX_NET, {"train-images-idx3-ubyte.gz": b"", "train-labels-idx1-ubyte.gz": labels},
         ["train-images-idx3-ubyte.gz"]),
    ]


def _prepare(folder, text, files):
    net = folder / "m.net"
    net.write_text(text)
    for name, content in files.items():
        p = folder / name
        if content is None:
            p.mkdir()
        else:
            p.write_bytes(content)
    return net


def _names(tmp):
    return [c[0] for c in _cases(Path(tmp))]


CASE_NAMES = _names(tempfile.mkdtemp())


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_training_data(name, tmp_path, capsys):
    case = {c[0]: c for c in _cases(tmp_path)}[name]
    _, text, files, expected = case
    work = tmp_path / "work"
    work.mkdir()
    net = _prepare(work, text, files)
    code = main(["train", str(net)])  # an unexpected exception would fail this test
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert lines, "no message"
    for part in expected:
        assert part in err, (part, err)
    assert "epoch 1" not in err  # refused before training
    # nothing written: no weights, no checkpoint folder, no temporary file
    assert sorted(os.listdir(work)) == sorted(["m.net", *files]), os.listdir(work)
    assert not list(work.rglob("*.tmp")) and not list(work.rglob("ckpt-*"))


def _unprivileged(args, folder):
    """Run ``dlrun`` where the file permissions apply: as root, drop to uid 65534 after
    importing (root reads every file whatever its mode)."""
    code = ("import importlib, os, pkgutil, sys\n"
            "import numpy, scipy, lark, tqdm, dlrun, csv, gzip, zipfile, json\n"
            "from dlrun.runtime import cli\n"
            "# everything the run may import or read lazily, loaded while still allowed to\n"
            "import scipy.linalg.cython_blas, dlrun.dsl, dlrun.kernels, dlrun.runtime, dlrun.runtime.layers\n"
            "for pkg in (dlrun, dlrun.dsl, dlrun.kernels, dlrun.runtime, dlrun.runtime.layers):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + '.'):\n"
            "        if m.name.endswith('__main__'):\n"
            "            continue\n"
            "        try:\n"
            "            importlib.import_module(m.name)\n"
            "        except ImportError as e:   # a module of an extra not installed (dlrun.sklearn)\n"
            "            if \"dlrun[\" not in str(e):\n"
            "                raise\n"
            "try:\n"
            "    dlrun.dsl.parse(open(sys.argv[2]).read(), sys.argv[2])\n"
            "except Exception:\n"
            "    pass\n"
            "if os.geteuid() == 0:\n"
            "    os.setgid(65534); os.setuid(65534)\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=folder)


@pytest.fixture
def open_folder():
    """A folder anyone can enter (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="dlrun-hostile-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_unreadable_data_file(open_folder):
    net = _prepare(open_folder, CSV_NET.format(train="d.csv", classes=3), {"d.csv": GOOD_CSV.encode()})
    net.chmod(0o644)
    (open_folder / "d.csv").chmod(0o000)
    p = _unprivileged(["train", net, "--out", open_folder / "w.npz"], open_folder)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, p.stderr
    assert "d.csv" in p.stderr and ("permission" in p.stderr.lower() or "cannot read" in p.stderr), p.stderr
    assert not (open_folder / "w.npz").exists()


def test_unwritable_output_folder_is_reported_before_training(open_folder):
    net = _prepare(open_folder, CSV_NET.format(train="d.csv", classes=3), {"d.csv": GOOD_CSV.encode()})
    for f in (net, open_folder / "d.csv"):
        f.chmod(0o644)
    locked = open_folder / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    # weights file in a folder the user cannot write
    p = _unprivileged(["train", net, "--out", locked / "w.npz", "--checkpoint-dir", open_folder / "ck"], open_folder)
    assert "Traceback" not in p.stderr and p.returncode == 2, p.stderr
    assert "cannot write" in p.stderr and str(locked) in p.stderr and "epoch 1" not in p.stderr, p.stderr
    # checkpoint folder that cannot be created / written
    for ck in (locked / "ck", locked):
        p = _unprivileged(["train", net, "--out", open_folder / "w.npz", "--checkpoint-dir", ck], open_folder)
        assert "Traceback" not in p.stderr and p.returncode == 2, p.stderr
        assert str(locked) in p.stderr and "epoch 1" not in p.stderr, p.stderr
    # predictions to a folder that cannot be written: before the model is even loaded
    p = _unprivileged(["predict", net, "--weights", open_folder / "none.npz", "--input", open_folder / "d.csv",
                       "--output", locked / "p.csv"], open_folder)
    assert p.returncode == 2 and "cannot write" in p.stderr, p.stderr
    assert not (open_folder / "w.npz").exists()


def test_hostile_prediction_inputs(tmp_path, capsys):
    work = tmp_path / "w"
    work.mkdir()
    net = _prepare(work, CSV_NET.format(train="d.csv", classes=3), {"d.csv": GOOD_CSV.encode()})
    assert main(["train", str(net), "--quiet", "--out", str(work / "w.npz")]) == 0
    capsys.readouterr()
    bad = {
        "text.csv": b"a,b,c\n1,2,x\n",
        "ragged.csv": b"a,b,c\n1,2,3\n1,2\n",
        "nan.csv": b"a,b,c\n1,nan,3\n",
        "empty.csv": b"",
        "trunc.npy": b"\x93NUMPY\x01\x00",
        "wide.npy": None,
    }
    for name, content in bad.items():
        p = work / name
        if content is None:
            np.save(p, np.zeros((2, 7), np.float32))
        else:
            p.write_bytes(content)
        out = work / f"{name}.pred.csv"
        code = main(["predict", str(net), "--weights", str(work / "w.npz"), "--input", str(p), "--output", str(out)])
        _, err = capsys.readouterr()
        assert code == 2, (name, err)
        assert name in err, (name, err)
        assert not out.exists() and not list(work.glob("*.tmp")), name
