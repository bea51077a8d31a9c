"""The image model judged on real CTs it never saw: both leave-one-CT-out folds over the two labelled real CTs.

- fold 1: the shipped default model (trained with the bundled example CT, ``example_ct_sm``) on the DICOM series.
  Its alignment stage was trained on the train split of an earlier build of the symptom dataset
  (:data:`SHIPPED_TEXTS`), split per text, not per source passage: most texts of today's passage-grouped test
  split were among its training texts. The fold is therefore reported twice: on the whole test split
  (**leaky**: the counts are printed), and on the test texts the model never saw;
- fold 2: a model trained with ``Training/configs/loco_dicom.yaml`` (phantoms plus the DICOM series, today's
  train split) on the bundled example CT (trained here unless ``--run`` points at a finished run).

Each fold ranks the organ classes present by the text prior alone, fused with the image term at several
weights, and the image similarity alone (``Training/evaluate_fusion.py``). Rank-k and mAP in percent.
Writes ``leave_one_ct_out.md`` (the tables) and ``leave_one_ct_out.json`` into ``--tables`` (default: the
committed ``Training/results/``) and the run into ``--output``.

    python Training/leave_one_ct_out.py --output runs/loco
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from evaluate_fusion import evaluate

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "Testing" / "Data"

#: The symptom dataset the shipped alignment was trained on: the commit that holds it and its SHA-256
#: (``texts_sha256`` in MedSORALib/resources/weights/image/config.json).
SHIPPED_TEXTS = {"commit": "17cb446", "path": "MedSORALib/resources/dataset/symptom_texts.jsonl",
                 "sha256": "e7bcd9ff103ab338794baf0ab74d850c9b9a5db2597df01e8677fd0ffb287b3d"}


def shipped_training_texts() -> set[str]:
    """The texts of the train split the shipped alignment was trained on (from git; SHA-256 checked)."""
    weights_config = json.loads((REPO / "MedSORALib/resources/weights/image/config.json").read_text())
    recorded = json.dumps(weights_config)
    if SHIPPED_TEXTS["sha256"] not in recorded:
        raise SystemExit("the shipped image weights do not record the expected symptom dataset; update SHIPPED_TEXTS")
    blob = subprocess.run(["git", "show", f"{SHIPPED_TEXTS['commit']}:{SHIPPED_TEXTS['path']}"], cwd=REPO,
                          capture_output=True, check=True).stdout
    if hashlib.sha256(blob).hexdigest() != SHIPPED_TEXTS["sha256"]:
        raise SystemExit(f"{SHIPPED_TEXTS['commit']}:{SHIPPED_TEXTS['path']} is not the dataset of the weights")
    rows = [json.loads(line) for line in blob.decode("utf-8").splitlines() if line.strip()]
    return {r["text"] for r in rows if r.get("split") == "train"}


def portable(value, run: Path):
    """``value`` with this machine's paths made relative to the repository (the run folder named ``RUN``)."""
    if isinstance(value, dict):
        return {k: portable(v, run) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, run) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        path = Path(value)
        for base, name in ((run.resolve(), "RUN"), (REPO, "")):
            try:
                rest = path.resolve().relative_to(base)
            except ValueError:
                continue
            return str(Path(name) / rest) if name else str(rest)
    return value


def table(out: dict) -> str:
    ident = out["organ_identification"]
    n = out["results"]["text prior alone (w=0)"]["n"]
    lines = [f"{Path(out['volume']).name}: {len(out['classes'])} organ classes, {n} test symptoms with a labelled "
             f"organ present; organ identification {ident['correct']} / {ident['n']}", "",
             "| ranking | Rank-1 % | Rank-2 % | Rank-3 % | mAP % |", "|---|---|---|---|---|"]
    for name, m in out["results"].items():
        lines.append(f"| {name} | {100 * m['rank1']:.2f} | {100 * m['rank2']:.2f} | {100 * m['rank3']:.2f} | "
                     f"{100 * m['mAP']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/loco", help="folder for the fold-2 run")
    parser.add_argument("--run", help="a finished run of Training/configs/loco_dicom.yaml (skips training)")
    parser.add_argument("--tables", default=str(REPO / "Training" / "results"),
                        help="folder for leave_one_ct_out.md and .json (default: Training/results)")
    args = parser.parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    run = Path(args.run) if args.run else output / "loco_dicom"
    if not args.run:
        subprocess.run([sys.executable, str(REPO / "Training" / "train.py"), "--config",
                        str(REPO / "Training" / "configs" / "loco_dicom.yaml"), "--output", str(run)], check=True)
    seen = shipped_training_texts()
    dicom = (DATA / "example_ct_dicom", DATA / "example_ct_dicom_seg.nii.gz")
    folds = {
        "shipped model -> DICOM series, whole test split (LEAKY)": evaluate(None, *dicom),
        "shipped model -> DICOM series, test texts it never saw": evaluate(None, *dicom, exclude_texts=seen),
        "loco_dicom model -> example_ct_sm": evaluate(run / "model", DATA / "example_ct_sm.nii.gz",
                                                      DATA / "example_ct_sm_seg.nii.gz"),
    }
    leaky = folds["shipped model -> DICOM series, test texts it never saw"]
    total = folds["shipped model -> DICOM series, whole test split (LEAKY)"]["n_texts"]
    lines = ["# Leave-one-CT-out evaluation of the image model", "",
             "Written by `python Training/leave_one_ct_out.py` (do not edit by hand). Rank-k and mAP in percent.", "",
             f"**Fold 1 is leaky on the whole test split**: the shipped alignment was trained on the train split of "
             f"the symptom dataset at commit {SHIPPED_TEXTS['commit']} (split per text), which holds "
             f"{leaky['n_excluded']} of today's {total} test texts (passage-grouped split). Its second table keeps "
             f"only the {total - leaky['n_excluded']} test texts the model never saw."]
    for name, out in folds.items():
        lines += ["", f"## {name}", "", table(out)]
        print(f"\n### {name}\n\n{table(out)}")
    tables = Path(args.tables)
    tables.mkdir(parents=True, exist_ok=True)
    (tables / "leave_one_ct_out.md").write_text("\n".join(lines) + "\n")
    (tables / "leave_one_ct_out.json").write_text(json.dumps(portable(folds, run), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
