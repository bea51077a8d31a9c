#!/usr/bin/env python
"""Where a cold ``medsora rank TEXT`` spends its time (medians over fresh processes), on this machine's CPU.

    python bench/bench_rank_parts.py [--repeats 5] [--threads 1] [--output bench/results_rank_parts.json]

Each fresh process runs the steps of ``medsora rank`` one after the other, in one thread (the differential's
data load in the main thread here, not beside the model), with the garbage collector paused as ``rank``
pauses it, and times each step with ``time.perf_counter``:

  parser            import the CLI and build the rank subcommand's parser
  input_checks      the symptom length check (imports the input limits)
  torch             import torch (the floor of a cold rank, with numpy)
  differential      import the reader, scorer and catalogue modules
  catalogue         the catalogue from its compiled data (or the YAML)
  reader            the reader: lexicon, lab names and their gates
  text_model        import the text model's module, load its weights and knowledge channel
  encoder           load the sentence encoder and its tokenizer
  first_ranking     the model's prediction, the differential and the fusion of the text
  output            the JSON of the result

``--threads`` sets OMP_NUM_THREADS for the processes (default 1: steadier on a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXT = "burning pain in the upper belly after meals"

CHILD = r"""
import gc, json, sys, time
gc.disable()
marks = [("start", time.perf_counter())]
def mark(name):
    marks.append((name, time.perf_counter()))
from MedSORALib.cli import build_parser
build_parser("rank"); mark("parser")
from MedSORALib.commands.rank import check_lengths
check_lengths([sys.argv[1]]); mark("input_checks")
import torch; mark("torch")
from MedSORALib.differential.differential import load_differential
from MedSORALib.differential.reader import load_reader
from MedSORALib.differential.catalogue import load_catalogue
mark("differential")
load_catalogue(); mark("catalogue")
load_reader(); load_differential(); mark("reader")
from MedSORALib.text.reasoning import TextReasoner
reasoner = TextReasoner.load(None, setting="full11"); mark("text_model")
reasoner.encoder._load(); mark("encoder")
from MedSORALib.commands.rank import prediction_json, reason_chunk
result = reason_chunk([sys.argv[1]], reasoner)[0]; mark("first_ranking")
json.dumps(prediction_json(result, reasoner.info()), indent=1); mark("output")
print(json.dumps({b[0]: b[1] - a[1] for a, b in zip(marks, marks[1:])}))
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "results_rank_parts.json")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    runs = []
    for i in range(args.repeats + 1):
        done = subprocess.run([sys.executable, "-c", CHILD, TEXT], capture_output=True, text=True, cwd=REPO,
                              env=env)
        if done.returncode != 0:
            raise SystemExit(f"benchmark child failed: {done.stderr.strip().splitlines()[-1:]}")
        if i:  # the first process warms the file system cache
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    parts = {name: statistics.median(r[name] for r in runs) for name in runs[0]}
    above = sum(v for k, v in parts.items() if k != "torch")
    results = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                           "load_average_1min_at_end": round(os.getloadavg()[0], 2),
                           "write_bytecode": not sys.dont_write_bytecode},
               "threads": args.threads, "repeats": args.repeats, "text": TEXT,
               "parts_s": {k: round(v, 4) for k, v in parts.items()}, "all_but_torch_s": round(above, 4)}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    for name, value in parts.items():
        print(f"{name:<16} {1000 * value:8.1f} ms")
    print(f"{'all but torch':<16} {1000 * above:8.1f} ms   (written to {args.output})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
