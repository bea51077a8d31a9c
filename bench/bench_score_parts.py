#!/usr/bin/env python
"""Where a cold `medsora score` spends its time above the floor: medians over fresh processes.

    python bench/bench_score_parts.py [--repeats 5] [--output bench/results_score_parts.json]

Each repeat is a fresh process that imports torch and nibabel (the floor's imports), then times, in order:
  import_library      the MedSORALib modules `score` uses (scipy.ndimage among them)
  load_case           read the bundled CT and its label map
  load_models         the text and image models (shipped weights)
  encode_organs       crop + encode the 12 organs with the image model
  measure_organs      organ measurements (the parts below are inside it)
    thickness           largest inscribed ball (distance transform on a subdivided grid)
    vessel_diameters    vessel and gallbladder cross-sections
  knowledge_base      the knowledge base from the user's cache folder (a warm cache)
  passages            supporting passages for one symptom (3 organs)
  chunks_from_package the chunk list read from the packaged chunks.json.gz (an empty cache)
  chunks_from_hp_obo  the chunk list parsed from hp.obo (what an empty cache cost before)
package_used says whether the packaged list matched the installed hp.obo (else an empty cache parses hp.obo).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import functools, json, sys, time
T = time.perf_counter
import torch, nibabel
out = {}
t = T()
import numpy as np
from MedSORALib import cases, measurements, organ_measures, scoring, finding_boost, result_files, cli
from MedSORALib.knowledge import kb as K
out["import_library"] = T() - t

def timed(module, name, key):
    original = getattr(module, name)
    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        start = T()
        try:
            return original(*args, **kwargs)
        finally:
            out[key] = out.get(key, 0.0) + T() - start
    setattr(module, name, wrapper)

timed(measurements, "_thickness", "thickness")
timed(organ_measures, "vessel_diameters", "vessel_diameters")
t = T(); case = cases.load_case(sys.argv[1], sys.argv[2], label_scheme="totalsegmentator", log=lambda *a: None)
out["load_case"] = T() - t
t = T(); models = scoring.load_models(); out["load_models"] = T() - t
masks = {k: np.asarray(m, dtype=bool) for k, m in case.masks.items()}
t = T(); models.image_model.encode_volume(case.volume, masks); out["encode_organs"] = T() - t
t = T(); organ_measures.measure_organs(case.volume, masks); out["measure_organs"] = T() - t
t = T(); kb = models.kb; out["knowledge_base"] = T() - t
t = T()
for organ in ("pancreas", "liver", "gallbladder"):
    kb.search("painless jaundice with pale stools and weight loss", k=2, organ=organ)
out["passages"] = T() - t
paths = K.source_paths()
t = T(); packaged = K.read_prebuilt_chunks(K.SOURCES, paths); out["chunks_from_package"] = T() - t
t = T(); parsed = K._build_chunks(K.SOURCES, paths); out["chunks_from_hp_obo"] = T() - t
assert packaged is None or packaged == parsed, "the packaged chunk list is stale: medsora kb index"
out["package_used"] = packaged is not None
print(json.dumps(out))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results_score_parts.json")
    args = parser.parse_args(argv)
    ct = REPO / "Testing" / "Data" / "example_ct_sm.nii.gz"
    seg = REPO / "Testing" / "Data" / "example_ct_sm_seg.nii.gz"
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(REPO), "MEDSORA_CACHE_DIR": tmp}
        for i in range(args.repeats + 1):
            done = subprocess.run([sys.executable, "-c", CHILD, str(ct), str(seg)], capture_output=True, text=True,
                                  cwd=REPO, env=env)
            if done.returncode != 0:
                raise SystemExit(f"benchmark child failed: {done.stderr.strip().splitlines()[-1:]}")
            if i:  # the first run fills the cache folder and the file system cache
                runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "package_used"}
    result["package_used"] = all(run["package_used"] for run in runs)
    result["repeats"] = args.repeats
    for key, value in result.items():
        print(f"{key:22s} {value}" if key in ("package_used", "repeats") else f"{key:22s} {value:.3f} s")
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
