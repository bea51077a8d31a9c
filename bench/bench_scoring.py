#!/usr/bin/env python
"""Benchmarks of the scoring pipeline (medians over repeats), on this machine's CPU.

    python bench/bench_scoring.py [--repeats 5] [--skip-large] [--output bench/results_scoring.json]
    python bench/bench_scoring.py --only-cold [--threads 1]    (the cold-start case: results_scoring_cold.json)
    python bench/bench_scoring.py --only-rank [--repeats 15]   (its rank cases and their floor only)

Cases:
  cold_start          fresh processes, interleaved round by round:
                      floor        python -c "import torch, nibabel; nibabel.load(CT).get_fdata()"
                      floor_torch  python -c "import torch" (the floor of rank, which reads no CT)
                      score_warm   python -m MedSORALib score ... --symptom TEXT (one symptom, bundled CT),
                                   the cache folder of earlier runs in place (a symptom scored before)
                      rank_warm    python -m MedSORALib rank TEXT, likewise
                      score_empty  score with an empty cache folder (new symptom: the sentence encoder runs,
                                   the knowledge base is parsed from hp.obo)
                      rank_empty   rank with an empty cache folder
                      rank_first   rank with an empty cache folder and without the differential's compiled
                                   data beside the package (resources/differential/__pycache__, deleted
                                   before each run): the first run after an install or a catalogue edit
                      reported as medians and as ratios to the floor's median of the same run;
                      rank_*_over_torch: rank's medians over floor_torch's
  model_load          load the text and image models and the knowledge base (fresh process each time)
  encode_per_organ    crop + encode one organ of the bundled CT (all 12 / 12)
  encode_all_organs   crop + encode the 12 organs of the bundled CT
  one_symptom         read CT + masks, encode, score one symptom with passages, write .seg.nrrd + JSON
  ten_symptoms        the same with ten symptoms on the same CT (organs encoded once)
  large_ct            a synthetic 512 x 512 x 300 CT (0.8 x 0.8 x 1.5 mm phantom): read, encode, score
                      one symptom, write; wall time and peak resident memory (fresh process)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CT = REPO / "Testing" / "Data" / "example_ct_sm.nii.gz"
SEG = REPO / "Testing" / "Data" / "example_ct_sm_seg.nii.gz"
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

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from MedSORALib.scoring import load_models
mode = sys.argv[1]
if mode == "load":
    models = load_models()
    models.kb.search("warm up", k=1)
    print(json.dumps({"seconds": time.perf_counter() - t0}))
elif mode == "make":
    from MedSORALib.image.phantom import make_phantom
    from MedSORALib.volume_io import write_volume, Volume
    folder = sys.argv[2]
    volume, labels = make_phantom(0, shape=(512, 512, 300), spacing=(0.8, 0.8, 1.5))[:2]
    write_volume(folder + "/ct.nii.gz", Volume(volume.array.astype("int16"), volume.affine))
    write_volume(folder + "/seg.nii.gz", Volume(labels.astype("uint8"), volume.affine))
    print(json.dumps({"seconds": time.perf_counter() - t0}))
else:
    # The phantom was written by another process, so the peak memory below is the scoring's own.
    from MedSORALib.cli import main
    folder = sys.argv[2]
    load_models().kb.search("warm up", k=1)
    t0 = time.perf_counter()
    status = main(["score", "--volume", folder + "/ct.nii.gz", "--segmentation", folder + "/seg.nii.gz",
                   "--label-scheme", "totalsegmentator", "--symptom", "painless jaundice with pale stools",
                   "--output", folder + "/out/case", "--quiet"])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "status": status}))
"""


def _median(values):
    return statistics.median(values)


