"""The worker process: read request lines, answer each through a scoring session, write events.

Every line gets an answer and no line can stop the worker: a request that
breaks the schema (:func:`MedSORALib.worker.protocol.parse_request`) or fails
while it runs gets an ``error`` event, and the next request is read. Only
``shutdown`` or the end of stdin end it. Events go to the original stdout as
strict JSON; anything else a library prints goes to stderr (:func:`claim_stdout`).
"""
from __future__ import annotations

import os
import stat
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Callable, Iterator

from ..errors import InputFileError, MedSORAError
from ..session import ScoringSession, check_outputs
from .protocol import MAX_LINE_BYTES, Command, RequestError, ScoreRequest, encode_event, error_event, parse_request


def claim_stdout() -> IO[str]:
    """A text stream on the original stdout for events; file descriptor 1 and ``sys.stdout`` now go to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", encoding="ascii", buffering=1)


def read_lines(stream: IO[bytes], limit: int = MAX_LINE_BYTES) -> Iterator[bytes | None]:
    """The lines of a byte stream without their newline; ``None`` for a line longer than ``limit`` (skipped)."""
    while True:
        line = stream.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # drop the rest of the over-long line
                line = stream.readline(1 << 16)
            yield None
            continue
        yield line.rstrip(b"\r\n")


def check_input_file(path: str, name: str, folder_allowed: bool = False) -> Path:
    """An existing regular file (or folder, for a DICOM series), checked with ``stat`` before it is opened:
    a FIFO, a device or ``/proc/self/fd/0`` would block the worker."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise InputFileError(f"{path}: no such file or folder ({name})") from None
    if stat.S_ISREG(mode) or (folder_allowed and stat.S_ISDIR(mode)):
        return Path(path)
    raise InputFileError(f"{path}: not a regular file ({name})")


class Worker:
    """Answers requests one after the other, keeping a scoring session per model choice between them.

    Args:
        emit: writes one event (a dict).
    """

    def __init__(self, emit: Callable[[dict], None]):
        self.emit = emit
        self.sessions: dict[tuple, ScoringSession] = {}
        self.requests = 0

    @property
    def model_loads(self) -> int:
        return sum(s.loads for s in self.sessions.values())

    def handle(self, line: bytes | str | None) -> bool:
        """Answer one request line (``None``: a line over the size limit); False when the worker should exit."""
        request_id = None
        try:
            if line is None:
                raise RequestError(f"request line longer than {MAX_LINE_BYTES} bytes")
            request = parse_request(line)
            request_id = request.id
            if isinstance(request, Command):
                return request.cmd != "shutdown"
            self.requests += 1
            self.emit({"id": request_id, "event": "result", **self.score(request)})
        except RequestError as error:
            self.emit(error_event(error.request_id, error))
        except MedSORAError as error:
            self.emit(error_event(request_id, error))
        except Exception as error:  # reported to the client; the worker stays up for the next request
            traceback.print_exc(file=sys.stderr)
            self.emit(error_event(request_id, f"{type(error).__name__}: {error}"))
        return True

    def score(self, request: ScoreRequest) -> dict:
        """Open the case, score the symptoms and write the files of one request; the ``result`` event's fields."""
        def say(fraction: float, message: str) -> None:
            self.emit({"id": request.id, "event": "progress", "fraction": round(fraction, 4), "message": str(message)})

        def progress(start: float, span: float):  # a step's own 0..1 mapped onto its share of the request
            return lambda fraction, message: say(start + span * min(max(float(fraction), 0.0), 1.0), message)

        settings = request.settings
        volume = check_input_file(request.volume, "volume", folder_allowed=True)
        segmentation = check_input_file(request.segmentation, "segmentation")
        prefix = check_outputs(request.output, len(request.symptoms), [volume, segmentation],
                               preview=settings.preview, option="output")
        session = self.sessions.setdefault(settings.model_key, ScoringSession(settings))
        seconds: dict[str, float] = {}

        started = time.perf_counter()
        patient = request.patient
        if patient is not None and Path(volume).is_dir():
            from ..patient import patient_from_dicom

            patient = patient.merged(patient_from_dicom(volume))
        case = session.open(volume, segmentation, request.label_scheme, progress=progress(0.0, 0.25),
                            patient=patient)
        seconds["open"] = time.perf_counter() - started
        cached = session.last_open_cached
        started = time.perf_counter()
        loaded_now = False
        if not session.loaded:
            say(0.25, "loading models")
            loaded_now = session.load()
        seconds["load_models"] = time.perf_counter() - started
        started = time.perf_counter()
        results = session.score(case, request.symptoms, image_weight=settings.image_weight,
                                passages=settings.passages, progress=progress(0.3, 0.6))
        seconds["score"] = time.perf_counter() - started
        started = time.perf_counter()
        say(0.92, "writing the results")
        written = session.write(case, results, prefix, preview=settings.preview)
        seconds["write"] = time.perf_counter() - started
        outputs = [{"prefix": str(files["json"])[: -len(".json")],
                    "files": {kind: str(path) for kind, path in files.items()}, **result.to_dict()}
                   for result, files in zip(results, written)]
        return {"files": [str(path) for files in written for path in files.values()],
                "result": {"outputs": outputs},
                "worker": {"pid": os.getpid(), "requests": self.requests, "model_loads": self.model_loads,
                           "models_loaded": loaded_now, "case_cached": cached, "organs_encoded": case.encoded,
                           "seconds": {k: round(v, 4) for k, v in seconds.items()}}}


def serve(stdin: IO[bytes] | None = None, events: IO[str] | None = None) -> int:
    """Answer requests from ``stdin`` until ``shutdown`` or end of input; returns the exit status (0)."""
    stdin = stdin if stdin is not None else sys.stdin.buffer
    events = events if events is not None else claim_stdout()

    def emit(event: dict) -> None:
        events.write(encode_event(event))
        events.flush()

    worker = Worker(emit)
    for line in read_lines(stdin):
        if line is not None and not line.strip():
            continue
        if not worker.handle(line):
            break
    return 0
