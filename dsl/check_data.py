"""The ``data { ... }`` block: files (train/validation/test), the CSV label column and
preprocessing steps, checked before any data is read. ``DataBlock`` is the part of the
elaborator that does it.
"""
from __future__ import annotations

from dlrun.dsl import audio as A, ir, tables as T
from dlrun.dsl.dataformats import data_format
from dlrun.dsl.transform import Let, Ref, Statement, Str
from dlrun.dsl.values import Word, _Bad, _expr_text, quote, show


class DataBlock:
    def data_block(self, stmt: Statement):
        self.no_alias(stmt)
        self.no_call(stmt)
        for a in stmt.args:
            self.r.error(a.pos, "'data' takes only a { ... } block")
        if stmt.block is None:
            self.r.error(stmt.pos, "'data' needs a { ... } block, e.g. data { train \"train.npz\" }")
            return None
        seen: dict[str, Statement] = {}
        values: dict[str, object] = {}
        preprocess = []
        augments: list[ir.Augment] = []
        bad = False
        for item in stmt.block:
            if isinstance(item, Let):
                self.r.error(item.pos, "'let' is not allowed inside 'data'")
                bad = True
                continue
            kw = item.keyword
            if kw not in T.DATA:
                self.unknown_statement(item, tuple(T.DATA))
                bad = True
                continue
            self.no_block(item)
            self.no_alias(item)
            if not self.no_call(item):
                bad = True
                continue
            if kw in seen and kw not in T.REPEATABLE:
                self.r.error(item.keyword_pos, f"duplicate '{kw}' in data (first given on line "
                             f"{seen[kw].pos.line})")
                bad = True
                continue
            seen.setdefault(kw, item)
            try:
                if kw in ("train", "validation", "test"):
                    values[kw] = self.source(item, fraction_ok=(kw != "train"))
                elif kw in ("label", "text"):
                    values[kw] = self.label(item)
                elif kw == "tokens":
                    p = self.bind("'tokens'", T.TOKENS, item.args, npos=1, where=item.keyword_pos, flags=True)
                    values[kw] = ir.Tokens(**p, pos=item.pos)
                elif kw == "augment":
                    augments.append(self.augment(item, augments))
                elif kw == "audio":
                    values[kw] = self.bind("'audio'", T.DATA[kw], item.args, npos=0, where=item.keyword_pos,
                                           example="e.g. 'audio rate=8000 duration=1.0'")
                elif kw == "features":
                    values[kw] = self.bind("'features'", T.DATA[kw], item.args, npos=1, where=item.keyword_pos,
                                           example="e.g. 'features logmel bands=40'")
                elif kw in ("layout", "resize", "target"):
                    p = self.bind(f"'{kw}'", T.DATA[kw], item.args, npos=1, where=item.keyword_pos,
                                  example=f"e.g. '{kw} {T.DATA[kw][0].choices[-1]}'")
                    values[kw] = p[T.DATA[kw][0].name]
                else:
                    p = self.bind(f"'{kw}'", T.DATA[kw], item.args, npos=len(T.DATA[kw]),
                                  where=item.keyword_pos)
                    if kw == "scale" and p["factor"] == 0.0:
                        self.r.error(item.args[0].pos, "'scale' by 0 would erase the data; "
                                     "expected a non-zero factor such as 1/255")
                        raise _Bad
                    preprocess.append(ir.Preprocess(kw, p, item.pos))
            except _Bad:
                bad = True
        if bad:
            return None
        audio = self.audio(values, seen)
        if audio is False:
            return None
        if audio is None:
            for i, step in enumerate(preprocess):
                if step.kind == "standardize" and step.params.get("per") == "band":
                    self.r.error(step.pos, "'standardize per=band' pools audio features over time, but the "
                                 "data block has no 'audio' and 'features' statements")
                    return None
        else:
            for i, step in enumerate(preprocess):
                if step.kind == "standardize" and step.params.get("per") == "band" \
                        and any(s.kind == "minmax" for s in preprocess[:i]):
                    self.r.error(step.pos, "'standardize per=band' after 'minmax': minmax scales each value "
                                 "on its own, so a band's values no longer share one scale; put it first")
                    return None
        data = ir.Data(values.get("train"), values.get("validation"), values.get("test"),
                       values.get("label"), tuple(preprocess), stmt.pos,
                       seen["label"].pos if "label" in seen else ir.NOWHERE,
                       layout=values.get("layout"), resize=values.get("resize"), augment=tuple(augments),
                       settings_pos={k: seen[k].keyword_pos for k in T.IMAGE_ONLY + T.TEXT_ONLY + T.AUDIO_ONLY
                                     + ("target",) if k in seen},
                       text=values.get("text"),
                       tokens=values.get("tokens", ir.Tokens()) if "text" in values else None,
                       audio=audio, target=values.get("target"))
        self.check_data(data, seen)
        return data

    def audio(self, values, seen):
        """``ir.Audio`` from the ``audio`` and ``features`` statements (None: neither given;
        False: a problem, reported)."""
        given = [k for k in T.AUDIO_ONLY if k in values]
        if not given:
            return None
        if len(given) == 1:
            other = "features" if given[0] == "audio" else "audio"
            example = "features logmel bands=40" if other == "features" else "audio rate=8000 duration=1.0"
            self.r.error(seen[given[0]].keyword_pos, f"'{given[0]}' needs '{other}' beside it in the data "
                         f"block, e.g. '{example}'")
            return False
        a, f = values["audio"], values["features"]
        audio = ir.Audio(a["rate"], float(a["duration"]), a["align"], a["classes"], f["kind"],
                         {k: v for k, v in f.items() if k != "kind"}, seen["audio"].pos)
        why = A.problem(audio)
        if why is not None:
            self.r.error(seen["features"].keyword_pos, f"'features {audio.features}': {why}")
            return False
        return audio

    def source(self, item: Statement, fraction_ok: bool):
        kw = item.keyword
        pos_args = [a for a in item.args if a.key is None]
        settings = [a for a in item.args if a.key in {p.name for p in T.TRAIN}]
        if kw == "train" and settings and not pos_args:
            self.r.error(settings[0].key_pos, "training settings such as "
                         f"'{settings[0].key}=' belong in a 'train' statement at the model level, "
                         "not inside data { ... }")
            raise _Bad
        if fraction_ok and pos_args and not isinstance(pos_args[0].value, Str):
            try:
                value = self.evaluate(pos_args[0].value, f"the {kw} fraction")
            except _Bad:
                raise
            if isinstance(value, (int, float)) and not isinstance(value, bool) \
                    and not isinstance(value, str):
                for extra in item.args[1:]:
                    self.r.error(extra.pos, f"'{kw}' given as a fraction takes nothing else")
                    raise _Bad
                if not 0 < value < 1:
                    self.r.error(pos_args[0].pos, f"the {kw} fraction must be in (0, 1), got {show(value)}")
                    raise _Bad
                return float(value)
            if not isinstance(value, str) or isinstance(value, Word):
                self.r.error(pos_args[0].pos, f"'{kw}' takes a file in double quotes or a fraction "
                             f"such as 0.15, got '{_expr_text(pos_args[0].value)}'")
                raise _Bad
        if not pos_args:
            hint = " or a fraction such as 0.15" if fraction_ok else ""
            self.r.error(item.keyword_pos, f"'{kw}' needs a data file in double quotes{hint}, "
                         f"e.g. {kw} \"data/{kw}.npz\"")
            raise _Bad
        p = self.bind(f"'{kw}'", T.SOURCE, item.args, npos=1, where=item.keyword_pos)
        path = p["path"]
        fmt = data_format(path)
        if not path.strip():
            self.r.error(pos_args[0].pos, f"the {kw} file name is empty")
            raise _Bad
        if fmt is None:
            self.r.error(pos_args[0].pos, f"unsupported data file '{path}': expected "
                         + ", ".join(T.DATA_FORMATS))
            raise _Bad
        if fmt == "wav":
            self.r.error(pos_args[0].pos, f"'{path}' is one WAV file; a data block reads a folder of clips, "
                         f"written with a trailing '/': {kw} \"clips/{kw}/\"")
            raise _Bad
        if fmt == "image":
            self.r.error(pos_args[0].pos, f"'{path}' is one image file; a data block reads a folder "
                         f"of class subfolders, written with a trailing '/': {kw} \"images/{kw}/\"")
            raise _Bad
        if fmt == "txt":
            self.r.error(pos_args[0].pos, f"'{path}' is a text file to predict on; a data block reads its "
                         f"texts and labels from a CSV file: {kw} \"data/{kw}.csv\" with 'text COLUMN' "
                         f"and 'label COLUMN'")
            raise _Bad
        for a in item.args:
            if a.key == "labels" and fmt == "imagefolder":
                self.r.error(a.key_pos, "an image folder's labels are its class subfolders; "
                             "'labels=' is for .npy, .npz and IDX inputs")
                raise _Bad
            if a.key in ("x", "y") and fmt != "npz":
                self.r.error(a.key_pos, f"'{a.key}=' names an array inside an .npz file; "
                             f"'{path}' is not one")
                raise _Bad
            if a.key == "labels" and fmt == "csv":
                self.r.error(a.key_pos, "'labels=' is for .npy, .npz and IDX inputs; a CSV file "
                             "names its label column with 'label NAME' in the data block")
                raise _Bad
        if kw == "train" and fmt in ("npy", "idx") and p["labels"] is None:
            kind = "IDX images" if fmt == "idx" else ".npy inputs"
            self.r.error(pos_args[0].pos, f"{kind} need a label file: write "
                         f"train {quote(path)} labels=\"FILE\"")
            raise _Bad
        if p["labels"] is not None and data_format(p["labels"]) in (None, "image", "imagefolder", "txt", "wav"):
            self.r.error(next(a.value.pos for a in item.args if a.key == "labels"),
                         f"unsupported label file '{p['labels']}': expected " + ", ".join(T.DATA_FORMATS))
            raise _Bad
        return ir.Source(path, p["labels"], p["x"], p["y"], item.pos)

    def augment(self, item: Statement, earlier) -> ir.Augment:
        """``augment KIND name=value ...``: the kind, then its parameters (``T.AUGMENT``)."""
        kinds = ", ".join(T.AUGMENT)
        first = next((a for a in item.args if a.key is None), None)
        if first is None:
            self.r.error(item.keyword_pos, f"'augment' needs a kind ({kinds}), e.g. 'augment crop padding=4'")
            raise _Bad
        kind = self.bind("'augment'", T.DATA["augment"], [first], npos=1, where=item.keyword_pos)["kind"]
        again = next((a for a in earlier if a.kind == kind), None)
        if again is not None:
            self.r.error(first.pos, f"duplicate 'augment {kind}' in data (first given on line {again.pos.line})")
            raise _Bad
        table = T.AUGMENT[kind]
        rest = [a for a in item.args if a is not first]
        p = self.bind(f"'augment {kind}'", table, rest, npos=len(table), where=item.keyword_pos)
        return ir.Augment(kind, p, item.pos)

    def label(self, item: Statement):
        """``label NAME`` / ``text NAME``: a CSV column, by name."""
        kw = item.keyword
        example = "label species" if kw == "label" else "text review"
        args = item.args
        if len(args) != 1 or args[0].key is not None:
            self.r.error(item.keyword_pos, f"'{kw}' takes one CSV column name, e.g. '{example}'")
            raise _Bad
        v = args[0].value
        if isinstance(v, Ref):
            return v.name
        if isinstance(v, Str) and v.value:
            return v.value
        self.r.error(v.pos, f"'{kw}' takes a CSV column name, got '{_expr_text(v)}'")
        raise _Bad

    def check_data(self, data: ir.Data, seen):
        fractions = [(k, getattr(data, k)) for k in ("validation", "test")
                     if isinstance(getattr(data, k), float)]
        if fractions and data.train is None:
            k = fractions[0][0]
            self.r.error(seen[k].args[0].pos, f"'{k}' is a fraction of the training file, but the "
                         "data block has no 'train' file")
        if sum(f for _, f in fractions) >= 1.0:
            k = fractions[-1][0]
            self.r.error(seen[k].args[0].pos, "validation and test fractions together must leave "
                         f"training data: {' + '.join(show(f) for _, f in fractions)} >= 1")
        files = [s.path for s in (data.train, data.validation, data.test) if isinstance(s, ir.Source)]
        if data.label is not None:
            if files and not any(data_format(p) == "csv" for p in files):
                self.r.error(seen["label"].keyword_pos, "'label' names a CSV column, but no data file is .csv")
        elif data.train is not None and data_format(data.train.path) == "csv":
            self.r.error(seen["train"].args[0].pos, "which column of the CSV file holds the labels? "
                         "add 'label NAME' to the data block")
        if "tokens" in seen and data.text is None:
            self.r.error(seen["tokens"].keyword_pos, "'tokens' says how a text column becomes token ids, "
                         "but the data block names no text column: add 'text COLUMN'")
        if data.text is not None:
            for kw in ("train", "validation", "test"):
                src = getattr(data, kw)
                if isinstance(src, ir.Source) and data_format(src.path) != "csv":
                    self.r.error(src.pos, f"'text' names a CSV column, but the {kw} file '{src.path}' "
                                 "is not .csv; texts are read from a CSV file's text column")
            if data.label is not None and data.label == data.text:
                self.r.error(seen["text"].args[0].pos, f"the text column '{data.text}' is also the "
                             "label column; expected two different columns")
            for pre in data.preprocess:
                self.r.error(pre.pos, f"'{pre.kind}' changes numbers; a text column's token ids are "
                             "not preprocessed (remove it, or drop 'text' for numeric inputs)")


