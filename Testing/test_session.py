"""One scoring session behind every front door (MedSORALib/session.py).

The same CT, organs and symptom must give the same JSON through ``medsora
score``, the worker, ``medsora batch`` in this process and on a Dask worker,
and ``serve``'s session; every door has the same defaults; the image model
does no work at image weight 0; a case is opened once per content.
"""
from __future__ import annotations

import ast
import csv
import json
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG, EXAMPLE_VOXELS
from MedSORALib.errors import MedSORAError, ModelError, SymptomError
from MedSORALib.scoring import IMAGE_WEIGHT, OrganScore, SymptomResult
from MedSORALib.session import (ScoringCancelled, ScoringInputs, ScoringSession, ScoringSettings, resolve_device,
                                score_inputs, split_symptoms)

ROOT = Path(__file__).resolve().parents[1]
GALLSTONES = "Pain in the right upper abdomen after fatty meals, with nausea"


@pytest.fixture(scope="module")
def session():
    return ScoringSession(ScoringSettings(device="cpu"))


# ------------------------------------------------------------------------------------------
# the same JSON through every front door
# ------------------------------------------------------------------------------------------

def _comparable(report: dict) -> dict:
    """A result JSON without what names where it was written or read from."""
    report = json.loads(json.dumps(report))
    report.pop("files", None)
    for item in report.get("inputs", {}).values():
        item.pop("path", None)
    return report


#: Numbers may differ by one unit of the JSON's sixth decimal: processes with other thread counts sum the
#: encoder's products in another order (differences near 1e-9 that can land on either side of a rounding).
ROUNDING = 1.5e-6


def _differences(a, b, where: str = "") -> list[str]:
    """Where two JSON values differ (numbers by more than ROUNDING), as readable paths."""
    if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
        if isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return [f"{where}: keys {sorted(a.keys() ^ b.keys())}"]
            return [d for k in a for d in _differences(a[k], b[k], f"{where}.{k}")]
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return [f"{where}: {len(a)} items against {len(b)}"]
            return [d for i, (x, y) in enumerate(zip(a, b)) for d in _differences(x, y, f"{where}[{i}]")]
        return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} != {b!r}"]
    return [] if abs(a - b) <= ROUNDING else [f"{where}: {a!r} != {b!r}"]


def test_differences_see_what_matters():
    assert _differences({"a": [1.0, "x"]}, {"a": [1.000001, "x"]}) == []
    assert _differences({"a": [1.0, "x"]}, {"a": [1.00001, "x"]}) == [".a[0]: 1.0 != 1.00001"]
    assert _differences({"a": True}, {"a": 1}) and _differences({"a": "x"}, {"a": "y"})
    assert _differences({"a": 1}, {"b": 1}) == [": keys ['a', 'b']"]


