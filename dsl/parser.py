"""Text -> Lark parse tree, with Lark's errors turned into user-facing diagnostics.

The LALR parser is built once per process from ``net.lark`` (and cached on disk by
Lark between processes, keyed by the grammar's hash). Lark's exceptions never leave
this module: ``parse_tree`` returns either a tree or the list of syntax diagnostics.

After a syntax error the parser recovers line by line: when the bad line opens or
closes no block, it is blanked out and the text parsed again, so every independent
syntax error is reported in one run (at most ``MAX_SYNTAX_ERRORS``).
"""
from __future__ import annotations

import os
import re
import unicodedata

from dlrun.dsl.diagnostics import Diagnostic, Reporter
from dlrun.dsl.ir import Pos
from dlrun.dsl.tables import RESERVED_WORDS

GRAMMAR_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "net.lark")
MAX_SYNTAX_ERRORS = 20

# Limits of the reader (docs/language.md, "Limits"). Real model files are a few kilobytes;
# the limits keep a hostile file's cost (memory, time, message length) small and linear.
# A model file (or text given to parse()): 128 KiB, 150 times the largest example. Lark's
# parse tree costs up to about 1.5 KB per byte of text (a node, its positions and tokens for
# each 2-byte line 'x'), so the cap also bounds a hostile file's memory: about 150 MiB.
MAX_SOURCE_BYTES = 128 << 10
MAX_LINE_CHARS = 10_000  # one line: bounds what any single token or expression can cost
MAX_STRING_CHARS = 4096  # between the quotes of a string (paths are at most 4096 on Linux)
MAX_NAME_CHARS = 256
MAX_NUMBER_CHARS = 100  # a number or shape literal as written (Python's int() stops at 4300 digits)
MAX_EXPR_DEPTH = 100  # operators, signs, lists and calls nested in one value
MAX_BLOCK_DEPTH = 32  # blocks nested in blocks
# Recovering from a syntax error parses the text again: at most this many characters in all.
MAX_PARSE_WORK = 2 * MAX_SOURCE_BYTES

_PARSER = None


def import_lark():
    """``import lark``, without the optional ``regex`` module Lark probes for at import.

    Lark uses ``regex`` only when a parser is built with ``regex=True`` (this one is not),
    but importing it when installed costs about as much as the rest of Lark, on every
    ``dlrun check``. A ``None`` entry in ``sys.modules`` makes that probe fail fast; it is
    removed again right after, so later ``import regex`` elsewhere works as usual.
    """
    import sys

    lark = sys.modules.get("lark")
    if lark is not None:
        return lark
    blocked = "regex" not in sys.modules
    if blocked:
        sys.modules["regex"] = None
    try:
        import lark
    finally:
        if blocked and sys.modules.get("regex", 0) is None:
            del sys.modules["regex"]
    return lark


def get_parser():
    """The one LALR parser of the process (built on first use)."""
    global _PARSER
    if _PARSER is None:
        lark = import_lark()

        with open(GRAMMAR_PATH, encoding="utf-8") as f:
            grammar = f.read()
        options = dict(parser="lalr", propagate_positions=True, maybe_placeholders=True)
        cache = _cache_file()
        try:
            _PARSER = lark.Lark(grammar, cache=cache, **options) if cache else lark.Lark(grammar, **options)
        except Exception:  # a damaged or unwritable cache must not stop the parser
            _PARSER = lark.Lark(grammar, **options)
    return _PARSER


def _cache_file() -> str | None:
    """Where Lark keeps the built parse tables between processes, or None (no caching).

    A folder of the user's own (``$XDG_CACHE_HOME/dlrun`` or ``~/.cache/dlrun``) rather than
    Lark's default shared temp folder, because the cache is a pickle: a file another user
    could plant must never be loaded. Lark checks the grammar's hash stored in the file and
    rebuilds it when the grammar or Lark changes.
    """
    import sys

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(base, "dlrun")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.stat(folder)
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            return None
    except OSError:
        return None
    return os.path.join(folder, "net-lalr-py%d%d.lark.cache" % sys.version_info[:2])


# ---------------------------------------------------------------------------------
# Reading a file's bytes

