"""One scoring session: the models loaded once, cases opened once, symptoms scored, result files written.

Every front door scores through a :class:`ScoringSession`: ``medsora score``,
the worker (:mod:`MedSORALib.worker`), ``medsora batch`` (in this process and
on each Dask worker), ``medsora serve`` and the Slicer module. Each keeps only
what is its own (argument parsing, the protocol, the manifest, the page, the
nodes), so a CT, its organs and a symptom give the same JSON whichever door
they come through.

A session holds:

- its :class:`ScoringSettings`: every scoring option with its one default;
- the models (:func:`MedSORALib.scoring.load_models`), loaded on first need;
- the cases it opened, keyed by the SHA-256 of their files and the label
  scheme: opening the same content again reads nothing but the checksums, and
  reuses the measurements and, with an image weight above 0, the encoded organs.

Steps (:mod:`MedSORALib.scoring` holds the formula)::

    session = ScoringSession(ScoringSettings(device="cpu"))
    case = session.open("ct.nii.gz", "organs.seg.nrrd")       # read, validate, measure
    results = session.score(case, ["jaundice and pale stools"])  # symptoms checked once
    files = session.write(case, results, "out/patient1")         # PREFIX.seg.nrrd, PREFIX.json

Progress callbacks are ``callback(fraction, message)`` with ``fraction`` in [0, 1].
"""
from __future__ import annotations

import dataclasses
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

import numpy as np

from .errors import InputFileError, MedSORAError, ModelError, SymptomError
from .scoring import (IMAGE_WEIGHT, Scorer, ScoringInputs, score_inputs, Case, Progress, ScoringModels, SymptomResult, check_image_weight,
                      check_symptoms, prepare_case, score_case)
from .volume_io import Volume


class ScoringCancelled(MedSORAError):
    """The user cancelled a running scoring job."""


