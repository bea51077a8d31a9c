"""Training of the text side: anchors -> soft labels -> MLP (+ ablation MLPs) -> out-of-domain detector.

The MLP target mixes the source organ of a training text with the anchors' soft labels,
``w * one_hot + (1 - w) * (cos(p_i, f) + 1) / 2`` (``source_weight`` w, default 0.5, chosen on the
validation split among 0.25 / 0.5 / 0.75). With w = 0 the target is the anchors' soft labels alone,
as the paper states; with the bundled encoder the anchors cannot reach the margin (own-organ
cosines ~0.5 rather than >= 0.8) and, alone, rank organs worse than one-hot labels, so the
shipped model keeps the source organ in the target. The ablation heads (one-hot, anchors alone,
label smoothing) are trained with the same settings and stored for the evaluation.

The program ``Training/train_text.py`` reads a configuration and the dataset and calls
:func:`fit_reasoner` once per class setting; tests call it on small data.
"""

from __future__ import annotations

import datetime as _dt
import random
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field

import numpy as np

from ..organs import CLASS_SETTINGS
from .anchors import AnchorTrainingConfig, train_anchors
from .laterality import CONTRALATERAL_FACTOR
from .mlp import MLPTrainingConfig, train_mlp
from .ood import DEFAULT_K, FEATURES, OutOfDomainDetector, rates
from .reasoning import FORMAT, FORMAT_VERSION, TextReasoner


@dataclass
class TextTrainingConfig:
    """Everything that defines a text training run (``Training/configs/text.yaml``)."""

    anchors: AnchorTrainingConfig = field(default_factory=AnchorTrainingConfig)
    mlp: MLPTrainingConfig = field(default_factory=MLPTrainingConfig)
    #: weight w of the source organ in the MLP target: w * one-hot + (1 - w) * anchor soft label;
    #: 0 gives the anchors' soft labels alone (the paper's soft-label recipe read literally).
    source_weight: float = 0.5
    train_hard: bool = True
    #: also train the MLP on the anchors' soft labels alone (ablation; only when source_weight > 0)
    train_anchor_soft: bool = True
    #: also train the label-smoothing control: w * one-hot + (1 - w) * constant (the mean anchor soft label)
    train_smoothed: bool = True
    ood_k: int = DEFAULT_K
    settings: tuple[str, ...] = ("paper7", "full11")

    @classmethod
    def from_dict(cls, data: dict | None) -> "TextTrainingConfig":
        data = dict(data or {})
        unknown = set(data) - {"anchors", "mlp", "source_weight", "train_hard", "train_anchor_soft", "train_smoothed", "ood_k", "settings"}
        if unknown:
            raise ValueError(f"unknown text training options: {', '.join(sorted(unknown))}")
        return cls(
            anchors=AnchorTrainingConfig(**(data.get("anchors") or {})),
            mlp=MLPTrainingConfig(**(data.get("mlp") or {})),
            source_weight=float(data.get("source_weight", 0.5)),
            train_hard=bool(data.get("train_hard", True)),
            train_anchor_soft=bool(data.get("train_anchor_soft", True)),
            train_smoothed=bool(data.get("train_smoothed", True)),
            ood_k=int(data.get("ood_k", DEFAULT_K)),
            settings=tuple(data.get("settings", ("paper7", "full11"))),
        )

    def to_dict(self) -> dict:
        return {
            "anchors": asdict(self.anchors),
            "mlp": asdict(self.mlp),
            "source_weight": self.source_weight,
            "train_hard": self.train_hard,
            "train_anchor_soft": self.train_anchor_soft,
            "train_smoothed": self.train_smoothed,
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


def soft_targets(anchor_soft: np.ndarray, labels: np.ndarray, source_weight: float) -> np.ndarray:
    """MLP targets ``w * one_hot(label) + (1 - w) * anchor_soft``.

    Args:
        anchor_soft: (N, C) anchor soft labels ``(cos(p_i, f) + 1) / 2``.
        labels: (N,) source-organ indices.
        source_weight: w in [0, 1); 0 = the anchor soft labels alone.

    Returns:
        (N, C) float32 in [0, 1].
    """
    one_hot = np.eye(anchor_soft.shape[1], dtype=np.float32)[labels]
    return (source_weight * one_hot + (1.0 - source_weight) * anchor_soft).astype(np.float32)


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
        anchor_soft = anchors.soft_labels(torch.as_tensor(train_embeddings)).numpy()
    log(f"[{setting}] anchors: loss {anchor_losses[0]:.4f} -> {anchor_losses[-1]:.4f} ({timings['anchors_s']:.1f} s)")
    one_hot = np.eye(n_classes, dtype=np.float32)[train_labels]
    w = float(config.source_weight)
    if not 0.0 <= w < 1.0:
        raise ValueError(f"source_weight must lie in [0, 1), got {w}")
    targets = soft_targets(anchor_soft, train_labels, w)

    heads = {"soft": targets}
    if config.train_hard:
        heads["hard"] = one_hot
    if config.train_anchor_soft and w > 0:
        heads["anchor_soft"] = anchor_soft
    if config.train_smoothed and w > 0:
        heads["smoothed"] = (w * one_hot + (1.0 - w) * float(anchor_soft.mean())).astype(np.float32)
    trained, losses = {}, {}
    for name, target in heads.items():
        start = time.perf_counter()
        trained[name], curve = train_mlp(train_embeddings, target, config.mlp)
        losses[name] = [curve[0], curve[-1]]
        timings[f"{name}_mlp_s"] = time.perf_counter() - start
        log(f"[{setting}] {name}-label MLP: BCE {curve[0]:.4f} -> {curve[-1]:.4f} ({timings[f'{name}_mlp_s']:.1f} s)")
    soft_mlp = trained.pop("soft")

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
            "bce_first_last": losses,
            "soft_labels": {
                "source_weight": w,
                "rule": "target_i = w * [i == source organ] + (1 - w) * (cos(p_i, f) + 1) / 2",
                "mean_target_own": float(targets[one_hot > 0].mean()),
                "mean_target_other": float(targets[one_hot == 0].mean()),
            },
            **(dataset_info or {}),
        },
    }
    # A provisional detector so that the reasoner can compute its own features.
    n_feat = len(FEATURES)
    config_json["ood"] = OutOfDomainDetector([0.0] * n_feat, [1.0] * n_feat, [0.0] * n_feat, 0.0, 0.5, config.ood_k).to_config()
    reasoner = TextReasoner.from_components(
        config_json, anchors, soft_mlp, trained, train_embeddings, ood_out_embeddings
    )

    start = time.perf_counter()
    feats_in = reasoner.ood_features(ood_in_embeddings)
    feats_out = reasoner.ood_features(ood_out_embeddings, leave_out_non_abdominal=True)
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
