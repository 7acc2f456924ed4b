"""The elaborator: syntax tree -> IR nodes, one statement at a time. It evaluates ``let``
constants, expands ``repeat`` and ``residual``, binds every statement's values to the
parameters of its layer spec (``dsl/layers/``) or table (``tables.py``) and records the
references between layers (``from=``, ``add``/``concat``) for the graph pass (``graph.py``).
"""
from __future__ import annotations

from dlrun.dsl import ir, tables as T
from dlrun.dsl.check_data import DataBlock
from dlrun.dsl.diagnostics import Reporter, suggest
from dlrun.dsl.graph import InputRef
from dlrun.dsl.ir import Pos
from dlrun.dsl.layers import KEYWORDS, MANY, SPECS, layer_keywords, spec
from dlrun.dsl.losses import LOSSES
from dlrun.dsl.optimizers import OPTIMIZERS, ir_params as optimizer_ir_params
from dlrun.dsl.schedules import SCHEDULES
from dlrun.dsl.transform import Arg, Call, Let, Program, Ref, Statement, Str
from dlrun.dsl.values import Binder, Word, _Bad, _expr_text, show, span


#: settings written as a name and its parameters: keyword -> (specs by name, an example)
_NAMED = {"loss": (LOSSES, "loss cross_entropy"), "optimizer": (OPTIMIZERS, "optimizer adam lr=1e-3"),
          "schedule": (SCHEDULES, "schedule cosine warmup=3")}


