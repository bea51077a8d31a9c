"""Evaluate the text model, the differential alone and their gated fusion on the dev sets; choose the constants.

    python -m MedSORALib.differential.evaluate [--tune] [--json OUT] [--sets presentations short_histories ...]

Sets (``Training/data``, see ``DEV_SETS.md``): ``presentations``, ``short_histories``, ``non_abdominal`` and the
retired ``external_dev``. Each row is split by its position into a **tune** half (even positions) and a
**check** half (odd positions). ``--tune`` chooses, on the tune half only, first the differential's constants
(``TEMPERATURE``, ``PRIOR_POWER``, ``NONE_SHARE``) and then the fusion gate (``ALPHA``, ``GATE_LOW``,
``GATE_HIGH``), by the objective

    Rank-1 + mAP on presentations + Rank-1 + mAP on short histories + mean(kept, kept, caught)

and reports every method on the check half, which no choice has seen, and on all rows. The shipped constants
in :mod:`.differential` and :mod:`.fusion` are the ones this command printed (docs/reasoning.md).

Figures (as ``Training/evaluate_reasoning.py`` computes them): on the rows whose answer lies in the 13
structures, Rank-1 / Rank-3 (a true structure among the first k of the 13, ties in catalogue order) and mAP;
``kept``: those rows called in domain (scope ``modelled``); ``caught``: non-abdominal rows called out of domain;
``other_out``: abdominal-other rows given a scope other than ``modelled``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from ..organs import PAIRED_STRUCTURES, STRUCTURES, class_structures

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "Training" / "data"
SETS = {
    "presentations": DATA / "dev_presentations.jsonl",
    "short_histories": DATA / "dev_short_histories.jsonl",
    "non_abdominal": DATA / "dev_non_abdominal.jsonl",
    "external_dev": DATA / "external_dev.jsonl",
}
DEFAULT_SETS = ("presentations", "short_histories", "non_abdominal")


def structures_of(row: dict) -> list[str]:
    out = []
    for key in row.get("organs") or []:
        if key in STRUCTURES:
            out.append(key)
        elif key in PAIRED_STRUCTURES and row.get("laterality") in ("left", "right"):
            out.append(PAIRED_STRUCTURES[key][row["laterality"]])
        else:
            out.extend(class_structures(key))
    return list(dict.fromkeys(out))


def load_rows(names) -> list[dict]:
    rows = []
    for name in names:
        lines = [line for line in SETS[name].read_text(encoding="utf-8").splitlines() if line.strip()]
        for i, line in enumerate(lines):
            row = json.loads(line)
            row["set"] = name
            row["half"] = "tune" if i % 2 == 0 else "check"
            row["structures"] = structures_of(row)
            row.setdefault("scope", "modelled" if row.get("abdominal") else "non-abdominal")
            rows.append(row)
    return rows


def rank_metrics(scores: dict, gold: set[str]) -> tuple[float, float, float]:
    order = {k: i for i, k in enumerate(STRUCTURES)}
    ranked = [k for k, _ in sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))]
    hits, precisions = 0, []
    for rank, key in enumerate(ranked, 1):
        if key in gold:
            hits += 1
            precisions.append(hits / rank)
    return float(ranked[0] in gold), float(any(k in gold for k in ranked[:3])), float(np.mean(precisions or [0]))


def summarise(rows, outputs) -> dict:
    """Figures per set for one method's outputs [(scores, scope)]."""
    out = {}
    for name in dict.fromkeys(r["set"] for r in rows):
        r1, r3, ap, kept, caught, other = [], [], [], [], [], []
        for row, (scores, scope) in zip(rows, outputs):
            if row["set"] != name:
                continue
            if row["scope"] == "modelled" and row["structures"]:
                a, b, c = rank_metrics(scores, set(row["structures"]))
                r1.append(a), r3.append(b), ap.append(c)
                kept.append(scope == "modelled")
            elif row["scope"] == "non-abdominal":
                caught.append(scope == "non-abdominal")
            else:
                other.append(scope != "modelled")
        mean = lambda v: round(float(np.mean(v)), 4) if v else None  # noqa: E731
        out[name] = {"n": len(r1), "rank1": mean(r1), "rank3": mean(r3), "map": mean(ap), "kept": mean(kept),
                     "caught": mean(caught), "other_out": mean(other)}
    return out


