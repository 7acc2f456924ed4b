"""Canonical text of a model.

``format_source(text)`` re-prints a file from its syntax tree: two-space indentation,
one statement per line, single spaces, ``name=value`` without spaces, minimal
parentheses; comments, blank-line groups, ``let`` and ``repeat`` are kept, numbers keep
their spelling. It needs only valid syntax. ``dlrun fmt`` uses it.

``format_model(model)`` prints a checked ``ir.Model`` (``let`` and ``repeat`` already
expanded; only parameters that differ from their defaults are written).

Both satisfy: parsing the output gives the same IR as the input (positions aside).
"""
from __future__ import annotations

import re

from dlrun.dsl import ir, tables as T
from dlrun.dsl.losses import LOSSES
from dlrun.dsl.optimizers import OPTIMIZERS
from dlrun.dsl.schedules import SCHEDULES
from dlrun.dsl.parser import STRING_OR_COMMENT
from dlrun.dsl.printing import arg_text, expr_text, non_default, quote, value_text
from dlrun.dsl.transform import Let, Statement

INDENT = "  "

def statement_head(stmt: Statement) -> str:
    parts = [stmt.keyword]
    if stmt.call_args is not None:
        parts[0] += f"({', '.join(arg_text(a) for a in stmt.call_args)})"
    for i, arg in enumerate(stmt.args):
        text = arg_text(arg)
        if arg.key is None and i > 0 and text[:1] in "+-":
            # a leading sign would join the previous value as arithmetic
            text = f"({text})"
        parts.append(text)
    if stmt.alias is not None:
        parts += ["as", stmt.alias]
    return " ".join(parts)


# ------------------------------------------------------------------------ source printer
_SCAN = re.compile(STRING_OR_COMMENT)


class _SourcePrinter:
    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.comments: dict[int, tuple[bool, str]] = {}
        for no, line in enumerate(self.lines, 1):
            for m in _SCAN.finditer(line):
                if m.group().startswith("#"):
                    full = not line[: m.start()].strip()
                    self.comments[no] = (full, m.group().rstrip())
                    break
        self.out: list[str] = []
        self.last = 0  # last source line accounted for

    def blank_between(self, a: int, b: int) -> bool:
        return any(not self.lines[i - 1].strip() for i in range(max(a + 1, 1), min(b, len(self.lines) + 1)))

    def emit(self, depth: int, text: str):
        self.out.append(INDENT * depth + text if text else "")

    def comments_before(self, line: int, depth: int, allow_blank: bool = True):
        for no in sorted(k for k in self.comments if self.last < k < line):
            full, text = self.comments.pop(no)
            if allow_blank and self.out and self.out[-1] != "" and self.blank_between(self.last, no) \
                    and not self.out[-1].endswith("{"):
                self.emit(0, "")
            self.emit(depth, text)
            self.last = no
            allow_blank = True

    def trailing(self, line: int) -> str:
        item = self.comments.get(line)
        if item is not None and not item[0]:
            self.comments.pop(line)
            return "  " + item[1]
        return ""

    def item(self, node, depth: int):
        line = node.pos.line
        self.comments_before(line, depth)
        if self.out and self.out[-1] != "" and not self.out[-1].endswith("{") \
                and self.blank_between(self.last, line):
            self.emit(0, "")
        if isinstance(node, Let):
            self.emit(depth, f"let {node.name} = {expr_text(node.value)}" + self.trailing(line))
            self.last = node.pos.end_line
            return
        head = statement_head(node)
        if node.block is None:
            self.emit(depth, head + self.trailing(line))
            self.last = node.pos.end_line
            return
        self.block(head, node.block, node.block_pos, depth, line)

    def block(self, head: str, body, block_pos: ir.Pos, depth: int, line: int):
        self.emit(depth, head + " {" + self.trailing(line))
        self.last = line
        for node in body:
            self.item(node, depth + 1)
        close = block_pos.end_line
        self.comments_before(close, depth + 1, allow_blank=True)
        self.emit(depth, "}" + (self.trailing(close) if close != line else ""))
        self.last = close

    def program(self, prog):
        self.comments_before(prog.version_pos.line, 0)
        if self.out and self.blank_between(self.last, prog.version_pos.line):
            self.emit(0, "")
        self.emit(0, f"dlrun {expr_text(prog.version)}" + self.trailing(prog.version_pos.line))
        self.last = prog.version_pos.line
        self.comments_before(prog.pos.line, 0)
        if self.blank_between(self.last, prog.pos.line):
            self.emit(0, "")
        self.block(f"model {prog.name}", prog.body, prog.body_pos, 0, prog.pos.line)
        self.comments_before(len(self.lines) + 1, 0)
        return "\n".join(self.out) + "\n"


