"""``dlrun summary``: layers, output shapes, parameter counts and FLOPs per sample.

Counting rules (forward pass, one sample):
    dense      params in*units (+ units bias);  FLOPs 2*in*units (a multiply-add is 2)
               + units for the bias + units * cost(activation)
    batchnorm  params 2*d trainable (gamma, beta) + 2*d running statistics (not trained);
               FLOPs 2*d (scale and shift)
    activation FLOPs d * cost(activation) (tables.ACTIVATION_FLOPS: relu 1, sigmoid 4, ...)
    dropout    FLOPs d (training only; counted)     input, flatten: 0
"""
from __future__ import annotations

from dlrun.dsl import ir, tables as T


def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def layer_costs(model: ir.Model) -> list[dict]:
    """Per layer: name, kind, shape, params (trainable), buffers (non-trainable), flops."""
    rows = []
    prev = None
    for i, layer in enumerate(model.layers):
        shape = tuple(layer.shape)
        d = _prod(shape)
        params = buffers = flops = 0
        kind = layer.kind
        if kind == "dense":
            fan_in = _prod(prev)
            units = layer.params["units"]
            bias = bool(layer.params.get("bias", True))
            params = fan_in * units + (units if bias else 0)
            act = layer.params["activation"].name
            flops = 2 * fan_in * units + (units if bias else 0) + units * T.ACTIVATION_FLOPS[act]
            kind = f"dense {act}" if act != "linear" else "dense"
        elif kind == "batchnorm":
            params, buffers, flops = 2 * d, 2 * d, 2 * d
        elif kind == "activation":
            act = layer.params["activation"].name
            flops = d * T.ACTIVATION_FLOPS[act]
            kind = act
        elif kind == "dropout":
            flops = d
            kind = f"dropout {layer.params['rate']:g}"
        rows.append({"index": i, "name": layer.name or f"{layer.kind}_{i}", "kind": kind,
                     "shape": shape, "params": params, "buffers": buffers, "flops": flops})
        prev = shape
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
    table = [header]
    for r in rows:
        table.append((str(r["index"]), r["name"], r["kind"], "x".join(map(str, r["shape"])),
                      f"{r['params']:,}", f"{r['flops']:,}"))
    widths = [max(len(row[c]) for row in table) for c in range(len(header))]
    right = {0, 4, 5}

    def fmt(row):
        return "  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                         for c, (cell, w) in enumerate(zip(row, widths))).rstrip()

    rule = "-" * len(fmt(header))
    total_params = sum(r["params"] for r in rows)
    total_buffers = sum(r["buffers"] for r in rows)
    total_flops = sum(r["flops"] for r in rows)
    out = [f"model {model.name}: input {'x'.join(map(str, model.input_shape))} -> output "
           f"{'x'.join(map(str, model.output_shape))}, loss {model.loss.name}, optimizer "
           f"{model.optimizer.name}, dtype {model.train.dtype}", fmt(header), rule]
    out += [fmt(row) for row in table[1:]]
    out.append(rule)
    out.append(f"total parameters: {total_params:,} trainable"
               + (f" + {total_buffers:,} running statistics" if total_buffers else ""))
    out.append(f"parameter memory: {_human_bytes((total_params + total_buffers) * itemsize)} "
               f"({model.train.dtype})")
    out.append(f"FLOPs per sample (forward): {total_flops:,} ({_human_count(total_flops)})")
    return "\n".join(out) + "\n"
