"""The reference-range table: thresholds, the measure each applies to, their sources and populations.

:data:`REFERENCE_RANGES` is the one table of thresholds MedSORA uses
(:mod:`MedSORALib.findings` applies it). Each row names the organ, the
measurement (:mod:`MedSORALib.measurements`, :mod:`MedSORALib.vessels`), the
threshold, the measure its source uses, the source (author, title, year), the
population it was measured in, and how the threshold follows from the source
(``basis``: stated by the source, or a MedSORA choice derived from it).

Ranges for the patient: a row may hold :class:`Variant` s for a sex and an age
band, each with its own threshold and source. The first variant matching the
patient is used; a patient whose sex or age the row needs is unknown gets the
row's adult threshold, and the finding says so (a row without an adult
threshold is then not assessed). Where the source publishes a mean and SD, the
finding carries ``z``, the z-score against that cohort. ``patient_note`` says
how the cited sources find the measure to depend on age and sex, including
when they find it does not.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """A threshold for part of the population: ``sex`` (``"F"``, ``"M"`` or None for either) and an
    age band ``[age_min, age_max)`` in years (None: open); ``mean``/``sd``: the cohort's, for a z-score."""

    threshold: float
    reference_text: str
    source: str
    population: str
    basis: str
    sex: str | None = None
    age_min: float | None = None
    age_max: float | None = None
    mean: float | None = None
    sd: float | None = None

    def matches(self, age: float | None, sex: str | None) -> bool:
        if self.sex is not None and sex != self.sex:
            return False
        if self.age_min is not None and (age is None or age < self.age_min):
            return False
        if self.age_max is not None and (age is None or age >= self.age_max):
            return False
        return True

    @property
    def group(self) -> str:
        """The part of the population in words: "women", "men aged 20-60 years", ..."""
        who = {"F": "women", "M": "men", None: "adults"}[self.sex]
        if self.age_min is not None or self.age_max is not None:
            lo = "" if self.age_min is None else f"{self.age_min:g}"
            hi = "" if self.age_max is None else f"{self.age_max:g}"
            who += f" aged {lo}-{hi} years" if lo and hi else (f" aged {lo} years or more" if lo else
                                                              f" under {hi} years")
        return who


@dataclass(frozen=True)
class ReferenceRange:
    """One row of the table (module doc).

    ``organ`` is a structure key (for a row of a pair, ``pair`` names both and the finding sits on
    the smaller organ); ``measurement`` a key of its measurements or of the values
    :mod:`MedSORALib.findings` derives; ``comparison`` is ``">"``, ``">="``, ``"<"`` or ``"<="``: the
    measurement is abnormal when ``value comparison threshold`` holds. ``threshold`` None: only
    the variants give one. ``measure`` says what the source measured, so that the row is applied
    to that measure.
    """

    key: str
    organ: str
    measurement: str
    comparison: str
    threshold: float | None
    unit: str
    label: str
    reference_text: str
    kind: str  # "size", "calibre", "attenuation"
    source: str
    population: str
    basis: str
    measure: str = ""
    phase: str | None = None
    below: float | None = None  # the row covers values under this bound only (a grade below a stricter row)
    mean: float | None = None
    sd: float | None = None
    z_source: str | None = None  # the cohort of mean/sd when it is not ``source``
    variants: tuple[Variant, ...] = ()
    patient_note: str = ""
    pair: tuple[str, str] | None = None

    def abnormal(self, value: float, threshold: float | None = None) -> bool:
        limit = self.threshold if threshold is None else threshold
        hit = {">": value > limit, ">=": value >= limit, "<": value < limit, "<=": value <= limit}[self.comparison]
        return bool(hit and (self.below is None or value < self.below))

    @property
    def needs(self) -> set[str]:
        """The patient attributes the variants depend on (``"sex"``, ``"age"``)."""
        out = set()
        for v in self.variants:
            if v.sex is not None:
                out.add("sex")
            if v.age_min is not None or v.age_max is not None:
                out.add("age")
        return out

    def to_dict(self) -> dict:
        return {"measurement": self.measurement, "comparison": self.comparison, "threshold": self.threshold,
                "unit": self.unit, "range": self.reference_text, "source": self.source,
                "population": self.population, "basis": self.basis, "measure": self.measure,
                "phase": self.phase, "below": self.below, "mean": self.mean, "sd": self.sd,
                "z_source": self.z_source or (self.source if self.sd else None),
                "patient_note": self.patient_note,
                "variants": [{"group": v.group, "sex": v.sex, "age_min": v.age_min, "age_max": v.age_max,
                              "threshold": v.threshold, "range": v.reference_text, "source": v.source,
                              "population": v.population, "basis": v.basis, "mean": v.mean, "sd": v.sd}
                             for v in self.variants]}


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
_ROGERS = ("Rogers IS et al. Distribution, determinants, and normal reference values of thoracic and abdominal "
           "aortic diameters by computed tomography (from the Framingham Heart Study). Am J Cardiol "
           "2013;111:1510-1516")
