"""File helpers: atomic writes, the package's resources folder, checksums, JSON-lines and symptom files.

Atomic writes: every file MedSORA writes appears complete or not at all, and so does a set of files.

A writer gets a temporary path in the target's folder, writes there, and the
file is flushed to disk (``fsync``) and renamed onto the target (``os.replace``,
atomic on one file system) only when the writer returns without error; on error
the temporary file is removed and any previous target is left untouched.
Written files get the usual permissions (0666 less the umask), not the private
0600 of ``mkstemp``.

Inside :func:`atomic_set`, the renames wait until every file of the set is
written: a failure in any writer leaves none of them, and the files are renamed
in the order they were written (the writers of a result put their completion
marker, the JSON report, last).

Temporary names follow one pattern, ``.medsora-tmp.<host>.<pid>.<random>.<final
name>`` (the final suffixes are kept, so writers choosing a format by extension
behave the same). A process killed while writing leaves such files behind; the
next write into that folder removes those that are stale: written on this host
by a process that no longer runs, or older than ``STALE_AFTER_S``. Other files
are never touched.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
import re
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

TEMP_PREFIX = ".medsora-tmp"
#: A temporary file older than this (seconds) is stale whatever wrote it.
STALE_AFTER_S = 24 * 3600
_TEMP_NAME = re.compile(r"^\.medsora-tmp\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.(?P<final>.+)$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname() or "host")[:40] or "host"


def temp_name_info(name: str) -> dict | None:
    """``{"host", "pid", "final"}`` of one of our temporary file names, or None for any other name."""
    match = _TEMP_NAME.match(name)
    if match is None:
        return None
    return {"host": match["host"], "pid": int(match["pid"]), "final": match["final"]}


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (another user's counts; a zombie does not).

    :func:`MedSORALib.process_tree.alive`, which also works on Windows (where ``os.kill(pid, 0)`` would send the
    process a Ctrl-C).
    """
    from .process_tree import alive

    return alive(pid)


def is_stale(path: Path, now: float | None = None) -> bool:
    """Whether ``path`` is one of our temporary files whose writer is gone (see the module doc)."""
    info = temp_name_info(path.name)
    if info is None:
        return False
    try:
        age = (time.time() if now is None else now) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if age > STALE_AFTER_S:
        return True
    return info["host"] == _host() and info["pid"] != os.getpid() and not process_alive(info["pid"])


_CLEANED: set[str] = set()
_CLEANED_LOCK = threading.Lock()


def remove_stale_temp_files(folder: str | os.PathLike, force: bool = False) -> list[Path]:
    """Remove our stale temporary files (plain files only) from ``folder``; once per folder and process."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    with _CLEANED_LOCK:
        if key in _CLEANED and not force:
            return []
        _CLEANED.add(key)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(TEMP_PREFIX + ".") or not entry.is_file(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if is_stale(path, now):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    # Makes the renames durable; some file systems do not allow it on a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class OutputSet:
    """Files written under temporary names, renamed onto their targets together (see :func:`atomic_set`)."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []

    def discard(self) -> None:
        for tmp, _ in self.staged:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self.staged = []

    def commit(self) -> None:
        done: list[Path] = []
        try:
            for tmp, final in self.staged:
                os.replace(tmp, final)
                done.append(final)
        except BaseException:
            # A rename failed part-way: take back the ones made, so the set is absent rather than partial.
            for final in done:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(final)
            self.discard()
            raise
        for folder in {final.parent for _, final in self.staged}:
            _fsync_folder(folder)
        self.staged = []


_ACTIVE_SET: contextvars.ContextVar[OutputSet | None] = contextvars.ContextVar("medsora_output_set", default=None)


@contextlib.contextmanager
def atomic_set() -> Iterator[OutputSet]:
    """Group the atomic writes of the block: all their files appear together after the block, or none.

    A nested call joins the enclosing set.
    """
    outer = _ACTIVE_SET.get()
    if outer is not None:
        yield outer
        return
    files = OutputSet()
    token = _ACTIVE_SET.set(files)
    try:
        yield files
    except BaseException:
        _ACTIVE_SET.reset(token)
        files.discard()
        raise
    _ACTIVE_SET.reset(token)
    files.commit()


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; it becomes ``path`` when the block succeeds.

    The file is synced to disk before the rename. Inside :func:`atomic_set` the
    rename waits for the end of the set. Parent folders are created, and stale
    temporary files of ours in the folder are removed first.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(final.parent)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}.{_host()}.{os.getpid()}.", suffix=f".{final.name}",
                               dir=final.parent)
    os.close(fd)
    staged = _ACTIVE_SET.get()
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        _fsync_file(Path(tmp))
        if staged is not None:
            staged.staged.append((Path(tmp), final))
        else:
            os.replace(tmp, final)
            _fsync_folder(final.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def resource_path(*parts: str) -> Path:
    """A path inside the package's ``resources`` folder (weights, knowledge base, dataset)."""
    return Path(__file__).resolve().parent.joinpath("resources", *parts)


def file_sha256(path: str | os.PathLike, check=None) -> str:
    """SHA-256 of a file, or of the regular files directly in a folder (sorted by path) for a DICOM series.

    A folder is not walked below its own files: ITK's series reader reads no deeper, and a folder
    that is not a series (``/``) is refused by :func:`MedSORALib.validation.check_input_path` first.
    ``check``, when given, is called before each MiB is read (it raises to stop: a cancelled load).
    """
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(Path(e.path) for e in os.scandir(path) if e.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            while True:
                if check is not None:
                    check()
                block = handle.read(1 << 20)
                if not block:
                    break
                digest.update(block)
    return digest.hexdigest()


def read_jsonl(path: str | os.PathLike) -> list:
    """Records of a JSON-lines file (blank lines skipped); InputFileError on a missing file or a bad line."""
    import json

    from .errors import InputFileError

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"file not found: {path}")
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputFileError(f"{path}:{number}: not valid JSON ({exc.msg})") from exc
    return rows


def require_utf8(text: str, what: str = "the symptom") -> str:
    """``text`` unchanged when it is valid Unicode; :class:`SymptomError` (one line, the text not echoed) when it
    holds bytes that were not UTF-8 (Python keeps such command-line bytes as lone surrogates)."""
    from .errors import SymptomError

    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SymptomError(f"{what} is not UTF-8 text (a byte that is not UTF-8 at character {exc.start + 1}); "
                           "give the text in UTF-8") from None
    return text


def read_symptom_file(path: str | os.PathLike) -> list[str]:
    """Symptoms of a UTF-8 text file, one per line (``"-"``: standard input); blank lines and lines starting
    with ``#`` are skipped. Raises :class:`InputFileError` for an unreadable file, :class:`SymptomError`
    when it holds no symptom."""
    import sys

    from .errors import InputFileError, SymptomError

    try:
        if str(path) == "-":
            content = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as handle:
                content = handle.read()
    except FileNotFoundError:
        raise InputFileError(f"symptom file {path} does not exist") from None
    except IsADirectoryError:
        raise InputFileError(f"symptom file {path} is a folder, not a text file") from None
    except UnicodeDecodeError:
        raise InputFileError(f"symptom file {path} is not UTF-8 text") from None
    except OSError as exc:
        raise InputFileError(f"cannot read symptom file {path}: {exc.strerror or exc}") from None
    texts = [line.strip() for line in content.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not texts:
        raise SymptomError(f"symptom file {path} holds no symptom (all lines are blank or comments)")
    return texts
