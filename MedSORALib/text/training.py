"""Training of the text side: anchors -> soft labels -> MLP (+ hard-label MLP) -> out-of-domain detector.

The program ``Training/train_text.py`` reads a configuration and the dataset and calls
:func:`fit_reasoner` once per class setting; tests call it on small data.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..organs import CLASS_SETTINGS
from .anchors import AnchorTrainingConfig, train_anchors
from .laterality import CONTRALATERAL_FACTOR
from .mlp import MLPTrainingConfig, train_mlp
from .ood import DEFAULT_K, OutOfDomainDetector, knn_similarity, rates
from .reasoning import FORMAT, FORMAT_VERSION, TextReasoner


@dataclass
class TextTrainingConfig:
    """Everything that defines a text training run (``Training/configs/text.yaml``)."""

    anchors: AnchorTrainingConfig = field(default_factory=AnchorTrainingConfig)
    mlp: MLPTrainingConfig = field(default_factory=MLPTrainingConfig)
    train_hard: bool = True
    ood_k: int = DEFAULT_K
    settings: tuple[str, ...] = ("paper7", "full11")

    @classmethod
    def from_dict(cls, data: dict | None) -> "TextTrainingConfig":
        data = dict(data or {})
        unknown = set(data) - {"anchors", "mlp", "train_hard", "ood_k", "settings"}
        if unknown:
            raise ValueError(f"unknown text training options: {', '.join(sorted(unknown))}")
        return cls(
            anchors=AnchorTrainingConfig(**(data.get("anchors") or {})),
            mlp=MLPTrainingConfig(**(data.get("mlp") or {})),
            train_hard=bool(data.get("train_hard", True)),
            ood_k=int(data.get("ood_k", DEFAULT_K)),
            settings=tuple(data.get("settings", ("paper7", "full11"))),
        )

    def to_dict(self) -> dict:
        return {
            "anchors": asdict(self.anchors),
            "mlp": asdict(self.mlp),
            "train_hard": self.train_hard,
            "ood_k": self.ood_k,
            "settings": list(self.settings),
        }


def rows_for_setting(rows: list[dict], setting: str, multi_label: bool = False) -> tuple[list[dict], np.ndarray]:
    """Keep the rows usable in a class setting and build their labels.

    Args:
        rows: dataset rows (``organ`` = source class key, ``organs`` = curated multi-organ label).
        setting: ``"paper7"`` or ``"full11"``.
        multi_label: False -> labels (M,) int index of ``organ`` (rows whose organ is outside the
            setting are dropped); True -> labels (M, C) bool from ``organs`` restricted to the
            setting (rows left with no class are dropped).
    """
    classes = CLASS_SETTINGS[setting]
    index = {c: i for i, c in enumerate(classes)}
    kept, labels = [], []
    for row in rows:
        if multi_label:
            organs = row.get("organs") or [row["organ"]]
            vec = np.zeros(len(classes), dtype=bool)
            for organ in organs:
                if organ in index:
                    vec[index[organ]] = True
            if vec.any():
                kept.append(row)
                labels.append(vec)
        elif row.get("organ") in index:
            kept.append(row)
            labels.append(index[row["organ"]])
    if multi_label:
        return kept, np.asarray(labels, dtype=bool).reshape(len(kept), len(classes))
    return kept, np.asarray(labels, dtype=np.int64)


def seeded_split(rows: list[dict], seed: int = 0, fractions=(0.7, 0.1, 0.2)) -> list[dict]:
    """Copies of ``rows`` with a "split" field, stratified by "organ" (for data without one)."""
    by_organ: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_organ[row["organ"]].append(dict(row))
    rng = random.Random(seed)
    out = []
    for organ in sorted(by_organ):
        group = by_organ[organ]
        rng.shuffle(group)
        n_train = round(len(group) * fractions[0])
        n_val = round(len(group) * fractions[1])
        for i, row in enumerate(group):
            row["split"] = "train" if i < n_train else ("val" if i < n_train + n_val else "test")
            out.append(row)
    return out


def relevance_scale(soft: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(low, high): median soft-MLP output for unrelated and for the own class on the training texts."""
    own = np.zeros_like(soft, dtype=bool)
    own[np.arange(len(labels)), labels] = True
    return float(np.median(soft[~own])), float(np.median(soft[own]))


