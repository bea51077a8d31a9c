#!/usr/bin/env python
"""Cancel of a scoring worker started behind a launcher, as the Slicer panel starts it; medians over repeats.

    python bench/bench_slicer_cancel.py [--repeats 5] [--output bench/results_slicer_cancel.json]

Inside Slicer, ``PythonSlicer`` is a launcher that runs the real Python as its child. Here a launcher stand-in
(a script that runs this interpreter with its arguments as a child and waits, as PythonSlicer does) starts the
worker, which is asked to score the bundled CT; at its "loading models" progress event the worker is busy and
the process tree is killed one of three ways. Measured: from the kill until no process of the tree is left.

  floor_s    no launcher: ``python -m MedSORALib worker`` killed with SIGKILL (what a worker without a
             launcher costs to end)
  panel_s    the panel's way: the launcher runs ``-m MedSORALib.process_tree MedSORALib worker`` (the worker
             leads its own process group) and ``process_tree.kill_tree`` ends the launcher's tree
  control    the launcher runs ``-m MedSORALib worker`` and only the launcher is killed (what
             ``QProcess.kill()`` did before): seconds the worker keeps running afterwards, up to --watch

POSIX only (process groups; Windows ends the tree with taskkill /T).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from MedSORALib import process_tree  # noqa: E402
try:  # the worker package
    from MedSORALib.session import ScoringSettings  # noqa: E402
    from MedSORALib.worker import WorkerClient, request_fields, worker_environment  # noqa: E402
except ImportError:  # the worker module and scoring_job
    from MedSORALib.scoring_job import ScoringSettings, WorkerClient, request_fields, worker_environment  # noqa: E402

CT = REPO / "Testing" / "Data" / "example_ct_sm.nii.gz"
SEG = REPO / "Testing" / "Data" / "example_ct_sm_seg.nii.gz"
SYMPTOM = "pain under the right ribs after fatty meals"


def write_launcher(folder: Path) -> Path:
    launcher = folder / "PythonSlicer"
    launcher.write_text(f"#!{sys.executable}\nimport subprocess, sys\n"
                        f"sys.exit(subprocess.call([{sys.executable!r}, *sys.argv[1:]]))\n", encoding="utf-8")
    launcher.chmod(0o755)
    return launcher


def busy_worker(command: list[str], env: dict, folder: Path) -> tuple[WorkerClient, list[int]]:
    """A worker loading its models for a request; returns the client and the pids of its tree (root first)."""
    client = WorkerClient(command=command, env=env, stderr=subprocess.DEVNULL)
    request_id = client.submit(request_fields(CT, SEG, [SYMPTOM], folder / "out", ScoringSettings(device="cpu"),
                                              label_scheme="totalsegmentator"))
    while True:
        event = client.next_event(timeout=600)
        if event is None or event["event"] == "error":
            raise RuntimeError(f"the worker failed before loading models: {event}")
        if event["id"] == request_id and event.get("message") == "loading models":
            break
    root = client.process.pid
    return client, [root, *process_tree.descendants(root)]


def until_gone(pids: list[int], limit: float) -> float:
    started = time.perf_counter()
    while any(process_tree.alive(pid) for pid in pids):
        if time.perf_counter() - started > limit:
            return limit
        time.sleep(0.001)
    return time.perf_counter() - started


def one_repeat(folder: Path, launcher: Path, env: dict, watch: float) -> dict:
    python = sys.executable
    # floor: no launcher
    client, tree = busy_worker([python, "-m", "MedSORALib", "worker"], env, folder)
    started = time.perf_counter()
    client.process.kill()
    client.process.wait()
    floor = time.perf_counter() - started + until_gone(tree, 30)
    # the panel's way: group leader behind the launcher, kill_tree
    command = process_tree.group_leader_command([str(launcher), "-m", "MedSORALib", "worker"])
    client, tree = busy_worker(command, env, folder)
    assert len(tree) >= 2, tree  # the launcher and the worker below it
    started = time.perf_counter()
    process_tree.kill_tree(tree[0], wait=0)
    client.process.wait()
    panel = time.perf_counter() - started + until_gone(tree, 30)
    # control: kill only the launcher
    client, tree = busy_worker([str(launcher), "-m", "MedSORALib", "worker"], env, folder)
    client.process.kill()
    client.process.wait()
    survived = until_gone(tree[1:], watch)
    for pid in tree[1:]:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return {"floor_s": floor, "panel_s": panel, "control_survived_s": survived, "tree": len(tree)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--watch", type=float, default=5.0, help="seconds to watch the control's orphaned worker")
    parser.add_argument("--output", default=str(REPO / "bench" / "results_slicer_cancel.json"))
    args = parser.parse_args(argv)
    if os.name != "posix":
        print("bench_slicer_cancel.py: error: POSIX only", file=sys.stderr)
        return 2
    env = dict(worker_environment(), OMP_NUM_THREADS="1")
    runs = []
    with tempfile.TemporaryDirectory(prefix="medsora-bench-cancel-") as tmp:
        launcher = write_launcher(Path(tmp))
        for repeat in range(args.repeats):
            runs.append(one_repeat(Path(tmp), launcher, env, args.watch))
            print(f"repeat {repeat + 1}: floor {runs[-1]['floor_s'] * 1000:.0f} ms, panel "
                  f"{runs[-1]['panel_s'] * 1000:.0f} ms, control: worker still running "
                  f"{runs[-1]['control_survived_s']:.1f} s after the launcher was killed", flush=True)
    floor = statistics.median(r["floor_s"] for r in runs)
    panel = statistics.median(r["panel_s"] for r in runs)
    results = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average_1min": round(os.getloadavg()[0], 2)},
        "repeats": args.repeats,
        "floor_s": round(floor, 4),
        "panel_s": round(panel, 4),
        "panel_max_s": round(max(r["panel_s"] for r in runs), 4),
        "panel_over_floor": round(panel / floor, 2),
        "control_survived_s": round(min(r["control_survived_s"] for r in runs), 2),
        "control_watch_s": args.watch,
        "runs": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in runs],
    }
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in results.items() if k != "runs"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
