"""The differential diagnosis and scope in every scored result: ``score``'s JSON, the worker's event, ``batch``.

On the bundled real CT (TotalSegmentator example and its labels):

- "constant right upper quadrant pain since last night's dinner, fever 38.4,
  Murphy's sign" gives acute cholecystitis first, with the findings read and
  its CT signs (gallstones, wall thickening, pericholecystic fluid), the
  gallbladder first among the organs and its ``why`` naming the diagnosis;
- "right upper quadrant pain after fatty meals; gallbladder removed five years
  ago" never ranks the gallbladder first, and no diagnosis names it;
- the three doors write the same ``differential``, ``scope`` and ``outside``.
"""
from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG
from MedSORALib.diagnoses import (TOP_DIAGNOSES, DiagnosisEntry, checklist_rows, organ_why, patient_age_sex,
                                  scope_text)
from MedSORALib.scoring import SymptomResult

CHOLECYSTITIS = "constant right upper quadrant pain since last night's dinner, fever 38.4, Murphy's sign"
REMOVED = "right upper quadrant pain after fatty meals; gallbladder removed five years ago"
PELVIC = "pelvic pain and vaginal bleeding after a missed period"
#: The keys of one diagnosis in the JSON (docs/outputs.md).
DIAGNOSIS_KEYS = {"id", "diagnosis", "organs", "outside", "probability", "supporting", "against", "look_for",
                  "source"}
SCOPES = {"modelled", "abdominal-other", "non-abdominal"}


def _score_json(tmp: Path) -> list[dict]:
    from MedSORALib.cli import main

    assert main(["score", "--volume", str(EXAMPLE_CT), "--segmentation", str(EXAMPLE_SEG), "--label-scheme",
                 "totalsegmentator", "--symptom", CHOLECYSTITIS, "--symptom", REMOVED,
                 "--output", str(tmp / "score" / "case"), "--quiet"]) == 0
    return [json.loads((tmp / "score" / f"case_{n}.json").read_text(encoding="utf-8")) for n in (1, 2)]


def _worker_event(tmp: Path) -> dict:
    from MedSORALib.session import ScoringSettings
    from MedSORALib.worker import WorkerClient, request_fields, worker_environment

    env = worker_environment()
    env["OMP_NUM_THREADS"] = "1"
    with WorkerClient(env=env, stderr=subprocess.DEVNULL) as client:
        return client.run(request_fields(EXAMPLE_CT, EXAMPLE_SEG, [CHOLECYSTITIS, REMOVED], tmp / "worker" / "case",
                                         ScoringSettings(), label_scheme="totalsegmentator"))