def resolve_device(device: str | None) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other values unchanged."""
    device = (device or "cpu").strip()
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def split_symptoms(text: str, one_per_line: bool = False) -> list[str]:
    """Symptom texts from a text box: the whole text, or one symptom per non-empty line."""
    text = (text or "").strip()
    if not text:
        raise SymptomError("Enter a symptom description.")
    if one_per_line:
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [" ".join(text.split())]


@dataclass(frozen=True)
class ScoringSettings:
    """Every scoring option and its default, for every front door (picklable, hashable).

    Attributes:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:0"``, ``"mps"`` or ``"auto"`` (CUDA when available).
        setting: text classes, ``"full11"`` (13 structures) or ``"paper7"``.
        model_dir: folder with ``text/`` and/or ``image/`` weight folders (the panel's model folder);
            each replaces ``text_weights`` / ``image_weights``.
        text_weights, image_weights: weight folders of the text and image models (None: shipped).
        text_encoder: a local sentence-encoder folder (None: the bundled one).
        image_weight: weight of the image-text alignment in the relevance, in [0, 1]. 0 (the default):
            the text prior alone, and the organs are not encoded (:mod:`MedSORALib.scoring`).
        passages: add supporting knowledge passages for the top organs.
        preview: also write ``PREFIX.png``.
    """

    device: str = "cpu"
    setting: str = "full11"
    model_dir: str | None = None
    text_weights: str | None = None
    image_weights: str | None = None
    text_encoder: str | None = None
    image_weight: float = IMAGE_WEIGHT
    passages: bool = True
    preview: bool = False

    def __post_init__(self):
        object.__setattr__(self, "image_weight", check_image_weight(self.image_weight))
        for name in ("model_dir", "text_weights", "image_weights", "text_encoder"):
            value = getattr(self, name)
            object.__setattr__(self, name, str(value) if value not in (None, "") else None)

    @property
    def use_image_model(self) -> bool:
        """Whether the image model takes part in the relevance."""
        return self.image_weight > 0.0

    @property
    def model_key(self) -> tuple:
        """What decides which models are loaded (sessions with equal keys share their models)."""
        return (resolve_device(self.device), self.setting, self.model_dir, self.text_weights, self.image_weights,
                self.text_encoder)

    def replace(self, **changes) -> "ScoringSettings":
        """These settings with some fields changed; ``None`` values keep the current field."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def weight_folders(self) -> tuple[str | None, str | None]:
        """``(text, image)`` weight folders, ``model_dir``'s ``text/`` and ``image/`` taking precedence."""
        text, image = self.text_weights, self.image_weights
        if self.model_dir:
            if not os.path.isdir(self.model_dir):
                raise ModelError(f"Model folder {self.model_dir!r} does not exist.")
            text_dir, image_dir = os.path.join(self.model_dir, "text"), os.path.join(self.model_dir, "image")
            if not (os.path.isdir(text_dir) or os.path.isdir(image_dir)):
                raise ModelError(f"Model folder {self.model_dir!r} has neither a text/ nor an image/ folder.")
            text = text_dir if os.path.isdir(text_dir) else text
            image = image_dir if os.path.isdir(image_dir) else image
        return text, image




# ------------------------------------------------------------------------------------------
# Output files
# ------------------------------------------------------------------------------------------

def check_output_prefix(prefix: str | os.PathLike, option: str = "--output") -> Path:
    """A usable output prefix: not a folder, and its folder creatable and writable (probed, not os.access)."""
    from .validation import check_output_folder

    prefix = Path(prefix)
    if prefix.name in ("", ".", ".."):
        raise InputFileError(f"{option} {prefix}: give a file prefix such as out/patient1, not a folder")
    if prefix.exists() and prefix.is_dir():
        raise InputFileError(f"{option} {prefix} is a folder; give a file prefix such as {prefix}/result")
    check_output_folder(prefix.parent if str(prefix.parent) else Path("."))
    return prefix


def output_files(prefix: str | os.PathLike, count: int, preview: bool = False, dicom_seg: bool = False,
                 dicom_sr: bool = False) -> list[Path]:
    """Every file :meth:`ScoringSession.write` writes for ``count`` symptoms under ``prefix`` (``dicom_sr``
    writes the SEG too)."""
    from .result_files import output_prefixes

    suffixes = [".seg.nrrd", ".json"] + ([".png"] if preview else []) + (
        ["_seg.dcm"] if dicom_seg or dicom_sr else []) + (["_sr.dcm"] if dicom_sr else [])
    return [p.with_name(p.name + s) for p in output_prefixes(Path(prefix), count) for s in suffixes]


def check_outputs(prefix: str | os.PathLike, count: int, inputs: Sequence, *, preview: bool = False,
                  dicom_seg: bool = False, dicom_sr: bool = False, option: str = "--output") -> Path:
    """Refuse, before any work, an output prefix that is a folder or whose files would replace an input."""
    from .validation import check_outputs_spare_inputs

    prefix = check_output_prefix(prefix, option)
    check_outputs_spare_inputs(output_files(prefix, count, preview, dicom_seg, dicom_sr), inputs, option=option)
    return prefix


# ------------------------------------------------------------------------------------------
# The session
# ------------------------------------------------------------------------------------------

class ScoringSession:
    """Models loaded once, cases opened once, symptoms scored, result files written (module doc).

    Args:
        settings: the scoring options (default: every default).
        models: already loaded models to use instead of loading them.
        cases: how many opened cases to keep (by content); the last ones opened stay.
    """

    def __init__(self, settings: ScoringSettings | None = None, *, models: ScoringModels | None = None,
                 cases: int = 1):
        self.settings = settings or ScoringSettings()
        self.models = models
        #: how many times this session loaded models (0 or 1)
        self.loads = 0
        self._cases: OrderedDict[tuple, Case] = OrderedDict()
        self._keep = max(int(cases), 0)
        self._lock = threading.RLock()
        #: whether the last :meth:`open` found its case already opened
        self.last_open_cached = False

    # ------------------------------------------------------------------ models
    @property
    def loaded(self) -> bool:
        return self.models is not None

    def load(self) -> bool:
        """Load the models unless already loaded; True when this call loaded them."""
        with self._lock:
            if self.models is not None:
                return False
            from .scoring import load_models

            settings = self.settings
            text, image = settings.weight_folders()
            self.models = load_models(text_weights=text, image_weights=image, setting=settings.setting,
                                      device=resolve_device(settings.device), text_encoder=settings.text_encoder)
            if settings.passages:
                _ = self.models.kb  # the knowledge base is built with the models, not in the first symptom's time
            self.loads += 1
            return True

    # ------------------------------------------------------------------ cases
    def open(self, volume_path, segmentation_path=None, label_scheme: str | None = None, *,
             log: Callable[[str], None] = lambda message: None, warn: Callable[[str], None] | None = None,
             checksums: Mapping[str, str] | None = None, patient=None, progress: Progress | None = None) -> Case:
        """Read a CT and its organ segmentation (or segment it with TotalSegmentator), check and measure it.

        A case whose files have the content of one opened before (same SHA-256, same label scheme, same
        ``patient``) is taken from the session: only the files' checksums are read. ``checksums`` are SHA-256
        the caller has just computed of these files (``{"volume": ..., "segmentation": ...}``); ``patient``
        (hashable) is what the measurements' reference ranges depend on (:func:`~MedSORALib.scoring.prepare_case`).
        """
        from .cases import load_case, print_warning
        from .files import file_sha256
        from .organs import normalize_scheme

        volume_path = Path(volume_path)
        segmentation_path = Path(segmentation_path) if segmentation_path else None
        scheme = normalize_scheme(label_scheme) if label_scheme else None
        sums = {k: v for k, v in (checksums or {}).items() if v}
        key = None
        if self._keep:
            try:
                if "volume" not in sums:
                    sums["volume"] = file_sha256(volume_path)
                if segmentation_path is not None and "segmentation" not in sums:
                    sums["segmentation"] = file_sha256(segmentation_path)
                key = (sums["volume"], sums.get("segmentation"), scheme, patient)
            except OSError:  # not readable: reading the case below says why, in one line
                pass
        with self._lock:
            cached = self._cases.get(key) if key is not None else None
            if cached is not None:
                self._cases.move_to_end(key)
        self.last_open_cached = cached is not None
        if cached is not None:
            inputs = _with_paths(cached.inputs, volume_path, segmentation_path)
            return cached if inputs == cached.inputs else dataclasses.replace(
                cached, inputs=inputs, dicom_series=volume_path if volume_path.is_dir() else None)
        if progress:
            progress(0.0, "reading the CT and its organ segmentation")
        loaded = load_case(volume_path, segmentation_path, scheme, resolve_device(self.settings.device), log=log,
                           warn=warn or print_warning, checksums=sums)
        case = prepare_case(loaded.volume, loaded.masks, inputs=loaded.inputs, dicom_series=loaded.dicom_series,
                            patient=patient, progress=progress)
        if key is not None:
            with self._lock:
                self._cases[key] = case
                while len(self._cases) > self._keep:
                    self._cases.popitem(last=False)
        return case

    def case(self, volume: Volume, masks: Mapping[str, np.ndarray], inputs: Mapping | None = None, *,
             patient=None, progress: Progress | None = None) -> Case:
        """A case from a CT and organ masks already in memory (the Slicer scene, scripts); not kept."""
        return prepare_case(volume, masks, inputs=inputs, patient=patient, progress=progress)

    def forget(self) -> None:
        """Drop the opened cases (their arrays are freed once no caller holds them)."""
        with self._lock:
            self._cases.clear()

    # ------------------------------------------------------------------ scoring
    def score(self, case: Case, symptoms: Sequence[str] | str, *, progress: Progress | None = None,
              image_weight: float | None = None, passages: bool | None = None) -> list[SymptomResult]:
        """Score a case for one or more symptoms (checked here, once); one result per symptom, in order.

        ``image_weight`` and ``passages`` override the settings for this call (same models).
        """
        texts = check_symptoms(symptoms)
        weight = self.settings.image_weight if image_weight is None else check_image_weight(image_weight)
        if not self.loaded:
            if progress:
                progress(0.05, "loading models")
            self.load()
        return score_case(case, texts, self.models, image_weight=weight,
                          with_passages=self.settings.passages if passages is None else bool(passages),
                          progress=progress)

    def __call__(self, volume: Volume, masks: Mapping[str, np.ndarray], symptoms: Sequence[str],
                 progress: Progress | None = None) -> list[SymptomResult]:
        """Score arrays in one call (a :class:`Scorer`: the Slicer panel's in-process path)."""
        texts = check_symptoms(symptoms)
        if not self.loaded:
            if progress:
                progress(0.0, "loading models")
            self.load()
        return self.score(self.case(volume, masks, progress=progress), texts, progress=progress)

    # ------------------------------------------------------------------ files
    def write(self, case: Case, results: Sequence[SymptomResult], prefix: str | os.PathLike, *,
              preview: bool | None = None, dicom_seg: bool = False, dicom_sr: bool = False) -> list[dict[str, Path]]:
        """Write each result's files (``PREFIX`` for one result, ``PREFIX_1`` ... for several).

        Each result's files appear together or not at all (:func:`MedSORALib.result_files.write_result`).
        Returns, per result, kind -> path (``segmentation``, ``json``, ``preview``, ``dicom_seg``, ``dicom_sr``).
        ``dicom_sr`` writes the DICOM SR (:mod:`MedSORALib.dicom_sr`) and the SEG it references.
        """
        from .result_files import output_prefixes, write_result

        for flag, wanted in (("--dicom-seg", dicom_seg), ("--dicom-sr", dicom_sr)):
            if wanted and case.dicom_series is None:
                raise InputFileError(f"{flag} needs the CT as a DICOM series folder (--volume DICOM_FOLDER)")
        preview = self.settings.preview if preview is None else bool(preview)
        return [write_result(out, result, case.volume, case.masks, inputs=case.inputs, preview=preview,
                             dicom_series=case.dicom_series if dicom_seg or dicom_sr else None, dicom_sr=dicom_sr)
                for result, out in zip(results, output_prefixes(Path(prefix), len(results)))]


def _with_paths(inputs: Mapping[str, Any], volume_path: Path, segmentation_path: Path | None) -> dict:
    """A case's input description with the paths it was opened from this time."""
    inputs = {k: dict(v) for k, v in inputs.items()}
    inputs["volume"]["path"] = str(volume_path)
    if segmentation_path is not None and "segmentation" in inputs:
        inputs["segmentation"]["path"] = str(segmentation_path)
    return inputs


_SESSIONS: dict[ScoringSettings, ScoringSession] = {}
_SESSIONS_LOCK = threading.Lock()


def shared_session(settings: ScoringSettings | None = None) -> ScoringSession:
    """The session of this process for these settings (one per settings: a batch's tasks on a worker share it)."""
    settings = settings or ScoringSettings()
    with _SESSIONS_LOCK:
        if settings not in _SESSIONS:
            _SESSIONS[settings] = ScoringSession(settings)
        return _SESSIONS[settings]
