"""The encoder ablation of the paper (2D only / 3D only / 2D + 3D concatenated / 2D-3D cross-attention) in one command.

Trains one model per fusion mode with ``Training/train.py`` and writes ``OUTPUT/ablation.md`` (a Markdown
table of text-to-organ Rank-1/2/3 and mAP on the test split, plus organ identification accuracy) and
``OUTPUT/ablation.json``. Each mode's run folder is ``OUTPUT/<mode>/``; organ crops are cut once and shared.

Examples:
    python Training/ablation.py --output runs/ablation                       # CPU-sized (configs/ablation_*.yaml)
    python Training/ablation.py --base Training/configs/paper_gpu.yaml --output runs/ablation --device cuda
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

MODES = ("2d", "3d", "concat", "xattn")
LABELS = {"2d": "2D only", "3d": "3D only", "concat": "2D + 3D concatenated", "xattn": "2D-3D cross-attention"}


def markdown_table(results: dict[str, dict]) -> str:
    """Rows in the paper's order for the modes present in ``results`` (mode -> eval dict).

    The eval dicts hold fractions in [0, 1] (:mod:`medsora_training.text.metrics`); the table shows percent, as the paper.
    """
    lines = ["| setting | Rank-1 (%) | Rank-2 (%) | Rank-3 (%) | mAP (%) | organ id. acc. (%) |",
             "|---|---|---|---|---|---|"]
    for mode in MODES:
        if mode not in results:
            continue
        r = results[mode]
        cells = [f"{100 * r[k]:.2f}" for k in ("rank1", "rank2", "rank3", "mAP")]
        acc = r.get("organ_accuracy")
        cells.append("" if acc is None else f"{100 * acc:.2f}")
        lines.append(f"| {LABELS[mode]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="Training/ablation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", required=True, help="folder for the runs, ablation.md and ablation.json")
    parser.add_argument("--base", default=None,
                        help="one configuration to run in every mode (default: Training/configs/ablation_<mode>.yaml)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    from MedSORALib.errors import MedSORAError
    from MedSORALib.files import atomic_write_text
    from medsora_training.train import load_config, train

    out = Path(args.output)
    results = {}
    try:
        for mode in args.modes:
            cfg_path = Path(args.base) if args.base else REPO / "Training" / "configs" / f"ablation_{mode}.yaml"
            cfg = load_config(cfg_path)
            cfg["model"]["mode"] = mode
            cfg["data"]["cache_dir"] = str(out / "crop_cache")
            print(f"== {LABELS[mode]} ({cfg_path.name})", flush=True)
            metrics = train(cfg, out / mode, device=args.device, show_progress=not args.no_progress)
            results[mode] = {k: metrics["eval"].get(k) for k in ("rank1", "rank2", "rank3", "mAP", "organ_accuracy",
                                                                  "n_texts")}
            results[mode]["final_loss"] = metrics["history"][-1]["loss"] if metrics["history"] else None
            atomic_write_text(out / "ablation.json", json.dumps(results, indent=2))
    except MedSORAError as exc:
        print(f"ablation.py: error: {exc}", file=sys.stderr)
        return 2
    table = markdown_table(results)
    atomic_write_text(out / "ablation.md", table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
