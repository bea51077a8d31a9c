"""The organ catalog: the one source of truth for organ names, labels, codes and colours.

MedSORA reasons over the 13 abdominal structures of the BTCV challenge. Their
keys are TotalSegmentator's structure names, so that a TotalSegmentator output
maps onto the catalog without a table. For each structure the catalog holds:

- a display name ("right kidney") used for segment names;
- its label value in the BTCV, TotalSegmentator v2 ("total" task) and AMOS 2022
  label maps (``None`` where the scheme has no such label);
- SNOMED CT codes as a 3D Slicer terminology entry (category "Anatomical
  Structure", type, left/right modifier);
- a display colour (RGB in 0..1, the DICOM master list's recommended colours as Slicer shows them);
- its reasoning class.

Reasoning classes are what the text models score. The paper's setting has 7
classes (``PAPER_CLASSES``); ours has 11 (``FULL_CLASSES``). A class covers one
structure, or two for the paired kidney and adrenal gland; a class's relevance
is given to each of its structures.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from .errors import LabelSchemeError

SNOMED = "SCT"
CATEGORY_ANATOMICAL_STRUCTURE = (SNOMED, "123037004", "Anatomical Structure")
MODIFIER_RIGHT = (SNOMED, "24028007", "Right")
MODIFIER_LEFT = (SNOMED, "7771000", "Left")
#: Slicer's terminology context for the segment codes. Its "General Anatomy list" has no inferior vena
#: cava (64131007) or portal vein (32764006); the DICOM master list has all 13 structures.
TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"


@dataclass(frozen=True)
class Organ:
    """One segmentable structure.

    Attributes:
        key: TotalSegmentator structure name, e.g. ``"kidney_right"``.
        display_name: name shown to users, e.g. ``"right kidney"``.
        btcv_label / totalseg_label / amos_label: label values in those schemes.
        snomed_type: (scheme, code, meaning) of the structure.
        snomed_modifier: laterality modifier or ``None``.
        color: (r, g, b) in 0..1.
        reasoning_class: key of the class the text models score for it.
        synonyms: other names users and other tools give it (lower case).
        other_type_codes: SNOMED type codes other tools use for it, accepted on input only
            (TotalSegmentator codes its portal vein and splenic vein 110765007).
    """

    key: str
    display_name: str
    btcv_label: int
    totalseg_label: int
    amos_label: int | None
    snomed_type: tuple[str, str, str]
    snomed_modifier: tuple[str, str, str] | None
    color: tuple[float, float, float]
    reasoning_class: str
    synonyms: tuple[str, ...] = ()
    other_type_codes: tuple[str, ...] = ()

    @property
    def side(self) -> str | None:
        """``"left"``, ``"right"`` or ``None`` for unpaired structures."""
        if self.snomed_modifier is None:
            return None
        return self.snomed_modifier[2].lower()

    def terminology(self) -> dict:
        """The Slicer terminology entry as the dict ``slicerio`` reads and writes."""
        entry = {
            "contextName": TERMINOLOGY_CONTEXT,
            "category": list(CATEGORY_ANATOMICAL_STRUCTURE),
            "type": list(self.snomed_type),
            "anatomicContextName": ANATOMIC_CONTEXT,
        }
        if self.snomed_modifier is not None:
            entry["typeModifier"] = list(self.snomed_modifier)
        return entry

    def terminology_entry(self) -> str:
        """The ``TerminologyEntry`` segment tag string of Slicer (``~``-separated codes)."""
        return terminology_entry_string(self.terminology())


def _rgb(r: int, g: int, b: int) -> tuple[float, float, float]:
    return (round(r / 255, 6), round(g / 255, 6), round(b / 255, 6))


_CATALOG = (
    Organ("spleen", "spleen", 1, 1, 1, (SNOMED, "78961009", "Spleen"), None, _rgb(157, 108, 162), "spleen"),
    Organ("kidney_right", "right kidney", 2, 2, 2, (SNOMED, "64033007", "Kidney"), MODIFIER_RIGHT,
          _rgb(185, 102, 83), "kidney", ("kidney right", "right kidney", "kidney r", "r kidney")),
    Organ("kidney_left", "left kidney", 3, 3, 3, (SNOMED, "64033007", "Kidney"), MODIFIER_LEFT,
          _rgb(185, 102, 83), "kidney", ("kidney left", "left kidney", "kidney l", "l kidney")),
    Organ("gallbladder", "gallbladder", 4, 4, 4, (SNOMED, "28231008", "Gallbladder"), None,
          _rgb(139, 150, 98), "gallbladder", ("gall bladder",)),
    Organ("esophagus", "esophagus", 5, 15, 5, (SNOMED, "32849002", "Esophagus"), None,
          _rgb(211, 171, 143), "esophagus", ("oesophagus",)),
    Organ("liver", "liver", 6, 5, 6, (SNOMED, "10200004", "Liver"), None, _rgb(221, 130, 101), "liver"),
    Organ("stomach", "stomach", 7, 6, 7, (SNOMED, "69695003", "Stomach"), None, _rgb(216, 132, 105), "stomach"),
    Organ("aorta", "aorta", 8, 52, 8, (SNOMED, "15825003", "Aorta"), None, _rgb(224, 97, 76), "aorta"),
    Organ("inferior_vena_cava", "inferior vena cava", 9, 63, 9, (SNOMED, "64131007", "Inferior vena cava"), None,
          _rgb(0, 151, 206), "inferior_vena_cava", ("ivc", "postcava", "vena cava inferior")),
    Organ("portal_vein_and_splenic_vein", "portal vein and splenic vein", 10, 64, None,
          (SNOMED, "32764006", "Portal vein"), None, _rgb(0, 122, 171), "portal_vein_and_splenic_vein",
          ("portal vein", "portal and splenic vein", "portal vein and splenic vein", "splenic vein"),
          ("110765007",)),
    Organ("pancreas", "pancreas", 11, 7, 10, (SNOMED, "15776009", "Pancreas"), None, _rgb(249, 180, 111), "pancreas"),
    Organ("adrenal_gland_right", "right adrenal gland", 12, 8, 11, (SNOMED, "23451007", "Adrenal gland"),
          MODIFIER_RIGHT, _rgb(249, 186, 150), "adrenal_gland",
          ("right adrenal gland", "adrenal gland right", "right adrenal", "adrenal right")),
    Organ("adrenal_gland_left", "left adrenal gland", 13, 9, 12, (SNOMED, "23451007", "Adrenal gland"),
          MODIFIER_LEFT, _rgb(249, 186, 150), "adrenal_gland",
          ("left adrenal gland", "adrenal gland left", "left adrenal", "adrenal left")),
)

#: All structures by key, in BTCV label order.
ORGANS: dict[str, Organ] = {o.key: o for o in _CATALOG}
#: The 13 structure keys, in BTCV label order.
STRUCTURES: tuple[str, ...] = tuple(ORGANS)

#: The paper's 7 reasoning classes, in the paper's order.
PAPER_CLASSES: tuple[str, ...] = ("liver", "pancreas", "kidney", "gallbladder", "spleen", "stomach", "adrenal_gland")
#: Our 11 classes: the paper's 7 first, then the structures the paper left out.
FULL_CLASSES: tuple[str, ...] = PAPER_CLASSES + (
    "esophagus", "aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein")
CLASS_SETTINGS: dict[str, tuple[str, ...]] = {"paper7": PAPER_CLASSES, "full11": FULL_CLASSES}

#: Paired structures: reasoning class -> {side: structure key}, e.g. "kidney" -> {"left": "kidney_left", ...}.
PAIRED_STRUCTURES: dict[str, dict[str, str]] = {
    cls: {side: o.key for side in ("left", "right") for o in _CATALOG if o.reasoning_class == cls and o.side == side}
    for cls in dict.fromkeys(o.reasoning_class for o in _CATALOG if o.side is not None)}

#: Display name of each class: the structure's own for one-structure classes, else the class key in words
#: ("kidney", "adrenal gland").
CLASS_DISPLAY_NAMES: dict[str, str] = {
    c: ORGANS[c].display_name if c in ORGANS else c.replace("_", " ") for c in FULL_CLASSES}

LABEL_SCHEMES: tuple[str, ...] = ("btcv", "totalsegmentator", "amos")
_SCHEME_ALIASES = {"btcv": "btcv", "totalsegmentator": "totalsegmentator", "totalseg": "totalsegmentator",
                   "ts": "totalsegmentator", "total": "totalsegmentator", "amos": "amos"}


def class_structures(class_key: str) -> tuple[str, ...]:
    """Structure keys of a reasoning class (``"kidney"`` -> right and left kidney)."""
    found = tuple(o.key for o in _CATALOG if o.reasoning_class == class_key)
    if not found:
        raise KeyError(f"unknown reasoning class {class_key!r}; known: {', '.join(FULL_CLASSES)}")
    return found


def structure_class(key: str) -> str:
    """Reasoning class of a structure key."""
    return ORGANS[key].reasoning_class


def normalize_scheme(scheme: str) -> str:
    """Canonical label scheme name; raises :class:`LabelSchemeError` for unknown ones."""
    canonical = _SCHEME_ALIASES.get(str(scheme).strip().lower())
    if canonical is None:
        raise LabelSchemeError(f"unknown label scheme {scheme!r}; choose one of: {', '.join(LABEL_SCHEMES)}")
    return canonical


def label_table(scheme: str) -> dict[int, str]:
    """Label value -> structure key for a label scheme (labels of other structures are absent)."""
    attr = {"btcv": "btcv_label", "totalsegmentator": "totalseg_label", "amos": "amos_label"}[normalize_scheme(scheme)]
    return {getattr(o, attr): o.key for o in _CATALOG if getattr(o, attr) is not None}


def _normalize_name(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


_NAME_INDEX: dict[str, str] = {}
for _organ in _CATALOG:
    for _name in (_organ.key, _organ.display_name, *_organ.synonyms):
        _NAME_INDEX[_normalize_name(_name)] = _organ.key


def organ_key(name_or_label: str | int, scheme: str | None = None) -> str | None:
    """Resolve a foreign organ name or label value to a structure key.

    Args:
        name_or_label: a segment or structure name in any common spelling
            ("Right kidney", "kidney_right", "IVC", "gall bladder") or, with
            ``scheme``, a label value of that scheme.
        scheme: ``"btcv"``, ``"totalsegmentator"`` or ``"amos"`` for label values.

    Returns:
        The structure key, or ``None`` when the name is not one of the 13.
    """
    if scheme is not None:
        try:
            value = int(name_or_label)
        except (TypeError, ValueError):
            return None
        return label_table(scheme).get(value)
    if isinstance(name_or_label, int):
        return None
    return _NAME_INDEX.get(_normalize_name(str(name_or_label)))


def terminology_entry_string(entry: dict) -> str:
    """Serialise a terminology dict (slicerio's form) into Slicer's ``TerminologyEntry`` string."""
    def code(value):
        return "^".join(value) if value else "^^"

    return "~".join([
        entry.get("contextName", ""),
        code(entry.get("category")),
        code(entry.get("type")),
        code(entry.get("typeModifier")),
        entry.get("anatomicContextName", ""),
        code(entry.get("anatomicRegion")),
        code(entry.get("anatomicRegionModifier")),
    ])


def organ_key_from_terminology(entry: dict | str | None) -> str | None:
    """Structure key for a Slicer terminology entry (dict or ``TerminologyEntry`` string) by SNOMED codes.

    Matches the type code and, for paired organs, the left/right modifier code
    (given as a type modifier or an anatomic region modifier).
    """
    if not entry:
        return None
    if isinstance(entry, str):
        parts = entry.split("~")
        fields = ["contextName", "category", "type", "typeModifier", "anatomicContextName",
                  "anatomicRegion", "anatomicRegionModifier"]
        entry = {f: (p if f.endswith("Name") else p.split("^")) for f, p in zip(fields, parts)}

    def code_of(value) -> str | None:
        if not value or len(value) < 2 or not value[1]:
            return None
        return str(value[1])

    type_code = code_of(entry.get("type"))
    modifier = code_of(entry.get("typeModifier")) or code_of(entry.get("anatomicRegionModifier"))
    candidates = [o for o in _CATALOG if o.snomed_type[1] == type_code] or [
        o for o in _CATALOG if type_code in o.other_type_codes]
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0].key
    for organ in candidates:
        if organ.snomed_modifier is not None and organ.snomed_modifier[1] == modifier:
            return organ.key
    return None


def structures_present(keys: Iterable[str]) -> list[str]:
    """Keys in catalog order, unknown keys dropped."""
    wanted = set(keys)
    return [k for k in STRUCTURES if k in wanted]
