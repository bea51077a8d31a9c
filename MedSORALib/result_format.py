"""How a scored symptom is written, wherever it is written: names, tags, numbers and passages.

A :class:`~MedSORALib.scoring.SymptomResult` reaches the user as a Slicer
``.seg.nrrd`` file (:mod:`MedSORALib.result_files`), as nodes of a Slicer scene
(:mod:`MedSORALib.scene.result_nodes`) and as the tables of ``medsora serve``
(:mod:`MedSORALib.web.session`). All of them take their names and texts from
here, so the same result gives the same strings everywhere:

- **Segment names** are the catalog's display name with a capital first letter
  (``"Right kidney"``, ``"Portal vein and splenic vein"``), the way Slicer names
  segments; the same name heads table rows, chart bars and passage groups.
  Inside a sentence (preview captions) the lower-case display name is used, and
  the JSON keeps it lower case in ``display_name``.
- **Scores** (relevance, text prior, image score, finding boost) are written to
  :data:`SCORE_DECIMALS` = 6 decimals, the rounding of the JSON report: a tag
  read back is the JSON's number, and a colour recomputed from a tag matches the
  segment's colour to 1e-6. An image score that was not computed (NaN) is ``""``.
- **Segment tags**: :func:`segment_tags` gives each organ the same
  ``MedSORA.*`` tags in the file and in the scene.

Nothing here imports Slicer, VTK or torch.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import organs

if TYPE_CHECKING:  # the dataclasses' module imports this one for SCORE_DECIMALS
    from .scoring import OrganScore, SymptomResult

#: Segment tag: the catalog structure key, e.g. ``kidney_right``.
STRUCTURE_TAG = "MedSORA.Structure"
#: Segment tag: the organ's relevance to the symptom, a decimal in [0, 1].
RELEVANCE_TAG = "MedSORA.Relevance"
#: Segment tag: the text prior (relevance from the text alone), a decimal in [0, 1].
TEXT_PRIOR_TAG = "MedSORA.TextPrior"
#: Segment tag: the image-text similarity, a decimal in [-1, 1] (``""`` when not computed).
IMAGE_SCORE_TAG = "MedSORA.ImageScore"
#: Segment tag: what abnormal findings added to the relevance, a decimal in [0, 1].
FINDING_BOOST_TAG = "MedSORA.FindingBoost"
#: Segment tags of the organ's measurements, by measurement field (only the fields measured are written).
MEASUREMENT_TAGS = {
    "volume_ml": "MedSORA.VolumeMl",
    "length_mm": "MedSORA.LengthMm",
    "max_diameter_mm": "MedSORA.MaxDiameterMm",
    "mean_hu": "MedSORA.MeanHU",
    "perpendicular_diameter_mm": "MedSORA.PerpendicularDiameterMm",
}
#: Segment tag: ``"true"`` when the organ leaves the scanned range (written with the measurements).
PARTIALLY_IMAGED_TAG = "MedSORA.PartiallyImaged"
#: Segment tag: the organ's abnormal findings, ``"; "``-separated, :data:`NO_FINDINGS` when none.
FINDINGS_TAG = "MedSORA.Findings"
#: Segment tag and table node attribute: the CT's contrast phase and its confidence, ``"venous (0.91)"``.
CONTRAST_PHASE_TAG = "MedSORA.ContrastPhase"
#: Node attribute of an output segmentation and table: the symptom text.
SYMPTOM_ATTRIBUTE = "MedSORA.Symptom"
#: Node attribute of an output segmentation: ``"true"`` or ``"false"``.
IN_DOMAIN_ATTRIBUTE = "MedSORA.InDomain"
#: Node attribute of an output segmentation: the models' description as JSON.
MODELS_ATTRIBUTE = "MedSORA.Models"
#: Node attribute of an output segmentation: the scope (``modelled``, ``abdominal-other``, ``non-abdominal``).
SCOPE_ATTRIBUTE = "MedSORA.Scope"
#: Node attribute of an output segmentation: the structure outside the 13 the best diagnoses lie in (when any).
OUTSIDE_ATTRIBUTE = "MedSORA.Outside"
#: Node attribute of an output segmentation: the differential's top diagnoses as JSON (the result's
#: ``differential`` entries, best first, at most ``diagnoses.SHOWN_DIAGNOSES``).
DIFFERENTIAL_ATTRIBUTE = "MedSORA.Differential"

#: Decimals of every score written as text (tags) and of the scores in the JSON report.
SCORE_DECIMALS = 6
#: Decimals of the scores in tables shown to a person (``medsora serve``).
DISPLAY_DECIMALS = 3
#: :data:`FINDINGS_TAG` of an organ without abnormal findings.
NO_FINDINGS = "none"


def segment_name(key: str) -> str:
    """The name of an organ's segment: its display name with a capital first letter (``"Right kidney"``)."""
    name = organs.ORGANS[key].display_name
    return name[:1].upper() + name[1:]


