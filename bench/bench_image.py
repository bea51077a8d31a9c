#!/usr/bin/env python
"""Speed of the image side on the bundled CT (medians over repeats), against a floor measured in the same run.

    python bench/bench_image.py [--repeats 7] [--output FILE.json]

Cases:
  reference         a fixed numpy workload (sorting 2 M floats): this machine's speed, right now
  crop_all_organs   organ_crops of the 12 organs of the bundled CT (default CropConfig)
  encode_all_organs the shipped image model encoding those 12 crops

Each case is reported as a median in seconds and as a ratio to ``reference``, so runs on a busy
or a slow machine stay comparable. These timings used to be bounds inside the test suite
(``test_image.py``), where a loaded machine made them fail at random.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _median_seconds(work, repeats: int) -> float:
    work()  # warm-up (imports, allocator, MONAI transforms)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from MedSORALib.image.crops import CropConfig, organ_crops
    from MedSORALib.image.model import ImageTextModel
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    torch.set_num_threads(1)
    volume = read_volume(REPO / "Testing" / "Data" / "example_ct_sm.nii.gz")
    masks = read_organ_masks(REPO / "Testing" / "Data" / "example_ct_sm_seg.nii.gz", volume, "totalsegmentator")
    model = ImageTextModel.load()
    crops = organ_crops(volume, masks, model.crop_config)
    data = np.random.default_rng(0).random(2_000_000)

    results = {"reference": _median_seconds(lambda: np.sort(data), args.repeats)}
    results["crop_all_organs"] = _median_seconds(lambda: organ_crops(volume, masks, CropConfig()), args.repeats)
    with torch.no_grad():
        results["encode_all_organs"] = _median_seconds(lambda: model.encode_organs(crops), args.repeats)
    report = {name: {"median_s": round(seconds, 4), "ratio_to_reference": round(seconds / results["reference"], 2)}
              for name, seconds in results.items()}
    report["_settings"] = {"repeats": args.repeats, "organs": len(masks), "torch_threads": 1}
    for name, row in report.items():
        if not name.startswith("_"):
            print(f"{name:<20} {row['median_s']:>8.4f} s   {row['ratio_to_reference']:>7.2f} x reference")
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
