"""``medsora worker``: a scoring process that keeps the models loaded and speaks JSON lines.

The 3D Slicer panel starts one on its first Apply (``PythonSlicer -m MedSORALib
worker``) and keeps it, so that torch, the models and a CT's encoded organs
live outside Slicer's process: the application stays responsive, Cancel kills
the process at once, and a crash in torch ends the worker, not Slicer.

Protocol: one JSON object per line in each direction (UTF-8).

Requests on stdin::

    {"id": 1, "volume": "ct.nrrd", "segmentation": "organs.seg.nrrd", "label_scheme": null,
     "symptoms": ["jaundice and pale stools"], "output": "/tmp/run/out", "device": "cpu",
     "image_weight": 0.25, "model_dir": "", "text_encoder": "", "with_passages": true, "preview": false}
    {"id": 2, "cmd": "shutdown"}

``label_scheme`` is needed for label maps (not for ``.seg.nrrd``); the fields
after ``output`` are optional. Events on stdout, for each request::

    {"id": 1, "event": "progress", "fraction": 0.4, "message": "encoding 12 organs"}
    {"id": 1, "event": "result", "files": [...], "result": {"outputs": [...]}, "worker": {...}}
    {"id": 1, "event": "error", "message": "..."}

``result.outputs`` holds, per symptom, its output prefix, the files written
there (as ``medsora score`` writes them: ``PREFIX.seg.nrrd`` and ``PREFIX.json``,
``PREFIX_1`` ... for several symptoms) and the scored result.
``worker`` tells how the request ran: ``models_loaded`` (this request loaded
the models), ``model_loads`` (loads since the worker started), ``encoded_cached``
(the organs of this CT were encoded by an earlier request), ``requests`` and
``seconds`` per step. Nothing else is written to stdout: the worker moves
stdout's file descriptor to stderr at start, so prints and warnings of any
library land in the log. The worker exits on ``shutdown`` or when stdin closes.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import IO, Any, Mapping

from .errors import InputFileError, MedSORAError
from .scoring_job import ModelScorer, ScoringSettings


def claim_stdout() -> IO[str]:
    """A text stream on the original stdout for events; file descriptor 1 and ``sys.stdout`` now go to stderr."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)


