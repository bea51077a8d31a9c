"""How the paper measures (docs/training.md, "Image side"): text-to-organ Rank-k and mAP, and organ identification.

For each test symptom the organs' image features are ranked by their similarity
to the symptom. Structures are grouped into reasoning classes (a class scores
the maximum of its structures, e.g. kidney = max(right, left kidney)); a symptom
counts as correct at rank k when one of its labelled classes is among the top k
classes present in the volume. AP is the mean over the symptom's labelled
classes of the precision at each one's rank; mAP is its mean over symptoms.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from MedSORALib.organs import structure_class


def class_scores(structure_scores: np.ndarray, structure_keys: Sequence[str],
                 classes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """(N, n_structures) scores -> (N, n_present_classes) maximum over each class's structures.

    Returns the scores and the class keys (those of ``classes`` with a structure among ``structure_keys``).
    """
    cls_of = [structure_class(k) for k in structure_keys]
    present = [c for c in classes if c in cls_of]
    cols = []
    for c in present:
        idx = [i for i, k in enumerate(cls_of) if k == c]
        cols.append(structure_scores[:, idx].max(axis=1))
    return (np.stack(cols, axis=1) if cols else np.zeros((structure_scores.shape[0], 0))), present


def ranking_metrics(scores: np.ndarray, class_keys: Sequence[str], labels: Sequence[Sequence[str]],
                    ks: Sequence[int] = (1, 2, 3)) -> dict:
    """Rank-k accuracy and mAP (fractions in [0, 1]) of class scores against multi-label class sets,
    computed by :func:`medsora_training.text.metrics.ranking_report`.

    Args:
        scores: (N, n_classes) higher = more relevant.
        class_keys: column keys of ``scores``.
        labels: for each row, its relevant class keys (those absent from ``class_keys`` are ignored).

    Returns:
        ``{"rank1": .., "rank2": .., "rank3": .., "mAP": .., "n": evaluated rows, "skipped": rows with no
        relevant class among the columns}``.
    """
    from ..text.metrics import label_matrix, ranking_report

    relevant = label_matrix(labels, class_keys)
    out = ranking_report(np.asarray(scores, dtype=np.float64).reshape(len(relevant), len(class_keys)), relevant, ks)
    out["skipped"] = int((~relevant.any(axis=1)).sum())
    return out


def organ_identification(probabilities: np.ndarray, crop_keys: Sequence[str], organ_keys: Sequence[str]) -> dict:
    """Accuracy of the organ-classification head: does each crop's argmax name its own organ?

    Returns ``{"accuracy": percent, "n": crops, "predictions": {crop key: predicted key}}``.
    """
    predicted = [organ_keys[int(i)] for i in np.asarray(probabilities).argmax(axis=1)]
    correct = sum(p == k for p, k in zip(predicted, crop_keys))
    return {"accuracy": 100.0 * correct / max(len(crop_keys), 1), "n": len(crop_keys),
            "predictions": dict(zip(crop_keys, predicted))}


def text_to_organ_metrics(similarity: np.ndarray, structure_keys: Sequence[str], rows: Sequence[Mapping],
                          classes: Sequence[str]) -> dict:
    """Rank-k / mAP of texts (``rows`` with ``organs`` class labels) against one volume's organs."""
    scores, present = class_scores(similarity, structure_keys, classes)
    labels = [r.get("organs") or [r["organ"]] for r in rows]
    metrics = ranking_metrics(scores, present, labels)
    metrics["classes"] = present
    return metrics
