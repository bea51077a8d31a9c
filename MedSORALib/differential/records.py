"""The catalogue's records: findings, weights, diseases and the catalogue, with the constants they use.

Loading, merging and validating the YAML parts is :mod:`MedSORALib.differential.catalogue`'s work.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from ..errors import MedSORAError
from ..organs import FULL_CLASSES, PAIRED_STRUCTURES, STRUCTURES

#: Where the shipped data live.
DATA_DIR = Path(__file__).resolve().parent.parent / "resources" / "differential"

#: Structures MedSORA does not model, with their region.
OUTSIDE: Mapping[str, str] = MappingProxyType({
    **{k: "abdominal" for k in (
        "appendix", "small_bowel", "colon", "rectum", "anus", "peritoneum", "mesentery", "bladder", "ureter",
        "prostate", "ovary", "fallopian_tube", "uterus", "abdominal_wall", "duodenum", "bile_duct",
        "retroperitoneum", "lymph_nodes")},
    # the testis and scrotum lie outside the abdominal cavity (a torsion's pain may spread to the lower abdomen);
    # nerve_muscle: peripheral nerve, roots and neuromuscular junction; poisoning: toxicity and withdrawal;
    # infection: systemic infection without an organ focus; environment: heat, cold and altitude; pregnancy:
    # systemic disorders of pregnancy presenting outside the abdomen (pre-eclampsia's headache and visual signs);
    # cranial_arteries: the temporal and other cranial arteries (giant cell arteritis)
    **{k: "non_abdominal" for k in (
        "heart", "lung", "pleura", "pericardium", "spine", "musculoskeletal", "skin", "brain", "thyroid",
        "blood", "breast", "eye", "ear_nose_throat", "psychiatric", "joints", "metabolic", "testis",
        "nerve_muscle", "poisoning", "infection", "environment", "pregnancy", "cranial_arteries")},
})

#: Designed base rate of each frequency class among adults presenting with an abdominal or chest complaint.
FREQUENCY_PRIORS: Mapping[str, float] = MappingProxyType(
    {"common": 0.05, "uncommon": 0.01, "rare": 0.002, "very_rare": 0.0005})
#: Prior multiplier for a patient outside a disease's typical age range (designed).
AGE_OUTSIDE_FACTOR = 0.3

FINDING_KINDS = ("symptom", "sign", "lab", "vital", "risk", "history", "demographic")
#: Keys a disease may name in ``organs``: the 13 structure keys and the reasoning classes
#: ("kidney", "adrenal_gland": the side then comes from the text).
ORGAN_KEYS: frozenset[str] = frozenset(STRUCTURES) | frozenset(FULL_CLASSES)

#: Findings the reader computes from numbers (``labs.yaml``), with a label and kind for when no lexicon part
#: defines them. A lexicon part that defines one of these ids (e.g. with text patterns) takes precedence.
COMPUTED_FINDINGS: Mapping[str, tuple[str, str]] = MappingProxyType({
    "fever": ("fever", "vital"), "hypothermia": ("hypothermia", "vital"),
    "tachycardia": ("tachycardia", "vital"), "hypotension": ("hypotension", "vital"),
    "hypertension": ("hypertension", "vital"), "hypertension_severe": ("severe hypertension", "vital"),
    "tachypnoea": ("tachypnoea", "vital"), "hypoxia": ("hypoxia", "vital"),
    "lipase_raised": ("raised lipase", "lab"), "lipase_3x_uln": ("lipase over 3x ULN", "lab"),
    "amylase_raised": ("raised amylase", "lab"), "amylase_3x_uln": ("amylase over 3x ULN", "lab"),
    "bilirubin_raised": ("raised bilirubin", "lab"),
    "bilirubin_conjugated_raised": ("raised conjugated bilirubin", "lab"),
    "alp_raised": ("raised ALP", "lab"), "ggt_raised": ("raised GGT", "lab"),
    "transaminases_raised": ("raised transaminases", "lab"),
    "transaminases_very_high": ("transaminases over 10x ULN", "lab"),
    "albumin_low": ("low albumin", "lab"), "inr_raised": ("raised INR", "lab"), "anaemia": ("anaemia", "lab"),
    "leukocytosis": ("leukocytosis", "lab"), "leukopenia": ("leukopenia", "lab"),
    "thrombocytopenia": ("thrombocytopenia", "lab"), "thrombocytosis": ("thrombocytosis", "lab"),
    "creatinine_raised": ("raised creatinine", "lab"), "urea_raised": ("raised urea", "lab"),
    "potassium_low": ("low potassium", "lab"), "potassium_high": ("high potassium", "lab"),
    "sodium_low": ("low sodium", "lab"), "glucose_high": ("high glucose", "lab"),
    "calcium_high": ("high calcium", "lab"), "crp_raised": ("raised CRP", "lab"),
    "lactate_raised": ("raised lactate", "lab"), "hcg_positive": ("positive hCG", "lab"),
    "troponin_raised": ("raised troponin", "lab"), "d_dimer_raised": ("raised D-dimer", "lab"),
    "afp_raised": ("raised AFP", "lab"), "ca19_9_raised": ("raised CA 19-9", "lab"),
    "cea_raised": ("raised CEA", "lab"), "cortisol_raised": ("raised cortisol", "lab"),
    "catecholamines_raised": ("raised metanephrines", "lab"),
    "aldosterone_renin_ratio_raised": ("raised aldosterone-renin ratio", "lab"),
    "microscopic_haematuria": ("microscopic haematuria", "lab"), "pyuria": ("pyuria", "lab"),
    "nitrites_positive": ("positive nitrites", "lab"), "proteinuria": ("proteinuria", "lab"),
    "eosinophilia": ("eosinophilia", "lab"), "ammonia_raised": ("raised ammonia", "lab"),
    "ferritin_raised": ("raised ferritin", "lab"), "ldh_raised": ("raised LDH", "lab"),
})

_FINDING_KEYS = {"id", "label", "kind", "generic", "patterns", "hpo", "side", "removes", "all_of", "implies"}
_DISEASE_KEYS = {"id", "name", "organs", "outside", "frequency", "sex", "age", "findings", "against",
                 "look_for", "source"}
_WEIGHT_KEYS = {"id", "freq", "lr", "lr_source"}
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
#: A source must name an author or body and a year.
_YEAR = re.compile(r"\b(19|20)\d\d\b")
#: An upper-case letter outside an escape (`\D`, `\S`, `\W`, `\B` keep their meaning).
_UPPER = re.compile(r"(?<!\\)[A-Z]")


class CatalogueError(MedSORAError):
    """The shipped or given catalogue data are malformed; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        head = f"the differential catalogue has {len(problems)} problem{'s' if len(problems) != 1 else ''}"
        super().__init__(head + ":\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass(frozen=True)
class Finding:
    """One finding of the lexicon.

    Attributes:
        id: snake_case id, unique in the merged lexicon.
        label: text shown to the user among the findings read.
        kind: one of :data:`FINDING_KINDS`.
        generic: seen across many diseases (fever, nausea, abdominal pain).
        patterns: regular expressions (matched case-insensitively within one clause), united over parts.
        hpo: HPO ids whose names and synonyms also match.
        side: ``"left"`` / ``"right"`` when the finding names a side.
        removes: for history findings, the structure keys or classes the history removes (surgery).
        computed: the reader derives it from numbers (``labs.yaml``); it may have no pattern.
        parts: the lexicon files that define it.
        all_of: groups of finding ids; the reader also reads this finding when every group has one finding read
            as present (a named syndrome from its parts: fever or rigors, jaundice and right upper quadrant pain
            are Charcot's triad).
        implies: finding ids the reader also reads, with the same span and status, when it reads this one as
            present (the named syndrome is its parts: "Charcot's triad" is fever, jaundice and right upper
            quadrant pain). With both, a row's weight of the syndrome is what the whole adds to its parts.
    """

    id: str
    label: str
    kind: str
    generic: bool = False
    patterns: tuple[str, ...] = ()
    hpo: tuple[str, ...] = ()
    side: str | None = None
    removes: tuple[str, ...] = ()
    computed: bool = False
    parts: tuple[str, ...] = ()
    all_of: tuple[tuple[str, ...], ...] = ()
    implies: tuple[str, ...] = ()

    @functools.cached_property
    def regex(self) -> re.Pattern | None:
        """The patterns as one case-insensitive alternation (``None`` without patterns)."""
        if not self.patterns:
            return None
        return re.compile("|".join(f"(?:{p})" for p in self.patterns), re.IGNORECASE)


@dataclass(frozen=True)
class Weight:
    """A finding as a disease row names it.

    Attributes:
        id: the finding id.
        freq: share of patients with the disease who have the finding (sensitivity); ``None`` in ``against``
            rows that give none.
        lr: positive likelihood ratio (> 1 in ``findings``, < 1 in ``against``).
        lr_source: the publication of ``lr`` when it is published, else ``None`` (designed).
    """

    id: str
    freq: float | None
    lr: float
    lr_source: str | None = None

    @property
    def lr_negative(self) -> float:
        """LR of the finding's absence: (1 - sens) / (1 - sens / lr), sens = freq, 1 - spec = freq / lr.

        1.0 when ``freq`` is unknown or the finding argues against the disease.
        """
        if self.freq is None or self.lr <= 1:
            return 1.0
        false_positive = min(self.freq / self.lr, 0.999)
        return max((1.0 - self.freq) / (1.0 - false_positive), 1e-3)


@dataclass(frozen=True)
class Disease:
    """One row of the catalogue (see ``docs/differential_schema.md`` for the fields)."""

    id: str
    name: str
    organs: tuple[str, ...]
    outside: str | None
    frequency: str
    sex: str | None
    age: tuple[int, int] | None
    findings: tuple[Weight, ...]
    against: tuple[Weight, ...]
    look_for: tuple[str, ...]
    source: str
    part: str = ""
    #: False for ``sex: mostly female`` / ``mostly male``: the other sex has the disease too, less often.
    sex_strict: bool = True

    @property
    def prior(self) -> float:
        """Designed base rate from the frequency class."""
        return FREQUENCY_PRIORS[self.frequency]

    @property
    def structures(self) -> tuple[str, ...]:
        """Structure keys of the row's organs, reasoning classes expanded (``kidney`` -> right, left)."""
        out: list[str] = []
        for key in self.organs:
            keys = tuple(PAIRED_STRUCTURES[key].values()) if key in PAIRED_STRUCTURES else (key,)
            out.extend(k for k in keys if k not in out)
        return tuple(out)

    @property
    def region(self) -> str:
        """``"modelled"`` for a row of the 13 structures, else the region of its ``outside`` key."""
        return "modelled" if self.organs else OUTSIDE[self.outside]

    def weight(self, finding_id: str) -> Weight | None:
        """The row's weight for a finding (``findings`` or ``against``), ``None`` when it does not name it."""
        for w in self.findings + self.against:
            if w.id == finding_id:
                return w
        return None


@dataclass(frozen=True)
class Catalogue:
    """The merged lexicon and the disease rows."""

    findings: Mapping[str, Finding] = field(compare=False)
    diseases: tuple[Disease, ...]

    @functools.cached_property
    def by_id(self) -> Mapping[str, Disease]:
        """Diseases by id."""
        return MappingProxyType({d.id: d for d in self.diseases})

    def for_structure(self, key: str) -> tuple[Disease, ...]:
        """Rows naming a structure key or reasoning class (a class's rows count for each of its structures)."""
        return tuple(d for d in self.diseases if key in d.organs or key in d.structures)

    def outside_rows(self) -> tuple[Disease, ...]:
        """Rows of structures MedSORA does not model."""
        return tuple(d for d in self.diseases if d.outside is not None)


# ----------------------------------------------------------------------------------------------- loading