_WEINREB = ("Weinreb J, Kumari S, Phillips G, Pochaczevsky R. Portal vein measurements by real-time sonography. "
            "AJR 1982;139:497-499")
_RUDSKI = ("Rudski LG et al. Guidelines for the echocardiographic assessment of the right heart in adults. "
           "J Am Soc Echocardiogr 2010;23:685-713")
_EMAMIAN = ("Emamian SA et al. Kidney dimensions at sonography: correlation with age, sex, and habitus in 665 adult "
            "volunteers. AJR 1993;160:83-86")
_SU = ("Su HA et al. Reference ranges for ultrasonographic renal dimensions as functions of age and body indices: "
       "a retrospective observational study in Taiwan. PLoS One 2019;14:e0224785")
_RUMACK = "Rumack CM, Levine D (eds). Diagnostic Ultrasound, 5th ed. Elsevier 2018 (gallbladder chapter)"
_JOHN = ("John R et al. Normal adrenal gland thickness on computerized tomography in an Asian Indian adult "
         "population. Indian J Radiol Imaging 2018;28:465-469")
_KIPP = ("Kipp JP et al. Normal pancreatic volume in adults is influenced by visceral fat, vertebral body width "
         "and age. Abdom Radiol 2019;44:958-966")
_SAISHO = ("Saisho Y et al. Pancreas volumes in humans from birth to age one hundred taking into account sex, "
           "obesity, and presence of type-2 diabetes. Clin Anat 2007;20:933-942")

#: Mean diameters (mm) of the infrarenal and descending thoracic aorta by sex, CT (Rogers 2013).
ROGERS_MEAN_MM = {"abdominal": {"M": 19.3, "F": 16.7}, "thoracic": {"M": 25.8, "F": 23.1}}
_AORTA_MEASURE = "maximal diameter perpendicular to the centreline (major axis of the section)"
_ROGERS_POP = "3,431 Framingham Heart Study participants, CT; sex-specific mean diameters"


def _relative_aneurysm(section: str) -> tuple[Variant, ...]:
    """Aneurysm at 1.5 x the sex-specific mean diameter (Johnston 1991's definition, Rogers 2013's means)."""
    site = {"abdominal": "infrarenal", "thoracic": "descending thoracic"}[section]
    return tuple(
        Variant(round(1.5 * mean, 2), f"aneurysm at 1.5 x the mean {site} diameter of {who} ({mean} mm): "
                f"{1.5 * mean:.2f} mm or more", _ROGERS, _ROGERS_POP,
                "Johnston 1991 definition (>= 1.5 x the expected normal diameter) with the mean for the "
                "patient's sex from Rogers 2013 as the expected diameter (MedSORA choice)", sex=sex)
        for sex, who, mean in (("M", "men", ROGERS_MEAN_MM[section]["M"]),
                               ("F", "women", ROGERS_MEAN_MM[section]["F"])))


_SEX_AORTA_NOTE = ("aortic diameters are larger in men and grow with age and body surface area (Rogers 2013); "
                   "sex-specific means used, no age-specific figures")
_KIDNEY_NOTE = ("kidney length changes with age and body size (Su 2019); no age-, sex- or body-size-specific "
                "figures are used: the adult range")