def decode_source(data: bytes, path: str) -> tuple[str | None, list[Diagnostic]]:
    """Bytes -> text with LF line ends, or one diagnostic saying why it is not a model file.

    A UTF-8 BOM is dropped; CRLF and lone CR become LF (columns do not move). ``data`` may
    be the first ``MAX_SOURCE_BYTES + 1`` bytes of a longer file: it is refused as too large.
    """
    if len(data) > MAX_SOURCE_BYTES:
        return None, [too_large(data[:MAX_SOURCE_BYTES].decode("utf-8", "replace"), path, "bytes")]
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None, [Diagnostic("error", "the file is UTF-16 encoded; save it as UTF-8 text", path)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        col = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        start = data.rfind(b"\n", 0, err.start) + 1
        end = data.find(b"\n", err.start)
        shown = data[start: end if end >= 0 else len(data)].decode("utf-8", "replace")
        return None, [Diagnostic(
            "error",
            f"not a text model file: byte 0x{data[err.start]:02x} is not valid UTF-8 "
            "(is this a binary file?)", path, line, col, line, col + 1,
            _printable(shown))]
    return check_text(text, path)


def check_text(text: str, path: str) -> tuple[str | None, list[Diagnostic]]:
    """Normalise line ends and reject empty or binary text with one clear diagnostic."""
    if len(text) > MAX_SOURCE_BYTES:
        return None, [too_large(text[:MAX_SOURCE_BYTES], path, "characters")]
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    long_line = _long_line(text, path)
    if long_line is not None:
        return None, [long_line]
    bad = re.search(r"[\x00-\x08\x0b\x0e-\x1f\x7f]", text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        col = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        shown = text.split("\n")[line - 1]
        return None, [Diagnostic(
            "error",
            f"not a text model file: control character U+{ord(bad.group()):04X} "
            "(is this a binary file?)", path, line, col, line, col + 1, _printable(shown))]
    meaningful = re.sub(r"#[^\n]*", "", text).strip()
    if not meaningful:
        return None, [Diagnostic(
            "error", "empty model file: expected the version line 'dlrun 1' and a "
            "'model NAME { ... }' block", path)]
    return text, []


def too_large(head: str, path: str, unit: str) -> Diagnostic:
    """The text goes on past ``MAX_SOURCE_BYTES``; ``head`` is the part up to the limit.

    Pointed at the line and column where the limit is passed (the line may be cut there).
    """
    start = head.rfind("\n") + 1
    line = head.count("\n", 0, start) + 1
    col = len(head) - start + 1
    return Diagnostic(
        "error", f"the model file is larger than the limit of {MAX_SOURCE_BYTES:,} {unit} "
        f"({MAX_SOURCE_BYTES >> 10} KiB) and goes on past here; model files are a few kilobytes "
        "(is this the right file?)", path, line, col, line, col + 1, _printable(head[start:]))


def _long_line(text: str, path: str) -> Diagnostic | None:
    """A diagnostic for the first line longer than ``MAX_LINE_CHARS``, or None."""
    if len(text) <= MAX_LINE_CHARS:
        return None
    start, line = 0, 1
    while True:
        end = text.find("\n", start)
        stop = len(text) if end < 0 else end
        if stop - start > MAX_LINE_CHARS:
            col = MAX_LINE_CHARS + 1
            return Diagnostic(
                "error", f"line of {stop - start:,} characters; at most {MAX_LINE_CHARS:,} are "
                "accepted (one statement per line)", path, line, col, line, col + 1,
                _printable(text[start:stop]))
        if end < 0:
            return None
        start, line = end + 1, line + 1


def _printable(line: str) -> str:
    """A line safe to echo to a terminal: control characters become '?' (columns kept)."""
    return "".join(ch if ch == "\t" or ch.isprintable() else "?" for ch in line)


# ---------------------------------------------------------------------------------
# Parsing with readable syntax errors

def parse_tree(text: str, path: str):
    """(tree, []) on success, (None, diagnostics) on syntax errors. ``text`` is normalised."""
    lark = import_lark()

    parser = get_parser()
    reporter = Reporter(text, path)
    work = text
    last = (0, 0)
    # each recovery parses the whole text again: a long text gets fewer of them
    attempts = max(1, min(MAX_SYNTAX_ERRORS, MAX_PARSE_WORK // max(len(text), 1)))
    for _ in range(attempts):
        try:
            tree = parser.parse(work)
        except lark.exceptions.UnexpectedInput as err:
            pos, message = describe_error(err, work)
            reporter.error(pos, message)
            if (pos.line, pos.col) <= last or not _recoverable(work, pos.line):
                break
            last = (pos.line, pos.col)
            lines = work.split("\n")
            lines[pos.line - 1] = ""
            work = "\n".join(lines)
            continue
        if reporter.diagnostics:
            break
        check_limits(tree, reporter)
        if reporter.diagnostics:
            break
        return tree, []
    return None, reporter.errors


_VALUE_RULES = frozenset({"add", "sub", "mul", "div", "neg", "plus", "call", "list"})
_TOKEN_LIMITS = {
    "STRING": (MAX_STRING_CHARS, "string"), "NAME": (MAX_NAME_CHARS, "name"),
    "CALLNAME": (MAX_NAME_CHARS, "name"), "NUMBER": (MAX_NUMBER_CHARS, "number"),
    "SHAPE": (MAX_NUMBER_CHARS, "shape"),
}


def check_limits(tree, reporter: Reporter) -> None:
    """Report tokens over their length limit and values or blocks nested too deeply.

    Walks the parse tree with an explicit stack (the later passes recurse, so depth is
    checked here first). A subtree that is too deep is reported once, at its start.
    """
    Token = import_lark().Token
    stack = [(tree, 0, 0)]
    while stack:
        node, depth, blocks = stack.pop()
        if node.data in _VALUE_RULES:
            depth += 1
            if depth > MAX_EXPR_DEPTH:
                reporter.error(_meta_start(node.meta), f"this value nests more than {MAX_EXPR_DEPTH} "
                               "levels deep (operators, signs, lists and calls); write it shorter "
                               "or in steps with 'let'")
                continue
        elif node.data == "block":
            blocks += 1
            if blocks > MAX_BLOCK_DEPTH:
                reporter.error(_meta_start(node.meta), f"blocks nest more than {MAX_BLOCK_DEPTH} "
                               "levels deep here")
                continue
        for child in node.children:
            if isinstance(child, Token):
                limit = _TOKEN_LIMITS.get(child.type)
                if limit is None:
                    continue
                size = len(child) - 2 if child.type == "STRING" else len(child)
                if size > limit[0]:
                    reporter.error(_token_pos(child), f"{limit[1]} of {size:,} characters is too long; at most "
                                   f"{limit[0]:,} are accepted")
            elif child is not None:
                stack.append((child, depth, blocks))


def _meta_start(meta) -> Pos:
    return Pos(meta.line, meta.column, meta.line, meta.column + 1)


def _recoverable(text: str, line: int) -> bool:
    """Blanking ``line`` is safe when it is inside the model block and has no brace."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return False
    if "{" in _code(lines[line - 1]) or "}" in _code(lines[line - 1]):
        return False
    depth = 0
    for src in lines[: line - 1]:
        code = _code(src)
        depth += code.count("{") - code.count("}")
    return depth > 0


# a string (also one left open) or a comment; runs between escapes, as in net.lark's STRING
STRING_OR_COMMENT = r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"?|#[^\n]*'
_STRING_OR_COMMENT = re.compile(STRING_OR_COMMENT)


def _code(line: str) -> str:
    """A line without its strings and comment (to count braces)."""
    return _STRING_OR_COMMENT.sub(lambda m: "" if m.group().startswith("#") else '""', line)


_TOKEN_WORDS = {
    "LBRACE": "'{'", "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['",
    "RSQB": "']'", "EQUAL": "'='", "COMMA": "','", "PLUS": "'+'", "MINUS": "'-'",
    "STAR": "'*'", "SLASH": "'/'", "DLRUN": "'dlrun'", "MODEL": "'model'", "LET": "'let'",
    "AS": "'as NAME'", "_NL": "the end of the line", "$END": "the end of the file",
    "<END-OF-FILE>": "the end of the file",
    "NUMBER": "a number", "NAME": "a name", "CALLNAME": "a name", "STRING": "a string", "SHAPE": "a shape",
}
_VALUE_START = {"NUMBER", "NAME", "CALLNAME", "STRING", "SHAPE", "LPAR", "LSQB", "MINUS", "PLUS"}
_OPERATORS = {"PLUS", "MINUS", "STAR", "SLASH"}
_LEXEME = re.compile(r'"[^"\\\n]*(?:\\.[^"\\\n]*)*"|[A-Za-z_][A-Za-z0-9_]*|[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?(?:x[0-9]+)*|\S')


def _found(token) -> str:
    kind = token.type
    if kind == "$END":
        return "the end of the file"
    if kind == "_NL":
        return "the end of the line"
    if kind in ("NAME", "CALLNAME"):
        # a reserved word lexes as a name where the grammar expects no keyword
        what = "keyword" if token.value in RESERVED_WORDS else "name"
        return f"the {what} '{token.value}'"
    if kind == "NUMBER":
        return f"the number {token.value}"
    if kind == "SHAPE":
        return f"the shape {token.value}"
    if kind == "STRING":
        return f"the string {token.value}"
    if kind in ("DLRUN", "MODEL", "LET", "AS"):
        return f"the keyword '{token.value}'"
    return f"'{token.value}'"


def _expected_words(expected) -> str:
    expected = {"$END" if e == "<END-OF-FILE>" else e for e in expected}
    if "CALLNAME" in expected:
        expected = (expected - {"CALLNAME"}) | {"NAME"}
    words = []
    if "LET" in expected and "NAME" in expected:
        words.append("a statement (such as 'dense 10')")
        expected -= {"LET", "NAME"}
    elif {"NUMBER", "NAME"} <= expected:
        words.extend(["a number", "a name"])
        # what could end the statement instead ('{', '}', 'as', a line end) is not what is missing
        expected -= _VALUE_START | {"LBRACE", "RBRACE", "AS", "_NL", "$END"}
    elif expected & {"NUMBER", "NAME", "STRING", "SHAPE"}:
        expected -= {"LPAR", "LSQB", "MINUS", "PLUS"} if "NUMBER" in expected else set()
    if words or expected & {"NAME", "NUMBER"}:
        expected -= _OPERATORS
    if "EQUAL" in expected and "NAME" not in expected and len(expected - {"EQUAL"}) > 3:
        expected = {"EQUAL"}
    order = ["NUMBER", "NAME", "STRING", "SHAPE", "LPAR", "LSQB", "MINUS", "PLUS", "EQUAL",
             "COMMA", "RPAR", "RSQB", "AS", "LBRACE", "RBRACE", "STAR", "SLASH", "DLRUN",
             "MODEL", "LET", "_NL", "$END"]
    for name in order:
        if name in expected:
            words.append(_TOKEN_WORDS[name])
    if not words:
        words = [_TOKEN_WORDS.get(e, e.lower()) for e in sorted(expected)]
    if len(words) == 1:
        return words[0]
    if len(words) == 2:
        return f"{words[0]} or {words[1]}"
    return ", ".join(words[:-1]) + " or " + words[-1]


def _previous(text: str, line: int, col: int) -> str | None:
    """The lexeme just before ``line:col`` on the same line ('lr=' for a dangling '=')."""
    lines = text.split("\n")
    if not 0 < line <= len(lines):
        return None
    prefix = lines[line - 1][: max(col - 1, 0)]
    prefix = _STRING_OR_COMMENT.sub(lambda m: "" if m.group().startswith("#") else m.group(), prefix)
    lexemes = list(_LEXEME.finditer(prefix))
    if not lexemes:
        return None
    if lexemes[-1].group() == "=" and len(lexemes) >= 2:
        return prefix[lexemes[-2].start(): lexemes[-1].end()]  # 'lr=' or 'x ='
    return lexemes[-1].group()


def _char_name(ch: str) -> str:
    if ch.isprintable() and not ch.isspace():
        return f"'{ch}'"
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def _token_pos(token) -> Pos:
    line = token.line or 1
    col = token.column or 1
    end_line = getattr(token, "end_line", None) or line
    end_col = getattr(token, "end_column", None) or col + max(len(str(token.value)), 1)
    return Pos(line, col, end_line, end_col)


def describe_error(err, text: str) -> tuple[Pos, str]:
    """A Lark ``UnexpectedInput`` -> (position, message in the user's words)."""
    lark = import_lark()

    lines = text.split("\n")
    if isinstance(err, lark.exceptions.UnexpectedCharacters):
        line, col = err.line, err.column
        ch = text[err.pos_in_stream] if err.pos_in_stream < len(text) else ""
        pos = Pos(line, col, line, col + 1)
        if ch == '"':
            rest = lines[line - 1][col - 1:] if 0 < line <= len(lines) else ""
            return Pos(line, col, line, col + len(rest)), (
                "unterminated string: a string must end with '\"' on the same line")
        if ch == ";":
            return pos, "unexpected ';': statements end at the end of the line (no ';' needed)"
        if ch == "'":
            return pos, "unexpected \"'\": strings are written in double quotes, e.g. \"data/train.npz\""
        hint = ""
        if ch == "\t" or (ch and unicodedata.category(ch).startswith("Z")):
            hint = " (only spaces and tabs separate words)"
        elif ch and ord(ch) > 127 and ch.isalpha():
            hint = " (names use ASCII letters, digits and '_')"
        prev = _previous(text, line, col)
        after = f" after '{prev}'" if prev else ""
        return pos, f"unexpected character {_char_name(ch)}{after}{hint}"

    token = getattr(err, "token", None)
    expected = set(getattr(err, "expected", None) or getattr(err, "accepts", None) or ())
    expected = {"$END" if e == "<END-OF-FILE>" else e for e in expected}
    if token is None or token.type == "$END" or isinstance(err, lark.exceptions.UnexpectedEOF):
        # Report an unclosed block at its '{', which is where the mistake usually is.
        opener = _unclosed_brace(text)
        if opener is not None:
            line, col = opener
            return Pos(line, col, line, col + 1), (
                "this '{' is never closed: expected '}' before the end of the file")
        nonblank = [i for i, s in enumerate(lines) if _code(s).strip()]
        line = (nonblank[-1] + 1) if nonblank else 1
        col = len(lines[line - 1]) + 1
        return Pos(line, max(col - 1, 1), line, col), (
            f"unexpected end of the file; expected {_expected_words(expected)}")

    pos = _token_pos(token)
    if token.type == "_NL":
        # a newline token starts at the end of the line (or at a comment): point there
        pos = Pos(pos.line, pos.col, pos.line, pos.col + 1)
    prev = _previous(text, pos.line, pos.col)
    after = f" after '{prev}'" if prev else ""
    found = _found(token)

    if prev == "/" and token.type in ("SLASH", "STAR"):
        start = Pos(pos.line, pos.col - 1, pos.line, pos.col + 1)
        return start, (f"'/{token.value}' does not start a comment: comments start with '#' "
                       "and run to the end of the line")
    if "DLRUN" in expected:
        return pos, ("the file must start with the format version line 'dlrun 1' "
                     f"(found {found})")
    if "MODEL" in expected:
        return pos, f"expected 'model NAME {{' after the version line, found {found}"
    if token.type == "RBRACE" and "RBRACE" not in expected:
        return pos, f"unexpected '}}'{after}: no block is open here"
    if token.type == "COMMA" and "COMMA" not in expected:
        return pos, (f"unexpected ','{after}: values of a statement are separated by spaces "
                     "(commas only separate items in [...] and (...))")
    if prev == "let" and "NAME" in expected:
        return pos, f"expected a name after 'let', found {found}; write 'let NAME = value'"
    if token.type == "EQUAL" and "EQUAL" not in expected:
        return pos, (f"unexpected '='{after}: a setting is written name=value "
                     "with a name before '='")
    if set(expected) <= {"_NL", "$END"} and "$END" in expected:
        closed = _model_close(text)
        where = f"; the model block was closed by the '}}' on line {closed[0]}, column {closed[1]}" \
            if closed else ""
        return pos, f"expected the end of the file after the model block, found {found} (one model per file{where})"
    if token.type == "LBRACE" and "LBRACE" not in expected and _at_line_start(text, pos):
        return pos, "unexpected '{': a block's '{' goes at the end of the line of its statement, e.g. 'repeat 2 {'"
    if token.type == "_NL" and "LBRACE" in expected and prev is not None and "NAME" not in expected:
        return pos, f"expected '{{'{after}, found the end of the line (a block's '{{' goes on the same line)"
    if {"NAME", "RBRACE"} <= expected and _at_line_start(text, pos):
        return pos, f"expected a statement (such as 'dense 10') or '}}', found {found}"
    return pos, f"expected {_expected_words(expected)}{after}, found {found}"


def _at_line_start(text: str, pos: Pos) -> bool:
    lines = text.split("\n")
    return 0 < pos.line <= len(lines) and not lines[pos.line - 1][: pos.col - 1].strip()


def _model_close(text: str):
    """(line, col) of the '}' that closes the first block of the file, or None."""
    depth = 0
    for lineno, src in enumerate(text.split("\n"), 1):
        code = _STRING_OR_COMMENT.sub(lambda m: "" if m.group().startswith("#") else " " * len(m.group()), src)
        for col, ch in enumerate(code, 1):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return lineno, col
    return None


def _unclosed_brace(text: str):
    """(line, col) of the innermost '{' left open at the end of the text, or None."""
    stack = []
    for lineno, src in enumerate(text.split("\n"), 1):
        code = _STRING_OR_COMMENT.sub(lambda m: "" if m.group().startswith("#") else " " * len(m.group()), src)
        for col, ch in enumerate(code, 1):
            if ch == "{":
                stack.append((lineno, col))
            elif ch == "}" and stack:
                stack.pop()
    return stack[-1] if stack else None
