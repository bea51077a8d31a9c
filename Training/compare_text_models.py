"""Side-by-side comparison of symptom -> organ models (full11) on the grouped test split and a dev set.

Every model is trained on the train split of the passage-grouped split (no test text shares a source
passage with a training text) and scored on:

* ``test: paper-style``: the test split of ``symptom_texts.jsonl`` (observations without organ names);
* ``test: registers``: the test split of ``register_texts.jsonl`` (requisition, case, lay, ontology terms);
* ``dev: presentations`` / ``dev: requisition``: the abdominal texts of an external-style development set
  (``--dev``; case reports, exam stems and lay stories vs requisition indications), used only to score.

Models (rows of the table):

* zero-shot prompt cosine and a nearest-neighbour lookup (the class of the most similar training text);
* the knowledge channel alone (dense + BM25 evidence, summed, no training);
* MLP on frozen MiniLM trained with the paper's recipe on the paper-style texts only (the recipe shipped
  before this comparison);
* the same MLP trained on paper-style + register texts, abbreviations spelled out;
* the same with the knowledge channel fused in its inputs (the candidate product model), with the
  label-smoothing control, one-hot labels and anchors-alone heads on the same inputs;
* optionally rows written by other programs (``--extra-results``: fine-tuned encoder, larger encoder).

MLP rows are trained once per seed (``--seeds``) and reported as mean and standard deviation.

Example:
    python Training/compare_text_models.py --dev Training/data/external_dev.jsonl \
        --output MedSORALib/resources/weights/text/evaluation --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from MedSORALib.files import atomic_write_text, resource_path

REPO = Path(__file__).resolve().parent.parent


DATASET_DIR = resource_path("dataset")
#: Row names by result key (the product rows follow Training/configs/text.yaml: the shipped head is "smoothed").
NAMES = {
    "zero_shot": "zero-shot prompt cosine (MiniLM)",
    "knowledge_only": "knowledge channel alone (dense + BM25 evidence, no training)",
    "nearest_neighbour": "nearest training text (paper-style + registers, MiniLM cosine)",
    "mlp_paper": "MLP on frozen MiniLM, paper-style texts only (the recipe shipped before)",
    "mlp_registers": "+ register texts + abbreviations spelled out",
    "mlp_knowledge": "+ knowledge channel",
    "product": "+ curated secondary organs 0.5: source + anchors soft labels (paper's targets)",
    "product:smoothed": "+ curated secondary organs 0.5: label smoothing, source + constant (shipped)",
    "product:hard": "+ curated secondary organs 0.5: one-hot labels",
    "product:anchor_soft": "+ curated secondary organs 0.5: anchors' soft labels alone",
    "finetuned_minilm": "MiniLM fine-tuned end to end + linear head (1 epoch, CPU; seed 0)",
}
EVAL_SETS = ("test: paper-style", "test: registers", "dev: presentations", "dev: requisition")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", default=str(REPO / "Training" / "data" / "external_dev.jsonl"))
    parser.add_argument("--output", required=True, help="folder for text_comparison.md / .json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="override the MLP epochs of text.yaml")
    parser.add_argument("--config", default=str(REPO / "Training" / "configs" / "text.yaml"))
    parser.add_argument("--extra-results", nargs="*", default=[], help="JSON files of rows from other programs")
    parser.add_argument("--only", nargs="*", default=None, help="run only these model keys")
    parser.add_argument("--control-seeds", type=int, nargs="*", default=None,
                        help="seeds of the control heads (default: --seeds)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--from-json", default=None,
                        help="re-render an earlier text_comparison.json (with --extra-results merged) without training")
    return parser.parse_args(argv)


def load_sets(dev_path: Path):
    """Rows of the paper-style and register datasets, and the dev set's abdominal rows by group."""
    from MedSORALib.files import read_jsonl

    paper = read_jsonl(DATASET_DIR / "symptom_texts.jsonl")
    register = read_jsonl(DATASET_DIR / "register_texts.jsonl")
    sets = {
        "test: paper-style": [r for r in paper if r["split"] == "test"],
        "test: registers": [r for r in register if r["split"] == "test"],
    }
    if dev_path.is_file():
        dev = [r for r in read_jsonl(dev_path) if r.get("abdominal")]
        sets["dev: presentations"] = [r for r in dev if r.get("register") != "requisition"]
        sets["dev: requisition"] = [r for r in dev if r.get("register") == "requisition"]
    return paper, register, sets


