"""Ablation of the catalogue texts: which lever moved what on the development sets.

Compares, with the harness of ``Training/evaluate_reasoning.py`` (same sets, metrics and paired bootstrap),

* ``before``: the shipped full11 text model (read from git at ``--before-rev``; the default is the commit that
  last changed MedSORALib/resources/weights/text/full11);
* ``control``: full11 retrained with today's code and data but without the catalogue texts
  (``Training/configs/text.yaml``): what retraining alone changes (the out-of-domain calibration rows added
  since ``before`` was trained);
* one or more candidates trained with the catalogue texts (``Training/configs/text_catalogue.yaml``), given as
  ``--catalogue NAME=DIR``;
* ``differential`` alone and each model fused with it (``+fusion``), when ``MedSORALib.differential`` is there,

and the paired differences that isolate one lever each: catalogue texts (``NAME - control``, alone and inside
the fusion), retraining (``control - before``), both (``NAME - before``), the fusion (``before+fusion - before``)
and the candidate inside the product (``NAME+fusion - before+fusion``).

Sets: the tune half (even line positions) and the check half of the three team dev files, reported apart (choices
are made on the tune half), and the two case-derived sets; ``--no-case-derived2`` leaves out the second one, whose
aggregate figures only are ever used (no per-text output is written for any set).

    python Training/train_text.py --settings full11 --output runs/control
    python Training/generate_catalogue_texts.py
    python Training/train_text.py --config Training/configs/text_catalogue.yaml --settings full11 --output runs/cat
    python Training/catalogue_ablation.py --control runs/control --catalogue catalogue=runs/cat
"""
from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

import evaluate_reasoning as harness

REPO = Path(__file__).resolve().parent.parent
#: The commit whose MedSORALib/resources/weights/text/full11 is the shipped model (the last one to change it).
BEFORE_REV = "aca590aae08237fedb608bc893c0f0e9f5f481c6"
WEIGHT_FILES = ("config.json", "model.safetensors", "knowledge_terms.json")
PAIRS = [
    ("control", "before", "retraining alone (new calibration rows)"),
    ("before+fusion", "before", "fusion with the differential"),
    ("differential", "before", "differential alone"),
]
#: Differences computed for each catalogue candidate NAME.
CANDIDATE_PAIRS = [
    ("{name}", "control", "catalogue texts"),
    ("{name}+fusion", "control+fusion", "catalogue texts inside the fusion"),
    ("{name}", "before", "catalogue texts + retraining"),
    ("{name}+fusion", "before+fusion", "catalogue model inside the fusion"),
    ("{name}+fusion", "before", "catalogue model + fusion, against the model shipped before"),
]
TEAM_SETS = ("presentations", "short_histories", "non_abdominal")
CASE_SETS = ("case_derived", "case_derived2")
FOCUS = ("portal_vein_and_splenic_vein", "inferior_vena_cava", "adrenal_gland", "spleen")
#: Sets whose figures are reported over the whole set only (no per-class breakdown of a handful of texts).
AGGREGATE_ONLY = ("case_derived2",)


