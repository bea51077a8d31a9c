"""A conservative embedding fallback of the clinical reader.

Where a clause of the text is asserted (no negation, doubt, history or family trigger governs it) and the
lexicon and HPO wordings read no finding in it, the clause is embedded with the text model's sentence encoder
(MiniLM) and compared by cosine with two sets of reference phrases:

* the label and HPO wordings of every symptom and sign of the lexicon (``finding_embeddings.npz``): the best
  finding is added when its cosine reaches ``THRESHOLD`` and beats the runner-up by ``MARGIN``;
* optionally, a *clause bank* (a file built by ``python -m MedSORALib.differential.embedding_build --bank OUT``,
  not shipped, off unless a matcher is given its path): real-looking clauses of the project's training texts in
  which the regular-expression reader itself reads exactly one present symptom or sign and nothing else, and
  clauses where it reads nothing at all (plain context: they vote for no finding). A clause the wordings leave
  is compared with the bank: its ``BANK_K`` nearest bank clauses and wordings vote for their findings, each
  weighted by its cosine behind the nearest (``BANK_TEMPERATURE``); the winner is added when it holds at least
  ``BANK_SHARE`` of the votes and its nearest phrase reaches ``BANK_COSINE``.

Each finding is added as ``present`` (source ``embedding``); one clause yields at most one finding. The wording
threshold was chosen on the development clauses by ``python -m MedSORALib.differential.embedding_build``; the
bank's settings are designed: on the development clauses (``Testing/data/reader_clauses.jsonl``, ``_lay``,
``_case``; ``python -m MedSORALib.differential.embedding_build --sweep --bank-file F``) it adds nothing at any
setting, and they were chosen on what it adds to the tune halves of the dev sets. The bank is off by default:
at these settings it changed no ranking figure of the tune halves or the first case-derived set and cost one
case of the second (docs/reasoning.md gives the figures).
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


#: The clause bank's vote (designed: the development clauses leave it nothing to add at any setting, so it was
#: chosen on what it adds to the tune halves of the dev sets; see the module docstring).
BANK_K = 10
BANK_SHARE = 0.6
BANK_COSINE = 0.75
BANK_TEMPERATURE = 0.05

VECTORS_FILE = Path(__file__).resolve().parent.parent / "resources" / "differential" / "finding_embeddings.npz"
#: The bank's finding id of a clause where the reader reads nothing.
NONE = ""


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


def read_bank(path, phrases: bool = True) -> dict | None:
    """The clause bank as stored: ``phrases`` (only when asked: the vectors alone serve their own encoder),
    ``finding_ids`` (lists), ``vectors`` (float32), ``model_id``; None when the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {"finding_ids": data["finding_ids"].tolist(), "vectors": data["vectors"].astype(np.float32),
                   "model_id": str(data["model_id"])}
            if phrases:
                out["phrases"] = data["phrases"].tolist()
            return out
    except (OSError, KeyError, ValueError):
        return None


def vote(row: np.ndarray, owner_ids: list[str], k: int = BANK_K,
         temperature: float | None = None) -> tuple[str, float, float] | None:
    """The clause bank's vote for one clause: its ``k`` nearest phrases (cosines ``row``) vote for their
    findings, each with weight ``exp((cosine - best cosine) / temperature)`` (a phrase well behind the nearest
    one counts little). Returns (finding id, its share of the votes, its best cosine)."""
    if not len(row):
        return None
    temperature = BANK_TEMPERATURE if temperature is None else temperature
    k = min(k, len(row))
    near = np.argpartition(-row, k - 1)[:k]
    top = float(row[near].max())
    weights: dict[str, float] = {}
    best: dict[str, float] = {}
    for j in near:
        fid = owner_ids[j]
        weights[fid] = weights.get(fid, 0.0) + float(np.exp((float(row[j]) - top) / temperature))
        best[fid] = max(best.get(fid, -1.0), float(row[j]))
    total = sum(weights.values())
    winner = max(weights, key=lambda f: (weights[f], best[f], f))
    return winner, weights[winner] / total, best[winner]


