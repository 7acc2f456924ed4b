"""Opening an input file for reading: regular files only.

Every reader (data, labels, IDX, weights, checkpoints, ``predict --input``, model files)
opens its file here, so a FIFO (or a symlink to one) is refused instead of blocking
forever, and ``/dev/zero`` is "not a regular file" instead of an endless read.

The path is checked with ``os.stat`` (symlinks followed) before opening; the open itself is
non-blocking (opening a FIFO for reading would otherwise wait for a writer) and the opened
descriptor is checked again with ``fstat``, so a file swapped in between is caught too.

Imports only the standard library: ``dlrun.dsl`` uses it.
"""
from __future__ import annotations

import os
import stat

_SPECIAL = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotReadable(Exception):
    """Why a path cannot be read as a regular file.

    ``kind``: ``'missing'``, ``'directory'``, ``'special'`` (FIFO, device, socket),
    ``'denied'`` or ``'error'``; ``detail``: what the special file is, or the OS's words.
    """

    def __init__(self, kind: str, detail: str = ""):
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail

    def reason(self, what: str) -> str:
        """The message's text after ``PATH: ``, for a file read as ``what`` ('weights file')."""
        if self.kind == "missing":
            return f"no such {what}"
        if self.kind == "directory":
            return f"is a directory, expected a {what}"
        if self.kind == "special":
            return f"is {self.detail}, not a regular file; expected a {what}"
        if self.kind == "denied":
            return f"cannot read {what}: permission denied"
        return f"cannot read {what}: {self.detail}"


def _check_kind(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise NotReadable("directory")
    for test, name in _SPECIAL:
        if test(mode):
            raise NotReadable("special", name)
    raise NotReadable("special", "not a regular file")


def _os_error(err: OSError) -> NotReadable:
    if isinstance(err, FileNotFoundError):
        return NotReadable("missing")
    if isinstance(err, IsADirectoryError):
        return NotReadable("directory")
    if isinstance(err, PermissionError):
        return NotReadable("denied")
    return NotReadable("error", err.strerror or str(err))


def open_regular(path):
    """``path`` opened for binary reading (a buffered file object); ``NotReadable`` unless it
    is (a symlink to) a readable regular file."""
    path = os.fspath(path)
    try:
        _check_kind(os.stat(path).st_mode)
        nonblock = getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, os.O_RDONLY | nonblock | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except OSError as err:
        raise _os_error(err) from None
    try:
        _check_kind(os.fstat(fd).st_mode)  # the path may have been replaced since the stat
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path) -> int:
    """The size of the regular file ``path`` (opened and closed); ``NotReadable`` otherwise."""
    with open_regular(path) as f:
        return os.fstat(f.fileno()).st_size