def check_data_input(data: ir.Data, input_shape, r) -> None:
    """The data block against the model's input: image statements (``layout``, ...) need an
    image input ``CxHxW``, image folders one of 1 (grayscale) or 3 (RGB) channels; audio
    features the shape ``dsl/audio.py`` gives (``mismatch``), read from folders."""
    shape = tuple(input_shape)
    text = "x".join(map(str, shape))
    given = {"layout": data.layout is not None, "resize": data.resize is not None, "augment": bool(data.augment)}
    for kw in T.IMAGE_ONLY:
        if given[kw] and len(shape) != 3:
            # a model built in Python has no positions: the data block's (or none) stands in
            r.error(data.settings_pos.get(kw, data.pos), f"'{kw}' is for image inputs (input CxHxW: "
                    f"channels x height x width), but the model's input is {text}")
    if len(shape) == 3:
        for a in data.augment:
            pixels = a.params.get("padding", a.params.get("pixels"))
            if pixels is not None and pixels >= min(shape[1:]):
                name = "padding" if a.kind == "crop" else "pixels"
                r.error(a.pos, f"'augment {a.kind}' {name}={pixels} would move the whole image out of "
                        f"view: the input's images are {shape[1]} high and {shape[2]} wide; expected "
                        f"{name} < {min(shape[1:])}")
    if data.text is not None:
        tokens = data.tokens or ir.Tokens()
        where = data.settings_pos.get("text", data.pos)
        if len(shape) != 1:
            r.error(where, f"a text column becomes one row of token ids per sample, so the model's "
                    f"input is their count (e.g. 'input 200'), but it is {text}")
        elif tokens.max_length is not None and tokens.max_length != shape[0]:
            r.error(data.settings_pos.get("tokens", tokens.pos),
                    f"'tokens' max_length={tokens.max_length} ids per sample, but the model's input is "
                    f"{text}; expected the same count (or leave max_length out: the input's size is taken)")
    if data.audio is not None:
        why = A.mismatch(data.audio, shape)
        if why is not None:
            r.error(data.settings_pos.get("features", data.pos), why)
        for src in (data.train, data.validation, data.test):
            if isinstance(src, ir.Source) and data_format(src.path) != "imagefolder":
                r.error(src.pos, f"'{src.path}': with 'audio' and 'features' the data block reads folders of "
                        f"WAV clips, written with a trailing '/'")
        return
    for src in (data.train, data.validation, data.test):
        if isinstance(src, ir.Source) and data_format(src.path) == "imagefolder" \
                and (len(shape) != 3 or shape[0] not in (1, 3)):
            r.error(src.pos, f"the image folder '{src.path}' needs an input 1xHxW (grayscale) or 3xHxW "
                    f"(RGB), but the model's input is {text}")
