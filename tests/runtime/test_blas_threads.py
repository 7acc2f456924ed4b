"""BLAS threads (runtime/threads.py): ``--threads N|auto`` on train/eval/predict/time, the
count every OpenBLAS pool (NumPy's and SciPy's) runs during the command, the ``auto`` choice,
and results across thread counts."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import dlrun
from dlrun.errors import UsageError
from dlrun.runtime import cli, threads

MODELS = Path(__file__).resolve().parents[2] / "models"

NET = """dlrun 1
model t {
  input 64
  dense 384 relu
  batchnorm
  dropout 0.2
  dense 256 relu
  dense 10 softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=2 batch=128 seed=3
}
"""


@pytest.fixture
def iris(tmp_path):
    dest = tmp_path / "models"
    shutil.copytree(MODELS, dest, ignore=shutil.ignore_patterns("*.weights.npz"))
    return dest / "iris.net"


def pool_counts():
    return [p["num_threads"] for p in threads.pools()]


@pytest.mark.parametrize("command", ["train", "eval", "predict", "time"])
@pytest.mark.parametrize("bad", ["0", "-1", "x", "1.5", ""])
def test_bad_thread_counts_are_refused(command, bad, iris, capsys):
    extra = {"eval": ["--weights", "w.npz"], "predict": ["--weights", "w.npz", "--input", "x.csv"]}
    code = cli.main([command, str(iris), f"--threads={bad}", *extra.get(command, [])])
    err = capsys.readouterr().err
    assert code == 2
    assert f"--threads: expected a whole number of threads >= 1 or 'auto', got '{bad}'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value, want", [("1", 1), ("2", 2), (" 3 ", 3), ("auto", "auto"), ("AUTO", "auto"),
                                         (4, 4)])
def test_thread_counts_parse(value, want):
    assert threads.parse(value) == want


@pytest.mark.parametrize("bad", [0, -2, True, 2.0, None, "two"])
def test_api_refuses_bad_counts(bad):
    with pytest.raises(UsageError, match="expected a whole number of threads >= 1 or 'auto'"):
        with dlrun.blas_threads(bad):
            pass


@pytest.mark.parametrize("n", [1, 2])
def test_every_blas_pool_runs_the_count_during_training(n, iris, capsys, monkeypatch):
    from dlrun.runtime.api import Model

    seen = []
    fit = Model.fit

    def spying_fit(self, *a, **k):
        seen.append(threads.pools())
        return fit(self, *a, **k)

    monkeypatch.setattr(Model, "fit", spying_fit)
    before = pool_counts()
    assert cli.main(["train", str(iris), "--threads", str(n), "--json", "--no-checkpoint"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["blas_threads"] == n
    pools = seen[0]
    # NumPy's OpenBLAS and the kernels' (SciPy's) are both set, not just one of them
    assert len({p["filepath"] for p in pools}) >= 2, pools
    assert [p["num_threads"] for p in pools] == [n] * len(pools)
    assert pool_counts() == before        # restored after the command


def test_time_and_eval_report_the_count(iris, capsys):
    assert cli.main(["time", str(iris), "--threads", "1", "--rounds", "2", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["blas_threads"] == 1 and got["blas_threads_why"] == "as asked"
    assert cli.main(["time", str(iris), "--threads", "2", "--rounds", "2"]) == 0
    assert "; 2 BLAS threads (as asked)" in capsys.readouterr().out.splitlines()[0]
    assert cli.main(["train", str(iris), "--quiet", "--no-checkpoint"]) == 0
    capsys.readouterr()
    weights = iris.parent / "iris.weights.npz"
    assert cli.main(["eval", str(iris), "--weights", str(weights), "--json", "--threads", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["blas_threads"] == 2
    assert cli.main(["predict", str(iris), "--weights", str(weights), "--input",
                     str(iris.parent / "data" / "iris.csv"), "--threads", "1"]) == 0


def test_auto_takes_the_cores_others_leave_free(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "local_ranks", lambda: 1)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    big = 10 * threads.SMALL_WORK_FLOPS
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.1)
    assert threads.choose("auto", big)[0] == 2
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1.0)      # a busy process on one core
    n, why = threads.choose("auto", big)
    assert n == 1 and "1 of 2 cores free" in why
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 5.0)      # never fewer than one
    assert threads.choose("auto", big)[0] == 1
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    # a small step: one thread, free cores or not
    n, why = threads.choose("auto", threads.SMALL_WORK_FLOPS / 2)
    assert n == 1 and "MFLOP per call" in why
    # an explicit count is taken as given
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 1.0)
    assert threads.choose(2, 1.0) == (2, "as asked")
    # OPENBLAS_NUM_THREADS bounds auto
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert threads.choose("auto", big) == (1, "auto: OPENBLAS_NUM_THREADS=1")


def test_auto_under_mpi_shares_the_cores_between_ranks(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "cores", lambda: 2)
    assert threads.local_ranks({"PMI_SIZE": "2"}) == 2
    assert threads.local_ranks({"PMI_SIZE": "8", "MPI_LOCALNRANKS": "2"}) == 2
    assert threads.local_ranks({}) == 1
    monkeypatch.setenv("MPI_LOCALNRANKS", "2")
    assert threads.choose("auto", 1e12) == (1, "auto: 2 cores shared by 2 MPI ranks")
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 0.0)
    # eval and predict run on rank 0 alone under mpiexec: the cores are its own
    assert threads.choose("auto", 1e12, shared=False) == (2, "auto: 2 of 2 cores free (others busy on 0.0)")


def test_busy_elsewhere_does_not_count_this_process(monkeypatch):
    # this process spinning on one core between two looks is not "others busy"
    threads.busy_elsewhere()
    import time

    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.3:
        pass
    assert threads.busy_elsewhere() < threads.cores()


def test_training_is_identical_on_1_and_2_threads_where_blas_is():
    # OpenBLAS splits these GEMMs (k = 64, 384, 256) over threads without changing any sum;
    # a K of 784 (the MNIST MLP's first layer) it does not: see docs/architecture.md, Threads
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (1024, 64)).astype(np.float32)
    y = rng.integers(0, 10, 1024)
    digests = []
    for n in (1, 2):
        model = dlrun.loads(NET)
        with dlrun.blas_threads(n) as (got, _):
            assert got == n and set(pool_counts()) == {n}
            model.fit(x, y, progress=False)
            p = model.predict(x[:300])
        digests.append([a.tobytes() for _, _, a in model.network.named_params()] + [p.tobytes()])
    assert digests[0] == digests[1]


def test_sgemm_across_thread_counts_agrees_to_rounding():
    # what OpenBLAS does promise for K = 784: the same product to float32 rounding
    rng = np.random.default_rng(1)
    a = rng.random((128, 784), dtype=np.float32)
    b = rng.random((784, 512), dtype=np.float32)
    got = {}
    for n in (1, 2):
        with dlrun.blas_threads(n):
            got[n] = a @ b
    np.testing.assert_allclose(got[1], got[2], rtol=1e-6)


def test_a_stale_last_look_is_not_used(monkeypatch):
    # a look long ago would average over hours: a fresh window is sampled instead
    threads.busy_elsewhere()
    last = threads._last
    monkeypatch.setattr(threads, "_last", (last[0] - 10 * threads.MAX_AGE, (0, 0), 0.0))
    slept = []
    monkeypatch.setattr(threads.time, "sleep", lambda s: slept.append(s))
    threads.busy_elsewhere()
    assert slept == [0.05]
    assert threads._last[0] > last[0]