def fit_reasoner(
    setting: str,
    train_embeddings: np.ndarray,
    train_labels: np.ndarray,
    encoder_info: dict,
    config: TextTrainingConfig,
    ood_in_embeddings: np.ndarray,
    ood_out_embeddings: np.ndarray,
    dataset_info: dict | None = None,
    log=print,
) -> TextReasoner:
    """Train every text model of one setting and return the assembled reasoner.

    Args:
        setting: class setting key.
        train_embeddings: (N, D) unit-norm embeddings of the training texts.
        train_labels: (N,) class indices in the setting.
        encoder_info: {"model_id": str, "dim": int} of the encoder that made the embeddings.
        config: hyper-parameters.
        ood_in_embeddings: (A, D) abdominal calibration texts (not training texts).
        ood_out_embeddings: (B, D) non-abdominal calibration texts.
        dataset_info: recorded in the configuration (path, sha256, counts).
    """
    import torch

    classes = CLASS_SETTINGS[setting]
    n_classes = len(classes)
    counts = np.bincount(train_labels, minlength=n_classes)
    if (counts == 0).any():
        missing = [c for c, n in zip(classes, counts) if n == 0]
        raise ValueError(f"no training texts for {', '.join(missing)} in setting {setting}")
    timings = {}
    start = time.perf_counter()
    anchors, anchor_losses = train_anchors(train_embeddings, train_labels, n_classes, config.anchors)
    timings["anchors_s"] = time.perf_counter() - start
    with torch.no_grad():
        soft_targets = anchors.soft_labels(torch.as_tensor(train_embeddings)).numpy()
    log(f"[{setting}] anchors: loss {anchor_losses[0]:.4f} -> {anchor_losses[-1]:.4f} ({timings['anchors_s']:.1f} s)")

    start = time.perf_counter()
    soft_mlp, soft_losses = train_mlp(train_embeddings, soft_targets, config.mlp)
    timings["soft_mlp_s"] = time.perf_counter() - start
    log(f"[{setting}] soft-label MLP: BCE {soft_losses[0]:.4f} -> {soft_losses[-1]:.4f} ({timings['soft_mlp_s']:.1f} s)")
    hard_mlp, hard_losses = None, []
    if config.train_hard:
        start = time.perf_counter()
        one_hot = np.eye(n_classes, dtype=np.float32)[train_labels]
        hard_mlp, hard_losses = train_mlp(train_embeddings, one_hot, config.mlp)
        timings["hard_mlp_s"] = time.perf_counter() - start
        log(f"[{setting}] hard-label MLP: BCE {hard_losses[0]:.4f} -> {hard_losses[-1]:.4f} ({timings['hard_mlp_s']:.1f} s)")

    with torch.no_grad():
        soft_train = soft_mlp.predict(torch.as_tensor(train_embeddings)).numpy()
    low, high = relevance_scale(soft_train, train_labels)

    config_json = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "setting": setting,
        "classes": list(classes),
        "encoder": {"model_id": encoder_info["model_id"], "dim": int(encoder_info["dim"])},
        "margin": config.anchors.margin,
        "mlp": {"hidden": config.mlp.hidden, "dropout": config.mlp.dropout},
        "relevance": {
            "low": low,
            "high": high,
            "rule": "clip((g - low) / (high - low), 0, 1) * gate; low/high = median soft-MLP output of "
            "unrelated / own class on the training texts",
        },
        "laterality": {"contralateral_factor": CONTRALATERAL_FACTOR},
        "ood": {},
        "training": {
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "config": config.to_dict(),
            "n_train": int(len(train_labels)),
            "per_class": {c: int(n) for c, n in zip(classes, counts)},
            "anchor_loss": [anchor_losses[0], anchor_losses[-1]],
            "soft_bce": [soft_losses[0], soft_losses[-1]],
            "hard_bce": [hard_losses[0], hard_losses[-1]] if hard_losses else None,
            **(dataset_info or {}),
        },
    }
    # A provisional detector so that the reasoner can compute its own features.
    config_json["ood"] = OutOfDomainDetector([0, 0, 0], [1, 1, 1], [0, 0, 0], 0.0, 0.5, config.ood_k).to_config()
    reasoner = TextReasoner.from_components(config_json, anchors, soft_mlp, hard_mlp, train_embeddings)

    start = time.perf_counter()
    feats_in = reasoner.ood_features(ood_in_embeddings)
    feats_out = reasoner.ood_features(ood_out_embeddings)
    detector = OutOfDomainDetector.fit(
        np.concatenate([feats_in, feats_out]),
        np.concatenate([np.ones(len(feats_in), bool), np.zeros(len(feats_out), bool)]),
        k=config.ood_k,
    )
    timings["ood_s"] = time.perf_counter() - start
    log(
        f"[{setting}] out-of-domain: threshold p_in >= {detector.threshold:.3f}, calibration "
        f"TPR {detector.calibration['tpr']:.3f} FPR {detector.calibration['fpr']:.3f}"
    )
    config_json["ood"] = detector.to_config()
    config_json["training"]["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    reasoner.config = config_json
    reasoner.detector = detector
    return reasoner


def ood_heldout_report(reasoner: TextReasoner, in_embeddings: np.ndarray, out_embeddings: np.ndarray) -> dict:
    """TPR / FPR of ``reasoner``'s in-domain decision on held-out abdominal and non-abdominal texts."""
    p_in = reasoner.detector.probability_in_domain(
        np.concatenate([reasoner.ood_features(in_embeddings), reasoner.ood_features(out_embeddings)])
    )
    truth = np.concatenate([np.ones(len(in_embeddings), bool), np.zeros(len(out_embeddings), bool)])
    report = rates(p_in >= reasoner.detector.threshold, truth)
    report.update({"n_in_domain": int(len(in_embeddings)), "n_out_of_domain": int(len(out_embeddings))})
    return report


def file_sha256(path: str | Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_jsonl(path: str | Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{line_no}: not JSON: {exc}") from exc
    return rows
