"""Training of the text side: anchors -> soft labels -> MLP (+ ablation MLPs) -> out-of-domain detector.

The MLP target mixes the source organ of a training text with the anchors' soft labels,
``w * one_hot + (1 - w) * (cos(p_i, f) + 1) / 2`` (``source_weight`` w, default 0.5, chosen on the
validation split among 0.25 / 0.5 / 0.75). With w = 0 the target is the anchors' soft labels alone,
as the paper states; with the bundled encoder the anchors cannot reach the margin (own-organ
cosines ~0.5 rather than >= 0.8) and, alone, rank organs worse than one-hot labels, so the
shipped model keeps the source organ in the target. The ablation heads (one-hot, anchors alone,
label smoothing) are trained with the same settings and stored for the evaluation.

The product setting (full11 by default, :class:`ProductOptions`) also trains on the register texts,
spells out abbreviations, fuses the knowledge channel's evidence into the MLP inputs, raises the
target of the curated secondary organs and takes its relevance from the label-smoothing head, which
the comparison of ``Training/compare_text_models.py`` preferred. Every setting's relevance is Platt-
scaled on the validation split (:func:`fit_platt`).

The program ``Training/train_text.py`` reads a configuration and the dataset and calls
:func:`fit_reasoner` once per class setting; tests call it on small data.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from MedSORALib.organs import CLASS_SETTINGS
from MedSORALib.text.anchors import AnchorTrainingConfig, train_anchors
from MedSORALib.text.laterality import CONTRALATERAL_FACTOR
from MedSORALib.text.mlp import MLPTrainingConfig, train_mlp
from MedSORALib.text.ood import DEFAULT_K, FEATURES, OutOfDomainDetector, rates
from MedSORALib.text.reasoning import FORMAT, FORMAT_VERSION, TextReasoner


@dataclass
class ProductOptions:
    """What the product model (``full11`` by default) adds to the paper's recipe.

    Attributes:
        settings: class settings trained with these options (the others follow the paper: paper-style
            texts only, no organ names, no knowledge channel).
        extra_datasets: JSONL files of texts in other registers (organ and disease names allowed),
            with a ``split`` field; their train split joins the training texts.
        expand_abbreviations: spell out clinical abbreviations before embedding
            (:mod:`MedSORALib.text.abbreviations`).
        knowledge: fuse the knowledge channel's evidence into the MLP inputs
            (:mod:`MedSORALib.text.knowledge_channel`); ``knowledge_corpus`` also uses the team corpus passages.
        secondary_weight: MLP target floor for the other organs of a text's curated label
            (``organs[1:]``); 0 = the source organ only.
        relevance_head: the head whose output becomes the relevance: "soft" (source organ + anchors) or
            "smoothed" (source organ + a constant: the label-smoothing head), "hard".
        mlp: overrides of the MLP hyper-parameters for these settings (e.g. ``{"epochs": 100, "batch_size": 128}``
            for the larger training set); empty = the paper's ``mlp`` block.
    """

    settings: tuple[str, ...] = ("full11",)
    extra_datasets: tuple[str, ...] = ()
    expand_abbreviations: bool = False
    knowledge: bool = False
    knowledge_corpus: bool = True
    secondary_weight: float = 0.0
    relevance_head: str = "soft"
    mlp: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict | None) -> "ProductOptions":
        data = dict(data or {})
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown product options: {', '.join(sorted(unknown))}")
        return cls(
            settings=tuple(data.get("settings", ("full11",))),
            extra_datasets=tuple(data.get("extra_datasets", ())),
            expand_abbreviations=bool(data.get("expand_abbreviations", False)),
            knowledge=bool(data.get("knowledge", False)),
            knowledge_corpus=bool(data.get("knowledge_corpus", True)),
            secondary_weight=float(data.get("secondary_weight", 0.0)),
            relevance_head=str(data.get("relevance_head", "soft")),
            mlp=dict(data.get("mlp") or {}),
        )


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
    #: let the word channel of MedSORALib.text.ood_lexicon adjust p_in (stored as ``ood.word_channel``); off by
    #: default, as shipped (docs/evaluation.md: on the tune half of the dev sets it let non-abdominal
    #: presentations through and kept no more abdominal ones)
    ood_word_channel: bool = False
    settings: tuple[str, ...] = ("paper7", "full11")
    product: ProductOptions = field(default_factory=ProductOptions)

    def options_for(self, setting: str) -> ProductOptions:
        """The product options of ``setting`` (all off for a setting trained with the paper's recipe)."""
        return self.product if setting in self.product.settings else ProductOptions(settings=())

    @classmethod
    def from_dict(cls, data: dict | None) -> "TextTrainingConfig":
        data = dict(data or {})
        unknown = set(data) - {"anchors", "mlp", "source_weight", "train_hard", "train_anchor_soft", "train_smoothed", "ood_k", "ood_word_channel", "settings",
                                 "product"}
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
            ood_word_channel=bool(data.get("ood_word_channel", False)),
            settings=tuple(data.get("settings", ("paper7", "full11"))),
            product=ProductOptions.from_dict(data.get("product")),
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
            "ood_word_channel": self.ood_word_channel,
            "settings": list(self.settings),
            "product": {**asdict(self.product), "settings": list(self.product.settings),
                        "extra_datasets": list(self.product.extra_datasets), "mlp": dict(self.product.mlp)},
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


def fit_platt(soft: np.ndarray, relevant: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a * logit(g) + b)`` fitted by logistic regression of "class in the label" on the
    MLP's logit over all (text, class) pairs of a calibration set.

    Args:
        soft: (N, C) MLP outputs in (0, 1).
        relevant: (N, C) bool multi-organ labels.
    """
    from sklearn.linear_model import LogisticRegression

    p = np.clip(np.asarray(soft, dtype=np.float64), 1e-6, 1.0 - 1e-6).ravel()
    y = np.asarray(relevant, dtype=bool).ravel().astype(int)
    model = LogisticRegression(C=100.0, max_iter=1000)
    model.fit(np.log(p / (1.0 - p))[:, None], y)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def secondary_floor(targets: np.ndarray, secondary: np.ndarray | None, weight: float) -> np.ndarray:
    """``max(targets, weight)`` where ``secondary`` (N, C bool: other organs of the curated label) is set."""
    if secondary is None or weight <= 0:
        return targets
    return np.where(np.asarray(secondary, dtype=bool), np.maximum(targets, weight), targets).astype(np.float32)


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
    *,
    train_texts: list[str] | None = None,
    train_exclude: list | None = None,
    train_secondary: np.ndarray | None = None,
    knowledge=None,
    ood_in_texts: list[str] | None = None,
    ood_out_texts: list[str] | None = None,
    calibration: tuple | None = None,
) -> TextReasoner:
    """Train every text model of one setting and return the assembled reasoner.

    Args:
        setting: class setting key.
        train_embeddings: (N, D) unit-norm embeddings of the training texts (of the texts as the
            model sees them: abbreviations spelled out when the setting's options say so).
        train_labels: (N,) class indices in the setting.
        encoder_info: {"model_id": str, "dim": int} of the encoder that made the embeddings.
        config: hyper-parameters (``config.options_for(setting)`` says what the product model adds).
        ood_in_embeddings: (A, D) abdominal calibration texts (not training texts).
        ood_out_embeddings: (B, D) non-abdominal calibration texts.
        dataset_info: recorded in the configuration (path, sha256, counts).
        train_texts, ood_in_texts, ood_out_texts: the texts of those embeddings (as typed), needed
            with a knowledge channel.
        train_exclude: per training text, knowledge sources left out of its evidence (its passage).
        train_secondary: (N, C) bool, the other organs of each training text's curated label.
        knowledge: a :class:`~MedSORALib.text.knowledge_channel.KnowledgeChannel` when the setting uses it.
        calibration: (embeddings, texts, relevant (M, C) bool) of held-out texts (the validation split)
            for the Platt scaling of the relevance; None keeps the clipped rescale.
    """
    import torch

    options = config.options_for(setting)
    classes = CLASS_SETTINGS[setting]
    n_classes = len(classes)
    counts = np.bincount(train_labels, minlength=n_classes)
    if (counts == 0).any():
        missing = [c for c, n in zip(classes, counts) if n == 0]
        raise ValueError(f"no training texts for {', '.join(missing)} in setting {setting}")
    if options.knowledge and knowledge is None:
        raise ValueError(f"setting {setting} uses the knowledge channel but none was given")
    if not options.knowledge:
        knowledge = None
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
    floor = options.secondary_weight
    targets = secondary_floor(soft_targets(anchor_soft, train_labels, w), train_secondary, floor)

    heads = {"soft": targets}
    if config.train_hard:
        heads["hard"] = secondary_floor(one_hot, train_secondary, floor)
    if config.train_anchor_soft and w > 0:
        heads["anchor_soft"] = anchor_soft
    if config.train_smoothed and w > 0:
        smoothed = (w * one_hot + (1.0 - w) * float(anchor_soft.mean())).astype(np.float32)
        heads["smoothed"] = secondary_floor(smoothed, train_secondary, floor)

    config_json = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "setting": setting,
        "classes": list(classes),
        "encoder": {"model_id": encoder_info["model_id"], "dim": int(encoder_info["dim"])},
        "input": {"expand_abbreviations": bool(options.expand_abbreviations), "knowledge": knowledge is not None},
        "margin": config.anchors.margin,
        "mlp": {"hidden": config.mlp.hidden, "dropout": config.mlp.dropout},
        "relevance": {},
        "laterality": {"contralateral_factor": CONTRALATERAL_FACTOR},
        "ood": {},
    }
    n_feat = len(FEATURES)
    config_json["ood"] = OutOfDomainDetector([0.0] * n_feat, [1.0] * n_feat, [0.0] * n_feat, 0.0, 0.5, config.ood_k).to_config()
    # A provisional reasoner: it computes the MLP inputs (knowledge evidence) the way inference will.
    from MedSORALib.text.mlp import RelevanceMLP

    in_dim = train_embeddings.shape[1] + (knowledge.width if knowledge is not None else 0)
    blank = RelevanceMLP(in_dim, n_classes, hidden=config.mlp.hidden)
    config_json["relevance"] = {"low": 0.0, "high": 1.0}
    provisional = TextReasoner.from_components(
        config_json, anchors, blank, {}, train_embeddings, ood_out_embeddings, knowledge=knowledge
    )
    start = time.perf_counter()
    x_train = provisional.mlp_inputs(train_embeddings, train_texts, train_exclude)
    timings["knowledge_evidence_s"] = time.perf_counter() - start

    trained, losses = {}, {}
    mlp_config = replace(config.mlp, **options.mlp) if options.mlp else config.mlp
    for name, target in heads.items():
        start = time.perf_counter()
        trained[name], curve = train_mlp(x_train, target, mlp_config)
        losses[name] = [curve[0], curve[-1]]
        timings[f"{name}_mlp_s"] = time.perf_counter() - start
        log(f"[{setting}] {name}-label MLP: BCE {curve[0]:.4f} -> {curve[-1]:.4f} ({timings[f'{name}_mlp_s']:.1f} s)")
    soft_mlp = trained.pop("soft")
    head = options.relevance_head
    if head != "soft" and head not in trained:
        raise ValueError(f"relevance head {head!r} is not trained (train_{head} is off or source_weight is 0)")

    with torch.no_grad():
        soft_train = (soft_mlp if head == "soft" else trained[head]).predict(torch.as_tensor(x_train)).numpy()
    low, high = relevance_scale(soft_train, train_labels)
    relevance = {
        "head": head,
        "low": low,
        "high": high,
        "rule": "clip((g - low) / (high - low), 0, 1) * gate; low/high = median soft-MLP output of "
        "unrelated / own class on the training texts",
    }
    config_json["relevance"] = relevance
    config_json["training"] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": config.to_dict(),
        "n_train": int(len(train_labels)),
        "per_class": {c: int(n) for c, n in zip(classes, counts)},
        "anchor_loss": [anchor_losses[0], anchor_losses[-1]],
        "bce_first_last": losses,
        "soft_labels": {
            "source_weight": w,
            "secondary_weight": floor,
            "rule": "target_i = w * [i == source organ] + (1 - w) * (cos(p_i, f) + 1) / 2, raised to at least "
            "secondary_weight for the other organs of the curated label",
            "mean_target_own": float(targets[one_hot > 0].mean()),
            "mean_target_other": float(targets[one_hot == 0].mean()),
        },
        **(dataset_info or {}),
    }
    reasoner = TextReasoner.from_components(
        config_json, anchors, soft_mlp, trained, train_embeddings, ood_out_embeddings, knowledge=knowledge
    )
    if calibration is not None:
        cal_emb, cal_texts, cal_relevant = calibration
        a, b = fit_platt(reasoner.raw_scores(cal_emb, cal_texts)[head], cal_relevant)
        relevance.update({
            "platt_a": a,
            "platt_b": b,
            "n_calibration": int(len(cal_emb)),
            "rule": f"sigmoid(platt_a * logit(g) + platt_b) * gate; Platt scaling of the output g of the {head!r} head "
            "fitted on the validation split against its multi-organ labels",
        })
        reasoner = TextReasoner.from_components(
            config_json, anchors, soft_mlp, trained, train_embeddings, ood_out_embeddings, knowledge=knowledge
        )
        log(f"[{setting}] relevance calibration: a {a:.3f}, b {b:.3f} on {len(cal_emb)} validation texts")

    start = time.perf_counter()
    feats_in = reasoner.ood_features(ood_in_embeddings, texts=ood_in_texts)
    feats_out = reasoner.ood_features(ood_out_embeddings, leave_out_non_abdominal=True, texts=ood_out_texts)
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
    config_json["ood"]["word_channel"] = bool(config.ood_word_channel)
    config_json["training"]["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    reasoner.config = config_json
    reasoner.detector = detector
    reasoner.word_channel = bool(config.ood_word_channel)
    return reasoner


def ood_heldout_report(
    reasoner: TextReasoner,
    in_embeddings: np.ndarray,
    out_embeddings: np.ndarray,
    in_texts: list[str] | None = None,
    out_texts: list[str] | None = None,
) -> dict:
    """TPR / FPR of ``reasoner``'s in-domain decision on held-out abdominal and non-abdominal texts."""
    p_in = reasoner.detector.probability_in_domain(
        np.concatenate(
            [reasoner.ood_features(in_embeddings, texts=in_texts), reasoner.ood_features(out_embeddings, texts=out_texts)]
        )
    )
    truth = np.concatenate([np.ones(len(in_embeddings), bool), np.zeros(len(out_embeddings), bool)])
    report = rates(p_in >= reasoner.detector.threshold, truth)
    report.update({"n_in_domain": int(len(in_embeddings)), "n_out_of_domain": int(len(out_embeddings))})
    return report
