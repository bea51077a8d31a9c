"""Symptom text -> organ relevance: the trained text side of MedSORA, as one loadable object.

A :class:`TextReasoner` is a folder ``<weights>/<setting>/`` holding ``config.json`` and
``model.safetensors`` (plus ``knowledge_terms.json`` for a model with a knowledge channel; organ anchors, the soft-label MLP, the MLPs of the ablations, the
embeddings of the training and non-abdominal calibration texts used by the out-of-domain detector). It is loaded once per
process and per folder (:meth:`TextReasoner.load` caches it).

For each text, :meth:`TextReasoner.predict` returns:

* ``class_relevance``: the relevance head's output g_i per reasoning class (the soft-label MLP for the
  paper's recipe; the full11 product model uses its label-smoothing head and reads the knowledge
  channel's evidence next to the embedding, see :mod:`MedSORALib.text.knowledge_channel`), turned into a
  calibrated probability that the class is in the text's label by Platt scaling,
  ``sigmoid(a * logit(g) + b)`` (older weights: rescaled so that 0 is the median output for an unrelated
  organ and 1 for the text's own organ, clipped to [0, 1]), then multiplied by the out-of-domain gate
  (1 for abdominal texts, ``p_in / threshold`` below the threshold);
* ``structure_relevance``: every class value given to its structures (13 keys; the paper7
  setting gives 0 to the four structures it has no class for), with the laterality rule of
  :mod:`MedSORALib.text.laterality` splitting the kidneys and adrenal glands;
* ``in_domain``, ``ood_score`` (``1 - p_in``) and the text embedding.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ModelError, SymptomError
from ..files import atomic_target, atomic_write_text, resource_path
from ..organs import CLASS_SETTINGS, STRUCTURES, class_structures
from .laterality import detect_laterality, split_paired

FORMAT = "medsora-text-reasoner"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TERMS_FILE = "knowledge_terms.json"
SETTINGS = tuple(CLASS_SETTINGS)
ABLATIONS = ("hard", "anchor_soft", "smoothed")


def default_weights_dir() -> Path:
    """The weights shipped inside the package: ``MedSORALib/resources/weights/text``."""
    return resource_path("weights", "text")


def resolve_setting_dir(weights_dir: str | os.PathLike | None, setting: str) -> Path:
    """Folder of one setting: ``weights_dir/<setting>``, or ``weights_dir`` itself if it is one."""
    if setting not in CLASS_SETTINGS:
        raise ModelError(f"unknown class setting {setting!r}; choose one of {', '.join(SETTINGS)}")
    base = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    for folder in (base / setting, base):
        config = folder / CONFIG_FILE
        if config.is_file():
            try:
                found = json.loads(config.read_text(encoding="utf-8")).get("setting")
            except (OSError, json.JSONDecodeError) as exc:
                raise ModelError(f"cannot read text model configuration {config}: {exc}") from exc
            if found == setting:
                return folder
    raise ModelError(
        f"no text model for setting {setting!r} in {base} (expected {base / setting / CONFIG_FILE}; "
        "train one with: python Training/train_text.py)"
    )


@dataclass
class TextPrediction:
    """Relevance of the organs for one symptom text.

    Attributes:
        text: the input text.
        in_domain: True when the text reads as an abdominal symptom.
        ood_score: ``1 - p_in`` in [0, 1]; higher = further from the abdominal corpus.
        class_relevance: {class key: relevance in [0, 1]} for the setting's classes.
        structure_relevance: {structure key: relevance in [0, 1]} for all 13 structures, laterality applied.
        embedding: (D,) float32 unit-norm text embedding.
        laterality: "left", "right" or None (see :mod:`MedSORALib.text.laterality`).
        class_scores: {class key: raw MLP output in [0, 1]} before rescaling and gating.
    """

    text: str
    in_domain: bool
    ood_score: float
    class_relevance: dict[str, float]
    structure_relevance: dict[str, float]
    embedding: np.ndarray
    laterality: str | None = None
    class_scores: dict[str, float] = field(default_factory=dict)

    def ranked_structures(self) -> list[tuple[str, float]]:
        """(structure key, relevance) sorted by relevance, highest first (ties in catalog order)."""
        order = {k: i for i, k in enumerate(STRUCTURES)}
        return sorted(self.structure_relevance.items(), key=lambda kv: (-kv[1], order[kv[0]]))


_CACHE: dict[tuple, "TextReasoner"] = {}
_CACHE_LOCK = threading.Lock()


class TextReasoner:
    """Trained text models of one class setting (see module docstring).

    Build with :meth:`load` (from a weights folder) or :meth:`from_components` (after training).
    """

    def __init__(
        self, config: dict, tensors: dict, encoder=None, folder: Path | None = None, knowledge_terms: list | None = None
    ) -> None:
        import torch

        from .anchors import OrganAnchors
        from .mlp import RelevanceMLP
        from .ood import OutOfDomainDetector

        self.config = config
        self.folder = folder
        self.setting = config["setting"]
        self.classes: tuple[str, ...] = tuple(config["classes"])
        if self.classes != tuple(CLASS_SETTINGS[self.setting]):
            raise ModelError(f"text model classes {self.classes} do not match setting {self.setting!r}")
        dim = int(config["encoder"]["dim"])
        n = len(self.classes)
        try:
            self.anchors = OrganAnchors(n, dim)
            self.anchors.load_state_dict(
                {"positive": tensors["anchors.positive"], "negative": tensors["anchors.negative"]}
            )
            mlp_cfg = config["mlp"]
            inputs = config.get("input") or {}
            self.expand_abbreviations = bool(inputs.get("expand_abbreviations", False))
            self.knowledge = None
            if inputs.get("knowledge"):
                from .knowledge_channel import KnowledgeChannel

                terms = knowledge_terms if knowledge_terms is not None else _read_terms(folder)
                self.knowledge = KnowledgeChannel(terms, self.classes, tensors["knowledge.embeddings"].float().numpy())
            in_dim = dim + (self.knowledge.width if self.knowledge is not None else 0)
            self.soft_mlp = RelevanceMLP(in_dim, n, hidden=int(mlp_cfg["hidden"]))
            self.soft_mlp.load_state_dict(_prefixed(tensors, "soft_mlp."))
            # Ablation heads kept next to the model for evaluation: "hard" (one-hot labels),
            # "anchor_soft" (the anchors' soft labels alone, without the source-organ term) and
            # "smoothed" (the source organ mixed with a constant: label smoothing, no anchors).
            self.ablation_mlps: dict[str, RelevanceMLP] = {}
            for name in ABLATIONS:
                if any(k.startswith(f"{name}_mlp.") for k in tensors):
                    head = RelevanceMLP(in_dim, n, hidden=int(mlp_cfg["hidden"]))
                    head.load_state_dict(_prefixed(tensors, f"{name}_mlp."))
                    self.ablation_mlps[name] = head.eval()
            self.knn_bank = tensors["ood.knn_bank"].float().numpy()
            self.out_bank = tensors["ood.out_bank"].float().numpy()
            self.detector = OutOfDomainDetector.from_config(config["ood"])
            #: whether the word channel (:mod:`.ood_lexicon`) adjusts the detector's ``p_in`` (weights before
            #: the refit of Training/refit_ood.py have no key: on)
            self.word_channel = bool(config["ood"].get("word_channel", True))
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ModelError(f"text model weights are inconsistent with their configuration: {exc}") from exc
        self.anchors.eval()
        self.soft_mlp.eval()
        rel = config["relevance"]
        #: the head whose output is the relevance: "soft" (source organ + anchors, the paper's recipe) or
        #: one of the stored control heads (the full11 product model uses "smoothed", chosen on evidence)
        self.relevance_head = str(rel.get("head", "soft"))
        if self.relevance_head != "soft" and self.relevance_head not in self.ablation_mlps:
            raise ModelError(f"text model relevance head {self.relevance_head!r} is not in its weights")
        self._low, self._high = float(rel["low"]), float(rel["high"])
        #: Platt scaling of the MLP logit (a, b), fitted on the validation split; None = the older clipped rescale.
        self._platt = (float(rel["platt_a"]), float(rel["platt_b"])) if "platt_a" in rel else None
        self._torch = torch
        self._encoder = encoder

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load(
        cls, weights_dir: str | os.PathLike | None = None, setting: str = "full11", encoder=None
    ) -> "TextReasoner":
        """Load (once per process) the text models of ``setting`` from ``weights_dir``.

        Args:
            weights_dir: folder with ``<setting>/config.json``; default: the shipped weights.
            setting: ``"paper7"`` or ``"full11"``.
            encoder: a :class:`~MedSORALib.text.encoder.TextEncoder`; default: the process-wide default encoder.
        """
        folder = resolve_setting_dir(weights_dir, setting).resolve()
        stamp = (folder / WEIGHTS_FILE).stat().st_mtime_ns if (folder / WEIGHTS_FILE).exists() else None
        key = (str(folder), stamp, id(encoder) if encoder is not None else None)
        with _CACHE_LOCK:
            cached = _CACHE.get(key)
            if cached is not None:
                return cached
            config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
            if config.get("format") != FORMAT:
                raise ModelError(f"{folder / CONFIG_FILE} is not a MedSORA text model (format {config.get('format')!r})")
            if int(config.get("format_version", 0)) > FORMAT_VERSION:
                raise ModelError(f"{folder} was written by a newer MedSORA (format version {config['format_version']})")
            weights = folder / WEIGHTS_FILE
            if not weights.is_file():
                raise ModelError(f"text model weights missing: {weights}")
            from safetensors.torch import load_file

            try:
                tensors = load_file(str(weights))
            except Exception as exc:  # safetensors raises its own error types
                raise ModelError(f"cannot read text model weights {weights}: {exc}") from exc
            reasoner = cls(config, tensors, encoder=encoder, folder=folder)
            _CACHE[key] = reasoner
            return reasoner

    @classmethod
    def from_components(
        cls,
        config: dict,
        anchors,
        soft_mlp,
        ablation_mlps: dict,
        knn_bank: np.ndarray,
        out_bank: np.ndarray,
        encoder=None,
        knowledge=None,
    ):
        """Assemble a reasoner from trained modules (used by training before saving).

        Args:
            knn_bank: (N, D) embeddings of the training texts; out_bank: (B, D) embeddings of the
                non-abdominal calibration texts (both for the out-of-domain features).
        """
        tensors = _tensors_of(anchors, soft_mlp, ablation_mlps, knn_bank, out_bank, knowledge)
        terms = knowledge.to_json() if knowledge is not None else None
        return cls(config, tensors, encoder=encoder, knowledge_terms=terms)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``folder`` (atomically, file by file)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = _tensors_of(self.anchors, self.soft_mlp, self.ablation_mlps, self.knn_bank, self.out_bank, self.knowledge)
        with atomic_target(folder / WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp), metadata={"format": FORMAT, "setting": self.setting})
        if self.knowledge is not None:
            atomic_write_text(folder / TERMS_FILE, json.dumps(self.knowledge.to_json(), ensure_ascii=False) + "\n")
        atomic_write_text(folder / CONFIG_FILE, json.dumps(self.config, indent=2, sort_keys=False) + "\n")
        return folder

    # -- encoder --------------------------------------------------------------------------------
    @property
    def encoder(self):
        if self._encoder is None:
            from .encoder import get_default_encoder

            self._encoder = get_default_encoder()
        expected = self.config["encoder"]["model_id"]
        if self._encoder.model_id != expected:
            raise ModelError(
                f"text model was trained on encoder {expected!r} but {self._encoder.model_id!r} was given"
            )
        return self._encoder

    def model_text(self, text: str) -> str:
        """The text as the encoder sees it (abbreviations spelled out when the model was trained so)."""
        if self.expand_abbreviations:
            from .abbreviations import expand

            return expand(text)
        return text

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, D) float32 unit-norm embeddings of ``texts`` (after :meth:`model_text`) with the model's encoder."""
        return self.encoder.encode([self.model_text(t) for t in texts])

    def mlp_inputs(self, embeddings: np.ndarray, texts: Sequence[str] | None = None, exclude=None) -> np.ndarray:
        """Inputs of the relevance MLPs: the embeddings, followed by the knowledge evidence when the model has it.

        Args:
            embeddings: (N, D) from :meth:`encode`.
            texts: the N texts (needed by the knowledge channel's BM25; given as typed).
            exclude: per text, knowledge sources to leave out (training only).
        """
        x = np.asarray(embeddings, dtype=np.float32)
        if self.knowledge is None:
            return x
        if texts is None or len(texts) != len(x):
            raise ModelError("this text model reads knowledge evidence: pass the texts with their embeddings")
        evidence = self.knowledge.evidence([self.model_text(t) for t in texts], x, exclude)
        return np.concatenate([x, evidence], axis=1)

    # -- scoring --------------------------------------------------------------------------------
    def raw_scores(
        self, embeddings: np.ndarray, texts: Sequence[str] | None = None, exclude=None
    ) -> dict[str, np.ndarray]:
        """Model outputs for (N, D) embeddings (and their texts, for a model with a knowledge channel;
        ``exclude``: per text, knowledge sources to leave out, for evaluation on texts written from them).

        Returns:
            dict of arrays: ``anchor_cos`` (N, C) cos(p_i, f); ``soft`` (N, C) soft-label MLP outputs;
            ``hard`` / ``anchor_soft`` / ``smoothed`` (N, C) outputs of the ablation heads present in the folder; ``p_in`` (N,).
        """
        torch = self._torch
        x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
        inputs = torch.as_tensor(self.mlp_inputs(embeddings, texts, exclude))
        with torch.no_grad():
            pos, _ = self.anchors.similarities(x)
            soft = self.soft_mlp.predict(inputs)
            out = {"anchor_cos": pos.numpy(), "soft": soft.numpy()}
            for name, head in self.ablation_mlps.items():
                out[name] = head.predict(inputs).numpy()
        out["p_in"] = self.detector.probability_in_domain(self.ood_features(embeddings, out))
        return out

    def ood_features(
        self,
        embeddings: np.ndarray,
        scores: dict | None = None,
        leave_out_non_abdominal: bool = False,
        texts: Sequence[str] | None = None,
    ) -> np.ndarray:
        """(N, 4) out-of-domain features (see :mod:`MedSORALib.text.ood`).

        ``leave_out_non_abdominal`` ignores identical texts in the non-abdominal bank (calibration).
        """
        from .ood import knn_similarity

        if scores is None:
            torch = self._torch
            x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
            with torch.no_grad():
                pos, _ = self.anchors.similarities(x)
                inputs = torch.as_tensor(self.mlp_inputs(embeddings, texts))
                scores = {"anchor_cos": pos.numpy(), "soft": self.soft_mlp.predict(inputs).numpy()}
        return np.stack(
            [
                scores["anchor_cos"].max(axis=1),
                scores["soft"].max(axis=1),
                knn_similarity(np.asarray(embeddings, dtype=np.float32), self.knn_bank, self.detector.k),
                knn_similarity(
                    np.asarray(embeddings, dtype=np.float32),
                    self.out_bank,
                    self.detector.k,
                    exclude_identical=leave_out_non_abdominal,
                ),
            ],
            axis=1,
        )

    def relevance_from_soft(self, soft: np.ndarray) -> np.ndarray:
        """Outputs (N, C) of the relevance head -> relevance in [0, 1] (before the out-of-domain gate).

        With Platt scaling (current models): ``sigmoid(a * logit(g) + b)``, the calibrated probability that
        the class belongs to the text's multi-organ label, never exactly 0 or 1. Older models: the
        clipped rescale ``clip((g - low) / (high - low), 0, 1)``.
        """
        soft = np.asarray(soft, dtype=np.float64)
        if self._platt is not None:
            return platt(soft, *self._platt)
        return np.clip((soft - self._low) / max(self._high - self._low, 1e-6), 0.0, 1.0)

    def predict(self, texts: Sequence[str]) -> list[TextPrediction]:
        """Score symptom texts; see the module docstring for what each field holds.

        Raises:
            SymptomError: a text is empty or not a string.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise SymptomError(f"symptom text {i + 1} is empty; give a description such as 'painless jaundice'")
        if not texts:
            return []
        clean = [t.strip() for t in texts]
        embeddings = self.encode(clean)
        return self.predict_embeddings(clean, embeddings)

    def predict_embeddings(self, texts: Sequence[str], embeddings: np.ndarray) -> list[TextPrediction]:
        """Like :meth:`predict` for texts already embedded ((N, D) float32, from :meth:`encode`)."""
        from .ood_lexicon import apply_lexical_evidence

        scores = self.raw_scores(embeddings, texts)
        # The word channel of the out-of-domain decision (organ, disease and abbreviation evidence), unless the
        # detector was calibrated to decide alone (``ood.word_channel: false``, Training/refit_ood.py).
        if self.word_channel:
            p_in = apply_lexical_evidence(texts, scores["p_in"], self.detector.threshold)
        else:
            p_in = np.asarray(scores["p_in"], dtype=np.float64)
        gate = self.detector.gate(p_in)
        head = scores[self.relevance_head]
        relevance = self.relevance_from_soft(head) * gate[:, None]
        out = []
        for i, text in enumerate(texts):
            class_rel = {c: float(relevance[i, j]) for j, c in enumerate(self.classes)}
            side = detect_laterality(text)
            per_structure = dict.fromkeys(STRUCTURES, 0.0)
            per_structure.update(split_paired(class_rel, side, class_structures))
            out.append(
                TextPrediction(
                    text=text,
                    in_domain=bool(p_in[i] >= self.detector.threshold),
                    ood_score=float(1.0 - p_in[i]),
                    class_relevance=class_rel,
                    structure_relevance=per_structure,
                    embedding=np.asarray(embeddings[i], dtype=np.float32),
                    laterality=side,
                    class_scores={c: float(head[i, j]) for j, c in enumerate(self.classes)},
                )
            )
        return out

    def reason(self, texts: Sequence[str], age=None, sex=None) -> list:
        """The model's prediction fused with the differential diagnosis (gated), per text.

        Returns :class:`MedSORALib.differential.fusion.Reasoned` objects: fused ``structure_relevance``, the
        ``differential`` (diagnoses, findings read, removed structures), ``scope`` / ``outside`` / ``in_domain``
        and the model's own ``prediction``. ``age`` / ``sex``: the patient's when known (they take precedence
        over the text's). See docs/reasoning.md.
        """
        from ..differential.fusion import reason

        return reason(texts, self, age=age, sex=sex)

    def info(self) -> dict:
        """Model identity for JSON outputs."""
        training = self.config.get("training", {})
        return {
            "text_model": f"{FORMAT}/{self.setting}",
            "setting": self.setting,
            "classes": list(self.classes),
            "text_encoder": self.config["encoder"]["model_id"],
            "weights": str(self.folder) if self.folder else None,
            "trained": training.get("date"),
            "dataset_sha256": training.get("dataset_sha256"),
            "ood_threshold": self.detector.threshold,
        }


def platt(soft: np.ndarray, a: float, b: float) -> np.ndarray:
    """``sigmoid(a * logit(soft) + b)`` elementwise, with ``soft`` kept inside (1e-6, 1 - 1e-6)."""
    p = np.clip(np.asarray(soft, dtype=np.float64), 1e-6, 1.0 - 1e-6)
    return 1.0 / (1.0 + np.exp(-(a * np.log(p / (1.0 - p)) + b)))


def _read_terms(folder: Path | None) -> list:
    path = (folder or Path(".")) / TERMS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"text model knowledge terms unreadable: {path}: {exc}") from exc


def _prefixed(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _tensors_of(anchors, soft_mlp, ablation_mlps: dict, knn_bank, out_bank, knowledge=None) -> dict:
    import torch

    tensors = {
        "anchors.positive": anchors.positive.detach().clone().contiguous(),
        "anchors.negative": anchors.negative.detach().clone().contiguous(),
    }
    tensors.update({f"soft_mlp.{k}": v.detach().clone().contiguous() for k, v in soft_mlp.state_dict().items()})
    for name, head in (ablation_mlps or {}).items():
        if name not in ABLATIONS:
            raise ValueError(f"unknown ablation head {name!r}")
        tensors.update({f"{name}_mlp.{k}": v.detach().clone().contiguous() for k, v in head.state_dict().items()})
    bank = knn_bank if isinstance(knn_bank, torch.Tensor) else torch.as_tensor(np.asarray(knn_bank))
    tensors["ood.knn_bank"] = bank.to(torch.float16).contiguous()
    out = out_bank if isinstance(out_bank, torch.Tensor) else torch.as_tensor(np.asarray(out_bank))
    tensors["ood.out_bank"] = out.to(torch.float16).contiguous()
    if knowledge is not None:
        tensors["knowledge.embeddings"] = torch.as_tensor(knowledge.embeddings).to(torch.float16).contiguous()
    return tensors


def clear_cache() -> None:
    """Forget loaded reasoners (tests, or after retraining in the same process)."""
    with _CACHE_LOCK:
        _CACHE.clear()
