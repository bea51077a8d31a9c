"""Benchmark of ``medsora rank --file`` on a long file (not a test): time, peak memory, streaming.

Writes N distinct symptom lines (default 100,000; the hand-annotated reader clauses with a running number so
that no two lines are equal and no cache can answer), runs

    python -m MedSORALib rank --file LINES > /dev/null-like sink

in a child process with its embedding cache in a temporary folder (removed afterwards), and reports:

* ``wall_s``: the whole run; ``lines_per_s``;
* ``first_line_s``: time until the first JSON line arrives (the output streams chunk by chunk);
* ``peak_rss_mb``: the child's peak resident memory (``ru_maxrss``), against the floor ``floor_rss_mb`` of
  ``python -c "import torch"`` measured in the same run, and ``floor_s`` its time;
* ``lines_out``: JSON lines received (must equal N).

    python bench/bench_rank_stream.py [--lines 100000] [--json bench/results_rank_stream.json]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _child_peak_mb(cmd: list[str], env: dict, stdin_path: Path | None = None) -> tuple[float, float, int, float]:
    """Run a command; (wall s, peak RSS MB of this child, lines on stdout, seconds to the first line)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    first = None
    lines = 0
    with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        for _line in proc.stdout:
            if first is None:
                first = time.perf_counter() - start
            lines += 1
        err = proc.stderr.read()
        code = proc.wait()
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"bench_rank_stream: {' '.join(cmd[:4])} failed ({code}): {err.strip()[-500:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far (kB on Linux); run the floor first
    return wall, max(peak, before) / 1024.0, lines, first if first is not None else wall


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)

    base = []
    for name in ("reader_clauses.jsonl", "reader_clauses_heldout.jsonl"):
        path = REPO / "Testing" / "data" / name
        base += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory(prefix="medsora-bench-") as tmp:
        lines_path = Path(tmp) / "lines.txt"
        with open(lines_path, "w", encoding="utf-8") as fh:
            for i in range(args.lines):
                fh.write(f"{base[i % len(base)]} (case {i})\n")
        env = dict(os.environ, MEDSORA_CACHE_DIR=str(Path(tmp) / "cache"), PYTHONPATH=str(REPO))
        floor_s, floor_mb, _, _ = _child_peak_mb([sys.executable, "-c", "import torch"], env)
        wall, peak_mb, out, first = _child_peak_mb(
            [sys.executable, "-m", "MedSORALib", "rank", "--file", str(lines_path)], env)
    results = {"lines": args.lines, "lines_out": out, "wall_s": round(wall, 2),
               "lines_per_s": round(args.lines / wall, 1), "first_line_s": round(first, 2),
               "peak_rss_mb": round(peak_mb, 1), "floor_s": round(floor_s, 2), "floor_rss_mb": round(floor_mb, 1)}
    print(json.dumps(results, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0 if out == args.lines else 1


if __name__ == "__main__":
    sys.exit(main())
