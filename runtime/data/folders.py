"""Folders of sample files (images, WAV clips): one walk rule for every format read from a
folder — hidden names skipped, links to folders followed (one back into a folder already
searched is an error, not a loop), files in sorted order."""
from __future__ import annotations

import os
from pathlib import Path

from dlrun.errors import DataError


def folder_shown(shown: str) -> str:
    """How messages show a folder: with its trailing ``/``."""
    return shown if shown.endswith("/") else shown + "/"


def hidden(name: str) -> bool:
    return name.startswith(".")


def files_below(root: Path, shown: str, suffixes: tuple, noun: str) -> list[str]:
    """Every file below ``root`` as sorted ``/``-separated paths relative to it; a DataError
    for a file whose name does not end in one of ``suffixes`` ("not {noun}")."""
    found = []
    seen = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        rel = os.path.relpath(folder, root)
        if real in seen:
            raise DataError(f"{shown}{rel}/: a link to a folder already searched (a loop or a duplicate)")
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not hidden(d))
        for name in sorted(files):
            if hidden(name):
                continue
            path = name if rel == "." else f"{rel}/{name}".replace(os.sep, "/")
            if not name.lower().endswith(suffixes):
                raise DataError(f"{shown}{path}: not {noun} (expected {', '.join(suffixes)})")
            found.append(path)
    return sorted(found)