def format_source(text: str, path: str = "<string>") -> str:
    """Canonical form of model text (syntax must be valid; DslError otherwise)."""
    from dlrun.dsl import parse_syntax

    norm, program = parse_syntax(text, path)
    return _SourcePrinter(norm).program(program)


# ------------------------------------------------------------------------ IR printer
def layer_text(layer: ir.Layer, inputs: str = "") -> str:
    """A layer's canonical line: its spec's text, then ``inputs`` (``from=NAME`` or the names
    an ``add``/``concat`` joins, as ``format_model`` works them out), then ``as NAME``."""
    from dlrun.dsl.layers import spec

    head = spec(layer.kind).text(layer) + inputs
    if layer.name:
        head += f" as {layer.name}"
    return head


def _residuals(layers, consumers) -> dict:
    """``{add index: first layer of its block}`` for every ``add`` that ``residual { }``
    would write: two inputs, the layer before the block and the block's last layer, and a
    block whose layers take only each other (or the block's input) and feed only each other
    (or the add). Blocks nest properly or are not written as blocks."""
    from dlrun.dsl.layers import MANY, spec

    found = {}
    for i, layer in enumerate(layers):
        ins = ir.layer_inputs(layers, i)
        if spec(layer.kind).inputs != MANY or len(ins) != 2 or ins[1] != i - 1 or ins[0] >= i - 1:
            continue
        start = ins[0] + 1
        body = range(start, i)
        if ir.layer_inputs(layers, start) != (start - 1,):
            continue
        if not all(start - 1 <= j < i for k in body for j in ir.layer_inputs(layers, k)):
            continue
        if not all(start < c <= i for k in body for c in consumers[k]):
            continue
        if any(start < s0 <= e and not (start <= s0 and e < i) or (s0 < start <= e < i)
               for e, s0 in found.items()):
            continue
        found[i] = start
    return found


def _layer_lines(layers) -> list:
    """The lines of a model's layers: ``from=NAME`` / the names a join takes where a layer
    does not take the line before it, ``residual { }`` blocks written back, and names
    given to the layers referred to that have none (``dense_3``, made unique)."""
    from dlrun.dsl.layers import MANY, spec

    consumers = [[] for _ in layers]
    for i in range(len(layers)):
        for j in ir.layer_inputs(layers, i):
            consumers[j].append(i)
    blocks = _residuals(layers, consumers)
    referred = set()
    for i, layer in enumerate(layers):
        ins = ir.layer_inputs(layers, i)
        if i in blocks:
            continue
        if spec(layer.kind).inputs == MANY or ins not in ((), (i - 1,)):
            referred.update(ins)
    taken = {l.name for l in layers if l.name}
    names = {}
    for i in sorted(referred):
        name = layers[i].name
        if not name:
            base = name = f"{layers[i].kind}_{i}"
            k = 1
            while name in taken:
                name, k = f"{base}_{k}", k + 1
            taken.add(name)
        names[i] = name
    opens = {}
    for end, start in blocks.items():
        opens.setdefault(start, []).append(end)
    lines, depth = [], 1
    for i, layer in enumerate(layers):
        for end in sorted(opens.get(i, ()), reverse=True):   # the outermost block first
            alias = layers[end].name or names.get(end)
            lines.append(INDENT * depth + "residual" + (f" as {alias}" if alias else "") + " {")
            depth += 1
        if i in blocks:
            depth -= 1
            lines.append(INDENT * depth + "}")
            continue
        ins = ir.layer_inputs(layers, i)
        if spec(layer.kind).inputs == MANY:
            text = " " + " ".join(names[j] for j in ins)
        elif ins not in ((), (i - 1,)):
            text = f" from={names[ins[0]]}"
        else:
            text = ""
        if i in names and not layer.name:
            text += f" as {names[i]}"
        lines.append(INDENT * depth + layer_text(layer, text))
    return lines