class EmbeddingMatcher:
    """Finding wordings, and a clause bank when ``bank`` names one, embedded once per encoder (read from
    ``finding_embeddings.npz`` and the bank file when they were made by this encoder).

    The wordings, the bank and their vectors are made on the first clause to match: most texts leave no clause
    to the fallback, and a cold ``medsora rank`` then never opens the vector files."""

    def __init__(self, encoder, lexicon, hpo_terms: dict | None = None, bank: str | Path | None = None):
        self.encoder = encoder
        self._lexicon = lexicon
        self._hpo_terms = hpo_terms
        self._wordings: tuple[list[str], list] | None = None
        self._vectors = None
        self.bank_file = Path(bank) if bank else None
        self._bank: tuple[list, np.ndarray] | None = None

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

    @property
    def bank(self) -> tuple[list[str], np.ndarray]:
        """(finding ids, vectors) the clause bank votes with: the bank's clauses whose finding is a symptom or sign
        of this lexicon or none (:data:`NONE`), then the finding wordings; empty without a bank file."""
        if self._bank is None:
            ids, parts = [], []
            stored = read_bank(self.bank_file, phrases=False) if self.bank_file else None
            if stored is not None:
                keep = [i for i, fid in enumerate(stored["finding_ids"]) if fid == NONE or (
                        fid in self._lexicon and self._lexicon[fid].kind in _KINDS)]
                if keep:
                    if stored["model_id"] == getattr(self.encoder, "model_id", ""):
                        parts.append(stored["vectors"][keep])
                    else:  # another encoder: its own vectors of the same clauses
                        phrases = read_bank(self.bank_file)["phrases"]
                        parts.append(self.encoder.encode([phrases[i] for i in keep]))
                    ids += [stored["finding_ids"][i] for i in keep]
            if parts and self.phrases:
                parts.append(self.vectors)
                ids += [f.id for f in self.owners]
            self._bank = (ids, np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32))
        return self._bank

    def match(self, clauses: list[str], threshold: float = THRESHOLD, margin: float = MARGIN,
              k: int | None = None, share: float | None = None, cosine: float | None = None) -> list:
        """[(clause index, finding, cosine)] for the clauses whose best wording passes the threshold, or, failing
        that, whose nearest bank clauses agree (:func:`vote`; ``k``, ``share``, ``cosine`` default to
        ``BANK_K``, ``BANK_SHARE``, ``BANK_COSINE``)."""
        k = BANK_K if k is None else k
        share = BANK_SHARE if share is None else share
        cosine = BANK_COSINE if cosine is None else cosine
        if not clauses or not len(self.vectors):
            return []
        encoded = self.encoder.encode(clauses)
        sims = encoded @ self.vectors.T
        owners = self.owners
        out, left = [], []
        for i, row in enumerate(sims):
            order = np.argsort(-row)
            best = order[0]
            # the runner-up is the best wording of another finding
            second = next((j for j in order[1:] if owners[j].id != owners[best].id), None)
            gap = row[best] - (row[second] if second is not None else 0.0)
            if row[best] >= threshold and gap >= margin:
                out.append((i, owners[best], float(row[best])))
            else:
                left.append(i)
        if left and self.bank_file and len(self.bank[0]):
            ids, bank_vectors = self.bank
            for i, row in zip(left, encoded[left] @ bank_vectors.T):
                result = vote(row, ids, k)
                if result is not None and result[0] != NONE and result[1] >= share and result[2] >= cosine:
                    out.append((i, self._lexicon[result[0]], result[2]))
            out.sort(key=lambda x: x[0])
        return out


def touched(seg, ctx) -> bool:
    """Whether a negation, doubt, history or family trigger touches the segment (it governs part of it or
    stands in it)."""
    return any(sc.start <= seg.start + 1 < sc.end or seg.start <= sc.start - len(sc.trigger) < seg.end
               for sc in ctx.scopes)


def words(text: str) -> int:
    """The words of two letters or more in a normalised text (the fallback reads segments of two or more)."""
    return len(re.findall(r"[a-z]{2,}", text))


def fallback_clauses(reading, ctx, norm: str) -> list[tuple[int, int]]:
    """Spans of asserted segments with at least two words where no finding was read."""
    spans = []
    for seg in ctx.segments:
        text = norm[seg.start:seg.end]
        if words(text) < _MIN_WORDS:
            continue
        if any(f.start < seg.end and seg.start < f.end for f in reading.findings):
            continue
        if touched(seg, ctx):
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
