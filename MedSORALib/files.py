"""File helpers: atomic writes, the package's resources folder, checksums, JSON-lines and symptom files.

Atomic writes: every file MedSORA writes appears complete or not at all.

A writer gets a temporary path in the target's folder, writes there, and the
file is renamed onto the target (``os.replace``, atomic on one file system)
only when the writer returns without error; on error the temporary file is
removed and any previous target is left untouched. Written files get the usual
permissions (0666 less the umask), not the private 0600 of ``mkstemp``.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` when the block succeeds.

    The temporary name keeps the final suffixes (``.seg.nrrd``, ``.nii.gz``), so
    writers that choose a format by extension behave the same. Parent folders
    are created.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name.split('.')[0]}-", suffix=suffix, dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
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


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of every file of a folder (sorted by path) for a DICOM series."""
    import hashlib

    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
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
