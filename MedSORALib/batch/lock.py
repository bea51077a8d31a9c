"""One batch per output folder: a lock file that dead processes cannot leave held.

The lock is ``DIR/.medsora-batch/lock``. Where the operating system offers
``flock`` (Linux, macOS), the lock is an exclusive ``flock`` on that file: the
kernel releases it when the holding process ends in any way, so a lock file
left by a crashed or killed batch is stale by construction and is simply taken
over. Elsewhere the file is created exclusively and holds the owner's host, pid
and process start time; a lock whose owner process no longer exists on this
host (or is another process that reused its pid) is stale and is replaced.

The file's content (host, pid, start time) is only used for messages and for
the fallback; it is written after the lock is held.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import InputFileError
from ..files import process_alive

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


class BatchLockedError(InputFileError):
    """Another batch holds the output folder."""


def _process_started(pid: int) -> float | None:
    try:
        import psutil

        return round(psutil.Process(pid).create_time(), 2)
    except Exception:
        return None


def _owner_text(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return ""
    if not info:
        return ""
    started = info.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "?"
    return f" (pid {info.get('pid')} on {info.get('host')}, since {when})"


class BatchLock:
    """Exclusive lock of an output folder (a context manager); :meth:`acquire` raises :class:`BatchLockedError`."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / ".medsora-batch" / "lock"
        self._fd: int | None = None

    def _message(self) -> str:
        return (f"another medsora batch is writing to {self.folder}{_owner_text(self.path)}; wait for it to finish "
                f"or choose another --output-dir")

    def _record(self) -> bytes:
        pid = os.getpid()
        return json.dumps({"host": socket.gethostname(), "pid": pid, "started": time.time(),
                           "process_started": _process_started(pid)}).encode("utf-8")

    def acquire(self) -> "BatchLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            self._acquire_flock()
        else:  # pragma: no cover - exercised on Windows only
            self._acquire_exclusive()
        return self

    def _acquire_flock(self) -> None:
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise BatchLockedError(self._message()) from None
            # The holder before us may have unlinked the file between our open and our flock:
            # the lock only counts when it is on the file that is now at the path.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, self._record())
                self._fd = fd
                return
            os.close(fd)
        raise BatchLockedError(self._message())

    def _acquire_exclusive(self) -> None:  # pragma: no cover - Windows
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                if self._stale():
                    try:
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                raise BatchLockedError(self._message()) from None
            os.write(fd, self._record())
            self._fd = fd
            return
        raise BatchLockedError(self._message())

    def _stale(self) -> bool:
        """Whether the lock file names a process of this host that no longer runs (fallback without flock)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return False
        if info.get("host") != socket.gethostname() or not isinstance(info.get("pid"), int):
            return False
        if not process_alive(info["pid"]):
            return True
        recorded, now = info.get("process_started"), _process_started(info["pid"])
        return recorded is not None and now is not None and abs(recorded - now) > 1.0

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> "BatchLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
