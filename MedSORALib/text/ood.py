"""Out-of-domain signal: is a symptom text about the abdomen at all?

The paper shows that non-abdominal queries ("knee joint pain", "headache") get uniformly
low organ scores. Here that is an explicit, calibrated decision. Four scalar features are
computed per text from the trained text model:

* ``max_anchor_cos``: the largest cosine between the text and a positive organ anchor;
* ``max_soft_relevance``: the largest output of the soft-label MLP;
* ``knn_cos``: the mean cosine to the ``k`` nearest training texts (the abdominal corpus);
* ``knn_cos_non_abdominal``: the mean cosine to the ``k`` nearest non-abdominal calibration
  texts (computed leaving the text itself out while calibrating).

A logistic regression on the standardised features gives ``p_in``, the probability that the
text is an abdominal symptom. It is fitted on a calibration set of in-domain texts (the
dataset's validation split and short abdominal queries) and non-abdominal symptom texts
(``MedSORALib/resources/ood/non_abdominal.jsonl``, split "calibration"); the threshold on
``p_in`` maximises Youden's J (TPR - FPR) on that set. The held-out "test" rows of both files
measure it.

A second, word-based channel (:mod:`MedSORALib.text.ood_lexicon`) adjusts ``p_in`` for what the
embedding misses; :class:`~MedSORALib.text.reasoning.TextReasoner` applies both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

FEATURES = ("max_anchor_cos", "max_soft_relevance", "knn_cos", "knn_cos_non_abdominal")
DEFAULT_K = 5


def resources_dir() -> Path:
    from ..files import resource_path

    return resource_path("ood")


def load_ood_texts(name: str = "non_abdominal", split: str | None = None) -> list[dict]:
    """Rows of ``resources/ood/<name>.jsonl`` (``non_abdominal`` or ``abdominal_queries``), optionally one split."""
    rows = []
    with open(resources_dir() / f"{name}.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                if split is None or row.get("split") == split:
                    rows.append(row)
    return rows


def knn_similarity(
    embeddings: np.ndarray, bank: np.ndarray, k: int = DEFAULT_K, exclude_identical: bool = False
) -> np.ndarray:
    """Mean cosine to the ``k`` most similar rows of ``bank``.

    Args:
        embeddings: (N, D) unit-norm float32.
        bank: (M, D) unit-norm reference embeddings (the training texts).
        k: neighbours averaged (clipped to M).
        exclude_identical: ignore bank rows identical to the text (cosine > 0.9999), for
            leave-one-out features of texts that are themselves in the bank.

    Returns:
        (N,) float32 in [-1, 1].
    """
    if len(bank) == 0:
        return np.zeros(len(embeddings), dtype=np.float32)
    sims = embeddings.astype(np.float32) @ bank.astype(np.float32).T
    if exclude_identical:
        sims = np.where(sims > 0.9999, -1.0, sims)
    k = max(1, min(k, sims.shape[1]))
    top = np.partition(sims, sims.shape[1] - k, axis=1)[:, -k:]
    return top.mean(axis=1).astype(np.float32)


@dataclass
class OutOfDomainDetector:
    """Logistic regression on :data:`FEATURES` with a decision threshold on ``p_in``.

    Attributes:
        mean, scale: (F,) feature standardisation (F = len(FEATURES)).
        coef: (F,) weights, ``intercept``: bias of the logistic regression.
        threshold: a text is in domain when ``p_in >= threshold``.
        k: neighbours of ``knn_cos``.
        calibration: numbers measured when fitting (counts, TPR/FPR), kept for the record.
    """

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float = 0.5
    k: int = DEFAULT_K
    calibration: dict = field(default_factory=dict)

    def probability_in_domain(self, features: np.ndarray) -> np.ndarray:
        """(N, F) features -> (N,) ``p_in`` in [0, 1]."""
        z = (np.asarray(features, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        logits = z @ np.asarray(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-logits))

    def gate(self, p_in: np.ndarray) -> np.ndarray:
        """Factor applied to the relevances: 1 for in-domain texts, ``p_in / threshold`` (< 1) below it."""
        return np.clip(np.asarray(p_in, dtype=np.float64) / max(self.threshold, 1e-6), 0.0, 1.0)

    def to_config(self) -> dict:
        return {
            "features": list(FEATURES),
            "mean": [float(v) for v in self.mean],
            "scale": [float(v) for v in self.scale],
            "coef": [float(v) for v in self.coef],
            "intercept": float(self.intercept),
            "threshold": float(self.threshold),
            "k": int(self.k),
            "calibration": self.calibration,
        }

    @classmethod
    def from_config(cls, config: dict) -> "OutOfDomainDetector":
        if list(config.get("features", [])) != list(FEATURES):
            raise ValueError(f"out-of-domain features {config.get('features')} differ from {list(FEATURES)}")
        return cls(
            mean=list(config["mean"]),
            scale=list(config["scale"]),
            coef=list(config["coef"]),
            intercept=float(config["intercept"]),
            threshold=float(config["threshold"]),
            k=int(config.get("k", DEFAULT_K)),
            calibration=dict(config.get("calibration", {})),
        )

    @classmethod
    def fit(cls, features: np.ndarray, in_domain: np.ndarray, k: int = DEFAULT_K) -> "OutOfDomainDetector":
        """Fit the logistic regression and pick the Youden threshold.

        Args:
            features: (N, F) features of calibration texts.
            in_domain: (N,) bool, True for abdominal texts.
            k: neighbours used to compute ``knn_cos`` (stored for inference).
        """
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(in_domain, dtype=bool)
        mean = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-9
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
        model.fit((x - mean) / scale, y.astype(int))
        detector = cls(mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]), 0.5, k)
        p = detector.probability_in_domain(x)
        best_j, best_t = -1.0, 0.5
        values = np.unique(p)
        # Candidate thresholds halfway between consecutive scores; among equal J the one nearest 0.5.
        candidates = np.concatenate([[0.5], (values[1:] + values[:-1]) / 2.0])
        for t in candidates:
            tpr = float((p[y] >= t).mean())
            fpr = float((p[~y] >= t).mean())
            if tpr - fpr > best_j + 1e-12 or (abs(tpr - fpr - best_j) <= 1e-12 and abs(t - 0.5) < abs(best_t - 0.5)):
                best_j, best_t = tpr - fpr, float(t)
        detector.threshold = best_t
        detector.calibration = {
            "n_in_domain": int(y.sum()),
            "n_out_of_domain": int((~y).sum()),
            **rates(p >= best_t, y),
        }
        return detector


def rates(predicted_in: np.ndarray, in_domain: np.ndarray) -> dict:
    """TPR (in-domain texts accepted), FPR (non-abdominal texts accepted) and accuracy."""
    predicted_in = np.asarray(predicted_in, dtype=bool)
    in_domain = np.asarray(in_domain, dtype=bool)
    tpr = float(predicted_in[in_domain].mean()) if in_domain.any() else float("nan")
    fpr = float(predicted_in[~in_domain].mean()) if (~in_domain).any() else float("nan")
    return {"tpr": tpr, "fpr": fpr, "accuracy": float((predicted_in == in_domain).mean())}


BANK_COSINE = 0.99


def outside_banks(reasoner, texts, limit: float = BANK_COSINE) -> list[bool]:
    """For each text, True when its embedding is below ``limit`` cosine to every text of ``reasoner``'s
    neighbour banks (training texts and non-abdominal calibration texts), i.e. it is held out from the detector.

    The product model trains on terse terms ("splenomegaly"), so a user's short query can coincide with a training
    text; held-out rates are computed on the texts this returns True for."""
    texts = list(texts)
    if not texts:
        return []
    emb = reasoner.encode(texts)
    nearest = np.maximum((emb @ reasoner.knn_bank.T).max(axis=1), (emb @ reasoner.out_bank.T).max(axis=1))
    return [bool(v < limit) for v in nearest]


def heldout_rates(reasoner, abdominal_texts, non_abdominal_texts) -> dict:
    """Kept / flagged shares of ``reasoner``'s decisions on texts outside its neighbour banks.

    The texts go through :meth:`TextReasoner.predict` (neural detector and word channel together).

    Returns:
        {"kept_abdominal", "flagged_non_abdominal", "tpr", "fpr", "accuracy", "n_in_domain", "n_out_of_domain"}.
    """
    abdominal_texts, non_abdominal_texts = list(abdominal_texts), list(non_abdominal_texts)
    preds = reasoner.predict(abdominal_texts + non_abdominal_texts)
    decided = np.array([p.in_domain for p in preds], dtype=bool)
    truth = np.r_[np.ones(len(abdominal_texts), bool), np.zeros(len(non_abdominal_texts), bool)]
    report = rates(decided, truth)
    report.update({
        "kept_abdominal": report["tpr"],
        "flagged_non_abdominal": 1.0 - report["fpr"] if len(non_abdominal_texts) else float("nan"),
        "n_in_domain": len(abdominal_texts),
        "n_out_of_domain": len(non_abdominal_texts),
    })
    return report
