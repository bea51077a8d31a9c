"""A conservative embedding fallback of the clinical reader.

Where a clause of the text is asserted (no negation, doubt, history or family trigger governs it) and the
lexicon and HPO wordings read no finding in it, the clause is embedded with the text model's sentence encoder
(MiniLM) and compared by cosine with the label and HPO wordings of every symptom and sign of the lexicon; the
best finding is added as ``present`` (source ``embedding``) only when its cosine reaches ``THRESHOLD`` and beats
the runner-up by ``MARGIN``. One clause yields at most one finding. The threshold was chosen on the development
clauses (``Testing/data/reader_clauses.jsonl``) by ``python -m MedSORALib.differential.embedding``.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .context import PRESENT

THRESHOLD = 0.8
MARGIN = 0.03
_KINDS = ("symptom", "sign")
_MIN_WORDS = 2


VECTORS_FILE = Path(__file__).resolve().parent.parent / "resources" / "differential" / "finding_embeddings.npz"


def wordings(lexicon, hpo_terms: dict | None = None) -> tuple[list[str], list]:
    """The phrases compared with a clause and the finding each belongs to."""
    phrases, owners = [], []
    for finding in lexicon.values():
        if finding.kind not in _KINDS or not finding.patterns:
            continue
        words = [finding.label] + [t for h in finding.hpo for t in (hpo_terms or {}).get(h, [])]
        for w in dict.fromkeys(x.lower() for x in words):
            phrases.append(w)
            owners.append(finding)
    return phrases, owners


def _stored_vectors(model_id: str, phrases: list[str]):
    """The shipped vectors when they were made by this encoder for exactly these phrases, else None."""
    try:
        with np.load(VECTORS_FILE, allow_pickle=False) as data:
            if str(data["model_id"]) != model_id or list(data["phrases"]) != phrases:
                return None
            return data["vectors"].astype(np.float32)
    except (OSError, KeyError, ValueError):
        return None


class EmbeddingMatcher:
    """Finding wordings embedded once per encoder (read from ``finding_embeddings.npz`` when it matches).

    The wordings and their vectors are made on the first clause to match: most texts leave no clause to the
    fallback, and a cold ``medsora rank`` then never opens the vectors file."""

    def __init__(self, encoder, lexicon, hpo_terms: dict | None = None):
        self.encoder = encoder
        self._lexicon = lexicon
        self._hpo_terms = hpo_terms
        self._wordings: tuple[list[str], list] | None = None
        self._vectors = None

    @property
    def phrases(self) -> list[str]:
        return self._phrases_owners()[0]

    @property
    def owners(self) -> list:
        return self._phrases_owners()[1]

    def _phrases_owners(self) -> tuple[list[str], list]:
        if self._wordings is None:
            self._wordings = wordings(self._lexicon, self._hpo_terms)
        return self._wordings

    @property
    def vectors(self) -> np.ndarray:
        if self._vectors is None:
            phrases = self.phrases
            stored = _stored_vectors(getattr(self.encoder, "model_id", ""), phrases) if phrases else None
            self._vectors = stored if stored is not None else (
                self.encoder.encode(phrases) if phrases else np.zeros((0, 1), dtype=np.float32))
        return self._vectors


    def match(self, clauses: list[str], threshold: float = THRESHOLD, margin: float = MARGIN) -> list:
        """[(clause index, finding, cosine)] for the clauses whose best wording passes the threshold."""
        if not clauses or not len(self.vectors):
            return []
        sims = self.encoder.encode(clauses) @ self.vectors.T
        owners = self.owners
        out = []
        for i, row in enumerate(sims):
            order = np.argsort(-row)
            best = order[0]
            # the runner-up is the best wording of another finding
            second = next((j for j in order[1:] if owners[j].id != owners[best].id), None)
            gap = row[best] - (row[second] if second is not None else 0.0)
            if row[best] >= threshold and gap >= margin:
                out.append((i, owners[best], float(row[best])))
        return out


def fallback_clauses(reading, ctx, norm: str) -> list[tuple[int, int]]:
    """Spans of asserted segments with at least two words where no finding was read."""
    spans = []
    for seg in ctx.segments:
        text = norm[seg.start:seg.end]
        if len(re.findall(r"[a-z]{2,}", text)) < _MIN_WORDS:
            continue
        if any(f.start < seg.end and seg.start < f.end for f in reading.findings):
            continue
        if any(sc.start <= seg.start + 1 < sc.end or seg.start <= sc.start - len(sc.trigger) < seg.end
               for sc in ctx.scopes):
            continue  # a trigger touches this segment: the fallback reads only plain assertions
        spans.append((seg.start, seg.end))
    return spans


def apply(reading, ctx, norm: str, matcher: EmbeddingMatcher, threshold: float = THRESHOLD) -> None:
    """Add the fallback's findings to ``reading`` in place."""
    from .readings import ReadFinding

    spans = fallback_clauses(reading, ctx, norm)
    if not spans:
        return
    clauses = [reading.text[s:e].strip() for s, e in spans]
    known = {f.id for f in reading.findings}
    for i, finding, _cos in matcher.match(clauses, threshold):
        if finding.id in known:
            continue
        s, e = spans[i]
        reading.findings.append(ReadFinding(finding.id, finding.label, finding.kind, PRESENT, reading.text[s:e].strip(),
                                            s, e, finding.generic, finding.side, None, "embedding", None))
        known.add(finding.id)
    reading.findings.sort(key=lambda f: (f.start, f.id))


def apply_batch(readings: list, matcher: EmbeddingMatcher, threshold: float = THRESHOLD) -> int:
    """The fallback over many readings with one encoder call; returns the number of findings added."""
    from .readings import ReadFinding

    jobs = []
    for k, reading in enumerate(readings):
        ctx = reading.text_context()
        for s, e in fallback_clauses(reading, ctx, ctx.norm):
            jobs.append((k, s, e, reading.text[s:e].strip()))
    if not jobs:
        return 0
    added = 0
    for i, finding, _cos in matcher.match([j[3] for j in jobs], threshold):
        k, s, e, text = jobs[i]
        reading = readings[k]
        if any(f.id == finding.id for f in reading.findings):
            continue
        reading.findings.append(ReadFinding(finding.id, finding.label, finding.kind, PRESENT, text, s, e,
                                            finding.generic, finding.side, None, "embedding", None))
        reading.findings.sort(key=lambda f: (f.start, f.id))
        added += 1
    return added
