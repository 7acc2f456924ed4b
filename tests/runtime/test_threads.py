"""``model.predict`` and ``evaluate`` from many threads at once: the same results as
single-threaded, and threads make progress side by side (the kernels release the GIL);
``fit`` runs alone: overlapping calls from other threads are refused."""
import sys
import threading

import numpy as np
import pytest

import dlrun
from dlrun.kernels import dense as kdense

NET = """dlrun 1
model t {
  input 32
  dense 96 relu
  batchnorm
  dropout 0.2
  dense 64 tanh
  dense 5 softmax
  loss cross_entropy
  optimizer adam lr=0.01
  train epochs=3 batch=32 seed=5
}
"""
THREADS = 12


def _data(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 32)).astype(np.float32), rng.integers(0, 5, n)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = dlrun.loads(NET)
    x, y = _data(600, 0)
    model.fit(x, y)
    path = tmp_path_factory.mktemp("threads") / "w.npz"
    model.save(path)
    return model, path


def _run_threads(target, n):
    barrier = threading.Barrier(n)
    errors = []

    def worker(i):
        try:
            barrier.wait()
            target(i)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append((i, err))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    assert not errors, errors


@pytest.mark.parametrize("fresh", [False, True], ids=["trained-model", "loaded-then-threads-first-call"])
def test_concurrent_predict_equals_single_threaded(trained, fresh):
    model, path = trained
    if fresh:  # the first predict of every thread at the same moment (lazy set-up races)
        model = dlrun.loads(NET, weights=path)
    sizes = [1, 7, 64, 100, 256]
    inputs = [_data(333 + 17 * i, 100 + i)[0] for i in range(THREADS)]
    inputs.append(inputs[0].astype(np.float64))        # other dtypes take other paths
    inputs.append((np.abs(inputs[1]) * 40).astype(np.uint8))
    # the references, one thread, before any concurrency
    expected = {(i, bs): model.predict(x, batch_size=bs).copy() for i, x in enumerate(inputs) for bs in sizes}
    results = {}

    def work(i):
        x = inputs[i % len(inputs)]
        for rep in range(3):
            for bs in sizes[rep % 2::2] if rep < 2 else sizes:
                results[(i, bs, rep)] = (i % len(inputs), bs, model.predict(x, batch_size=bs))

    _run_threads(work, THREADS + 2)
    assert len(results) > THREADS
    for (i, bs, rep), (k, bs2, got) in results.items():
        assert got.tobytes() == expected[(k, bs2)].tobytes(), f"thread {i}, batch size {bs}, repetition {rep}"
    # predict_classes too
    labels = model.predict_classes(inputs[0])
    out = [None] * 8
    _run_threads(lambda i: out.__setitem__(i, model.predict_classes(inputs[0])), 8)
    assert all(np.array_equal(o, labels) for o in out)


def _interleaving(call, n_calls=12):
    """Two threads each make ``n_calls`` calls; returns how often the log switches thread.

    With a huge switch interval the interpreter never preempts a thread: if ``call`` held
    the GIL throughout, the first thread would make all its calls before the second makes
    one (one switch). Only a call that releases the GIL lets the other thread in."""
    log = []
    lock = threading.Lock()

    def work(i):
        for _ in range(n_calls):
            call(i)
            with lock:
                log.append(i)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        _run_threads(work, 2)
    finally:
        sys.setswitchinterval(old)
    return sum(a != b for a, b in zip(log, log[1:]))


def test_kernels_release_the_gil_so_threads_progress_together():
    rng = np.random.default_rng(0)
    x = [rng.normal(0, 1, (512, 512)).astype(np.float32) for _ in range(2)]
    w = rng.normal(0, 1, (512, 512)).astype(np.float32)
    b = np.zeros(512, np.float32)
    y = [np.empty((512, 512), np.float32) for _ in range(2)]
    switches = _interleaving(lambda i: kdense.dense_forward(x[i], w, b, y[i], "tanh"))
    assert switches >= 3, f"dense_forward: the threads ran one after the other ({switches} switches)"


