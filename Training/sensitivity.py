"""How much the reasoning's constants matter: one constant at a time around the shipped values.

On the development texts (the tune halves, even line positions, of the presentations and the short histories,
and both case-derived sets whole: both have been analysed, so they are development sets) the script reads every
text once (the clinical reader with its embedding fallback) and predicts it once with the text model, then
re-scores the differential and the fusion for each variant:

* the differential's constants (``MedSORALib.differential.differential``): ``TEMPERATURE`` (the multiplier of the
  summed log likelihood ratios), ``GENERIC_WEIGHT``, ``PRIOR_POWER``, ``NONE_SHARE``;
* the fusion's weight ``ALPHA`` (``MedSORALib.differential.fusion``);
* the text model read sentence by sentence: the whole text's relevance mixed with the mean or the maximum of its
  sentences' relevance (share 0.3 or 0.5; the out-of-domain gate stays the whole text's).

Writes ``Training/results/sensitivity.md`` and ``.json``: fusion Rank-1 and mAP per set (percent), the
differential alone's Rank-1, and the mean Rank-1 over the sets. Nothing is chosen by this script; it says how
flat the figures are around the shipped values.

    python Training/sensitivity.py [--output Training/results/sensitivity]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path

import numpy as np
from evaluate_reasoning import DATA, REPO, _commit, load_set

SETS = {
    "presentations [tune half]": (DATA / "dev_presentations.jsonl", "tune"),
    "short_histories [tune half]": (DATA / "dev_short_histories.jsonl", "tune"),
    "case_derived": (DATA / "dev_case_derived.jsonl", None),
    "case_derived2": (DATA / "dev_case_derived2.jsonl", None),
}
DEFAULT_OUTPUT = REPO / "Training" / "results" / "sensitivity"
_SENTENCE = re.compile(r"(?<=[.!?;])\s+(?=[A-Za-z0-9\"(])|\n+")


def load_rows() -> dict[str, list[dict]]:
    out = {}
    for name, (path, half) in SETS.items():
        rows = [r for r in load_set(path) if half is None or r["half"] == half]
        out[name] = [r for r in rows if r["scope"] == "modelled" and r["structures"]]
    return out


def sentences(text: str) -> list[str]:
    parts = [s.strip() for s in _SENTENCE.split(text) if len(re.findall(r"[A-Za-z]{2,}", s)) >= 2]
    return parts or [text]


class Cache:
    """Every text read and predicted once; variants re-score from here."""

    def __init__(self, texts: list[str]):
        from MedSORALib.differential.fusion import read_texts
        from MedSORALib.text.reasoning import TextReasoner

        self.reasoner = TextReasoner.load()
        self.texts = texts
        self.embeddings = self.reasoner.encode(texts)
        self.predictions = self.reasoner.predict_embeddings(texts, self.embeddings)
        self.readings = read_texts(texts, self.reasoner)
        self._sentence_relevance = None

    def sentence_predictions(self, kind: str, share: float) -> list:
        """The model's predictions with class relevance (1 - share) x whole + share x pooled sentences."""
        from MedSORALib.organs import STRUCTURES, class_structures
        from MedSORALib.text.laterality import split_paired

        r = self.reasoner
        if self._sentence_relevance is None:
            split = [sentences(t) for t in self.texts]
            flat = [s for parts in split for s in parts]
            owner = np.array([i for i, parts in enumerate(split) for _ in parts])
            scores = r.raw_scores(r.encode(flat), flat)
            whole = r.raw_scores(self.embeddings, self.texts)
            self._sentence_relevance = (r.relevance_from_soft(whole[r.relevance_head]),
                                        r.relevance_from_soft(scores[r.relevance_head]), owner,
                                        r.detector.gate(np.asarray(whole["p_in"], dtype=np.float64)))
        whole, per_sentence, owner, gate = self._sentence_relevance
        out = []
        for i, pred in enumerate(self.predictions):
            part = per_sentence[owner == i]
            pooled = part.max(axis=0) if kind == "max" else part.mean(axis=0)
            mixed = ((1.0 - share) * whole[i] + share * pooled) * gate[i]
            classes = {c: float(mixed[j]) for j, c in enumerate(r.classes)}
            structures = dict.fromkeys(STRUCTURES, 0.0)
            structures.update(split_paired(classes, pred.laterality, class_structures))
            out.append(dataclasses.replace(pred, class_relevance=classes, structure_relevance=structures))
        return out


def score_variant(cache: Cache, scorer, predictions, alpha: float) -> tuple[list, list]:
    """(fused relevance, differential relevance) per text; a structure removed by surgery gets -1 (ranked last)."""
    from MedSORALib.differential.fusion import answer

    fused, diff = [], []
    for text, reading, pred in zip(cache.texts, cache.readings, predictions):
        result = scorer.score(reading)
        relevance = dict(answer(text, pred, result, alpha).structure_relevance)
        for key in result.removed:
            relevance[key] = -1.0
        fused.append(relevance)
        diff.append(result.organ_relevance)
    return fused, diff


