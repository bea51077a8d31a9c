#!/usr/bin/env python
"""Benchmark of the scoring worker (``medsora worker``) as the Slicer panel uses it; medians over repeats.

    python bench/bench_worker.py [--repeats 3] [--output bench/results_worker.json]

Per repeat, a fresh worker process is started and asked, on the bundled CT:

  first_apply_s         the first request: process start, imports, model loading, reading the CT and its
                        organs, measuring the organs, scoring one symptom, writing .seg.nrrd + JSON
                        (image weight 0, the default: the organs are not encoded)
  second_apply_s        a second request on the same CT files with another symptom (models and the opened
                        case kept in the worker)
  second_apply_new_files_s
                        the same again with the CT and organs written to new file names, as the panel does on
                        each Apply (same content: the worker recognises the CT by its SHA-256)
  other_ct_apply_s      control: a request on another CT (the same one shifted by +1 HU, so its organs must be
                        read and measured again) in the same worker: models kept, the case not
  cancel_s              from Cancel (kill) during model loading to the process being gone

The goal of the Slicer issue is second_apply / first_apply < 0.25 and cancel < 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MedSORALib.session import ScoringSettings  # noqa: E402
from MedSORALib.worker import WorkerClient, request_fields, worker_environment  # noqa: E402
from MedSORALib.volume_io import Volume, read_volume, write_volume  # noqa: E402

CT = REPO / "Testing" / "Data" / "example_ct_sm.nii.gz"
SEG = REPO / "Testing" / "Data" / "example_ct_sm_seg.nii.gz"
FIRST = "pain under the right ribs after fatty meals"
SECOND = "blood in my urine and pain in my left flank"
THIRD = "burning pain in the upper belly after meals"


def _fields(volume, segmentation, symptom, output):
    return request_fields(volume, segmentation, [symptom], output, ScoringSettings(device="cpu"),
                          label_scheme="totalsegmentator")


def one_repeat(folder: Path, env: dict) -> dict:
    client = WorkerClient(env=env, stderr=subprocess.DEVNULL)
    try:
        started = time.perf_counter()
        first = client.run(_fields(CT, SEG, FIRST, folder / "first"))
        first_s = time.perf_counter() - started
        started = time.perf_counter()
        second = client.run(_fields(CT, SEG, SECOND, folder / "second"))
        second_s = time.perf_counter() - started
        copies = folder / "copies"
        copies.mkdir(exist_ok=True)
        ct_copy, seg_copy = copies / "ct-again.nii.gz", copies / "organs-again.nii.gz"
        shutil.copyfile(CT, ct_copy)
        shutil.copyfile(SEG, seg_copy)
        started = time.perf_counter()
        third = client.run(_fields(ct_copy, seg_copy, THIRD, folder / "third"))
        third_s = time.perf_counter() - started
        shifted = copies / "ct-shifted.nii.gz"
        volume = read_volume(CT)
        write_volume(shifted, Volume(volume.array + 1.0, volume.affine))
        started = time.perf_counter()
        other = client.run(_fields(shifted, SEG, THIRD, folder / "other"))
        other_s = time.perf_counter() - started
    finally:
        client.shutdown()
    assert first["worker"]["models_loaded"] and not second["worker"]["models_loaded"]
    assert second["worker"]["model_loads"] == 1 and third["worker"]["case_cached"]
    assert other["worker"]["model_loads"] == 1 and not other["worker"]["case_cached"]
    return {"first_apply_s": first_s, "second_apply_s": second_s, "second_apply_new_files_s": third_s,
            "other_ct_apply_s": other_s,
            "first_steps_s": first["worker"]["seconds"], "second_steps_s": second["worker"]["seconds"]}


def cancel_latency(folder: Path, env: dict) -> float:
    client = WorkerClient(env=env, stderr=subprocess.DEVNULL)
    request_id = client.submit(_fields(CT, SEG, FIRST, folder / "cancelled"))
    while True:
        event = client.next_event(timeout=600)
        if event is None or event["event"] == "error":
            raise RuntimeError(f"worker failed before loading models: {event}")
        if event["id"] == request_id and event.get("message") == "loading models":
            break
    started = time.perf_counter()
    client.cancel()
    return time.perf_counter() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "bench" / "results_worker.json"))
    args = parser.parse_args(argv)
    env = worker_environment()
    runs, cancels = [], []
    with tempfile.TemporaryDirectory(prefix="medsora-bench-worker-") as tmp:
        for repeat in range(args.repeats):
            folder = Path(tmp) / f"r{repeat}"
            folder.mkdir()
            runs.append(one_repeat(folder, env))
            cancels.append(cancel_latency(folder, env))
            print(f"repeat {repeat + 1}: first {runs[-1]['first_apply_s']:.2f} s, second "
                  f"{runs[-1]['second_apply_s']:.2f} s, new files {runs[-1]['second_apply_new_files_s']:.2f} s, "
                  f"other CT {runs[-1]['other_ct_apply_s']:.2f} s, "
                  f"cancel {cancels[-1] * 1000:.0f} ms", flush=True)
    median = {key: statistics.median(r[key] for r in runs)
              for key in ("first_apply_s", "second_apply_s", "second_apply_new_files_s", "other_ct_apply_s")}
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "ct": CT.name,
        "repeats": args.repeats,
        **{key: round(value, 3) for key, value in median.items()},
        "second_over_first": round(median["second_apply_s"] / median["first_apply_s"], 4),
        "second_new_files_over_first": round(median["second_apply_new_files_s"] / median["first_apply_s"], 4),
        "other_ct_over_first": round(median["other_ct_apply_s"] / median["first_apply_s"], 4),
        "cancel_s": round(statistics.median(cancels), 4),
        "cancel_max_s": round(max(cancels), 4),
        "first_steps_s": runs[len(runs) // 2]["first_steps_s"],
        "second_steps_s": runs[len(runs) // 2]["second_steps_s"],
        "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
    }
    results["goal_second_under_quarter"] = results["second_new_files_over_first"] < 0.25
    results["goal_cancel_under_1s"] = results["cancel_max_s"] < 1.0
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))
    return 0 if results["goal_second_under_quarter"] and results["goal_cancel_under_1s"] else 1


if __name__ == "__main__":
    sys.exit(main())