_KIDNEY_Z = {"kidney_right": (106.2, 6.9), "kidney_left": (107.6, 7.0)}  # Su 2019, mm


def _kidney_rows() -> tuple[ReferenceRange, ...]:
    rows = []
    for kind, comparison, threshold, words in (("small", "<", 90.0, "small below 90 mm"),
                                               ("large", ">", 130.0, "large above 130 mm")):
        for key, side in (("kidney_right", "right"), ("kidney_left", "left")):
            mean, sd = _KIDNEY_Z[key]
            rows.append(ReferenceRange(
                f"{kind}_kidney_{side}", key, "max_diameter_mm", comparison, threshold, "mm", f"{side} kidney length",
                f"adult normal about 100-120 mm; {words}", "size", _EMAMIAN,
                "665 adult volunteers, ultrasound (mean length about 11 cm)",
                f"MedSORA choice: about 2 cm {'below' if kind == 'small' else 'above'} the cited mean length",
                measure="pole-to-pole length (largest 3D diameter)", mean=mean, sd=sd,
                z_source=_SU + " (3,707 healthy adults, ultrasound)", patient_note=_KIDNEY_NOTE))
    return tuple(rows)


#: The reference-range table (module doc). Thresholds in the row's unit.
REFERENCE_RANGES: tuple[ReferenceRange, ...] = (
    ReferenceRange("splenomegaly_volume", "spleen", "volume_ml", ">", 314.5, "ml", "spleen volume",
                   "adult normal range 107-314.5 ml", "size", _PRASSOPOULOS,
                   "140 adults with a normal spleen, CT volumetry", "upper end of the normal range (stated)",
                   measure="volume of the segmented spleen",
                   patient_note="splenic volume did not vary with age, sex, height, weight or body mass index "
                                "in the cited cohort: one adult range for every patient"),
    ReferenceRange("splenomegaly_length", "spleen", "length_mm", ">", 130.0, "mm", "spleen craniocaudal length",
                   "splenomegaly above 130 mm vertical length", "size", _LUGANO,
                   "adults with lymphoma (staging criterion)", "threshold stated (vertical length > 13 cm)",
                   measure="craniocaudal extent"),
    ReferenceRange("hepatomegaly", "liver", "length_mm", ">", 155.0, "mm", "liver craniocaudal length",
                   "hepatomegaly above 155 mm", "size", _GOSINK,
                   "adults, ultrasound midclavicular length",
                   "threshold stated (> 15.5 cm); applied to the whole-liver craniocaudal extent, which can exceed "
                   "the midclavicular length", measure="craniocaudal extent",
                   patient_note="liver volume scales with body surface area (Vauthey 2002); MedSORA has no height or "
                                "weight, so no body-size range is used"),
    ReferenceRange("steatosis_attenuation", "liver", "median_hu", "<=", 40.0, "HU", "unenhanced liver attenuation",
                   "at or below 40 HU: moderate-to-severe steatosis range", "attenuation", _BOYCE,
                   "asymptomatic adults, unenhanced low-dose CT", "threshold stated (<= 40 HU)",
                   measure="median HU of the eroded liver", phase="non-contrast"),
    ReferenceRange("steatosis_liver_minus_spleen", "liver", "liver_minus_spleen_hu", "<", -10.0, "HU",
                   "unenhanced liver minus spleen attenuation", "below -10 HU: steatosis range", "attenuation",
                   _PARK, "living liver donors, unenhanced CT against biopsy",
                   "threshold stated (liver - spleen < -10 HU for >= 30 % macrovesicular steatosis)",
                   measure="median HU of the eroded liver minus that of the spleen", phase="non-contrast"),
    ReferenceRange("abdominal_aortic_aneurysm", "aorta", "abdominal_major_axis_diameter_mm", ">=", 30.0, "mm",
                   "abdominal aortic diameter", "aneurysm at 30 mm or more", "calibre", _SVS,
                   "adults; diameter perpendicular to the centreline", "threshold stated (>= 3.0 cm)",
                   measure=_AORTA_MEASURE, patient_note=_SEX_AORTA_NOTE),
    ReferenceRange("abdominal_aortic_dilatation", "aorta", "abdominal_major_axis_diameter_mm", ">=", 25.0, "mm",
                   "abdominal aortic diameter", "sub-aneurysmal dilatation 25-29 mm", "calibre", _ESVS,
                   "adults", "threshold stated (25-29 mm sub-aneurysmal dilatation)", measure=_AORTA_MEASURE,
                   below=30.0),
    ReferenceRange("abdominal_aortic_aneurysm_for_sex", "aorta", "abdominal_major_axis_diameter_mm", ">=", None,
                   "mm", "abdominal aortic diameter", "aneurysm at 1.5 x the mean diameter for the patient's sex",
                   "calibre", _JOHNSTON, "adults (aneurysm: >= 1.5 x the expected normal diameter)",
                   "MedSORA choice: Johnston 1991 definition with the sex-specific mean of Rogers 2013",
                   measure=_AORTA_MEASURE, variants=_relative_aneurysm("abdominal"),
                   patient_note=_SEX_AORTA_NOTE),
    ReferenceRange("thoracic_aortic_aneurysm", "aorta", "thoracic_major_axis_diameter_mm", ">=", 45.0, "mm",
                   "descending thoracic aortic diameter", "aneurysm at 45 mm or more (1.5 x 30 mm)", "calibre",
                   _JOHNSTON, "adults (definition of aneurysm: >= 1.5 x the expected normal diameter)",
                   "MedSORA choice: 1.5 x the 30 mm upper normal mid-descending diameter of Hiratzka 2010",
                   measure=_AORTA_MEASURE, patient_note=_SEX_AORTA_NOTE),
    ReferenceRange("thoracic_aortic_dilatation", "aorta", "thoracic_major_axis_diameter_mm", ">", 30.0, "mm",
                   "descending thoracic aortic diameter", "adult normal up to about 30 mm", "calibre", _HIRATZKA,
                   "adults, CT (normal mid-descending thoracic aorta 2.39-2.98 cm)",
                   "MedSORA choice: the upper end of the stated normal range, rounded", measure=_AORTA_MEASURE,
                   below=45.0),
    ReferenceRange("thoracic_aortic_aneurysm_for_sex", "aorta", "thoracic_major_axis_diameter_mm", ">=", None,
                   "mm", "descending thoracic aortic diameter",
                   "aneurysm at 1.5 x the mean diameter for the patient's sex", "calibre", _JOHNSTON,
                   "adults (aneurysm: >= 1.5 x the expected normal diameter)",
                   "MedSORA choice: Johnston 1991 definition with the sex-specific mean of Rogers 2013",
                   measure=_AORTA_MEASURE, variants=_relative_aneurysm("thoracic"),
                   patient_note=_SEX_AORTA_NOTE),
    ReferenceRange("dilated_portal_vein", "portal_vein_and_splenic_vein", "portal_median_perpendicular_diameter_mm",
                   ">", 13.0, "mm", "median portal vein diameter along its course", "adult upper reference 13 mm",
                   "calibre", _WEINREB, "adults, ultrasound (portal hypertension threshold)",
                   "threshold stated (> 13 mm)",
                   measure="short axis perpendicular to the course (the sonographic calibre), median over the cuts"),
    ReferenceRange("dilated_ivc", "inferior_vena_cava", "median_perpendicular_diameter_mm", ">", 21.0, "mm",
                   "median inferior vena cava diameter along its course", "adult upper reference 21 mm", "calibre",
                   _RUDSKI, "adults, echocardiography (IVC near the right atrium)",
                   "threshold stated (<= 2.1 cm normal); applied to the median short-axis diameter on CT",
                   measure="short axis perpendicular to the course (the echocardiographic calibre), median"),
    *_kidney_rows(),
    ReferenceRange("kidney_asymmetry", "kidney_right", "kidney_length_difference_mm", ">", 20.0, "mm",
                   "kidney length difference", "difference above 20 mm", "size", _EMAMIAN,
                   "665 adult volunteers, ultrasound",
                   "MedSORA choice: 20 mm, twice the difference usually seen between normal kidneys",
                   measure="difference of the pole-to-pole lengths; the finding sits on the shorter kidney",
                   pair=("kidney_right", "kidney_left")),
    ReferenceRange("gallbladder_distension", "gallbladder", "perpendicular_diameter_mm", ">", 40.0, "mm",
                   "gallbladder transverse diameter", "distension above 40 mm", "size", _RUMACK,
                   "adults, ultrasound", "threshold stated (transverse diameter > 4 cm)",
                   measure="short axis across the long axis (the transverse diameter)"),
    ReferenceRange("adrenal_thickening_right", "adrenal_gland_right", "thickness_mm", ">", 10.8, "mm",
                   "right adrenal thickness", "adult body 7.2 +/- 1.8 mm; above 10.8 mm", "size", _JOHN,
                   "586 adults, CT", "MedSORA choice: right body mean + 2 SD (7.2 + 2 x 1.8 mm); an adrenal "
                   "mass is 10 mm or more (Mayo-Smith 2017)", measure="diameter of the largest inscribed ball",
                   mean=7.2, sd=1.8),
    ReferenceRange("adrenal_thickening_left", "adrenal_gland_left", "thickness_mm", ">", 12.6, "mm",
                   "left adrenal thickness", "adult body 8.8 +/- 1.9 mm; above 12.6 mm", "size", _JOHN,
                   "586 adults, CT", "MedSORA choice: left body mean + 2 SD (8.8 + 2 x 1.9 mm); an adrenal "
                   "mass is 10 mm or more (Mayo-Smith 2017)", measure="diameter of the largest inscribed ball",
                   mean=8.8, sd=1.9),
    ReferenceRange("pancreatic_atrophy", "pancreas", "volume_ml", "<", 34.5, "ml", "pancreas volume",
                   "adult 77.9 +/- 21.7 ml; below 34.5 ml (mean - 2 SD)", "size", _KIPP,
                   "204 adults aged 20-80 without pancreatic disease, CT volumetry",
                   "MedSORA choice: mean - 2 SD of the cited cohort", measure="volume of the segmented pancreas",
                   mean=77.9, sd=21.7,
                   variants=(Variant(20.8, "adults aged 20-60: 72.4 +/- 25.8 ml; below 20.8 ml (mean - 2 SD)",
                                     _SAISHO, "1,886 adults with no history of pancreatic disease (165 with type-2 "
                                     "diabetes), CT (plateau from 20 to 60 years, decline after)",
                                     "MedSORA choice: mean - 2 SD of the cited age band", age_min=20, age_max=60,
                                     mean=72.4, sd=25.8),),
                   patient_note="pancreas volume plateaus from 20 to 60 years and declines after (Saisho 2007); "
                                "sex has no independent effect (Kipp 2019)"),
)

