"""Evaluate MedSORA's shipped text models on the passage-grouped test split and the external-style dev set.

For each class setting (the paper's 7 classes, our 11) and each method:

* soft  - the shipped model: relevance MLP on soft labels mixing the source organ and the
          learnable organ anchors, w * one-hot + (1 - w) * (cos(p_i, f) + 1) / 2 (full11: with the
          register texts, abbreviations spelled out, the knowledge channel in its inputs and the curated
          secondary organs as a target floor);
* anchor_soft - the same MLP on the anchors' soft labels alone (the paper's recipe read literally);
* smoothed - the same MLP on w * one-hot + (1 - w) * a constant: label smoothing without the
          anchors (control: how much of the gain is the anchors' structure);
* hard  - the same MLP trained on one-hot organ labels (ablation);
* anchors - the positive anchors alone, cos(p_i, f) (the soft labels themselves);
* zero-shot - cosine between the symptom and prompts per organ with the same encoder,

it reports Rank-1/2/3 accuracy (a correct organ of the text's multi-organ label among the top k) and
mAP over the multi-organ labels on: the grouped test split of the paper-style dataset (no test text
shares a source passage with a training text; the knowledge channel leaves each test text's passage
out too), the grouped test split of the register texts (full11), the held-out short abdominal
queries, and the abdominal texts of the external-style dev set (``--dev``, when present), split into
presentations (case reports, exam stems, lay stories) and requisition indications. It also reports
the out-of-domain decision on held-out texts, the calibration of the relevance on the grouped test
split (reliability curve, expected calibration error, share of texts whose top relevance is exactly
1), the laterality rule against the dataset's laterality field, and draws the paper's figures:
t-SNE of test embeddings with the positive anchors (Fig. 5) and organ-organ correlation of the
outputs, hard vs soft (Fig. 6).

Example:
    python Training/evaluate_text.py --output MedSORALib/resources/weights/text/evaluation --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from MedSORALib.files import atomic_write_text

REPO = Path(__file__).resolve().parent.parent


HELD_OUT_PARTS = ("test", "registers")
PART_TITLES = {
    "test": "Grouped test split, paper-style texts (multi-organ labels)",
    "registers": "Grouped test split, register texts (requisition, case, lay, ontology terms)",
    "queries": "Held-out short abdominal queries",
    "dev: presentations": "External-style dev set: case reports, exam stems, lay stories (abdominal)",
    "dev: requisition": "External-style dev set: requisition indications (abdominal)",
}
METHODS = ("soft", "anchor_soft", "smoothed", "hard", "anchors", "zero-shot")
METHOD_NAMES = {
    "soft": "soft labels, source + anchors",
    "anchor_soft": "soft labels, anchors alone",
    "smoothed": "source + constant (label smoothing control)",
    "hard": "hard labels (one-hot MLP)",
    "anchors": "positive anchors only",
    "zero-shot": "zero-shot (prompt cosine)",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder for text_evaluation.md/.json and the figures")
    parser.add_argument("--weights", default=None, help="text weights folder (default: the shipped weights)")
    parser.add_argument("--dataset", default=None, help="dataset JSONL with splits (default: the shipped dataset)")
    parser.add_argument("--settings", nargs="+", choices=["paper7", "full11"], default=["paper7", "full11"])
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")
    parser.add_argument("--dev", default=str(REPO / "Training" / "data" / "external_dev.jsonl"),
                        help="external-style dev set (JSONL with abdominal, register, organs); scored when present")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these small models)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=[],
        help="also retrain the MLP heads (soft, hard, anchors alone, smoothing) with these seeds on the train "
        "split, keeping the weights' anchors, and report mean and standard deviation (about 20 s per head)",
    )
    return parser.parse_args(argv)


def evaluate_setting(setting, reasoner, encoder, parts):
    """Rankings of every method on each evaluation part ({name: rows with ``organs``})."""
    import numpy as np

    from medsora_training.text.metrics import ranking_report
    from medsora_training.text.fitting import rows_for_setting
    from medsora_training.text.zero_shot import zero_shot_class_vectors, zero_shot_scores

    classes = reasoner.classes
    prompts = zero_shot_class_vectors(encoder, classes)
    results = {}
    arrays = {}
    for name, rows in parts.items():
        kept, relevant = rows_for_setting(rows, setting, multi_label=True)
        if not kept:
            continue
        texts = [r["text"] for r in kept]
        emb = reasoner.encode(texts)
        # Texts of the grouped test split were written from knowledge-base passages: the knowledge
        # channel leaves their own passage out, as training did.
        exclude = [r.get("chunk_ids") or [] for r in kept] if name in HELD_OUT_PARTS else None
        raw = reasoner.raw_scores(emb, texts, exclude=exclude)
        scores = {"soft": raw["soft"], "anchors": raw["anchor_cos"],
                  "zero-shot": zero_shot_scores(encoder.encode(texts), prompts)}
        for ablation in ("hard", "anchor_soft", "smoothed"):
            if ablation in raw:
                scores[ablation] = raw[ablation]
        results[name] = {m: ranking_report(scores[m], relevant) for m in METHODS if m in scores}
        # Accuracy of the single source organ at rank 1 (train-style label), for reference.
        source = np.array([classes.index(r.get("organ", r["organs"][0])) if r.get("organ", r["organs"][0]) in classes else -1 for r in kept])
        ok = source >= 0
        for m in results[name]:
            results[name][m]["source_top1"] = float((scores[m][ok].argmax(1) == source[ok]).mean()) if ok.any() else None
        arrays[name] = {"embeddings": emb, "relevant": relevant, "scores": scores, "rows": kept,
                        "relevance": reasoner.relevance_from_soft(raw[reasoner.relevance_head])
                        * reasoner.detector.gate(raw["p_in"])[:, None]}
    return results, arrays


def tsne_figure(path: Path, setting, reasoner, arrays) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import torch
    from sklearn.manifold import TSNE

    from MedSORALib.organs import CLASS_DISPLAY_NAMES

    classes = reasoner.classes
    emb = arrays["embeddings"]
    rows = arrays["rows"]
    anchors = torch.nn.functional.normalize(reasoner.anchors.positive.detach(), dim=-1).numpy()
    points = np.concatenate([emb, anchors])
    coords = TSNE(n_components=2, perplexity=30, init="pca", random_state=0).fit_transform(points)
    text_xy, anchor_xy = coords[: len(emb)], coords[len(emb) :]
    cmap = plt.get_cmap("tab20" if len(classes) > 10 else "tab10")
    fig, ax = plt.subplots(figsize=(8, 7))
    for i, cls in enumerate(classes):
        mask = np.array([r.get("organ", r["organs"][0]) == cls for r in rows])
        ax.scatter(text_xy[mask, 0], text_xy[mask, 1], s=9, color=cmap(i), alpha=0.6, label=CLASS_DISPLAY_NAMES[cls])
        ax.scatter(anchor_xy[i, 0], anchor_xy[i, 1], s=260, marker="*", color=cmap(i), edgecolor="black", linewidth=1.2)
    ax.set_title(f"t-SNE of test symptom embeddings and positive anchors (stars), {setting}")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def correlation_figure(path: Path, setting, classes, scores) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from MedSORALib.organs import CLASS_DISPLAY_NAMES

    names = [CLASS_DISPLAY_NAMES[c] for c in classes]
    methods = [m for m in ("hard", "soft") if m in scores]
    fig, axes = plt.subplots(1, len(methods), figsize=(6.5 * len(methods), 5.6))
    axes = np.atleast_1d(axes)
    mean_offdiag = {}
    for ax, method in zip(axes, methods):
        corr = np.corrcoef(scores[method].T)
        off = corr[~np.eye(len(classes), dtype=bool)]
        mean_offdiag[method] = float(off.mean())
        im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(classes)), names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(classes)), names, fontsize=8)
        ax.set_title(f"{method} labels: organ-organ correlation\n(mean off-diagonal {off.mean():+.2f})", fontsize=10)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(f"Correlation of the MLP outputs over the test texts, {setting}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return mean_offdiag


def seed_study(setting, reasoner, encoder, rows, seeds) -> dict:
    """Retrain the four MLP heads per seed (anchors fixed) and collect test-split rankings."""
    import numpy as np
    import torch

    from medsora_training.text.metrics import ranking_report
    from MedSORALib.text.mlp import MLPTrainingConfig, train_mlp
    from medsora_training.text.fitting import rows_for_setting, soft_targets

    training = reasoner.config["training"]["config"]
    w = float(training.get("source_weight", 0.5))
    train_rows, labels = rows_for_setting([r for r in rows if r.get("split") == "train"], setting)
    test_rows, relevant = rows_for_setting([r for r in rows if r.get("split") == "test"], setting, multi_label=True)
    train_texts = [r["text"] for r in train_rows]
    test_texts = [r["text"] for r in test_rows]
    emb_train = reasoner.encode(train_texts)
    x_train = reasoner.mlp_inputs(emb_train, train_texts, [r.get("chunk_ids") or [] for r in train_rows])
    x_test = torch.as_tensor(reasoner.mlp_inputs(reasoner.encode(test_texts), test_texts,
                                                 [r.get("chunk_ids") or [] for r in test_rows]))
    with torch.no_grad():
        anchor_soft = reasoner.anchors.soft_labels(torch.as_tensor(emb_train)).numpy()
    one_hot = np.eye(len(reasoner.classes), dtype=np.float32)[labels]
    targets = {
        "soft": soft_targets(anchor_soft, labels, w),
        "anchor_soft": anchor_soft,
        "smoothed": (w * one_hot + (1.0 - w) * float(anchor_soft.mean())).astype(np.float32),
        "hard": one_hot,
    }
    runs: dict[str, list[dict]] = {name: [] for name in targets}
    for seed in seeds:
        for name, target in targets.items():
            product = training.get("product") or {}
            overrides = product.get("mlp") or {} if setting in product.get("settings", []) else {}
            config = MLPTrainingConfig(**{**training["mlp"], **overrides, "seed": seed})
            head, _ = train_mlp(x_train, target, config)
            runs[name].append(ranking_report(head.predict(x_test).numpy(), relevant))
    summary = {}
    for name, reports in runs.items():
        summary[name] = {
            k: {"mean": float(np.mean([r[k] for r in reports])), "sd": float(np.std([r[k] for r in reports]))}
            for k in ("rank1", "rank2", "rank3", "mAP")
        }
    return {"seeds": list(seeds), "source_weight": w, "summary": summary}


def reliability(relevance, relevant, bins: int = 10) -> dict:
    """Reliability of the relevance as a probability that the class is in the text's label.

    Over all (text, class) pairs: equal-width bins of the relevance; per bin the mean relevance, the
    share of pairs whose class is in the label, and the count; ECE = sum over bins of
    (count / total) * |share - mean relevance|.
    """
    import numpy as np

    p = np.asarray(relevance, dtype=np.float64).ravel()
    y = np.asarray(relevant, dtype=bool).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        conf, freq = float(p[mask].mean()), float(y[mask].mean())
        ece += mask.sum() / len(p) * abs(freq - conf)
        rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "mean_relevance": conf,
                     "in_label": freq, "n": int(mask.sum())})
    return {"ece": float(ece), "bins": rows, "pairs": int(len(p))}


def reliability_figure(path: Path, setting: str, calibration: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = calibration["bins"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    ax.plot([b["mean_relevance"] for b in bins], [b["in_label"] for b in bins], marker="o", label=setting)
    for b in bins:
        ax.annotate(str(b["n"]), (b["mean_relevance"], b["in_label"]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("relevance (mean in bin)")
    ax.set_ylabel("share of (text, organ) pairs with the organ in the label")
    ax.set_title(f"Reliability on the grouped test split, {setting}\nECE {calibration['ece']:.3f}; "
                 f"{calibration['pairs']} pairs; counts per bin")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def method_name(setting_report: dict, method: str) -> str:
    """Display name of a method, marked "(shipped)" when it is the setting's relevance head."""
    shipped = " (shipped)" if method == setting_report.get("relevance_head", "soft") else ""
    return METHOD_NAMES[method] + shipped