def _batch_json(tmp: Path) -> list[dict]:
    from MedSORALib.cli import main

    manifest = tmp / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["volume", "segmentation", "label_scheme", "symptom"],
                                      [EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", CHOLECYSTITIS],
                                      [EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", REMOVED]])
    out = tmp / "batch"
    assert main(["batch", str(manifest), "--output-dir", str(out), "--workers", "0", "--no-progress"]) == 0
    rows = json.loads((out / "summary.json").read_text(encoding="utf-8"))["results"]
    assert [row["status"] for row in rows] == ["ok", "ok"]
    return [json.loads((out / row["json"]).read_text(encoding="utf-8")) for row in rows]


@pytest.fixture(scope="module")
def doors(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("differential_doors")
    event = _worker_event(tmp)
    return {"score": _score_json(tmp),
            "worker_event": [dict(output) for output in event["result"]["outputs"]],
            "worker": [json.loads(Path(o["files"]["json"]).read_text(encoding="utf-8"))
                       for o in event["result"]["outputs"]],
            "batch": _batch_json(tmp)}


def _differential_part(report: dict) -> dict:
    return {key: report[key] for key in ("symptom", "in_domain", "scope", "outside", "none_of_these", "non_specific",
                                         "differential")} | {"why": [(o["name"], o["why"]) for o in report["organs"]]}


def test_every_door_carries_the_same_differential(doors):
    reference = [_differential_part(r) for r in doors["score"]]
    for door in ("worker_event", "worker", "batch"):
        assert [_differential_part(r) for r in doors[door]] == reference, door


def test_the_json_fields_have_the_documented_keys(doors):
    for report in doors["score"] + doors["worker_event"]:
        assert report["scope"] in SCOPES
        assert report["in_domain"] == (report["scope"] == "modelled")
        assert report["outside"] is None or isinstance(report["outside"], str)
        assert 0.0 <= report["none_of_these"] <= 1.0
        differential = report["differential"]
        assert 1 <= len(differential) <= TOP_DIAGNOSES
        probabilities = [d["probability"] for d in differential]
        assert probabilities == sorted(probabilities, reverse=True)
        assert sum(probabilities) + report["none_of_these"] <= 1.0 + 1e-3
        for d in differential:
            assert set(d) == DIAGNOSIS_KEYS
            assert isinstance(d["diagnosis"], str) and d["diagnosis"] and d["source"]
            assert all(isinstance(v, str) for k in ("organs", "supporting", "against", "look_for") for v in d[k])
            assert d["organs"] or d["outside"]  # a diagnosis lives in a structure, one of the 13 or outside
        # the JSON reads back into the same result
        assert SymptomResult.from_dict(report).to_dict() == {k: v for k, v in report.items()
                                                            if k not in ("files", "prefix", "inputs",
                                                                         "relevance_colormap")}


def test_cholecystitis_example_on_the_real_ct(doors):
    report = doors["score"][0]
    assert report["symptom"] == CHOLECYSTITIS and report["scope"] == "modelled" and report["outside"] is None
    first = report["differential"][0]
    assert first["id"] == "acute_cholecystitis" and "cholecystitis" in first["diagnosis"].lower()
    assert first["organs"] == ["gallbladder"] and first["probability"] >= 0.4
    assert {"fever", "Murphy's sign", "right upper quadrant pain"} <= set(first["supporting"])
    look_for = " | ".join(first["look_for"]).lower()
    for sign in ("gallstones", "wall thickening", "pericholecystic fluid"):
        assert sign in look_for, sign
    organs = report["organs"]
    assert organs[0]["name"] == "gallbladder"
    assert organs[0]["why"].startswith(f"{first['diagnosis']} {first['probability']:.2f}")
    assert "gallbladder" in [o["name"] for o in organs[:3]]


def test_a_removed_gallbladder_is_never_first(doors):
    for door in ("score", "worker_event", "batch"):
        report = doors[door][1]
        assert report["symptom"] == REMOVED
        organs = report["organs"]
        assert organs[0]["name"] != "gallbladder" and organs[-1]["name"] == "gallbladder", door
        gallbladder = next(o for o in organs if o["name"] == "gallbladder")
        assert gallbladder["text_prior"] == 0.0 and gallbladder["relevance"] == 0.0
        assert gallbladder["why"] == ""
        assert all("gallbladder" not in d["organs"] for d in report["differential"])


def test_the_patients_sex_reaches_the_differential(example_volume, example_masks):
    """An ectopic pregnancy is far less probable for a man: the case's patient is read, from either place."""
    from MedSORALib.scoring import load_models, prepare_case, score_case

    models = load_models()
    case = prepare_case(example_volume, {k: example_masks[k] for k in ("liver", "spleen", "kidney_left")})

    def ectopic(result):
        return next((d.probability for d in result.differential if d.id == "ectopic_pregnancy"), 0.0)

    probability = {}
    for sex in ("F", "M"):
        case.evidence["patient"] = {"age": 28, "sex": sex, "source": "test"}
        (result,) = score_case(case, [PELVIC], models, with_passages=False)
        probability[sex] = ectopic(result)
    case.evidence.pop("patient")
    case.patient = SimpleNamespace(age=28.0, sex="M")  # the attribute form wins over the evidence
    (result,) = score_case(case, [PELVIC], models, with_passages=False)
    assert probability["F"] > 0.3 and probability["M"] < probability["F"] / 2
    assert ectopic(result) == pytest.approx(probability["M"], abs=1e-4)


def test_patient_age_sex_reads_every_form():
    assert patient_age_sex(SimpleNamespace(evidence={})) == (None, None)
    assert patient_age_sex(SimpleNamespace(evidence={"patient": {"age": 64, "sex": "F"}})) == (64.0, "female")
    assert patient_age_sex(SimpleNamespace(patient=SimpleNamespace(age="70", sex="male"), evidence={})) == (
        70.0, "male")
    assert patient_age_sex(SimpleNamespace(patient={"age": None, "sex": "O"})) == (None, None)


def test_organ_why_names_the_diagnoses_with_their_probabilities():
    from MedSORALib.differential.fusion import reason

    (reasoned,) = reason([CHOLECYSTITIS])
    why = organ_why(reasoned, "gallbladder")
    top = [d for d in reasoned.differential.diagnoses if "gallbladder" in d.structures][:3]
    assert why.split(", ")[0] == f"{top[0].disease.name} {top[0].probability:.2f}"
    assert len(why.split(", ")) == len([d for d in top if d.probability >= 0.005])
    assert organ_why(reasoned, "spleen") == ""  # no diagnosis of the leading ones lives in the spleen
    (removed,) = reason([REMOVED])
    assert organ_why(removed, "gallbladder") == ""


def test_checklist_rows_for_the_panel_and_the_page():
    entries = [DiagnosisEntry("Acute appendicitis", [], 0.5, ["right iliac fossa pain"], [], ["dilated appendix"],
                              "a source", "acute_appendicitis", "appendix"),
               DiagnosisEntry("Right ureteric colic", ["kidney_right"], 0.2, ["flank pain"], ["fever"],
                              ["stone at the vesicoureteric junction", "hydronephrosis"], "b", "ureteric_colic")]
    entries += [DiagnosisEntry(f"d{n}", ["liver"], 0.01) for n in range(6)]
    rows = checklist_rows(entries, present=["liver", "kidney_right"])
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["organ"] is None and rows[0]["where"] == "appendix"
    assert rows[1]["organ"] == "kidney_right" and rows[1]["where"] == "right kidney"
    assert rows[1]["look_for"] == ["stone at the vesicoureteric junction", "hydronephrosis"]
    assert rows[1]["probability"] == "0.20" and rows[1]["read"] == "flank pain" and rows[1]["against"] == "fever"
    assert checklist_rows(entries, present=["liver"])[1]["organ"] is None  # the CT lacks the right kidney
    assert scope_text("abdominal-other", "small_bowel", 0.25) == (
        "Scope: abdominal, outside the 13 structures (small bowel); none of these diagnoses: 0.25")


def test_score_table_prints_the_top_diagnoses_and_the_scope(doors):
    import io

    from MedSORALib.commands.score import print_table

    report = doors["score"][0]
    out = io.StringIO()
    print_table(SymptomResult.from_dict(report), out)
    lines = out.getvalue().splitlines()
    first = report["differential"][0]
    assert lines[1] == report["symptom"]  # modelled: no scope note after the symptom
    assert f"  {first['probability']:.2f}  {first['diagnosis']}; look for: {', '.join(first['look_for'])}" in lines
    other = SymptomResult.from_dict({**report, "scope": "abdominal-other", "outside": "appendix", "in_domain": False})
    out = io.StringIO()
    print_table(other, out)
    assert out.getvalue().splitlines()[1].endswith("(abdominal, outside the 13 structures: appendix)")


def test_preview_title_names_the_scope(doors):
    from MedSORALib.preview import preview_title

    report = doors["score"][0]
    assert preview_title(SymptomResult.from_dict(report)).endswith(report["symptom"][:67] + "...")  # no mark
    outside = SymptomResult.from_dict({**report, "scope": "abdominal-other", "outside": "small_bowel",
                                       "in_domain": False})
    assert preview_title(outside).endswith("[abdominal, outside the 13 structures: small bowel]")
    away = SymptomResult.from_dict({**report, "scope": "non-abdominal", "in_domain": False})
    assert preview_title(away).endswith("[out of domain: not an abdominal symptom]")
