"""``medsora worker`` as real child processes: progress, result, error, cancel, crash, models kept loaded.

Each test starts ``python -m MedSORALib worker`` through the same client code
the scripts use (:class:`MedSORALib.worker.WorkerClient`) or by hand; the
protocol's own tests (schema, events, no process) come first.
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
from MedSORALib import worker as worker_package
from MedSORALib.errors import MedSORAError
from MedSORALib.session import ScoringSettings
from MedSORALib.worker import WorkerClient, WorkerError, WorkerProtocol, request_fields
from MedSORALib.worker.protocol import RequestError, parse_request

ROOT = Path(__file__).resolve().parents[1]
GALLSTONES = "Pain in the right upper abdomen after fatty meals, with nausea"
HAEMATURIA = "Blood in the urine and pain in the left flank"


def _strict(line: str) -> dict:
    """One stdout line as strict JSON (NaN or Infinity fail)."""
    def refuse(name):
        raise ValueError(f"{name} in the worker's output")

    event = json.loads(line, parse_constant=refuse)
    assert isinstance(event, dict) and event["event"] in ("progress", "result", "error"), line
    return event


# ------------------------------------------------------------------------------------------
# protocol (no process: the request schema, bytes in, events out)
# ------------------------------------------------------------------------------------------

def test_request_fields_parse_back_to_the_same_settings(tmp_path):
    settings = ScoringSettings(device="cpu", model_dir="/m", text_encoder="/e", image_weight=0.4, passages=False,
                               preview=True)
    fields = request_fields("ct.nrrd", "seg.seg.nrrd", [" pain  after meals "], "/tmp/out", settings)
    assert fields == {"volume": "ct.nrrd", "segmentation": "seg.seg.nrrd", "label_scheme": None,
                      "symptoms": [" pain  after meals "], "output": "/tmp/out", "device": "cpu", "model_dir": "/m",
                      "text_encoder": "/e", "image_weight": 0.4, "with_passages": False, "preview": True}
    request = parse_request(json.dumps({"id": 7, **fields}))
    assert request.id == 7 and request.settings == settings
    assert request.symptoms == ("pain after meals",)  # checked and normalised once, here
    # a request with only the required fields scores with every default
    bare = parse_request({"id": 1, "volume": "a", "segmentation": "b", "symptoms": ["pain"], "output": "o"})
    assert bare.settings == ScoringSettings() and bare.label_scheme is None
    assert parse_request('{"id": "x", "cmd": "shutdown"}').cmd == "shutdown"


BASE = {"volume": "ct.nii.gz", "segmentation": "seg.nii.gz", "symptoms": ["pain"], "output": "out/p"}


@pytest.mark.parametrize("line, request_id, message", [
    ("[" * 200_000, None, "nested deeper than 2 levels"),
    ('{"id": NaN}', None, "NaN is not a JSON number"),
    (json.dumps({"id": 3, **BASE, "image_weight": 1e400}).replace("1e+400", "Infinity"), None, "Infinity"),
    (json.dumps({"id": 4, **BASE, "preview": "false"}), 4, "'preview' must be true or false, not text"),
    (json.dumps({"id": 5, **BASE, "with_passages": 0}), 5, "'with_passages' must be true or false"),
    (json.dumps({"id": 6, **BASE, "symptoms": {"jaundice": 1}}), 6, "'symptoms' must be a list of 1 to 100 texts"),
    (json.dumps({"id": 7, **BASE, "symptoms": "jaundice"}), 7, "'symptoms' must be a list"),
    (json.dumps({"id": 8, **BASE, "symptoms": [["nested"]]}), None, "nested deeper"),
    (json.dumps({"id": 9, **BASE, "image_weight": True}), 9, "'image_weight' must be a number in 0..1"),
    (json.dumps({"id": 10, **BASE, "volume": 12}), 10, "'volume' must be non-empty text"),
    (json.dumps({"id": 11, **BASE, "label_scheme": "nnunet"}), 11, "unknown label scheme 'nnunet'"),
    (json.dumps({"id": 12, **BASE, "outptu": "x"}), 12, "unknown request field(s) 'outptu'"),
    (json.dumps({"id": True, **BASE}), None, "'id' must be an integer"),
    (json.dumps({"id": 2 ** 60, **BASE}), None, "'id' must be an integer"),
    (json.dumps({"id": 13, "volume": "a"}), 13, "the request has no 'segmentation', 'symptoms', 'output'"),
    ('["a list"]', None, "a request is a JSON object"),
    ('{"id": 14, "cmd": ["shutdown"]}', 14, "unknown command a list"),
    (b'{"id": 15, "symptoms": ["\xff"]}', None, "not UTF-8"),
])
def test_every_bad_request_is_one_error_naming_the_field(line, request_id, message):
    with pytest.raises(RequestError) as caught:
        parse_request(line)
    assert caught.value.request_id == request_id
    assert message in str(caught.value)
    assert isinstance(caught.value, MedSORAError)


def test_events_are_strict_ascii_json():
    from MedSORALib.worker.protocol import encode_event

    line = encode_event({"id": 1, "event": "result", "x": [float("nan"), float("inf"), 0.5], "t": "caf\u00e9"})
    assert line.endswith("\n") and line.isascii()
    assert _strict(line) == {"id": 1, "event": "result", "x": [None, None, 0.5], "t": "caf\u00e9"}


def test_protocol_requests_have_increasing_ids_and_are_one_line():
    protocol = WorkerProtocol()
    fields = request_fields("ct.nrrd", "seg.seg.nrrd", ["pain"], "/tmp/out", ScoringSettings(device="cpu"))
    first, line1 = protocol.request(fields)
    second, line2 = protocol.request(fields)
    assert (first, second) == (1, 2) and protocol.pending == [1, 2]
    assert line1.endswith(b"\n") and line1.count(b"\n") == 1
    assert json.loads(line1) == {"id": 1, **fields}
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
    command = worker_package.worker_command("/opt/Slicer/bin/PythonSlicer")
    assert command == ["/opt/Slicer/bin/PythonSlicer", "-m", "MedSORALib", "worker"]
    env = worker_package.worker_environment({"PYTHONPATH": "/x", "HOME": "/h"})
    assert env["PYTHONPATH"].split(":")[:2] == [str(ROOT), "/x"] and env["HOME"] == "/h"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert issubclass(WorkerError, MedSORAError)


# ------------------------------------------------------------------------------------------
# worker processes
# ------------------------------------------------------------------------------------------

def _fields(output, symptoms, **extra):
    return request_fields(EXAMPLE_CT, EXAMPLE_SEG, symptoms, output, ScoringSettings(device="cpu"),
                          label_scheme="totalsegmentator", **extra)


@pytest.fixture()
def worker_env():
    env = worker_package.worker_environment()
    env["OMP_NUM_THREADS"] = "1"  # a loaded 2-core machine: one thread per worker
    return env


@pytest.fixture(scope="module")
def two_requests(tmp_path_factory):
    """One worker answering two requests on the example CT, the second with two symptoms."""
    out = tmp_path_factory.mktemp("worker")
    env = worker_package.worker_environment()
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
    assert "loading models" in first_messages and "measuring 12 organs against reference ranges" in first_messages
    assert not any(m.startswith("encoding") for m in first_messages)  # image weight 0: no organ is encoded
    second_messages = [e["message"] for e in events if e["id"] == 2 and e["event"] == "progress"]
    assert "loading models" not in second_messages and not any(m.startswith("measuring") for m in second_messages)
    assert two_requests["returncode"] == 0  # shut down on request


def test_worker_second_request_keeps_models_and_the_opened_case(two_requests):
    first, second = two_requests["first"]["worker"], two_requests["second"]["worker"]
    assert first["pid"] == second["pid"]
    assert (first["requests"], second["requests"]) == (1, 2)
    assert (first["models_loaded"], second["models_loaded"]) == (True, False)
    assert first["model_loads"] == second["model_loads"] == 1
    assert (first["case_cached"], second["case_cached"]) == (False, True)
    assert (first["organs_encoded"], second["organs_encoded"]) == (False, False)
    assert second["seconds"]["load_models"] == 0.0 and first["seconds"]["load_models"] > 0.0


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
    # the same symptom scores the same on the cached case as on the fresh one
    fresh = {o["name"]: o for o in first["result"]["outputs"][0]["organs"]}
    cached = {o["name"]: o for o in second["result"]["outputs"][1]["organs"]}
    assert second["result"]["outputs"][1]["symptom"] == GALLSTONES
    for key, organ in fresh.items():
        assert cached[key]["relevance"] == pytest.approx(organ["relevance"], abs=1e-5)
        assert cached[key]["image_score"] is None and organ["image_score"] is None
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
    done = subprocess.run(worker_package.worker_command(sys.executable), input="\n".join(lines) + "\n",
                          capture_output=True, text=True, env=worker_env, timeout=600)
    assert done.returncode == 0, done.stderr
    events = [_strict(line) for line in done.stdout.splitlines()]  # every stdout line is a JSON event
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
    assert "'image_weight' must be a number in 0..1" in messages[5]
    assert snapshot(tmp_path) == before  # nothing written for bad requests, and nothing after shutdown


def test_worker_keeps_stray_prints_off_the_event_stream(tmp_path, worker_env):
    """After claim_stdout, print() and raw writes to file descriptor 1 go to stderr; events stay on stdout."""
    code = ("import os\nfrom MedSORALib.worker.server import claim_stdout\nevents = claim_stdout()\n"
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
    process = subprocess.Popen(worker_package.worker_command(sys.executable), stdin=subprocess.PIPE,
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
                          env=worker_package.worker_environment(), timeout=120)
    assert done.returncode == 0 and "JSON" in done.stdout


def test_worker_cannot_be_knocked_over(tmp_path, worker_env):
    """Each hostile request gets one error event (nothing written, inputs untouched); the next good one is answered."""
    from MedSORALib.segmentation_io import write_seg_nrrd
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    volume = read_volume(EXAMPLE_CT)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    organs = write_seg_nrrd(inputs / "organs.seg.nrrd", read_organ_masks(EXAMPLE_SEG, volume, "totalsegmentator"),
                            volume)
    fifo = inputs / "ct.fifo"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    good = dict(request_fields(EXAMPLE_CT, organs, [GALLSTONES], out / "good"), id=99)
    lines = [
        "[" * 200_000,
        '{"id": NaN}',
        json.dumps(dict(good, id=3, preview="false")),
        json.dumps(dict(good, id=4, symptoms={GALLSTONES: 1})),
        json.dumps(dict(good, id=5, output=str(inputs / "organs"))),  # PREFIX.seg.nrrd is the input
        json.dumps(dict(good, id=6, volume=str(fifo))),  # would block on open
        json.dumps(dict(good, id=7, volume="/proc/self/fd/0")),  # would swallow the next request
        json.dumps(dict(good, id=8, segmentation=str(fifo))),
        json.dumps(dict(good, id=9, volume="x" * (2 << 20))),  # a line over 1 MiB
        json.dumps(good),
    ]
    before = snapshot(inputs)
    process = subprocess.run(worker_package.worker_command(sys.executable), input="\n".join(lines) + "\n",
                             capture_output=True, text=True, env=worker_env, timeout=600)
    assert process.returncode == 0, process.stderr
    events = [_strict(line) for line in process.stdout.splitlines()]
    answers = [e for e in events if e["event"] != "progress"]
    assert [(e["id"], e["event"]) for e in answers] == [
        (None, "error"), (None, "error"), (3, "error"), (4, "error"), (5, "error"), (6, "error"), (7, "error"),
        (8, "error"), (None, "error"), (99, "result")]
    messages = [e.get("message", "") for e in answers]
    assert "nested deeper" in messages[0] and "NaN" in messages[1]
    assert "'preview' must be true or false" in messages[2] and "'symptoms' must be a list" in messages[3]
    assert f"would replace the input {organs}" in messages[4]
    assert "ct.fifo: not a regular file (volume)" in messages[5]
    assert "/proc/self/fd/0: not a regular file (volume)" in messages[6]
    assert "ct.fifo: not a regular file (segmentation)" in messages[7]
    assert "longer than 1048576 bytes" in messages[8]
    assert not any(e["event"] == "progress" and e["id"] != 99 for e in events)  # refused before any work
    assert snapshot(inputs) == before  # the input segmentation was not replaced
    result = answers[-1]
    assert result["files"] == [str(out / "good.seg.nrrd"), str(out / "good.json")]
    (output,) = result["result"]["outputs"]
    assert output["symptom"] == GALLSTONES and len(output["organs"]) == 12
    assert {o["name"] for o in output["organs"][:3]} & {"gallbladder", "liver"}
