"""``dlrun summary``: layers, output shapes, parameter counts and FLOPs per sample.

Each layer's spec (``dsl/layers/``) counts its own cost (forward pass, one sample; a
multiply-add is 2 FLOPs): dense ``in*units (+ units)`` parameters and ``2*in*units + units
+ units*cost(activation)`` FLOPs; batchnorm ``2*d`` trainable + ``2*d`` running statistics
and ``2*d`` FLOPs; an activation ``d*cost`` (``tables.ACTIVATION_FLOPS``: relu 1, sigmoid
4, ...); dropout ``d`` (training only; counted); add ``d`` per extra input; input,
flatten, concat 0.
"""
from __future__ import annotations

from dlrun.dsl import ir
from dlrun.dsl.layers import spec


def layer_costs(model: ir.Model) -> list[dict]:
    """Per layer: name, kind, shape, params (trainable; None while a size awaits the data,
    as an embedding's vocabulary), buffers (non-trainable), flops, inputs (indices of the
    layers feeding it)."""
    rows = []
    layers = model.layers
    for i, layer in enumerate(layers):
        s = spec(layer.kind)
        ins = ir.layer_inputs(layers, i)
        shape = tuple(layer.shape)
        params, buffers, flops = s.cost(layer, [tuple(layers[j].shape) for j in ins], shape)
        rows.append({"index": i, "name": layer.name or f"{layer.kind}_{i}", "kind": s.label(layer),
                     "shape": shape, "params": params, "buffers": buffers, "flops": flops,
                     "inputs": ins})
    return rows


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _human_count(n: int) -> str:
    for unit, size in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


def summarize(model: ir.Model) -> str:
    rows = layer_costs(model)
    itemsize = 4 if model.train.dtype == "float32" else 8
    header = ("#", "layer", "type", "output shape", "params", "FLOPs/sample")
    graph = any(layer.inputs for layer in model.layers)
    if graph:   # a graph of layers: which layers each one takes
        header += ("inputs",)
    table = [header]
    for r in rows:
        row = (str(r["index"]), r["name"], r["kind"], "x".join(map(str, r["shape"])),
               "?" if r["params"] is None else f"{r['params']:,}", f"{r['flops']:,}")
        if graph:
            row += (", ".join(rows[j]["name"] for j in r["inputs"]),)
        table.append(row)
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    right = {0, 4, 5}

    def fmt(row):
        return "  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                         for c, (cell, w) in enumerate(zip(row, widths))).rstrip()

    rule = "-" * len(fmt(header))
    total_params = sum(r["params"] or 0 for r in rows)
    pending = [r["name"] for r in rows if r["params"] is None]
    total_buffers = sum(r["buffers"] for r in rows)
    total_flops = sum(r["flops"] for r in rows)
    out = [f"model {model.name}: input {'x'.join(map(str, model.input_shape))} -> output "
           f"{'x'.join(map(str, model.output_shape))}, loss {model.loss.name}, optimizer "
           f"{model.optimizer.name}, dtype {model.train.dtype}", fmt(header), rule]
    out += [fmt(row) for row in table[1:]]
    out.append(rule)
    out.append(f"total parameters: {total_params:,} trainable"
               + (f" + {total_buffers:,} running statistics" if total_buffers else "")
               + (f" + those of {', '.join(pending)} (sized by the data's vocabulary)" if pending else ""))
    out.append(f"parameter memory: {'over ' if pending else ''}"
               f"{_human_bytes((total_params + total_buffers) * itemsize)} ({model.train.dtype})")
    out.append(f"FLOPs per sample (forward): {total_flops:,} ({_human_count(total_flops)})")
    return "\n".join(out) + "\n"
