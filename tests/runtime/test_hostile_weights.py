"""Hostile weights and checkpoint files through the CLI (``eval``, ``predict``,
``train --resume``): wrong architecture, truncated, pickle-bearing (refused, never
unpickled), newer format, not a weights file at all. Each: a clear message, exit 2, no
traceback, nothing written."""
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from dlrun.runtime import checkpoint as C
from dlrun.runtime.cli import main

NETS = Path(__file__).resolve().parent / "nets"

OTHER_NET = """dlrun 1
model other {
  data {
    train "resume.npz"
  }
  input 20
  dense 32 relu
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=1 batch=16 seed=0
}
"""


class _Evil:
    """Unpickling this creates ``path``: proof that nothing was unpickled if it is absent."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("hw")
    shutil.copy(NETS / "resume.net", d / "resume.net")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    np.savez(d / "resume.npz", x=(rng.normal(0, 1, (60, 20)) + y[:, None]).astype(np.float32), y=y)
    (d / "other.net").write_text(OTHER_NET)
    assert main(["train", str(d / "resume.net"), "--quiet", "--epochs", "2"]) == 0
    assert main(["train", str(d / "other.net"), "--quiet"]) == 0
    return d


def _variants(d: Path, tmp: Path):
    weights = d / "resume.weights.npz"
    data = weights.read_bytes()
    with np.load(weights) as z:
        arrays = {k: z[k] for k in z.files}
    marker = tmp / "unpickled"
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil(str(marker))

    def npz(name, **changes):
        p = tmp / name
        np.savez(p, **{**arrays, **changes})
        return p

    def raw(name, content):
        p = tmp / name
        p.write_bytes(content)
        return p

    return marker, [
        ("wrong architecture", d / "other.weights.npz", ["different architecture", "layer 1 (dense"]),
        ("truncated", raw("trunc.npz", data[: len(data) // 3]), ["trunc.npz", "damaged"]),
        ("one byte short", raw("short.npz", data[:-1]), ["short.npz"]),
        ("empty", raw("empty.npz", b""), ["empty.npz", "empty"]),
        ("a pickle named .npz", raw("pickle.npz", pickle.dumps(_Evil(str(marker)))), ["pickle.npz", "pickle", "refused"]),
        ("pickled object array inside", npz("objarr.npz", **{"param.1.dense.w": evil}), ["objarr.npz", "pickled"]),
        ("newer format", npz("newer.npz", **{"meta.format_version": np.array(7, np.int64)}),
         ["newer.npz", "format 7", "upgrade dlrun"]),
        ("not a weights file", raw("plain.npz", (d / "resume.npz").read_bytes()),
         ["plain.npz", "not a dlrun weights file"]),
        ("NaN parameters", npz("nan.npz", **{"param.1.dense.b": np.full(48, np.nan, np.float32)}),
         ["nan.npz", "NaN"]),
        ("a directory", tmp, ["is a directory"]),
        ("missing", tmp / "absent.npz", ["absent.npz", "no such"]),
    ]


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_hostile_weights_files(trained, tmp_path, capsys, command):
    marker, cases = _variants(trained, tmp_path)
    for name, path, expected in cases:
        args = [command, str(trained / "resume.net"), "--weights", str(path)]
        out = tmp_path / "pred.csv"
        if command == "predict":
            args += ["--input", str(trained / "resume.npz"), "--output", str(out)]
        code = main(args)
        _, err = capsys.readouterr()
        assert code == 2, (name, err)
        for part in expected:
            assert part in err, (name, part, err)
        assert not out.exists()
    assert not marker.exists(), "a pickle was executed"


def test_hostile_checkpoints_on_resume(trained, tmp_path, capsys):
    marker, cases = _variants(trained, tmp_path)
    net = trained / "resume.net"
    good = C.list_checkpoints(trained / "resume.ckpt")[0]
    for name, path, expected in cases:
        if not path.is_file():
            continue
        ck = tmp_path / "ck"
        shutil.rmtree(ck, ignore_errors=True)
        ck.mkdir()
        shutil.copy(path, ck / "ckpt-000009-000000.npz")  # looks newest
        # alone in the folder: resume refuses (every checkpoint damaged), naming the file
        code = main(["train", str(net), "--quiet", "--resume", "--checkpoint-dir", str(ck), "--out",
                     str(tmp_path / "w.npz")])
        _, err = capsys.readouterr()
        assert code == 2, (name, err)
        assert "ckpt-000009-000000.npz" in err and "no intact checkpoint" in err, (name, err)
        assert sorted(os.listdir(ck)) == ["ckpt-000009-000000.npz"]  # nothing removed or written
        # next to a good one: reported, and the good one is used
        shutil.copy(good, ck / Path(good).name)
        code = main(["train", str(net), "--resume", "--epochs", "2", "--checkpoint-dir", str(ck), "--out",
                     str(tmp_path / "w.npz")])
        _, err = capsys.readouterr()
        assert code == 0, (name, err)
        assert "trying the previous checkpoint" in err and f"resuming from {ck / Path(good).name}" in err, (name, err)
    assert not marker.exists(), "a pickle was executed"


def test_checkpoint_of_another_model_is_refused(trained, tmp_path, capsys):
    # the other model's checkpoint folder given to this model
    code = main(["train", str(trained / "resume.net"), "--quiet", "--resume", "--checkpoint-dir",
                 str(trained / "other.ckpt"), "--out", str(tmp_path / "w.npz")])
    _, err = capsys.readouterr()
    assert code == 2 and "the model file changed" in err, err
    assert not (tmp_path / "w.npz").exists()


def _huge_shape(src: Path, dst: Path) -> Path:
    """``src`` with the .npy header of 'param.1.dense.w' (20x48) rewritten to declare
    2000000x48000000 float32 (about 350 TiB), written as a zip with correct CRCs: only the
    header's declared shape is wrong."""
    import zipfile

    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    old = b"'shape': (20, 48), }"
    new = b"'shape': (2000000, 48000000), }"
    data = members["param.1.dense.w.npy"]
    j = data.index(old)
    pad = len(new) - len(old)
    assert data[j + len(old): j + len(old) + pad] == b" " * pad
    members["param.1.dense.w.npy"] = data[:j] + new + data[j + len(old) + pad:]
    with zipfile.ZipFile(dst, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    return dst


def test_a_checkpoint_declaring_a_huge_shape_falls_back(trained, tmp_path, capsys):
    """Issue 10, item 9: reported as damaged before any allocation; resume falls back to the
    intact previous checkpoint; as --weights, exit 2."""
    ck = tmp_path / "ck"
    ck.mkdir()
    good = C.list_checkpoints(trained / "resume.ckpt")[0]
    shutil.copy(good, ck / Path(good).name)
    _huge_shape(Path(good), ck / "ckpt-000009-000000.npz")
    # 349 TiB: np.load's allocation fails ("out of memory", exit 1) on any machine
    code = main(["train", str(trained / "resume.net"), "--resume", "--epochs", "2", "--checkpoint-dir", str(ck),
                 "--out", str(tmp_path / "w.npz")])
    _, err = capsys.readouterr()
    assert code == 0, err
    assert "ckpt-000009-000000.npz: damaged" in err and "trying the previous checkpoint" in err, err
    assert f"resuming from {ck / Path(good).name}" in err, err
    code = main(["eval", str(trained / "resume.net"), "--weights", str(ck / "ckpt-000009-000000.npz")])
    _, err = capsys.readouterr()
    assert code == 2 and "damaged" in err and "Unable to allocate" not in err, err
