"""Benchmark of the text side (not a test): model load, one-text latency, 1,000-text throughput.

Measures on this machine, with the embedding disk cache off so that every text is encoded:

* load: ``TextReasoner.load`` plus the sentence encoder's first use (a fresh encoder each repeat;
  the first repeat also imports transformers and is reported apart);
* latency: ``TextReasoner.predict`` of one new text, models already loaded;
* throughput: ``TextReasoner.predict`` of 1,000 distinct texts in one call;
* CLI: ``python -m MedSORALib.cli rank TEXT`` end to end (new process: imports, load, predict).

Medians over repeats are printed as a table (and as JSON with --json).

    python bench/bench_text.py [--repeats 5] [--setting full11] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--setting", choices=("full11", "paper7"), default="full11")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--n-texts", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    import torch

    from MedSORALib.knowledge.symptom_texts import load_dataset
    from MedSORALib.text import reasoning
    from MedSORALib.text.encoder import TextEncoder

    torch.set_num_threads(args.threads)
    results: dict[str, dict] = {}

    loads = []
    for _ in range(args.repeats):
        reasoning.clear_cache()
        start = time.perf_counter()
        encoder = TextEncoder(cache_dir=False)
        model = reasoning.TextReasoner.load(setting=args.setting, encoder=encoder)
        model.predict(["warm-up: upper abdominal pain"])
        loads.append(time.perf_counter() - start)
    # The first load also imports transformers; later ones reload the weights from disk.
    results["first_load_s"] = loads[0]
    results["load_s"] = {"median": statistics.median(loads[1:] or loads), "min": min(loads), "n": len(loads[1:] or loads)}

    latencies = []
    for i in range(max(args.repeats * 4, 10)):
        text = f"burning pain in the upper belly before meals, episode {i}"
        start = time.perf_counter()
        model.predict([text])
        latencies.append(time.perf_counter() - start)
    results["latency_one_text_ms"] = {
        "median": 1000 * statistics.median(latencies), "min": 1000 * min(latencies), "n": len(latencies)}

    base = [r["text"] for r in load_dataset()]
    rates = []
    for rep in range(max(2, args.repeats // 2)):
        # distinct texts every repeat, so the encoder's in-memory table cannot answer
        texts = [f"{base[i % len(base)]} ({rep}-{i})" for i in range(args.n_texts)]
        start = time.perf_counter()
        model.predict(texts)
        rates.append(args.n_texts / (time.perf_counter() - start))
    results["throughput_texts_per_s"] = {"median": statistics.median(rates), "max": max(rates), "n": len(rates),
                                         "batch": args.n_texts}

    cli = []
    for i in range(max(2, args.repeats // 2)):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "MedSORALib.cli", "rank", f"vomiting blood {i}", "--json",
                        "--setting", args.setting], cwd=REPO, check=True, capture_output=True)
        cli.append(time.perf_counter() - start)
    results["cli_rank_end_to_end_s"] = {"median": statistics.median(cli), "min": min(cli), "n": len(cli)}

    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"MedSORA text benchmark ({args.setting}, torch threads {args.threads}, encoder cache off)")
    print(f"{'measure':<34} {'median':>10} {'best':>10} {'n':>4}")
    print(f"{'first load in process (s)':<34} {results['first_load_s']:>10.2f} {'':>10} {1:>4}")
    r = results["load_s"]
    print(f"{'model reload + first text (s)':<34} {r['median']:>10.2f} {r['min']:>10.2f} {r['n']:>4}")
    r = results["latency_one_text_ms"]
    print(f"{'rank one text (ms)':<34} {r['median']:>10.1f} {r['min']:>10.1f} {r['n']:>4}")
    r = results["throughput_texts_per_s"]
    print(f"{'throughput, 1000 texts (texts/s)':<34} {r['median']:>10.1f} {r['max']:>10.1f} {r['n']:>4}")
    r = results["cli_rank_end_to_end_s"]
    print(f"{'medsora rank CLI, new process (s)':<34} {r['median']:>10.2f} {r['min']:>10.2f} {r['n']:>4}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