def relevant_matrix(rows, classes):
    from medsora_training.text.metrics import label_matrix

    return label_matrix([r.get("organs") or [r["organ"]] for r in rows], classes)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.from_json:
        report = json.loads(Path(args.from_json).read_text())
        for path in args.extra_results:
            report["results"].update(json.loads(Path(path).read_text()))
        report["summary"] = summarise(report["results"])
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "text_comparison.json", json.dumps(report, indent=1) + "\n")
        text = markdown(report)
        atomic_write_text(out / "text_comparison.md", text)
        print(text)
        return 0
    import numpy as np
    import torch
    import yaml

    from MedSORALib.organs import CLASS_SETTINGS
    from MedSORALib.text.abbreviations import expand
    from MedSORALib.text.anchors import train_anchors
    from MedSORALib.text.encoder import get_default_encoder
    from MedSORALib.text.knowledge_channel import KnowledgeChannel, kb_terms
    from medsora_training.text.metrics import ranking_report
    from MedSORALib.text.mlp import MLPTrainingConfig, train_mlp
    from medsora_training.text.fitting import TextTrainingConfig, secondary_floor, soft_targets
    from medsora_training.text.zero_shot import zero_shot_class_vectors, zero_shot_scores

    torch.set_num_threads(max(1, args.threads))
    started = time.perf_counter()
    classes = CLASS_SETTINGS["full11"]
    index = {c: i for i, c in enumerate(classes)}
    with open(args.config, encoding="utf-8") as handle:
        config = TextTrainingConfig.from_dict(yaml.safe_load(handle))
    # every MLP row is trained with the product's MLP settings (the paper's block with the product overrides)
    mlp_base = {**config.mlp.__dict__, **config.product.mlp}
    if args.epochs:
        mlp_base["epochs"] = args.epochs
    w = config.source_weight
    paper, register, sets = load_sets(Path(args.dev))
    encoder = get_default_encoder()

    def embed(rows, expanded):
        texts = [expand(r["text"]) if expanded else r["text"] for r in rows]
        return encoder.encode(texts), texts

    train_paper = [r for r in paper if r["split"] == "train" and r["organ"] in index]
    train_register = [r for r in register if r["split"] == "train" and r["organ"] in index]
    relevant = {name: relevant_matrix(rows, classes) for name, rows in sets.items()}
    t0 = time.perf_counter()
    terms = {corpus: kb_terms(classes, include_corpus=corpus) for corpus in (True,)}
    term_emb = encoder.encode([t["text"] for t in terms[True]])
    channel = KnowledgeChannel(terms[True], classes, term_emb)
    print(f"knowledge channel: {len(channel.terms)} terms ({time.perf_counter() - t0:.1f} s)", flush=True)

    results: dict = {}

    def record(key, name, scores_by_set, seed=None):
        entry = results.setdefault(key, {"name": name, "runs": []})
        entry["runs"].append({"seed": seed, **{s: ranking_report(scores_by_set[s], relevant[s]) for s in sets}})

    def held_out(name, rows):
        # Grouped test texts: their own source passage (a corpus passage, an ontology term) is left out
        # of the knowledge channel too, so no test text meets its passage anywhere.
        return [r.get("chunk_ids") or [] for r in rows] if name.startswith("test") else None

    def eval_inputs(expanded, with_knowledge):
        out = {}
        for name, rows in sets.items():
            emb, texts = embed(rows, expanded)
            x = emb
            if with_knowledge:
                x = np.concatenate([emb, channel.evidence(texts, emb, held_out(name, rows))], axis=1)
            out[name] = (emb, x)
        return out

    def wanted(key):
        return args.only is None or key in args.only

    # -- baselines --------------------------------------------------------------------------------
    prompts = zero_shot_class_vectors(encoder, classes)
    raw_inputs = eval_inputs(False, False)
    if wanted("zero_shot"):
        record("zero_shot", "zero-shot prompt cosine (MiniLM)", {s: zero_shot_scores(raw_inputs[s][0], prompts) for s in sets})
    exp_inputs = eval_inputs(True, False)
    if wanted("knowledge_only"):
        scores = {}
        for name, rows in sets.items():
            emb, texts = embed(rows, True)
            ev = channel.evidence(texts, emb, held_out(name, rows))
            scores[name] = ev[:, : len(classes)] + ev[:, len(classes):]
        record("knowledge_only", "knowledge channel alone (dense + BM25 evidence, no training)", scores)

    train_all = train_paper + train_register
    emb_all, texts_all = embed(train_all, True)
    labels_all = np.array([index[r["organ"]] for r in train_all])
    if wanted("nearest_neighbour"):
        scores = {}
        for name in sets:
            sims = exp_inputs[name][0] @ emb_all.T
            per_class = np.full((len(sims), len(classes)), -1.0, dtype=np.float32)
            for c in range(len(classes)):
                mask = labels_all == c
                per_class[:, c] = sims[:, mask].max(axis=1)
            scores[name] = per_class
        record("nearest_neighbour", "nearest training text (paper-style + registers, MiniLM cosine)", scores)

    # -- MLP variants -----------------------------------------------------------------------------
    def secondary_of(rows):
        sec = np.zeros((len(rows), len(classes)), dtype=bool)
        for i, r in enumerate(rows):
            for o in (r.get("organs") or [])[1:]:
                if o in index:
                    sec[i, index[o]] = True
        return sec

    floor = config.product.secondary_weight
    variants = [
        ("mlp_paper", "MLP, paper recipe, paper-style texts only (before)", train_paper, False, False, 0.0, ("soft",)),
        ("mlp_registers", "MLP + register texts + abbreviations", train_all, True, False, 0.0, ("soft",)),
        ("mlp_knowledge", "MLP + register texts + abbreviations + knowledge channel", train_all, True, True, 0.0, ("soft",)),
        ("product", f"MLP + registers + abbreviations + knowledge + secondary organs {floor} (shipped)", train_all, True,
         True, floor, ("soft", "smoothed", "hard", "anchor_soft")),
    ]
    head_names = {"soft": "", "smoothed": " - label-smoothing control", "hard": " - one-hot labels",
                  "anchor_soft": " - anchors alone"}
    for key, name, rows, expanded, with_knowledge, floor, heads in variants:
        if not any(wanted(f"{key}:{h}") or wanted(key) for h in heads):
            continue
        emb, texts = embed(rows, expanded)
        labels = np.array([index[r["organ"]] for r in rows])
        x = emb
        if with_knowledge:
            exclude = [r.get("chunk_ids") or [] for r in rows]
            x = np.concatenate([emb, channel.evidence(texts, emb, exclude)], axis=1)
        inputs = eval_inputs(expanded, with_knowledge)
        sec = secondary_of(rows)
        for seed in args.seeds:
            t1 = time.perf_counter()
            anchors, _ = train_anchors(emb, labels, len(classes), config.anchors)
            with torch.no_grad():
                anchor_soft = anchors.soft_labels(torch.as_tensor(emb)).numpy()
            one_hot = np.eye(len(classes), dtype=np.float32)[labels]
            targets = {
                "soft": secondary_floor(soft_targets(anchor_soft, labels, w), sec, floor),
                "smoothed": secondary_floor((w * one_hot + (1 - w) * float(anchor_soft.mean())).astype(np.float32), sec, floor),
                "hard": secondary_floor(one_hot, sec, floor),
                "anchor_soft": anchor_soft,
            }
            for head in heads:
                if head != "soft" and args.control_seeds is not None and seed not in args.control_seeds:
                    continue
                model, _ = train_mlp(x, targets[head], MLPTrainingConfig(**{**mlp_base, "seed": seed}))
                scores = {s: model.predict(torch.as_tensor(inputs[s][1])).numpy() for s in sets}
                hkey = key if head == "soft" else f"{key}:{head}"
                record(hkey, name + head_names[head], scores, seed)
            print(f"[{key}] seed {seed}: {time.perf_counter() - t1:.0f} s", flush=True)

    for path in args.extra_results:
        extra = json.loads(Path(path).read_text())
        for key, entry in extra.items():
            results[key] = entry

    summary = summarise(results)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    report = {"sets": {s: len(rows) for s, rows in sets.items()}, "seeds": args.seeds, "mlp": mlp_base,
              "knowledge_terms": len(channel.terms), "results": results, "summary": summary,
              "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_text(out / "text_comparison.json", json.dumps(report, indent=1) + "\n")
    text = markdown(report)
    atomic_write_text(out / "text_comparison.md", text)
    print(text)
    return 0


def summarise(results: dict) -> dict:
    import numpy as np

    summary = {}
    for key, entry in results.items():
        runs = entry["runs"]
        sets = [s for s in runs[0] if s != "seed"]
        summary[key] = {
            s: {m: {"mean": float(np.mean([r[s][m] for r in runs])), "sd": float(np.std([r[s][m] for r in runs]))}
                for m in ("rank1", "rank3", "mAP")} | {"n": runs[0][s]["n"]}
            for s in sets
        }
        summary[key]["seeds"] = [r["seed"] for r in runs]
    return summary


def markdown(report: dict) -> str:
    lines = ["# Symptom -> organ models side by side (full11)", "",
             "Rank-1 / Rank-3 / mAP in percent against the multi-organ labels; MLP rows: mean ± sd over seeds "
             f"{', '.join(map(str, report['seeds']))}. Sets: " +
             ", ".join(f"{s} ({n} texts)" for s, n in report["sets"].items()) + ".", ""]
    sets = list(report["sets"])
    lines.append("| model | " + " | ".join(sets) + " |")
    lines.append("|---|" + "---|" * len(sets))
    for key, summary in report["summary"].items():
        cells = []
        for s in sets:
            if s not in summary:
                cells.append("-")
                continue
            m = summary[s]
            multi = len(summary["seeds"]) > 1
            fmt = (lambda v: f"{100 * v['mean']:.1f}±{100 * v['sd']:.1f}") if multi else (lambda v: f"{100 * v['mean']:.1f}")
            cells.append(" / ".join(fmt(m[k]) for k in ("rank1", "rank3", "mAP")))
        name = NAMES.get(key, report["results"][key]["name"])
        lines.append(f"| {name} (`{key}`) | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