def objective(summary: dict) -> float:
    p, s = summary.get("presentations", {}), summary.get("short_histories", {})
    n = summary.get("non_abdominal", {})
    scope = [v for v in (p.get("kept"), s.get("kept"), n.get("caught")) if v is not None]
    return sum((d.get("rank1") or 0) + (d.get("map") or 0) for d in (p, s)) + (float(np.mean(scope)) if scope else 0)


class Bench:
    """Model predictions and readings of all rows, computed once; methods evaluated on a row subset."""

    def __init__(self, rows):
        from ..text.reasoning import TextReasoner
        from .reader import read

        self.rows = rows
        texts = [r["text"] for r in rows]
        self.predictions = TextReasoner.load().predict(texts)
        self.readings = [read(t) for t in texts]

    def differential_results(self, temperature, prior_power, none_share):
        from .catalogue import load_catalogue
        from .differential import Differential

        scorer = Differential(load_catalogue(), temperature=temperature, prior_power=prior_power,
                              none_share=none_share)
        return [scorer.score(r) for r in self.readings]

    def outputs(self, method: str, results=None, gate=None):
        from . import fusion

        if method == "model":
            return [(p.structure_relevance, "modelled" if p.in_domain else "non-abdominal") for p in self.predictions]
        if method == "differential":
            return [(r.organ_relevance, r.scope) for r in results]
        alpha, low, high = gate
        out = []
        for p, r in zip(self.predictions, results):
            rel, _a, scope, _o = fusion.fuse(p.structure_relevance, r, p.in_domain, alpha, low, high,
                                             ood_score=p.ood_score)
            out.append((rel, scope))
        return out


