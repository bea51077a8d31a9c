"""Contrast phase and findings: organ measurements compared with cited reference ranges, for this patient.

:data:`~MedSORALib.reference_ranges.REFERENCE_RANGES` is the one table of
thresholds MedSORA uses (:mod:`MedSORALib.reference_ranges`: measure, source,
population, basis, and ranges by sex and age). A finding states the
measurement and the range, never a diagnosis: "spleen volume 612 ml; adult
upper reference 314.5 ml".

Rules applied to every row:

- size rows (``kind="size"``) give no finding for a partially imaged organ (it
  touches the first or last slice); the row is listed under ``not_assessed``;
- vessel calibre rows (``kind="calibre"``) are assessed on the imaged part of
  the vessel, since a vessel always runs beyond the scan;
- attenuation rows (``phase="non-contrast"``) are assessed only when
  :func:`contrast_phase` estimates a non-contrast scan with confidence at least
  :data:`MIN_PHASE_CONFIDENCE`; otherwise they are listed under ``not_assessed``;
- the patient (:class:`Patient`): a row with ranges by sex or age uses the
  patient's; when the sex or age it needs is unknown the adult range applies
  and the finding says so; ``z`` is the z-score against the cited cohort when
  its mean and SD are published;
- a row of a pair (kidney length difference) sits on the smaller organ;
- aortic rows: each applies to the section it names. A cut whose section no
  landmark places (:mod:`MedSORALib.vessels`) is assessed against the abdominal
  rows, the stricter thresholds, and the finding states that the section is
  uncertain; a diameter above every threshold is thus never left unassessed.
"""
from __future__ import annotations

import math
from typing import Mapping

from .errors import PatientError
from .patient import Patient
from .reference_ranges import AORTIC_SECTION_OF_ROW, REFERENCE_RANGES, ReferenceRange, Variant, reference_table

__all__ = ["MIN_PHASE_CONFIDENCE", "PHASES", "Patient", "PatientError", "REFERENCE_RANGES", "ReferenceRange", "Variant",
           "abnormal_findings", "contrast_phase", "evaluate_findings", "reference_table"]


#: Least confidence in a non-contrast phase for attenuation findings (liver fat) to be reported.
MIN_PHASE_CONFIDENCE = 0.7
PHASES = ("non-contrast", "arterial", "portal venous", "delayed")


# -- contrast phase ----------------------------------------------------------------------------------

def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


#: HU scale of the phase rule (module doc of :func:`contrast_phase`).
PHASE_RULE = {"aorta_enhanced_hu": 90.0, "kidney_enhanced_hu": 80.0, "portal_enhanced_hu": 90.0,
              "arterial_portal_to_aorta_ratio": 0.7, "delayed_aorta_hu": 135.0}


def contrast_phase(measurements: Mapping[str, dict]) -> dict:
    """Estimate the contrast phase from the median HU of the aorta, portal vein and kidneys.

    A designed rule, not fitted: unenhanced blood is about 30-60 HU and unenhanced
    kidney about 30 HU, while any contrast phase brings the aorta well above 120 HU.

    - enhancement ``e``: the weighted mean of sigmoid((HU - cut) / 10) over the
      aorta (weight 2, cut 90 HU), the portal vein and the kidneys (weight 1 each,
      cuts 90 and 80 HU), over the structures present;
    - arterial share ``a`` = sigmoid((0.7 - portal / aorta) / 0.08): the portal vein
      lags well behind the aorta in the arterial phase;
    - delayed share ``d`` = sigmoid((135 - aorta) / 10): the aorta has washed out
      below its portal-venous level;
    - probabilities: non-contrast 1 - e, arterial e*a, portal venous e*(1-a)*(1-d),
      delayed e*(1-a)*d; the phase is the most probable, ``confidence`` its probability.

    Returns ``{"phase", "confidence", "probabilities", "hu_used", "rule"}``; ``phase``
    is ``"unknown"`` when no aorta, portal vein or kidney is present.
    """
    def median(key):
        m = measurements.get(key)
        return None if m is None or m.get("median_hu") is None else float(m["median_hu"])

    aorta = median("aorta")
    portal = median("portal_vein_and_splenic_vein")
    kidneys = [v for v in (median("kidney_right"), median("kidney_left")) if v is not None]
    kidney = sum(kidneys) / len(kidneys) if kidneys else None
    used = {"aorta_median_hu": aorta, "portal_vein_median_hu": portal, "kidney_median_hu": kidney,
            "liver_median_hu": median("liver")}
    votes = []
    if aorta is not None:
        votes.append((2.0, _sigmoid((aorta - PHASE_RULE["aorta_enhanced_hu"]) / 10.0)))
    if portal is not None:
        votes.append((1.0, _sigmoid((portal - PHASE_RULE["portal_enhanced_hu"]) / 10.0)))
    if kidney is not None:
        votes.append((1.0, _sigmoid((kidney - PHASE_RULE["kidney_enhanced_hu"]) / 10.0)))
    rule = "enhancement from aorta/portal/kidney HU, then portal-to-aorta ratio and aortic washout"
    if not votes:
        return {"phase": "unknown", "confidence": 0.0, "probabilities": {}, "hu_used": used, "rule": rule}
    e = sum(w * p for w, p in votes) / sum(w for w, _ in votes)
    if aorta is not None and portal is not None and aorta > 0:
        a = _sigmoid((PHASE_RULE["arterial_portal_to_aorta_ratio"] - portal / aorta) / 0.08)
    elif aorta is not None:
        a = _sigmoid((aorta - 250.0) / 25.0)
    else:
        a = 0.5
    d = _sigmoid((PHASE_RULE["delayed_aorta_hu"] - aorta) / 10.0) if aorta is not None else 0.5
    probs = {"non-contrast": 1.0 - e, "arterial": e * a, "portal venous": e * (1 - a) * (1 - d),
             "delayed": e * (1 - a) * d}
    phase = max(probs, key=probs.get)
    return {"phase": phase, "confidence": round(probs[phase], 4),
            "probabilities": {k: round(v, 4) for k, v in probs.items()}, "hu_used": used, "rule": rule}



