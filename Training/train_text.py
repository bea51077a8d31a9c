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
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from MedSORALib.files import atomic_write_text, resource_path  # noqa: E402  (after the path set-up)

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
        help="make a seeded 70/10/20 split stratified by organ for a dataset without a split field",
    )
    parser.add_argument("--settings", nargs="+", choices=["paper7", "full11"], default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest for these small models)")
    return parser.parse_args(argv)


def load_rows(args) -> tuple[list[dict], dict]:
    from MedSORALib.files import file_sha256, read_jsonl
    from MedSORALib.text.training import seeded_split

    path = Path(args.dataset) if args.dataset else DEFAULT_DATASET
    if not path.is_file():
        raise SystemExit(f"train_text: dataset {path} not found (build it with: medsora dataset build)")
    rows = read_jsonl(path)
    if args.split_seed is not None:
        rows = seeded_split(rows, seed=args.split_seed)
    elif any("split" not in r for r in rows):
        raise SystemExit(f"train_text: {path} has rows without a split field; pass --split-seed N")
    info = {"dataset": path.name, "dataset_sha256": file_sha256(path), "split_seed": args.split_seed}
    return rows, info


def main(argv=None) -> int:
    args = parse_args(argv)
    import numpy as np
    import torch
    import yaml

    from MedSORALib.text.encoder import get_default_encoder
    from MedSORALib.text.ood import load_ood_texts
    from MedSORALib.text.reasoning import default_weights_dir
    from MedSORALib.text.training import TextTrainingConfig, fit_reasoner, ood_heldout_report, rows_for_setting

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
    t0 = time.perf_counter()
    queries = load_ood_texts("abdominal_queries")
    non_abdominal = load_ood_texts("non_abdominal")
    all_texts = [r["text"] for r in rows] + [r["text"] for r in queries] + [r["text"] for r in non_abdominal]
    encoder.encode(all_texts)  # fills the cache once; later calls are lookups
    print(f"encoded {len(all_texts)} texts with {encoder.model_id} in {time.perf_counter() - t0:.1f} s")

    def embed(items):
        return encoder.encode([r["text"] for r in items]) if items else np.zeros((0, encoder.dim), np.float32)

    summary = {}
    for setting in settings:
        train_rows, train_labels = rows_for_setting(by_split["train"], setting)
        val_rows, _ = rows_for_setting(by_split["val"], setting)
        test_rows, _ = rows_for_setting(by_split["test"], setting, multi_label=True)
        calib_queries = [q for q in queries if q["split"] == "calibration"]
        heldout_queries = [q for q in queries if q["split"] == "test"]
        reasoner = fit_reasoner(
            setting,
            embed(train_rows),
            train_labels,
            {"model_id": encoder.model_id, "dim": encoder.dim},
            config,
            ood_in_embeddings=np.concatenate([embed(val_rows), embed(calib_queries)]),
            ood_out_embeddings=embed([r for r in non_abdominal if r["split"] == "calibration"]),
            dataset_info={**dataset_info, "n_val": len(val_rows)},
        )
        heldout = ood_heldout_report(
            reasoner,
            np.concatenate([embed(test_rows), embed(heldout_queries)]),
            embed([r for r in non_abdominal if r["split"] == "test"]),
        )
        reasoner.config["ood"]["heldout"] = heldout
        print(
            f"[{setting}] out-of-domain held-out: TPR {heldout['tpr']:.3f} FPR {heldout['fpr']:.3f} "
            f"({heldout['n_in_domain']} abdominal, {heldout['n_out_of_domain']} non-abdominal)"
        )
        folder = reasoner.save(output / setting)
        summary[setting] = {"folder": str(folder), "ood": reasoner.config["ood"], "timings_s": reasoner.config["training"]["timings_s"]}
        print(f"[{setting}] wrote {folder}")
    total = time.perf_counter() - started
    print(f"total training time {total:.1f} s")
    summary["total_s"] = round(total, 1)
    atomic_write_text(output / "training_summary.json", json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
