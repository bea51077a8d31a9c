"""Contrast phase and findings: organ measurements compared with published adult reference ranges.

:data:`REFERENCE_RANGES` is the one table of thresholds MedSORA uses; each row
names the measurement (:mod:`MedSORALib.measurements`), the threshold, the
source, the population it was measured in, and how the threshold follows from
the source (``basis``: stated by the source, or a MedSORA choice derived from
the source's normal range). A finding states the measurement and the range,
never a diagnosis: "spleen volume 612 ml; adult upper reference 314.5 ml".

Rules applied to every row:

- size rows (``kind="size"``) give no finding for a partially imaged organ (it
  touches the first or last slice); the row is listed under ``not_assessed``;
- vessel calibre rows (``kind="calibre"``) are assessed on the imaged part of
  the vessel, since a vessel always runs beyond the scan;
- attenuation rows (``phase="non-contrast"``) are assessed only when
  :func:`contrast_phase` estimates a non-contrast scan with confidence at least
  :data:`MIN_PHASE_CONFIDENCE`; otherwise they are listed under ``not_assessed``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

#: Least confidence in a non-contrast phase for attenuation findings (liver fat) to be reported.
MIN_PHASE_CONFIDENCE = 0.7
PHASES = ("non-contrast", "arterial", "portal venous", "delayed")


@dataclass(frozen=True)
class ReferenceRange:
    """One row of the reference-range table (module doc).

    ``organ`` is a structure key; ``measurement`` a key of its measurements (or of
    ``derived`` values computed by :func:`evaluate_findings`); ``comparison`` is
    ``">"``, ``">="``, ``"<"`` or ``"<="``: the measurement is abnormal when
    ``value comparison threshold`` holds.
    """

    key: str
    organ: str
    measurement: str
    comparison: str
    threshold: float
    unit: str
    label: str
    reference_text: str
    kind: str  # "size", "calibre", "attenuation"
    source: str
    population: str
    basis: str
    phase: str | None = None
    below: float | None = None  # the row covers values under this bound only (a grade below a stricter row)

    def abnormal(self, value: float) -> bool:
        hit = {">": value > self.threshold, ">=": value >= self.threshold, "<": value < self.threshold,
               "<=": value <= self.threshold}[self.comparison]
        return bool(hit and (self.below is None or value < self.below))

    def to_dict(self) -> dict:
        return {"measurement": self.measurement, "comparison": self.comparison, "threshold": self.threshold,
                "unit": self.unit, "range": self.reference_text, "source": self.source,
                "population": self.population, "basis": self.basis, "phase": self.phase, "below": self.below}


_LUGANO = ("Cheson BD et al. Recommendations for initial evaluation, staging, and response assessment of Hodgkin "
           "and non-Hodgkin lymphoma: the Lugano classification. J Clin Oncol 2014;32:3059-3068")
_PRASSOPOULOS = ("Prassopoulos P et al. Determination of normal splenic volume on computed tomography in relation "
                 "to age, gender and body habitus. Eur Radiol 1997;7:246-248")
_GOSINK = "Gosink BB, Leymaster CE. Ultrasonic determination of hepatomegaly. J Clin Ultrasound 1981;9:37-41"
_BOYCE = ("Boyce CJ et al. Hepatic steatosis (fatty liver disease) in asymptomatic adults identified by unenhanced "
          "low-dose CT. AJR 2010;194:623-628")
_PARK = ("Park SH et al. Macrovesicular hepatic steatosis in living liver donors: use of CT for quantitative and "
         "qualitative assessment. Radiology 2006;239:105-112")
_SVS = ("Chaikof EL et al. The Society for Vascular Surgery practice guidelines on the care of patients with an "
        "abdominal aortic aneurysm. J Vasc Surg 2018;67:2-77")
_ESVS = ("Wanhainen A et al. European Society for Vascular Surgery (ESVS) 2019 clinical practice guidelines on the "
         "management of abdominal aorto-iliac artery aneurysms. Eur J Vasc Endovasc Surg 2019;57:8-93")
_HIRATZKA = ("Hiratzka LF et al. 2010 ACCF/AHA/AATS/ACR/ASA/SCA/SCAI/SIR/STS/SVM guidelines for the diagnosis and "
             "management of patients with thoracic aortic disease. Circulation 2010;121:e266-e369")
_JOHNSTON = ("Johnston KW et al. Suggested standards for reporting on arterial aneurysms. J Vasc Surg "
             "1991;13:452-458")
_WEINREB = ("Weinreb J, Kumari S, Phillips G, Pochaczevsky R. Portal vein measurements by real-time sonography. "
            "AJR 1982;139:497-499")
_RUDSKI = ("Rudski LG et al. Guidelines for the echocardiographic assessment of the right heart in adults. "
           "J Am Soc Echocardiogr 2010;23:685-713")
_EMAMIAN = ("Emamian SA et al. Kidney dimensions at sonography: correlation with age, sex, and habitus in 665 adult "
            "volunteers. AJR 1993;160:83-86")
_RUMACK = "Rumack CM, Levine D (eds). Diagnostic Ultrasound, 5th ed. Elsevier 2018 (gallbladder chapter)"
_JOHN = ("John R et al. Normal adrenal gland thickness on computerized tomography in an Asian Indian adult "
         "population. Indian J Radiol Imaging 2018;28:465-469")
_MAYO_SMITH = ("Mayo-Smith WW et al. Management of incidental adrenal masses: a white paper of the ACR Incidental "
               "Findings Committee. J Am Coll Radiol 2017;14:1038-1044")
_KIPP = ("Kipp JP et al. Normal pancreatic volume in adults is influenced by visceral fat, vertebral body width "
         "and age. Abdom Radiol 2019;44:958-966")

#: The reference-range table (module doc). Thresholds in the row's unit.
REFERENCE_RANGES: tuple[ReferenceRange, ...] = (
    ReferenceRange("splenomegaly_volume", "spleen", "volume_ml", ">", 314.5, "ml", "spleen volume",
                   "adult normal range 107-314.5 ml", "size", _PRASSOPOULOS,
                   "140 adults with a normal spleen, CT volumetry", "upper end of the normal range (stated)"),
    ReferenceRange("splenomegaly_length", "spleen", "length_mm", ">", 130.0, "mm", "spleen craniocaudal length",
                   "splenomegaly above 130 mm vertical length", "size", _LUGANO,
                   "adults with lymphoma (staging criterion)", "threshold stated (vertical length > 13 cm)"),
    ReferenceRange("hepatomegaly", "liver", "length_mm", ">", 155.0, "mm", "liver craniocaudal length",
                   "hepatomegaly above 155 mm", "size", _GOSINK,
                   "adults, ultrasound midclavicular length",
                   "threshold stated (> 15.5 cm); applied to the whole-liver craniocaudal extent, which can exceed "
                   "the midclavicular length"),
    ReferenceRange("steatosis_attenuation", "liver", "median_hu", "<=", 40.0, "HU", "unenhanced liver attenuation",
                   "at or below 40 HU: moderate-to-severe steatosis range", "attenuation", _BOYCE,
                   "asymptomatic adults, unenhanced low-dose CT", "threshold stated (<= 40 HU)",
                   phase="non-contrast"),
    ReferenceRange("steatosis_liver_minus_spleen", "liver", "liver_minus_spleen_hu", "<", -10.0, "HU",
                   "unenhanced liver minus spleen attenuation", "below -10 HU: steatosis range", "attenuation",
                   _PARK, "living liver donors, unenhanced CT against biopsy",
                   "threshold stated (liver - spleen < -10 HU for >= 30 % macrovesicular steatosis)",
                   phase="non-contrast"),
    ReferenceRange("abdominal_aortic_aneurysm", "aorta", "abdominal_perpendicular_diameter_mm", ">=", 30.0, "mm",
                   "abdominal aortic diameter", "aneurysm at 30 mm or more", "calibre", _SVS,
                   "adults; diameter perpendicular to the centreline", "threshold stated (>= 3.0 cm)"),
    ReferenceRange("abdominal_aortic_dilatation", "aorta", "abdominal_perpendicular_diameter_mm", ">=", 25.0, "mm",
                   "abdominal aortic diameter", "sub-aneurysmal dilatation 25-29 mm", "calibre", _ESVS,
                   "adults", "threshold stated (25-29 mm sub-aneurysmal dilatation)", below=30.0),
    ReferenceRange("thoracic_aortic_aneurysm", "aorta", "thoracic_perpendicular_diameter_mm", ">=", 45.0, "mm",
                   "descending thoracic aortic diameter", "aneurysm at 45 mm or more (1.5 x 30 mm)", "calibre",
                   _JOHNSTON, "adults (definition of aneurysm: >= 1.5 x the expected normal diameter)",
                   "MedSORA choice: 1.5 x the 30 mm upper normal mid-descending diameter of Hiratzka 2010"),
    ReferenceRange("thoracic_aortic_dilatation", "aorta", "thoracic_perpendicular_diameter_mm", ">", 30.0, "mm",
                   "descending thoracic aortic diameter", "adult normal up to about 30 mm", "calibre", _HIRATZKA,
                   "adults, CT (normal mid-descending thoracic aorta 2.39-2.98 cm)",
                   "MedSORA choice: the upper end of the stated normal range, rounded", below=45.0),
    ReferenceRange("dilated_portal_vein", "portal_vein_and_splenic_vein", "portal_median_perpendicular_diameter_mm",
                   ">", 13.0, "mm", "median portal vein diameter along its course", "adult upper reference 13 mm", "calibre", _WEINREB,
                   "adults, ultrasound (portal hypertension threshold)", "threshold stated (> 13 mm)"),
    ReferenceRange("dilated_ivc", "inferior_vena_cava", "median_perpendicular_diameter_mm", ">", 21.0, "mm",
                   "median inferior vena cava diameter along its course", "adult upper reference 21 mm", "calibre", _RUDSKI,
                   "adults, echocardiography (IVC near the right atrium)",
                   "threshold stated (<= 2.1 cm normal); applied to the median short-axis diameter on CT"),
    ReferenceRange("small_kidney_right", "kidney_right", "max_diameter_mm", "<", 90.0, "mm", "right kidney length",
                   "adult normal about 100-120 mm; small below 90 mm", "size", _EMAMIAN,
                   "665 adult volunteers, ultrasound (mean length about 11 cm)",
                   "MedSORA choice: about 2 cm below the cited mean length"),
    ReferenceRange("small_kidney_left", "kidney_left", "max_diameter_mm", "<", 90.0, "mm", "left kidney length",
                   "adult normal about 100-120 mm; small below 90 mm", "size", _EMAMIAN,
                   "665 adult volunteers, ultrasound (mean length about 11 cm)",
                   "MedSORA choice: about 2 cm below the cited mean length"),
    ReferenceRange("large_kidney_right", "kidney_right", "max_diameter_mm", ">", 130.0, "mm", "right kidney length",
                   "adult normal about 100-120 mm; large above 130 mm", "size", _EMAMIAN,
                   "665 adult volunteers, ultrasound (mean length about 11 cm)",
                   "MedSORA choice: about 2 cm above the cited mean length"),
    ReferenceRange("large_kidney_left", "kidney_left", "max_diameter_mm", ">", 130.0, "mm", "left kidney length",
                   "adult normal about 100-120 mm; large above 130 mm", "size", _EMAMIAN,
                   "665 adult volunteers, ultrasound (mean length about 11 cm)",
                   "MedSORA choice: about 2 cm above the cited mean length"),
    ReferenceRange("kidney_asymmetry", "kidney_right", "kidney_length_difference_mm", ">", 20.0, "mm",
                   "right-left kidney length difference", "difference above 20 mm", "size", _EMAMIAN,
                   "665 adult volunteers, ultrasound",
                   "MedSORA choice: 20 mm, twice the difference usually seen between normal kidneys"),
    ReferenceRange("gallbladder_distension", "gallbladder", "perpendicular_diameter_mm", ">", 40.0, "mm",
                   "gallbladder transverse diameter", "distension above 40 mm", "size", _RUMACK,
                   "adults, ultrasound", "threshold stated (transverse diameter > 4 cm)"),
    ReferenceRange("adrenal_thickening_right", "adrenal_gland_right", "thickness_mm", ">", 12.6, "mm",
                   "right adrenal thickness", "adult body 7.2 +/- 1.8 mm; above 12.6 mm", "size", _JOHN,
                   "586 adults, CT", "MedSORA choice: left body mean + 2 SD (8.8 + 2 x 1.9 mm); an adrenal "
                   "mass is 10 mm or more (Mayo-Smith 2017)"),
    ReferenceRange("adrenal_thickening_left", "adrenal_gland_left", "thickness_mm", ">", 12.6, "mm",
                   "left adrenal thickness", "adult body 8.8 +/- 1.9 mm; above 12.6 mm", "size", _JOHN,
                   "586 adults, CT", "MedSORA choice: left body mean + 2 SD (8.8 + 2 x 1.9 mm); an adrenal "
                   "mass is 10 mm or more (Mayo-Smith 2017)"),
    ReferenceRange("pancreatic_atrophy", "pancreas", "volume_ml", "<", 34.5, "ml", "pancreas volume",
                   "adult 77.9 +/- 21.7 ml; below 34.5 ml (mean - 2 SD)", "size", _KIPP,
                   "204 adults without pancreatic disease, CT volumetry",
                   "MedSORA choice: mean - 2 SD of the cited cohort"),
)


def reference_table() -> list[dict]:
    """The reference-range table as rows of plain values (docs/measurements.md, JSON, Slicer)."""
    return [{"key": r.key, "organ": r.organ, **r.to_dict(), "label": r.label, "kind": r.kind}
            for r in REFERENCE_RANGES]


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

def _derived(measurements: Mapping[str, dict]) -> dict[str, dict]:
    """Values computed from two organs, attached to the organ of their row."""
    out: dict[str, dict] = {}
    liver, spleen = measurements.get("liver"), measurements.get("spleen")
    if liver and spleen and liver.get("median_hu") is not None and spleen.get("median_hu") is not None:
        out.setdefault("liver", {})["liver_minus_spleen_hu"] = round(liver["median_hu"] - spleen["median_hu"], 1)
    right, left = measurements.get("kidney_right"), measurements.get("kidney_left")
    if right and left:
        out.setdefault("kidney_right", {})["kidney_length_difference_mm"] = round(
            abs(right["max_diameter_mm"] - left["max_diameter_mm"]), 2)
        out["kidney_right"]["_partial"] = bool(right.get("partially_imaged") or left.get("partially_imaged"))
    return out


def _format(value: float, unit: str) -> str:
    return f"{value:.0f} {unit}" if unit == "ml" else f"{value:.1f} {unit}"


def evaluate_findings(measurements: Mapping[str, dict], phase: Mapping | None = None) -> dict[str, dict]:
    """Compare measurements with :data:`REFERENCE_RANGES` (module doc).

    Returns, per organ present, ``{"findings": [...], "not_assessed": [...]}``; a finding is
    ``{key, abnormal, value, unit, measurement, text, reference}``.
    """
    phase = phase or {}
    unenhanced = phase.get("phase") == "non-contrast" and float(phase.get("confidence", 0.0)) >= MIN_PHASE_CONFIDENCE
    derived = _derived(measurements)
    out: dict[str, dict] = {k: {"findings": [], "not_assessed": []} for k in measurements}
    for row in REFERENCE_RANGES:
        organ = measurements.get(row.organ)
        if organ is None:
            continue
        extra = derived.get(row.organ, {})
        value = organ.get(row.measurement, extra.get(row.measurement))
        if value is None:
            out[row.organ]["not_assessed"].append({"key": row.key, "reason": f"no {row.measurement} measured"})
            continue
        partial = extra.get("_partial", False) if row.measurement in extra else organ.get("partially_imaged")
        if row.kind == "size" and partial:
            out[row.organ]["not_assessed"].append(
                {"key": row.key, "reason": "partially imaged: the organ touches the first or last slice"})
            continue
        if row.phase == "non-contrast" and not unenhanced:
            out[row.organ]["not_assessed"].append(
                {"key": row.key, "reason": f"needs an unenhanced scan; phase {phase.get('phase', 'unknown')} "
                                           f"(confidence {float(phase.get('confidence', 0.0)):.2f})"})
            continue
        abnormal = row.abnormal(float(value))
        text = f"{row.label} {_format(float(value), row.unit)}; {row.reference_text}"
        out[row.organ]["findings"].append({
            "key": row.key, "abnormal": bool(abnormal), "value": round(float(value), 2), "unit": row.unit,
            "measurement": row.measurement, "text": text, "reference": row.to_dict()})
    return out


def abnormal_findings(findings: Mapping[str, dict], organ: str) -> list[dict]:
    """The abnormal findings of one organ (empty when none or the organ is absent)."""
    return [f for f in findings.get(organ, {}).get("findings", []) if f["abnormal"]]
