"""Scoring a CT for symptoms: the one entry behind the CLI, the batch runner and the Slicer module.

For each symptom and each organ present in the masks, MedSORA reports:

- ``text_prior`` (t): the organ's relevance from the text models alone (organ
  anchors + soft-label MLP, out-of-domain gate and laterality rule applied;
  see :mod:`MedSORALib.text.reasoning`), in [0, 1];
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

The organs of a volume are cropped and encoded once (:func:`encode_volume`),
however many symptoms are scored against them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from . import __version__, organs
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
#: Longest symptom text accepted, in characters.
MAX_SYMPTOM_CHARS = 2000

Progress = Callable[[float, str], None]


@dataclass
class OrganScore:
    """Scores of one organ for one symptom (``voxels`` and ``volume_ml`` describe its mask)."""

    key: str
    display_name: str
    relevance: float
    text_prior: float
    image_score: float
    voxels: int
    volume_ml: float
    finding_boost: float = 0.0
    why: str = ""
    measurements: dict = field(default_factory=dict)
    findings: list = field(default_factory=list)
    findings_not_assessed: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "name": self.key,
            "display_name": self.display_name,
            "relevance": round(self.relevance, SCORE_DECIMALS),
            "text_prior": round(self.text_prior, SCORE_DECIMALS),
            "image_score": round(self.image_score, SCORE_DECIMALS),
            "finding_boost": round(self.finding_boost, SCORE_DECIMALS),
            "why": self.why,
            "voxels": self.voxels,
            "volume_ml": round(self.volume_ml, 3),
            "measurements": self.measurements,
            "findings": self.findings,
            "findings_not_assessed": self.findings_not_assessed,
        }


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

    @property
    def top(self) -> OrganScore:
        return self.organs[0]

    def relevance(self) -> dict[str, float]:
        return {o.key: o.relevance for o in self.organs}

    def to_dict(self) -> dict:
        return {
            "symptom": self.symptom,
            "in_domain": self.in_domain,
            "ood_score": round(self.ood_score, SCORE_DECIMALS),
            "laterality": self.laterality,
            "contrast_phase": self.contrast_phase,
            "organs": [o.to_dict() for o in self.organs],
            "passages": self.passages,
            "models": self.models,
        }


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


@dataclass
class EncodedVolume:
    """A volume's organs, encoded once by the image model, ready to be scored for any symptom."""

    volume: Volume
    masks: dict[str, np.ndarray]
    features: object
    voxels: dict[str, int]
    volume_ml: dict[str, float]
    evidence: dict = field(default_factory=dict)


def check_symptoms(symptoms: Sequence[str] | str) -> list[str]:
    """Validated, stripped symptom texts; raises :class:`SymptomError` for empty or over-long ones."""
    if isinstance(symptoms, str):
        symptoms = [symptoms]
    cleaned = []
    for i, text in enumerate(symptoms, 1):
        if not isinstance(text, str):
            raise SymptomError(f"symptom {i} is not text")
        text = " ".join(text.split())
        if not text:
            raise SymptomError(f"symptom {i} is empty; describe the symptom in words")
        if len(text) > MAX_SYMPTOM_CHARS:
            raise SymptomError(f"symptom {i} is {len(text)} characters long; the limit is {MAX_SYMPTOM_CHARS}")
        cleaned.append(text)
    if not cleaned:
        raise SymptomError("no symptom given")
    return cleaned


def encode_volume(
    volume: Volume, organ_masks: Mapping[str, np.ndarray], models: ScoringModels, progress: Progress | None = None
) -> EncodedVolume:
    """Crop and encode every organ present in ``organ_masks`` (boolean ``[i, j, k]`` on the volume grid)."""
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
        progress(0.1, f"encoding {len(masks)} organs")
    features = models.image_model.encode_volume(volume, masks)
    ml = {k: v * volume.voxel_volume_ml for k, v in voxels.items()}
    if progress:
        progress(0.3, "measuring organs against reference ranges")
    from .finding_boost import image_evidence

    evidence = image_evidence(volume, masks)
    return EncodedVolume(volume=volume, masks=masks, features=features, voxels=voxels, volume_ml=ml,
                         evidence=evidence)


