"""Held-out out-of-domain rates of the text models, with and without the word channel.

Texts: the development sets (``Training/data/DEV_SETS.md``: the modelled presentations with the non-abdominal
presentations, and the modelled short histories), the retired external development set
(``Training/data/external_dev.jsonl``, per register, for comparison) and the ``test`` rows of
``MedSORALib/resources/ood``. Texts that coincide with a text stored in the detector's neighbour banks
(cosine >= 0.99; the product model trains on terse terms such as "splenomegaly") are left out and counted
("in banks"); the largest cosine to the banks is reported over all texts of a set (``max_cosine_all``, before
leaving any out) and over the texts kept (``max_cosine_to_banks``). "neural" is the
logistic detector alone; "neural + words" adds the word channel (what ``TextReasoner.predict`` decides when
the weights store ``ood.word_channel: true``; the shipped full11 stores false since Training/refit_ood.py).

    python Training/evaluate_ood.py [--settings full11 paper7] [--weights DIR] [--output FILE.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEV = REPO / "Training" / "data" / "external_dev.jsonl"
DEV_SETS = {name: REPO / "Training" / "data" / f"dev_{name}.jsonl"
            for name in ("presentations", "short_histories", "non_abdominal")}


def _rates(decided, truth) -> dict:
    import numpy as np

    decided, truth = np.asarray(decided, bool), np.asarray(truth, bool)
    return {
        "kept_abdominal": float(decided[truth].mean()) if truth.any() else None,
        "flagged_non_abdominal": float((~decided[~truth]).mean()) if (~truth).any() else None,
        "n_abdominal": int(truth.sum()),
        "n_non_abdominal": int((~truth).sum()),
    }


def evaluate(reasoner, sets: dict) -> dict:
    import numpy as np

    from MedSORALib.text.ood import outside_banks

    out = {}
    for name, (texts, truth) in sets.items():
        every = reasoner.encode(texts)
        max_all = float(max((every @ reasoner.knn_bank.T).max(), (every @ reasoner.out_bank.T).max()))
        keep = outside_banks(reasoner, texts)
        dropped = len(texts) - sum(keep)
        texts = [t for t, k in zip(texts, keep) if k]
        truth = [t for t, k in zip(truth, keep) if k]
        emb = reasoner.encode(texts)
        neural = reasoner.raw_scores(emb, texts)["p_in"] >= reasoner.detector.threshold
        stored, reasoner.word_channel = reasoner.word_channel, True  # "+ words" whatever the weights decide
        try:
            combined = [p.in_domain for p in reasoner.predict_embeddings(texts, emb)]
        finally:
            reasoner.word_channel = stored
        out[name] = {
            "neural": _rates(neural, truth),
            "neural + words": _rates(combined, truth),
            "in_banks": dropped,
            "max_cosine_all": round(max_all, 4),
            "max_cosine_to_banks": round(float(max((emb @ reasoner.knn_bank.T).max(), (emb @ reasoner.out_bank.T).max())), 4),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["full11", "paper7"])
    parser.add_argument("--weights", default=None, help="text weights folder (default: the shipped ones)")
    parser.add_argument("--output", default=None, help="also write the numbers as JSON here")
    args = parser.parse_args(argv)

    from MedSORALib.files import atomic_write_text
    from MedSORALib.text.ood import load_ood_texts
    from MedSORALib.text.reasoning import TextReasoner

    def read(path):
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    dev = {name: read(path) for name, path in DEV_SETS.items()}
    modelled = [r["text"] for r in dev["presentations"] if r["scope"] == "modelled"]
    other = [r["text"] for r in dev["non_abdominal"]]
    sets = {"dev: presentations + non-abdominal": (modelled + other, [True] * len(modelled) + [False] * len(other))}
    short = [r["text"] for r in dev["short_histories"] if r["scope"] == "modelled"]
    sets["dev: short histories"] = (short, [True] * len(short))
    rows = read(DEV)
    sets["external dev (all)"] = ([r["text"] for r in rows], [r["abdominal"] for r in rows])
    for register in ("case", "exam", "lay", "requisition"):
        part = [r for r in rows if r["register"] == register]
        sets[f"external dev: {register}"] = ([r["text"] for r in part], [r["abdominal"] for r in part])
    queries = load_ood_texts("abdominal_queries", split="test")
    other = load_ood_texts("non_abdominal", split="test")
    sets["resources/ood test rows"] = ([r["text"] for r in queries + other], [True] * len(queries) + [False] * len(other))

    report = {}
    for setting in args.settings:
        reasoner = TextReasoner.load(args.weights, setting=setting)
        report[setting] = evaluate(reasoner, sets)
        print(f"\n{setting} (threshold p_in >= {reasoner.detector.threshold:.3f})\n")
        print("| texts | abdominal kept: neural | + words | non-abdominal flagged: neural | + words | in banks "
              "| max cos to banks (all) | max cos (kept) |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, res in report[setting].items():
            n, c = res["neural"], res["neural + words"]

            def fmt(value, count):
                return "-" if value is None else f"{100 * value:.1f} % (n={count})"

            print(f"| {name} | {fmt(n['kept_abdominal'], n['n_abdominal'])} | {fmt(c['kept_abdominal'], c['n_abdominal'])} "
                  f"| {fmt(n['flagged_non_abdominal'], n['n_non_abdominal'])} | {fmt(c['flagged_non_abdominal'], c['n_non_abdominal'])} "
                  f"| {res['in_banks']} | {res['max_cosine_all']:.3f} | {res['max_cosine_to_banks']:.3f} |")
    if args.output:
        atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
