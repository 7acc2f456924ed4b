"""Learning-rate schedules (``schedule NAME ...``): the rates against their formulas, in
training (progress, history, JSON) and through checkpoints (a resumed run takes the same
rates and ends bit-identical)."""
import json
import math
import warnings

import numpy as np
import pytest

import dlrun
from dlrun.dsl import ir
from dlrun.dsl.schedules import SCHEDULES
from dlrun.runtime.checkpoint import list_checkpoints
from dlrun.runtime.schedules import RULES, Schedule


def _rates(name, epochs=6, batches=3, lr=0.1, **params):
    full = {p.name: p.default for p in SCHEDULES[name].params if not p.required}
    full.update(params)
    s = Schedule(ir.Schedule(name, full), lr, epochs, batches)
    return [[s.rate(e, b) for b in range(batches)] for e in range(1, epochs + 1)], s


def test_every_schedule_of_the_language_has_a_rule():
    assert set(RULES) == set(SCHEDULES)


@pytest.mark.parametrize("name,params,expected", [
    ("constant", {}, lambda e, b: 0.1),
    ("step", {"every": 2, "gamma": 0.5}, lambda e, b: 0.1 * 0.5 ** ((e - 1) // 2)),
    ("multistep", {"at": (2, 5), "gamma": 0.1}, lambda e, b: 0.1 * 0.1 ** ((e > 2) + (e > 5))),
    ("exponential", {"gamma": 0.9}, lambda e, b: 0.1 * 0.9 ** (e - 1)),
    ("cosine", {"min_lr": 0.01}, lambda e, b: 0.01 + 0.09 * (1 + math.cos(math.pi * ((e - 1) * 3 + b) / 18)) / 2),
])
def test_rates_follow_their_formulas(name, params, expected):
    rates, _ = _rates(name, **params)
    for e, row in enumerate(rates, 1):
        for b, r in enumerate(row):
            assert r == pytest.approx(expected(e, b), rel=1e-12), (e, b)


def test_warmup_ramps_per_batch_then_hands_over():
    rates, _ = _rates("step", every=2, gamma=0.5, warmup=2)
    flat = [r for row in rates for r in row]
    # the first 2 epochs x 3 batches ramp linearly to the step schedule's own rate
    assert flat[:6] == pytest.approx([0.1 * (i + 1) / 6 for i in range(6)])
    assert flat[6:] == pytest.approx([0.05] * 6 + [0.025] * 6)
    cos, _ = _rates("cosine", warmup=1)
    flat = [r for row in cos for r in row]
    assert flat[:3] == pytest.approx([0.1 / 3, 0.2 / 3, 0.1])     # ramp, the full rate, then down
    t = np.arange(15)
    assert flat[3:] == pytest.approx(list(0.1 * (1 + np.cos(np.pi * t / 15)) / 2))


def test_plateau_cuts_after_patience_epochs_without_improvement():
    _, s = _rates("plateau", factor=0.5, patience=2, min_lr=0.02)
    seen = []
    for loss in (1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.5, 0.6, 0.7, 0.8, 0.9):
        seen.append(s.rate(1, 0))
        s.end_epoch({"val_loss": loss})
    # 0.9 is the best until 0.5; two epochs without improvement cut the rate, not below 0.02
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02])
    _, up = _rates("plateau", patience=1, monitor="val_accuracy")
    for acc in (0.5, 0.6, 0.6):
        up.end_epoch({"val_accuracy": acc})
    assert up.cuts == 1   # larger is better for an accuracy: the repeated 0.6 is no improvement


def test_a_warmup_as_long_as_the_run_is_refused_at_check_and_at_run_time():
    text = MODEL.replace("SCHEDULE", "schedule cosine warmup=3").replace("epochs=6", "epochs=3")
    with pytest.raises(dlrun.DslError, match="warmup=3 epochs leaves none of the run's 3 epochs"):
        dlrun.loads(text)
    m = dlrun.loads(MODEL.replace("SCHEDULE", "schedule cosine warmup=3"))
    x, y = _data()
    with pytest.raises(dlrun.UsageError, match="leaves none of this run's 2 epochs"):
        m.fit(x, y, epochs=2)


MODEL = """dlrun 1
model s {
  input 4
  dense 8 relu
  dropout 0.1
  dense 3 softmax
  loss cross_entropy
  optimizer adam lr=0.02
  SCHEDULE
  train epochs=6 batch=16 seed=3 dtype=float64
}
"""


