#!/usr/bin/env python
"""Write the organ measurements of fixed CTs to one JSON file, to compare two versions of the code.

    python bench/dump_measurements.py OUT.json [--dicom DIR --dicom-seg LABELMAP]
    git stash; python bench/dump_measurements.py before.json; git stash pop
    python bench/dump_measurements.py after.json; cmp before.json after.json

The CTs: the bundled example CT with its label map, two phantoms (160 x 160 x 120, anisotropic voxels) and,
when given, a DICOM series with its label map (e.g. the shared example_ct_dicom and example_ct_dicom_seg.nii.gz).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MedSORALib import organs  # noqa: E402
from MedSORALib.cases import load_case  # noqa: E402
from MedSORALib.image.phantom import make_phantom  # noqa: E402
from MedSORALib.organ_measures import measure_organs  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path)
    parser.add_argument("--dicom", type=Path, help="a DICOM series folder")
    parser.add_argument("--dicom-seg", type=Path, help="its TotalSegmentator label map")
    args = parser.parse_args(argv)
    cases = {"example": (REPO / "Testing" / "Data" / "example_ct_sm.nii.gz",
                         REPO / "Testing" / "Data" / "example_ct_sm_seg.nii.gz")}
    if args.dicom:
        cases["dicom"] = (args.dicom, args.dicom_seg)
    out = {}
    for name, (ct, seg) in cases.items():
        case = load_case(ct, seg, label_scheme="totalsegmentator", log=lambda *a: None)
        start = time.perf_counter()
        out[name] = measure_organs(case.volume, case.masks)
        print(f"{name}: {len(out[name])} organs measured in {time.perf_counter() - start:.2f} s")
    for seed in (0, 1):
        volume, labels = make_phantom(seed, shape=(160, 160, 120), spacing=(1.2, 1.4, 2.5))[:2]
        masks = {k: labels == i + 1 for i, k in enumerate(organs.STRUCTURES) if np.any(labels == i + 1)}
        out[f"phantom{seed}"] = measure_organs(volume, masks)
    args.output.write_text(json.dumps(out, indent=1, sort_keys=True, default=str) + "\n")
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