# -- findings ------------------------------------------------------------------------------------------

def _smaller(pair: tuple[str, str], measurements: Mapping[str, dict]) -> str:
    """The organ of the pair with the shorter pole-to-pole length (the first when equal or unmeasured)."""
    a, b = (measurements.get(k, {}).get("max_diameter_mm") for k in pair)
    return pair[1] if a is not None and b is not None and b < a else pair[0]


def _derived(measurements: Mapping[str, dict]) -> dict[str, dict]:
    """Values computed from two organs, attached to the organ of their row."""
    out: dict[str, dict] = {}
    liver, spleen = measurements.get("liver"), measurements.get("spleen")
    if liver and spleen and liver.get("median_hu") is not None and spleen.get("median_hu") is not None:
        out.setdefault("liver", {})["liver_minus_spleen_hu"] = round(liver["median_hu"] - spleen["median_hu"], 1)
    right, left = measurements.get("kidney_right"), measurements.get("kidney_left")
    if right and left:
        small = _smaller(("kidney_right", "kidney_left"), measurements)
        out.setdefault(small, {})["kidney_length_difference_mm"] = round(
            abs(right["max_diameter_mm"] - left["max_diameter_mm"]), 2)
        out[small]["_partial"] = bool(right.get("partially_imaged") or left.get("partially_imaged"))
    return out


def _format(value: float, unit: str) -> str:
    return f"{value:.0f} {unit}" if unit == "ml" else f"{value:.1f} {unit}"


def _patient_range(row: ReferenceRange, patient: Patient):
    """(threshold, reference text, variant or None, note) for this patient; threshold None: not assessable."""
    for variant in row.variants:
        if variant.matches(patient.age, patient.sex):
            return variant.threshold, variant.reference_text, variant, f"range for {variant.group}"
    unknown = sorted(n for n in row.needs if getattr(patient, n) is None)
    if unknown:
        note = f"{' and '.join(unknown)} unknown: adult range"
    elif row.needs:
        note = "adult range (no range for this patient's group)"
    else:
        note = ""
    return row.threshold, row.reference_text, None, note


def _aortic_value(row: ReferenceRange, organ: Mapping) -> tuple[float | None, bool]:
    """The value an aortic row assesses and whether it came from a cut of uncertain section (module doc)."""
    value = organ.get(row.measurement)
    if AORTIC_SECTION_OF_ROW.get(row.key) != "abdominal":
        return value, False
    uncertain = organ.get(row.measurement.replace("abdominal_", "uncertain_", 1))
    if uncertain is not None and (value is None or uncertain > value):
        return uncertain, True
    return value, False


def _uncertain_text(organ: Mapping) -> str:
    landmark = organ.get("section_landmark")
    why = (f"between the levels set by the {landmark}" if landmark
           else "no landmark in the segmentation places the aortic hiatus")
    return f" (section uncertain: {why}; assessed against the stricter abdominal threshold)"