def _subset(rows, outputs, half):
    pairs = [(r, o) for r, o in zip(rows, outputs) if half is None or r["half"] == half]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def evaluate(names=DEFAULT_SETS, tune: bool = False) -> dict:
    from . import differential as D
    from . import fusion as F

    rows = load_rows(names)
    bench = Bench(rows)
    config = {"temperature": D.TEMPERATURE, "prior_power": D.PRIOR_POWER, "none_share": D.NONE_SHARE}
    gate = (F.ALPHA, F.GATE_LOW, F.GATE_HIGH)
    report: dict = {"sets": list(names), "rows": len(rows)}
    if tune:
        trials = []
        for t, pp, ns in itertools.product((0.8, 1.0, 1.3, 1.6, 2.0, 2.5), (0.3, 0.5, 0.7, 1.0), (0.05, 0.1, 0.3)):
            results = bench.differential_results(t, pp, ns)
            s = summarise(*_subset(rows, bench.outputs("fused", results, gate), "tune"))
            trials.append((objective(s), t, pp, ns))
        trials.sort(key=lambda x: -x[0])
        _score, t, pp, ns = trials[0]
        config = {"temperature": t, "prior_power": pp, "none_share": ns}
        report["differential_trials_top5"] = [
            {"objective": round(o, 4), "temperature": a, "prior_power": b, "none_share": c}
            for o, a, b, c in trials[:5]]
        results = bench.differential_results(t, pp, ns)
        gates = []
        for alpha, low, width in itertools.product((0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                                                   (0.0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5),
                                                   (0.0, 0.1, 0.2, 0.3)):
            s = summarise(*_subset(rows, bench.outputs("fused", results, (alpha, low, low + width)), "tune"))
            gates.append((objective(s), alpha, low, round(low + width, 3)))
        gates.sort(key=lambda x: (-x[0], x[1]))
        gate = gates[0][1:]
        report["gate_trials_top5"] = [{"objective": round(o, 4), "alpha": a, "low": lo, "high": hi}
                                      for o, a, lo, hi in gates[:5]]
    results = bench.differential_results(config["temperature"], config["prior_power"], config["none_share"])
    report["differential_constants"] = config
    report["gate"] = {"alpha": gate[0], "low": gate[1], "high": gate[2]}
    for half in ("check", "tune", None):
        key = half or "all"
        report[key] = {}
        for method in ("model", "differential", "fused"):
            outs = bench.outputs(method, results, gate)
            s = summarise(*_subset(rows, outs, half))
            s["objective"] = round(objective(s), 4)
            report[key][method] = s
    return report


def calibration(names=DEFAULT_SETS, temperatures=(1.0, 1.6, 2.5)) -> dict:
    """How the top diagnosis's probability compares with how often its organ is right (rows of the 13
    structures): mean probability, accuracy, expected calibration error (10 bins) and Brier score, per half."""
    from .catalogue import load_catalogue
    from .differential import Differential
    from .reader import load_reader

    rows = [r for r in load_rows(names) if r["scope"] == "modelled" and r["structures"]]
    reader = load_reader()
    readings = [reader.read(r["text"]) for r in rows]
    out = {}
    for t in temperatures:
        scorer = Differential(load_catalogue(), temperature=t)
        for half in ("tune", "check"):
            p, ok = [], []
            for row, reading in zip(rows, readings):
                if row["half"] != half:
                    continue
                top = scorer.score(reading).top
                p.append(top.probability)
                ok.append(float(bool(set(top.structures) & set(row["structures"]))))
            p, ok = np.array(p), np.array(ok)
            bins = np.clip((p * 10).astype(int), 0, 9)
            ece = sum(abs(p[bins == b].mean() - ok[bins == b].mean()) * (bins == b).sum()
                      for b in range(10) if (bins == b).any()) / len(p)
            out[f"T={t} {half}"] = {"n": len(p), "mean_probability": round(float(p.mean()), 3),
                                    "organ_right": round(float(ok.mean()), 3), "ece": round(float(ece), 3),
                                    "brier": round(float(((p - ok) ** 2).mean()), 3)}
    return out


def scope_report(paths) -> str:
    """Scope counts of the differential alone on text files (the figures of docs/catalogue.md)."""
    import json
    from collections import Counter

    from .differential import differential

    lines = ["| file | texts | expected | right | modelled | abdominal-other | non-abdominal |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for path in paths:
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        groups: dict[str, list] = {}
        for row in rows:
            want = row.get("expect") or row.get("scope") or ("modelled" if row.get("organs") else "non-abdominal")
            groups.setdefault(want, []).append(row)
        for want, group in sorted(groups.items()):
            scopes = Counter(differential(r["text"]).scope for r in group)
            right = sum(n for s, n in scopes.items() if (s != "modelled") == (want != "modelled"))
            lines.append(f"| {Path(path).name} | {len(group)} | {want} | {right} | {scopes['modelled']} | "
                         f"{scopes['abdominal-other']} | {scopes['non-abdominal']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m MedSORALib.differential.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_SETS), choices=list(SETS))
    parser.add_argument("--tune", action="store_true", help="choose the constants on the tune half")
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    parser.add_argument("--calibration", action="store_true",
                        help="only compare the top diagnosis's probability with how often its organ is right")
    parser.add_argument("--scope", nargs="+", metavar="JSONL",
                        help="only score the texts of these files (rows with 'text') with the shipped differential "
                             "and print the scope counts; rows with 'expect' (a scope) or 'scope' count as right when "
                             "the differential agrees (non-abdominal: any scope but modelled)")
    args = parser.parse_args(argv)
    if args.scope:
        try:
            print(scope_report(args.scope))
        except (OSError, ValueError) as exc:
            print(f"medsora: error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.calibration:
        print(json.dumps(calibration([n for n in args.sets if n != "non_abdominal"]), indent=1))
        return 0
    missing = [n for n in args.sets if not SETS[n].is_file()]
    if missing:
        print(f"medsora: error: dev set(s) missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    report = evaluate(args.sets, args.tune)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
