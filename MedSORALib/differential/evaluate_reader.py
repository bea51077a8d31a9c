"""Precision and recall of the clinical reader on hand-annotated clauses.

    python -m MedSORALib.differential.evaluate_reader [--data Testing/data/reader_clauses.jsonl] [--errors]

Each line of the data holds a clause (``text``) and the findings a clinician reads in it (``expected``:
{finding id: status}), written by the team for this purpose (not taken from any training or dev text).
Scoring, over all clauses:

* the annotation uses the ids of the base lexicon (``findings/base.yaml``) and those ``labs.yaml`` yields; findings of
  the catalogue's own lexicon parts (more specific ids such as ``painless_jaundice``) are not scored;
* a *predicted* finding is one the reader returns with status present, negated, uncertain or history
  (``family`` findings are not the patient's and are not scored); a negated finding the reader derives from a
  normal laboratory value or vital sign (e.g. "no hypothermia" from 36.9 C) counts only where the annotation
  names it, since annotators list only the findings a clinician would state;
* precision = predicted findings whose id is expected / predicted findings;
* recall = expected findings whose id is predicted / expected findings;
* status accuracy = matched findings whose status equals the expected one / matched findings.

Figures are reported per register as well.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "Testing" / "data" / "reader_clauses.jsonl"
SCORED = ("present", "negated", "uncertain", "history")


def base_ids() -> frozenset:
    """Ids of the base lexicon and the findings computed from numbers."""
    import yaml

    root = Path(__file__).resolve().parent.parent / "resources" / "differential"
    base = yaml.safe_load((root / "findings" / "base.yaml").read_text(encoding="utf-8"))["findings"]
    from .catalogue import COMPUTED_FINDINGS, _lab_finding_ids

    labs = yaml.safe_load((root / "labs.yaml").read_text(encoding="utf-8"))
    return frozenset({f["id"] for f in base} | set(COMPUTED_FINDINGS) | _lab_finding_ids(labs))


def _predicted(reading, expected: dict, vocabulary: frozenset) -> dict:
    out = {}
    for f in reading.findings:
        if f.status not in SCORED or f.id not in vocabulary:
            continue
        if f.source == "lab" and f.status == "negated" and f.id not in expected:
            continue
        out[f.id] = f.status
    return out


def evaluate_clauses(rows: list[dict], reader=None) -> dict:
    """Precision, recall and status accuracy (overall and per register) of ``reader`` on annotated rows."""
    if reader is None:
        from .reader import load_reader

        reader = load_reader()
    vocabulary = base_ids()
    totals = defaultdict(lambda: defaultdict(int))
    errors = []
    for row in rows:
        expected = row["expected"]
        predicted = _predicted(reader.read(row["text"]), expected, vocabulary)
        tp = [k for k in predicted if k in expected]
        same = [k for k in tp if predicted[k] == expected[k]]
        for key in ("all", row.get("register", "other")):
            t = totals[key]
            t["predicted"] += len(predicted)
            t["expected"] += len(expected)
            t["tp"] += len(tp)
            t["same_status"] += len(same)
            t["clauses"] += 1
        fp = {k: v for k, v in predicted.items() if k not in expected}
        fn = {k: v for k, v in expected.items() if k not in predicted}
        wrong = {k: (expected[k], predicted[k]) for k in tp if predicted[k] != expected[k]}
        if fp or fn or wrong:
            errors.append({"id": row.get("id"), "text": row["text"], "false_positive": fp, "missed": fn,
                           "wrong_status": wrong})

    def figures(t):
        return {"clauses": t["clauses"], "expected": t["expected"], "predicted": t["predicted"],
                "precision": round(t["tp"] / t["predicted"], 4) if t["predicted"] else None,
                "recall": round(t["tp"] / t["expected"], 4) if t["expected"] else None,
                "status_accuracy": round(t["same_status"] / t["tp"], 4) if t["tp"] else None}

    report = figures(totals["all"])
    report["per_register"] = {k: figures(v) for k, v in sorted(totals.items()) if k != "all"}
    report["errors"] = errors
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m MedSORALib.differential.evaluate_reader", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--errors", action="store_true", help="also list the clauses read wrongly")
    args = parser.parse_args(argv)
    path = Path(args.data)
    if not path.is_file():
        print(f"medsora: error: no clause file {path}", file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    report = evaluate_clauses(rows)
    if not args.errors:
        report.pop("errors")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
