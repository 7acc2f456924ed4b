"""Data-parallel training over MPI (runtime/parallel.py): ``mpiexec -n 2`` against one process.

The runs use a short float64 copy of models/digits.net (dense, batch norm, dropout, L2, adam)
and one BLAS thread per process, so the two ranks do not fight over the cores.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dlrun.errors import UsageError
from dlrun.runtime import parallel

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def _mpiexec():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    here = Path(sys.executable).parent / "mpiexec"
    return str(here) if here.exists() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
needs_mpi = pytest.mark.skipif(MPIEXEC is None, reason="mpi4py or mpiexec not installed (pip install '.[mpi]')")

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
for _name in parallel.SIZE_VARIABLES:
    ENV.pop(_name, None)


def _model(tmp_path, dtype="float64", epochs=3, batchnorm=True, data=True):
    text = (MODELS / "digits.net").read_text()
    text = text.replace("epochs=60", f"epochs={epochs} dtype={dtype}")
    if not batchnorm:
        text = text.replace("  batchnorm momentum=0.9\n", "")
    path = tmp_path / f"digits_{dtype}.net"
    path.write_text(text)
    if data and not (tmp_path / "data").exists():
        (tmp_path / "data").symlink_to(MODELS / "data")
    return path


def _run(n, args, timeout=120, script=None):
    cmd = [sys.executable, "-m", "dlrun"] + [str(a) for a in args] if script is None else \
        [sys.executable, str(script)] + [str(a) for a in args]
    if n > 1:
        cmd = [MPIEXEC, "-n", str(n)] + cmd
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def _train(n, model, out, *more):
    r = _run(n, ["train", model, "--out", out, "--json", *more])
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _flat(path):
    with np.load(path) as z:
        keys = sorted(k for k in z.files if k.startswith(("param.", "state.")))
        return np.concatenate([z[k].astype(np.float64).ravel() for k in keys])


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


# -- without mpiexec ----------------------------------------------------------------------
def test_shards_cover_the_batch_in_order():
    for m in (1, 2, 7, 32, 33):
        for size in (1, 2, 3, 8):
            if m < size:
                continue
            parts = [parallel.shard(m, size, r) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == m
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(b - a for a, b in parts) - min(b - a for a, b in parts) <= 1


def test_metric_sums_travel_whole_between_ranks():
    # what the ranks add at the end of an epoch: every running sum, the confusion matrix too
    from dlrun.runtime.metrics import Accumulator

    rng = np.random.default_rng(0)
    a = Accumulator("classification", 3, 8, ("f1", "mae"))
    a.update(rng.standard_normal((8, 3)), rng.integers(0, 3, 8))
    b = Accumulator("classification", 3, 8, ("f1", "mae"))
    b.set_sums(a.sums())
    assert b.result() == a.result() and np.array_equal(b.confusion, a.confusion)


def test_launcher_without_mpi4py_names_the_extra(monkeypatch):
    monkeypatch.setenv("PMI_SIZE", "2")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import fails
    monkeypatch.setattr(parallel, "_WORLD", None)
    with pytest.raises(UsageError, match=r"pip install 'dlrun\[mpi\]'"):
        parallel.world()


def test_one_process_world_without_a_launcher(monkeypatch):
    for name in parallel.SIZE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(parallel, "_WORLD", None)
    w = parallel.world()
    assert (w.rank, w.size, w.parallel) == (0, 1, False)


# -- two ranks ------------------------------------------------------------------------------
@needs_mpi
def test_two_ranks_match_one_in_float64_and_repeat_bit_for_bit(tmp_path):
    model = _model(tmp_path)
    one = _train(1, model, tmp_path / "one.npz", "--no-checkpoint")
    two = _train(2, model, tmp_path / "two.npz", "--no-checkpoint")
    again = _train(2, model, tmp_path / "again.npz", "--no-checkpoint")
    a, b, c = (_flat(tmp_path / f) for f in ("one.npz", "two.npz", "again.npz"))
    assert _rel(a, b) < 1e-9
    assert np.array_equal(b, c)
    for split in ("train", "validation", "test"):
        for k, v in one["metrics"][split].items():
            assert two["metrics"][split][k] == pytest.approx(v, rel=1e-9, abs=1e-12)


@needs_mpi
def test_two_ranks_match_one_in_float32(tmp_path):
    # models/digits.net (dense relu, batch norm, dropout) in float32; the measure is _rel, the
    # norm of the difference of every parameter and statistic over the norm of one process's
    # (measured 1.3e-6; it was 5.5e-4 while the dense bias before batch norm walked on
    # rounding noise: layers/init.py flat_channels)
    model = _model(tmp_path, "float32")
    _train(1, model, tmp_path / "one.npz", "--no-checkpoint")
    _train(2, model, tmp_path / "two.npz", "--no-checkpoint")
    assert _rel(_flat(tmp_path / "one.npz"), _flat(tmp_path / "two.npz")) < 1e-5


@needs_mpi
def test_a_convolutional_model_on_two_ranks_matches_one(tmp_path):
    # per-channel batch norm of images, pooling, dropout
    text = (MODELS / "digits_cnn.net").read_text().replace("epochs=40", "epochs=1 dtype=float64")
    model = tmp_path / "cnn.net"
    model.write_text(text)
    (tmp_path / "data").symlink_to(MODELS / "data")
    _train(1, model, tmp_path / "one.npz", "--no-checkpoint")
    _train(2, model, tmp_path / "two.npz", "--no-checkpoint")
    assert _rel(_flat(tmp_path / "one.npz"), _flat(tmp_path / "two.npz")) < 1e-9


TEXT_MODEL = """dlrun 1
model txt {
  data {
    train "txt.csv"
    validation 0.2
    text text
    label language
    tokens chars max_length=32
  }
  input 32
  embedding 8
  conv1d 16 3
  batchnorm
  relu
  global_maxpool
  dropout 0.2
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=2e-3
  train epochs=3 batch=16 seed=1 dtype=float64
}
"""


@needs_mpi
def test_a_text_model_on_two_ranks_matches_one(tmp_path):
    # the embedding writes the gradient of its batch's rows only: after an allreduce the
    # other rows hold the other rank's, which must not leak into the next step
    rng = np.random.default_rng(0)
    letters = {"a": "abcde ", "b": "fghij ", "c": "klmno "}
    rows = ["text,language"]
    for _ in range(300):
        lang = str(rng.choice(list(letters)))
        word = "".join(rng.choice(list(letters[lang]), int(rng.integers(3, 30)))).strip() or "x"
        rows.append(f"{word},{lang}")
    (tmp_path / "txt.csv").write_text("\n".join(rows) + "\n")
    model = tmp_path / "txt.net"
    model.write_text(TEXT_MODEL)
    _train(1, model, tmp_path / "one.npz", "--no-checkpoint")
    _train(2, model, tmp_path / "two.npz", "--no-checkpoint")
    assert _rel(_flat(tmp_path / "one.npz"), _flat(tmp_path / "two.npz")) < 1e-9


@needs_mpi
def test_resume_with_the_same_and_with_another_number_of_ranks(tmp_path):
    model = _model(tmp_path, epochs=4)
    _train(2, model, tmp_path / "full2.npz", "--checkpoint-dir", tmp_path / "ck_full")
    _train(1, model, tmp_path / "full1.npz", "--no-checkpoint")
    for n, ck in ((2, "ck_a"), (1, "ck_b")):
        _train(2, model, tmp_path / f"half_{ck}.npz", "--epochs", 2, "--checkpoint-dir", tmp_path / ck)
        _train(n, model, tmp_path / f"resumed_{ck}.npz", "--resume", "--checkpoint-dir", tmp_path / ck)
    # the same number of ranks: as the uninterrupted run, bit for bit
    assert np.array_equal(_flat(tmp_path / "full2.npz"), _flat(tmp_path / "resumed_ck_a.npz"))
    # the checkpoint does not depend on the ranks: one process continues it
    assert _rel(_flat(tmp_path / "full1.npz"), _flat(tmp_path / "resumed_ck_b.npz")) < 1e-9


@needs_mpi
def test_a_signal_seen_by_one_rank_stops_both_at_the_same_batch(tmp_path):
    # as SIGINT would: rank 1 alone has its stop flag set in the middle of epoch 2
    model = _model(tmp_path, epochs=3)
    script = tmp_path / "stops.py"
    script.write_text(textwrap.dedent("""
        import sys, dlrun
        from dlrun.runtime.checkpoint import Interrupted, open_checkpointer
        from dlrun.runtime.parallel import world
        m = dlrun.load(sys.argv[1])
        ck = open_checkpointer(sys.argv[2], m, writer=world().lead, class_names=m.splits().class_names)
        if world().rank == 1:
            calls = [0]
            backward = m.network.backward
            def flagging(grad):
                calls[0] += 1
                if calls[0] == 50:
                    ck.stop_signal = 2
                return backward(grad)
            m.network.backward = flagging
        try:
            m.fit(checkpoint=ck)
        except Interrupted as err:
            print(f"interrupted {world().rank}: {err}")
            sys.exit(err.exit_code)
    """))
    r = _run(2, [model, tmp_path / "ck"], script=script, timeout=60)
    assert r.returncode == 130, r.stderr
    # rank 0 says where (rank 1's Interrupted has no message: the CLI prints nothing there)
    assert "interrupted 0: interrupted by SIGINT at epoch 2, after batch 10/40" in r.stdout, r.stdout
    assert "interrupted 1: \n" in r.stdout, r.stdout
    _train(2, model, tmp_path / "resumed.npz", "--resume", "--checkpoint-dir", tmp_path / "ck")
    _train(2, model, tmp_path / "full.npz", "--no-checkpoint")
    assert np.array_equal(_flat(tmp_path / "full.npz"), _flat(tmp_path / "resumed.npz"))


@needs_mpi
def test_a_rank_that_raises_ends_every_rank(tmp_path):
    model = _model(tmp_path)
    script = tmp_path / "fails.py"
    script.write_text(textwrap.dedent(f"""
        import sys, dlrun
        from dlrun.runtime.parallel import world
        m = dlrun.load(sys.argv[1])
        if world().rank == 1:
            calls = [0]
            backward = m.network.backward
            def failing(grad):
                calls[0] += 1
                if calls[0] == 5:
                    raise RuntimeError("disk on fire")
                return backward(grad)
            m.network.backward = failing
        m.fit()
        print("finished", world().rank)
    """))
    r = _run(2, [model], script=script, timeout=60)
    assert r.returncode != 0
    assert "rank 1: RuntimeError: disk on fire" in r.stderr
    assert "finished" not in r.stdout


@needs_mpi
def test_a_rank_leaving_on_an_uncaught_exception_ends_every_rank(tmp_path):
    # outside fit: without the hook, rank 1 would wait in MPI_Finalize and rank 0 in the
    # collective forever
    script = tmp_path / "leaves.py"
    script.write_text(textwrap.dedent("""
        from dlrun.runtime.parallel import world
        w = world()
        if w.rank == 1:
            raise ValueError("no such thing")
        w.sum([1.0])
        print("rank 0 passed")
    """))
    r = _run(2, [], script=script, timeout=60)
    assert r.returncode != 0
    assert "rank 1: uncaught ValueError" in r.stderr and "rank 0 passed" not in r.stdout


@needs_mpi
def test_an_input_error_is_reported_once_with_exit_2(tmp_path):
    model = _model(tmp_path, data=False)
    r = _run(2, ["train", model, "--no-checkpoint"])  # no data next to it
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("digits.npz") == 1, r.stderr
    assert "Traceback" not in r.stderr


@needs_mpi
def test_an_error_found_on_rank_0_alone_ends_every_rank_with_exit_2(tmp_path):
    model = _model(tmp_path)
    out = tmp_path / "missing" / "deeper" / "w.npz"   # rank 0 alone checks where it writes
    r = _run(2, ["train", model, "--out", out, "--no-checkpoint"], timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("does not exist") == 1, r.stderr


@needs_mpi
def test_a_batch_smaller_than_the_ranks_is_refused(tmp_path):
    model = _model(tmp_path, batchnorm=False)  # 1257 rows in batches of 4: the last has 1
    r = _run(2, ["train", model, "--batch-size", 4, "--no-checkpoint"])
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("cannot be split between 2 processes") == 1, r.stderr


# -- the other commands under mpiexec ------------------------------------------------------------
def _launched(monkeypatch, rank, size=2):
    for name in parallel.SIZE_VARIABLES + parallel.RANK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PMI_SIZE", str(size))
    monkeypatch.setenv("PMI_RANK", str(rank))
    monkeypatch.setattr(parallel, "_WORLD", None)


def test_every_command_says_how_it_runs_under_mpiexec():
    from dlrun.runtime import cli

    for name, (_, _, mode) in cli.COMMANDS.items():
        assert mode in ("parallel", "rank0", "refuse"), name
        assert (mode == "refuse") == (name in cli._REFUSED), name


ALONE = {  # command -> its arguments (never read: the command's run is replaced)
    "eval": ["m.net", "--weights", "w.npz"], "predict": ["m.net", "--weights", "w.npz", "--input", "x.npy",
                                                       "--output", "p.csv"],
    "export": ["m.net", "--weights", "w.npz", "--output", "m.onnx"], "check": ["m.net"], "summary": ["m.net"],
    "fmt": ["m.net", "--write"],
}


@pytest.mark.parametrize("command", sorted(ALONE))
@pytest.mark.parametrize("rank", [0, 1])
def test_a_command_that_is_not_data_parallel_runs_on_rank_0_alone(monkeypatch, capsys, command, rank):
    import importlib

    from dlrun.runtime import cli

    _launched(monkeypatch, rank)
    calls = []
    module = importlib.import_module(cli.COMMANDS[command][0])
    monkeypatch.setattr(module, "run", lambda name, args: calls.append(name) or 0)
    assert cli.main([command] + ALONE[command]) == 0
    out, err = capsys.readouterr()
    assert calls == ([command] if rank == 0 else [])  # rank 1 neither prints nor writes
    assert out == ""
    assert err == ("" if rank else f"dlrun {command}: rank 0 of 2 runs it alone (it does not run "
                                   f"data-parallel; the other processes exit)\n")


@pytest.mark.parametrize("command", ["gradcheck", "time"])
@pytest.mark.parametrize("rank", [0, 1])
def test_gradcheck_and_time_are_refused_under_mpiexec_said_once(monkeypatch, capsys, command, rank):
    import importlib

    from dlrun.runtime import cli

    _launched(monkeypatch, rank)
    module = importlib.import_module(cli.COMMANDS[command][0])
    monkeypatch.setattr(module, "run", lambda name, args: pytest.fail("ran"))
    assert cli.main([command, "m.net"]) == 2
    err = capsys.readouterr().err
    if rank:
        assert err == ""
    else:
        assert f"dlrun {command} does not run data-parallel" in err and "run it without mpiexec" in err


def test_a_bad_command_line_under_mpiexec_is_reported_by_rank_0_alone(monkeypatch, capsys):
    from dlrun.runtime import cli

    for rank in (0, 1):
        _launched(monkeypatch, rank)
        assert cli.main(["eval", "m.net"]) == 2
        err = capsys.readouterr().err
        assert ("--weights" in err) == (rank == 0), err


@needs_mpi
def test_eval_predict_and_check_print_once_under_mpiexec(tmp_path):
    model = _model(tmp_path, epochs=1)
    _train(1, model, tmp_path / "w.npz", "--no-checkpoint")
    r = _run(2, ["eval", model, "--weights", tmp_path / "w.npz", "--json"])
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 1 and json.loads(r.stdout)["model"] == "digits"
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((3, 64)))
    r = _run(2, ["predict", model, "--weights", tmp_path / "w.npz", "--input", x])
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("label") == 1 and len(r.stdout.splitlines()) == 4, r.stdout
    assert r.stderr.count("rank 0 of 2 runs it alone") == 1, r.stderr
    r = _run(2, ["check", model])
    assert r.returncode == 0 and r.stdout.count(": ok:") == 1, r.stdout
    r = _run(2, ["time", model, "--rounds", 1])
    assert r.returncode == 2 and r.stderr.count("does not run data-parallel") == 1, r.stderr
    assert r.stdout == ""


@needs_mpi
def test_model_save_under_mpiexec_is_written_by_rank_0_alone(tmp_path):
    # every rank calls save; rank 0 writes (slowly here), the others return once it is written
    model = _model(tmp_path, epochs=1)
    script = tmp_path / "saves.py"
    script.write_text(textwrap.dedent("""
        import sys, time, numpy as np, dlrun
        from dlrun.runtime import weights
        from dlrun.runtime.parallel import world
        rank = world().rank
        log = open(f"{sys.argv[3]}.{rank}", "w")  # a file per rank: lines on stdout interleave
        write = weights.replace_atomically
        def slow(*a, **k):
            print("writes", file=log, flush=True)
            time.sleep(1.0)
            return write(*a, **k)
        weights.replace_atomically = slow
        m = dlrun.load(sys.argv[1])
        m.fit()
        path = m.save(sys.argv[2])
        with np.load(path) as z:  # complete when save returns, on every rank
            print(f"read {len(z.files)} arrays", file=log, flush=True)
        try:
            m.save(sys.argv[1])  # the model file itself: refused by rank 0, raised on every rank
        except dlrun.UsageError as err:
            print(f"refused: {'the model file' in str(err)}", file=log, flush=True)
    """))
    r = _run(2, [model, tmp_path / "w.npz", tmp_path / "log"], script=script, timeout=120)
    assert r.returncode == 0, r.stderr
    logs = [(tmp_path / f"log.{rank}").read_text().splitlines() for rank in (0, 1)]
    assert logs[0][0] == "writes" and "writes" not in logs[1], logs
    assert logs[1][0].startswith("read ") and logs[1][0] == logs[0][1], logs
    assert logs[0][-1] == logs[1][-1] == "refused: True", logs
