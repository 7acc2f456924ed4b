"""Atomic file replacement, shared by weights, checkpoints and ``dlrun fmt --write``; the
temporary files it leaves when killed; whether an output would overwrite an input.

Imports only the standard library (and ``dlrun.errors``), so the ``check``/``fmt`` path
stays light.
"""
from __future__ import annotations

import os
import re
import tempfile

from dlrun.errors import UsageError

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


# the temporary file of ``replace_atomically(FOLDER/NAME)`` is FOLDER/.NAME.XXXXXXXX.tmp
_TEMP_SUFFIX = ".tmp"
_TEMP = re.compile(r"^\.(.+)\.[A-Za-z0-9_]+\.tmp$", re.DOTALL)


def temp_target(name: str) -> str | None:
    """The file name that the temporary file ``name`` of ``replace_atomically`` was to
    replace (``'.w.npz.k3j_a8q2.tmp'`` -> ``'w.npz'``), or None when ``name`` is not one."""
    m = _TEMP.match(name)
    return m.group(1) if m else None


def remove_stale_temps(folder: str, is_target) -> list[str]:
    """Remove the temporary files ``replace_atomically`` left in ``folder`` (a write that was
    killed) whose target name satisfies ``is_target(name)``; returns the paths removed.

    Only safe while holding the lock that excludes every other writer of those targets
    (``runlock``): a live write's temporary file looks exactly the same.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        target = temp_target(name)
        if target is None or not is_target(target):
            continue
        path = os.path.join(folder, name)
        try:
            if os.path.isfile(path) and not os.path.islink(path):
                os.unlink(path)
                removed.append(path)
        except OSError:
            pass
    return removed


def same_file(a, b) -> bool:
    """True when paths ``a`` and ``b`` name one file: through symlinks and hard links (same
    device and inode) when both exist, by resolved real path otherwise."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        pass
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def refuse_inputs(output, flag: str, inputs, choose: str | None = None) -> None:
    """Raise ``UsageError`` when the output path ``output`` (given as ``flag``) is one of
    ``inputs``, ``(role, path)`` pairs such as ``("the model file", "x.net")``: writing it
    would destroy what the run reads."""
    for role, path in inputs:
        if path is not None and same_file(output, path):
            shown = f"{output}" if os.path.abspath(output) == os.path.abspath(path) else f"{output} (= {path})"
            raise UsageError(f"{flag} {shown}: is {role} of this run; writing it would destroy it "
                             f"(choose another {choose or flag})")


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
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=_TEMP_SUFFIX, dir=folder)
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