def _pair_text(row: ReferenceRange, organ_key: str, measurements: Mapping[str, dict], value: float) -> str:
    sides = {k: k.rsplit("_", 1)[1] for k in row.pair}
    other = next(k for k in row.pair if k != organ_key)
    return (f"{sides[organ_key]} kidney {_format(value, row.unit)} shorter than the {sides[other]} "
            f"({measurements[organ_key]['max_diameter_mm']:.1f} vs {measurements[other]['max_diameter_mm']:.1f} mm)")


def evaluate_findings(measurements: Mapping[str, dict], phase: Mapping | None = None,
                      patient: Patient | None = None) -> dict[str, dict]:
    """Compare measurements with the reference ranges for ``patient`` (module doc; unknown patient: adult).

    Returns, per organ present, ``{"findings": [...], "not_assessed": [...]}``; a finding is
    ``{key, abnormal, value, unit, measurement, text, reference, threshold, patient_range, z}``.
    """
    phase = phase or {}
    patient = patient or Patient()
    unenhanced = phase.get("phase") == "non-contrast" and float(phase.get("confidence", 0.0)) >= MIN_PHASE_CONFIDENCE
    derived = _derived(measurements)
    out: dict[str, dict] = {k: {"findings": [], "not_assessed": []} for k in measurements}
    for row in REFERENCE_RANGES:
        key = _smaller(row.pair, measurements) if row.pair else row.organ
        organ = measurements.get(key)
        if organ is None:
            continue
        extra = derived.get(key, {})
        uncertain = False
        if row.organ == "aorta":
            value, uncertain = _aortic_value(row, organ)
        else:
            value = organ.get(row.measurement, extra.get(row.measurement))
        if value is None:
            reason = f"no {row.measurement} measured"
            if row.organ == "aorta":
                reason = (f"no cut of the aorta placed in its {AORTIC_SECTION_OF_ROW[row.key]} section"
                          + ("" if organ.get("section_landmark") else
                             " (section uncertain: its cuts were assessed against the abdominal rows)"))
            out[key]["not_assessed"].append({"key": row.key, "reason": reason})
            continue
        partial = extra.get("_partial", False) if row.measurement in extra else organ.get("partially_imaged")
        if row.kind == "size" and partial:
            out[key]["not_assessed"].append(
                {"key": row.key, "reason": "partially imaged: the organ touches the first or last slice"})
            continue
        if row.phase == "non-contrast" and not unenhanced:
            out[key]["not_assessed"].append(
                {"key": row.key, "reason": f"needs an unenhanced scan; phase {phase.get('phase', 'unknown')} "
                                           f"(confidence {float(phase.get('confidence', 0.0)):.2f})"})
            continue
        threshold, reference_text, variant, note = _patient_range(row, patient)
        if threshold is None:
            out[key]["not_assessed"].append(
                {"key": row.key, "reason": f"{note.split(':')[0]}: this row needs the patient's "
                                           f"{' and '.join(sorted(row.needs))}; the adult rows apply"})
            continue
        value = float(value)
        mean, sd = (variant.mean, variant.sd) if variant is not None else (row.mean, row.sd)
        z = None if mean is None or not sd else round((value - mean) / sd, 2)
        label = _pair_text(row, key, measurements, value) if row.pair else \
            f"{row.label}{_uncertain_text(organ) if uncertain else ''} {_format(value, row.unit)}"
        text = f"{label}; {reference_text}" + (f"; {note}" if note else "") + (f"; z = {z:+.1f}" if z is not None
                                                                              else "")
        reference = row.to_dict()
        if variant is not None:
            reference.update(threshold=threshold, range=reference_text, source=variant.source,
                             population=variant.population, basis=variant.basis, mean=mean, sd=sd,
                             z_source=variant.source if sd else None)
        out[key]["findings"].append({
            "key": row.key, "abnormal": row.abnormal(value, threshold), "value": round(value, 2), "unit": row.unit,
            "measurement": row.measurement.replace("abdominal_", "uncertain_", 1) if uncertain else row.measurement,
            "text": text, "reference": reference, "threshold": threshold, "patient_range": note or "adult range",
            "section_uncertain": uncertain, "z": z})
    return out


def abnormal_findings(findings: Mapping[str, dict], organ: str) -> list[dict]:
    """The abnormal findings of one organ (empty when none or the organ is absent)."""
    return [f for f in findings.get(organ, {}).get("findings", []) if f["abnormal"]]
