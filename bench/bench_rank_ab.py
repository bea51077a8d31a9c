"""Cold ``medsora rank`` of two checkouts, interleaved, against ``python -c "import torch"`` in the same rounds.

    python bench/bench_rank_ab.py --baseline /path/to/other/checkout [--rounds 12] [--json out.json]

Each round runs the floor (``import torch``), then ``medsora rank TEXT`` from this checkout and from the baseline
checkout, in an order that alternates from round to round (so that a drift of the machine's load falls on both);
the first round only warms the file system cache and the compiled-data caches and is not counted. It reports the
median over rounds of each one's ratio to the floor of its round, wall and CPU (user + system of the child), and
the median of the per-round differences this - baseline. On a shared machine the paired differences resolve a
change of a few tens of milliseconds that two separate runs of ``bench_scoring.py --only-cold`` (each with its
own floor) cannot.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ab

REPO = ab.REPO
TEXTS = [
    "painless jaundice with pale stools and weight loss",
    "blood in my urine and pain in my left flank",
    "pain under the right ribs after fatty meals",
    "tearing pain going through to the back with a pulsating mass",
    "burning pain in the upper belly after meals",
    "swollen legs and a distended abdomen with visible veins",
]


def _run(command: list[str], repo: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one child process run from ``repo`` with ``repo`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(repo)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=repo, capture_output=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the other checkout (its repository root)")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    sides = ab.checkouts(args.baseline)
    if sides is None:
        return 2
    rows = []
    for i, order in ab.rounds(sides, args.rounds):
        text = TEXTS[i % len(TEXTS)]
        row = {"floor": _run([sys.executable, "-c", "import torch"], REPO)}
        for name, repo in order:
            row[name] = _run([sys.executable, "-m", "MedSORALib", "rank", text], repo)
        if i:
            rows.append(row)
    out = {"rounds": args.rounds, "load_average_1min_at_end": round(os.getloadavg()[0], 2)}
    for k, label in ((0, "wall"), (1, "cpu")):
        for name in sides:
            out[f"{name}_{label}_over_torch"] = round(statistics.median(r[name][k] / r["floor"][k] for r in rows), 3)
            out[f"{name}_{label}_s"] = round(statistics.median(r[name][k] for r in rows), 3)
        out[f"floor_{label}_s"] = round(statistics.median(r["floor"][k] for r in rows), 3)
        out[f"this_minus_baseline_{label}_s"] = round(statistics.median(r["this"][k] - r["baseline"][k] for r in rows), 3)
    return ab.report(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
