#!/usr/bin/env python
"""Throughput of ``medsora batch`` on 40 synthetic cases: in this process, and on 1 and 2 Dask workers.

    python bench/bench_batch.py [--cases 40] [--repeats 3] [--output bench/results_batch.json]

Each case is its own phantom CT (``make_phantom``, 128 x 112 x 72 voxels of 3 mm,
TotalSegmentator labels) with one symptom, so the manifest has 40 rows over 40
CTs (40 Dask tasks). Every run is a fresh ``python -m MedSORALib batch ... --force``
process with the default options (knowledge passages on), timed from start to
exit, so model loading and, on Dask, the cluster's start and stop are included:

  in_process   --workers 0: one process, the single-process path
  workers_1    --workers 1: a local cluster of one worker process
  workers_2    --workers 2: two worker processes (this machine has 2 cores)

Reported per configuration: the median wall time over the repeats, rows per
minute (cases / wall time), the median of the rows' own ``elapsed_s`` (read,
encode, score, write on the worker), and the per-row overhead of a Dask run
against the in-process run: (wall time - in-process wall time) / cases.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYMPTOMS = [
    "painless jaundice with pale stools and weight loss",
    "burning pain in the upper belly after meals",
    "blood in my urine and pain in my left flank",
    "vomiting blood after heavy drinking",
    "tearing pain going through to the back with a pulsating mass",
    "swollen legs and a distended abdomen with visible veins",
    "episodes of pounding headache, sweating and palpitations",
    "pain under the right ribs after fatty meals",
    "left upper quadrant pain after minor trauma with dizziness",
    "difficulty swallowing solids with weight loss",
]
CONFIGS = {"in_process": ["--workers", "0"], "workers_1": ["--workers", "1"], "workers_2": ["--workers", "2"]}


def make_cases(folder: Path, count: int) -> Path:
    import numpy as np

    from MedSORALib.image.phantom import make_phantom
    from MedSORALib.volume_io import Volume, write_volume

    rows = []
    for n in range(count):
        volume, labels = make_phantom(1000 + n)
        ct, seg = folder / f"case{n:03d}_ct.nii.gz", folder / f"case{n:03d}_seg.nii.gz"
        write_volume(ct, Volume(volume.array.astype(np.int16), volume.affine))
        write_volume(seg, Volume(labels.astype(np.uint8), volume.affine))
        rows.append([ct.name, seg.name, "totalsegmentator", SYMPTOMS[n % len(SYMPTOMS)]])
    manifest = folder / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["volume", "segmentation", "label_scheme", "symptom"])
        writer.writerows(rows)
    return manifest


def run_batch(manifest: Path, out: Path, extra: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    argv = [sys.executable, "-m", "MedSORALib", "batch", str(manifest), "--output-dir", str(out), "--force",
            "--no-progress", "--dashboard-address", ":0", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"batch failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    elapsed = [r["elapsed_s"] for r in summary["results"]]
    return {"wall_s": wall, "ok": summary["ok"], "row_elapsed_median_s": statistics.median(elapsed),
            "workers": sorted({r["worker"] for r in summary["results"]}),
            "load_average_1min_after": round(os.getloadavg()[0], 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results_batch.json")
    parser.add_argument("--summarize-only", action="store_true",
                        help="recompute the summary of the runs already in --output, without running anything")
    args = parser.parse_args(argv)
    if args.summarize_only:
        results = json.loads(args.output.read_text())
        args.cases = results["cases"]
        load_at_end = results["machine"].get("load_average_at_end")
        summarize(results, args)
        results["machine"]["load_average_at_end"] = load_at_end
        args.output.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(results["summary"], indent=1))
        return 0

    results = {"machine": {"cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                           else os.cpu_count(), "python": sys.version.split()[0],
                           "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
               "cases": args.cases, "repeats": args.repeats, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="medsora-bench-batch-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        manifest = make_cases(tmp, args.cases)
        results["make_cases_s"] = round(time.perf_counter() - t0, 2)
        for repeat in range(args.repeats):  # configurations interleaved, so that load changes hit all of them
            for name, extra in CONFIGS.items():
                run = run_batch(manifest, tmp / f"out_{name}", extra)
                assert run["ok"] == args.cases, run
                results["runs"].setdefault(name, []).append(run)
                print(f"{name} repeat {repeat + 1}: {run['wall_s']:.1f} s", file=sys.stderr, flush=True)
                summarize(results, args)
                args.output.write_text(json.dumps(results, indent=1) + "\n")  # kept up to date after each run
    print(json.dumps(results["summary"], indent=1))
    return 0


def summarize(results: dict, args) -> None:
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    table = {}
    for name, runs in results["runs"].items():
        wall = statistics.median(r["wall_s"] for r in runs)
        table[name] = {"wall_s": round(wall, 2), "wall_min_s": round(min(r["wall_s"] for r in runs), 2),
                       "wall_max_s": round(max(r["wall_s"] for r in runs), 2),
                       "rows_per_min": round(args.cases / wall * 60.0, 1),
                       "row_elapsed_median_s": round(statistics.median(r["row_elapsed_median_s"] for r in runs), 3),
                       "distinct_workers": len(runs[-1]["workers"])}
    base = table.get("in_process", {}).get("wall_s")
    for name in ("workers_1", "workers_2"):
        if base and name in table:
            table[name]["overhead_per_row_vs_in_process_s"] = round((table[name]["wall_s"] - base) / args.cases, 3)
            table[name]["speedup_vs_in_process"] = round(base / table[name]["wall_s"], 2)
            table[name]["overhead_per_row_vs_in_process_fastest_runs_s"] = round(
                (table[name]["wall_min_s"] - table["in_process"]["wall_min_s"]) / args.cases, 3)
            table[name]["row_time_vs_in_process_s"] = round(
                table[name]["row_elapsed_median_s"] - table["in_process"]["row_elapsed_median_s"], 3)
    results["summary"] = table


if __name__ == "__main__":
    sys.exit(main())
