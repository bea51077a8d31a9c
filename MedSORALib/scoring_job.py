"""The scoring job and the client of the scoring worker, without Slicer.

What the Slicer panel, the module's logic and scripts need between the scene
and the models, none of which imports ``slicer``, ``vtk`` or Qt:

- :class:`ScoringSettings` (the panel's Advanced section) and
  :func:`resolve_device`;
- the job: a *scorer* is any callable ``scorer(volume, masks, symptoms,
  progress=None) -> [SymptomResult]``. :class:`ModelScorer` is the one that
  loads the trained models (explicitly, in :meth:`ModelScorer.load`, once) and
  calls :func:`MedSORALib.scoring.score_volume`'s steps; tests pass scorers with
  known numbers instead. :func:`score_inputs` runs one on :class:`ScoringInputs`;
- the worker client. ``medsora worker`` (:mod:`MedSORALib.worker`) keeps the
  models loaded in a child process and speaks JSON lines.
  :class:`WorkerProtocol` turns requests into bytes and the child's output
  bytes into events, and reports a child that died with a request pending; it
  does no I/O, so the panel drives it from ``qt.QProcess`` signals and
  :class:`WorkerClient` from :mod:`subprocess` (scripts, tests, benchmarks).

Progress callbacks are always ``callback(fraction, message)`` with ``fraction``
in [0, 1] (:data:`MedSORALib.scoring.Progress`).
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import numpy as np

from .errors import MedSORAError, ModelError, SymptomError
from .scoring import IMAGE_WEIGHT, OrganScore, Progress, SymptomResult
from .volume_io import Volume

#: The folder that holds the ``MedSORALib`` package (put on the worker's ``PYTHONPATH``).
LIBRARY_PARENT = str(Path(__file__).resolve().parent.parent)


class ScoringCancelled(MedSORAError):
    """The user cancelled a running scoring job."""


class WorkerError(MedSORAError):
    """The scoring worker reported an error, or stopped while a request was pending."""


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

def split_symptoms(text: str, one_per_line: bool = False) -> list[str]:
    """Symptom texts from the panel's text box: the whole text, or one symptom per non-empty line."""
    text = (text or "").strip()
    if not text:
        raise SymptomError("Enter a symptom description.")
    if one_per_line:
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [" ".join(text.split())]


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other values unchanged."""
    device = (device or "cpu").strip()
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


@dataclass(frozen=True)
class ScoringSettings:
    """What the Advanced section chooses.

    Attributes:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:0"``, ``"mps"`` or ``"auto"`` (CUDA when available).
        model_dir: folder with ``text/`` and ``image/`` weight folders (empty: the shipped weights).
        text_encoder: sentence encoder name or local folder (empty: the shipped default).
        use_image_model: combine the image-text score with the text prior (else text only).
        image_weight: weight of the image term when the image model is used (see :mod:`MedSORALib.scoring`).
    """

    device: str = "cpu"
    model_dir: str = ""
    text_encoder: str = ""
    use_image_model: bool = True
    image_weight: float = IMAGE_WEIGHT

    @property
    def effective_image_weight(self) -> float:
        """Weight of the image term in the relevance (0 without the image model)."""
        return float(self.image_weight) if self.use_image_model else 0.0

    def request_fields(self) -> dict:
        """The settings as fields of a worker request."""
        return {"device": self.device, "model_dir": self.model_dir, "text_encoder": self.text_encoder,
                "image_weight": self.effective_image_weight}

    @classmethod
    def from_request(cls, request: Mapping[str, Any]) -> "ScoringSettings":
        """Settings from a worker request's fields (missing ones keep their defaults)."""
        weight = request.get("image_weight")
        if weight is None:
            weight = IMAGE_WEIGHT
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0.0 <= float(weight) <= 1.0:
            raise SymptomError(f"image_weight {weight!r} is not a number in 0..1")
        return cls(device=str(request.get("device") or "cpu"), model_dir=str(request.get("model_dir") or ""),
                   text_encoder=str(request.get("text_encoder") or ""), use_image_model=float(weight) > 0.0,
                   image_weight=float(weight))


# --------------------------------------------------------------------------------------------
# The job
# --------------------------------------------------------------------------------------------