def score_text(value: float | None) -> str:
    """A score as tag text, :data:`SCORE_DECIMALS` decimals; ``""`` for None or NaN (not computed)."""
    return "" if value is None or math.isnan(value) else f"{value:.{SCORE_DECIMALS}f}"


def flag_text(value: bool) -> str:
    """``"true"`` or ``"false"``."""
    return "true" if value else "false"


def tag_text(text: str) -> str:
    """Text safe for a ``.seg.nrrd`` tag value: no ``|``, ``:`` or line breaks."""
    return " ".join(text.replace("|", "/").replace(":", " ").split())


def abnormal_findings(score: OrganScore) -> list[str]:
    """The sentences of the organ's abnormal findings (measurement and reference range)."""
    return [finding["text"] for finding in score.findings if finding.get("abnormal")]


def findings_text(score: OrganScore) -> str:
    """The organ's abnormal findings on one line, ``"; "``-separated (``""`` when none)."""
    return "; ".join(abnormal_findings(score))


def contrast_phase_text(phase: dict) -> str:
    """``"<phase> (<confidence, 2 decimals>)"`` of a result's ``contrast_phase``, ``""`` when it has none."""
    if not phase:
        return ""
    return f"{phase.get('phase')} ({float(phase.get('confidence', 0)):.2f})"


def organ_tags(score: OrganScore, phase: dict) -> dict[str, str]:
    """The ``MedSORA.*`` tags of one organ's segment (``phase``: the result's ``contrast_phase``)."""
    tags = {
        STRUCTURE_TAG: score.key,
        RELEVANCE_TAG: score_text(score.relevance),
        TEXT_PRIOR_TAG: score_text(score.text_prior),
        IMAGE_SCORE_TAG: score_text(score.image_score),
        FINDING_BOOST_TAG: score_text(score.finding_boost),
    }
    measured = score.measurements
    for field, tag in MEASUREMENT_TAGS.items():
        if measured.get(field) is not None:
            tags[tag] = f"{measured[field]}"
    if measured:
        tags[PARTIALLY_IMAGED_TAG] = flag_text(bool(measured.get("partially_imaged")))
    tags[FINDINGS_TAG] = tag_text(findings_text(score)) or NO_FINDINGS
    if phase:
        tags[CONTRAST_PHASE_TAG] = tag_text(contrast_phase_text(phase))
    return tags


def segment_tags(result: SymptomResult) -> dict[str, dict[str, str]]:
    """``{structure key: {tag: text}}`` for every organ of a result (:func:`organ_tags`)."""
    return {score.key: organ_tags(score, result.contrast_phase) for score in result.organs}


def passage_text(passage: dict) -> str:
    """One supporting passage (``{id, text, source, score}``, :func:`~MedSORALib.scoring.supporting_passages`)
    as ``[id] (score 0.80)``, its text and ``Source: ...`` on separate lines."""
    lines = [f"[{passage['id']}] (score {passage['score']:.2f})", passage["text"].strip()]
    if passage["source"]:
        lines.append(f"Source: {passage['source']}")
    return "\n".join(line for line in lines if line)


def passage_groups(result: SymptomResult) -> list[tuple[str, list[dict]]]:
    """``[(segment name, passages)]`` for each organ that has supporting passages, in the result's order."""
    return [(segment_name(key), items) for key, items in result.passages.items() if items]


def passages_text(result: SymptomResult) -> str:
    """The supporting passages of a result as plain text, grouped under ``== <segment name> ==`` headings."""
    return "\n\n".join(f"== {name} ==\n" + "\n\n".join(passage_text(p) for p in items)
                       for name, items in passage_groups(result))
