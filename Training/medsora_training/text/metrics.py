"""Ranking metrics of the Med-SORA paper (arXiv:2511.06752; docs/text-model.md) for multi-organ labels: the
project's one implementation (text evaluation, image-text evaluation, training reports). Values are fractions in
[0, 1]; reports use the keys ``rank1``, ``rank2``, ``rank3``, ``mAP`` and ``n``.

* Rank-k accuracy: the share of queries with at least one correct organ (any organ of the
  query's label set) among the k highest-scored organs.
* mAP: the mean over queries of the average precision of the ranking against the query's
  label set, AP = (1 / |L|) * sum over correct organs o of precision@rank(o).

Ties in scores are broken by class order (stable sort), so results are deterministic.
"""

from __future__ import annotations

import numpy as np


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")


def rank_k_accuracy(scores: np.ndarray, relevant: np.ndarray, k: int) -> float:
    """Rank-k accuracy in [0, 1].

    Args:
        scores: (N, C) higher = more relevant.
        relevant: (N, C) bool, the multi-organ label of each query (at least one True per row).
        k: cut-off.
    """
    relevant = np.asarray(relevant, dtype=bool)
    top = _order(scores)[:, :k]
    hits = np.take_along_axis(relevant, top, axis=1).any(axis=1)
    return float(hits.mean()) if len(hits) else float("nan")


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per-query average precision (N,) in [0, 1]; rows without a relevant class give NaN."""
    relevant = np.asarray(relevant, dtype=bool)
    order = _order(scores)
    hits = np.take_along_axis(relevant, order, axis=1).astype(np.float64)  # (N, C) in ranked order
    cum = np.cumsum(hits, axis=1)
    ranks = np.arange(1, hits.shape[1] + 1, dtype=np.float64)
    precision_at_hit = (cum / ranks) * hits
    n_rel = hits.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_rel > 0, precision_at_hit.sum(axis=1) / n_rel, np.nan)


def mean_average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """mAP in [0, 1] over queries with at least one relevant class."""
    ap = average_precision(scores, relevant)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def ranking_report(scores: np.ndarray, relevant: np.ndarray, ks=(1, 2, 3)) -> dict[str, float]:
    """{"rank1": ..., "rank2": ..., "rank3": ..., "mAP": ..., "n": N} (fractions in [0, 1]).

    Rows without a relevant class are left out of every figure (``n`` counts the rows kept).
    """
    relevant = np.asarray(relevant, dtype=bool)
    scores = np.asarray(scores)
    keep = relevant.any(axis=1) if relevant.ndim == 2 else np.zeros(0, bool)
    scores, relevant = scores[keep], relevant[keep]
    report = {f"rank{k}": rank_k_accuracy(scores, relevant, k) for k in ks}
    report["mAP"] = mean_average_precision(scores, relevant)
    report["n"] = int(len(scores))
    return report


def label_matrix(labels, class_keys) -> np.ndarray:
    """(N, C) bool matrix from per-row lists of class keys (keys outside ``class_keys`` are ignored)."""
    col = {c: i for i, c in enumerate(class_keys)}
    out = np.zeros((len(labels), len(col)), dtype=bool)
    for row, keys in enumerate(labels):
        for key in keys:
            if key in col:
                out[row, col[key]] = True
    return out