@dataclass
class ScoringInputs:
    """A CT (``Volume``, (I, J, K) HU), its organ masks on the CT grid and the symptom texts."""

    volume: Volume
    masks: dict[str, np.ndarray]
    symptoms: list[str]


class Scorer(Protocol):
    """Anything that scores organs: ``scorer(volume, masks, symptoms, progress=None) -> [SymptomResult]``."""

    def __call__(self, volume: Volume, masks: Mapping[str, np.ndarray], symptoms: Sequence[str],
                 progress: Progress | None = None) -> list: ...


class ModelScorer:
    """Scores with the trained models chosen by :class:`ScoringSettings`.

    The models are loaded by :meth:`load` (called by the first scoring when not
    before) and kept by this object; :attr:`loads` counts actual loads, so a
    caller can see that a second scoring did not reload them.
    """

    def __init__(self, settings: ScoringSettings | None = None):
        self.settings = settings or ScoringSettings()
        self.models = None
        self.loads = 0

    @property
    def loaded(self) -> bool:
        return self.models is not None

    def load(self) -> bool:
        """Load the models unless already loaded; True when this call loaded them."""
        if self.models is not None:
            return False
        from .scoring import load_models

        settings = self.settings
        if settings.model_dir and not os.path.isdir(settings.model_dir):
            raise ModelError(f"Model folder {settings.model_dir!r} does not exist.")
        text_dir = os.path.join(settings.model_dir, "text") if settings.model_dir else ""
        image_dir = os.path.join(settings.model_dir, "image") if settings.model_dir else ""
        if settings.model_dir and not (os.path.isdir(text_dir) or os.path.isdir(image_dir)):
            raise ModelError(f"Model folder {settings.model_dir!r} has neither a text/ nor an image/ folder.")
        self.models = load_models(text_weights=text_dir if os.path.isdir(text_dir) else None,
                                  image_weights=image_dir if os.path.isdir(image_dir) else None,
                                  device=resolve_device(settings.device),
                                  text_encoder=settings.text_encoder or None)
        self.loads += 1
        return True

    def encode(self, volume: Volume, masks: Mapping[str, np.ndarray], progress: Progress | None = None):
        """The organs of a CT cropped and encoded once (:func:`MedSORALib.scoring.encode_volume`)."""
        from .scoring import encode_volume

        self.load()
        return encode_volume(volume, masks, self.models, progress)

    def score(self, encoded, symptoms: Sequence[str], progress: Progress | None = None,
              with_passages: bool = True, image_weight: float | None = None) -> list[SymptomResult]:
        """Score an encoded CT for symptoms (:func:`MedSORALib.scoring.score_encoded`).

        ``image_weight`` overrides the settings' weight (same models, another fusion).
        """
        from .scoring import score_encoded

        self.load()
        weight = self.settings.effective_image_weight if image_weight is None else float(image_weight)
        return score_encoded(encoded, symptoms, self.models, image_weight=weight, with_passages=with_passages,
                             progress=progress)

    def __call__(self, volume: Volume, masks: Mapping[str, np.ndarray], symptoms: Sequence[str],
                 progress: Progress | None = None) -> list[SymptomResult]:
        from .scoring import check_symptoms

        texts = check_symptoms(symptoms)
        if not self.loaded:
            if progress:
                progress(0.0, "loading models")
            self.load()
        return self.score(self.encode(volume, masks, progress), texts, progress)


def score_inputs(inputs: ScoringInputs, scorer: Scorer, progress: Progress | None = None) -> list:
    """Run a scorer on the inputs in this process (blocking); returns one result per symptom."""
    return list(scorer(inputs.volume, inputs.masks, inputs.symptoms, progress=progress))


