"""Exclusive locks a training run holds on its outputs: the checkpoint folder and the weights file.

Two runs writing into one checkpoint folder delete each other's in-flight temporary files
and prune each other's checkpoints; two runs writing one weights file leave whichever wrote
last. So a run holds, for its whole life, an ``fcntl.flock`` on a lock file:

    DIR/.dlrun.lock          the checkpoint folder DIR
    FOLDER/.NAME.lock        the weights file FOLDER/NAME

A second run asking for a held lock is refused at once, naming the owner (pid, host and
start time, which the owner writes into the lock file). The kernel drops a flock when its
process dies, SIGKILL included, so a lock file left by a dead run is simply taken over: the
pid inside is only read for the message, never trusted to tell whether the owner lives
(pids are reused). Holding the lock is also what makes it safe to remove the temporary files
a killed write left behind: no live writer of that path can exist.

The lock file is removed on release. A run that opened the file just before it was removed
would lock an orphaned inode; ``acquire`` therefore checks, once it holds the flock, that
the path still names the inode it locked, and starts again otherwise.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import time

from dlrun.errors import UsageError

FOLDER_LOCK = ".dlrun.lock"


def folder_lock_path(folder) -> str:
    return os.path.join(os.path.abspath(os.fspath(folder)), FOLDER_LOCK)


def file_lock_path(path) -> str:
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, "." + name + ".lock")


class RunLock:
    """The lock of ``target`` (a folder or a file, described as ``kind`` in messages), kept in
    the lock file ``lock_path``. ``hint`` ends the refusal: what the user can do instead.

    Use as a context manager, or ``acquire()`` / ``release()``.
    """

    def __init__(self, target, lock_path, *, kind, hint):
        self.target = os.path.abspath(os.fspath(target))
        self.path = lock_path
        self.kind = kind
        self.hint = hint
        self._fd = None

    @classmethod
    def for_folder(cls, folder, *, kind="checkpoint folder", hint="use another checkpoint folder"):
        return cls(folder, folder_lock_path(folder), kind=kind, hint=hint)

    @classmethod
    def for_file(cls, path, *, kind="weights file", hint="write to another file"):
        return cls(path, file_lock_path(path), kind=kind, hint=hint)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "RunLock":
        """Take the lock, or raise ``UsageError`` naming the run that holds it."""
        if self._fd is not None:
            return self
        for _ in range(100):  # a retry only follows a release racing with us
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                owner = _owner_text(fd) if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
                os.close(fd)
                if owner is None:
                    raise UsageError(f"{self.target}: cannot lock the {self.kind} ({self.path}: "
                                     f"{err.strerror or err})") from None
                raise UsageError(
                    f"{self.target}: {self.kind} in use by another dlrun run ({owner}; lock file "
                    f"{self.path}); two runs there would destroy each other's files: wait for it "
                    f"to end, or {self.hint}") from None
            try:
                now = os.stat(self.path, follow_symlinks=False)
                mine = os.fstat(fd)
                current = (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)  # locked a file its previous owner had just removed
        else:
            raise UsageError(f"{self.target}: cannot lock the {self.kind} ({self.path} keeps changing)")
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, (info + "\n").encode(), 0)
        except OSError:
            pass  # the lock holds without its description
        self._fd = fd
        return self

    def _open(self) -> int:
        # O_NOFOLLOW: a symlink planted at the lock's path is not followed; O_NONBLOCK: a FIFO
        # planted there does not block the open (it is refused below)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as err:
            raise UsageError(f"{self.target}: cannot create the lock file {self.path} of the "
                             f"{self.kind} ({err.strerror or err})") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UsageError(f"{self.target}: the lock file {self.path} of the {self.kind} is not a "
                             f"regular file; remove it")
        return fd

    def release(self) -> None:
        """Remove the lock file and drop the lock (nothing happens when not held)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            now = os.stat(self.path, follow_symlinks=False)
            mine = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                os.unlink(self.path)  # before dropping the flock: see the module docstring
        except OSError:
            pass
        os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _owner_text(fd) -> str:
    """``'pid 1234 on host, started 2026-12-01 21:30:00 UTC'`` from a held lock file."""
    info = None
    for _ in range(5):  # the owner writes its description right after taking the lock
        try:
            info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and "pid" in info:
            break
        time.sleep(0.02)
    if not isinstance(info, dict) or "pid" not in info:
        return "pid unknown"
    pid, host, started = (str(info.get(k) or "")[:100] for k in ("pid", "host", "started"))
    text = f"pid {pid}"
    if pid == str(os.getpid()) and host == socket.gethostname():
        text += ", this process"
    elif host:
        text += f" on {host}"
    if started:
        text += f", started {started}"
    return text
