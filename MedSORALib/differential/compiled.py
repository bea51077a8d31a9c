"""Fast loading of the differential's data: checked JSON caches of the catalogue and of ``labs.yaml``.

A cold ``medsora rank`` spent most of its time above ``import torch`` on two things that give the same result
on every run: building the catalogue from its YAML parts (parsing, and compiling every pattern once to
validate it) and compiling the reader's ~500 regular expressions, one per finding, of which a short text
needs a handful. This module removes both without changing a result:

- :func:`cached_catalogue`: the validated :class:`~.records.Catalogue` kept as JSON (never pickle) beside the
  package data, in ``resources/differential/__pycache__/`` (the user cache folder ``$MEDSORA_CACHE_DIR`` when
  the package folder is read-only). The file holds the digest of everything the catalogue is built from: the
  bytes of every YAML part and ``labs.yaml``, the source of the modules that parse and validate them, the
  Python version and :data:`CACHE_VERSION`. A file whose digest differs from the current one, that does not
  parse, or that names a type outside :mod:`.records` is ignored and the catalogue is built from the YAML
  (and the cache rewritten); a catalogue that does not survive the round trip unchanged is not cached.
- ``read_yaml``: a YAML file of the shipped data (``labs.yaml``) through a JSON copy checked by its digest.
- :mod:`.gates`: the reader's and lab reader's patterns compiled on first need, behind literal needles kept in
  ``reader-gates.json`` and ``labs-gates.json`` in the same folder.

The files are written on first use (``medsora rank`` once), atomically; deleting them is always safe.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from types import MappingProxyType

#: Raised when the cache layout changes: every older file is then ignored.
CACHE_VERSION = 3
_PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
_HERE = Path(__file__).resolve().parent
#: Modules whose code decides what the catalogue holds (their source is part of the digest).
_CODE = (_HERE / "catalogue.py", _HERE / "records.py", _HERE.parent / "organs.py")
CATALOGUE_FILE = "catalogue-cache.json"


# ------------------------------------------------------------------------------------------ where and what


def package_cache_dir(root: Path) -> Path:
    """The cache folder beside the data (``root/__pycache__``, ignored by git like the bytecode folders)."""
    return Path(root) / "__pycache__"


def user_cache_dir() -> Path:
    """The fallback folder when the package data are read-only."""
    return Path(os.environ.get("MEDSORA_CACHE_DIR", Path.home() / ".cache" / "medsora")) / "differential"


def catalogue_digest(root: Path) -> str:
    """Digest of the catalogue's inputs: the YAML parts' names and bytes, ``labs.yaml`` and the parsing code."""
    root = Path(root)
    h = hashlib.blake2b(digest_size=20)
    h.update(f"v{CACHE_VERSION} python {_PYTHON}\n".encode())
    files = sorted((root / "findings").glob("*.yaml")) + sorted((root / "diseases").glob("*.yaml"))
    files.append(root / "labs.yaml")
    for path in files + [p for p in _CODE]:
        try:
            data = path.read_bytes()
        except OSError:
            data = b"\0missing"
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else "code/" + path.name
        h.update(f"{name} {len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(folder: Path, name: str, data) -> Path | None:
    """Write atomically (a temporary file, then a rename); ``None`` when the folder is not writable."""
    return _write_text(folder, name, json.dumps(data, separators=(",", ":"), ensure_ascii=False))


def _write_text(folder: Path, name: str, text: str) -> Path | None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)  # readable like the data beside it (mkstemp makes it private)
            os.replace(tmp, folder / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        return None
    return folder / name


# ------------------------------------------------------------------------------------ catalogue as JSON
# Tagged JSON: a record is {"@": "Finding", ...fields}, a tuple {"()": [...]}, a read-only mapping
# {"{}": {...}}; lists, strings, numbers, booleans and null are themselves. Only dataclasses of
# :mod:`.records` are written or read back, so the file cannot name any other type.


def _encode(obj):
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise TypeError("non-finite float")
        return obj
    if isinstance(obj, tuple):
        return {"()": [_encode(v) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v) for v in obj]
    if isinstance(obj, (dict, MappingProxyType)):
        if not all(isinstance(k, str) and k not in ("@", "()", "{}") for k in obj):
            raise TypeError("mapping with a key the tagged JSON cannot hold")
        return {"{}": {k: _encode(v) for k, v in obj.items()}}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        from . import records

        name = type(obj).__name__
        if getattr(records, name, None) is not type(obj):
            raise TypeError(f"{name} is not a record type")
        out = {"@": name}
        for f in dataclasses.fields(obj):
            if f.init:
                out[f.name] = _encode(getattr(obj, f.name))
        return out
    raise TypeError(f"cannot cache a {type(obj).__name__}")


def _decoder():
    from . import records

    # the record types, and the fields a record written by :func:`_encode` has (all its init fields)
    classes = {name: cls for name, cls in vars(records).items()
               if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == records.__name__}
    fields = {name: frozenset(f.name for f in dataclasses.fields(cls) if f.init) for name, cls in classes.items()}
    # types whose constructor only sets its fields (no __post_init__, no __slots__, no init=False field)
    plain = {name for name, cls in classes.items() if not hasattr(cls, "__post_init__")
             and not hasattr(cls, "__slots__") and all(f.init for f in dataclasses.fields(cls))}
    new = object.__new__

    def hook(d: dict):
        name = d.get("@")
        if name is not None:
            cls = classes.get(name)
            if cls is None:
                raise TypeError(f"{name} is not a record type")
            del d["@"]  # the decoder's own fresh dict
            if name in plain and d.keys() == fields[name]:
                # every field given: set them as the (frozen) constructor would, without its per-field calls
                obj = new(cls)
                obj.__dict__.update(d)
                return obj
            return cls(**d)
        if len(d) == 1:
            if "()" in d:
                return tuple(d["()"])
            if "{}" in d:
                return MappingProxyType(d["{}"])
        return d

    return hook


def same_catalogue(a, b) -> bool:
    """Equal rows and equal lexicon (``Catalogue.__eq__`` leaves the lexicon out)."""
    return a == b and dict(a.findings) == dict(b.findings) and list(a.findings) == list(b.findings)


def _load_file(path: Path, digest: str):
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    head = text[:200]
    if f'"digest":"{digest}"' not in head:
        return None
    try:
        from .records import Catalogue

        obj = json.loads(text, object_hook=_decoder())
        catalogue = obj.get("catalogue") if isinstance(obj, dict) else None
        return catalogue if isinstance(catalogue, Catalogue) and obj.get("digest") == digest else None
    except (ValueError, TypeError):
        return None


def cached_catalogue(root: Path, build):
    """The catalogue of ``root``, from the cache when its digest is current, else ``build(root)`` (and cached).

    Errors of ``build`` (a malformed catalogue) propagate and nothing is written.
    """
    root = Path(root)
    digest = catalogue_digest(root)
    folders = (package_cache_dir(root), user_cache_dir())
    for folder in folders:
        catalogue = _load_file(folder / CATALOGUE_FILE, digest)
        if catalogue is not None:
            return catalogue
    catalogue = build(root)
    try:
        encoded = _encode(catalogue)
        text = json.dumps({"digest": digest, "python": _PYTHON, "catalogue": encoded}, separators=(",", ":"),
                          ensure_ascii=False)
        back = json.loads(text, object_hook=_decoder())["catalogue"]
    except (TypeError, ValueError):
        return catalogue
    if not same_catalogue(back, catalogue):
        return catalogue
    for folder in folders:
        if _write_text(folder, CATALOGUE_FILE, text) is not None:
            break
    return catalogue


# ---------------------------------------------------------------------------------------- one YAML file


def read_yaml(path: Path):
    """A YAML file of the shipped data (safe loader), through a JSON copy checked by the file's digest.

    A mapping whose keys are not all strings (``null:`` in ``labs.yaml``) is kept as a list of pairs under
    :data:`_PAIRS`. Files outside the shipped data, and data JSON cannot hold exactly (a date), are read with
    YAML every time.
    """
    from .records import DATA_DIR

    path = Path(path)
    data_bytes = path.read_bytes()
    inside = path.resolve().is_relative_to(DATA_DIR)
    if inside:
        h = hashlib.blake2b(data_bytes, digest_size=20)
        h.update(f"v{CACHE_VERSION} python {_PYTHON}".encode())
        digest = h.hexdigest()
        name = f"yaml-{path.stem}.json"
        folders = (package_cache_dir(DATA_DIR), user_cache_dir())
        for folder in folders:
            try:
                cached = json.loads((folder / name).read_text(encoding="utf-8"), object_hook=_yaml_hook)
            except (OSError, ValueError, TypeError):
                continue
            if isinstance(cached, dict) and cached.get("digest") == digest and "data" in cached:
                return cached["data"]
    import yaml

    data = yaml.load(data_bytes.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if inside:
        try:
            encoded = _yaml_encode(data)
            exact = _identical(json.loads(json.dumps(encoded), object_hook=_yaml_hook), data)
        except (TypeError, ValueError):
            exact = False
        if exact:
            for folder in folders:
                if _write_json(folder, name, {"digest": digest, "data": encoded}) is not None:
                    break
    return data


#: The key of a mapping written as a list of [key, value] pairs (keys that are not strings).
_PAIRS = "\u0000pairs"


def _yaml_encode(node):
    if isinstance(node, dict):
        if all(isinstance(k, str) for k in node) and _PAIRS not in node:
            return {k: _yaml_encode(v) for k, v in node.items()}
        for k in node:
            if not (k is None or isinstance(k, (str, bool, int, float))):
                raise TypeError(f"a mapping key of type {type(k).__name__}")
        return {_PAIRS: [[k, _yaml_encode(v)] for k, v in node.items()]}
    if isinstance(node, list):
        return [_yaml_encode(v) for v in node]
    if node is None or isinstance(node, (str, bool, int, float)):
        return node
    raise TypeError(f"a value of type {type(node).__name__}")


def _yaml_hook(d: dict):
    if len(d) == 1 and _PAIRS in d:
        return {k: v for k, v in d[_PAIRS]}
    return d


def _identical(a, b) -> bool:
    """Equal with the same types throughout (``1 == 1.0 == True`` in Python, not here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_identical(ka, kb) and _identical(a[ka], b[kb]) for ka, kb in zip(a, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)
