"""Choose the out-of-domain calibration on the tune half of the dev sets: kept / caught per candidate.

Each candidate is a text weights folder (``NAME=DIR``; ``shipped`` = the package's weights) with the word channel as
stored in it, plus the same folder with the word channel toggled (``NAME/words-on`` or ``NAME/words-off``). For
each, the model's own in-domain decision and the fusion's (:func:`MedSORALib.differential.fusion.reason`) are
measured on the rows at **even** line positions of ``Training/data/dev_presentations.jsonl``,
``dev_short_histories.jsonl`` and ``dev_non_abdominal.jsonl`` (the tune half; the odd positions, the check half,
are reported by ``Training/evaluate_reasoning.py`` and are not read here unless ``--half check`` is given):

* kept: modelled rows called in domain (presentations, short histories);
* caught: non-abdominal rows called out of domain.

    python Training/choose_ood.py shipped NEW=/tmp/refit [--half tune|check|all] [--output FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

SETS = ("presentations", "short_histories", "non_abdominal")


def measure(reasoner, rows: list[dict]) -> dict:
    """{"model": {...}, "fusion": {...}} kept / caught shares on ``rows``."""
    from MedSORALib.differential.fusion import reason

    texts = [r["text"] for r in rows]
    preds = reasoner.predict(texts)
    fused = reason(texts, reasoner=reasoner, predictions=preds)
    out = {}
    for method, decided in (("model", [p.in_domain for p in preds]), ("fusion", [f.in_domain for f in fused])):
        res = {}
        for name in SETS:
            idx = [i for i, r in enumerate(rows) if r["set"] == name]
            if name == "non_abdominal":
                part = [not decided[i] for i in idx if rows[i]["scope"] == "non-abdominal"]
                res["caught non_abdominal"] = round(sum(part) / len(part), 4)
            else:
                part = [decided[i] for i in idx if rows[i]["scope"] == "modelled"]
                res[f"kept {name}"] = round(sum(part) / len(part), 4)
        out[method] = res
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", help="NAME=DIR or 'shipped'")
    parser.add_argument("--half", choices=["tune", "check", "all"], default="tune")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    from evaluate_reasoning import SETS as PATHS, load_set
    from MedSORALib.files import atomic_write_text
    from MedSORALib.text.reasoning import TextReasoner

    rows = []
    for name in SETS:
        for row in load_set(PATHS[name]):
            if args.half == "all" or row["half"] == args.half:
                rows.append({**row, "set": name})
    report = {}
    for spec in args.candidates:
        name, _, folder = spec.partition("=")
        reasoner = TextReasoner.load(folder or None, setting="full11")
        stored = reasoner.word_channel
        for words in (stored, not stored):
            reasoner.word_channel = words
            label = name if words == stored else f"{name}/words-{'on' if words else 'off'}"
            report[label] = {"threshold": reasoner.detector.threshold, "word_channel": words, **measure(reasoner, rows)}
            for method in ("model", "fusion"):
                figures = "  ".join(f"{k} {100 * v:.1f}" for k, v in report[label][method].items())
                print(f"{label:28s} {method:7s} {figures}", flush=True)
    if args.output:
        atomic_write_text(args.output, json.dumps({"half": args.half, "candidates": report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
