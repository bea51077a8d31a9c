"""Knowledge channel: organ evidence from the knowledge base's organ-tagged terms.

A user who names an organ or a disease ("splenomegaly", "hydronephrosis", "varices") should get
that organ, even when no training text used the word. The channel holds a list of organ-tagged
*terms*: every ontology term of the knowledge base (HPO terms under the organ subtrees and the
Symptom Ontology terms: name, layperson and exact synonyms) and, optionally, the team corpus
passages, each with the classes it is tagged with (primary class weight 1, others
``SECONDARY_WEIGHT``). For a text it returns two evidence vectors over the C classes:

* dense: for each class, the largest ``cos(text, term) * weight`` over the class's terms
  (sentence embeddings of the same encoder);
* lexical: for each class, the largest BM25 score of a term of the class (Okapi BM25, k1 = 1.2,
  b = 0.75, over the knowledge base's stemmed tokens), divided by the text's largest BM25 score
  over all terms, times ``weight`` (so in [0, 1]; 0 when no token matches).

The relevance MLP of the full11 model reads ``[embedding, dense, lexical]`` (D + 2C inputs): the
channel is fused with the embedding by training. When training, the evidence of a text leaves out
the terms of its own source passage (``exclude``), so the MLP learns how much to trust evidence
from *other* terms, as it will see at run time.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SECONDARY_WEIGHT = 0.7
BM25_K1 = 1.2
BM25_B = 0.75


def kb_terms(classes: Sequence[str], include_corpus: bool = True, kb=None) -> list[dict]:
    """Organ-tagged terms of the knowledge base: [{"text", "organs", "source"}], deterministic order.

    Args:
        classes: class keys of the setting (terms without one of them are dropped).
        include_corpus: also take the team corpus passages as terms.
        kb: a :class:`~MedSORALib.knowledge.kb.KnowledgeBase` (default: ``KnowledgeBase.load()``).
    """
    if kb is None:
        from ..knowledge.kb import KnowledgeBase

        kb = KnowledgeBase.load()
    wanted = set(classes)
    out, seen = [], set()
    for chunk in kb.chunks:
        organs = [o for o in chunk.organs if o in wanted]
        if not organs:
            continue
        if chunk.origin == "team":
            texts = [chunk.text] if include_corpus else []
        else:
            texts = [chunk.name, *chunk.lay_terms, *chunk.synonyms]
        for text in texts:
            text = " ".join(str(text).split())
            key = (text.lower(), tuple(organs))
            if text and key not in seen:
                seen.add(key)
                out.append({"text": text, "organs": organs, "source": chunk.id})
    return out


class KnowledgeChannel:
    """Dense + BM25 organ evidence over a term list (see module docstring).

    Args:
        terms: [{"text", "organs", "source"}] (from :func:`kb_terms`).
        classes: class keys, the columns of the evidence.
        embeddings: (T, D) unit-norm term embeddings of the model's encoder.
    """

    def __init__(self, terms: list[dict], classes: Sequence[str], embeddings: np.ndarray) -> None:
        from ..knowledge.kb import count_postings, tokenize

        self.terms = list(terms)
        self.classes = tuple(classes)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(self.embeddings) != len(self.terms):
            raise ValueError(f"{len(self.terms)} terms but {len(self.embeddings)} term embeddings")
        index = {c: i for i, c in enumerate(self.classes)}
        self.weights = np.zeros((len(self.terms), len(self.classes)), dtype=np.float32)
        for t, term in enumerate(self.terms):
            for rank, organ in enumerate(term["organs"]):
                if organ in index:
                    self.weights[t, index[organ]] = 1.0 if rank == 0 else SECONDARY_WEIGHT
        self.sources = np.array([str(term.get("source", "")) for term in self.terms])
        self._tokenize = tokenize
        docs = [tokenize(term["text"]) for term in self.terms]
        lengths = np.array([len(d) for d in docs], dtype=np.float32)
        self._avg_len = float(lengths.mean()) if len(lengths) else 1.0
        words, ids, tf, starts = count_postings(docs)
        counts = np.diff(starts)
        idf = np.log(1.0 + (len(docs) - counts + 0.5) / (counts + 0.5)).astype(np.float32)
        tf = tf.astype(np.float32)
        norm = tf + BM25_K1 * (1.0 - BM25_B + BM25_B * lengths[ids] / self._avg_len)
        values = (np.repeat(idf, counts) * tf * np.float32(BM25_K1 + 1.0) / norm).astype(np.float32)
        self._postings: dict[str, tuple[np.ndarray, np.ndarray]] = {
            w: (ids[a:z], values[a:z]) for w, a, z in zip(words, starts[:-1], starts[1:])}

    @property
    def width(self) -> int:
        """Number of evidence features (2 C)."""
        return 2 * len(self.classes)

    def bm25(self, text: str) -> np.ndarray:
        """(T,) BM25 score of every term for ``text``."""
        scores = np.zeros(len(self.terms), dtype=np.float32)
        for token in set(self._tokenize(text)):
            hit = self._postings.get(token)
            if hit is not None:
                scores[hit[0]] += hit[1]
        return scores

    def evidence(self, texts: Sequence[str], embeddings: np.ndarray, exclude: Sequence[Sequence[str]] | None = None) -> np.ndarray:
        """(N, 2C) float32 evidence ``[dense, lexical]`` per class.

        Args:
            texts: the texts (as given to the encoder).
            embeddings: (N, D) their unit-norm embeddings.
            exclude: per text, term sources (passage / term ids) to leave out (training only).
        """
        embeddings = np.asarray(embeddings, dtype=np.float32)
        n, c = len(texts), len(self.classes)
        out = np.zeros((n, 2 * c), dtype=np.float32)
        if not len(self.terms) or not n:
            return out
        cos = embeddings @ self.embeddings.T  # (N, T)
        for i, text in enumerate(texts):
            keep = None
            if exclude is not None and exclude[i]:
                keep = ~np.isin(self.sources, list(exclude[i]))
            dense = cos[i][:, None] * self.weights  # (T, C)
            lexical = self.bm25(text)
            if keep is not None:
                dense = dense[keep]
                lexical = lexical[keep]
                weights = self.weights[keep]
            else:
                weights = self.weights
            if len(dense):
                best = np.where(weights > 0, dense, -np.inf).max(axis=0)
                out[i, :c] = np.where(np.isfinite(best), best, 0.0)  # a class without terms: no evidence
            top = float(lexical.max()) if len(lexical) else 0.0
            if top > 0:
                out[i, c:] = ((lexical / top)[:, None] * weights).max(axis=0)
        return out

    def to_json(self) -> list[dict]:
        return [{"text": t["text"], "organs": list(t["organs"]), "source": t.get("source", "")} for t in self.terms]
