"""Side of the body named in a symptom text, and how it splits the paired organs.

Rule (documented in the README):

* The text is lower-cased and phrases where "right" does not name a side are removed
  ("right away", "right now", "all right", "right after", "right before", "right-handed").
  Sides of limbs, eyes, ears and the shoulder ("left leg", "right arm", "left shoulder") are
  removed too: they do not say which kidney or adrenal gland is meant.
* A side word is ``left`` / ``right`` (also ``left-sided``, ``right-sided``, ``sinistral``, ``dextral``)
  or the abbreviations ``LUQ``/``LLQ``/``LCVA`` (left) and ``RUQ``/``RLQ``/``RCVA`` (right).
* Only the left side named -> ``"left"``; only the right side named -> ``"right"``; both sides named,
  or no side (``bilateral flank pain``, ``pain in both loins``) -> ``None``.
* With a side, the ipsilateral kidney / adrenal gland keeps its class relevance and the
  contralateral one gets ``relevance * CONTRALATERAL_FACTOR``; with no side both keep the class value.
"""

from __future__ import annotations

import re

from ..organs import PAIRED_STRUCTURES  # reasoning class -> {side: structure key}

CONTRALATERAL_FACTOR = 0.5

_NON_SIDE = re.compile(
    r"\b(?:right\s+(?:away|now|after|before|then|there|here)|all\s+right|right-handed|left-handed|"
    r"left\s+(?:over|untreated|alone|behind|out)|(?:was|were|is|are|be|been|being|get|got)\s+left|"
    r"(?:left|right)(?:-sided)?\s+(?:lower\s+|upper\s+)?(?:legs?|arms?|hands?|foot|feet|knees?|eyes?|ears?|calf|"
    r"calves|thighs?|ankles?|wrists?|elbows?|shoulders?|fingers?|toes?|hemisphere|breast|testis|ovary))\b"
)
_LEFT = re.compile(r"\b(?:left(?:-sided)?|sinistral|luq|llq|lcva)\b")
_RIGHT = re.compile(r"\b(?:right(?:-sided)?|dextral|ruq|rlq|rcva)\b")


def detect_laterality(text: str) -> str | None:
    """Return ``"left"``, ``"right"`` or ``None`` (no side, or both sides) for a symptom text."""
    lowered = _NON_SIDE.sub(" ", text.lower())
    left = bool(_LEFT.search(lowered))
    right = bool(_RIGHT.search(lowered))
    if left and not right:
        return "left"
    if right and not left:
        return "right"
    return None


def split_paired(class_relevance: dict[str, float], side: str | None, class_structures) -> dict[str, float]:
    """Map class relevance to structure relevance, applying the laterality rule to paired organs.

    Args:
        class_relevance: {class key: relevance in [0, 1]}.
        side: ``"left"``, ``"right"`` or ``None``.
        class_structures: callable class key -> tuple of structure keys (``MedSORALib.organs.class_structures``).

    Returns:
        {structure key: relevance in [0, 1]} for the structures of the given classes.
    """
    out: dict[str, float] = {}
    for cls, value in class_relevance.items():
        paired = PAIRED_STRUCTURES.get(cls)
        for key in class_structures(cls):
            if paired is not None and side is not None and key != paired[side]:
                out[key] = float(value) * CONTRALATERAL_FACTOR
            else:
                out[key] = float(value)
    return out