class Elaborator(Binder, DataBlock):
    """Syntax tree -> IR nodes, one statement at a time, reporting into ``reporter``.

    Internally a failed value raises ``_Bad`` after reporting, which abandons only the
    statement it belongs to: the next statement is still checked.
    """

    def __init__(self, program: Program, reporter: Reporter, path: str | None):
        super().__init__(reporter)
        self.program = program
        self.path = path
        self.layer_names: dict[str, Pos] = {}
        self.n_layers = 0
        self.failed_layers = 0  # layers that did not elaborate: shapes are not inferred then
        self.duplicate_names: set[str] = set()  # 'as NAME' given twice (already reported)
        self.residual_at: set[Pos] = set()  # positions of the 'add' layers closing a residual

    # ------------------------------------------------------------------ statements

    def run(self):
        prog = self.program
        self.check_version(prog)
        for item in prog.body:
            if isinstance(item, Let):
                self.later_lets.setdefault(item.name, item.pos)
        layers: list = []
        settings: dict[str, tuple] = {}
        for item in prog.body:
            if isinstance(item, Let):
                self.let(item)
                continue
            kw = item.keyword
            if kw == "data":
                self.once(settings, item)
                settings["data"] = (item, self.data_block(item))
            elif kw == "repeat":
                layers.extend(self.repeat(item))
            elif kw == "residual":
                layers.extend(self.residual(item))
            elif kw in T.SETTINGS:
                self.once(settings, item)
                settings[kw] = (item, self.setting(item))
            elif self.is_layer(kw):
                layer = self.layer(item)
                if layer is not None:
                    layers.append(layer)
            else:
                self.unknown_statement(item, T.model_keywords())
        return layers, settings

    def check_version(self, prog: Program):
        try:
            value = self.evaluate(prog.version, "the format version")
        except _Bad:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value != T.FORMAT_VERSION:
            self.r.error(prog.version.pos, f"unsupported format version {show(value)}: this dlrun "
                         f"reads 'dlrun {T.FORMAT_VERSION}'")

    def once(self, settings, stmt):
        if stmt.keyword in settings:
            prev = settings[stmt.keyword][0]
            self.r.error(stmt.keyword_pos, f"duplicate '{stmt.keyword}' (first given on line "
                         f"{prev.pos.line}); give it once")

    def is_layer(self, kw: str) -> bool:
        return kw in KEYWORDS

    def unknown_statement(self, stmt: Statement, known):
        kw = stmt.keyword
        if kw in T.DATA and kw not in T.SETTINGS:
            self.r.error(stmt.keyword_pos, f"'{kw}' belongs inside the data {{ ... }} block")
        elif kw == "let":
            self.r.error(stmt.keyword_pos, "'let' is written 'let NAME = value'")
        else:
            self.r.error(stmt.keyword_pos, f"unknown statement '{kw}'" + suggest(kw, known))

    def no_block(self, stmt: Statement):
        if stmt.block is not None:
            self.r.error(stmt.block_pos, f"'{stmt.keyword}' takes no {{ ... }} block")

    def no_alias(self, stmt: Statement):
        if stmt.alias is not None:
            self.r.error(stmt.alias_pos, f"'as {stmt.alias}' names layers only, not '{stmt.keyword}'")

    def no_call(self, stmt: Statement):
        if stmt.call_args is not None:
            self.r.error(stmt.keyword_pos, f"'{stmt.keyword}(...)': parameters of '{stmt.keyword}' "
                         "are written without parentheses, as values and name=value settings")
            return False
        return True

    def let(self, item: Let):
        name = item.name
        if name in ("true", "false") or name in T.RESERVED_WORDS:
            self.r.error(item.name_pos, f"'{name}' is a reserved word and cannot be a constant")
            return
        if name in self.env:
            self.r.error(item.name_pos, f"constant '{name}' is already defined on line "
                         f"{self.env_pos[name].line}")
            return
        try:
            value = self.evaluate(item.value, f"constant '{name}'")
            if isinstance(value, Word):
                self.unknown_constant(item.value, f"constant '{name}'")
            if isinstance(value, list):
                self.r.error(item.value.pos, f"constant '{name}' must be a number, a string or a shape")
                raise _Bad
        except _Bad:
            self.later_lets.pop(name, None)
            self.env_pos[name] = item.pos
            return
        self.later_lets.pop(name, None)
        self.env[name] = value
        self.env_pos[name] = item.pos

    def block_layers(self, stmt: Statement, what: str) -> list:
        """The layers of a ``repeat`` or ``residual`` body, elaborated once."""
        body: list = []
        for item in stmt.block:
            if isinstance(item, Let):
                self.r.error(item.pos, f"'let' is not allowed inside '{what}'; define constants "
                             "at the model level")
                continue
            kw = item.keyword
            if kw == "repeat":
                body.extend(self.repeat(item))
            elif kw == "residual":
                body.extend(self.residual(item))
            elif self.is_layer(kw):
                if kw in SPECS and SPECS[kw].inputs == 0:
                    self.r.error(item.keyword_pos, f"'{kw}' cannot be inside '{what}'")
                    continue
                layer = self.layer(item)
                if layer is not None:
                    body.append(layer)
            elif kw in T.SETTINGS or kw == "data":
                self.r.error(item.keyword_pos, f"'{kw}' cannot be inside '{what}' (only layers can)")
            else:
                self.unknown_statement(item, layer_keywords() + ("repeat", "residual"))
        return body

    def repeat(self, stmt: Statement) -> list:
        self.no_alias(stmt)
        self.no_call(stmt)
        count = None
        pos_args = [a for a in stmt.args if a.key is None]
        for a in stmt.args:
            if a.key is not None:
                self.r.error(a.key_pos, f"'repeat' takes only a count, got '{a.key}='")
        if not pos_args:
            self.r.error(stmt.keyword_pos, "'repeat' needs a count, e.g. 'repeat 3 { ... }'")
        else:
            for extra in pos_args[1:]:
                self.r.error(extra.pos, f"'repeat' takes one count, got also '{_expr_text(extra.value)}'")
            try:
                count = self.coerce(T.Param("count", "int", lo=1, hi=T.MAX_REPEAT), pos_args[0].value,
                                    "the repeat count")
            except _Bad:
                count = None
        if stmt.block is None:
            self.r.error(stmt.pos, "'repeat' needs a { ... } block of layers after its count")
            return []
        # Elaborate the body once (its values do not depend on the iteration), then copy.
        body = self.block_layers(stmt, "repeat")
        if count is None:
            return []
        total = len(body) * count
        if self.n_layers + total > T.MAX_LAYERS:
            self.r.error(stmt.keyword_pos, f"'repeat' makes {total} layers; at most {T.MAX_LAYERS} "
                         "layers are supported")
            return []
        self.n_layers += total
        # 'as h' in the body names h_1, h_2, ...; a reference to h inside the body means the
        # current iteration's layer
        own = {layer.name for layer in body if layer.name is not None}
        out = []
        for i in range(1, count + 1):
            for layer in body:
                if layer.name is None and not layer.inputs:
                    out.append(layer)
                    continue
                inputs = tuple(ref._replace(name=f"{ref.name}_{i}") if ref.name in own else ref
                               for ref in layer.inputs)
                name = f"{layer.name}_{i}" if layer.name is not None else None
                out.append(ir.Layer(layer.kind, layer.params, name, None, layer.pos, inputs))
        return out

    def residual(self, stmt: Statement) -> list:
        """``residual { f }`` is ``x + f(x)``: the block's layers, then an ``add`` of the
        block's input (the layer before it) and its output (its last layer)."""
        self.no_call(stmt)
        for a in stmt.args:
            self.r.error(a.pos, "'residual' takes only a { ... } block of layers, got "
                         f"'{_expr_text(a.value)}'")
        if stmt.block is None:
            self.r.error(stmt.pos, "'residual' needs a { ... } block of layers, e.g. "
                         "'residual { dense 64 relu }'")
            self.name_layer(stmt)
            return []
        errors = len(self.r.errors)
        body = self.block_layers(stmt, "residual")
        name = self.name_layer(stmt)
        if not body:
            if len(self.r.errors) == errors:
                self.r.error(stmt.block_pos, "'residual' needs at least one layer in its block")
            self.failed_layers += 1
            return []
        self.residual_at.add(stmt.pos)
        n = len(body)
        ends = (InputRef(None, stmt.keyword_pos, back=n + 1), InputRef(None, stmt.keyword_pos, back=1))
        return body + [ir.Layer("add", {}, name, None, stmt.pos, ends)]

    def layer(self, stmt: Statement) -> ir.Layer | None:
        kw = stmt.keyword
        self.no_block(stmt)
        s = KEYWORDS[kw]
        refs: tuple = ()
        try:
            hint = s.hint(stmt)
            if hint is not None:
                self.r.error(*hint)
                raise _Bad
            args = stmt.args
            froms = [a for a in args if a.key == "from"]
            if froms:
                args = tuple(a for a in args if a.key != "from")
                refs = self.from_ref(stmt, s, froms)
            if s.inputs == MANY:
                if not self.no_call(stmt):
                    raise _Bad
                refs = self.joined(stmt, args)
                params = self.bind(f"'{kw}'", s.params, tuple(a for a in args if a.key is not None),
                                   npos=0, where=stmt.keyword_pos, flags=True, example=s.example)
                kind = kw
            else:
                kind = s.kind
                params = s.bind(self, stmt, args)
                if params.get("init") is not None:
                    params["init"] = T.INIT_ALIASES.get(params["init"], params["init"])
        except _Bad:
            self.failed_layers += 1
            self.name_layer(stmt)
            return None
        name = self.name_layer(stmt)
        return ir.Layer(kind, params, name, None, stmt.pos, refs)

    def from_ref(self, stmt: Statement, s, froms) -> tuple:
        """``from=NAME``: the layer takes NAME's output instead of the previous line's."""
        kw = stmt.keyword
        if s.inputs != 1:
            why = ("it is the model's input" if s.inputs == 0 else
                   f"it joins the layers it names, e.g. '{kw} a b'")
            self.r.error(froms[0].key_pos, f"'{kw}' takes no 'from=': {why}")
            raise _Bad
        if len(froms) > 1:
            self.r.error(froms[1].pos, f"'{kw}': 'from' is given twice (first on line "
                         f"{froms[0].pos.line}, column {froms[0].pos.col})")
            raise _Bad
        value = froms[0].value
        if not isinstance(value, Ref):
            self.r.error(value.pos, f"'from=' takes the name of a layer (given with 'as NAME'), got "
                         f"'{_expr_text(value)}'")
            raise _Bad
        return (InputRef(value.name, value.pos),)

    def joined(self, stmt: Statement, args) -> tuple:
        """The layer names an ``add``/``concat`` joins (its positional values)."""
        kw = stmt.keyword
        refs = []
        for a in args:
            if a.key is not None:
                continue
            if not isinstance(a.value, Ref):
                self.r.error(a.pos, f"'{kw}' takes the names of layers (given with 'as NAME'), got "
                             f"'{_expr_text(a.value)}'")
                raise _Bad
            refs.append(InputRef(a.value.name, a.value.pos))
        if len(refs) < 2:
            self.r.error(stmt.keyword_pos, f"'{kw}' joins two or more layers by name, "
                         f"{spec(kw).example}" + (f"; got only '{refs[0].name}'" if refs else ""))
            raise _Bad
        seen = set()
        for ref in refs:
            if ref.name in seen:
                self.r.error(ref.pos, f"'{kw}' names '{ref.name}' twice")
                raise _Bad
            seen.add(ref.name)
        return tuple(refs)

    def name_layer(self, stmt: Statement) -> str | None:
        if stmt.alias is None:
            return None
        name = stmt.alias
        if name in T.RESERVED_WORDS:
            self.r.error(stmt.alias_pos, f"'{name}' is a reserved word and cannot name a layer")
            return name
        if name in self.layer_names:
            self.duplicate_names.add(name)
            self.r.error(stmt.alias_pos, f"layer name '{name}' is already used on line "
                         f"{self.layer_names[name].line}")
        else:
            self.layer_names[name] = stmt.alias_pos
        return name

    def setting(self, stmt: Statement):
        kw = stmt.keyword
        self.no_block(stmt)
        self.no_alias(stmt)
        try:
            if kw in _NAMED:
                if not self.no_call(stmt):
                    raise _Bad
                return self.named_setting(stmt)
            if not self.no_call(stmt):
                raise _Bad
            if kw == "regularize":
                return self.regularize(stmt)
            if kw == "train" and any(a.key is None and isinstance(a.value, Str) for a in stmt.args):
                self.r.error(stmt.keyword_pos, "'train \"FILE\"' names a data file: put it inside a "
                             "data { ... } block; at the model level 'train' takes settings such as "
                             "epochs=10 batch=32")
                raise _Bad
            if kw == "train":
                p = self.bind("'train'", T.TRAIN, stmt.args, npos=0, where=stmt.keyword_pos, flags=True)
                return ir.Train(p["epochs"], p["batch"], p["seed"], p["shuffle"], p["dtype"],
                                tuple(p["metrics"]), stmt.pos)
            if kw == "early_stopping":
                p = self.bind("'early_stopping'", T.EARLY_STOPPING, stmt.args, npos=0,
                              where=stmt.keyword_pos, flags=True)
                mode = p["mode"]
                if mode == "auto":
                    mode = "max" if p["monitor"] in T.MAXIMIZED_MONITORS else "min"
                return ir.EarlyStopping(p["monitor"], mode, p["patience"], p["min_delta"],
                                        p["restore_best"], stmt.pos)
        except _Bad:
            return None
        raise AssertionError(kw)

    def named_setting(self, stmt: Statement):
        kw = stmt.keyword
        specs, example = _NAMED[kw]
        pos_args = [a for a in stmt.args if a.key is None]
        if not pos_args:
            self.r.error(stmt.keyword_pos, f"'{kw}' needs a name first, e.g. '{example}' "
                         f"(known: {', '.join(specs)})")
            raise _Bad
        head = pos_args[0]
        if head is not stmt.args[0]:
            self.r.error(head.pos, f"the {kw} name comes first, right after '{kw}'")
            raise _Bad
        if isinstance(head.value, Ref):
            name, name_pos, call_args = head.value.name, head.value.pos, ()
        elif isinstance(head.value, Call):
            name, name_pos, call_args = head.value.name, head.value.name_pos, head.value.args
        else:
            self.r.error(head.pos, f"'{kw}' needs a name first, e.g. '{example}'; got "
                         f"'{_expr_text(head.value)}'")
            raise _Bad
        if name not in specs:
            self.r.error(name_pos, f"unknown {kw} '{name}'" + suggest(name, specs))
            raise _Bad
        table = specs[name].params
        # positional values inside the parentheses fill the parameters in table order
        named = []
        positional = [a for a in call_args if a.key is None]
        for i, a in enumerate(positional):
            if i >= len(table):
                self._too_many(f"{kw} '{name}'", table, len(table), a)
                raise _Bad
            named.append(Arg(table[i].name, a.value, a.pos, a.pos))
        named += [a for a in call_args if a.key is not None]
        args = tuple(named) + stmt.args[1:]
        self._others_setting(kw, name, specs, args)
        params = self.bind(f"{kw} '{name}'", table, args, npos=0, where=name_pos, flags=True)
        if kw == "loss":
            return ir.Loss(name, params, stmt.pos,
                           param_pos={a.key: getattr(a.value, "pos", a.pos) for a in args
                                      if a.key is not None})
        if kw == "schedule":   # its rules need the run's epochs: checked with the model (semantics)
            return ir.Schedule(name, params, stmt.pos)
        problem = OPTIMIZERS[name].problem(params)
        if problem is not None:
            self.r.error(name_pos, problem)
            raise _Bad
        return ir.Optimizer(name, optimizer_ir_params(name, params), stmt.pos)

    def _others_setting(self, kw, name, specs, args):
        """Report a ``key=`` that ``name`` does not take but other {kw}s do (``loss mse
        class_weight=...``), naming them; raises _Bad after reporting."""
        own = {p.name for p in specs[name].params}
        bad = False
        for a in args:
            if a.key is None or a.key in own:
                continue
            others = [n for n, sp in specs.items() if any(p.name == a.key for p in sp.params)]
            if not others:
                continue   # an unknown name: bind's message, with its "did you mean"
            task = getattr(specs[name], "task", None)
            why = f" ('{name}' is a {task} loss)" if kw == "loss" and task else ""
            head = (f"{kw} '{name}' takes no parameters, got '{a.key}='" if not own
                    else f"unknown parameter '{a.key}' for {kw} '{name}'")
            self.r.error(a.key_pos, f"{head}: it is a setting of "
                         f"{' and '.join(', '.join(others).rsplit(', ', 1))}{why}")
            bad = True
        if bad:
            raise _Bad

    def regularize(self, stmt: Statement):
        # accepts both 'regularize l2=1e-4 l1=1e-5' and 'regularize l2 1e-4 l1 1e-5'
        args = []
        i = 0
        items = list(stmt.args)
        bad = False
        while i < len(items):
            a = items[i]
            if a.key is None and isinstance(a.value, Ref) and a.value.name not in self.env:
                if i + 1 < len(items) and items[i + 1].key is None:
                    nxt = items[i + 1]
                    args.append(Arg(a.value.name, nxt.value, span(a.pos, nxt.pos), a.value.pos))
                    i += 2
                    continue
                self.r.error(a.pos, f"'regularize {a.value.name}' needs a value, e.g. "
                             f"'regularize {a.value.name}=1e-4'")
                bad = True
                i += 1
                continue
            if a.key is None:
                self.r.error(a.pos, "'regularize' takes l1=VALUE and/or l2=VALUE, got "
                             f"'{_expr_text(a.value)}'")
                bad = True
                i += 1
                continue
            args.append(a)
            i += 1
        if not args and not bad:
            self.r.error(stmt.keyword_pos, "'regularize' needs l1=VALUE and/or l2=VALUE, "
                         "e.g. 'regularize l2=1e-4'")
            raise _Bad
        p = self.bind("'regularize'", T.REGULARIZE, args, npos=0, where=stmt.keyword_pos)
        if bad:
            raise _Bad
        return ir.Regularize(p["l1"], p["l2"], stmt.pos)

    # ------------------------------------------------------------------ data
