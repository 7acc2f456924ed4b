"""The check pass: semantic rules, warnings, the public check(model) on IR built in Python."""
import dataclasses
import subprocess
import sys

import pytest

from dlrun.dsl.layers import SPECS
from dlrun.dsl.losses import LOSSES
from dlrun.dsl.optimizers import FILL as OPTIMIZER_FILL, IR_PARAMS as OPTIMIZER_PARAMS, OPTIMIZERS

from dlrun.dsl import check, ir, model_warnings, parse, summarize, tables
from dlrun.dsl.summary import layer_costs
from dlrun.errors import DslError


def model_text(layers, loss="cross_entropy", extra=""):
    return f"dlrun 1\nmodel m {{\n{layers}  loss {loss}\n  optimizer adam\n{extra}}}\n"


def messages(text):
    with pytest.raises(DslError) as info:
        parse(text)
    return [d.message for d in info.value.diagnostics]


def test_softmax_feeding_mse_is_a_warning():
    warnings = []
    m = parse(model_text("  input 4\n  dense 3 softmax\n", loss="mse"), warnings=warnings)
    assert len(warnings) == 1 and warnings[0].severity == "warning"
    assert "softmax output feeding 'mse'" in warnings[0].message and warnings[0].line == 5
    assert [w.message for w in model_warnings(m)] == [w.message for w in warnings]
    assert "warning:" in warnings[0].format()


def test_accuracy_with_regression_loss_is_an_error():
    # a regression run never reports accuracy (issue 9, item 5): refused at check time,
    # and with it the early stopping on val_accuracy that failed after epoch 1
    for extra in ("  train metrics=[accuracy]\n",
                  "  train metrics=[accuracy]\n  early_stopping monitor=val_accuracy\n"):
        found = messages(model_text("  input 4\n  dense 1\n", loss="mse", extra=extra))
        assert len(found) == 1 and "metric 'accuracy' needs class labels" in found[0], found


def test_flatten_on_flat_input_warns():
    warnings = []
    parse(model_text("  input 4\n  flatten\n  dense 3 softmax\n"), warnings=warnings)
    assert "does nothing" in warnings[0].message


@pytest.mark.parametrize("layers,loss,fragment", [
    ("  input 4\n  dense 3 softmax\n", "binary_cross_entropy", "exactly 1 output unit"),
    ("  input 4\n  dense 1 sigmoid\n", "cross_entropy", "at least 2 output units"),
    ("  input 4\n  dense 3 relu\n", "cross_entropy", "softmax or linear"),
    ("  input 4\n  dense 1 tanh\n", "binary_cross_entropy", "sigmoid or linear"),
    ("  input 2x3\n", "mse", "no layers after 'input'"),
    ("  input 2x3\n  relu\n", "mse", "no trainable layer"),
    ("  input 2x3\n  dense 4\n", "mse", "add 'flatten'"),
    # the loss applies softmax/sigmoid itself: nothing may come after them (issue 9, item 4)
    ("  input 4\n  dense 3 softmax\n  dropout 0.1\n", "cross_entropy", "must be the model's last layer"),
    ("  input 4\n  dense 3 softmax\n  flatten\n", "cross_entropy", "must be the model's last layer"),
    ("  input 4\n  dense 3 softmax\n  batchnorm\n", "cross_entropy", "must be the model's last layer"),
    ("  input 4\n  dense 1 sigmoid\n  dropout 0.2\n", "binary_cross_entropy", "must be the model's last layer"),
    ("  input 4\n  dense 3\n  softmax\n  dropout 0.2\n", "cross_entropy", "must be the model's last layer"),
])
def test_output_loss_rules(layers, loss, fragment):
    assert any(fragment in m for m in messages(model_text(layers, loss)))


@pytest.mark.parametrize("layers,loss", [
    ("  input 4\n  dense 3\n", "cross_entropy"),
    ("  input 4\n  dense 3\n  dropout 0.1\n", "cross_entropy"),
    ("  input 4\n  dense 3 softmax\n  dropout 0.1\n", "mse"),
    ("  input 4\n  dense 1\n", "binary_cross_entropy"),
    ("  input 4\n  dense 1\n  sigmoid\n", "binary_cross_entropy"),
    ("  input 2x3\n  relu\n  flatten\n  dense 5\n", "huber"),
    ("  input 4\n  dense 2 tanh\n", "mae"),
])
def test_output_loss_accepted(layers, loss):
    assert parse(model_text(layers, loss)).loss.name == loss