def result_from_dict(data: Mapping[str, Any]) -> SymptomResult:
    """A :class:`SymptomResult` back from its JSON form (``SymptomResult.to_dict``, the worker's ``PREFIX.json``)."""
    organ_scores = []
    for organ in data.get("organs", []):
        image_score = organ.get("image_score")
        organ_scores.append(OrganScore(
            key=str(organ.get("name") or organ.get("key")), display_name=str(organ.get("display_name", "")),
            relevance=float(organ["relevance"]), text_prior=float(organ["text_prior"]),
            image_score=float("nan") if image_score is None else float(image_score),
            voxels=int(organ.get("voxels", 0)), volume_ml=float(organ.get("volume_ml", 0.0)),
            finding_boost=float(organ.get("finding_boost", 0.0)), why=str(organ.get("why", "")),
            measurements=dict(organ.get("measurements") or {}), findings=list(organ.get("findings") or []),
            findings_not_assessed=list(organ.get("findings_not_assessed") or [])))
    return SymptomResult(symptom=str(data["symptom"]), in_domain=bool(data["in_domain"]),
                         ood_score=float(data.get("ood_score", 0.0)), laterality=data.get("laterality"),
                         organs=organ_scores, passages=dict(data.get("passages") or {}),
                         models=dict(data.get("models") or {}),
                         contrast_phase=dict(data.get("contrast_phase") or {}))


# --------------------------------------------------------------------------------------------
# The worker protocol, without I/O
# --------------------------------------------------------------------------------------------

#: Events the worker writes, one JSON object a line.
EVENTS = ("progress", "result", "error")


def worker_command(python: str | None = None) -> list[str]:
    """Command line that starts a worker: ``python -m MedSORALib worker``.

    Args:
        python: interpreter (default: ``PythonSlicer`` when on the ``PATH``, as
            inside Slicer, else this interpreter).
    """
    if python is None:
        python = shutil.which("PythonSlicer") or sys.executable
    return [python, "-m", "MedSORALib", "worker"]


