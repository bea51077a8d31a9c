"""What loading the differential costs a fresh process, step by step, for this checkout and another one.

    python bench/bench_reader_load.py [--baseline /path/to/other/checkout] [--rounds 8] [--json out.json]

Each round starts a fresh Python for each checkout (order alternating by round) that times, with
``time.perf_counter`` and ``time.process_time``: importing the reader's modules, loading the catalogue (its JSON
cache), the lab reader, the reader (its compiled gates), the differential scorer, and reading a first and a
second text: what a cold ``medsora rank`` does besides the text model. The first round fills the caches and is
not counted; the medians of the others are reported in milliseconds. Nothing here imports torch, so the numbers
are not hidden behind the model's loading as they are in ``bench_scoring.py --only-cold``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import ab

REPO = ab.REPO

CHILD = r"""
import json, time
W, C = time.perf_counter, time.process_time
marks = [(W(), C())]
def mark():
    marks.append((W(), C()))
import MedSORALib.differential.context, MedSORALib.differential.demographics, MedSORALib.differential.labs
import MedSORALib.differential.reader as rd
mark()
from MedSORALib.differential.catalogue import load_catalogue
catalogue = load_catalogue()
mark()
from MedSORALib.differential.labs import load_lab_reader
labs = load_lab_reader(str(rd.DATA_DIR / "labs.yaml"))
mark()
reader = rd.Reader(catalogue.findings, rd._hpo_terms(), labs)
mark()
from MedSORALib.differential.differential import load_differential
load_differential()
mark()
reader.read("pain under the right ribs after fatty meals, worse at night; no fever")
mark()
reader.read("a 61-year-old man with sudden-onset tearing chest and back pain, BP 190/100, not on anticoagulants")
mark()
names = ["modules", "catalogue", "lab_reader", "reader", "differential", "first_read", "second_read"]
out = {}
for name, (w0, c0), (w1, c1) in zip(names, marks, marks[1:]):
    out[name + "_ms"] = 1000 * (w1 - w0)
    out[name + "_cpu_ms"] = 1000 * (c1 - c0)
out["total_ms"] = 1000 * (marks[-1][0] - marks[0][0])
out["total_cpu_ms"] = 1000 * (marks[-1][1] - marks[0][1])
print(json.dumps(out))
"""


def _child(repo: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=repo, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout (its repository root)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sides = ab.checkouts(args.baseline)
    if sides is None:
        return 2
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    for i, order in ab.rounds(sides, args.rounds):
        for name, repo in order:
            result = _child(repo)
            if i:
                runs[name].append(result)
    out = {"rounds": args.rounds, "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    for name, rows in runs.items():
        out[name] = {key: round(statistics.median(r[key] for r in rows), 1) for key in rows[0]}
    return ab.report(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
