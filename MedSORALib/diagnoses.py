"""The differential diagnosis as a scored CT result carries it: the diagnoses, the scope and each organ's why.

:func:`MedSORALib.scoring.score_case` reads every symptom through
:func:`MedSORALib.differential.fusion.reason` (the clinical reader, the cited
catalogue and its gated fusion with the text model; the text model's
predictions are passed in, so nothing is encoded twice). From its answer a
:class:`~MedSORALib.scoring.SymptomResult` keeps:

- ``differential``: the best diagnoses first, at most :data:`TOP_DIAGNOSES`,
  each a :class:`DiagnosisEntry` (``diagnosis``, ``organs``, ``probability``,
  ``supporting``: the findings read in the text, ``against``, ``look_for``: the
  CT signs, ``source``; also the catalogue ``id`` and ``outside``);
- ``scope`` (``modelled``, ``abdominal-other`` or ``non-abdominal``) and
  ``outside`` (the structure outside the 13 that the best diagnoses lie in);
  ``in_domain`` is true only for ``modelled``;
- ``none_of_these``: the probability left to "none of these diagnoses" (a
  non-specific text leaves most of it there);
- in every organ's ``why``: the diagnoses behind its relevance with their
  probabilities (:func:`organ_why`, ``"Acute calculous cholecystitis 0.79,
  Biliary colic (symptomatic gallstones) 0.01"``), before the findings' reason.

The patient's age and sex (when the case knows them) are passed to the reader;
they take precedence over what the text states.

Nothing here imports torch, Slicer or the scoring module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

#: Diagnoses a result keeps (best first).
TOP_DIAGNOSES = 10
#: Diagnoses the Slicer panel and the web page show.
SHOWN_DIAGNOSES = 5
#: A diagnosis below this probability is not kept in a result, nor named in an organ's why.
MIN_PROBABILITY = 0.001
#: Diagnoses named in one organ's why, at most, and the least probability named there (0.01 at 2 decimals).
WHY_DIAGNOSES = 3
WHY_MIN_PROBABILITY = 0.005
#: Decimals of the probabilities in the JSON (those of ``medsora rank --json``).
PROBABILITY_DECIMALS = 4

_SEX = {"f": "female", "female": "female", "woman": "female", "m": "male", "male": "male", "man": "male"}


@dataclass
class DiagnosisEntry:
    """One diagnosis of a result's differential (the JSON keys of docs/outputs.md)."""

    diagnosis: str
    organs: list[str] = field(default_factory=list)
    probability: float = 0.0
    supporting: list[str] = field(default_factory=list)
    against: list[str] = field(default_factory=list)
    look_for: list[str] = field(default_factory=list)
    source: str = ""
    id: str = ""
    outside: str | None = None

    def to_dict(self) -> dict:
        """The JSON form of one diagnosis (inverse: :meth:`from_dict`)."""
        return {
            "id": self.id,
            "diagnosis": self.diagnosis,
            "organs": list(self.organs),
            "outside": self.outside,
            "probability": round(self.probability, PROBABILITY_DECIMALS),
            "supporting": list(self.supporting),
            "against": list(self.against),
            "look_for": list(self.look_for),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "DiagnosisEntry":
        outside = data.get("outside")
        return cls(diagnosis=str(data["diagnosis"]), organs=[str(k) for k in data.get("organs") or []],
                   probability=float(data.get("probability", 0.0)),
                   supporting=[str(s) for s in data.get("supporting") or []],
                   against=[str(s) for s in data.get("against") or []],
                   look_for=[str(s) for s in data.get("look_for") or []], source=str(data.get("source") or ""),
                   id=str(data.get("id") or ""), outside=None if outside is None else str(outside))

    def main_organ(self, present: Sequence[str] | None = None) -> str | None:
        """The first of the diagnosis's organs (its main one first) that ``present`` holds; None when none."""
        for key in self.organs:
            if present is None or key in present:
                return key
        return None


def patient_age_sex(case) -> tuple[float | None, str | None]:
    """The patient's age in years and sex (``"female"``/``"male"``) a case knows, else None.

    Read from ``case.patient`` (an object with ``age`` and ``sex``, or a dict) or, failing that, from the
    ``patient`` entry of the case's evidence; a case without either gives ``(None, None)``.
    """
    patient = getattr(case, "patient", None)
    if patient is None:
        patient = (getattr(case, "evidence", None) or {}).get("patient")
    if patient is None:
        return None, None
    get = patient.get if isinstance(patient, Mapping) else (lambda name: getattr(patient, name, None))
    age, sex = get("age"), get("sex")
    try:
        age = None if age is None else float(age)
    except (TypeError, ValueError):
        age = None
    return age, _SEX.get(str(sex).strip().lower()) if sex is not None else None


def reason_case(case, predictions: Sequence, reasoner) -> list:
    """:func:`~MedSORALib.differential.fusion.reason` for the texts of ``predictions`` (the reasoner's, already
    computed) with the case's age and sex: one :class:`~MedSORALib.differential.fusion.Reasoned` per text."""
    from .differential.fusion import reason

    age, sex = patient_age_sex(case)
    return reason([p.text for p in predictions], reasoner, age=age, sex=sex, predictions=list(predictions))


def entries(reasoned, top: int = TOP_DIAGNOSES) -> list[DiagnosisEntry]:
    """The best ``top`` diagnoses of a ``Reasoned`` (those of at least :data:`MIN_PROBABILITY`)."""
    return [DiagnosisEntry.from_dict(d.to_dict()) for d in reasoned.differential.diagnoses[:top]
            if d.probability >= MIN_PROBABILITY]


def organ_why(reasoned, key: str, limit: int = WHY_DIAGNOSES) -> str:
    """The diagnoses behind a structure's relevance with their probabilities, ``"name 0.62, name 0.11"``
    (``""`` when none reaches :data:`WHY_MIN_PROBABILITY` or the structure was removed)."""
    result = reasoned.differential
    if key in result.removed:
        return ""
    named = [f"{d.disease.name} {d.probability:.2f}" for d in result.diagnoses
             if key in d.structures and d.probability >= WHY_MIN_PROBABILITY]
    return ", ".join(named[:limit])


def joined_why(diagnoses: str, findings: str) -> str:
    """An organ's ``why``: the diagnoses behind it, then the findings' reason, ``"; "``-separated."""
    return "; ".join(part for part in (diagnoses, findings) if part)


def result_fields(reasoned) -> dict:
    """What a :class:`~MedSORALib.scoring.SymptomResult` takes from a ``Reasoned``: ``in_domain`` (true only for
    the ``modelled`` scope), ``differential``, ``scope``, ``outside``, ``none_of_these`` and ``non_specific``."""
    return {"in_domain": bool(reasoned.in_domain), "differential": entries(reasoned), "scope": reasoned.scope,
            "outside": reasoned.outside, "none_of_these": none_of_these(reasoned),
            "non_specific": bool(reasoned.non_specific)}


def fields_from_dict(data: Mapping) -> dict:
    """The differential fields of a result read back from its JSON (``SymptomResult.from_dict``; the inverse of
    the keys ``SymptomResult.to_dict`` writes: ``scope``, ``outside``, ``differential``, ``none_of_these``,
    ``non_specific``)."""
    return {"differential": [DiagnosisEntry.from_dict(d) for d in data.get("differential") or []],
            "scope": str(data.get("scope") or "modelled"), "outside": data.get("outside"),
            "none_of_these": float(data.get("none_of_these") or 0.0),
            "non_specific": bool(data.get("non_specific", False))}


def none_of_these(reasoned) -> float:
    """The probability the differential leaves to "none of these diagnoses"."""
    return round(float(reasoned.differential.none_probability), PROBABILITY_DECIMALS)


def scope_text(scope: str, outside: str | None, none_probability: float | None = None) -> str:
    """The scope in words, for the panel and the page (``none_probability``: the unexplained share)."""
    text = {"modelled": "the 13 abdominal structures MedSORA shows",
            "abdominal-other": "abdominal, outside the 13 structures" + (f" ({outside.replace('_', ' ')})"
                                                                         if outside else ""),
            "non-abdominal": "not abdominal" + (f" ({outside.replace('_', ' ')})" if outside else "")}.get(
        scope, scope)
    if none_probability is not None:
        text += f"; none of these diagnoses: {none_probability:.2f}"
    return "Scope: " + text


def checklist_rows(differential: Sequence[DiagnosisEntry], present: Sequence[str] | None = None,
                   shown: int = SHOWN_DIAGNOSES) -> list[dict]:
    """The diagnoses the panel and the page show (best ``shown``), one row each:

    ``rank``, ``diagnosis``, ``probability`` (2 decimals, text), ``organ`` (the main organ the case holds, the
    one whose slice choosing the diagnosis shows; None when none), ``where`` (its organs' names, or the structure
    outside the 13), ``look_for`` (the checklist), ``read`` (the supporting findings, ``", "``-joined),
    ``against`` and ``source``.
    """
    from .organs import ORGANS

    rows = []
    for rank, entry in enumerate(differential[:shown], 1):
        names = [ORGANS[k].display_name for k in entry.organs if k in ORGANS]
        where = ", ".join(names) if names else (entry.outside or "").replace("_", " ")
        rows.append({"rank": rank, "diagnosis": entry.diagnosis, "probability": f"{entry.probability:.2f}",
                     "organ": entry.main_organ(present), "where": where, "look_for": list(entry.look_for),
                     "read": ", ".join(entry.supporting), "against": ", ".join(entry.against),
                     "source": entry.source})
    return rows


def differential_lines(differential: Sequence[DiagnosisEntry], top: int = 3) -> list[str]:
    """The best ``top`` diagnoses as lines of text (``medsora score``'s table): probability, name, look for."""
    return [f"{d.probability:.2f}  {d.diagnosis}" + (f"; look for: {', '.join(d.look_for)}" if d.look_for else "")
            for d in differential[:top]]


def scope_flag(scope: str, outside: str | None) -> str:
    """What a printed result says after the symptom about its scope (nothing for ``modelled``)."""
    if scope == "modelled":
        return ""
    if scope == "abdominal-other":
        return f"   (abdominal, outside the 13 structures: {(outside or 'other').replace('_', ' ')})"
    return "   (out of domain: not an abdominal symptom; relevances are low)"