def fuse(text_prior: np.ndarray, image_similarity: np.ndarray, image_weight: float = IMAGE_WEIGHT) -> np.ndarray:
    """Final relevance from text priors ``(N, K)`` in [0, 1] and image cosines ``(N, K)`` (see module doc)."""
    t = np.clip(np.asarray(text_prior, dtype=np.float64), 0.0, 1.0)
    s = np.asarray(image_similarity, dtype=np.float64)
    a = np.exp((s - s.max(axis=1, keepdims=True)) / IMAGE_TAU)
    return np.clip(t * ((1.0 - image_weight) + image_weight * a), 0.0, 1.0)


def score_encoded(
    encoded: EncodedVolume,
    symptoms: Sequence[str] | str,
    models: ScoringModels,
    *,
    image_weight: float = IMAGE_WEIGHT,
    with_passages: bool = True,
    progress: Progress | None = None,
) -> list[SymptomResult]:
    """Score an already encoded volume for each symptom (see the module doc for the formula)."""
    texts = check_symptoms(symptoms)
    if not 0.0 <= image_weight <= 1.0:
        raise ValueError("image_weight must lie in [0, 1]")
    if progress:
        progress(0.5, f"reading {len(texts)} symptom(s)")
    predictions = models.reasoner.predict(texts)
    embeddings = np.stack([p.embedding for p in predictions])
    keys = list(encoded.features.keys)
    similarity = models.image_model.score(encoded.features, embeddings)  # (N, K)
    prior = np.array([[p.structure_relevance[k] for k in keys] for p in predictions])
    relevance = fuse(prior, similarity, image_weight)
    from .finding_boost import FINDING_BOOST, MIN_TEXT_PRIOR, apply_findings

    info = models.info()
    info["fusion"] = {"image_weight": image_weight, "tau": IMAGE_TAU,
                      "formula": "r = t * ((1 - w) + w * exp((s - max s) / tau))",
                      "findings": {"boost": FINDING_BOOST, "min_text_prior": MIN_TEXT_PRIOR,
                                   "formula": "r' = r + boost * t * (1 - r) * (1 - ood_score) for an organ with an "
                                              "abnormal finding and t >= min_text_prior"}}
    evidence = encoded.evidence or {}
    measured = evidence.get("measurements", {})
    found = evidence.get("findings", {})
    results = []
    for n, prediction in enumerate(predictions):
        boosted, boosts, reasons = apply_findings(relevance[n], prior[n], keys, float(prediction.ood_score), found)
        scores = [
            OrganScore(key=k, display_name=organs.ORGANS[k].display_name, relevance=float(boosted[c]),
                       text_prior=float(prior[n, c]), image_score=float(similarity[n, c]),
                       voxels=encoded.voxels[k], volume_ml=float(encoded.volume_ml[k]),
                       finding_boost=boosts[c], why=reasons[c], measurements=measured.get(k, {}),
                       findings=found.get(k, {}).get("findings", []),
                       findings_not_assessed=found.get(k, {}).get("not_assessed", []))
            for c, k in enumerate(keys)
        ]
        order = {k: i for i, k in enumerate(organs.STRUCTURES)}
        scores.sort(key=lambda o: (-o.relevance, order[o.key]))
        result = SymptomResult(symptom=prediction.text, in_domain=bool(prediction.in_domain),
                               ood_score=float(prediction.ood_score), laterality=prediction.laterality,
                               organs=scores, models=info, contrast_phase=evidence.get("contrast_phase", {}))
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
) -> list[SymptomResult]:
    """Score the organs of a CT for one or more symptoms.

    Args:
        volume: the CT (:class:`~MedSORALib.volume_io.Volume`, HU, RAS).
        organ_masks: structure key -> boolean mask ``[i, j, k]`` on the CT grid.
        symptoms: one text or a list of texts.
        models: loaded models (default: :func:`load_models` with the shipped weights).
        device: torch device when ``models`` is not given.
        image_weight: weight of the image-text alignment (module doc).
        with_passages: retrieve supporting knowledge passages for the top three organs.
        progress: ``callback(fraction, message)`` for progress bars.

    Returns:
        One :class:`SymptomResult` per symptom, in input order; the organs were
        encoded once for all of them.
    """
    texts = check_symptoms(symptoms)
    if models is None:
        if progress:
            progress(0.0, "loading models")
        models = load_models(device=device)
    encoded = encode_volume(volume, organ_masks, models, progress)
    return score_encoded(encoded, texts, models, image_weight=image_weight, with_passages=with_passages,
                         progress=progress)
