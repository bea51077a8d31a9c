"""A DICOM Structured Report of the measurements and findings: a TID 1500 Measurement Report.

``medsora score --dicom-sr`` (DICOM series input) writes ``PREFIX_sr.dcm``, a
Comprehensive 3D SR built with highdicom that references the CT series and
the segments of ``PREFIX_seg.dcm`` (the DICOM SEG written with it):

- one volumetric measurement group (TID 1411) per scored organ, tracking id
  ``MedSORA <organ key>``, referencing its segment, finding site the organ's
  SNOMED CT code; its numeric measurements (:data:`MEASUREMENTS`: name code,
  UCUM unit, and for HU the derivation mean or median; the aorta's diameters
  per section with the section as finding site), each value as the JSON has it;
- each abnormal finding of the organ as a qualitative evaluation in that group:
  the row (code in the private scheme ``99MEDSORA``, meaning the row's label)
  evaluated ``Abnormal`` (SCT 263654008), with a ``Comment`` (DCM 121106) text
  item holding the finding's text (value, reference range, range for the
  patient, z-score);
- one group without a region (TID 1501), tracking id ``MedSORA contrast
  phase``: the contrast phase (DCM 109058 "Contrast Phase", value a
  ``99MEDSORA`` code) and the rule's confidence (no units).

Codes without a standard code here (thickness, the phases, the rows) use the
private coding scheme ``99MEDSORA``; their meanings say what they are.
"""
from __future__ import annotations

from pathlib import Path

from . import __version__, organs
from .files import atomic_target
from .reference_ranges import REFERENCE_RANGES

SCHEME = "99MEDSORA"
#: (measurement key, name (scheme, code, meaning), UCUM unit (code, meaning), derivation or None,
#: finding site (SCT code, meaning) or None): the numbers of an organ written to the SR, when measured.
_MM, _ML, _HU = ("mm", "millimeter"), ("ml", "milliliter"), ("[hnsf'U]", "Hounsfield unit")
_VOLUME = ("SCT", "118565006", "Volume")
_LENGTH = ("SCT", "410668003", "Length")
_DIAMETER = ("SCT", "81827009", "Diameter")
_LONG, _SHORT = ("SCT", "103339001", "Long axis"), ("SCT", "103340004", "Short axis")
_HU_NAME = ("DCM", "112031", "Attenuation Coefficient")
_MEAN, _MEDIAN = ("SCT", "373098007", "Mean"), ("SCT", "373099004", "Median")
_ABDOMINAL, _THORACIC = ("7832008", "Abdominal aorta"), ("113262008", "Thoracic aorta")
MEASUREMENTS: tuple = (
    ("volume_ml", _VOLUME, _ML, None, None),
    ("length_mm", (SCHEME, "CCLEN", "Craniocaudal extent"), _MM, None, None),
    ("max_diameter_mm", (SCHEME, "MAXDIAM3D", "Largest 3D diameter"), _MM, None, None),
    ("thickness_mm", (SCHEME, "THICK", "Diameter of the largest inscribed ball"), _MM, None, None),
    ("mean_hu", _HU_NAME, _HU, _MEAN, None),
    ("median_hu", _HU_NAME, _HU, _MEDIAN, None),
    ("perpendicular_diameter_mm", _SHORT, _MM, None, None),
    ("major_axis_diameter_mm", _LONG, _MM, None, None),
    ("median_perpendicular_diameter_mm", _SHORT, _MM, _MEDIAN, None),
    ("abdominal_perpendicular_diameter_mm", _SHORT, _MM, None, _ABDOMINAL),
    ("abdominal_major_axis_diameter_mm", _LONG, _MM, None, _ABDOMINAL),
    ("thoracic_perpendicular_diameter_mm", _SHORT, _MM, None, _THORACIC),
    ("thoracic_major_axis_diameter_mm", _LONG, _MM, None, _THORACIC),
    ("uncertain_major_axis_diameter_mm", (SCHEME, "AOLONGUNC", "Aortic long axis, section uncertain"), _MM, None,
     None),
    ("portal_median_perpendicular_diameter_mm", (SCHEME, "PVSHORT", "Portal vein short axis"), _MM, _MEDIAN, None),
)
PHASE_CODES = {"non-contrast": "PHNC", "arterial": "PHART", "portal venous": "PHPV", "delayed": "PHDEL",
               "unknown": "PHUNK"}
