"""Train MedSORA's text models (organ anchors, soft-label MLP, hard-label MLP, out-of-domain detector).

Reads the shipped symptom dataset (train split for the models, validation split plus the
abdominal/non-abdominal calibration texts of ``MedSORALib/resources/ood`` for the out-of-domain
detector) and writes one folder per class setting, ``<output>/paper7`` and ``<output>/full11``,
each with ``config.json`` and ``model.safetensors``. The default output is the folder the package
loads by default, ``MedSORALib/resources/weights/text``.

Example:
    python Training/train_text.py
    python Training/train_text.py --config Training/configs/text.yaml --output /tmp/text-weights
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from MedSORALib.files import atomic_write_text, resource_path

from . import REPO

DEFAULT_DATASET = resource_path("dataset", "symptom_texts.jsonl")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(REPO / "Training" / "configs" / "text.yaml"), help="YAML configuration")
    parser.add_argument("--output", default=None, help="weights folder (default: the package's shipped weights)")
    parser.add_argument("--dataset", default=None, help=f"dataset JSONL with a split field (default: {DEFAULT_DATASET})")
    parser.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="re-split the dataset 70/10/20 by source passage with this seed (MedSORALib.knowledge.symptom_texts."
        "split_by_passage); needed for a dataset without a split field",
    )
    parser.add_argument("--settings", nargs="+", choices=["paper7", "full11"], default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these small models)")
    return parser.parse_args(argv)


def load_rows(args) -> tuple[list[dict], dict]:
    from MedSORALib.files import file_sha256, read_jsonl
    from MedSORALib.knowledge.symptom_texts import DEFAULT_RATIOS, split_by_passage

    path = Path(args.dataset) if args.dataset else DEFAULT_DATASET
    if not path.is_file():
        raise SystemExit(f"train_text: dataset {path} not found (build it with: medsora dataset build)")
    rows = read_jsonl(path)
    if args.split_seed is not None:
        rows = [dict(r) for r in rows]
        split_by_passage(rows, DEFAULT_RATIOS, args.split_seed)
    elif any("split" not in r for r in rows):
        raise SystemExit(f"train_text: {path} has rows without a split field; pass --split-seed N")
    info = {"dataset": path.name, "dataset_sha256": file_sha256(path), "split_seed": args.split_seed}
    return rows, info


def load_extra(paths, root: Path = REPO) -> tuple[list[dict], list[dict]]:
    """Rows of the product's extra datasets (each row needs a split) and their file records."""
    from MedSORALib.files import file_sha256, read_jsonl

    rows, info = [], []
    for name in paths:
        path = Path(name) if Path(name).is_absolute() else root / name
        if not path.is_file():
            raise SystemExit(f"train_text: extra dataset {path} not found (build it with: python Training/build_register_texts.py)")
        extra = read_jsonl(path)
        if any("split" not in r for r in extra):
            raise SystemExit(f"train_text: {path} has rows without a split field")
        rows += extra
        info.append({"dataset": path.name, "sha256": file_sha256(path), "rows": len(extra)})
    return rows, info


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch
    import yaml

    from MedSORALib.organs import CLASS_SETTINGS
    from MedSORALib.text.abbreviations import expand
    from MedSORALib.text.encoder import get_default_encoder
    from MedSORALib.text.knowledge_channel import KnowledgeChannel, kb_terms
    from medsora_training.text.metrics import label_matrix
    from MedSORALib.text.ood import load_ood_texts
    from MedSORALib.text.reasoning import default_weights_dir
    from medsora_training.text.fitting import TextTrainingConfig, fit_reasoner, ood_heldout_report, rows_for_setting

    torch.set_num_threads(max(1, args.threads))
    started = time.perf_counter()
    with open(args.config, encoding="utf-8") as handle:
        config = TextTrainingConfig.from_dict(yaml.safe_load(handle))
    settings = tuple(args.settings or config.settings)
    output = Path(args.output) if args.output else default_weights_dir()
    rows, dataset_info = load_rows(args)
    by_split = {s: [r for r in rows if r.get("split") == s] for s in ("train", "val", "test")}
    print(f"dataset {dataset_info['dataset']}: " + ", ".join(f"{s} {len(v)}" for s, v in by_split.items()))

    encoder = get_default_encoder()
    queries = load_ood_texts("abdominal_queries")
    non_abdominal = load_ood_texts("non_abdominal")
    calib_queries = [q for q in queries if q["split"] == "calibration"]
    heldout_queries = [q for q in queries if q["split"] == "test"]

    summary = {}
    for setting in settings:
        options = config.options_for(setting)
        classes = CLASS_SETTINGS[setting]
        extra, extra_info = load_extra(options.extra_datasets) if options.extra_datasets else ([], [])
        split_rows = {s: by_split[s] + [r for r in extra if r["split"] == s] for s in by_split}

        def texts_of(items):
            return [expand(r["text"]) if options.expand_abbreviations else r["text"] for r in items]

        def embed(items):
            if not items:
                return np.zeros((0, encoder.dim), np.float32)
            return encoder.encode(texts_of(items))

        t0 = time.perf_counter()
        knowledge = None
        if options.knowledge:
            terms = kb_terms(classes, include_corpus=options.knowledge_corpus)
            knowledge = KnowledgeChannel(terms, classes, encoder.encode([t["text"] for t in terms]))
        everything = [r for part in split_rows.values() for r in part] + queries + non_abdominal
        embed(everything)  # fills the cache once; later calls are lookups
        print(f"[{setting}] encoded {len(everything)} texts"
              + (f" and {len(knowledge.terms)} knowledge terms" if knowledge else "")
              + f" with {encoder.model_id} in {time.perf_counter() - t0:.1f} s", flush=True)

        train_rows, train_labels = rows_for_setting(split_rows["train"], setting)
        val_rows, _ = rows_for_setting(split_rows["val"], setting)
        val_multi, val_relevant = rows_for_setting(split_rows["val"], setting, multi_label=True)
        test_rows, _ = rows_for_setting(split_rows["test"], setting, multi_label=True)
        secondary = label_matrix([(r.get("organs") or [])[1:] for r in train_rows], classes)
        ood_out = [r for r in non_abdominal if r["split"] == "calibration"]
        reasoner = fit_reasoner(
            setting,
            embed(train_rows),
            train_labels,
            {"model_id": encoder.model_id, "dim": encoder.dim},
            config,
            ood_in_embeddings=np.concatenate([embed(val_rows), embed(calib_queries)]),
            ood_out_embeddings=embed(ood_out),
            dataset_info={**dataset_info, "n_val": len(val_rows), "extra_datasets": extra_info},
            train_texts=[r["text"] for r in train_rows],
            train_exclude=[r.get("chunk_ids") or [] for r in train_rows],
            train_secondary=secondary,
            knowledge=knowledge,
            ood_in_texts=[r["text"] for r in val_rows + calib_queries],
            ood_out_texts=[r["text"] for r in ood_out],
            calibration=(embed(val_multi), [r["text"] for r in val_multi], val_relevant),
        )
        heldout_out = [r for r in non_abdominal if r["split"] == "test"]
        heldout = ood_heldout_report(
            reasoner,
            np.concatenate([embed(test_rows), embed(heldout_queries)]),
            embed(heldout_out),
            in_texts=[r["text"] for r in test_rows + heldout_queries],
            out_texts=[r["text"] for r in heldout_out],
        )
        reasoner.config["ood"]["heldout"] = heldout
        print(
            f"[{setting}] out-of-domain held-out: TPR {heldout['tpr']:.3f} FPR {heldout['fpr']:.3f} "
            f"({heldout['n_in_domain']} abdominal, {heldout['n_out_of_domain']} non-abdominal)"
        )
        folder = reasoner.save(output / setting)
        stale = folder / "knowledge_terms.json"
        if knowledge is None and stale.exists():
            stale.unlink()
        summary[setting] = {"folder": str(folder.relative_to(REPO)) if folder.is_relative_to(REPO) else str(folder),
                            "ood": reasoner.config["ood"], "relevance": reasoner.config["relevance"],
                            "timings_s": reasoner.config["training"]["timings_s"]}
        print(f"[{setting}] wrote {folder}")
    total = time.perf_counter() - started
    print(f"total training time {total:.1f} s")
    summary["total_s"] = round(total, 1)
    previous = output / "training_summary.json"
    if previous.is_file():  # keep the entries of settings not retrained in this run
        try:
            summary = {**{k: v for k, v in json.loads(previous.read_text()).items() if k in CLASS_SETTINGS}, **summary}
        except (OSError, json.JSONDecodeError):
            pass
    atomic_write_text(previous, json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
