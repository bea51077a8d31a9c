"""Image evidence of one patient and how it enters the relevance.

:func:`image_evidence` measures every organ (:mod:`MedSORALib.measurements`),
estimates the contrast phase and compares the measurements with the reference
ranges (:mod:`MedSORALib.findings`). It is computed once per CT, whatever the
number of symptoms.

Findings in the relevance (:func:`apply_findings`): for a symptom and an organ
with text prior ``t`` and fused relevance ``r`` (see :mod:`MedSORALib.scoring`),

    r' = r + FINDING_BOOST * t * (1 - r) * (1 - o)   when the organ has an abnormal finding
                                                     and t >= MIN_TEXT_PRIOR
    r' = r                                           otherwise

with ``FINDING_BOOST = 0.3``, ``MIN_TEXT_PRIOR = 0.1`` and ``o`` the text side's
out-of-domain probability of the symptom (``ood_score``). The rule was set by
design, not fitted to any test set:

- the boost scales with the text prior, so a finding raises an organ the symptom
  points to and leaves the others where they are; below ``MIN_TEXT_PRIOR`` (an
  organ the symptom does not point to) nothing changes;
- the boost scales with the probability that the symptom is abdominal, so a
  finding never makes an out-of-domain symptom relevant: a symptom the gate
  calls out of domain (o > 0.5) gets less than half of an already small boost on
  a text prior the gate has lowered, and a clearly non-abdominal one (o near 1)
  gets nothing;
- the increase is at most ``0.3 * (1 - r)``, so ``r'`` stays in [0, 1], the order
  among organs the symptom points to strongly can change only when their
  relevances are close, and one finding cannot move an organ from "not relevant"
  to "most relevant";
- several abnormal findings in one organ give one boost (they describe one organ).

Each organ's result says why: ``finding_boost`` (the increase) and ``why`` (the
abnormal findings and the rule, or why no boost was given).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .findings import Patient, abnormal_findings, contrast_phase, evaluate_findings
from .organ_measures import measure_organs
from .volume_io import Volume

#: Largest share of the remaining headroom (1 - r) an abnormal finding adds, scaled by the text prior.
FINDING_BOOST = 0.3
#: Text prior below which an organ is not one the symptom points to (no boost).
MIN_TEXT_PRIOR = 0.1


def image_evidence(volume: Volume, masks: Mapping[str, np.ndarray], patient: Patient | None = None) -> dict:
    """Measurements, contrast phase and findings of a CT's organs, against the ranges for ``patient``
    (age and sex; None: unknown, the adult ranges).

    Returns ``{"measurements": {organ: {...}}, "contrast_phase": {...},
    "findings": {organ: {"findings": [...], "not_assessed": [...]}}, "patient": {age, sex, source}}``.
    """
    patient = patient or Patient()
    measurements = measure_organs(volume, masks)
    phase = contrast_phase(measurements)
    return {"measurements": measurements, "contrast_phase": phase,
            "findings": evaluate_findings(measurements, phase, patient), "patient": patient.to_dict()}


def finding_boost(relevance: float, text_prior: float, ood_score: float, abnormal: list[dict]) -> tuple[float, str]:
    """The increase of one organ's relevance from its abnormal findings, and why (module doc).

    ``ood_score`` is the text side's probability that the symptom is out of domain.
    """
    if not abnormal:
        return 0.0, ""
    texts = "; ".join(f["text"] for f in abnormal)
    if text_prior < MIN_TEXT_PRIOR:
        return 0.0, (f"abnormal finding ({texts}) not used: text prior {text_prior:.3f} is below "
                     f"{MIN_TEXT_PRIOR} (the symptom does not point to this organ)")
    p_in = float(np.clip(1.0 - ood_score, 0.0, 1.0))
    boost = FINDING_BOOST * text_prior * (1.0 - relevance) * p_in
    return float(boost), (f"abnormal finding ({texts}) raised the relevance by {boost:.3f} "
                          f"= {FINDING_BOOST} x text prior {text_prior:.3f} x (1 - {relevance:.3f}) "
                          f"x in-domain probability {p_in:.3f}")


def apply_findings(relevance: np.ndarray, text_prior: np.ndarray, keys: list[str], ood_score: float,
                   findings: Mapping[str, dict]) -> tuple[np.ndarray, list[float], list[str]]:
    """Relevances ``(K,)`` of one symptom after the finding rule; also the boosts and reasons per organ."""
    out = np.asarray(relevance, dtype=np.float64).copy()
    boosts, reasons = [], []
    for c, key in enumerate(keys):
        boost, why = finding_boost(float(out[c]), float(text_prior[c]), ood_score, abnormal_findings(findings, key))
        out[c] = min(1.0, out[c] + boost)
        boosts.append(boost)
        reasons.append(why)
    return out, boosts, reasons
