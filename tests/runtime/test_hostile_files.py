"""Inputs that are not regular files (issue 10, item 5): a FIFO, a symlink to one, or a
device as a data file, ``predict --input``, ``--weights``, a checkpoint being resumed, or the
model file. Each is one clear message, exit 2, and never blocks (an alarm guards every call:
opening a FIFO for reading waits for a writer forever)."""
import os
import shutil
import signal
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.runtime.cli import main

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")

NET = """dlrun 1
model f {{
  data {{
    train "{train}"{labels}{label}
  }}
  input 3
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=1 batch=4 seed=0
}}
"""
LABEL = "\n    label y"
CSV = "a,b,c,y\n" + "".join(f"{i % 5},{i % 3},{i % 7},{i % 3}\n" for i in range(12))


@contextmanager
def _deadline(seconds=20):
    def fail(*_):
        raise TimeoutError("blocked reading a non-regular file")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run(args, capsys):
    with _deadline():
        code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _fifo(path):
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("name", ["d.csv", "d.npz", "d.npy", "train-images-idx3-ubyte.gz"])
@pytest.mark.parametrize("how", ["fifo", "symlink to a fifo"])
def test_fifo_as_training_data(tmp_path, capsys, name, how):
    if how == "fifo":
        _fifo(tmp_path / name)
    else:
        _fifo(tmp_path / "pipe")
        (tmp_path / name).symlink_to(tmp_path / "pipe")
    labels = "" if name.endswith((".csv", ".npz")) else ' labels="l.npy"'
    np.save(tmp_path / "l.npy", np.arange(12) % 3)
    (tmp_path / "m.net").write_text(NET.format(train=name, labels=labels, label=LABEL if name.endswith(".csv") else ""))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2, err
    assert name in err and "named pipe (FIFO), not a regular file" in err, err
    assert "Traceback" not in err and not (tmp_path / "w.npz").exists()


def test_fifo_as_labels_file(tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.zeros((12, 3), np.float32))
    _fifo(tmp_path / "l.npy")
    (tmp_path / "m.net").write_text(NET.format(train="x.npy", labels=' labels="l.npy"', label=""))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2 and "l.npy" in err and "not a regular file" in err, err


def test_dev_zero_is_not_a_regular_file(tmp_path, capsys):
    if not os.path.exists("/dev/zero"):
        pytest.skip("no /dev/zero")
    (tmp_path / "d.csv").symlink_to("/dev/zero")
    (tmp_path / "m.net").write_text(NET.format(train="d.csv", labels="", label=LABEL))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2 and "character device, not a regular file" in err and "empty" not in err, err


def test_fifo_as_model_file(tmp_path, capsys):
    _fifo(tmp_path / "m.net")
    for command in (["check"], ["train"], ["summary"], ["fmt"]):
        code, err = _run([*command, tmp_path / "m.net"], capsys)
        assert code == 2 and "m.net" in err and "not a regular file" in err, (command, err)


@pytest.fixture
def trained(tmp_path, capsys):
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "m.net").write_text(NET.format(train="d.csv", labels="", label=LABEL))
    code, err = _run(["train", tmp_path / "m.net", "--quiet", "--out", tmp_path / "w.npz",
                      "--checkpoint-dir", tmp_path / "ck"], capsys)
    assert code == 0, err
    return tmp_path


def test_fifo_as_weights_and_predict_input(trained, capsys):
    d = trained
    _fifo(d / "pipe.npz")
    for command in ("eval", "predict"):
        args = [command, d / "m.net", "--weights", d / "pipe.npz"]
        if command == "predict":
            args += ["--input", d / "d.csv"]
        code, err = _run(args, capsys)
        assert code == 2 and "pipe.npz" in err and "not a regular file" in err, (command, err)
    _fifo(d / "in.csv")
    code, err = _run(["predict", d / "m.net", "--weights", d / "w.npz", "--input", d / "in.csv",
                      "--output", d / "p.csv"], capsys)
    assert code == 2 and "in.csv" in err and "not a regular file" in err, err
    assert not (d / "p.csv").exists()