def _source_text(kw: str, src) -> str:
    if isinstance(src, float):
        return f"{kw} {value_text(src)}"
    parts = [kw, quote(src.path)]
    if src.labels is not None:
        parts.append(f"labels={quote(src.labels)}")
    if src.x_key != "x":
        parts.append(f"x={src.x_key}")
    if src.y_key != "y":
        parts.append(f"y={src.y_key}")
    return " ".join(parts)


def format_model(model: ir.Model) -> str:
    lines = [f"dlrun {T.FORMAT_VERSION}", f"model {model.name} {{"]
    d = model.data
    if d is not None:
        lines.append(INDENT + "data {")
        for kw in ("train", "validation", "test"):
            src = getattr(d, kw)
            if src is not None:
                lines.append(INDENT * 2 + _source_text(kw, src))
        if d.label is not None:
            lines.append(INDENT * 2 + f"label {quote(d.label)}")
        if d.text is not None:
            lines.append(INDENT * 2 + f"text {quote(d.text)}")
            tok = d.tokens or ir.Tokens()
            params = {"max_length": tok.max_length, "vocab": tok.vocab, "min_count": tok.min_count}
            lines.append(INDENT * 2 + " ".join(["tokens", tok.unit] + (["lowercase"] if tok.lowercase else [])
                                               + non_default(T.TOKENS[2:], params)))
        if d.layout is not None:
            lines.append(INDENT * 2 + f"layout {d.layout}")
        if d.resize is not None:
            lines.append(INDENT * 2 + f"resize {d.resize}")
        for a in d.augment:
            lines.append(INDENT * 2 + " ".join(["augment", a.kind] + non_default(T.AUGMENT[a.kind], a.params)))
        if d.audio is not None:
            a = d.audio
            lines.append(INDENT * 2 + " ".join(["audio"] + non_default(T.DATA["audio"], {
                "rate": a.rate, "duration": a.duration, "align": a.align, "classes": a.classes})))
            lines.append(INDENT * 2 + " ".join(["features", a.features]
                                               + non_default(T.DATA["features"][1:], a.params)))
        for pre in d.preprocess:
            if pre.kind == "scale":
                lines.append(INDENT * 2 + f"scale {value_text(pre.params['factor'])}")
            else:
                lines.append(INDENT * 2 + " ".join([pre.kind] + non_default(T.DATA[pre.kind], pre.params)))
        if d.target is not None:
            lines.append(INDENT * 2 + f"target {d.target}")
        lines.append(INDENT + "}")
    lines += _layer_lines(model.layers)
    loss = model.loss
    lines.append(INDENT + " ".join(["loss", loss.name] + non_default(LOSSES[loss.name].params, loss.params)))
    sched = model.schedule
    if sched is not None:
        lines.append(INDENT + " ".join(["schedule", sched.name] + non_default(SCHEDULES[sched.name].params,
                                                                             sched.params)))
    reg = model.regularize
    reg_args = non_default(T.REGULARIZE, {"l1": reg.l1, "l2": reg.l2})
    if reg_args:
        lines.append(INDENT + " ".join(["regularize"] + reg_args))
    opt = model.optimizer
    lines.append(INDENT + " ".join(["optimizer", opt.name] + non_default(OPTIMIZERS[opt.name].params, opt.params)))
    tr = model.train
    tr_params = {"epochs": tr.epochs, "batch": tr.batch_size, "seed": tr.seed, "shuffle": tr.shuffle,
                 "dtype": tr.dtype, "metrics": tuple(tr.metrics)}
    tr_args = non_default(T.TRAIN, tr_params)
    if tr_args:
        lines.append(INDENT + " ".join(["train"] + tr_args))
    es = model.early_stopping
    if es is not None:
        es_params = {"monitor": es.monitor, "mode": es.mode, "patience": es.patience,
                     "min_delta": es.min_delta, "restore_best": es.restore_best}
        lines.append(INDENT + " ".join(["early_stopping"] + [
            f"{p.name}={value_text(es_params[p.name])}" for p in T.EARLY_STOPPING]))
    lines.append("}")
    return "\n".join(lines) + "\n"
