"""Benchmark of the differential (not a test): per-text time of the reader, the scorer and a fused ranking.

Measures on this machine, models loaded first, with the embedding disk cache off and every text new to the
encoder (a suffix makes each one distinct):

* ``load_s``: the catalogue, lexicon and lab reader built (first use in the process);
* ``read_ms``: the clinical reader on one text;
* ``differential_ms``: reader + scorer (the differential of one text);
* ``model_ms`` (the floor): ``TextReasoner.predict`` of one text (encoder + relevance head), today's ranking;
* ``ranking_ms``: ``fusion.reason`` of one text with the model: the model's prediction, the differential and
  the fusion, i.e. the ranking ``medsora rank`` prints;
* ``ratio``: ranking / model, medians of the same run.

Texts: the hand-annotated reader clauses (``Testing/data/reader_clauses*.jsonl``), one text at a time.
Medians over the texts are printed (and written with --json).

    python bench/bench_differential.py [--threads 1] [--limit 200] [--json bench/results_differential.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _texts(limit: int) -> list[str]:
    texts = []
    for name in ("reader_clauses.jsonl", "reader_clauses_heldout.jsonl"):
        path = REPO / "Testing" / "data" / name
        texts += [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return texts[:limit]


def _summary(values_s: list[float]) -> dict:
    ms = [1000 * v for v in values_s]
    ms.sort()
    return {"median": round(statistics.median(ms), 3), "p90": round(ms[int(0.9 * (len(ms) - 1))], 3),
            "max": round(ms[-1], 3), "n": len(ms)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--limit", type=int, default=200, help="texts measured")
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    args = parser.parse_args(argv)

    import torch

    from MedSORALib.differential import fusion
    from MedSORALib.differential.differential import load_differential
    from MedSORALib.differential.reader import load_reader
    from MedSORALib.text.encoder import TextEncoder
    from MedSORALib.text.reasoning import TextReasoner

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    reader = load_reader()
    scorer = load_differential()
    load_s = time.perf_counter() - start
    model = TextReasoner.load(encoder=TextEncoder(cache_dir=False))
    model.predict(["warm-up: upper abdominal pain"])
    fusion.reason(["warm-up: upper abdominal pain"], model)

    texts = _texts(args.limit)
    read_t, diff_t, model_t, rank_t = [], [], [], []
    for i, text in enumerate(texts):
        t0 = time.perf_counter()
        reading = reader.read(text)
        t1 = time.perf_counter()
        scorer.score(reading)
        t2 = time.perf_counter()
        read_t.append(t1 - t0)
        diff_t.append(t2 - t0)
        t0 = time.perf_counter()
        model.predict([f"{text} (model {i})"])
        model_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fusion.reason([f"{text} (ranking {i})"], model)
        rank_t.append(time.perf_counter() - t0)
    results = {
        "texts": len(texts),
        "threads": args.threads,
        "catalogue_diseases": len(scorer.catalogue.diseases),
        "load_s": round(load_s, 3),
        "read_ms": _summary(read_t),
        "differential_ms": _summary(diff_t),
        "model_ms": _summary(model_t),
        "ranking_ms": _summary(rank_t),
    }
    results["ratio_ranking_to_model"] = round(results["ranking_ms"]["median"] / results["model_ms"]["median"], 3)
    for key in ("read_ms", "differential_ms", "model_ms", "ranking_ms"):
        v = results[key]
        print(f"{key:<16} median {v['median']:8.2f}  p90 {v['p90']:8.2f}  max {v['max']:8.2f}  (n={v['n']})")
    print(f"load {results['load_s']:.2f} s; ranking / model = {results['ratio_ranking_to_model']:.2f}; "
          f"{results['catalogue_diseases']} diseases")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