def test_fifo_checkpoint_in_the_resumed_folder(trained, capsys):
    d = trained
    ck = d / "ck"
    good = sorted(p.name for p in ck.glob("ckpt-*.npz"))[-1]
    _fifo(ck / "ckpt-000099-000000.npz")  # looks newest
    code, err = _run(["train", d / "m.net", "--resume", "--epochs", "2", "--checkpoint-dir", ck,
                      "--out", d / "w2.npz"], capsys)
    assert code == 0, err
    assert "ckpt-000099-000000.npz" in err and "not a regular file" in err, err
    assert f"resuming from {ck / good}" in err, err


# -- issue 10, item 10 (data parts): wording of data errors -----------------------------------
def test_empty_npz_says_it_contains_no_arrays(tmp_path, capsys):
    np.savez(tmp_path / "e.npz")
    (tmp_path / "d.csv").write_text(CSV)
    (tmp_path / "m.net").write_text(NET.format(train="d.csv", labels="", label=LABEL))
    assert _run(["train", tmp_path / "m.net", "--quiet", "--out", tmp_path / "w.npz"], capsys)[0] == 0
    code, err = _run(["predict", tmp_path / "m.net", "--weights", tmp_path / "w.npz", "--input", tmp_path / "e.npz"],
                     capsys)
    assert code == 2 and "e.npz: contains no arrays" in err and "more than one" not in err, err
    (tmp_path / "m.net").write_text(NET.format(train="e.npz", labels="", label=""))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w2.npz"], capsys)
    assert code == 2 and "e.npz: contains no arrays" in err, err


def test_a_huge_bad_csv_cell_is_quoted_short(tmp_path, capsys):
    cell = "x" * 100_000
    (tmp_path / "d.csv").write_text(CSV.replace("\n2,2,2,2\n", f"\n2,{cell},2,2\n", 1))
    (tmp_path / "m.net").write_text(NET.format(train="d.csv", labels="", label=LABEL))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2 and "line 4, column 2 'b'" in err and "(100000 characters)" in err, err[:500]
    assert len(err) < 1000, len(err)
    # a header of 200,000 columns (a 1.4 MB line) without the label column: not listed in full
    (tmp_path / "d.csv").write_text(",".join(f"c{i}" for i in range(200_000)) + "\n" + ",".join(["1"] * 200_000) + "\n")
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2 and "no label column named 'y'" in err and "(199980 more)" in err, err[:500]
    assert len(err) < 1000, len(err)


@pytest.mark.parametrize("cell", ["1_000", "1_0.5", "١٢", "１２"])
def test_python_only_number_spellings_are_refused(tmp_path, capsys, cell):
    # float() reads all of these; a CSV number has no digit-group underscores and ASCII digits
    (tmp_path / "d.csv").write_text(CSV.replace("\n2,2,2,2\n", f"\n2,{cell},2,2\n", 1), encoding="utf-8")
    (tmp_path / "m.net").write_text(NET.format(train="d.csv", labels="", label=LABEL))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2 and f"expected a number, got '{cell}'" in err, err


# -- issue 10, item 6: archives are not decompressed before their headers are checked ---------
def _npz_with_unused_member(path, x, y, unused_bytes):
    """An .npz holding x, y and a member 'unused' of ``unused_bytes`` zeros, deflated (a
    few hundred KB on disk), written in pieces."""
    import zipfile

    np.savez(path, x=x, y=y)
    header = {"descr": "|u1", "fortran_order": False, "shape": (unused_bytes,)}
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("unused.npy", "w", force_zip64=True) as m:
            np.lib.format.write_array_header_1_0(m, header)
            piece = bytes(1 << 20)
            for _ in range(unused_bytes >> 20):
                m.write(piece)
    return path


def test_an_unused_npz_member_is_never_decompressed(tmp_path, capsys):
    import tracemalloc

    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (12, 3)).astype(np.float32), np.arange(12) % 3
    _npz_with_unused_member(tmp_path / "d.npz", x, y, 256 << 20)
    assert (tmp_path / "d.npz").stat().st_size < 2 << 20
    (tmp_path / "m.net").write_text(NET.format(train="d.npz", labels="", label=""))
    tracemalloc.start()
    try:
        code, err = _run(["train", tmp_path / "m.net", "--quiet", "--out", tmp_path / "w.npz"], capsys)
        assert code == 0, err
        code, err = _run(["predict", tmp_path / "m.net", "--weights", tmp_path / "w.npz", "--input", tmp_path / "d.npz",
                          "--output", tmp_path / "p.csv"], capsys)
        assert code == 0, err
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB: the unused member was decompressed"