def _data(n=96):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = rng.standard_normal((n, 4)) + y[:, None]
    return x, y


def test_the_rate_is_in_the_history_and_the_optimizer_follows_it():
    m = dlrun.loads(MODEL.replace("SCHEDULE", "schedule exponential gamma=0.5 warmup=1"))
    x, y = _data()
    h = m.fit(x, y, progress=False)
    assert h.metric("lr") == pytest.approx([0.02, 0.01, 0.005, 0.0025, 0.00125, 0.000625])
    assert m.optimizer.lr == pytest.approx(0.000625) and m.optimizer.base_lr == 0.02
    # a second fit starts its schedule again from the optimizer's own rate
    assert m.fit(x, y, epochs=2, progress=False).metric("lr") == pytest.approx([0.02, 0.01])
    plain = dlrun.loads(MODEL.replace("SCHEDULE", ""))
    assert "lr" not in plain.fit(x, y, epochs=1, progress=False).final


@pytest.mark.parametrize("schedule", ["schedule cosine warmup=2 min_lr=1e-4",
                                      "schedule plateau factor=0.5 patience=0 min_delta=0.5 monitor=loss"])
def test_a_resumed_run_takes_the_same_rates_and_ends_bit_identical(tmp_path, schedule):
    text = MODEL.replace("SCHEDULE", schedule)
    x, y = _data()
    whole = dlrun.loads(text)
    h = whole.fit(x, y, progress=False, checkpoint=tmp_path / "ck")
    # drop the last checkpoint: the newest left is the end of epoch 5
    for path in (tmp_path / "ck").glob("ckpt-000006-*.npz"):
        path.unlink()
    assert list_checkpoints(tmp_path / "ck")
    again = dlrun.loads(text)
    h2 = again.fit(x, y, progress=False, checkpoint=tmp_path / "ck", resume=True)
    assert again.network.store.flat.tobytes() == whole.network.store.flat.tobytes()
    assert h2.metric("lr") == h.metric("lr")
    if "plateau" in schedule:
        assert len(set(h.metric("lr"))) > 1   # the plateau did cut: its state crossed the checkpoint


def test_resuming_a_cosine_run_with_other_epochs_warns(tmp_path):
    text = MODEL.replace("SCHEDULE", "schedule cosine")
    x, y = _data()
    dlrun.loads(text).fit(x, y, epochs=3, progress=False, checkpoint=tmp_path / "ck")
    with pytest.warns(UserWarning, match="spans the run's epochs: the checkpoint's run had 3, this one has 5"):
        dlrun.loads(text).fit(x, y, epochs=5, progress=False, checkpoint=tmp_path / "ck", resume=True)


def test_cli_progress_and_json_show_the_rate(tmp_path, capsys):
    from dlrun.runtime.cli import main

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 64)
    np.savez(tmp_path / "d.npz", x=rng.standard_normal((64, 4)) + y[:, None], y=y)
    (tmp_path / "m.net").write_text(
        'dlrun 1\nmodel c {\n  data {\n    train "d.npz"\n    validation 0.25\n  }\n  input 4\n'
        '  dense 2 softmax\n  loss cross_entropy\n  optimizer sgd lr=0.1\n'
        '  schedule step every=1 gamma=0.5\n  train epochs=3 batch=16\n}\n')
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["train", str(tmp_path / "m.net"), "--json"]) == 0
    out, err = capsys.readouterr()
    assert "lr 0.1 " in err and "lr 0.025 " in err
    report = json.loads(out)
    assert [e["lr"] for e in report["history"]] == [0.1, 0.05, 0.025]


def test_the_schedule_is_part_of_a_checkpoint_identity_and_absent_without_one(tmp_path):
    from dlrun.runtime.checkpoint import model_identity

    plain = dlrun.loads(MODEL.replace("SCHEDULE", ""))
    assert "schedule" not in model_identity(plain.ir)   # checkpoints written before schedules still resume
    x, y = _data()
    dlrun.loads(MODEL.replace("SCHEDULE", "schedule step every=2")).fit(x, y, epochs=2, progress=False,
                                                                      checkpoint=tmp_path / "ck")
    other = dlrun.loads(MODEL.replace("SCHEDULE", "schedule step every=3"))
    with pytest.raises(dlrun.UsageError, match=r"schedule\.params\.every: 2 in the checkpoint, 3 now"):
        other.fit(x, y, progress=False, checkpoint=tmp_path / "ck", resume=True)
