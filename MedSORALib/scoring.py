"""Scoring a CT for symptoms: the results, the fusion formula and the steps a scoring session chains.

For each symptom and each organ present in the masks, MedSORA reports:

- ``text_prior`` (t): the organ's relevance from the text alone, in [0, 1]: the
  text model's (:mod:`MedSORALib.text.reasoning`) fused, where the differential
  diagnosis is confident, with the differential's (:mod:`MedSORALib.diagnoses`);
- ``image_score`` (s): the image-text alignment, the mean over the organ's
  slices of the cosine similarity between its fused image features and the
  projected symptom embedding (:mod:`MedSORALib.image.model`), in [-1, 1];
- ``relevance`` (r), in [0, 1]:

      a_i = exp((s_i - max_j s_j) / tau)          (1 for the best-aligned organ)
      r_i = t_i * ((1 - beta) + beta * a_i)

  with tau = 0.1 (the InfoNCE temperature of training) and beta =
  ``image_weight`` (default 0: on a real CT the image model never saw, the
  fused ranking was no better than the text prior alone). The image term can lower an organ's text
  prior by at most ``beta`` when the patient's own organ image aligns with the
  symptom worse than another organ does; it never raises an organ above its
  text prior, so out-of-domain symptoms (low text prior everywhere) stay low.
  ``image_weight=0`` gives the text prior alone.

Then abnormal findings of the patient's own organs (measurements against
reference ranges, :mod:`MedSORALib.finding_boost`) raise the relevance of an organ
the symptom points to by a bounded amount, weighted by the probability that the
symptom is abdominal (``finding_boost``, with ``why``); never for an organ whose
text prior is near zero, and never enough to make an out-of-domain symptom relevant.

A CT's organs are checked and measured once (:func:`prepare_case`) and, when
the image weight is above 0, cropped and encoded once (:func:`encode_case`),
however many symptoms are scored against them. With the image weight at 0 (the
default) the image model does no work and ``image_score`` is None.

:class:`MedSORALib.session.ScoringSession` chains these steps for every front
door (``score``, the worker, ``batch``, ``serve``, the Slicer panel).
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np

from . import __version__, organs
from .diagnoses import DiagnosisEntry, fields_from_dict, joined_why, organ_why, reason_case, result_fields
from .errors import SegmentationError, SymptomError
from .masks import restrict
from .result_format import SCORE_DECIMALS
from .volume_io import Volume

#: Softmax temperature of the image term (the InfoNCE temperature used in training).
IMAGE_TAU = 0.1
#: Default weight of the image-text alignment in the final relevance: 0, because on a real CT the image
#: model never saw the fused ranking was no better than the text prior alone (README, "Model card";
#: ``Training/evaluate_fusion.py``). ``image_weight`` > 0 turns the image term on.
IMAGE_WEIGHT = 0.0
#: The weight a front door uses when the image model is switched on without a weight (the Slicer panel's "Use
#: the image model" box): 0.25, the fused weight evaluated in README's fusion table
#: (``Training/evaluate_fusion.py``); our choice, not a tuned optimum.
IMAGE_WEIGHT_ON = 0.25
#: Longest symptom text accepted, in characters.
MAX_SYMPTOM_CHARS = 2000

Progress = Callable[[float, str], None]


@dataclass
class OrganScore:
    """Scores of one organ for one symptom (``voxels`` and ``volume_ml`` describe its mask).

    ``image_score`` is None when the image term was not computed (image weight 0).
    """

    key: str
    display_name: str
    relevance: float
    text_prior: float
    image_score: float | None
    voxels: int
    volume_ml: float
    finding_boost: float = 0.0
    why: str = ""
    measurements: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    findings_not_assessed: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The JSON form of ``PREFIX.json``'s organ rows (inverse: :meth:`from_dict`)."""
        return {
            "name": self.key,
            "display_name": self.display_name,
            "relevance": round(self.relevance, SCORE_DECIMALS),
            "text_prior": round(self.text_prior, SCORE_DECIMALS),
            "image_score": None if self.image_score is None else round(self.image_score, SCORE_DECIMALS),
            "finding_boost": round(self.finding_boost, SCORE_DECIMALS),
            "why": self.why,
            "voxels": self.voxels,
            "volume_ml": round(self.volume_ml, 3),
            "measurements": self.measurements,
            "findings": self.findings,
            "findings_not_assessed": self.findings_not_assessed,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "OrganScore":
        image_score = data.get("image_score")
        return cls(key=str(data["name"]), display_name=str(data.get("display_name", "")),
                   relevance=float(data["relevance"]), text_prior=float(data["text_prior"]),
                   image_score=None if image_score is None else float(image_score),
                   voxels=int(data.get("voxels", 0)), volume_ml=float(data.get("volume_ml", 0.0)),
                   finding_boost=float(data.get("finding_boost", 0.0)), why=str(data.get("why", "")),
                   measurements=dict(data.get("measurements") or {}), findings=list(data.get("findings") or []),
                   findings_not_assessed=list(data.get("findings_not_assessed") or []))


@dataclass
class SymptomResult:
    """The organs of one volume scored for one symptom, sorted by relevance (highest first)."""

    symptom: str
    in_domain: bool
    ood_score: float
    laterality: str | None
    organs: list[OrganScore]
    passages: dict[str, list[dict]] = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    contrast_phase: dict = field(default_factory=dict)
    patient: dict = field(default_factory=dict)  # age, sex and their source, as the reference ranges used them
    differential: list[DiagnosisEntry] = field(default_factory=list)
    scope: str = "modelled"
    outside: str | None = None
    none_of_these: float = 0.0
    non_specific: bool = False  # every finding read was generic: the ranking was flattened

    @property
    def top(self) -> OrganScore:
        return self.organs[0]

    def relevance(self) -> dict[str, float]:
        return {o.key: o.relevance for o in self.organs}

    def to_dict(self) -> dict:
        """The JSON form of a result (``PREFIX.json`` without the files' own fields; inverse: :meth:`from_dict`)."""
        return {
            "symptom": self.symptom,
            "in_domain": self.in_domain,
            "scope": self.scope,
            "outside": self.outside,
            "ood_score": round(self.ood_score, SCORE_DECIMALS),
            "laterality": self.laterality,
            "contrast_phase": self.contrast_phase,
            "patient": self.patient,
            "organs": [o.to_dict() for o in self.organs],
            "differential": [d.to_dict() for d in self.differential],
            "none_of_these": self.none_of_these,
            "non_specific": self.non_specific,
            "passages": self.passages,
            "models": self.models,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "SymptomResult":
        """A result back from :meth:`to_dict`'s form (a ``PREFIX.json``, a worker event; extra keys ignored)."""
        return cls(symptom=str(data["symptom"]), in_domain=bool(data["in_domain"]),
                   ood_score=float(data.get("ood_score", 0.0)), laterality=data.get("laterality"),
                   organs=[OrganScore.from_dict(o) for o in data.get("organs", [])],
                   passages=dict(data.get("passages") or {}), models=dict(data.get("models") or {}),
                   contrast_phase=dict(data.get("contrast_phase") or {}), patient=dict(data.get("patient") or {}),
                   **fields_from_dict(data))


@dataclass
class ScoringModels:
    """The trained models used for scoring, loaded once per process (see :func:`load_models`)."""

    reasoner: object
    image_model: object
    device: str = "cpu"
    _kb: object = None

    @property
    def kb(self):
        """The symptom knowledge base (built on first use; used for supporting passages)."""
        if self._kb is None:
            from .knowledge.kb import KnowledgeBase

            self._kb = KnowledgeBase.load(encoder=self.reasoner.encoder)
        return self._kb

    def info(self) -> dict:
        return {"medsora": __version__, "text": self.reasoner.info(), "image": self.image_model.info()}


_MODELS: dict[tuple, ScoringModels] = {}
_MODELS_LOCK = threading.Lock()


def load_models(
    text_weights: str | Path | None = None,
    image_weights: str | Path | None = None,
    setting: str = "full11",
    device: str = "cpu",
    text_encoder: str | Path | None = None,
) -> ScoringModels:
    """Load the text and image models (shipped weights by default), once per process and arguments.

    Args:
        text_weights: folder of the text models (``<folder>/<setting>/``); default: shipped.
        image_weights: folder of the image/alignment model; default: shipped.
        setting: ``"full11"`` (13 structures, 11 classes) or ``"paper7"``.
        device: ``"cpu"`` or ``"cuda"``.
        text_encoder: a local sentence-encoder folder replacing the bundled one.
    """
    from .errors import ModelError

    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ModelError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    key = (str(text_weights), str(image_weights), setting, device, str(text_encoder))
    with _MODELS_LOCK:
        if key not in _MODELS:
            from .image.inference import InferenceModel
            from .text.encoder import TextEncoder, get_default_encoder
            from .text.reasoning import TextReasoner

            encoder = get_default_encoder() if text_encoder is None else TextEncoder(text_encoder, device=device)
            reasoner = TextReasoner.load(text_weights, setting=setting, encoder=encoder)
            image_model = InferenceModel.load(image_weights, device=device)
            _MODELS[key] = ScoringModels(reasoner=reasoner, image_model=image_model, device=device)
        return _MODELS[key]


@dataclass(eq=False)
class Case:
    """A CT ready to be scored for any symptom: its organ masks checked, counted and measured once.

    The image model encodes the organs only when a symptom is scored with an
    image weight above 0 (:func:`encode_case`), once, and keeps the features here.

    Attributes:
        volume: the CT.
        masks: structure key -> boolean mask, the organs with at least one voxel (catalog order).
        voxels, volume_ml: voxel count and volume of each organ.
        evidence: measurements, contrast phase and findings (:func:`MedSORALib.finding_boost.image_evidence`).
        inputs: paths, SHA-256 and geometry of the input files, for the result JSON.
        dicom_series: the DICOM folder the CT was read from, else None.
    """

    volume: Volume
    masks: dict[str, np.ndarray]
    voxels: dict[str, int]
    volume_ml: dict[str, float]
    evidence: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)
    dicom_series: Path | None = None
    #: the image features, shared by the copies of a case (:func:`dataclasses.replace` keeps the same dict)
    image: dict = field(default_factory=dict)

    @property
    def keys(self) -> list[str]:
        return list(self.masks)

    @property
    def encoded(self) -> bool:
        return "features" in self.image


def check_symptoms(symptoms: Sequence[str] | str) -> list[str]:
    """Validated, stripped symptom texts; raises :class:`SymptomError` for empty or over-long ones."""
    from .files import require_utf8

    if isinstance(symptoms, str):
        symptoms = [symptoms]
    cleaned = []
    for i, text in enumerate(symptoms, 1):
        if not isinstance(text, str):
            raise SymptomError(f"symptom {i} is not text")
        require_utf8(text, f"symptom {i}")
        text = " ".join(text.split())
        if not text:
            raise SymptomError(f"symptom {i} is empty; describe the symptom in words")
        if len(text) > MAX_SYMPTOM_CHARS:
            raise SymptomError(f"symptom {i} is {len(text)} characters long; the limit is {MAX_SYMPTOM_CHARS}")
        cleaned.append(text)
    if not cleaned:
        raise SymptomError("no symptom given")
    return cleaned


def check_image_weight(image_weight) -> float:
    """The image weight as a float in [0, 1]; :class:`SymptomError` otherwise."""
    if isinstance(image_weight, bool) or not isinstance(image_weight, (int, float)) \
            or not math.isfinite(image_weight) or not 0.0 <= image_weight <= 1.0:
        raise SymptomError(f"image weight {image_weight!r} is not a number in 0..1")
    return float(image_weight)


def prepare_case(volume: Volume, organ_masks: Mapping[str, np.ndarray], *, inputs: Mapping | None = None,
                 dicom_series: Path | None = None, patient=None, progress: Progress | None = None) -> Case:
    """Check, count and measure every organ of ``organ_masks`` (boolean ``[i, j, k]`` on the volume grid).

    ``patient`` (what the measurements' reference ranges depend on) is passed to
    :func:`MedSORALib.finding_boost.image_evidence` when given.
    """
    keys = organs.structures_present(organ_masks)
    unknown = sorted(set(organ_masks) - set(keys))
    if unknown:
        raise SegmentationError(f"unknown organ keys in the masks: {', '.join(unknown)}")
    voxels = {}
    for key in keys:  # one mask at a time: label-map masks are computed on access
        mask = np.asarray(organ_masks[key], dtype=bool)
        if mask.shape != volume.shape:
            raise SegmentationError(f"the mask of {key} has shape {mask.shape}, the CT {volume.shape}")
        count = int(np.count_nonzero(mask))
        if count:
            voxels[key] = count
    masks = restrict(organ_masks, voxels)
    if not masks:
        raise SegmentationError("the segmentation holds no voxel of a known organ")
    if progress:
        progress(0.1, f"measuring {len(masks)} organs against reference ranges")
    from .finding_boost import image_evidence

    return Case(volume=volume, masks=masks, voxels=voxels,
                volume_ml={k: v * volume.voxel_volume_ml for k, v in voxels.items()},
                evidence=image_evidence(volume, masks, *(() if patient is None else (patient,))),
                inputs=dict(inputs or {}), dicom_series=dicom_series)


def encode_case(case: Case, models: ScoringModels, progress: Progress | None = None):
    """The image features of the case's organs: cropped and encoded on the first call, then kept."""
    with _ENCODE_LOCK:
        if "features" not in case.image:
            if progress:
                progress(0.2, f"encoding {len(case.masks)} organs")
            case.image["features"] = models.image_model.encode_volume(case.volume, case.masks)
        return case.image["features"]


_ENCODE_LOCK = threading.Lock()


def fuse(text_prior: np.ndarray, image_similarity: np.ndarray, image_weight: float = IMAGE_WEIGHT) -> np.ndarray:
    """Final relevance from text priors ``(N, K)`` in [0, 1] and image cosines ``(N, K)`` (see module doc)."""
    t = np.clip(np.asarray(text_prior, dtype=np.float64), 0.0, 1.0)
    s = np.asarray(image_similarity, dtype=np.float64)
    a = np.exp((s - s.max(axis=1, keepdims=True)) / IMAGE_TAU)
    return np.clip(t * ((1.0 - image_weight) + image_weight * a), 0.0, 1.0)


def fusion_info(image_weight: float) -> dict:
    """How the relevance was made (``models.fusion`` of the JSON)."""
    from .finding_boost import FINDING_BOOST, MIN_TEXT_PRIOR

    return {"image_weight": image_weight, "tau": IMAGE_TAU,
            "formula": "r = t * ((1 - w) + w * exp((s - max s) / tau))",
            "findings": {"boost": FINDING_BOOST, "min_text_prior": MIN_TEXT_PRIOR,
                         "formula": "r' = r + boost * t * (1 - r) * (1 - ood_score) for an organ with an "
                                    "abnormal finding and t >= min_text_prior"}}


def score_case(
    case: Case,
    symptoms: Sequence[str] | str,
    models: ScoringModels,
    *,
    image_weight: float = IMAGE_WEIGHT,
    with_passages: bool = True,
    progress: Progress | None = None,
) -> list[SymptomResult]:
    """Score a prepared case for each symptom (see the module doc for the formula).

    With ``image_weight`` 0 the organs are not encoded and every ``image_score`` is None.
    """
    texts = check_symptoms(symptoms)
    image_weight = check_image_weight(image_weight)
    keys = case.keys
    similarity = None
    if image_weight > 0.0:
        features = encode_case(case, models, progress)
        keys = list(features.keys)
    if progress:
        progress(0.5, f"reading {len(texts)} symptom(s)")
    predictions = models.reasoner.predict(texts)
    reasoned = reason_case(case, predictions, models.reasoner)  # the differential fused into the text prior
    prior = np.array([[r.structure_relevance[k] for k in keys] for r in reasoned])
    if image_weight > 0.0:
        embeddings = np.stack([p.embedding for p in predictions])
        similarity = models.image_model.score(features, embeddings)  # (N, K)
        relevance = fuse(prior, similarity, image_weight)
    else:
        relevance = np.clip(prior, 0.0, 1.0)
    from .finding_boost import apply_findings

    info = models.info()
    info["fusion"] = fusion_info(image_weight)
    evidence = case.evidence or {}
    measured = evidence.get("measurements", {})
    found = evidence.get("findings", {})
    order = {k: i for i, k in enumerate(organs.STRUCTURES)}
    results = []
    for n, prediction in enumerate(predictions):
        boosted, boosts, reasons = apply_findings(relevance[n], prior[n], keys, float(prediction.ood_score), found)
        scores = [
            OrganScore(key=k, display_name=organs.ORGANS[k].display_name, relevance=float(boosted[c]),
                       text_prior=float(prior[n, c]),
                       image_score=None if similarity is None else float(similarity[n, c]),
                       voxels=case.voxels[k], volume_ml=float(case.volume_ml[k]),
                       finding_boost=boosts[c], why=joined_why(organ_why(reasoned[n], k), reasons[c]),
                       measurements=measured.get(k, {}),
                       findings=found.get(k, {}).get("findings", []),
                       findings_not_assessed=found.get(k, {}).get("not_assessed", []))
            for c, k in enumerate(keys)
        ]
        scores.sort(key=lambda o: (o.key in reasoned[n].differential.removed, -o.relevance, order[o.key]))
        result = SymptomResult(symptom=prediction.text, **result_fields(reasoned[n]),  # differential, scope
                               ood_score=float(prediction.ood_score), laterality=prediction.laterality,
                               organs=scores, models=info, contrast_phase=evidence.get("contrast_phase", {}),
                               patient=evidence.get("patient", {}))
        if with_passages:
            result.passages = supporting_passages(models, result)
        results.append(result)
        if progress:
            progress(0.6 + 0.4 * (n + 1) / len(predictions), f"scored symptom {n + 1} of {len(predictions)}")
    return results


def supporting_passages(models: ScoringModels, result: SymptomResult, top: int = 3, per_organ: int = 2) -> dict:
    """Up to ``per_organ`` knowledge-base passages for each of the ``top`` organs (why this organ)."""
    passages: dict[str, list[dict]] = {}
    if not result.in_domain:
        return passages
    for organ_score in result.organs[:top]:
        hits = models.kb.search(result.symptom, k=per_organ, organ=organs.structure_class(organ_score.key))
        passages[organ_score.key] = [
            {"id": h.chunk.id, "text": h.chunk.text, "source": h.chunk.source,
             "score": round(float(h.score), SCORE_DECIMALS)}
            for h in hits
        ]
    return passages


def score_volume(
    volume: Volume,
    organ_masks: Mapping[str, np.ndarray],
    symptoms: Sequence[str] | str,
    *,
    models: ScoringModels | None = None,
    device: str = "cpu",
    image_weight: float = IMAGE_WEIGHT,
    with_passages: bool = True,
    progress: Progress | None = None,
    patient=None,
) -> list[SymptomResult]:
    """Score the organs of a CT (``Volume``; masks: key -> boolean ``[i, j, k]`` on its grid) for one or more
    symptoms in one call (the steps of :class:`MedSORALib.session.ScoringSession`, for scripts holding arrays).

    ``models``: loaded models (default: :func:`load_models` on ``device``); ``image_weight``: module doc;
    ``with_passages``: passages for the top three organs; ``progress``: ``callback(fraction, message)``;
    ``patient``: age and sex (:class:`~MedSORALib.patient.Patient`) for the reference ranges, None: unknown.
    Returns one :class:`SymptomResult` per symptom, in input order (the organs measured once for all).
    """
    texts = check_symptoms(symptoms)
    image_weight = check_image_weight(image_weight)
    if models is None:
        if progress:
            progress(0.0, "loading models")
        models = load_models(device=device)
    case = prepare_case(volume, organ_masks, patient=patient, progress=progress)
    return score_case(case, texts, models, image_weight=image_weight, with_passages=with_passages,
                      progress=progress)


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


def score_inputs(inputs: ScoringInputs, scorer: Scorer, progress: Progress | None = None) -> list:
    """Run a scorer on the inputs in this process (blocking); returns one result per symptom."""
    return list(scorer(inputs.volume, inputs.masks, inputs.symptoms, progress=progress))
