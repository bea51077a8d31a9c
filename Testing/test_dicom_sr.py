"""The DICOM SR (TID 1500) of the measurements and findings, and the patient's age and sex from the header."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import DATA, EXAMPLE_CT, EXAMPLE_DICOM, EXAMPLE_SEG, snapshot

hd = pytest.importorskip("highdicom")
pydicom = pytest.importorskip("pydicom")

EXAMPLE_DICOM_SEG = DATA / "example_ct_dicom_seg.nii.gz"
SYMPTOM = "tearing pain between the shoulder blades"


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    from MedSORALib.cli import main

    out = tmp_path_factory.mktemp("sr") / "case"
    assert main(["score", "--volume", str(EXAMPLE_DICOM), "--segmentation", str(EXAMPLE_DICOM_SEG),
                 "--label-scheme", "totalsegmentator", "--symptom", SYMPTOM, "--output", str(out), "--quiet",
                 "--no-passages", "--dicom-sr", "--age", "64", "--sex", "F"]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    return out, report, hd.sr.srread(f"{out}_sr.dcm"), pydicom.dcmread(f"{out}_seg.dcm")


def _code(item) -> tuple[str, str]:
    return item.scheme_designator, item.value


def test_sr_is_a_tid1500_report_referencing_the_series_and_the_seg(scored):
    out, report, sr, seg = scored
    assert report["files"] == {"segmentation": "case.seg.nrrd", "dicom_seg": "case_seg.dcm",
                               "dicom_sr": "case_sr.dcm"}
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert _code(sr.ConceptNameCodeSequence[0]) == ("126000", "DCM") or \
        sr.ConceptNameCodeSequence[0].CodeValue == "126000"
    evidence = {i.ReferencedSOPInstanceUID for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    ct = {pydicom.dcmread(str(p), stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID
          for p in EXAMPLE_DICOM.iterdir()}
    assert len(ct) == 20 and ct | {seg.SOPInstanceUID} == evidence
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert [g.tracking_identifier.split(" ", 1)[1] for g in groups] == [o["name"] for o in report["organs"]]
    numbers = {s.SegmentNumber: s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence}
    for group in groups:
        ref = group.referenced_segment
        assert ref.referenced_sop_instance_uid == seg.SOPInstanceUID
        (number,) = ref.referenced_segment_numbers
        assert numbers[number] == group.finding_type.value  # the segment is the organ of the group


def test_sr_numbers_equal_the_json(scored):
    from MedSORALib.dicom_sr import MEASUREMENTS

    _, report, sr, _ = scored
    organs = {o["name"]: o for o in report["organs"]}
    compared = 0
    for group in sr.content.get_volumetric_roi_measurement_groups():
        organ = organs[group.tracking_identifier.split(" ", 1)[1]]
        found = {}
        for m in group.get_measurements():
            site = m.finding_sites[0].value.value if m.finding_sites else None
            derivation = m.derivation.value if m.derivation is not None else None
            found[(m.name.value, derivation, site)] = (m.value, m.unit.value)
        expected = {(name[1], derivation[1] if derivation else None, where[0] if where else None):
                    (organ["measurements"][key], unit[0])
                    for key, name, unit, derivation, where in MEASUREMENTS
                    if isinstance(organ["measurements"].get(key), (int, float))}
        assert found == expected, organ["name"]  # the same numbers, to the JSON's last digit
        compared += len(found)
        # Spot checks with the standard codes, independent of the module's table.
        assert found[("118565006", None, None)] == (pytest.approx(organ["measurements"]["volume_ml"]), "ml")
        assert found[("112031", "373099004", None)][0] == pytest.approx(organ["measurements"]["median_hu"])
        assert found[("112031", "373099004", None)][1] == "[hnsf'U]"
        if organ["name"] == "aorta":
            assert found[("103339001", None, "7832008")][0] == pytest.approx(
                organ["measurements"]["abdominal_major_axis_diameter_mm"])
        abnormal = [f for f in organ["findings"] if f["abnormal"]]
        evaluations = group.get_qualitative_evaluations()
        assert len(evaluations) == len(abnormal)
        assert all(q.value.value == "263654008" for q in evaluations)
        comments = [item.TextValue for item in group[0].ContentSequence if item.ValueType == "TEXT"
                    and item.ConceptNameCodeSequence[0].CodeValue == "121106"]
        assert comments == [f["text"] for f in abnormal]
    assert compared >= 6 * len(report["organs"])  # six numbers for every organ, more for the vessels
    # The bundled series: the abdominal aorta is above 1.5 x the mean for women (Rogers 2013).
    aorta = {f["key"]: f for f in organs["aorta"]["findings"]}
    assert aorta["abdominal_aortic_aneurysm_for_sex"]["abnormal"] and report["patient"] == {
        "age": 64.0, "sex": "F", "source": "command line"}
    phase = sr.content.get_image_measurement_groups()
    assert len(phase) == 1 and phase[0].tracking_identifier == "MedSORA contrast phase"
    (evaluation,) = phase[0].get_qualitative_evaluations()
    assert evaluation.name.value == "109058" and evaluation.value.meaning == report["contrast_phase"]["phase"]
    (confidence,) = phase[0].get_measurements()
    assert confidence.value == pytest.approx(report["contrast_phase"]["confidence"])


def test_dicom_sr_needs_a_dicom_series(tmp_path, capsys):
    from MedSORALib.cli import main

    before = snapshot(tmp_path)
    assert main(["score", "--volume", str(EXAMPLE_CT), "--segmentation", str(EXAMPLE_SEG), "--label-scheme",
                 "totalsegmentator", "--symptom", SYMPTOM, "--output", str(tmp_path / "x"), "--quiet",
                 "--dicom-sr"]) == 2
    assert "--dicom-sr needs the CT as a DICOM series folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before
    assert main(["score", "--volume", str(EXAMPLE_CT), "--segmentation", str(EXAMPLE_SEG), "--label-scheme",
                 "totalsegmentator", "--symptom", SYMPTOM, "--output", str(tmp_path / "x"), "--quiet",
                 "--age", "two hundred"]) == 2
    assert "age 'two hundred'" in capsys.readouterr().err and snapshot(tmp_path) == before


def test_age_and_sex_from_the_dicom_header(tmp_path):
    from MedSORALib.patient import Patient, patient_from_dicom

    assert patient_from_dicom(EXAMPLE_DICOM) == Patient()  # the bundled series is anonymised
    copy = tmp_path / "series"
    shutil.copytree(EXAMPLE_DICOM, copy)
    for n, path in enumerate(sorted(copy.iterdir())):
        ds = pydicom.dcmread(str(path))
        ds.PatientAge, ds.PatientSex = "071Y", "M"
        ds.save_as(str(path))
    assert patient_from_dicom(copy) == Patient(71.0, "M", "DICOM header")
    for path in copy.iterdir():
        ds = pydicom.dcmread(str(path))
        ds.PatientAge, ds.PatientSex, ds.PatientBirthDate, ds.StudyDate = "", "F", "19600101", "20221208"
        ds.save_as(str(path))
    assert patient_from_dicom(copy) == Patient(62.93, "F", "DICOM header")
    # The command line completes and overrides the header.
    assert Patient.parse(None, "M", "command line").merged(patient_from_dicom(copy)) == Patient(
        62.93, "M", "command line and DICOM header")


def test_a_failing_sr_leaves_no_file_of_the_set(tmp_path, monkeypatch):
    from MedSORALib import dicom_sr
    from MedSORALib.cli import main

    def broken(path, *args, **kwargs):
        raise RuntimeError("disk went away")

    monkeypatch.setattr(dicom_sr, "write_dicom_sr", broken)
    with pytest.raises(RuntimeError, match="disk went away"):
        main(["score", "--volume", str(EXAMPLE_DICOM), "--segmentation", str(EXAMPLE_DICOM_SEG), "--label-scheme",
              "totalsegmentator", "--symptom", SYMPTOM, "--output", str(tmp_path / "out" / "case"), "--quiet",
              "--no-passages", "--dicom-sr"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []  # not the SEG, the JSON or the .seg.nrrd


def test_batch_writes_the_sr_with_the_manifest_patient(tmp_path, scored):
    from MedSORALib.cli import main

    manifest = tmp_path / "cohort.csv"
    manifest.write_text("volume,segmentation,label_scheme,symptom,age,sex\n"
                        f"{EXAMPLE_DICOM},{EXAMPLE_DICOM_SEG},totalsegmentator,{SYMPTOM},064Y,F\n")
    assert main(["batch", str(manifest), "--output-dir", str(tmp_path / "out"), "--workers", "0", "--no-progress",
                 "--no-passages", "--dicom-sr"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_file())
    assert [n for n in names if n.startswith("0001_")] == ["0001_example_ct_dicom.json",
                                                           "0001_example_ct_dicom.seg.nrrd",
                                                           "0001_example_ct_dicom_seg.dcm",
                                                           "0001_example_ct_dicom_sr.dcm"]
    batch = json.loads((tmp_path / "out" / "0001_example_ct_dicom.json").read_text())
    assert batch["patient"] == {"age": 64.0, "sex": "F", "source": "manifest"}
    # The same measurements and findings as `medsora score` with --age 64 --sex F.
    single = {o["name"]: o for o in scored[1]["organs"]}
    for organ in batch["organs"]:
        assert organ["measurements"] == single[organ["name"]]["measurements"]
        assert organ["findings"] == single[organ["name"]]["findings"]
    sr = hd.sr.srread(tmp_path / "out" / "0001_example_ct_dicom_sr.dcm")
    assert len(sr.content.get_volumetric_roi_measurement_groups()) == len(batch["organs"])
    # A bad age in the manifest: one error line, exit 2, nothing written.
    manifest.write_text("volume,segmentation,label_scheme,symptom,age,sex\n"
                        f"{EXAMPLE_DICOM},{EXAMPLE_DICOM_SEG},totalsegmentator,{SYMPTOM},sixty,F\n")
    assert main(["batch", str(manifest), "--output-dir", str(tmp_path / "bad"), "--workers", "0",
                 "--no-progress"]) == 2
    assert not (tmp_path / "bad").exists()


def test_worker_requests_carry_the_patient():
    from MedSORALib.patient import Patient
    from MedSORALib.worker.protocol import RequestError, parse_request, request_fields

    fields = request_fields(EXAMPLE_DICOM, EXAMPLE_DICOM_SEG, [SYMPTOM], "out/case", age=64, sex="F")
    assert parse_request(fields).patient == Patient(64.0, "F", "request")
    assert parse_request(request_fields(EXAMPLE_DICOM, EXAMPLE_DICOM_SEG, [SYMPTOM], "out/case")).patient == Patient()
    for bad in ({"age": "old"}, {"age": True}, {"sex": "X"}):
        with pytest.raises(RequestError, match="age|sex"):
            parse_request({**fields, **bad})


def test_worker_scores_with_the_requested_patient(tmp_path, scored):
    import subprocess

    from MedSORALib.worker import WorkerClient, request_fields, worker_environment

    env = worker_environment()
    env["OMP_NUM_THREADS"] = "1"
    with WorkerClient(env=env, stderr=subprocess.DEVNULL) as client:
        event = client.run(request_fields(EXAMPLE_DICOM, EXAMPLE_DICOM_SEG, [SYMPTOM], tmp_path / "case",
                                          label_scheme="totalsegmentator", age="064Y", sex="F"))
    report = json.loads(Path(event["result"]["outputs"][0]["files"]["json"]).read_text(encoding="utf-8"))
    assert report["patient"] == {"age": 64.0, "sex": "F", "source": "request"}
    single = {o["name"]: o for o in scored[1]["organs"]}
    for organ in report["organs"]:  # the same findings as `medsora score --age 64 --sex F`
        assert organ["findings"] == single[organ["name"]]["findings"]
