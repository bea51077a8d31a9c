"""Guards applied to every generated or curated symptom text before it enters a dataset.

A text is dropped when it

- is empty, shorter than ``min_words`` words or longer than ``max_chars`` characters;
- names an organ (any class in :data:`ORGAN_WORDS`, nouns and adjectives, British spellings
  included), because the texts must describe what a patient feels or shows, never where;
- is a near duplicate of a text already kept: identical after normalising case and
  punctuation, or an embedding cosine above ``max_cosine`` (0.95).

Every decision is counted in :class:`GuardStats` (kept, and dropped by reason and by organ).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

# Words that name a structure, per reasoning class. Matched as whole words, case-insensitive;
# entries ending in "*" match any word starting with the stem.
ORGAN_WORDS: dict = {
    "liver": ("liver", "livers", "hepatic", "hepato*", "hepatitis", "hepatocellular", "hepatomegaly"),
    "pancreas": ("pancreas", "pancreata", "pancreatic", "pancreatitis", "pancreato*", "pancreatico*"),
    "kidney": ("kidney", "kidneys", "renal", "nephric", "nephr*", "pyelonephritis", "perirenal"),
    "gallbladder": ("gallbladder", "gallbladders", "gall bladder", "gall-bladder", "cholecyst*"),
    "spleen": ("spleen", "spleens", "splenic", "splenomegaly", "spleno*", "asplenia"),
    "stomach": ("stomach", "stomachs", "gastric", "gastritis", "gastro*", "intragastric"),
    "adrenal_gland": ("adrenal", "adrenals", "adrenal gland", "suprarenal", "adrenocortical", "adrenalectomy"),
    "esophagus": ("esophagus", "oesophagus", "esophageal", "oesophageal", "esophagi", "oesophagi",
                  "esophagitis", "oesophagitis", "esophago*", "oesophago*", "gastroesophageal",
                  "gastro-oesophageal", "gastro-esophageal"),
    "aorta": ("aorta", "aortas", "aortae", "aortic", "aortitis", "aorto*", "periaortic"),
    "inferior_vena_cava": ("vena cava", "venae cavae", "caval", "cavogram", "ivc", "cava"),
    "portal_vein_and_splenic_vein": ("portal vein", "portal veins", "portal venous", "splenic vein",
                                     "splenic veins", "portal", "splenoportal", "portosystemic", "porto*"),
}

_NORMALISE = re.compile(r"[^a-z0-9 ]+")


def _compile(words) -> re.Pattern:
    parts = []
    for word in words:
        stem = word.rstrip("*")
        body = r"\s*-?\s*".join(re.escape(p) for p in stem.split())
        parts.append(body + (r"[a-z]*" if word.endswith("*") else ""))
    return re.compile(r"\b(?:" + "|".join(parts) + r")\b", re.IGNORECASE)


_PATTERNS = {organ: _compile(words) for organ, words in ORGAN_WORDS.items()}


def organ_mentions(text: str) -> dict:
    """Organ class -> the words of ``text`` that name it (only classes with a match)."""
    found = {}
    for organ, pattern in _PATTERNS.items():
        hits = [m.group(0) for m in pattern.finditer(text)]
        if hits:
            found[organ] = hits
    return found


def normalise(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed: the key of exact-duplicate checks."""
    return " ".join(_NORMALISE.sub(" ", text.lower()).split())


@dataclass
class GuardStats:
    """Counts of guard decisions.

    Attributes:
        seen: texts checked.
        kept: texts that passed.
        dropped: reason -> count ("empty", "too_short", "too_long", "organ_name", "duplicate", "near_duplicate").
        dropped_by_organ: source organ -> reason -> count.
        examples: reason -> up to 3 dropped texts (for reports).
    """

    seen: int = 0
    kept: int = 0
    dropped: dict = field(default_factory=dict)
    dropped_by_organ: dict = field(default_factory=dict)
    examples: dict = field(default_factory=dict)

    def drop(self, reason: str, organ, text: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        per = self.dropped_by_organ.setdefault(str(organ), {})
        per[reason] = per.get(reason, 0) + 1
        sample = self.examples.setdefault(reason, [])
        if len(sample) < 3:
            sample.append(text)

    def to_dict(self) -> dict:
        return {"seen": self.seen, "kept": self.kept, "dropped": dict(sorted(self.dropped.items())),
                "dropped_by_organ": {k: dict(sorted(v.items())) for k, v in sorted(self.dropped_by_organ.items())},
                "examples": self.examples}


class TextGuard:
    """Stateful filter: remembers kept texts so later near duplicates are dropped.

    Args:
        encoder: object with ``encode(list[str]) -> (N, dim)`` unit-norm rows; None disables the
            embedding check (exact duplicates are still caught).
        max_cosine: embedding cosine above which a text is a near duplicate of a kept one.
        min_words, max_chars: length limits.
    """

    def __init__(self, encoder=None, max_cosine: float = 0.95, min_words: int = 4, max_chars: int = 600):
        self.encoder = encoder
        self.max_cosine = float(max_cosine)
        self.min_words = int(min_words)
        self.max_chars = int(max_chars)
        self.stats = GuardStats()
        self._keys: set = set()
        self._vectors: list = []

    def check_text(self, text) -> str | None:
        """The reason ``text`` must be dropped for its content alone (no duplicate check), or None."""
        if text is None or not str(text).strip():
            return "empty"
        text = str(text).strip()
        if len(text.split()) < self.min_words:
            return "too_short"
        if len(text) > self.max_chars:
            return "too_long"
        if organ_mentions(text):
            return "organ_name"
        return None

    def filter(self, records: list, organ_field: str = "organ") -> list:
        """Keep the records whose ``text`` passes every guard, in input order.

        Args:
            records: dicts with at least ``text``.
            organ_field: field used to count drops per organ.

        Returns:
            The kept records (the same dict objects, ``text`` stripped).
        """
        candidates = []
        for record in records:
            self.stats.seen += 1
            text = record.get("text")
            reason = self.check_text(text)
            if reason is None:
                key = normalise(text)
                if key in self._keys:
                    reason = "duplicate"
                else:
                    self._keys.add(key)
            if reason:
                self.stats.drop(reason, record.get(organ_field), str(text or ""))
                continue
            record["text"] = " ".join(str(text).split())
            candidates.append(record)
        if self.encoder is None or not candidates:
            self.stats.kept += len(candidates)
            return candidates
        vectors = np.asarray(self.encoder.encode([r["text"] for r in candidates]), dtype=np.float32)
        known = np.zeros((len(self._vectors) + len(candidates), vectors.shape[1]), dtype=np.float32)
        count = len(self._vectors)
        if count:
            known[:count] = np.stack(self._vectors)
        kept = []
        for record, vector in zip(candidates, vectors):
            best = float((known[:count] @ vector).max()) if count else -1.0
            if best > self.max_cosine:
                self.stats.drop("near_duplicate", record.get(organ_field), record["text"])
                continue
            known[count] = vector
            count += 1
            self._vectors.append(vector)
            kept.append(record)
        self.stats.kept += len(kept)
        return kept
