"""Evaluate the text model, the differential alone and their gated fusion on a dev set; choose the gate.

    python -m MedSORALib.differential.evaluate [--data Training/data/external_dev.jsonl] [--tune] [--json OUT]

A dev file holds one JSON object per line with ``text``, ``organs`` (reasoning class keys) and ``abdominal``.
Figures per system, on the abdominal rows, at the level of the 11 reasoning classes (a class scores the
highest relevance of its structures): Rank-1 (the top class is one of the text's organs), Rank-3, mAP (average
precision of the ranking against the text's organs); and on all rows: the share of abdominal texts kept
(scope not ``non-abdominal``) and of non-abdominal ones caught (scope ``non-abdominal``).

``--tune`` searches the fusion gate (alpha, low, high) on the given file and prints the best setting by
Rank-1 + mAP; only dev files may be given to it (never a test set).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from ..organs import FULL_CLASSES, class_structures

DEFAULT_DATA = Path("Training/data/external_dev.jsonl")


def class_scores(structure_relevance: dict) -> np.ndarray:
    return np.array([max(structure_relevance.get(k, 0.0) for k in class_structures(c)) for c in FULL_CLASSES])


def rank_metrics(scores: np.ndarray, gold: set[str]) -> tuple[float, float, float]:
    """(hit@1, hit@3, average precision) of one ranking; ties broken by class order."""
    order = sorted(range(len(FULL_CLASSES)), key=lambda i: (-scores[i], i))
    ranked = [FULL_CLASSES[i] for i in order]
    hits, precisions = 0, []
    for rank, c in enumerate(ranked, 1):
        if c in gold:
            hits += 1
            precisions.append(hits / rank)
    ap = float(np.mean(precisions)) if precisions else 0.0
    return float(ranked[0] in gold), float(any(c in gold for c in ranked[:3])), ap


def summarise(rows: list[dict], relevances: list[dict], scopes: list[str]) -> dict:
    r1, r3, ap = [], [], []
    kept, caught = [], []
    for row, rel, scope in zip(rows, relevances, scopes):
        if row.get("abdominal", True) and row.get("organs"):
            a, b, c = rank_metrics(class_scores(rel), set(row["organs"]))
            r1.append(a), r3.append(b), ap.append(c)
            kept.append(scope != "non-abdominal")
        elif not row.get("abdominal", True):
            caught.append(scope == "non-abdominal")
    mean = lambda v: round(float(np.mean(v)), 4) if v else None  # noqa: E731
    return {"n": len(r1), "rank1": mean(r1), "rank3": mean(r3), "map": mean(ap), "kept": mean(kept),
            "n_non_abdominal": len(caught), "caught": mean(caught)}


def load_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def evaluate(path: Path, tune: bool = False) -> dict:
    from ..text.reasoning import TextReasoner
    from . import fusion
    from .differential import load_differential
    from .reader import read

    rows = load_rows(path)
    texts = [r["text"] for r in rows]
    reasoner = TextReasoner.load()
    predictions = reasoner.predict(texts)
    scorer = load_differential()
    results = [scorer.score(read(t)) for t in texts]
    model_scopes = ["modelled" if p.in_domain else "non-abdominal" for p in predictions]
    out = {"data": str(path), "rows": len(rows)}
    out["model"] = summarise(rows, [p.structure_relevance for p in predictions], model_scopes)
    out["differential"] = summarise(rows, [r.organ_relevance for r in results], [r.scope for r in results])

    def fused_summary(alpha, low, high):
        fused, scopes = [], []
        for p, r in zip(predictions, results):
            rel, _a, scope, _o = fusion.fuse(p.structure_relevance, r, p.in_domain, alpha, low, high)
            fused.append(rel)
            scopes.append(scope)
        return summarise(rows, fused, scopes)

    out["fused"] = fused_summary(fusion.ALPHA, fusion.GATE_LOW, fusion.GATE_HIGH)
    out["fused"]["setting"] = {"alpha": fusion.ALPHA, "low": fusion.GATE_LOW, "high": fusion.GATE_HIGH}
    conf = np.array([r.top.probability if r.top else 0.0 for r in results])
    top_right = []
    for row, r in zip(rows, results):
        if row.get("abdominal", True) and row.get("organs") and r.top is not None and r.top.disease.organs:
            top_right.append((r.top.probability, any(
                c in row["organs"] for c in FULL_CLASSES if set(class_structures(c)) & set(r.top.structures))))
    for threshold in (0.2, 0.3, 0.4, 0.5):
        sel = [ok for p, ok in top_right if p >= threshold]
        out.setdefault("top_diagnosis_precision", {})[str(threshold)] = {
            "n": len(sel), "correct": round(float(np.mean(sel)), 4) if sel else None}
    out["confidence_median"] = round(float(np.median(conf)), 4) if len(conf) else None
    if tune:
        grid = []
        for alpha, low, width in itertools.product((0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0),
                                                   (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
                                                   (0.0, 0.1, 0.2, 0.3, 0.5)):
            s = fused_summary(alpha, low, low + width)
            grid.append(((s["rank1"] or 0) + (s["map"] or 0), alpha, low, low + width, s))
        grid.sort(key=lambda g: (-g[0], g[1], -g[2]))
        out["tuned"] = [{"alpha": a, "low": lo, "high": hi, **s} for _score, a, lo, hi, s in grid[:5]]
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m MedSORALib.differential.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="dev JSONL (default: %(default)s)")
    parser.add_argument("--tune", action="store_true", help="search the fusion gate on this dev file")
    parser.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    path = Path(args.data)
    if not path.is_file():
        print(f"medsora: error: no dev file {path}", file=sys.stderr)
        return 2
    out = evaluate(path, args.tune)
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
