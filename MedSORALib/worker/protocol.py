"""The worker's protocol: the one request schema, and events as strict JSON lines (docs/worker.md).

Both sides use this module: the server parses each line with
:func:`parse_request` (every check of a request is here) and writes events
with :func:`encode_event`; clients build requests with :func:`request_fields`.
Nothing here does I/O.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ..errors import MedSORAError
from ..organs import LABEL_SCHEMES, normalize_scheme
from ..scoring import check_symptoms
from ..session import ScoringSettings

#: Events the worker writes, one JSON object a line.
EVENTS = ("progress", "result", "error")
#: Commands a request may give instead of scoring.
COMMANDS = ("shutdown",)
#: Longest request line, in bytes (a request is a few paths and symptoms).
MAX_LINE_BYTES = 1 << 20
#: Deepest nesting of arrays and objects in a request (the object, its ``symptoms`` list).
MAX_DEPTH = 2
#: Most symptoms in one request.
MAX_SYMPTOMS = 100
#: Longest path or option text, in characters.
MAX_TEXT = 4096
#: Largest integer request id (exact in every JSON reader).
MAX_ID = 2 ** 53

#: The request fields: name -> (type, required, meaning). The one place they are listed.
FIELDS: dict[str, tuple[str, bool, str]] = {
    "id": ("integer, text or null", False, "echoed in every event of the request"),
    "cmd": ("text", False, "'shutdown': exit after the current request"),
    "volume": ("text", True, "CT file or DICOM series folder"),
    "segmentation": ("text", True, "label map or .seg.nrrd on the CT grid"),
    "label_scheme": ("text or null", False, f"label values of a label map: {', '.join(LABEL_SCHEMES)}"),
    "symptoms": ("list of text", True, f"1 to {MAX_SYMPTOMS} symptoms"),
    "output": ("text", True, "output prefix (PREFIX, or PREFIX_1 ... for several symptoms)"),
    "device": ("text", False, "torch device: cpu, cuda, cuda:N, mps or auto"),
    "model_dir": ("text", False, "folder with text/ and image/ weights; empty: shipped"),
    "text_encoder": ("text", False, "local sentence-encoder folder; empty: bundled"),
    "image_weight": ("number", False, "weight of the image term, 0..1 (0: the organs are not encoded)"),
    "with_passages": ("true or false", False, "supporting knowledge passages"),
    "preview": ("true or false", False, "also write PREFIX.png"),
    "age": ("text, number or null", False, "patient's age in years or a DICOM age (064Y), for the reference ranges"),
    "sex": ("text or null", False, "patient's sex: F, M or O, for the reference ranges"),
}


class RequestError(MedSORAError):
    """A request line that does not follow the schema; ``request_id`` is its id when that could be read."""

    def __init__(self, message: str, request_id: Any = None):
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True)
class ScoreRequest:
    """A checked scoring request."""

    id: Any
    volume: str
    segmentation: str
    label_scheme: str | None
    symptoms: tuple[str, ...]
    output: str
    settings: ScoringSettings
    #: age and sex given by the request (:class:`~MedSORALib.patient.Patient`; the DICOM header completes them)
    patient: Any = None


@dataclass(frozen=True)
class Command:
    """A checked command request (``shutdown``)."""

    id: Any
    cmd: str


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` outside strings (counted without recursion)."""
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def decode_line(line: bytes | str) -> Any:
    """The JSON value of one line: strict JSON (no NaN or Infinity), UTF-8, at most :data:`MAX_LINE_BYTES`
    and :data:`MAX_DEPTH` deep; :class:`RequestError` otherwise."""
    if isinstance(line, bytes):
        if len(line) > MAX_LINE_BYTES:
            raise RequestError(f"request line of {len(line)} bytes; the limit is {MAX_LINE_BYTES}")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError("request line is not UTF-8 text") from None
    if nesting_depth(line) > MAX_DEPTH:
        raise RequestError(f"request nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as error:
        raise RequestError(f"not a JSON request ({error}): {line.strip()[:200]!r}") from None


def _id(value: Any) -> Any:
    if value is None or (isinstance(value, str) and len(value) <= 200):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_ID:
        return value
    raise RequestError(f"request field 'id' must be an integer, text of at most 200 characters or null, "
                       f"not {_shown(value)}")


def _shown(value: Any) -> str:
    kind = {bool: "true or false", str: "text", int: "a number", float: "a number", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)
    text = json.dumps(value)[:40] if not isinstance(value, (list, dict)) else ""
    return f"{kind} {text}".strip()


def _text(request: Mapping, name: str, required: bool = False) -> str | None:
    value = request.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > MAX_TEXT:
        what = "non-empty text" if required else "text"
        raise RequestError(f"request field {name!r} must be {what} of at most {MAX_TEXT} characters, "
                           f"not {_shown(value)}")
    return value


def _flag(request: Mapping, name: str) -> bool | None:
    value = request.get(name)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise RequestError(f"request field {name!r} must be true or false, not {_shown(value)}")
    return value


def parse_request(line: bytes | str | Mapping) -> ScoreRequest | Command:
    """A checked request from one line (or its decoded object); :class:`RequestError` for anything else."""
    request = decode_line(line) if isinstance(line, (bytes, str)) else line
    if not isinstance(request, dict):
        raise RequestError(f"a request is a JSON object, not {_shown(request)}")
    request_id = _id(request.get("id"))
    try:
        unknown = sorted(set(request) - set(FIELDS))
        if unknown:
            raise RequestError(f"unknown request field(s) {', '.join(map(repr, unknown))}; "
                               f"known: {', '.join(FIELDS)}")
        if "cmd" in request:
            command = request["cmd"]
            if command not in COMMANDS:
                shown = repr(command[:40]) if isinstance(command, str) else _shown(command)
                raise RequestError(f"unknown command {shown}; known: {', '.join(COMMANDS)}")
            return Command(id=request_id, cmd=command)
        missing = [name for name, (_, required, _) in FIELDS.items() if required and name not in request]
        if missing:
            raise RequestError(f"the request has no {', '.join(map(repr, missing))}")
        symptoms = request["symptoms"]
        if not isinstance(symptoms, list) or not 1 <= len(symptoms) <= MAX_SYMPTOMS \
                or not all(isinstance(s, str) for s in symptoms):
            raise RequestError(f"request field 'symptoms' must be a list of 1 to {MAX_SYMPTOMS} texts, "
                               f"not {_shown(symptoms)}")
        scheme = _text(request, "label_scheme")
        weight = request.get("image_weight")
        if weight is not None and (isinstance(weight, bool) or not isinstance(weight, (int, float))
                                   or not math.isfinite(weight) or not 0.0 <= weight <= 1.0):
            raise RequestError(f"request field 'image_weight' must be a number in 0..1, not {_shown(weight)}")
        settings = ScoringSettings().replace(
            device=_text(request, "device") or None, model_dir=_text(request, "model_dir") or None,
            text_encoder=_text(request, "text_encoder") or None,
            image_weight=None if weight is None else float(weight),
            passages=_flag(request, "with_passages"), preview=_flag(request, "preview"))
        from ..patient import Patient

        age = request.get("age")
        if age is not None and (isinstance(age, bool) or not isinstance(age, (str, int, float))):
            raise RequestError(f"request field 'age' must be a number or text, not {_shown(age)}")
        patient = Patient.parse(age, _text(request, "sex") or None, "request")
        return ScoreRequest(id=request_id, volume=_text(request, "volume", required=True),
                            segmentation=_text(request, "segmentation", required=True),
                            label_scheme=normalize_scheme(scheme) if scheme else None,
                            symptoms=tuple(check_symptoms(symptoms)), output=_text(request, "output", required=True),
                            settings=settings, patient=patient)
    except MedSORAError as error:
        raise RequestError(str(error), request_id) from None


def request_fields(volume, segmentation, symptoms: Iterable[str], output, settings: ScoringSettings | None = None,
                   label_scheme: str | None = None, age=None, sex: str | None = None) -> dict:
    """The fields of a scoring request (paths as text; the settings a request can carry; the patient's age and
    sex when known)."""
    settings = settings or ScoringSettings()
    patient = {k: v for k, v in (("age", age), ("sex", sex)) if v is not None}
    return {**patient, "volume": str(volume), "segmentation": str(segmentation), "label_scheme": label_scheme,
            "symptoms": list(symptoms), "output": str(output), "device": settings.device,
            "model_dir": settings.model_dir or "", "text_encoder": settings.text_encoder or "",
            "image_weight": settings.image_weight, "with_passages": settings.passages, "preview": settings.preview}


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by null (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _finite(value.item())
    return str(value)


def encode_event(event: Mapping[str, Any]) -> str:
    """One event as a line of strict, ASCII JSON (non-finite numbers become null)."""
    return json.dumps(_finite(dict(event)), ensure_ascii=True, allow_nan=False) + "\n"


def error_event(request_id: Any, message: str) -> dict:
    return {"id": request_id, "event": "error", "message": str(message)}
