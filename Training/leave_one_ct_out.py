"""The image model judged on real CTs it never saw: both leave-one-CT-out folds over the two labelled real CTs.

- fold 1: the shipped default model (trained with the bundled example CT, ``example_ct_sm``) on the DICOM series;
- fold 2: a model trained with ``Training/configs/loco_dicom.yaml`` (phantoms plus the DICOM series) on the
  bundled example CT (trained here unless ``--run`` points at a finished run; a few minutes on a CPU).

Each fold prints fused relevance versus the text prior alone (``Training/evaluate_fusion.py``) on the test split.

    python Training/leave_one_ct_out.py --output runs/loco
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from evaluate_fusion import evaluate

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "Testing" / "Data"


def table(out: dict) -> str:
    ident = out["organ_identification"]
    lines = [f"{Path(out['volume']).name}: {len(out['classes'])} organ classes, {out['results']['text prior alone (w=0)']['n']}"
             f" test symptoms with a labelled organ present; organ identification {ident['correct']} / {ident['n']}",
             "", "| ranking | Rank-1 | Rank-2 | Rank-3 | mAP |", "|---|---|---|---|---|"]
    for name, m in out["results"].items():
        lines.append(f"| {name} | {m['rank1']:.2f} | {m['rank2']:.2f} | {m['rank3']:.2f} | {m['mAP']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/loco", help="folder for the fold-2 run and the results")
    parser.add_argument("--run", help="a finished run of Training/configs/loco_dicom.yaml (skips training)")
    args = parser.parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    run = Path(args.run) if args.run else output / "loco_dicom"
    if not args.run:
        subprocess.run([sys.executable, str(REPO / "Training" / "train.py"), "--config",
                        str(REPO / "Training" / "configs" / "loco_dicom.yaml"), "--output", str(run)], check=True)
    folds = {
        "shipped model -> DICOM series": evaluate(None, DATA / "example_ct_dicom", DATA / "example_ct_dicom_seg.nii.gz"),
        "loco_dicom model -> example_ct_sm": evaluate(run / "model", DATA / "example_ct_sm.nii.gz",
                                                      DATA / "example_ct_sm_seg.nii.gz"),
    }
    for name, out in folds.items():
        print(f"\n### {name}\n\n{table(out)}")
    (output / "leave_one_ct_out.json").write_text(json.dumps(folds, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