def worker_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the worker: this ``MedSORALib`` first on ``PYTHONPATH``, unbuffered output."""
    env = dict(os.environ if base is None else base)
    paths = [LIBRARY_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != LIBRARY_PARENT]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class WorkerProtocol:
    """Requests out, events in, for one worker process (the caller does the I/O).

    :meth:`request` registers a pending request and returns the line to write
    to the worker's stdin. :meth:`feed` takes bytes read from its stdout and
    returns the complete events (dicts with ``id`` and ``event``); a line that is
    not a JSON event becomes an ``error`` event of the pending request.
    :meth:`exited` turns the end of the process into an ``error`` event for each
    request still pending, unless :meth:`cancel` was called first.
    """

    next_id: int = 1
    pending: list[int] = field(default_factory=list)
    cancelled: bool = False
    _buffer: bytes = b""

    def request(self, fields: Mapping[str, Any]) -> tuple[int, bytes]:
        """``(id, line)`` for a scoring request with the given fields (volume, segmentation, ...)."""
        request_id = self.next_id
        self.next_id += 1
        self.pending.append(request_id)
        return request_id, self.encode({"id": request_id, **dict(fields)})

    def shutdown(self) -> bytes:
        """The line asking the worker to exit."""
        request_id = self.next_id
        self.next_id += 1
        return self.encode({"id": request_id, "cmd": "shutdown"})

    @staticmethod
    def encode(message: Mapping[str, Any]) -> bytes:
        return (json.dumps(message, ensure_ascii=True) + "\n").encode("ascii")

    def feed(self, data: bytes) -> list[dict]:
        self._buffer += data
        events = []
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                events.append(self._event(line))
        return events

    def _event(self, line: bytes) -> dict:
        try:
            event = json.loads(line.decode("utf-8"))
            if not isinstance(event, dict) or event.get("event") not in EVENTS:
                raise ValueError("not an event")
        except ValueError:
            shown = line.decode("utf-8", "replace")[:200]
            return {"id": self.pending[0] if self.pending else None, "event": "error",
                    "message": f"The scoring worker wrote an unexpected line: {shown!r}"}
        if event["event"] in ("result", "error") and event.get("id") in self.pending:
            self.pending.remove(event["id"])
        return event

    def cancel(self) -> None:
        """Mark the pending requests as cancelled (the caller then kills the process)."""
        self.cancelled = True

    def exited(self, exit_code: int | None) -> list[dict]:
        """Error events for the requests left pending when the worker process ended."""
        events = []
        if not self.cancelled:
            how = f"exit code {exit_code}" if exit_code is not None and exit_code >= 0 else (
                f"signal {-exit_code}" if exit_code is not None else "crashed")
            for request_id in self.pending:
                events.append({"id": request_id, "event": "error",
                               "message": f"The scoring worker stopped unexpectedly ({how})."})
        self.pending.clear()
        return events


def request_fields(volume: str | os.PathLike, segmentation: str | os.PathLike, symptoms: Iterable[str],
                   output: str | os.PathLike, settings: ScoringSettings | None = None,
                   label_scheme: str | None = None, **extra) -> dict:
    """The fields of a scoring request (paths as text, settings flattened)."""
    fields = {"volume": str(volume), "segmentation": str(segmentation), "label_scheme": label_scheme,
              "symptoms": list(symptoms), "output": str(output)}
    fields.update((settings or ScoringSettings()).request_fields())
    fields.update(extra)
    return fields


class WorkerClient:
    """A ``medsora worker`` child process driven through :mod:`subprocess` (scripts, tests, benchmarks).

    The process starts on the first request and is kept for the next ones (the
    models stay loaded in it). A reader thread turns its stdout into events; its
    stderr (logs, warnings) goes to ``stderr`` (default: inherited).

    Example::

        with WorkerClient() as worker:
            event = worker.run(request_fields("ct.nii.gz", "seg.nii.gz", ["jaundice"], "out/p1",
                                              label_scheme="totalsegmentator"))
            event["files"]
    """

    def __init__(self, command: Sequence[str] | None = None, env: Mapping[str, str] | None = None, stderr=None):
        self.command = list(command or worker_command())
        self.env = dict(env) if env is not None else worker_environment()
        self.stderr = stderr
        self.process: subprocess.Popen | None = None
        self.protocol = WorkerProtocol()
        self._events: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.protocol = WorkerProtocol()
        self._events = queue.Queue()
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, env=self.env, bufsize=0)
        self._reader = threading.Thread(target=self._read, args=(self.process, self.protocol, self._events),
                                        name="medsora-worker-reader", daemon=True)
        self._reader.start()

    @staticmethod
    def _read(process: subprocess.Popen, protocol: WorkerProtocol, events: queue.Queue) -> None:
        descriptor = process.stdout.fileno()
        while True:
            data = os.read(descriptor, 65536)  # returns what is there, b"" at end of output
            if not data:
                break
            for event in protocol.feed(data):
                events.put(event)
        for event in protocol.exited(process.wait()):
            events.put(event)
        events.put(None)  # the process has ended

    def submit(self, fields: Mapping[str, Any]) -> int:
        """Send a scoring request (starting the worker if needed); returns its id."""
        self.start()
        request_id, line = self.protocol.request(fields)
        self.process.stdin.write(line)
        self.process.stdin.flush()
        return request_id

    def next_event(self, timeout: float | None = None) -> dict | None:
        """The next event, or ``None`` when the process has ended (raises ``queue.Empty`` on timeout)."""
        return self._events.get(timeout=timeout)

    def wait_for(self, request_id: int, progress: Progress | None = None,
                 on_event: Callable[[dict], None] | None = None) -> dict:
        """Block until the request's ``result`` event and return it; raise :class:`WorkerError` on ``error``."""
        while True:
            event = self.next_event()
            if event is None:
                raise WorkerError("The scoring worker ended without answering.")
            if on_event is not None:
                on_event(event)
            if event.get("id") != request_id:
                continue
            if event["event"] == "progress" and progress is not None:
                progress(float(event.get("fraction", 0.0)), str(event.get("message", "")))
            elif event["event"] == "result":
                return event
            elif event["event"] == "error":
                raise WorkerError(str(event.get("message", "The scoring worker failed.")))

    def run(self, fields: Mapping[str, Any], progress: Progress | None = None) -> dict:
        """Submit a request and wait for its result event."""
        return self.wait_for(self.submit(fields), progress)

    def cancel(self, timeout: float = 5.0) -> int | None:
        """Kill the worker (the models go with it); returns its exit status."""
        if self.process is None:
            return None
        self.protocol.cancel()
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait(timeout)
        self._close_pipes()
        return code

    def shutdown(self, timeout: float = 30.0) -> int | None:
        """Ask the worker to exit after its current request; kill it if it does not within ``timeout`` s."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                self.process.stdin.write(self.protocol.shutdown())
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pipes()
        return self.process.returncode

    def _close_pipes(self) -> None:
        if self._reader is not None:
            self._reader.join(5.0)
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc) -> None:
        if self.running:
            self.shutdown()