def test_cascade_is_avoided_after_a_failed_layer():
    # 'dense 0' fails: no shape messages about later layers or the loss follow
    msgs = messages(model_text("  input 4\n  dense 0 relu\n  dense 1 sigmoid\n"))
    assert len(msgs) == 1 and "units" in msgs[0]


def test_duplicate_settings_and_layer_names():
    msgs = messages(model_text("  input 4\n  dense 3 softmax as a\n  relu as a\n  input 2\n",
                               extra="  train epochs=2\n  train epochs=3\n"))
    assert any("layer name 'a' is already used" in m for m in msgs)
    assert any("duplicate 'train'" in m for m in msgs)
    assert any("'input' must come first and only once" in m for m in msgs)


def test_missing_loss_and_optimizer_named():
    msgs = messages("dlrun 1\nmodel m {\n  input 4\n  dense 3\n}\n")
    assert any("no 'loss'" in m for m in msgs) and any("no 'optimizer'" in m for m in msgs)


def test_limits():
    assert any("at most" in m for m in messages(model_text("  input 4\n  repeat 10000 {\n    repeat 11 {\n      dense 1\n    }\n  }\n")))
    assert any("too large" in m for m in messages(model_text("  input 4\n  dense 1e400\n")))


# ------------------------------------------------------------------ check() on IR nodes

def base_model():
    return parse(model_text("  input 4\n  dense 8 relu\n  dense 3 softmax\n"))


def test_check_accepts_a_parsed_model():
    assert check(base_model()) == []


def test_check_rejects_bad_ir_built_in_python():
    m = base_model()
    bad_layer = dataclasses.replace(m.layers[1], params={**m.layers[1].params, "units": 0})
    with pytest.raises(DslError, match="units"):
        check(dataclasses.replace(m, layers=(m.layers[0], bad_layer, m.layers[2])))
    with pytest.raises(DslError, match="unknown optimizer"):
        check(dataclasses.replace(m, optimizer=ir.Optimizer("adamx", {})))
    wrong_shape = dataclasses.replace(m.layers[2], shape=(4,))
    with pytest.raises(DslError, match="does not match"):
        check(dataclasses.replace(m, layers=(m.layers[0], m.layers[1], wrong_shape)))
    swapped = dataclasses.replace(m, loss=ir.Loss("binary_cross_entropy", {}))
    with pytest.raises(DslError, match="exactly 1 output unit"):
        check(swapped)


def test_check_fills_shapes_of_ir_built_in_python():
    from dlrun.dsl.checker import check_model
    act = ir.Activation("linear", {})
    layers = (ir.Layer("input", {"shape": (2, 3)}), ir.Layer("flatten", {}),
              ir.Layer("dense", {"units": 2, "activation": act, "init": None, "bias": True, "l1": None, "l2": None}))
    m = ir.Model("py", 1, layers, ir.Loss("cross_entropy", {"label_smoothing": 0.0}),
                 ir.Optimizer("sgd", dict(OPTIMIZER_FILL)))
    checked, warnings = check_model(m)
    assert [l.shape for l in checked.layers] == [(2, 3), (6,), (2,)] and warnings == []


# ------------------------------------------------------------------ tables and summary

def test_tables_are_consistent():
    layer_params = {k: s.params for k, s in SPECS.items()}
    losses = {k: s.params for k, s in LOSSES.items()}
    optimizers = {k: s.params for k, s in OPTIMIZERS.items()}
    for table in (layer_params, tables.ACTIVATIONS, losses, optimizers, tables.DATA):
        for name, params in table.items():
            assert len({p.name for p in params}) == len(params), name
            for p in params:
                if not p.required and p.default is not None and p.type in ("int", "float"):
                    assert p.in_range(p.default), (name, p.name)
    for name, params in optimizers.items():
        assert {p.name for p in params} <= set(OPTIMIZER_PARAMS)
    assert set(tables.INIT_ALIASES.values()) <= set(tables.INITS)
    assert set(tables.ACTIVATION_FLOPS) == set(tables.ACTIVATIONS)