def test_declared_shapes_are_checked_against_the_model_before_decompressing(tmp_path, capsys):
    """An IDX .gz declaring 1x5x1e9 values, and an .npz whose x declares 256 MB of 1-feature
    rows, against an input of 3 features: refused from the header, nothing decompressed."""
    import gzip
    import struct
    import tracemalloc

    header = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", 1, 5, 1_000_000_000)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as g:
        g.write(header)
        piece = bytes(1 << 20)
        for _ in range(256):
            g.write(piece)
    np.save(tmp_path / "l.npy", np.zeros(1, np.int64))
    (tmp_path / "i.net").write_text(NET.format(train="train-images-idx3-ubyte.gz", labels=' labels="l.npy"', label=""))
    import zipfile

    with zipfile.ZipFile(tmp_path / "d.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("x.npy", "w", force_zip64=True) as m:
            np.lib.format.write_array_header_1_0(m, {"descr": "|u1", "fortran_order": False, "shape": (256 << 20, 1)})
            for _ in range(256):
                m.write(piece)
        z.writestr("y.npy", b"")
    (tmp_path / "z.net").write_text(NET.format(train="d.npz", labels="", label=""))
    tracemalloc.start()
    try:
        code, err = _run(["train", tmp_path / "i.net", "--out", tmp_path / "w.npz"], capsys)
        assert code == 2 and "5000000000 features per sample" in err and "3 features" in err, err
        code, err = _run(["train", tmp_path / "z.net", "--out", tmp_path / "w.npz"], capsys)
        assert code == 2 and "1 features per sample" in err and "3 features" in err, err
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"peak {peak / 2**20:.0f} MiB"


# -- issue 9, "Also": data messages name the right file and line -------------------------------
def _iris_like(rows, classes):
    return "a,b,c,y\n" + "".join(f"{i % 5},{i % 3},{i % 7},{classes[i % len(classes)]}\n" for i in range(rows))


def test_a_class_only_in_the_test_file_is_blamed_on_the_test_file(tmp_path, capsys):
    (tmp_path / "train.csv").write_text(_iris_like(12, "pqr"))
    (tmp_path / "test.csv").write_text(_iris_like(6, "pqr").replace("\n2,2,2,r\n", "\n2,2,2,s\n"))
    (tmp_path / "m.net").write_text(NET.format(train="train.csv", labels="", label=LABEL + '\n    test "test.csv"'))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2, err
    assert "test.csv: line 4, column 4 'y': class 's' is not among the 3 classes of the training file" in err, err


def test_paths_are_shown_normalised(tmp_path, capsys):
    (tmp_path / "sub").mkdir()
    (tmp_path / "m.net").write_text(NET.format(train="./sub/../nothere.csv", labels="", label=LABEL))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2 and f"{tmp_path / 'nothere.csv'}: data file not found" in err, err
    assert "/./" not in err and "/../" not in err, err


def test_semicolon_separated_file_gets_a_delimiter_hint(tmp_path, capsys):
    (tmp_path / "d.csv").write_text(CSV.replace(",", ";"))
    (tmp_path / "m.net").write_text(NET.format(train="d.csv", labels="", label=LABEL))
    code, err = _run(["train", tmp_path / "m.net", "--out", tmp_path / "w.npz"], capsys)
    assert code == 2 and "seems to be ';'-separated" in err, err


def test_labels_csv_first_row_taken_as_header_is_said(tmp_path):
    from dlrun.dsl import ir
    from dlrun.runtime import data as D

    np.save(tmp_path / "x.npy", np.zeros((11, 3), np.float32))
    (tmp_path / "l.csv").write_text("".join(f"{i % 3}\n" for i in range(12)))
    src = ir.Source(path="x.npy", labels="l.csv")
    with pytest.warns(dlrun.DataWarning, match=r"line 1 \('0'\) was taken as the header"):
        D.load_splits(ir.Data(train=src), base_dir=tmp_path, input_shape=(3,), n_outputs=3,
                      task="classification", seed=0)
