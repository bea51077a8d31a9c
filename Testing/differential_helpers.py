"""Small helpers shared by the catalogue tests: a diagnosis's probability, the first organ, the findings read, a
row's weights."""
from __future__ import annotations

from MedSORALib.differential.reader import read


def probability(result, disease_id: str) -> float:
    """The probability the differential ``result`` gives ``disease_id`` (0 when the row is not scored)."""
    return next((d.probability for d in result.diagnoses if d.disease.id == disease_id), 0.0)


def top_organ(result) -> str:
    """The structure with the highest relevance in the differential ``result``."""
    return max(result.organ_relevance, key=result.organ_relevance.get)


def present(text: str) -> set[str]:
    """Ids of the findings the reader reads as present in ``text``."""
    return {f.id for f in read(text).findings if f.status == "present"}


def weights(catalogue, disease_id: str) -> dict:
    """{finding id: weight} of a catalogue row's findings."""
    return {w.id: w for w in catalogue.by_id[disease_id].findings}


def against(catalogue, disease_id: str) -> dict[str, float]:
    """{finding id: LR} of the findings a catalogue row counts against itself."""
    return {w.id: w.lr for w in catalogue.by_id[disease_id].against}
