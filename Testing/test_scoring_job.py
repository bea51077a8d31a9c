"""The Slicer-free scoring job (MedSORALib/scoring_job.py): settings, the model scorer, the worker protocol."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest

from MedSORALib import scoring_job
from MedSORALib.errors import MedSORAError, ModelError, SymptomError
from MedSORALib.scoring import IMAGE_WEIGHT, OrganScore, SymptomResult
from MedSORALib.scoring_job import ModelScorer, ScoringSettings, WorkerProtocol

ROOT = Path(__file__).resolve().parents[1]


def test_job_module_imports_no_slicer_vtk_or_qt():
    tree = ast.parse((ROOT / "MedSORALib" / "scoring_job.py").read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"slicer", "vtk", "qt", "ctk", "PythonQt"}, imported


def test_split_symptoms_and_device():
    with pytest.raises(SymptomError):
        scoring_job.split_symptoms("\n \n")
    assert scoring_job.split_symptoms("pain\n  after meals ") == ["pain after meals"]
    assert scoring_job.split_symptoms("pain\n\njaundice\n", one_per_line=True) == ["pain", "jaundice"]
    assert scoring_job.resolve_device("cpu") == "cpu"
    assert scoring_job.resolve_device("auto") in ("cpu", "cuda")


def test_settings_round_trip_through_a_request():
    settings = ScoringSettings(device="cpu", model_dir="/m", text_encoder="/e", use_image_model=True, image_weight=0.4)
    fields = settings.request_fields()
    assert fields == {"device": "cpu", "model_dir": "/m", "text_encoder": "/e", "image_weight": 0.4}
    assert ScoringSettings.from_request(fields) == settings
    text_only = ScoringSettings(use_image_model=False)
    assert text_only.request_fields()["image_weight"] == 0.0
    back = ScoringSettings.from_request(text_only.request_fields())
    assert back.use_image_model is False and back.effective_image_weight == 0.0
    assert ScoringSettings.from_request({}).effective_image_weight == pytest.approx(IMAGE_WEIGHT)
    for bad in (1.5, -0.1, "0.3", True):
        with pytest.raises(SymptomError):
            ScoringSettings.from_request({"image_weight": bad})


def test_model_scorer_checks_the_model_folder_before_loading(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ModelScorer(ScoringSettings(model_dir=str(tmp_path / "missing"))).load()
    scorer = ModelScorer(ScoringSettings(model_dir=str(tmp_path)))
    with pytest.raises(ModelError, match="neither a text/ nor an image/"):
        scorer.load()
    assert not scorer.loaded and scorer.loads == 0


def test_score_inputs_calls_the_scorer_with_an_explicit_progress_signature(example_volume, example_masks):
    seen = []

    def scorer(volume, masks, symptoms, progress=None):
        progress(0.5, "half")
        return [f"{s}:{len(masks)}" for s in symptoms]

    inputs = scoring_job.ScoringInputs(example_volume, {"liver": example_masks["liver"]}, ["a", "b"])
    out = scoring_job.score_inputs(inputs, scorer, progress=lambda fraction, message: seen.append((fraction, message)))
    assert out == ["a:1", "b:1"] and seen == [(0.5, "half")]


def test_result_from_dict_inverts_to_dict():
    result = SymptomResult(
        symptom="jaundice", in_domain=True, ood_score=0.8125, laterality="left",
        organs=[OrganScore("liver", "liver", 0.75, 0.8, 0.125, 100, 2.7),
                OrganScore("kidney_left", "left kidney", 0.25, 0.3, -0.5, 50, 1.35)],
        passages={"liver": [{"id": "x", "text": "t", "source": "s", "score": 0.5}]}, models={"text": {"a": 1}})
    back = scoring_job.result_from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.to_dict() == result.to_dict()
    assert [o.key for o in back.organs] == ["liver", "kidney_left"]


# ------------------------------------------------------------------------------------------
# protocol (no process: bytes in, events out)
# ------------------------------------------------------------------------------------------

def test_protocol_requests_have_increasing_ids_and_are_one_line():
    protocol = WorkerProtocol()
    fields = scoring_job.request_fields("ct.nrrd", "seg.seg.nrrd", ["pain"], "/tmp/out",
                                        ScoringSettings(device="cpu"), label_scheme=None)
    first, line1 = protocol.request(fields)
    second, line2 = protocol.request(fields)
    assert (first, second) == (1, 2) and protocol.pending == [1, 2]
    assert line1.endswith(b"\n") and line1.count(b"\n") == 1
    request = json.loads(line1)
    assert request == {"id": 1, "volume": "ct.nrrd", "segmentation": "seg.seg.nrrd", "label_scheme": None,
                       "symptoms": ["pain"], "output": "/tmp/out", "device": "cpu", "model_dir": "",
                       "text_encoder": "", "image_weight": IMAGE_WEIGHT}
    assert json.loads(protocol.shutdown()) == {"id": 3, "cmd": "shutdown"}


def test_protocol_reassembles_events_split_across_reads():
    protocol = WorkerProtocol()
    protocol.request({})
    stream = (b'{"id": 1, "event": "progress", "fraction": 0.25, "message": "reading"}\n'
              b'{"id": 1, "event": "result", "files": ["a.json"], "result": {"outputs": []}}\n')
    events = []
    for start in range(0, len(stream), 7):  # 7-byte reads cut lines anywhere
        events += protocol.feed(stream[start:start + 7])
    assert [e["event"] for e in events] == ["progress", "result"]
    assert events[0]["fraction"] == 0.25 and events[1]["files"] == ["a.json"]
    assert protocol.pending == []
    assert protocol.exited(0) == []  # nothing pending: a clean exit is not an error


def test_protocol_reports_stray_output_and_a_dead_worker_as_errors():
    protocol = WorkerProtocol()
    request_id, _ = protocol.request({})
    (event,) = protocol.feed(b"Some library printed this\n")
    assert event["event"] == "error" and event["id"] == request_id and "unexpected line" in event["message"]
    (event,) = protocol.feed(b'{"id": 1, "event": "bogus"}\n')
    assert event["event"] == "error"
    assert protocol.pending == [request_id]  # still waiting for its real answer
    (died,) = protocol.exited(-11)
    assert died == {"id": request_id, "event": "error",
                    "message": "The scoring worker stopped unexpectedly (signal 11)."}
    assert protocol.pending == []
    other = WorkerProtocol()
    other.request({})
    assert "exit code 1" in other.exited(1)[0]["message"]


def test_protocol_cancel_reports_no_error_for_the_killed_request():
    protocol = WorkerProtocol()
    protocol.request({})
    protocol.cancel()
    assert protocol.exited(-9) == [] and protocol.pending == []


def test_worker_command_and_environment_use_this_library():
    command = scoring_job.worker_command("/opt/Slicer/bin/PythonSlicer")
    assert command == ["/opt/Slicer/bin/PythonSlicer", "-m", "MedSORALib", "worker"]
    env = scoring_job.worker_environment({"PYTHONPATH": "/x", "HOME": "/h"})
    assert env["PYTHONPATH"].split(":")[:2] == [str(ROOT), "/x"] and env["HOME"] == "/h"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_worker_error_is_a_user_facing_error():
    assert issubclass(scoring_job.WorkerError, MedSORAError)
    assert issubclass(scoring_job.ScoringCancelled, MedSORAError)
    assert np.isfinite(ScoringSettings().effective_image_weight)
