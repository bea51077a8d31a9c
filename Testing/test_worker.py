"""``medsora worker`` as real child processes: progress, result, error, cancel, crash, models kept loaded.

Each test starts ``python -m MedSORALib worker`` through the same client code
the scripts use (:class:`MedSORALib.scoring_job.WorkerClient`) or by hand.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG, EXAMPLE_VOXELS, snapshot
from MedSORALib import scoring_job
from MedSORALib.scoring_job import ScoringSettings, WorkerClient, WorkerError, request_fields

ROOT = Path(__file__).resolve().parents[1]
GALLSTONES = "Pain in the right upper abdomen after fatty meals, with nausea"
HAEMATURIA = "Blood in the urine and pain in the left flank"


def _fields(output, symptoms, **extra):
    return request_fields(EXAMPLE_CT, EXAMPLE_SEG, symptoms, output, ScoringSettings(device="cpu"),
                          label_scheme="totalsegmentator", **extra)


@pytest.fixture()
def worker_env():
    env = scoring_job.worker_environment()
    env["OMP_NUM_THREADS"] = "1"  # a loaded 2-core machine: one thread per worker
    return env


@pytest.fixture(scope="module")
def two_requests(tmp_path_factory):
    """One worker answering two requests on the example CT, the second with two symptoms."""
    out = tmp_path_factory.mktemp("worker")
    env = scoring_job.worker_environment()
    env["OMP_NUM_THREADS"] = "1"
    events = []
    with WorkerClient(env=env, stderr=subprocess.DEVNULL) as client:
        first = client.wait_for(client.submit(_fields(out / "first", [GALLSTONES])), on_event=events.append)
        second = client.wait_for(client.submit(_fields(out / "second", [HAEMATURIA, GALLSTONES])),
                                 on_event=events.append)
        process = client.process
    return {"first": first, "second": second, "events": events, "out": out, "returncode": process.returncode}


def test_worker_streams_progress_then_one_result(two_requests):
    events = two_requests["events"]
    for request_id in (1, 2):
        mine = [e for e in events if e["id"] == request_id]
        assert [e["event"] for e in mine][-1] == "result"
        assert {e["event"] for e in mine[:-1]} == {"progress"}
        fractions = [e["fraction"] for e in mine[:-1]]
        assert fractions == sorted(fractions) and 0.0 <= fractions[0] and fractions[-1] < 1.0
        assert all(isinstance(e["message"], str) and e["message"] for e in mine[:-1])
    first_messages = [e["message"] for e in events if e["id"] == 1 and e["event"] == "progress"]
    assert "loading models" in first_messages and "encoding 12 organs" in first_messages
    second_messages = [e["message"] for e in events if e["id"] == 2 and e["event"] == "progress"]
    assert "loading models" not in second_messages and not any(m.startswith("encoding") for m in second_messages)
    assert two_requests["returncode"] == 0  # shut down on request


def test_worker_second_request_keeps_models_and_encoded_organs(two_requests):
    first, second = two_requests["first"]["worker"], two_requests["second"]["worker"]
    assert first["pid"] == second["pid"]
    assert (first["requests"], second["requests"]) == (1, 2)
    assert (first["models_loaded"], second["models_loaded"]) == (True, False)
    assert first["model_loads"] == second["model_loads"] == 1
    assert (first["encoded_cached"], second["encoded_cached"]) == (False, True)
    assert second["seconds"]["load_models"] == 0.0 and second["seconds"]["encode"] == 0.0
    assert first["seconds"]["load_models"] > 0.0 and first["seconds"]["encode"] > 0.0


def test_worker_results_are_the_files_it_wrote(two_requests):
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    out = two_requests["out"]
    first, second = two_requests["first"], two_requests["second"]
    assert first["files"] == [str(out / "first.seg.nrrd"), str(out / "first.json")]
    assert second["files"] == [str(out / f"second_{n}{suffix}") for n in (1, 2) for suffix in (".seg.nrrd", ".json")]
    volume = read_volume(EXAMPLE_CT)
    for event in (first, second):
        for output in event["result"]["outputs"]:
            written = json.loads(Path(output["files"]["json"]).read_text(encoding="utf-8"))
            assert written["symptom"] == output["symptom"]
            assert [o["name"] for o in written["organs"]] == [o["name"] for o in output["organs"]]
            assert written["inputs"]["volume"]["path"] == str(EXAMPLE_CT)
            assert len(written["inputs"]["volume"]["sha256"]) == 64
            masks = read_organ_masks(output["files"]["segmentation"], volume)
            assert {k: int(m.sum()) for k, m in masks.items()} == EXAMPLE_VOXELS
            relevance = {o["name"]: o["relevance"] for o in output["organs"]}
            assert all(0.0 <= r <= 1.0 for r in relevance.values()) and len(relevance) == 12
    # the same symptom scores the same on the cached encoding as on the fresh one
    fresh = {o["name"]: o for o in first["result"]["outputs"][0]["organs"]}
    cached = {o["name"]: o for o in second["result"]["outputs"][1]["organs"]}
    assert second["result"]["outputs"][1]["symptom"] == GALLSTONES
    for key, organ in fresh.items():
        assert cached[key]["relevance"] == pytest.approx(organ["relevance"], abs=1e-5)
        assert cached[key]["image_score"] == pytest.approx(organ["image_score"], abs=1e-5)
    haematuria = {o["name"]: o["relevance"] for o in second["result"]["outputs"][0]["organs"]}
    assert max(haematuria, key=haematuria.get) in ("kidney_left", "kidney_right")
    assert haematuria["kidney_left"] > haematuria["kidney_right"]


def test_worker_errors_are_events_and_the_worker_stays_up(tmp_path, worker_env):
    """Bad requests get one error event each, the worker answers the next one, and stdout holds only events."""
    label_map_without_scheme = dict(_fields(tmp_path / "c", ["pain"]), label_scheme=None)
    lines = [
        json.dumps(dict(_fields(tmp_path / "a", ["pain"]), id=1, volume=str(tmp_path / "missing.nii.gz"))),
        "this is not json",
        json.dumps({"id": 3, "cmd": "reboot"}),
        json.dumps(dict(_fields(tmp_path / "b", ["   "]), id=4)),
        json.dumps(dict(label_map_without_scheme, id=5)),
        json.dumps(dict(_fields(tmp_path / "d", ["pain"]), id=6, image_weight=3)),
        json.dumps({"id": 7, "cmd": "shutdown"}),
        json.dumps(dict(_fields(tmp_path / "e", ["never read"]), id=8)),
    ]
    before = snapshot(tmp_path)
    done = subprocess.run(scoring_job.worker_command(sys.executable), input="\n".join(lines) + "\n",
                          capture_output=True, text=True, env=worker_env, timeout=600)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]  # every stdout line is a JSON event
    assert {e["event"] for e in events} == {"progress", "error"}
    events = [e for e in events if e["event"] != "progress"]  # a request may report progress before failing
    assert [(e["id"], e["event"]) for e in events] == [(1, "error"), (None, "error"), (3, "error"), (4, "error"),
                                                       (5, "error"), (6, "error")]
    messages = [e["message"] for e in events]
    assert "missing.nii.gz: no such file" in messages[0]
    assert "not a JSON request" in messages[1]
    assert "unknown command 'reboot'" in messages[2]
    assert "symptom 1 is empty" in messages[3]
    assert "label scheme" in messages[4]
    assert "image_weight 3" in messages[5]
    assert snapshot(tmp_path) == before  # nothing written for bad requests, and nothing after shutdown


def test_worker_keeps_stray_prints_off_the_event_stream(tmp_path, worker_env):
    """After claim_stdout, print() and raw writes to file descriptor 1 go to stderr; events stay on stdout."""
    code = ("import os\nfrom MedSORALib.worker import claim_stdout\nevents = claim_stdout()\n"
            "print('a library talking')\nos.write(1, b'raw bytes on fd 1\\n')\n"
            "import warnings; warnings.warn('a warning')\n"
            "events.write('{\"id\": 1, \"event\": \"progress\", \"fraction\": 0.5, \"message\": \"m\"}\\n')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=worker_env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"id": 1, "event": "progress", "fraction": 0.5, "message": "m"}\n'
    assert "a library talking" in done.stderr and "raw bytes on fd 1" in done.stderr and "a warning" in done.stderr


def _started(client, request_id):
    """Wait until the worker reports that it is loading the models (mid-request)."""
    while True:
        event = client.next_event(timeout=300)
        assert event is not None and event["event"] != "error", event
        if event["id"] == request_id and event["event"] == "progress" and event["message"] == "loading models":
            return


def test_worker_cancel_kills_it_and_writes_nothing(tmp_path, worker_env):
    client = WorkerClient(env=worker_env, stderr=subprocess.DEVNULL)
    request_id = client.submit(_fields(tmp_path / "cancelled", [GALLSTONES]))
    _started(client, request_id)
    pid = client.process.pid
    code = client.cancel()
    assert code == -signal.SIGKILL and not client.running
    assert client.next_event(timeout=10) is None  # no result and no error for a cancelled request
    assert list(tmp_path.iterdir()) == []
    # the next request starts a fresh worker
    with pytest.raises(WorkerError, match="no such file"):
        client.run(dict(_fields(tmp_path / "x", ["pain"]), volume=str(tmp_path / "missing.nii.gz")))
    assert client.process.pid != pid
    assert client.shutdown() == 0


def test_worker_crash_is_reported_as_an_error(tmp_path, worker_env):
    client = WorkerClient(env=worker_env, stderr=subprocess.DEVNULL)
    request_id = client.submit(_fields(tmp_path / "crash", [GALLSTONES]))
    _started(client, request_id)
    os.kill(client.process.pid, signal.SIGSEGV)
    with pytest.raises(WorkerError, match=r"stopped unexpectedly \(signal 11\)"):
        client.wait_for(request_id)
    assert not client.running and list(tmp_path.iterdir()) == []


def test_worker_exits_when_its_input_closes(worker_env):
    process = subprocess.Popen(scoring_job.worker_command(sys.executable), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=worker_env)
    process.stdin.close()  # Slicer gone: the worker must not stay behind
    assert process.wait(timeout=120) == 0
    assert process.stdout.read() == b""
    process.stdout.close()


def test_medsora_worker_is_a_cli_subcommand():
    from MedSORALib.cli import build_parser

    args = build_parser().parse_args(["worker"])
    assert args._run.__module__ == "MedSORALib.commands.worker"
    done = subprocess.run([sys.executable, "-m", "MedSORALib", "worker", "--help"], capture_output=True, text=True,
                          env=scoring_job.worker_environment(), timeout=120)
    assert done.returncode == 0 and "JSON" in done.stdout
