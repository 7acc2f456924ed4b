"""Compiler-style diagnostics: ``file:line:col: error: message``, the line, a caret.

    models/bad.net:9:15: error: unknown activation 'rleu' (did you mean 'relu'?)
        dense 128 rleu
                  ^~~~

Columns are 1-based character positions (a tab counts as one column); the caret line
copies tabs from the source line so that it stays aligned in any terminal.
"""
from __future__ import annotations

from typing import NamedTuple

from dlrun.dsl.ir import NOWHERE, Pos


SHOWN_LINE_CHARS = 160  # a longer source line is shown cut around the column
MAX_SHOWN_ERRORS = 100  # a file with more errors reports how many more, not each one


class Diagnostic(NamedTuple):
    """One problem found in a model file.

    ``severity`` is 'error' or 'warning'; ``line``/``col`` are 1-based (0 when the problem
    has no place in the text, e.g. an unreadable file); ``end_line``/``end_col`` end the
    span (exclusive); ``source_line`` is the text of ``line`` (None when unknown).
    """

    severity: str
    message: str
    path: str = "<string>"
    line: int = 0
    col: int = 0
    end_line: int = 0
    end_col: int = 0
    source_line: str | None = None

    @property
    def pos(self) -> Pos:
        return Pos(self.line, self.col, self.end_line, self.end_col)

    def format(self) -> str:
        where = self.path
        if self.line > 0:
            where += f":{self.line}:{max(self.col, 1)}"
        text = f"{where}: {self.severity}: {self.message}"
        if self.source_line is not None and self.line > 0:
            src = self.source_line.rstrip("\n")
            col = max(self.col, 1)
            if self.end_line == self.line and self.end_col > col:
                width = self.end_col - col
            else:
                width = max(1, len(src) - col + 1)
            width = max(1, min(width, max(1, len(src) - col + 1)))
            if len(src) > SHOWN_LINE_CHARS:
                # a long line is shown as a window around the column, marked with '...'
                start = max(0, min(col - 1 - SHOWN_LINE_CHARS // 4, len(src) - SHOWN_LINE_CHARS))
                end = start + SHOWN_LINE_CHARS
                before = "..." if start > 0 else ""
                src = before + src[start:end] + ("..." if end < len(src) else "")
                col = col - start + len(before)
                width = max(1, min(width, end - start - (col - 1 - len(before))))
            # keep tabs so the caret lines up however the terminal expands them
            pad = "".join("\t" if ch == "\t" else " " for ch in src[: col - 1])
            text += f"\n    {src}\n    {pad}^{'~' * (width - 1)}"
        return text

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return (f"Diagnostic({self.severity!r}, {self.message!r}, {self.path!r}, "
                f"{self.line}, {self.col})")


class Reporter:
    """Collects diagnostics for one source text; knows the lines for the caret display."""

    def __init__(self, text: str | None, path: str):
        self.path = path
        self.lines = text.split("\n") if text is not None else []
        self.diagnostics: list[Diagnostic] = []

    def _make(self, severity: str, pos: Pos | None, message: str) -> Diagnostic:
        if hasattr(pos, "r"):  # checker._LazyWord: the word starting at pos
            pos = word_span(self.lines, pos.pos)
        pos = pos or NOWHERE
        src = self.lines[pos.line - 1] if 0 < pos.line <= len(self.lines) else None
        return Diagnostic(severity, message, self.path, pos.line, pos.col, pos.end_line,
                          pos.end_col, src)

    def error(self, pos: Pos | None, message: str) -> None:
        self.diagnostics.append(self._make("error", pos, message))

    def warning(self, pos: Pos | None, message: str) -> None:
        self.diagnostics.append(self._make("warning", pos, message))

    @property
    def errors(self) -> list[Diagnostic]:
        """The errors in source order; past ``MAX_SHOWN_ERRORS``, one line says how many more."""
        errors = sort_diagnostics(d for d in self.diagnostics if d.severity == "error")
        if len(errors) > MAX_SHOWN_ERRORS:
            more = len(errors) - MAX_SHOWN_ERRORS
            errors[MAX_SHOWN_ERRORS:] = [errors[MAX_SHOWN_ERRORS]._replace(
                message=f"{more:,} more errors from here on are not shown "
                        f"(the first {MAX_SHOWN_ERRORS} are)")]
        return errors

    @property
    def warnings(self) -> list[Diagnostic]:
        return sort_diagnostics(d for d in self.diagnostics if d.severity == "warning")


def word_span(lines, pos: Pos) -> Pos:
    """The span of the name that starts at ``pos`` (a statement's keyword)."""
    if not 0 < pos.line <= len(lines):
        return pos
    text = lines[pos.line - 1]
    j = pos.col - 1
    while j < len(text) and (text[j].isalnum() or text[j] == "_"):
        j += 1
    return Pos(pos.line, pos.col, pos.line, max(j + 1, pos.col + 1))


def sort_diagnostics(diags) -> list[Diagnostic]:
    """Source order; diagnostics without a position first. Stable for equal positions."""
    return sorted(diags, key=lambda d: (d.line, d.col))


def suggest(word: str, known, *, show_known: bool = True, limit: int = 12) -> str:
    """' (did you mean 'relu'? known: linear, relu, ...)' for an unknown name."""
    import difflib

    known = list(known)
    parts = []
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6) if word else []
    if not close and len(word) >= 3:
        # an abbreviation: 'acc' -> 'accuracy'
        close = [k for k in known if k.startswith(word)][:1]
    if close:
        parts.append(f"did you mean '{close[0]}'?")
    if show_known and known:
        shown = ", ".join(known[:limit]) + (", ..." if len(known) > limit else "")
        parts.append(f"known: {shown}")
    return f" ({' '.join(parts)})" if parts else ""