def _child(*args) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _wall(command: list[str], env: dict) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all its threads) of one fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(command)}: {done.stderr.strip().splitlines()[-1:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def cold_start(repeats: int, tmp: str, only_rank: bool = False) -> dict:
    """Wall time of fresh processes, interleaved round by round: the floor (import torch + nibabel, read the
    CT), then score and rank with the embedding / knowledge-base cache of earlier runs ("warm": the same
    symptom as the first round, whose run filled the cache) and with an empty cache folder ("empty").
    ``only_rank``: the rank cases and their floor (``import torch``) alone. CPU seconds (``*_cpu_s``) are
    given beside the wall seconds: on a loaded machine they move less."""
    floor = [sys.executable, "-c", f"import torch, nibabel; nibabel.load({str(CT)!r}).get_fdata()"]
    floor_torch = [sys.executable, "-c", "import torch"]

    def score(text, out):
        return [sys.executable, "-m", "MedSORALib", "score", "--volume", str(CT), "--segmentation", str(SEG),
                "--label-scheme", "totalsegmentator", "--symptom", text, "--output", out, "--quiet"]

    def rank(text):
        return [sys.executable, "-m", "MedSORALib", "rank", text]

    compiled = REPO / "MedSORALib" / "resources" / "differential" / "__pycache__"

    times: dict[str, list[float]] = {}
    cpu_times: dict[str, list[float]] = {}
    out_start = {"load_average_1min_at_start": round(os.getloadavg()[0], 2)}
    for i in range(repeats + 1):
        warm = {**os.environ, "PYTHONPATH": str(REPO), "MEDSORA_CACHE_DIR": f"{tmp}/cache-warm"}
        empty = {**os.environ, "PYTHONPATH": str(REPO), "MEDSORA_CACHE_DIR": f"{tmp}/cache-empty{i}"}
        runs = {
            "floor": (floor, warm),
            "floor_torch": (floor_torch, warm),
            "score_warm": (score(SYMPTOMS[0], f"{tmp}/warm{i}/case"), warm),
            "rank_warm": (rank(SYMPTOMS[0]), warm),
            "score_empty": (score(SYMPTOMS[i % len(SYMPTOMS)], f"{tmp}/empty{i}/case"), empty),
            "rank_empty": (rank(SYMPTOMS[(i + 1) % len(SYMPTOMS)]), {**empty, "MEDSORA_CACHE_DIR": f"{tmp}/r{i}"}),
            "rank_first": (rank(SYMPTOMS[(i + 2) % len(SYMPTOMS)]), {**empty, "MEDSORA_CACHE_DIR": f"{tmp}/f{i}"}),
        }
        if only_rank:
            runs = {k: v for k, v in runs.items() if k == "floor_torch" or k.startswith("rank_")}
        for name, (command, env) in runs.items():
            if name == "rank_first":
                shutil.rmtree(compiled, ignore_errors=True)  # rebuilt by this run, for the runs after it
            seconds, cpu = _wall(command, env)
            if i:  # the first round fills the warm cache and the file system cache
                times.setdefault(name, []).append(seconds)
                cpu_times.setdefault(name, []).append(cpu)
    out = {f"{name}_s": _median(values) for name, values in times.items()}
    out.update({f"{name}_cpu_s": _median(values) for name, values in cpu_times.items()})
    if not only_rank:
        for name in ("score_warm", "rank_warm", "score_empty", "rank_empty"):
            out[f"{name}_over_floor"] = out[f"{name}_s"] / out["floor_s"]
    for name in ("rank_warm", "rank_empty", "rank_first"):
        out[f"{name}_over_torch"] = out[f"{name}_s"] / out["floor_torch_s"]
        out[f"{name}_cpu_over_torch"] = out[f"{name}_cpu_s"] / out["floor_torch_cpu_s"]
    # the spread of each case (the machine is shared: a wide one means a noisy run)
    out["quartiles_s"] = {name: [round(q, 3) for q in statistics.quantiles(values, n=4)] if len(values) > 1
                          else [round(values[0], 3)] * 3 for name, values in times.items()}
    out["repeats"] = repeats
    out.update(out_start)
    out["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-large", action="store_true", help="skip the 512 x 512 x 300 case")
    parser.add_argument("--only-cold", action="store_true", help="run the cold-start case only")
    parser.add_argument("--only-rank", action="store_true",
                        help="run the cold-start case of rank only (against python -c 'import torch')")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS for the cold-start processes (default: torch's own choice)")
    parser.add_argument("--output", type=Path, default=None,
                        help="results file (default: bench/results_scoring.json, with --only-cold "
                        "bench/results_scoring_cold.json)")
    args = parser.parse_args(argv)
    if args.only_rank:
        args.only_cold = True
    if args.output is None:
        args.output = REPO / "bench" / ("results_scoring_cold.json" if args.only_cold else "results_scoring.json")

    import torch

    from MedSORALib.cli import main as cli
    from MedSORALib.image.crops import organ_crops
    from MedSORALib.scoring import load_models
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    results = {"machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                           "python": sys.version.split()[0], "torch": torch.__version__,
                           "load_average_1min_at_start": round(os.getloadavg()[0], 2),
                           # False when PYTHONDONTWRITEBYTECODE is set: the library is compiled in every process
                           "write_bytecode": not sys.dont_write_bytecode}}
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        results["cold_start"] = cold_start(args.repeats, tmp, args.only_rank)
    results["cold_start"]["omp_num_threads"] = args.threads
    if args.only_cold:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2) + "\n")
        print(json.dumps(results["cold_start"], indent=1))
        return 0
    loads = [_child("load")["seconds"] for _ in range(max(3, args.repeats // 2))]
    results["model_load_s"] = _median(loads)

    models = load_models()
    models.kb.search("warm up", k=1)
    volume = read_volume(CT)
    masks = read_organ_masks(SEG, volume, "totalsegmentator")
    crops_cfg = models.image_model.crop_config
    all_times, per_organ = [], {k: [] for k in masks}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        models.image_model.encode_volume(volume, masks)
        all_times.append(time.perf_counter() - t0)
        for key in masks:
            t0 = time.perf_counter()
            models.image_model.encode_organs(organ_crops(volume, {key: masks[key]}, crops_cfg))
            per_organ[key].append(time.perf_counter() - t0)
    results["encode_all_organs_s"] = _median(all_times)
    results["encode_per_organ_s"] = {k: round(_median(v), 4) for k, v in per_organ.items()}
    results["encode_per_organ_median_s"] = _median([_median(v) for v in per_organ.values()])

    with tempfile.TemporaryDirectory() as tmp:
        def run(symptoms):
            argv = ["score", "--volume", str(CT), "--segmentation", str(SEG), "--label-scheme", "totalsegmentator",
                    "--output", f"{tmp}/case", "--quiet"]
            for s in symptoms:
                argv += ["--symptom", s]
            t0 = time.perf_counter()
            with open(os.devnull, "w") as null:
                stdout, sys.stdout = sys.stdout, null
                try:
                    assert cli(argv) == 0
                finally:
                    sys.stdout = stdout
            return time.perf_counter() - t0

        run(SYMPTOMS[:1])  # warm the caches of the process (models are loaded once per process)
        results["one_symptom_s"] = _median([run(SYMPTOMS[(i % 10):(i % 10) + 1]) for i in range(args.repeats)])
        results["ten_symptoms_s"] = _median([run(SYMPTOMS) for _ in range(args.repeats)])
        results["ten_over_one"] = results["ten_symptoms_s"] / results["one_symptom_s"]
        if not args.skip_large:
            _child("make", tmp)
            large = _child("large", tmp)
            results["large_ct_512x512x300"] = {"seconds": large["seconds"], "peak_rss_mb": large["peak_rss_mb"]}

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'case':<32} median")
    for key, value in results.items():
        if isinstance(value, float):
            print(f"{key:<32} {value:.3f}")
        elif key == "cold_start":
            for name in ("score_warm", "rank_warm", "score_empty", "rank_empty"):
                print(f"{'cold ' + name:<32} {value[name + '_s']:.2f} s = {value[name + '_over_floor']:.2f} x "
                      f"floor ({value['floor_s']:.2f} s)")
            for name in ("rank_warm", "rank_empty", "rank_first"):
                print(f"{'cold ' + name:<32} {value[name + '_s']:.2f} s = {value[name + '_over_torch']:.2f} x "
                      f"import torch ({value['floor_torch_s']:.2f} s)")
        elif key == "large_ct_512x512x300":
            print(f"{key:<32} {value['seconds']:.2f} s, peak RSS {value['peak_rss_mb']:.0f} MB")
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
