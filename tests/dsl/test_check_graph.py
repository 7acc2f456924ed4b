"""The graph of layers: ``from=NAME``, ``add``, ``concat``, ``residual { }`` — references,
order, shapes and the errors and warnings about them, with file:line:col."""
import dataclasses

import pytest

from dlrun.dsl import check, format_model, ir, parse
from dlrun.errors import DslError


def model_text(body, loss="loss cross_entropy"):
    lines = "".join(f"  {line}\n" for line in body)
    return f"dlrun 1\nmodel g {{\n{lines}  {loss}\n  optimizer adam\n}}\n"


def errors(body, **kw):
    with pytest.raises(DslError) as info:
        parse(model_text(body, **kw), "g.net")
    return [(d.line, d.col, d.message) for d in info.value.diagnostics if d.severity == "error"]


def warnings_of(body):
    found = []
    parse(model_text(body), "g.net", warnings=found)
    return [(w.line, w.col, w.message) for w in found]


def test_from_takes_a_named_layer_and_shapes_follow():
    m = parse(model_text(["input 8", "dense 16 relu as a", "dense 4 tanh", "dense 6 from=a as b",
                          "concat a b", "dense 3 softmax"]))
    kinds = [(l.kind, l.shape, ir.layer_inputs(m.layers, i)) for i, l in enumerate(m.layers)]
    assert kinds == [("input", (8,), ()), ("dense", (16,), (0,)), ("dense", (4,), (1,)),
                     ("dense", (6,), (1,)), ("concat", (22,), (1, 3)), ("dense", (3,), (4,))]
    # 'dense 4 tanh' feeds nothing: a warning on its line
    w = warnings_of(["input 8", "dense 16 relu as a", "dense 4 tanh", "dense 6 from=a as b",
                     "concat a b", "dense 3 softmax"])
    assert [(line, col) for line, col, _ in w] == [(5, 3)]
    assert "is not used by any layer" in w[0][2]


def test_unknown_name_gets_did_you_mean_at_its_position():
    got = errors(["input 8", "dense 16 relu as hidden", "dense 4 from=hiden", "dense 3 softmax"])
    assert got == [(5, 16, "unknown layer 'hiden' (did you mean 'hidden'? known: hidden)")]
    got = errors(["input 8", "dense 16 relu as a", "dense 16 relu as b", "add a c", "dense 3 softmax"])
    assert got[0][:2] == (6, 9) and "unknown layer 'c'" in got[0][2]


def test_a_cycle_is_an_error_naming_its_layers():
    got = errors(["input 8", "dense 16 relu from=b as a", "dense 16 relu as b", "dense 3 softmax from=a"])
    assert len(got) == 1
    line, col, message = got[0]
    assert (line, col) == (4, 22)
    assert message.startswith("layers form a cycle: ") and "'a' (line 4)" in message and "'b' (line 5)" in message


def test_a_reference_to_a_later_line_is_put_in_topological_order():
    m = parse(model_text(["input 8", "dense 4 from=late as early", "dense 16 relu from=input_ as late",
                          "dense 3 softmax from=early"]).replace("input 8", "input 8 as input_"))
    assert [l.name for l in m.layers] == ["input_", "late", "early", None]
    assert [ir.layer_inputs(m.layers, i) for i in range(4)] == [(), (0,), (1,), (2,)]


def test_shape_mismatches_name_both_layers():
    got = errors(["input 8", "dense 16 relu as a", "dense 15 relu as b", "add a b", "dense 3 softmax"])
    assert got == [(6, 3, "'add' sums outputs of equal shape, but layer 1 (dense 'a') gives 16 and "
                          "layer 2 (dense 'b') gives 15")]
    got = errors(["input 2x4x4 as x", "relu as a", "flatten from=x as b", "concat a b", "dense 3 softmax"])
    assert got[0][:2] == (6, 3) and "'concat' joins outputs that differ only in their channels" in got[0][2]


def test_residual_that_changes_the_shape_says_so():
    got = errors(["input 8", "dense 16 relu", "residual {", "  dense 32 relu", "}", "dense 3 softmax"])
    assert got == [(5, 3, "'residual' adds its input to its block's output, but the block changes the "
                          "shape from 16 to 32; end the block with a layer giving 16, or project the "
                          "input with 'from=' and 'add' instead")]


def test_residual_is_x_plus_f_x_and_names_its_sum():
    m = parse(model_text(["input 8", "dense 16 relu", "residual as r {", "  dense 16 relu", "  dense 16",
                          "}", "dense 3 softmax from=r"]))
    add = m.layers[4]
    assert (add.kind, add.name, ir.layer_inputs(m.layers, 4)) == ("add", "r", (1, 3))


