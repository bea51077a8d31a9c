"""Evaluate MedSORA's text models on the test split of the symptom dataset.

For each class setting (the paper's 7 classes, our 11) and each method:

* soft  - the shipped model: relevance MLP on soft labels mixing the source organ and the
          learnable organ anchors, w * one-hot + (1 - w) * (cos(p_i, f) + 1) / 2;
* anchor_soft - the same MLP on the anchors' soft labels alone (the paper's recipe read literally);
* smoothed - the same MLP on w * one-hot + (1 - w) * a constant: label smoothing without the
          anchors (control: how much of the gain is the anchors' structure);
* hard  - the same MLP trained on one-hot organ labels (ablation);
* anchors - the positive anchors alone, cos(p_i, f) (the soft labels themselves);
* zero-shot - cosine between the symptom and prompts per organ with the same encoder,

it reports Rank-1/2/3 accuracy (a correct organ of the test text's multi-organ label among the
top k) and mAP over the multi-organ labels, on the dataset's test split and on the held-out
short abdominal queries. It also reports the out-of-domain decision on held-out texts, the
laterality rule against the dataset's laterality field, and draws the paper's figures:
t-SNE of test embeddings with the positive anchors (Fig. 5) and organ-organ correlation of the
outputs, hard vs soft (Fig. 6).

Example:
    python Training/evaluate_text.py --output results/text
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from MedSORALib.files import atomic_write_text  # noqa: E402  (after the path set-up)

METHODS = ("soft", "anchor_soft", "smoothed", "hard", "anchors", "zero-shot")
METHOD_NAMES = {
    "soft": "soft labels, source + anchors (shipped)",
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
    parser.add_argument("--no-figures", action="store_true", help="skip the t-SNE and correlation figures")
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


def evaluate_setting(setting, reasoner, encoder, test_rows, query_rows):
    import numpy as np

    from MedSORALib.text.metrics import ranking_report
    from MedSORALib.text.training import rows_for_setting
    from MedSORALib.text.zero_shot import zero_shot_class_vectors, zero_shot_scores

    classes = reasoner.classes
    prompts = zero_shot_class_vectors(encoder, classes)
    results = {}
    arrays = {}
    for name, rows in (("test", test_rows), ("queries", query_rows)):
        kept, relevant = rows_for_setting(rows, setting, multi_label=True)
        emb = encoder.encode([r["text"] for r in kept])
        raw = reasoner.raw_scores(emb)
        scores = {"soft": raw["soft"], "anchors": raw["anchor_cos"], "zero-shot": zero_shot_scores(emb, prompts)}
        for ablation in ("hard", "anchor_soft", "smoothed"):
            if ablation in raw:
                scores[ablation] = raw[ablation]
        results[name] = {m: ranking_report(scores[m], relevant) for m in METHODS if m in scores}
        # Accuracy of the single source organ at rank 1 (train-style label), for reference.
        source = np.array([classes.index(r.get("organ", r["organs"][0])) if r.get("organ", r["organs"][0]) in classes else -1 for r in kept])
        ok = source >= 0
        for m in results[name]:
            results[name][m]["source_top1"] = float((scores[m][ok].argmax(1) == source[ok]).mean()) if ok.any() else None
        arrays[name] = {"embeddings": emb, "relevant": relevant, "scores": scores, "rows": kept}
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

    from MedSORALib.text.metrics import ranking_report
    from MedSORALib.text.mlp import MLPTrainingConfig, train_mlp
    from MedSORALib.text.training import rows_for_setting, soft_targets

    training = reasoner.config["training"]["config"]
    w = float(training.get("source_weight", 0.5))
    train_rows, labels = rows_for_setting([r for r in rows if r.get("split") == "train"], setting)
    test_rows, relevant = rows_for_setting([r for r in rows if r.get("split") == "test"], setting, multi_label=True)
    x_train = encoder.encode([r["text"] for r in train_rows])
    x_test = torch.as_tensor(encoder.encode([r["text"] for r in test_rows]))
    with torch.no_grad():
        anchor_soft = reasoner.anchors.soft_labels(torch.as_tensor(x_train)).numpy()
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
            config = MLPTrainingConfig(**{**training["mlp"], "seed": seed})
            head, _ = train_mlp(x_train, target, config)
            runs[name].append(ranking_report(head.predict(x_test).numpy(), relevant))
    summary = {}
    for name, reports in runs.items():
        summary[name] = {
            k: {"mean": float(np.mean([r[k] for r in reports])), "sd": float(np.std([r[k] for r in reports]))}
            for k in ("rank1", "rank2", "rank3", "map")
        }
    return {"seeds": list(seeds), "source_weight": w, "summary": summary}


def markdown(report: dict) -> str:
    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}"

    lines = ["# MedSORA text models: evaluation", ""]
    lines.append(
        f"Dataset `{report['dataset']}` (sha256 `{report['dataset_sha256'][:12]}`), test split; encoder "
        f"`{report['encoder']}`. Rank-k: a correct organ (any of the test text's multi-organ label) among the k "
        "highest-scored classes; mAP: mean average precision over the multi-organ labels. Percent."
    )
    for part, title in (("test", "Test split (multi-organ labels)"), ("queries", "Held-out short abdominal queries")):
        lines += ["", f"## {title}", "", "| setting | method | n | Rank-1 | Rank-2 | Rank-3 | mAP | source organ top-1 |",
                  "|---|---|---|---|---|---|---|---|"]
        for setting, res in report["settings"].items():
            for method in METHODS:
                r = res["ranking"][part].get(method)
                if r is None:
                    continue
                lines.append(
                    f"| {setting} | {METHOD_NAMES[method]} | {r['n']} | {pct(r['rank1'])} | {pct(r['rank2'])} | "
                    f"{pct(r['rank3'])} | {pct(r['map'])} | {pct(r['source_top1'])} |"
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
    if report.get("seeds"):
        lines += ["", "## Heads retrained with several seeds (anchors fixed), test split: mean ± sd", "",
                  "| setting | method | seeds | Rank-1 | Rank-2 | Rank-3 | mAP |", "|---|---|---|---|---|---|---|"]
        for setting, study in report["seeds"].items():
            for method in ("soft", "anchor_soft", "smoothed", "hard"):
                m = study["summary"][method]
                cells = " | ".join(f"{100 * m[k]['mean']:.2f} ± {100 * m[k]['sd']:.2f}" for k in ("rank1", "rank2", "rank3", "map"))
                lines.append(f"| {setting} | {METHOD_NAMES[method]} | {', '.join(map(str, study['seeds']))} | {cells} |")
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

    from MedSORALib.knowledge.dataset import DATASET_PATH, load_dataset
    from MedSORALib.text.encoder import get_default_encoder
    from MedSORALib.text.laterality import detect_laterality
    from MedSORALib.text.ood import load_ood_texts
    from MedSORALib.text.reasoning import TextReasoner
    from MedSORALib.files import file_sha256
    from MedSORALib.text.training import ood_heldout_report, rows_for_setting

    torch.set_num_threads(max(1, args.threads))
    started = time.perf_counter()
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    dataset_path = Path(args.dataset) if args.dataset else DATASET_PATH
    rows = load_dataset(path=dataset_path)
    test_rows = [r for r in rows if r.get("split") == "test"]
    queries = load_ood_texts("abdominal_queries", split="test")
    encoder = get_default_encoder()
    report = {
        "dataset": dataset_path.name,
        "dataset_sha256": file_sha256(dataset_path),
        "encoder": encoder.model_id,
        "settings": {},
        "correlation": {},
    }
    non_abdominal_test = encoder.encode([r["text"] for r in load_ood_texts("non_abdominal", split="test")])
    for setting in args.settings:
        reasoner = TextReasoner.load(args.weights, setting=setting, encoder=encoder)
        ranking, arrays = evaluate_setting(setting, reasoner, encoder, test_rows, queries)
        in_rows, _ = rows_for_setting(test_rows, setting, multi_label=True)
        in_emb = np.concatenate([encoder.encode([r["text"] for r in in_rows]), encoder.encode([q["text"] for q in queries])])
        ood = {
            "threshold": reasoner.detector.threshold,
            "calibration": reasoner.detector.calibration,
            "heldout": ood_heldout_report(reasoner, in_emb, non_abdominal_test),
        }
        report["settings"][setting] = {"ranking": ranking, "ood": ood, "weights": str(reasoner.folder)}
        if not args.no_figures:
            tsne_figure(out / f"tsne_anchors_{setting}.png", setting, reasoner, arrays["test"])
            report["correlation"][setting] = correlation_figure(
                out / f"correlation_hard_vs_soft_{setting}.png", setting, reasoner.classes, arrays["test"]["scores"]
            )
        if args.seeds:
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