class ScoringWorker:
    """Handles requests one after the other, keeping models and the last encoded CT between them."""

    def __init__(self, emit):
        self.emit = emit
        self.scorers: dict[tuple, ModelScorer] = {}
        self.requests = 0
        self._encoded_key: tuple | None = None
        self._encoded = None

    @property
    def model_loads(self) -> int:
        return sum(s.loads for s in self.scorers.values())

    def handle(self, request: Mapping[str, Any]) -> bool:
        """Answer one request; False when the worker should exit."""
        request_id = request.get("id")
        command = request.get("cmd")
        if command == "shutdown":
            return False
        try:
            if command is not None:
                raise MedSORAError(f"unknown command {command!r}; known: shutdown")
            self.requests += 1
            self.emit({"id": request_id, "event": "result", **self.score(request_id, request)})
        except MedSORAError as error:
            self.emit({"id": request_id, "event": "error", "message": str(error)})
        except Exception as error:  # reported to the client; the worker stays up for the next request
            traceback.print_exc(file=sys.stderr)
            self.emit({"id": request_id, "event": "error", "message": f"{type(error).__name__}: {error}"})
        return True

    def _progress(self, request_id, fraction: float, message: str) -> None:
        self.emit({"id": request_id, "event": "progress", "fraction": round(float(fraction), 4),
                   "message": str(message)})

    def score(self, request_id, request: Mapping[str, Any]) -> dict:
        from .cases import load_case
        from .result_files import output_prefixes, write_result
        from .scoring import check_symptoms

        seconds: dict[str, float] = {}
        volume_path, segmentation_path = _path(request, "volume"), _path(request, "segmentation")
        prefix = _output_prefix(request)
        symptoms = request.get("symptoms", request.get("symptom"))
        symptoms = check_symptoms([symptoms] if isinstance(symptoms, str) else list(symptoms or []))
        settings = ScoringSettings.from_request(request)
        label_scheme = request.get("label_scheme") or None
        with_passages = bool(request.get("with_passages", True))

        started = time.perf_counter()
        self._progress(request_id, 0.0, "reading the CT and its organ segmentation")
        # The same case reading as `medsora score` (checksums, implausible-volume warnings on stderr).
        case = load_case(volume_path, segmentation_path, label_scheme, settings.device, log=lambda message: None)
        volume, masks, inputs = case.volume, case.masks, case.inputs
        seconds["read"] = time.perf_counter() - started

        model_key = (settings.device, settings.model_dir, settings.text_encoder)
        scorer = self.scorers.setdefault(model_key, ModelScorer(settings))
        started = time.perf_counter()
        loaded_now = False
        if not scorer.loaded:
            self._progress(request_id, 0.1, "loading models")
            loaded_now = scorer.load()
        seconds["load_models"] = time.perf_counter() - started

        def scoring_progress(fraction: float, message: str) -> None:
            self._progress(request_id, 0.3 + 0.6 * min(max(float(fraction), 0.0), 1.0), message)

        # The organs of a CT are encoded once: a second request on the same files (same content,
        # same models) only reads the symptoms.
        encoded_key = (model_key, inputs["volume"]["sha256"], inputs["segmentation"]["sha256"], label_scheme)
        started = time.perf_counter()
        cached = encoded_key == self._encoded_key
        if not cached:
            self._encoded_key, self._encoded = None, None
            self._encoded = scorer.encode(volume, masks, scoring_progress)
            self._encoded_key = encoded_key
        seconds["encode"] = time.perf_counter() - started
        started = time.perf_counter()
        results = scorer.score(self._encoded, symptoms, scoring_progress, with_passages=with_passages,
                               image_weight=settings.effective_image_weight)
        seconds["score"] = time.perf_counter() - started

        started = time.perf_counter()
        self._progress(request_id, 0.92, "writing the results")
        outputs, files = [], []
        for result, out in zip(results, output_prefixes(prefix, len(results))):
            written = write_result(out, result, volume, self._encoded.masks, inputs=inputs,
                                   preview=bool(request.get("preview", False)))
            outputs.append({"prefix": str(out), "files": {kind: str(path) for kind, path in written.items()},
                            **result.to_dict()})
            files.extend(str(path) for path in written.values())
        seconds["write"] = time.perf_counter() - started
        return {"files": files, "result": {"outputs": outputs},
                "worker": {"pid": os.getpid(), "requests": self.requests, "model_loads": self.model_loads,
                           "models_loaded": loaded_now, "encoded_cached": cached,
                           "seconds": {k: round(v, 4) for k, v in seconds.items()}}}


def _path(request: Mapping[str, Any], name: str) -> Path:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise InputFileError(f"the request has no {name!r} path")
    path = Path(value)
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder ({name})")
    return path


def _output_prefix(request: Mapping[str, Any]) -> Path:
    value = request.get("output")
    if not isinstance(value, str) or not value:
        raise InputFileError("the request has no 'output' prefix")
    prefix = Path(value)
    if prefix.name in ("", ".", "..") or prefix.is_dir():
        raise InputFileError(f"output {prefix}: give a file prefix such as out/patient1, not a folder")
    return prefix


def serve(stdin: IO[str] | None = None, events: IO[str] | None = None) -> int:
    """Answer requests from ``stdin`` until ``shutdown`` or end of input; returns the exit status (0)."""
    stdin = stdin if stdin is not None else sys.stdin
    events = events if events is not None else claim_stdout()

    def emit(event: dict) -> None:
        events.write(json.dumps(event, ensure_ascii=True, default=str) + "\n")
        events.flush()

    worker = ScoringWorker(emit)
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError:
            emit({"id": None, "event": "error", "message": f"not a JSON request: {line.strip()[:200]!r}"})
            continue
        if not worker.handle(request):
            break
    return 0