def _batch(tmp_path: Path, name: str, workers: str, weight: str) -> dict:
    from MedSORALib.cli import main

    manifest = tmp_path / f"{name}.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([["volume", "segmentation", "label_scheme", "symptom"],
                                      [EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", GALLSTONES]])
    out = tmp_path / name
    argv = ["batch", str(manifest), "--output-dir", str(out), "--workers", workers, "--no-progress",
            "--dashboard-address", "127.0.0.1:0"]
    assert main(argv + (["--image-weight", weight] if weight else [])) == 0
    (summary,) = json.loads((out / "summary.json").read_text(encoding="utf-8"))["results"]
    assert summary["status"] == "ok"
    return {"worker": summary["worker"], "report": json.loads((out / summary["json"]).read_text(encoding="utf-8"))}


@pytest.fixture(scope="module", params=["", "0.25"], ids=["default_weight", "image_weight_0.25"])
def through_every_door(request, tmp_path_factory):
    """The example CT and one symptom through score, the worker, batch in process, batch on Dask and serve."""
    from MedSORALib.cli import main
    from MedSORALib.web.session import WebSession
    from MedSORALib.worker import WorkerClient, request_fields, worker_environment

    weight = request.param
    tmp = tmp_path_factory.mktemp("doors")
    extra = ["--image-weight", weight] if weight else []
    assert main(["score", "--volume", str(EXAMPLE_CT), "--segmentation", str(EXAMPLE_SEG), "--label-scheme",
                 "totalsegmentator", "--symptom", GALLSTONES, "--output", str(tmp / "score" / "case"), "--quiet",
                 *extra]) == 0
    reports = {"score": json.loads((tmp / "score" / "case.json").read_text(encoding="utf-8"))}

    env = worker_environment()
    env["OMP_NUM_THREADS"] = "1"
    settings = ScoringSettings(image_weight=float(weight)) if weight else ScoringSettings()
    with WorkerClient(env=env, stderr=subprocess.DEVNULL) as client:
        event = client.run(request_fields(EXAMPLE_CT, EXAMPLE_SEG, [GALLSTONES], tmp / "worker" / "case", settings,
                                          label_scheme="totalsegmentator"))
    reports["worker"] = json.loads(Path(event["result"]["outputs"][0]["files"]["json"]).read_text(encoding="utf-8"))
    reports["worker_event"] = event["result"]["outputs"][0]

    in_process = _batch(tmp, "batch0", "0", weight)
    on_dask = _batch(tmp, "batch1", "1", weight)
    reports["batch"], reports["dask"] = in_process["report"], on_dask["report"]

    web = WebSession(tmp / "serve")
    if weight:
        web.scoring = ScoringSession(settings)
    web.load(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", log=lambda message: None)
    (scored,) = web.score([GALLSTONES])
    reports["serve"] = json.loads(scored.files["json"].read_text(encoding="utf-8"))
    return {"weight": float(weight or 0.0), "reports": reports, "dask_worker": on_dask["worker"],
            "batch_worker": in_process["worker"]}


def test_every_front_door_gives_the_same_json(through_every_door):
    reports = through_every_door["reports"]
    reference = _comparable(reports["score"])
    for door in ("worker", "batch", "dask", "serve"):
        assert _differences(_comparable(reports[door]), reference) == [], door
    # the worker's event carries the same result as its file
    event = dict(reports["worker_event"])
    assert {k: event[k] for k in ("symptom", "organs", "contrast_phase", "models", "passages")} == {
        k: reports["worker"][k] for k in ("symptom", "organs", "contrast_phase", "models", "passages")}
    # the Dask row ran in another process (a worker of the local cluster), the in-process row in this one
    assert through_every_door["dask_worker"].startswith("tcp://127.0.0.1:")
    assert not through_every_door["batch_worker"].startswith("tcp://")


def test_the_shared_json_is_a_real_result(through_every_door):
    report = through_every_door["reports"]["score"]
    weight = through_every_door["weight"]
    organs = report["organs"]
    assert [o["name"] for o in organs] != sorted(o["name"] for o in organs)  # ordered by relevance, not by name
    assert [o["relevance"] for o in organs] == sorted((o["relevance"] for o in organs), reverse=True)
    assert {o["name"]: o["voxels"] for o in organs} == EXAMPLE_VOXELS
    assert organs[0]["name"] in ("gallbladder", "liver")
    assert report["contrast_phase"]["phase"] == "non-contrast"
    assert report["models"]["fusion"]["image_weight"] == weight
    abnormal = {o["name"] for o in organs for f in o["findings"] if f["abnormal"]}
    assert "pancreas" in abnormal  # the small pancreas of this CT (volume below its reference range)
    if weight == 0.0:
        assert all(o["image_score"] is None for o in organs)
        assert all(o["relevance"] == pytest.approx(min(1.0, o["text_prior"]) + o["finding_boost"], abs=2e-6)
                   for o in organs)
    else:
        scores = [o["image_score"] for o in organs]
        assert all(-1.0 <= s <= 1.0 for s in scores) and len(set(scores)) > 1
        assert any(o["relevance"] < o["text_prior"] + o["finding_boost"] - 1e-3 for o in organs)


# ------------------------------------------------------------------------------------------
# one default for every option
# ------------------------------------------------------------------------------------------

def test_every_front_door_has_the_same_defaults(tmp_path):
    from MedSORALib.cli import build_parser
    from MedSORALib.commands.score import settings_from_args
    from MedSORALib.web.session import WebSession
    from MedSORALib.worker.protocol import parse_request

    defaults = ScoringSettings()
    assert defaults.image_weight == IMAGE_WEIGHT == 0.0 and not defaults.use_image_model
    parser = build_parser()
    score = parser.parse_args(["score", "--volume", "ct", "--symptom", "pain", "--output", "o"])
    batch = parser.parse_args(["batch", "m.csv", "--output-dir", "o"])
    assert settings_from_args(score) == defaults
    assert settings_from_args(batch) == defaults  # batch fused at 0.25 before: a drift no test saw
    request = parse_request({"volume": "ct", "segmentation": "s", "symptoms": ["pain"], "output": "o"})
    assert request.settings == defaults
    assert WebSession(tmp_path).scoring.settings == defaults
    from MedSORALib.batch.rows import BatchOptions

    assert BatchOptions(output_dir="o", run_id="r", model_version="v").scoring == defaults
    # the Slicer panel: the parameter and the box default to off (text only)
    tree = ast.parse((ROOT / "MedSORA" / "MedSORA.py").read_text(encoding="utf-8"))
    defaults_in_module = {node.target.id: node.value.value for node in ast.walk(tree)
                          if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                          and isinstance(node.value, ast.Constant)}
    assert defaults_in_module["useImageModel"] is False
    ui = ElementTree.parse(ROOT / "MedSORA" / "Resources" / "UI" / "MedSORA.ui")
    box = next(w for w in ui.iter("widget") if w.get("name") == "useImageModelCheckBox")
    checked = [p for p in box.iter("property") if p.get("name") == "checked"]
    assert [p.find("bool").text for p in checked] in ([], ["false"])


def test_settings_check_their_values():
    assert ScoringSettings(model_dir="", text_encoder="").model_dir is None  # empty text is the default
    assert ScoringSettings().replace(image_weight=0.4, device=None).image_weight == 0.4
    assert ScoringSettings(image_weight=0.4).use_image_model
    for bad in (1.5, -0.1, "0.3", True, float("nan")):
        with pytest.raises(SymptomError):
            ScoringSettings(image_weight=bad)


def test_model_folder_is_checked_before_loading(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ScoringSession(ScoringSettings(model_dir=str(tmp_path / "missing"))).load()
    session = ScoringSession(ScoringSettings(model_dir=str(tmp_path)))
    with pytest.raises(ModelError, match="neither a text/ nor an image/"):
        session.load()
    assert not session.loaded and session.loads == 0


def test_split_symptoms_and_device():
    with pytest.raises(SymptomError):
        split_symptoms("\n \n")
    assert split_symptoms("pain\n  after meals ") == ["pain after meals"]
    assert split_symptoms("pain\n\njaundice\n", one_per_line=True) == ["pain", "jaundice"]
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    assert issubclass(ScoringCancelled, MedSORAError)


def test_session_and_worker_modules_import_no_slicer_vtk_or_qt():
    for path in [ROOT / "MedSORALib" / "session.py", *(ROOT / "MedSORALib" / "worker").glob("*.py")]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
        assert not imported & {"slicer", "vtk", "qt", "ctk", "PythonQt"}, (path, imported)


# ------------------------------------------------------------------------------------------
# the session's work: models once, cases once per content, no image work at weight 0
# ------------------------------------------------------------------------------------------

def test_image_model_works_only_for_a_weight_above_zero(session, example_volume, example_masks):
    session.load()
    image_model = session.models.image_model
    calls = []
    original = image_model.encode_volume

    def counting(volume, masks):
        calls.append(sorted(masks))
        return original(volume, masks)

    image_model.encode_volume = counting
    try:
        case = session.case(example_volume, example_masks)
        (text_only,) = session.score(case, [GALLSTONES], passages=False)
        assert calls == [] and not case.encoded
        assert all(o.image_score is None for o in text_only.organs)
        assert text_only.models["fusion"]["image_weight"] == 0.0
        (fused,) = session.score(case, [GALLSTONES], image_weight=0.25, passages=False)
        (again,) = session.score(case, ["blood in the urine"], image_weight=0.5, passages=False)
    finally:
        del image_model.encode_volume
    assert calls == [sorted(EXAMPLE_VOXELS)] and case.encoded  # encoded once, on first need
    assert all(isinstance(o.image_score, float) for o in fused.organs + again.organs)
    prior = {o.key: o.text_prior for o in text_only.organs}
    assert {o.key: o.text_prior for o in fused.organs} == pytest.approx(prior, abs=1e-12)
    assert [o.relevance for o in fused.organs] != [o.relevance for o in text_only.organs]


def test_open_is_cached_by_content_not_by_path(session, tmp_path):
    first = session.open(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator")
    assert session.last_open_cached is False
    again = session.open(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator")
    assert session.last_open_cached is True and again is first
    ct, seg = shutil.copy(EXAMPLE_CT, tmp_path / "copy.nii.gz"), shutil.copy(EXAMPLE_SEG, tmp_path / "seg.nii.gz")
    moved = session.open(ct, seg, "totalsegmentator")
    assert session.last_open_cached is True and moved.masks is first.masks
    assert moved.inputs["volume"]["path"] == str(ct) and first.inputs["volume"]["path"] == str(EXAMPLE_CT)
    assert moved.inputs["volume"]["sha256"] == first.inputs["volume"]["sha256"]
    # other content (one voxel of the CT changed) is read afresh
    import nibabel as nib

    image = nib.load(EXAMPLE_CT)
    data = np.asarray(image.dataobj).copy()
    data[0, 0, 0] += 1
    changed = tmp_path / "changed.nii.gz"
    nib.save(nib.Nifti1Image(data, image.affine, image.header), changed)
    other = session.open(changed, seg, "totalsegmentator")
    assert session.last_open_cached is False and other is not first
    assert {k: int(v) for k, v in other.voxels.items()} == EXAMPLE_VOXELS


def test_writes_are_refused_over_an_input_and_for_dicom_seg_without_dicom(session, tmp_path):
    from MedSORALib.errors import InputFileError
    from MedSORALib.session import check_outputs

    organs = tmp_path / "inputs" / "organs.seg.nrrd"
    organs.parent.mkdir()
    organs.write_bytes(b"NRRD0004")
    with pytest.raises(InputFileError, match=f"would replace the input {organs}"):
        check_outputs(organs.parent / "organs", 1, [EXAMPLE_CT, organs])
    with pytest.raises(InputFileError, match="would replace the input"):  # the second of two symptoms' sets
        check_outputs(organs.parent / "organs", 2, [EXAMPLE_CT, organs.parent / "organs_2.json"])
    assert check_outputs(organs.parent / "result", 2, [EXAMPLE_CT, organs]) == organs.parent / "result"
    case = session.open(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator")
    (result,) = session.score(case, [GALLSTONES], passages=False)
    with pytest.raises(InputFileError, match="DICOM series"):
        session.write(case, [result], tmp_path / "x", dicom_seg=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["inputs", "organs.seg.nrrd"]


def test_score_inputs_calls_the_scorer_with_an_explicit_progress_signature(example_volume, example_masks):
    seen = []

    def scorer(volume, masks, symptoms, progress=None):
        progress(0.5, "half")
        return [f"{s}:{len(masks)}" for s in symptoms]

    inputs = ScoringInputs(example_volume, {"liver": example_masks["liver"]}, ["a", "b"])
    out = score_inputs(inputs, scorer, progress=lambda fraction, message: seen.append((fraction, message)))
    assert out == ["a:1", "b:1"] and seen == [(0.5, "half")]


# ------------------------------------------------------------------------------------------
# a result to and from its dict, in one place
# ------------------------------------------------------------------------------------------

def test_result_from_dict_inverts_to_dict():
    result = SymptomResult(
        symptom="jaundice", in_domain=True, ood_score=0.8125, laterality="left",
        organs=[OrganScore("liver", "liver", 0.75, 0.8, 0.125, 100, 2.7, finding_boost=0.0625, why="w",
                           measurements={"volume_ml": 2.7}, findings=[{"text": "f", "abnormal": True}],
                           findings_not_assessed=[{"text": "n"}]),
                OrganScore("kidney_left", "left kidney", 0.25, 0.3, None, 50, 1.35)],
        passages={"liver": [{"id": "x", "text": "t", "source": "s", "score": 0.5}]}, models={"text": {"a": 1}},
        contrast_phase={"phase": "arterial"})
    data = json.loads(json.dumps(result.to_dict()))
    assert data["organs"][1]["image_score"] is None
    back = SymptomResult.from_dict(data)
    assert back == result
    assert back.to_dict() == result.to_dict()
    # a written PREFIX.json (with its files, inputs and colormap) reads back the same way
    assert SymptomResult.from_dict({**data, "inputs": {}, "files": {}, "relevance_colormap": []}) == result
