"""The case and scoring behind ``medsora serve`` (:mod:`MedSORALib.web.session`), without a browser."""
from __future__ import annotations

import json

import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG, EXAMPLE_VOXELS, snapshot

SYMPTOMS = ["painless jaundice with pale stools", "blood in my urine and pain in my left flank"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from MedSORALib.web.session import WebSession

    session = WebSession(tmp_path_factory.mktemp("served"))
    session.load(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", log=lambda message: None)
    return session


def test_scores_equal_score_volume_and_files_are_written(session, example_volume, example_masks):
    from MedSORALib.scoring import score_volume

    progress = []
    scored = session.score(SYMPTOMS, progress=lambda fraction, message: progress.append(fraction))
    reference = score_volume(example_volume, example_masks, SYMPTOMS, models=session.models())
    assert [s.result.symptom for s in scored] == SYMPTOMS
    for item, expected in zip(scored, reference):
        assert [o.key for o in item.result.organs] == [o.key for o in expected.organs]
        assert [o.relevance for o in item.result.organs] == pytest.approx([o.relevance for o in expected.organs],
                                                                          abs=1e-6)
        assert {o.key: o.voxels for o in item.result.organs} == EXAMPLE_VOXELS
        report = json.loads(item.files["json"].read_text(encoding="utf-8"))
        assert [o["name"] for o in report["organs"]] == [o.key for o in expected.organs]
        assert report["inputs"]["segmentation"]["label_scheme"] == "totalsegmentator"
        assert item.files["segmentation"].read_bytes().startswith(b"NRRD")
    assert [p.name for p in sorted((session.output_dir / "run1").iterdir())] == [
        "medsora_1.json", "medsora_1.seg.nrrd", "medsora_2.json", "medsora_2.seg.nrrd"]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_a_case_is_measured_once_and_not_encoded_at_image_weight_0(session):
    case = session.case
    assert case is not None and not case.encoded
    scored = session.score(SYMPTOMS[:1])
    assert session.case is case and not case.encoded
    assert scored[0].files["json"].parent.name == "run2"
    session.load(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", log=lambda message: None)
    assert session.case is case  # the same content: taken from the scoring session, not read again


def test_table_rows_and_passages_follow_the_result(session):
    from MedSORALib.web.session import result_passages, result_rows

    result = session.score(SYMPTOMS[:1])[0].result
    rows = result_rows(result)
    assert [r["key"] for r in rows] == [o.key for o in result.organs]
    assert rows[0]["organ"] == result.organs[0].display_name[:1].upper() + result.organs[0].display_name[1:]
    assert [r["relevance"] for r in rows] == [round(o.relevance, 3) for o in result.organs]
    assert [r["volume_ml"] for r in rows] == [round(o.volume_ml, 1) for o in result.organs]
    # The findings column holds each organ's abnormal findings (measurement and reference range), else nothing.
    for row, organ in zip(rows, result.organs):
        abnormal = [f["text"] for f in organ.findings if f["abnormal"]]
        assert row["findings"] == "; ".join(abnormal)
    assert any(row["findings"] for row in rows) and not all(row["findings"] for row in rows)
    groups = result_passages(result)
    assert result.in_domain and len(groups) == len([k for k, v in result.passages.items() if v]) > 0
    assert groups[0]["organ"] == rows[0]["organ"]
    assert [p["id"] for p in groups[0]["items"]] == [p["id"] for p in result.passages[result.organs[0].key]]


def test_bad_paths_keep_the_current_case(session, tmp_path):
    from MedSORALib.errors import InputFileError, MedSORAError

    case = session.case
    before = snapshot(EXAMPLE_CT.parent)
    with pytest.raises(InputFileError, match="no such CT"):
        session.load(tmp_path / "missing.nii.gz")
    with pytest.raises(InputFileError, match="no such segmentation"):
        session.load(EXAMPLE_CT, tmp_path / "missing_seg.nii.gz", "totalsegmentator")
    with pytest.raises(MedSORAError):
        session.load(EXAMPLE_CT, EXAMPLE_SEG, None)  # a label map needs its label scheme
    assert session.case is case
    assert snapshot(EXAMPLE_CT.parent) == before
    with pytest.raises(MedSORAError):
        session.score(["   "])
