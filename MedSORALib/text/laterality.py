"""Side of the body named in a symptom text, and how it splits the paired organs.

Rule (documented in docs/text-model.md):

* Phrases where "left" or "right" does not name a side are removed first:

  - "right" as an intensifier or in idioms: "right away", "right now", "right after", "all right",
    "right in the middle of my back", "right at the base", "right through", "right-handed", "that's right";
  - "left" as the verb: "left me unable to sleep", "left him doubled over", "was left", "left untreated",
    "left over", "left-handed"; and what remains: "only months left", "nothing left to eat";
  - sides that belong to limbs, eyes, ears, the shoulder, face, neck, clavicle, breast or heart
    ("left leg", "R arm", "left ventricular") and a blood film's "left shift": they do not say which
    kidney or adrenal gland is meant.
* A side word is ``left`` / ``right`` (also ``left-sided``, ``right-sided``, ``sinistral``, ``dextral``),
  the abbreviations ``LUQ``/``LLQ``/``LCVA`` (left) and ``RUQ``/``RLQ``/``RCVA`` (right), and the
  requisition short forms ``L``/``R``/``Lt``/``Rt``: in capitals as a word of their own ("R loin pain",
  "Adrenal incidentaloma 2.5 cm L"; not "2 L of fluid", "R/O"), or in any case before a trunk word
  ("l flank pain", "rt kidney").
* Only the left side named -> ``"left"``; only the right side named -> ``"right"``; both sides named,
  or no side (``bilateral flank pain``, ``pain in both loins``) -> ``None``.
* With a side, the ipsilateral kidney / adrenal gland keeps its class relevance and the
  contralateral one gets ``relevance * CONTRALATERAL_FACTOR``; with no side both keep the class value.
"""

from __future__ import annotations

import re

from ..organs import PAIRED_STRUCTURES  # reasoning class -> {side: structure key}

CONTRALATERAL_FACTOR = 0.5

# Body parts whose side says nothing about the paired abdominal organs.
_NON_TRUNK = (
    r"(?:legs?|arms?|hands?|foot|feet|knees?|eyes?|ears?|calf|calves|thighs?|ankles?|wrists?|elbows?|shoulders?|"
    r"fingers?|toes?|hips?|hemisphere|breasts?|testis|testicle|ovary|face|cheek|temple|jaw|neck|clavicle|"
    r"supraclavicular|axilla|armpit|heart|ventricle|ventricular|atrium|atrial|bundle|hemiparesis|hemiplegia)"
)
# Trunk words after which a lower-case "l"/"r"/"lt"/"rt" is read as a side.
_TRUNK = (
    r"(?:loin|flank|side|sided|kidney|renal|adrenal|upper|lower|abdo|abdomen|abdominal|groin|back|cva|"
    r"costovertebral|ureter|ureteric|nephrectomy|adrenalectomy|hydronephrosis|iliac|pelvic|pui|puj|vuj)"
)
_PREPOSITIONS = (
    r"(?:in|at|on|through|across|down|up|into|around|between|behind|below|above|under|over|along|by|next|"
    r"beside|from|to|off|out|inside|within|where|there|here|now|away|after|before|then|when|as|until|till)"
)
_NON_SIDE = re.compile(
    r"\b(?:"
    rf"(?<!the\s)(?<!my\s)(?<!his\s)(?<!her\s)(?<!your\s)(?<!our\s)(?<!their\s)right\s+{_PREPOSITIONS}\b|"
    r"all\s+right|right-handed|left-handed|"
    r"(?:that'?s|that\s+is|you'?re|you\s+are|is\s+that)\s+right\b|"
    r"left\s+(?:me|him|her|us|them|you|it|my|his|our|their|the|a|an|over|untreated|alone|behind|out|work|"
    r"home|school|hospital)\b|"
    r"(?:was|were|is|are|be|been|being|get|got)\s+left\b|"
    # what remains: "only months left", "nothing left to eat" (not "3 days left flank pain")
    r"(?:days|weeks|months|years|hours|minutes|time|nothing|little|anything|none|much)\s+left\b"
    r"(?=\s*(?:[.,;:!?)]|$|\s(?:to|in|for|of|before|and|but|with|on|at)\b))|"
    r"left\s+shift|shift\s+to\s+the\s+left|"
    rf"(?:left|right|[lr]|lt|rt)(?:-sided)?\.?\s+(?:lower\s+|upper\s+|sided\s+)?{_NON_TRUNK}\b"
    r")",
    re.IGNORECASE,
)
_LEFT = re.compile(r"\b(?:left(?:-sided)?|sinistral|luq|llq|lcva)\b")
_RIGHT = re.compile(r"\b(?:right(?:-sided)?|dextral|ruq|rlq|rcva)\b")
# Short forms: capital L/R/Lt/Rt standing alone (not a volume "2 L", not "R/O"), or any case before a trunk word.
_SHORT_CAPS = re.compile(r"(?<![\w/.])(?<!\d\s)(L|R|Lt|Rt)\.?(?![\w/])")
_SHORT_TRUNK = re.compile(rf"(?<![\w/])(l|r|lt|rt)\.?\s*(?:-\s*)?{_TRUNK}\b", re.IGNORECASE)


def detect_laterality(text: str) -> str | None:
    """Return ``"left"``, ``"right"`` or ``None`` (no side, or both sides) for a symptom text."""
    kept = _NON_SIDE.sub(" ", text)
    lowered = kept.lower()
    left = bool(_LEFT.search(lowered))
    right = bool(_RIGHT.search(lowered))
    for match in list(_SHORT_CAPS.finditer(kept)) + list(_SHORT_TRUNK.finditer(kept)):
        if match.group(1).lower().startswith("l"):
            left = True
        else:
            right = True
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
