"""The run folder's lock: a second process is kept out of a folder in use.

``fcntl.flock`` on ``.lock``, which the kernel drops when its holder dies (a stale lock never
blocks); the file holds the holder's pid for the error message. The holder removes the file when it
lets go, so a folder at rest holds no ``.lock`` (one that stays names a process that was killed).
Removing a lock file is safe only with a check on taking it: a process that opened the file just
before its holder removed it would lock a file no one else can find, so ``acquire`` locks, then
makes sure the path still names the file it locked, and starts over when it does not.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from gmai_client.errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


# --- lock -----------------------------------------------------------------------------------


class RunLock:
    """One process at a time in a run folder (see the module docstring)."""

    def __init__(self, run_dir: Path, *, advice: str = "wait for it to end or stop it, or give another --run-name"):
        self.run_dir = run_dir
        self.path = run_dir / LOCK_FILE
        self.advice = advice  # what the refusal tells the user to do
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = self._open()
        while not self._still_named(fd):  # its holder removed it between our open and our lock
            os.close(fd)
            fd = self._open()
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot write in the run folder {self.run_dir}: {exc.strerror or exc}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still held: see the module docstring
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # a reader that opened it before it went sees no holder
        os.close(fd)  # closing the descriptor drops the flock

    def _open(self) -> int:
        """The lock file, opened (made if missing) and locked; a ConfigError naming the holder if busy."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot write in the run folder {self.run_dir}: {exc.strerror or exc}") from None
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"cannot lock the run folder {self.run_dir}: {exc.strerror or exc}") from None
            raise ConfigError(
                f"the run folder {self.run_dir} is in use by another gmai_client process "
                f"(pid {holder or 'unknown'}): {self.advice}"
            ) from None
        return fd

    def _still_named(self, fd: int) -> bool:
        """Whether ``.lock`` is still the file ``fd`` locked (not removed, nor made anew)."""
        try:
            named, held = os.stat(self.path), os.fstat(fd)
        except OSError:
            return False
        return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(run_dir: Path) -> str | None:
    """Whether a process holds the folder's lock now: its pid ("" when it wrote none yet), or None.

    Asks without waiting and without taking the folder: a shared lock tried for an instant, dropped
    at once (a folder at rest has no ``.lock`` at all, so most folders cost one ``stat``)."""
    path = run_dir / LOCK_FILE
    if fcntl is None or not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # removed meanwhile: its holder let go
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        held = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)
        return _read_pid(fd) if held else None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""