#: The section of the aorta each aortic row belongs to; an aortic cut of uncertain section is assessed
#: against the abdominal rows, whose thresholds are the stricter (:func:`stricter_section_holds`).
AORTIC_SECTION_OF_ROW = {r.key: r.measurement.split("_", 1)[0] for r in REFERENCE_RANGES if r.organ == "aorta"}


def reference_table() -> list[dict]:
    """The reference-range table as rows of plain values (docs/findings.md, JSON, Slicer)."""
    return [{"key": r.key, "organ": r.organ, **r.to_dict(), "label": r.label, "kind": r.kind}
            for r in REFERENCE_RANGES]


def stricter_section_holds() -> bool:
    """True when every abdominal aortic threshold is at most the thoracic one of the same grade, for each
    sex: the premise of assessing an uncertain section against the abdominal rows."""
    rows = {r.key: r for r in REFERENCE_RANGES}
    for grade in ("aortic_aneurysm", "aortic_dilatation", "aortic_aneurysm_for_sex"):
        abdominal, thoracic = rows[f"abdominal_{grade}"], rows[f"thoracic_{grade}"]
        if abdominal.threshold is not None and abdominal.threshold > thoracic.threshold:
            return False
        for a, t in zip(abdominal.variants, thoracic.variants):
            if a.sex != t.sex or a.threshold > t.threshold:
                return False
    return True
