"""Which activation produces a model's output, and what the loss does with it: decided
here, once.

The checker records the answer in ``ir.Model.output`` and reports the problems found
with the file's line and column; the runtime network reads ``Model.output`` and decides
nothing itself (a model built in Python without the checker goes through
``decide_output`` too).

    >>> from dlrun.dsl import parse
    >>> m = parse("dlrun 1\\nmodel m {\\n input 4\\n dense 3 softmax\\n loss cross_entropy\\n"
    ...           " optimizer adam\\n}\\n")
    >>> m.output
    Output(activation='softmax', layer=1, fused=True, proba=None, task='classification')

Rules:
- the output activation is the activation of the last ``dense`` or activation layer;
  ``dropout``, ``flatten`` and ``activation linear`` after it change no value at
  inference and are looked through; a ``batchnorm`` after it makes the output linear;
- a cross-entropy computes its activation (softmax, sigmoid) itself from the logits, so
  a layer applying that activation must be the model's last layer: anything after it
  would make the loss train on probabilities and ``predict`` apply the activation twice;
- a cross-entropy needs its own activation or a linear output (the logits, to which
  ``predict`` then applies the activation).
"""
from __future__ import annotations

from dlrun.dsl import ir
from dlrun.dsl.losses import LOSSES, known as known_losses

def layer_label(layer, index) -> str:
    """``layer 2 (dense 'h')``: how messages name a layer."""
    from dlrun.dsl.layers import spec

    name = f" '{layer.name}'" if layer.name else ""
    return f"layer {index} ({spec(layer.kind).word(layer)}{name})"


def decide_output(layers, loss_name: str) -> tuple[ir.Output, list]:
    """``(ir.Output, problems)`` for a model's layers (``layers[0]`` is the input, the last
    the output) and the name of its loss. ``problems``: ``(layer index or None for the loss,
    message)``, in the order they should be reported; the ``Output`` is meaningful only
    without them.

    The output activation is found walking back from the last layer through single-input
    layers; a layer joining several (``add``, ``concat``) ends the walk: its output is linear."""
    from dlrun.dsl.layers import spec

    problems = []
    src = None
    path = []       # the layers after src up to the output, last first
    i = len(layers) - 1
    while i >= 0:
        s = spec(layers[i].kind)
        if s.activation(layers[i]) is not None:
            src = i
            break
        path.append(i)
        ins = ir.layer_inputs(layers, i)
        if len(ins) != 1:
            break
        i = ins[0]
    act = "linear" if src is None else spec(layers[src].kind).activation(layers[src])
    trailing = [] if src is None else [layers[k] for k in reversed(path)]
    identity = all(spec(l.kind).inert(l) for l in trailing)
    final = act if identity else "linear"
    loss = LOSSES.get(loss_name)
    if loss is None:
        return ir.Output(), [(None, f"unknown loss {loss_name!r} (known: {known_losses()})")]
    fuses, task = loss.fuses, loss.task
    if fuses is not None and act == fuses and trailing:
        first = trailing[0]
        k = path[-1]
        word = layer_label(first, k)
        line = layers[src].pos.line
        at = f" (line {line})" if line > 0 else ""
        problems.append((k, f"{word} after the {act} output: '{loss_name}' applies {act} itself, "
                            f"to the logits, so the layer with {act}{at} must be the model's last "
                            f"layer; move '{first.kind}' before it or remove it"))
    elif fuses is not None and final not in (fuses, "linear"):
        problems.append((None, loss.activation_problem(final, layer_label(layers[src], src))))
    fused = fuses is not None and final == fuses and not trailing
    return ir.Output(
        activation=final,
        layer=src if final != "linear" else None,
        fused=fused,
        proba=fuses if fuses is not None and final == "linear" else None,
        task=task,
    ), problems