def test_predict_lets_other_threads_progress(trained):
    model, _ = trained
    xs = [_data(4096, 7 + i)[0] for i in range(2)]
    switches = _interleaving(lambda i: model.predict(xs[i], batch_size=512))
    assert switches >= 3, f"predict: the threads ran one after the other ({switches} switches)"


class _Paused:
    """A progress object whose first epoch waits until ``go`` is set (``started`` tells the
    test the fit is under way); ``inside`` is called from the fitting thread each epoch."""

    def __init__(self, inside=None):
        self.started, self.go = threading.Event(), threading.Event()
        self.inside = inside

    def start_epoch(self, epoch, epochs, batches):
        if epoch == 1:
            self.started.set()
            assert self.go.wait(120)

    def batch(self, done, running_loss):
        pass

    def end_epoch(self, epoch, metrics):
        if self.inside is not None:
            self.inside()


def test_calls_overlapping_a_fit_from_another_thread_are_refused(trained, tmp_path):
    # issue 9, item 7: two fits on one model interleaved their steps silently
    _, path = trained
    x, y = _data(200, 1)
    model = dlrun.loads(NET)
    progress = _Paused()
    errors = []

    def fit():
        try:
            model.fit(x, y, progress=progress)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    t = threading.Thread(target=fit)
    t.start()
    try:
        assert progress.started.wait(120)
        calls = {"fit()": lambda: model.fit(x, y), "predict()": lambda: model.predict(x),
                 "evaluate()": lambda: model.evaluate(x, y), "save()": lambda: model.save(tmp_path / "s.npz"),
                 "load_weights()": lambda: model.load_weights(path)}
        for name, call in calls.items():
            with pytest.raises(dlrun.UsageError, match=f"{name.replace('(', '[(]').replace(')', '[)]')} "
                                                      "called while fit[(][)] runs on this model in another thread"):
                call()
    finally:
        progress.go.set()
        t.join(300)
    assert not errors, errors
    # the refused calls changed nothing: the weights are those of one fit alone
    ref = dlrun.loads(NET)
    ref.fit(x, y)
    assert model.network.store.flat.tobytes() == ref.network.store.flat.tobytes()
    assert not (tmp_path / "s.npz").exists()
    model.fit(x, y, epochs=1)   # and the model is usable again once the fit is over
    model.predict(x)


def test_a_fit_overlapping_predictions_in_another_thread_is_refused():
    model = dlrun.loads(NET)
    x, y = _data(100, 2)
    with model._guard.reading("predict()"):   # a prediction in progress in this thread
        errors = []
        t = threading.Thread(target=lambda: errors.append(pytest.raises(dlrun.UsageError, model.fit, x, y)))
        t.start()
        t.join(300)
    assert "fit() called while predict(), evaluate() or save() run" in str(errors[0].value)
    model.fit(x, y, epochs=1)


def test_the_fitting_thread_may_predict_and_evaluate_between_epochs():
    x, y = _data(200, 3)
    model = dlrun.loads(NET)
    seen = []
    progress = _Paused(lambda: seen.append((model.evaluate(x, y)["loss"], model.predict(x[:5]).shape)))
    progress.go.set()
    model.fit(x, y, progress=progress)
    assert len(seen) == 3 and all(shape == (5, 5) for _, shape in seen)


def test_concurrent_evaluate_equals_single_threaded(trained):
    # evaluate ran on the network's own buffers: two at once wrote into each other's
    model, _ = trained
    data = [_data(500 + 50 * i, 200 + i) for i in range(6)]
    expected = [model.evaluate(x, y, batch_size=64) for x, y in data]
    got = {}
    _run_threads(lambda i: got.__setitem__(i, [model.evaluate(*data[i % 6], batch_size=64) for _ in range(3)]), 8)
    for i, results in got.items():
        assert all(r == expected[i % 6] for r in results), i