def markdown(report: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}"

    lines = ["# MedSORA text models: evaluation", ""]
    lines.append(
        f"Dataset `{report['dataset']}` (sha256 `{report['dataset_sha256'][:12]}`), test split; encoder "
        f"`{report['encoder']}`. Rank-k: a correct organ (any of the test text's multi-organ label) among the k "
        "highest-scored classes; mAP: mean average precision over the multi-organ labels. Percent."
    )
    for part, title in PART_TITLES.items():
        if not any(part in res["ranking"] for res in report["settings"].values()):
            continue
        lines += ["", f"## {title}", "", "| setting | method | n | Rank-1 | Rank-2 | Rank-3 | mAP | source organ top-1 |",
                  "|---|---|---|---|---|---|---|---|"]
        for setting, res in report["settings"].items():
            for method in METHODS:
                r = res["ranking"].get(part, {}).get(method)
                if r is None:
                    continue
                lines.append(
                    f"| {setting} | {method_name(res, method)} | {r['n']} | {pct(r['rank1'])} | {pct(r['rank2'])} | "
                    f"{pct(r['rank3'])} | {pct(r['mAP'])} | {pct(r['source_top1'])} |"
                )
    lines += ["", "## Out-of-domain decision (held-out texts)", "",
              "| setting | threshold on p_in | calibration TPR | calibration FPR | held-out TPR | held-out FPR | held-out n (in / out) |",
              "|---|---|---|---|---|---|---|"]
    for setting, res in report["settings"].items():
        o = res["ood"]
        lines.append(
            f"| {setting} | {o['threshold']:.3f} | {pct(o['calibration']['tpr'])} | {pct(o['calibration']['fpr'])} | "
            f"{pct(o['heldout']['tpr'])} | {pct(o['heldout']['fpr'])} | {o['heldout']['n_in_domain']} / {o['heldout']['n_out_of_domain']} |"
        )
    lines += ["", "## Calibration of the relevance on the grouped test split", "",
              "Relevance read as the probability that the organ is in the text's multi-organ label, over all (text, class) pairs "
              "of the grouped test split (out-of-domain gate applied). ECE over 10 equal-width bins.", "",
              "| setting | parts | pairs | ECE | texts whose top relevance is exactly 1 |", "|---|---|---|---|---|"]
    for setting, res in report["settings"].items():
        c = res["calibration"]
        lines.append(f"| {setting} | {', '.join(c['parts'])} | {c['pairs']} | {c['ece']:.4f} | {pct(c['exact_one_share'])} % |")
    if report.get("seeds"):
        lines += ["", "## Heads retrained with several seeds (anchors fixed), test split: mean ± sd", "",
                  "Settings trained with the paper's recipe only; the product setting's seeds are in `text_comparison.md`.", "",
                  "| setting | method | seeds | Rank-1 | Rank-2 | Rank-3 | mAP |", "|---|---|---|---|---|---|---|"]
        for setting, study in report["seeds"].items():
            for method in ("soft", "anchor_soft", "smoothed", "hard"):
                m = study["summary"][method]
                cells = " | ".join(f"{100 * m[k]['mean']:.2f} ± {100 * m[k]['sd']:.2f}" for k in ("rank1", "rank2", "rank3", "mAP"))
                lines.append(f"| {setting} | {method_name(report['settings'][setting], method)} | {', '.join(map(str, study['seeds']))} | {cells} |")
    lat = report["laterality"]
    lines += ["", "## Laterality rule against the dataset's laterality field", "",
              f"{lat['n']} kidney and adrenal texts (the dataset records a side only for these): agreement {pct(lat['accuracy'])} %; per label (recall): "
              + ", ".join(f"{k} {pct(v)} %" for k, v in lat["recall"].items()) + "."]
    if report.get("correlation"):
        lines += ["", "## Mean off-diagonal organ-organ correlation of the outputs (test split)", "",
                  "| setting | hard | soft |", "|---|---|---|"]
        for setting, c in report["correlation"].items():
            lines.append(f"| {setting} | {c.get('hard', float('nan')):+.3f} | {c.get('soft', float('nan')):+.3f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch

    from MedSORALib.knowledge.symptom_texts import DATASET_PATH, load_dataset
    from MedSORALib.text.encoder import get_default_encoder
    from MedSORALib.text.laterality import detect_laterality
    from MedSORALib.text.ood import load_ood_texts
    from MedSORALib.text.reasoning import TextReasoner
    from MedSORALib.files import file_sha256, read_jsonl
    from medsora_training.text.fitting import ood_heldout_report, rows_for_setting

    torch.set_num_threads(max(1, args.threads))
    started = time.perf_counter()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    dataset_path = Path(args.dataset) if args.dataset else DATASET_PATH
    rows = load_dataset(path=dataset_path)
    test_rows = [r for r in rows if r.get("split") == "test"]
    queries = load_ood_texts("abdominal_queries", split="test")
    dev_rows = []
    if args.dev and Path(args.dev).is_file():
        dev_rows = [r for r in read_jsonl(args.dev) if r.get("abdominal")]
    encoder = get_default_encoder()
    report = {
        "dataset": dataset_path.name,
        "dataset_sha256": file_sha256(dataset_path),
        "encoder": encoder.model_id,
        "settings": {},
        "correlation": {},
    }
    non_abdominal_texts = [r["text"] for r in load_ood_texts("non_abdominal", split="test")]
    dev_path = Path(args.dev).resolve()
    shown = dev_path.relative_to(REPO) if dev_path.is_relative_to(REPO) else Path("Training/data") / dev_path.name
    report["dev"] = str(shown) if dev_rows else None
    for setting in args.settings:
        reasoner = TextReasoner.load(args.weights, setting=setting, encoder=encoder)
        parts = {"test": test_rows}
        product = reasoner.config.get("training", {}).get("config", {}).get("product") or {}
        if setting in product.get("settings", []):
            for name in product.get("extra_datasets", []):
                extra = read_jsonl(REPO / name if not Path(name).is_absolute() else name)
                parts["registers"] = parts.get("registers", []) + [r for r in extra if r.get("split") == "test"]
        parts["queries"] = queries
        if dev_rows:
            parts["dev: presentations"] = [r for r in dev_rows if r.get("register") != "requisition"]
            parts["dev: requisition"] = [r for r in dev_rows if r.get("register") == "requisition"]
        ranking, arrays = evaluate_setting(setting, reasoner, encoder, parts)
        in_rows, _ = rows_for_setting(test_rows, setting, multi_label=True)
        in_texts = [r["text"] for r in in_rows] + [q["text"] for q in queries]
        ood = {
            "threshold": reasoner.detector.threshold,
            "calibration": reasoner.detector.calibration,
            "heldout": ood_heldout_report(reasoner, reasoner.encode(in_texts), reasoner.encode(non_abdominal_texts),
                                          in_texts=in_texts, out_texts=non_abdominal_texts),
        }
        grouped = [arrays[p] for p in HELD_OUT_PARTS if p in arrays]
        relevance = np.concatenate([a["relevance"] for a in grouped])
        labels = np.concatenate([a["relevant"] for a in grouped])
        calibration = reliability(relevance, labels)
        calibration["exact_one_share"] = float((relevance.max(axis=1) >= 1.0 - 1e-9).mean())
        calibration["parts"] = [p for p in HELD_OUT_PARTS if p in arrays]
        if not args.no_figures:
            reliability_figure(out / f"reliability_{setting}.png", setting, calibration)
        report["settings"][setting] = {"ranking": ranking, "ood": ood, "calibration": calibration,
                                       "relevance_head": reasoner.relevance_head,
                                       "weights": str(Path(reasoner.folder).relative_to(REPO)) if Path(reasoner.folder).is_relative_to(REPO) else str(reasoner.folder)}
        if not args.no_figures:
            tsne_figure(out / f"tsne_anchors_{setting}.png", setting, reasoner, arrays["test"])
            report["correlation"][setting] = correlation_figure(
                out / f"correlation_hard_vs_soft_{setting}.png", setting, reasoner.classes, arrays["test"]["scores"]
            )
        if args.seeds and setting not in product.get("settings", []):
            # The product setting trains on more texts and inputs than this study retrains; its seeds are
            # in text_comparison.md (Training/compare_text_models.py).
            report.setdefault("seeds", {})[setting] = seed_study(setting, reasoner, encoder, rows, args.seeds)
        print(f"[{setting}] evaluated ({time.perf_counter() - started:.1f} s)")
    # The dataset records a side only for texts written for a paired organ (kidney, adrenal gland).
    paired = [r for r in rows if r.get("organ") in ("kidney", "adrenal_gland")]
    truth = [r.get("laterality") for r in paired]
    found = [detect_laterality(r["text"]) for r in paired]
    recall = {}
    for label in ("left", "right", None):
        idx = [i for i, t in enumerate(truth) if t == label]
        recall[str(label)] = float(np.mean([found[i] == label for i in idx])) if idx else None
    report["laterality"] = {
        "n": len(paired),
        "accuracy": float(np.mean([a == b for a, b in zip(truth, found)])) if paired else None,
        "recall": recall,
    }
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = markdown(report)
    atomic_write_text(out / "text_evaluation.md", text)
    atomic_write_text(out / "text_evaluation.json", json.dumps(report, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