def weights_at(rev: str, target: Path) -> Path:
    """Write the full11 weights of commit ``rev`` into ``target/full11`` (git show, no checkout)."""
    folder = target / "full11"
    folder.mkdir(parents=True, exist_ok=True)
    for name in WEIGHT_FILES:
        blob = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:MedSORALib/resources/weights/text/full11/{name}"],
                              check=True, capture_output=True).stdout
        (folder / name).write_bytes(blob)
    return target


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _interval(entry) -> str:
    if not entry:
        return "-"
    lo, hi = entry["ci95"]
    return f"{100 * entry['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before-rev", default=BEFORE_REV, help="commit holding the full11 weights shipped before")
    parser.add_argument("--control", default=None, help="full11 retrained without the catalogue texts (weights folder)")
    parser.add_argument("--catalogue", nargs="+", required=True, metavar="NAME=DIR",
                        help="full11 models trained with the catalogue texts (weights folders)")
    parser.add_argument("--output", default=str(REPO / "Training" / "results" / "catalogue_ablation"))
    parser.add_argument("--no-case-derived2", action="store_true", help="leave out the second case-derived set")
    args = parser.parse_args(argv)

    from MedSORALib.organs import structure_class
    from MedSORALib.text.reasoning import TextReasoner

    sets = {}
    for name in TEAM_SETS:
        rows = harness.load_set(harness.SETS[name])
        for half in ("tune", "check"):
            sets[f"{name} ({half})"] = [r for r in rows if r["half"] == half]
    for name in CASE_SETS:
        if not (name == "case_derived2" and args.no_case_derived2):
            sets[name] = harness.load_set(harness.SETS[name])
    with tempfile.TemporaryDirectory() as tmp:
        before = weights_at(args.before_rev, Path(tmp) / "before")
        candidates = dict(item.split("=", 1) for item in args.catalogue)
        folders = {"before": before, **({"control": Path(args.control)} if args.control else {}),
                   **{name: Path(folder) for name, folder in candidates.items()}}
        fusion_missing = harness.differential_available()
        methods = {}
        for name, folder in folders.items():
            cache = harness.ModelCache(TextReasoner.load(folder, setting="full11"))
            methods[name] = harness.model_method(cache)
            if not fusion_missing:
                methods[f"{name}+fusion"] = harness.differential_method(cache)
        if not fusion_missing:
            methods["differential"] = harness.differential_method(None)
        values = {}
        for set_name, rows in sets.items():
            texts = [r["text"] for r in rows]
            values[set_name] = {m: harness.per_text(rows, fn(texts)) for m, fn in methods.items()}

    report = {"before_rev": args.before_rev, "folders": {k: str(v) for k, v in folders.items() if k != "before"},
              "fusion": fusion_missing or "available", "sets": {}}
    for set_name, rows in sets.items():
        entry = {"n_rows": len(rows), "methods": {}, "pairs": {}, "focus_rank1": {}}
        for m, v in values[set_name].items():
            entry["methods"][m] = harness.summary(v)
            by_class = harness.grouped(rows, v, lambda r: structure_class(r["structures"][0])
                                       if r["scope"] == "modelled" and r["structures"] else None)
            if set_name not in AGGREGATE_ONLY:
                entry["focus_rank1"][m] = {c: by_class[c]["rank1"] for c in FOCUS if c in by_class}
        pairs = PAIRS + [(a.format(name=n), b, what) for n in candidates for a, b, what in CANDIDATE_PAIRS]
        for a, b, what in pairs:
            if a in values[set_name] and b in values[set_name]:
                entry["pairs"][f"{a} - {b}"] = {"lever": what, **harness.paired_bootstrap(
                    values[set_name][a], values[set_name][b], len(rows))}
        report["sets"][set_name] = entry

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    cmd = "python Training/catalogue_ablation.py" + (f" --control {args.control}" if args.control else "") + \
          " --catalogue " + " ".join(args.catalogue) + (" --no-case-derived2" if args.no_case_derived2 else "")
    lines = [f"# Catalogue texts: ablation on the development sets", "",
             f"Written by `{cmd}`; `before` = full11 at commit {args.before_rev[:10]}. Percent; paired bootstrap "
             f"({harness.RESAMPLES} resamples of the texts, seed {harness.SEED}), 95 % interval, points.", "",
             "| set | method | n ranked | Rank-1 | Rank-3 | mAP | kept | caught |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for set_name, entry in report["sets"].items():
        for m, s in entry["methods"].items():
            lines.append(f"| {set_name} | {m} | {s['n_ranked']} | {_pct(s['rank1'])} | {_pct(s['rank3'])} | "
                         f"{_pct(s['mAP'])} | {_pct(s['kept'])} | {_pct(s['caught'])} |")
    lines += ["", "## Levers (paired differences)", "",
              "| set | difference | lever | Rank-1 | Rank-3 | mAP | kept | caught |", "|---|---|---|---|---|---|---|---|"]
    for set_name, entry in report["sets"].items():
        for pair, d in entry["pairs"].items():
            lines.append(f"| {set_name} | {pair} | {d['lever']} | " +
                         " | ".join(_interval(d.get(f)) for f in ("rank1", "rank3", "mAP", "kept", "caught")) + " |")
    lines += ["", "## Rank-1 of the classes the issue names weakest", "",
              "| set | method | " + " | ".join(FOCUS) + " |", "|---|---|" + "---:|" * len(FOCUS)]
    for set_name, entry in report["sets"].items():
        for m, by in entry["focus_rank1"].items():
            if by:
                lines.append(f"| {set_name} | {m} | " + " | ".join(_pct(by.get(c)) for c in FOCUS) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