def test_names_inside_repeat_mean_the_current_iteration():
    m = parse(model_text(["input 8", "repeat 2 {", "  dense 16 relu as h", "  dense 16 tanh", "  add h",
                          "}", "dense 3 softmax"]).replace("  add h\n", "  add h t\n")
              .replace("dense 16 tanh", "dense 16 tanh as t"))
    names = [l.name for l in m.layers]
    assert names == [None, "h_1", "t_1", None, "h_2", "t_2", None, None]
    assert ir.layer_inputs(m.layers, 3) == (1, 2) and ir.layer_inputs(m.layers, 6) == (4, 5)
    # outside the repeat, the numbered names refer to each iteration
    m = parse(model_text(["input 8", "repeat 2 {", "  dense 16 relu as h", "}", "add h_1 h_2",
                          "dense 3 softmax"]))
    assert ir.layer_inputs(m.layers, 3) == (1, 2)


@pytest.mark.parametrize("body,where,fragment", [
    (["input 8", "dense 16 relu as a", "add a", "dense 3 softmax"], (5, 3), "'add' joins two or more layers"),
    (["input 8", "dense 16 relu as a", "add a a", "dense 3 softmax"], (5, 9), "'add' names 'a' twice"),
    (["input 8 from=x", "dense 3 softmax"], (3, 11), "'input' takes no 'from=': it is the model's input"),
    (["input 8", "dense 16 as a", "dense 16 as b", "add a b from=a", "dense 3 softmax"], (6, 11),
     "'add' takes no 'from='"),
    (["input 8", "dense 4 from=3", "dense 3 softmax"], (4, 16), "'from=' takes the name of a layer"),
    (["input 8", "dense 16 relu as a", "dense 16 from=a as a2", "dense 3 softmax from=a2"], None, None),
    (["input 8", "residual {", "}", "dense 3 softmax"], (4, 12), "'residual' needs at least one layer"),
    (["input 8", "residual", "dense 3 softmax"], (4, 3), "'residual' needs a { ... } block"),
    (["input 8", "dense 16 relu as a", "dense 3 softmax from=b as b"], (5, 24),
     "layer 'b' cannot take its own output"),
    (["input 8", "dense 3 softmax as out", "dense 3 from=out"], None, None),
])
def test_graph_errors(body, where, fragment):
    if fragment is None:
        parse(model_text(body), "g.net")  # valid (the second: the output has one user, fine)
        return
    got = errors(body)
    assert got and got[0][:2] == where and fragment in got[0][2], got


def test_the_last_layer_feeds_no_other():
    got = errors(["input 8", "dense 16 relu from=out as a", "dense 3 softmax as out"])
    assert any("the last layer is the model's output" in m for _, _, m in got), got


def test_output_decided_through_the_graph():
    # an add at the end: linear logits; cross_entropy then applies softmax at predict
    m = parse(model_text(["input 8", "dense 3 as a", "dense 3 from=input_ as b", "add a b"])
              .replace("input 8", "input 8 as input_"))
    assert m.output == ir.Output(activation="linear", layer=None, fused=False, proba="softmax",
                                 task="classification")


def test_a_straight_line_keeps_its_architecture_identity():
    m = parse(model_text(["input 8", "dense 16 relu", "dense 3 softmax"]))
    assert all(l.inputs == () for l in m.layers)
    assert all("inputs" not in entry for entry in ir.architecture_dict(m)["layers"])
    g = parse(model_text(["input 8", "dense 16 relu as a", "dense 16 from=a", "add a", "dense 3 softmax"])
              .replace("add a\n", "dense 16 from=a as b\n  add a b\n"))
    assert any("inputs" in entry for entry in ir.architecture_dict(g)["layers"])


def test_format_model_round_trips_a_graph():
    text = model_text(["input 8 as x", "dense 16 relu as a", "dense 16 tanh from=x as b", "concat a b",
                       "residual {", "  dense 32 relu", "  dense 32", "}", "dense 3 softmax"])
    m = parse(text)
    again = parse(format_model(m))
    assert ir.to_dict(again, positions=False) == ir.to_dict(m, positions=False)
    assert "residual {" in format_model(m)


def test_check_validates_python_built_graph_inputs():
    m = parse(model_text(["input 8", "dense 16 relu as a", "dense 16 tanh from=a as b", "add a b",
                          "dense 3 softmax"]))
    assert check(m) == []
    layers = list(m.layers)
    layers[3] = dataclasses.replace(layers[3], inputs=(1, 9))
    with pytest.raises(DslError, match="takes input 9, which is not another layer"):
        check(dataclasses.replace(m, layers=tuple(layers)))