def test_summary_counts():
    m = parse(model_text("  input 1x4x4\n  flatten\n  dense 8 relu\n  batchnorm\n  dropout 0.5\n  dense 3 softmax\n"))
    rows = layer_costs(m)
    assert [r["params"] for r in rows] == [0, 0, 16 * 8 + 8, 16, 0, 8 * 3 + 3]
    assert rows[3]["buffers"] == 16
    assert rows[2]["flops"] == 2 * 16 * 8 + 8 + 8 * tables.ACTIVATION_FLOPS["relu"]
    text = summarize(m)
    assert "total parameters: 179 trainable + 16 running statistics" in text
    assert "parameter memory: 780 B (float32)" in text
    m64 = parse(model_text("  input 4\n  dense 3\n", extra="  train dtype=float64\n"))
    assert "parameter memory: 120 B (float64)" in summarize(m64)


def test_dsl_imports_no_numpy_scipy_or_runtime():
    code = (
        "import sys\n"
        "import dlrun.dsl as d\n"
        "from dlrun.dsl import checker, fmt, summary, parser, transform, tables\n"
        "m = d.parse('dlrun 1\\nmodel m {\\n input 4\\n dense 2\\n loss mse\\n optimizer sgd\\n}')\n"
        "d.summarize(m); d.format_model(m)\n"
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('numpy', 'scipy')\n"
        "             or k.startswith(('dlrun.kernels', 'dlrun.runtime'))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_check_function_is_not_shadowed_by_a_module():
    import dlrun.dsl
    import dlrun.dsl.checker  # noqa: F401
    parse(model_text("  input 4\n  dense 3\n"))
    assert callable(dlrun.dsl.check)


def test_check_validates_settings_of_python_ir():
    m = base_model()
    with pytest.raises(DslError, match="epochs"):
        check(dataclasses.replace(m, train=ir.Train(epochs=0)))
    with pytest.raises(DslError, match="dtype"):
        check(dataclasses.replace(m, train=ir.Train(dtype="float16")))
    with pytest.raises(DslError, match="unknown metric"):
        check(dataclasses.replace(m, train=ir.Train(metrics=("acc",))))
    with pytest.raises(DslError, match="patience"):
        check(dataclasses.replace(m, early_stopping=ir.EarlyStopping(monitor="loss", patience=-1)))
    with pytest.raises(DslError, match="l2"):
        check(dataclasses.replace(m, regularize=ir.Regularize(l2=-1.0)))
    assert check(dataclasses.replace(m, early_stopping=ir.EarlyStopping(monitor="loss"))) == []


def test_param_aliases_point_at_real_parameters():
    """Each other-framework spelling hints at a parameter dlrun has, and is not one itself."""
    groups = [{k: s.params for k, s in SPECS.items()}, tables.ACTIVATIONS,
              {k: s.params for k, s in OPTIMIZERS.items()}, {k: s.params for k, s in LOSSES.items()}]
    names = {p.name for group in groups for params in group.values() for p in params}
    names |= {p.name for p in tables.TRAIN + tables.EARLY_STOPPING + tables.REGULARIZE}
    for spelling, ours in tables.PARAM_ALIASES.items():
        assert ours in names, (spelling, ours)


def one_error(lines, optimizer="optimizer adam"):
    body = "".join(f"  {line}\n" for line in lines)
    text = f"dlrun 1\nmodel m {{\n  input 4\n{body}  dense 3 softmax\n  loss cross_entropy\n  {optimizer}\n}}\n"
    got = messages(text)
    assert len(got) == 1, got
    return got[0]


@pytest.mark.parametrize("line, optimizer, fragment", [
    ("", "optimizer adam learning_rate=0.01", "did you mean 'lr'? dlrun spells it lr=0.01"),
    ("", "optimizer sgd lr=0.1 clipnorm=1", "did you mean 'clip_norm'? dlrun spells it clip_norm=1"),
    ("train batch_size=16", "optimizer adam", "did you mean 'batch'? dlrun spells it batch=16"),
    ("dense 8 leaky_relu negative_slope=0.2", "optimizer adam", "write 'leaky_relu(alpha=0.2)'"),
    ("dense 8 activation=elu alpha=0.5", "optimizer adam", "write 'elu(alpha=0.5)'"),
])
def test_other_frameworks_spellings_get_a_hint(line, optimizer, fragment):
    assert fragment in one_error([line] if line else [], optimizer)


@pytest.mark.parametrize("text, fragment", [
    ("let let = 3", "'let' is a reserved word and cannot be a constant"),
    ("dense 8 relu as as", "'as' is a reserved word and cannot name a layer"),
    ("dense 8 relu as dlrun", "'dlrun' is a reserved word and cannot name a layer"),
])
def test_reserved_words_are_not_names(text, fragment):
    assert fragment in one_error([text])