_ROW_CODE = {row.key: f"ROW{n:03d}" for n, row in enumerate(REFERENCE_RANGES, 1)}


def _code(triple):
    import highdicom as hd

    scheme, value, meaning = triple
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _unit(pair):
    import highdicom as hd

    return hd.sr.CodedConcept(value=pair[0], scheme_designator="UCUM", meaning=pair[1])


def row_code(key: str):
    """The ``99MEDSORA`` code of a reference-range row (its position in the table)."""
    row = next(r for r in REFERENCE_RANGES if r.key == key)
    return _code((SCHEME, _ROW_CODE[key], row.label[:64]))


def _organ_group(o, segment_number: int, seg):
    import highdicom as hd

    organ = organs.ORGANS[o.key]
    site = hd.sr.FindingSite(anatomic_location=_code(("SCT", organ.snomed_type[1], organ.snomed_type[2])))
    measurements = []
    for key, name, unit, derivation, where in MEASUREMENTS:
        value = o.measurements.get(key)
        if value is None or isinstance(value, (list, dict, bool, str)):
            continue
        sites = [hd.sr.FindingSite(anatomic_location=_code(("SCT", *where)))] if where else None
        measurements.append(hd.sr.Measurement(name=_code(name), value=float(value), unit=_unit(unit),
                                              derivation=_code(derivation) if derivation else None,
                                              finding_sites=sites))
    abnormal = [f for f in o.findings if f.get("abnormal")]
    evaluations = [hd.sr.QualitativeEvaluation(name=row_code(f["key"]), value=_code(("SCT", "263654008", "Abnormal")))
                   for f in abnormal]
    group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=f"MedSORA {o.key}"),
        referenced_segment=hd.sr.ReferencedSegment.from_segmentation(seg, segment_number),
        finding_type=_code(("SCT", organ.snomed_type[1], organ.snomed_type[2])),
        finding_sites=[site], measurements=measurements, qualitative_evaluations=evaluations)
    content = group[0].ContentSequence
    for f in abnormal:  # the finding's text after its evaluation
        content.append(hd.sr.TextContentItem(name=_code(("DCM", "121106", "Comment")), value=f["text"][:1024],
                                             relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
    return group


def _phase_group(phase: dict):
    import highdicom as hd

    name = phase.get("phase", "unknown")
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier="MedSORA contrast phase"),
        measurements=[hd.sr.Measurement(name=_code((SCHEME, "PHCONF", "Contrast phase confidence")),
                                        value=float(phase.get("confidence", 0.0)), unit=_unit(("1", "no units")))],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            name=_code(("DCM", "109058", "Contrast Phase")),
            value=_code((SCHEME, PHASE_CODES.get(name, "PHUNK"), name)))])


def build_measurement_report(result, ct_datasets, seg):
    """The Comprehensive 3D SR (module doc) of one scored symptom; ``seg`` is the DICOM SEG whose segment
    ``n`` is ``result.organs[n - 1]`` (as :func:`MedSORALib.outputs.write_dicom_seg` writes them)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="MedSORA", manufacturer_name="MedSORA", model_name=f"MedSORA {__version__}"))
    groups = [_organ_group(o, n, seg) for n, o in enumerate(result.organs, 1)]
    groups.append(_phase_group(result.contrast_phase or {}))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure, imaging_measurements=groups)
    return hd.sr.Comprehensive3DSR(
        evidence=[*ct_datasets, seg], content=report[0], series_instance_uid=hd.UID(), series_number=902,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="MedSORA",
        series_description=f"MedSORA report: {result.symptom}"[:64])


def write_dicom_sr(path: Path, result, ct_datasets, seg) -> Path:
    """Write :func:`build_measurement_report` to ``path`` (atomically)."""
    sr = build_measurement_report(result, ct_datasets, seg)
    with atomic_target(path) as tmp:
        sr.save_as(str(tmp))
    return path
