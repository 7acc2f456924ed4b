"""What a run writes never destroys what it reads: ``train --out`` and ``--checkpoint-dir``,
``predict --output`` are refused when they name an input of the run (also through a symlink
or a hard link), and ``--out`` replaces an existing file only when it is a dlrun weights
file, unless ``--force``."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dlrun.runtime.cli import main

NETS = Path(__file__).resolve().parent / "nets"


@pytest.fixture
def run_dir(tmp_path):
    (tmp_path / "data").mkdir()
    text = (NETS / "resume.net").read_text().replace('train "resume.npz"', 'train "data/resume.npz"')
    (tmp_path / "resume.net").write_text(text)
    rng = np.random.default_rng(11)
    y = rng.integers(0, 3, 60)
    x = rng.normal(0, 1, (60, 20)) + y[:, None]
    np.savez(tmp_path / "data" / "resume.npz", x=x.astype(np.float32), y=y)
    return tmp_path


def cli(capsys, *args):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _snapshot(folder):
    return {p: p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}


def _refused(capsys, run_dir, *args, expect):
    before = _snapshot(run_dir)
    code, err = cli(capsys, *args)
    assert code == 2, err
    assert expect in err and "Traceback" not in err and "epoch 1" not in err, err
    assert _snapshot(run_dir) == before  # nothing written, nothing created
    assert not [n for n in os.listdir(run_dir) if n.endswith(".ckpt")]
    return err


def test_out_naming_the_data_or_the_model_file_is_refused(run_dir, capsys):
    net, data = run_dir / "resume.net", run_dir / "data" / "resume.npz"
    err = _refused(capsys, run_dir, "train", net, "--out", data, expect="is the training data of this run")
    assert str(data) in err and "choose another --out" in err
    _refused(capsys, run_dir, "train", net, "--out", net, "--force", expect="is the model file of this run")
    # the same file under another name: a symlink, a hard link, a path through ..
    os.symlink(data, run_dir / "link.npz")
    err = _refused(capsys, run_dir, "train", net, "--out", run_dir / "link.npz", expect="is the training data")
    assert f"(= {data})" in err
    os.link(data, run_dir / "hard.npz")
    _refused(capsys, run_dir, "train", net, "--out", run_dir / "hard.npz", "--force", expect="is the training data")
    _refused(capsys, run_dir, "train", net, "--out", run_dir / "data" / ".." / "resume.net", expect="is the model file")
    # --data-root moves the inputs with it
    other = run_dir / "other"
    shutil.copytree(run_dir / "data", other / "data")
    _refused(capsys, run_dir, "train", net, "--data-root", other, "--out", other / "data" / "resume.npz",
             expect="is the training data")


def test_separate_label_files_are_inputs_too(run_dir, capsys):
    net = run_dir / "resume.net"
    net.write_text(net.read_text().replace('train "data/resume.npz"', 'train "data/x.npy" labels="data/y.npy"'))
    for name in ("x.npy", "y.npy"):
        np.save(run_dir / "data" / name, np.zeros(3))
    _refused(capsys, run_dir, "train", net, "--out", run_dir / "data" / "y.npy", expect="is the training labels")


def test_checkpoint_dir_and_out_must_not_collide(run_dir, capsys):
    net = run_dir / "resume.net"
    _refused(capsys, run_dir, "train", net, "--out", run_dir / "w.npz", "--checkpoint-dir", run_dir / "w.npz",
             expect="is also the checkpoint folder")
    ck = run_dir / "ck"
    code, err = cli(capsys, "train", net, "--quiet", "--epochs", 1, "--checkpoint-dir", ck)
    assert code == 0, err
    newest = Path(os.listdir(ck)[0])
    _refused(capsys, run_dir, "train", net, "--resume", "--checkpoint-dir", ck, "--out", ck / newest,
             expect="is a checkpoint's name in the checkpoint folder")
    # any other name in the folder is fine
    code, err = cli(capsys, "train", net, "--quiet", "--epochs", 1, "--checkpoint-dir", ck, "--out", ck / "w.npz")
    assert code == 0, err


def test_out_replaces_only_weights_files_unless_forced(run_dir, capsys):
    net, out = run_dir / "resume.net", run_dir / "notes.txt"
    out.write_text("my notes")
    err = _refused(capsys, run_dir, "train", net, "--out", out, expect="exists and is not a dlrun weights file")
    assert "--force" in err
    np.savez(run_dir / "arrays.npz", a=np.zeros(2))  # an .npz, but not a weights file
    _refused(capsys, run_dir, "train", net, "--out", run_dir / "arrays.npz", expect="not a dlrun weights file")
    os.symlink(run_dir / "nowhere", run_dir / "dangling.npz")
    _refused(capsys, run_dir, "train", net, "--out", run_dir / "dangling.npz", expect="a dangling symbolic link")
    code, err = cli(capsys, "train", net, "--quiet", "--epochs", 1, "--out", out, "--force")
    assert code == 0, err
    assert out.read_bytes()[:2] == b"PK"
    # a weights file (or a checkpoint) is replaced without asking
    code, err = cli(capsys, "train", net, "--quiet", "--epochs", 1, "--out", out)
    assert code == 0, err


def test_predict_output_naming_an_input_is_refused(run_dir, capsys):
    net = run_dir / "resume.net"
    code, err = cli(capsys, "train", net, "--quiet", "--epochs", 1, "--no-checkpoint")
    assert code == 0, err
    weights = run_dir / "resume.weights.npz"
    np.save(run_dir / "in.npy", np.zeros((4, 20), np.float32))
    _refused(capsys, run_dir, "predict", net, "--weights", weights, "--input", run_dir / "in.npy",
             "--output", run_dir / "in.npy", expect="--output")
    os.symlink(run_dir / "in.npy", run_dir / "out.npy")
    err = _refused(capsys, run_dir, "predict", net, "--weights", weights, "--input", run_dir / "in.npy",
                   "--output", run_dir / "out.npy", expect="is the --input file of this run")
    code, err = cli(capsys, "predict", net, "--weights", weights, "--input", run_dir / "in.npy",
                    "--output", run_dir / "p.csv")
    assert code == 0, err
