"""Formatting: parsing the canonical form gives the same IR (property test over generated
valid models and every models/*.net), formatting is idempotent, comments are kept."""
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from dlrun.dsl import format_model, format_source, ir, load_file, parse

MODELS = sorted((Path(__file__).resolve().parents[2] / "models").glob("*.net"))


def same_ir(a, b):
    return ir.to_dict(a, positions=False) == ir.to_dict(b, positions=False)


# ------------------------------------------------------------------ a generator of valid models
def number(draw, lo, hi, integer=False):
    if integer:
        return str(draw(st.integers(lo, hi)))
    # kept inside the open range even after rounding to 4 significant digits
    x = draw(st.floats(lo + 1e-4, hi * 0.99, allow_nan=False, allow_infinity=False))
    return draw(st.sampled_from([repr(x), f"{x:.3e}"]))


ACTS = ["linear", "relu", "leaky_relu(0.2)", "leaky_relu(alpha=0.05)", "elu", "elu(alpha=0.5)", "sigmoid",
        "tanh", "softplus", "gelu", "swish"]
SPACE = st.sampled_from([" ", "  ", "\t", " "])


@st.composite
def models(draw):
    sp = lambda: draw(SPACE)  # noqa: E731
    lines = [draw(st.sampled_from(["", "# generated\n", "\n"])) + "dlrun 1", f"model gen{draw(st.integers(0, 99))} {{"]
    lets = {}
    if draw(st.booleans()):
        lets["width"] = draw(st.integers(1, 64))
        lines.append(f"  let width{sp()}={sp()}{lets['width']}")
    cls = draw(st.integers(2, 5))
    image = draw(st.booleans())
    has_data = draw(st.booleans())
    if has_data:
        lines.append("  data {")
        lines.append('    train "data/train.npz"' + draw(st.sampled_from(["", " x=images", " y=labels x=a"])))
        if draw(st.booleans()):
            lines.append("    validation " + draw(st.sampled_from(["0.1", "0.25", '"v.npz"'])))
        if draw(st.booleans()):
            lines.append("    test " + draw(st.sampled_from(["0.1", "1/5", '"t.npz"'])))
        for _ in range(draw(st.integers(0, 2))):
            lines.append("    " + draw(st.sampled_from(["scale 1/255", "standardize", "minmax", "scale 0.5", "scale -2"])))
        lines.append("  }")
    if image:
        lines.append(f"  input {draw(st.integers(1, 3))}x{draw(st.integers(1, 8))}x{draw(st.integers(1, 8))}")
        lines.append("  flatten")
    else:
        lines.append(f"  input {draw(st.integers(1, 100))}")
    names = iter(f"layer{i}" for i in range(1000))

    def layer(indent):
        kind = draw(st.sampled_from(["dense", "dense", "batchnorm", "dropout", "act"]))
        if kind == "dense":
            units = draw(st.sampled_from(["width", "width*2", "(width + 1)/1"])) if lets else str(draw(st.integers(1, 64)))
            parts = ["dense", units]
            if draw(st.booleans()):
                parts.append(draw(st.sampled_from(ACTS)))
            if draw(st.booleans()):
                parts.append("init=" + draw(st.sampled_from(["he", "xavier", "he_uniform", "xavier_normal"])))
            if draw(st.booleans()):
                parts.append("bias=" + draw(st.sampled_from(["true", "false"])))
            if draw(st.booleans()):
                parts.append("l2=" + number(draw, 0, 0.1))
            if draw(st.booleans()):
                parts.append("l1=" + number(draw, 0, 0.1))
            if draw(st.booleans()):
                parts += ["as", next(names)]
            return indent + sp().join(parts)
        if kind == "batchnorm":
            return indent + "batchnorm" + (f" momentum={number(draw, 0, 0.999)}" if draw(st.booleans()) else "") \
                + (f" eps={number(draw, 1e-6, 1e-2)}" if draw(st.booleans()) else "")
        if kind == "dropout":
            return indent + f"dropout {number(draw, 0, 0.9)}"
        return indent + draw(st.sampled_from(ACTS[1:] + ["activation relu", "leaky_relu alpha=0.3"]))

    for _ in range(draw(st.integers(0, 4))):
        if draw(st.integers(0, 4)) == 0:
            lines.append(f"  repeat {draw(st.integers(1, 3))} {{  # block")
            for _ in range(draw(st.integers(1, 3))):
                lines.append(layer("    "))
            lines.append("  }")
        else:
            lines.append(layer("  ") + draw(st.sampled_from(["", "  # note", " #x"])))
    loss = draw(st.sampled_from(["cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"]))
    if loss == "cross_entropy":
        lines.append(f"  dense {cls} {draw(st.sampled_from(['softmax', 'linear']))}")
        lines.append(draw(st.sampled_from(["  loss cross_entropy", f"  loss cross_entropy label_smoothing={number(draw, 0, 0.5)}"])))
    elif loss == "binary_cross_entropy":
        lines.append(f"  dense 1 {draw(st.sampled_from(['sigmoid', 'linear']))}")
        lines.append("  loss binary_cross_entropy")
    else:
        lines.append(f"  dense {draw(st.integers(1, 4))}")
        lines.append(f"  loss {loss}" + (f"(delta={number(draw, 0.1, 3)})" if loss == "huber" and draw(st.booleans()) else ""))
    opt = draw(st.sampled_from(["sgd", "adam", "adamw", "rmsprop", "adagrad"]))
    extra = {"sgd": [f"momentum={number(draw, 0, 0.99)}", "nesterov=false"],
             "adam": [f"beta1={number(draw, 0, 0.99)}", "beta2=0.999", f"weight_decay={number(draw, 0, 0.1)}"],
             "adamw": ["eps=1e-7", f"weight_decay={number(draw, 0, 0.1)}"],
             "rmsprop": [f"rho={number(draw, 0, 0.99)}"], "adagrad": ["eps=1e-6"]}[opt]
    args = [f"lr={number(draw, 1e-5, 1.0)}"] + draw(st.lists(st.sampled_from(extra), unique=True))
    if draw(st.booleans()):
        args.append("clip_norm=" + number(draw, 0.1, 10))
    lines.append("  optimizer " + " ".join([opt] + args))
    if draw(st.booleans()):
        lines.append("  regularize " + draw(st.sampled_from(["l2=1e-4", "l1 1e-5", "l1=0 l2=0.01"])))
    metrics = draw(st.sampled_from(["", "metrics=[accuracy]", "metrics=[mae, mse]"])) if loss.endswith("entropy") \
        else draw(st.sampled_from(["", "metrics=[mae]"]))
    if draw(st.booleans()) or metrics:
        # batch >= 2: batch=1 with a batchnorm layer is refused
        lines.append(f"  train epochs={draw(st.integers(1, 500))} batch={draw(st.integers(2, 512))} "
                     f"seed={draw(st.integers(0, 2**31))} shuffle={draw(st.sampled_from(['true', 'false']))} "
                     f"dtype={draw(st.sampled_from(['float32', 'float64']))} {metrics}")
    if draw(st.booleans()):
        monitor = "loss"
        if has_data and "validation" in "\n".join(lines):
            monitor = "val_loss"
        lines.append(f"  early_stopping monitor={monitor} patience={draw(st.integers(0, 20))} "
                     f"{draw(st.sampled_from(['restore_best', 'restore_best=false', 'mode=min', '']))}")
    lines.append("}")
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n# end\n"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_format_source_keeps_the_ir(text):
    model = parse(text)
    out = format_source(text)
    assert same_ir(parse(out), model)
    assert format_source(out) == out  # idempotent
    # every comment survives
    assert [l.strip() for l in text.split("\n") if l.strip().startswith("#")] == \
        [l.strip() for l in out.split("\n") if l.strip().startswith("#")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_format_model_keeps_the_ir(text):
    model = parse(text)
    out = format_model(model)
    again = parse(out)
    assert same_ir(again, model)
    assert format_model(again) == out


def test_models_folder_round_trips():
    for path in MODELS:
        model = load_file(path)
        text = path.read_text(encoding="utf-8")
        assert same_ir(parse(format_source(text), str(path)), model), path
        assert same_ir(parse(format_model(model), str(path)), model), path


def test_canonical_layout():
    messy = ("# head\n\ndlrun   1\nmodel  m{\n\tinput 4   # in\n\n\n  let  w=2*(3+1)\n"
             "  dense   w*2    relu   init = he\n"
             "repeat 2 {dense 3}\n  dense 3 softmax\n  loss cross_entropy\n  optimizer adam lr=1e-3\n# tail\n}")
    out = format_source(messy.replace("init = he", "init=he"))
    assert out == ("# head\n\ndlrun 1\nmodel m {\n  input 4  # in\n\n  let w = 2*(3 + 1)\n"
                   "  dense w*2 relu init=he\n  repeat 2 {\n    dense 3\n  }\n  dense 3 softmax\n"
                   "  loss cross_entropy\n  optimizer adam lr=1e-3\n  # tail\n}\n")


def test_minimal_parentheses_keep_the_tree():
    text = "dlrun 1\nmodel m {\n  input 4\n  dense 100 - (20 - 10) relu\n  dropout (1 - 0.5)/2\n  dense -(-3)\n  loss mse\n  optimizer sgd\n}\n"
    out = format_source(text)
    assert "dense 100 - (20 - 10) relu" in out and "dropout (1 - 0.5)/2" in out
    assert same_ir(parse(out), parse(text))