def variants():
    from MedSORALib.differential import differential as d
    from MedSORALib.differential import fusion

    yield "shipped", {}, fusion.ALPHA, None
    for t in (1.5, 2.0, 3.0, 4.0):
        yield f"TEMPERATURE {t} (shipped {d.TEMPERATURE})", {"temperature": t}, fusion.ALPHA, None
    for g in (0.3, 0.7, 1.0):
        yield f"GENERIC_WEIGHT {g} (shipped {d.GENERIC_WEIGHT})", {"generic_weight": g}, fusion.ALPHA, None
    for p in (0.0, 0.15, 0.5, 0.8):
        yield f"PRIOR_POWER {p} (shipped {d.PRIOR_POWER})", {"prior_power": p}, fusion.ALPHA, None
    for n in (0.02, 0.1, 0.2):
        yield f"NONE_SHARE {n} (shipped {d.NONE_SHARE})", {"none_share": n}, fusion.ALPHA, None
    for a in (0.4, 0.5, 0.6, 0.8):
        yield f"fusion ALPHA {a} (shipped {fusion.ALPHA})", {}, a, None
    for kind in ("mean", "max"):
        for share in (0.3, 0.5):
            yield f"model: whole text + {share} x {kind} of sentences", {}, fusion.ALPHA, (kind, share)


def run() -> dict:
    from MedSORALib.differential.catalogue import load_catalogue
    from MedSORALib.differential.differential import Differential
    from MedSORALib.differential.evaluate import rank_metrics

    sets = load_rows()
    rows = [r for name in sets for r in sets[name]]
    cache = Cache([r["text"].strip() for r in rows])
    catalogue = load_catalogue()
    offsets, start = {}, 0
    for name, part in sets.items():
        offsets[name] = (start, start + len(part))
        start += len(part)
    report = {"sets": {name: len(part) for name, part in sets.items()}, "variants": [], "headroom": {}}
    for label, kwargs, alpha, pooling in variants():
        predictions = cache.predictions if pooling is None else cache.sentence_predictions(*pooling)
        fused, diff = score_variant(cache, Differential(catalogue, **kwargs), predictions, alpha)
        entry = {"variant": label, "sets": {}}
        for name, (a, b) in offsets.items():
            metrics = np.array([rank_metrics(fused[i], set(rows[i]["structures"])) for i in range(a, b)])
            alone = np.mean([rank_metrics(diff[i], set(rows[i]["structures"]))[0] for i in range(a, b)])
            entry["sets"][name] = {"rank1": 100 * float(metrics[:, 0].mean()), "mAP": 100 * float(metrics[:, 2].mean()),
                                   "differential_rank1": 100 * float(alone)}
        entry["mean_rank1"] = float(np.mean([v["rank1"] for v in entry["sets"].values()]))
        if label == "shipped":
            report["headroom"] = headroom(rows, offsets, [p.structure_relevance for p in predictions], diff, fused)
        report["variants"].append(entry)
        print(f"{label:55s} mean Rank-1 {entry['mean_rank1']:.1f}", flush=True)
    return report


def headroom(rows, offsets, model, diff, fused) -> dict:
    """Per set: Rank-1 of the model, the differential and the fusion, and of the two parts' best case (either part
    ranks a true structure first) and worst case (both do): how much a better arbitration could still give."""
    from MedSORALib.differential.evaluate import rank_metrics

    out = {}
    for name, (a, b) in offsets.items():
        hit = {k: np.array([rank_metrics(v[i], set(rows[i]["structures"]))[0] for i in range(a, b)])
               for k, v in (("model", model), ("differential", diff), ("fusion", fused))}
        out[name] = {k: 100 * float(v.mean()) for k, v in hit.items()}
        out[name]["either"] = 100 * float(np.maximum(hit["model"], hit["differential"]).mean())
        out[name]["both"] = 100 * float(np.minimum(hit["model"], hit["differential"]).mean())
    return out


def markdown(report: dict) -> str:
    names = list(report["sets"])
    lines = ["# Sensitivity of the reasoning to its constants", "",
             f"Written by `python Training/sensitivity.py` (code {_commit()}). Fusion Rank-1 / mAP per set and, in "
             "brackets, the differential alone's Rank-1 (percent); rows whose answer lies in the 13 structures: "
             + ", ".join(f"{n} ({report['sets'][n]})" for n in names) + ". One constant at a time; nothing here "
             "was chosen by this script.", "",
             "| variant | " + " | ".join(names) + " | mean Rank-1 |", "|---|" + "---|" * (len(names) + 1)]
    for entry in report["variants"]:
        cells = [f"{v['rank1']:.1f} / {v['mAP']:.1f} ({v['differential_rank1']:.1f})" for v in entry["sets"].values()]
        lines.append(f"| {entry['variant']} | " + " | ".join(cells) + f" | {entry['mean_rank1']:.1f} |")
    lines += ["", "## Headroom of the fusion (shipped constants)", "",
              "Rank-1 of each part and of the fusion; *either*: texts where the model or the differential ranks a "
              "true structure first (the best any choice between the two could do), *both*: where both do.", "",
              "| set | model | differential | fusion | either | both |", "|---|---:|---:|---:|---:|---:|"]
    for name, v in report["headroom"].items():
        lines.append(f"| {name} | {v['model']:.1f} | {v['differential']:.1f} | {v['fusion']:.1f} | {v['either']:.1f} | "
                     f"{v['both']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="path stem of the .md and .json written")
    args = parser.parse_args(argv)
    from MedSORALib.files import atomic_write_text

    report = run()
    stem = Path(args.output)
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown(report))
    print(f"wrote {stem.with_suffix('.md')} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
