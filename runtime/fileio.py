"""Atomic file replacement, shared by weights, checkpoints and ``dlrun fmt --write``.

Imports only the standard library, so the ``check``/``fmt`` path stays light.
"""
from __future__ import annotations

import os
import tempfile

# Read once at import: os.umask can only be read by setting it, which is not thread-safe
# (checkpoints are written from a background thread).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def fsync_folder(folder: str) -> None:
    """Make a rename inside ``folder`` durable (best effort: some file systems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def replace_atomically(path: str, write, *, binary: bool = True, mode: int | None = None) -> None:
    """Create or replace ``path`` so that a crash at any instant leaves the old or the new file.

    ``write(f)`` fills a temporary file in the same folder, which is flushed, fsync'ed,
    given permission bits ``mode`` (when not None) and renamed over ``path``; the folder is
    then fsync'ed. On any failure the temporary file is removed and the error re-raised
    (``OSError`` for the caller to turn into its own message).
    """
    folder = os.path.dirname(os.path.abspath(path))
    if mode is None:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except OSError:
            mode = 0o666 & ~_UMASK
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        if binary:
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        with f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_folder(folder)
