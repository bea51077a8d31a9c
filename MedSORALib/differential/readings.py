"""What the reader reads: one finding with its status and the words that said it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadFinding:
    """One finding read in the text.

    Attributes:
        id, label, kind: from the lexicon.
        status: ``present``, ``negated``, ``uncertain``, ``history`` or ``family``.
        text: the words read (the first span); start, end: that span in the input text.
        generic: the lexicon's flag.
        side: ``left`` / ``right`` when the finding or its words name one.
        value: the measured value in the canonical unit, for a finding read from a number.
        source: ``lexicon``, ``hpo``, ``lab`` or ``embedding``.
        trigger: the word that decided the status (``None`` when present).
    """

    id: str
    label: str
    kind: str
    status: str
    text: str
    start: int
    end: int
    generic: bool = False
    side: str | None = None
    value: float | None = None
    source: str = "lexicon"
    trigger: str | None = None

    def to_dict(self) -> dict:
        out = {"id": self.id, "label": self.label, "status": self.status, "text": self.text,
               "span": [self.start, self.end]}
        if self.side:
            out["side"] = self.side
        if self.value is not None:
            out["value"] = round(self.value, 3)
        return out
