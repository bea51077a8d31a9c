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

SETS = ("presentations", "short_histories", "non_abdominal")


def measure(reasoner, rows: list[dict], per_text: dict | None = None) -> dict:
    """{"model": {...}, "fusion": {...}} kept / caught shares on ``rows``; ``per_text`` (when given) receives
    {(method, set): per-row 0/1 array (NaN where the figure does not apply)} for the paired bootstrap."""
    import numpy as np

    from MedSORALib.differential.fusion import reason

    texts = [r["text"] for r in rows]
    preds = reasoner.predict(texts)
    fused = reason(texts, reasoner=reasoner, predictions=preds)
    out = {}
    for method, decided in (("model", [p.in_domain for p in preds]), ("fusion", [f.in_domain for f in fused])):
        res = {}
        for name in SETS:
            idx = [i for i, r in enumerate(rows) if r["set"] == name]
            if per_text is not None:
                figure = [(0.0 if decided[i] else 1.0) if name == "non_abdominal" else float(decided[i])
                          if rows[i]["scope"] == ("non-abdominal" if name == "non_abdominal" else "modelled")
                          else np.nan for i in idx]
                per_text[(method, name)] = np.array(figure)
            if name == "non_abdominal":
                part = [not decided[i] for i in idx if rows[i]["scope"] == "non-abdominal"]
                res["caught non_abdominal"] = round(sum(part) / len(part), 4) if part else None
            else:
                part = [decided[i] for i in idx if rows[i]["scope"] == "modelled"]
                res[f"kept {name}"] = round(sum(part) / len(part), 4) if part else None
        out[method] = res
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="+", help="NAME=DIR or 'shipped'")
    parser.add_argument("--half", choices=["tune", "check", "second", "all"], default="tune",
                        help="second = the rows of the second writing pass (field written)")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)

    from evaluate_reasoning import SETS as PATHS, load_set
    from MedSORALib.files import atomic_write_text
    from MedSORALib.text.reasoning import TextReasoner

    rows = []
    for name in SETS:
        for row in load_set(PATHS[name]):
            if args.half == "all" or row["half"] == args.half or (args.half == "second"
                                                                 and row.get("written") == "second"):
                rows.append({**row, "set": name})
    report, arrays = {}, {}
    for spec in args.candidates:
        name, _, folder = spec.partition("=")
        reasoner = TextReasoner.load(folder or None, setting="full11")
        stored = reasoner.word_channel
        for words in (stored, not stored):
            reasoner.word_channel = words
            label = name if words == stored else f"{name}/words-{'on' if words else 'off'}"
            arrays[label] = {}
            report[label] = {"threshold": reasoner.detector.threshold, "word_channel": words,
                             **measure(reasoner, rows, arrays[label])}
            for method in ("model", "fusion"):
                figures = "  ".join(f"{k} {100 * v:.1f}" for k, v in report[label][method].items() if v is not None)
                print(f"{label:28s} {method:7s} {figures}", flush=True)
    # paired bootstrap (evaluate_reasoning.paired_bootstrap: 2,000 resamples, seed 0) of each candidate against the
    # first one, per set, on the same rows
    from evaluate_reasoning import paired_bootstrap

    import numpy as np

    first = next(iter(arrays))
    for label in list(arrays)[1:]:
        report[label]["against_" + first] = {}
        for (method, name), values in arrays[label].items():
            ref = arrays[first][(method, name)]
            figure = "caught" if name == "non_abdominal" else "kept"
            empty = np.full(len(values), np.nan)
            a = {f: empty for f in ("rank1", "rank3", "mAP", "kept", "caught")}
            b = dict(a)
            a[figure], b[figure] = values, ref
            res = paired_bootstrap(a, b, len(values)).get(figure)
            if res is None:
                continue
            report[label]["against_" + first][f"{method} {figure} {name}"] = res
            lo, hi = res["ci95"]
            print(f"{label} - {first}: {method} {figure} {name}: {100 * res['difference']:+.1f} "
                  f"[{100 * lo:+.1f}, {100 * hi:+.1f}] (n={res['n']})")
    if args.output:
        atomic_write_text(args.output, json.dumps({"half": args.half, "candidates": report}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
