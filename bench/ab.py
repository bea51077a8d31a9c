"""What the two A/B benchmarks (``bench_rank_ab.py``, ``bench_reader_load.py``) share: the checkouts compared, the
rounds in alternating order (the first only warms the caches) and the JSON they print and may write."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent


def checkouts(baseline: Path | None) -> dict[str, Path] | None:
    """{"this": this checkout, "baseline": the other one when given}; None (after one error line) when the other
    path holds no MedSORALib."""
    sides = {"this": REPO}
    if baseline is not None:
        if not (baseline / "MedSORALib").is_dir():
            print(f"medsora: error: {baseline} holds no MedSORALib", file=sys.stderr)
            return None
        sides["baseline"] = baseline.resolve()
    return sides


def rounds(sides: dict[str, Path], count: int) -> Iterator[tuple[int, list[tuple[str, Path]]]]:
    """(round, the checkouts in this round's order) for ``count`` counted rounds after a warm-up round 0; the order
    alternates from round to round so that a drift of the machine's load falls on both sides."""
    for i in range(count + 1):
        order = list(sides.items())
        yield i, (order if i % 2 == 0 else order[::-1])


def report(out: dict, path: Path | None) -> int:
    """Print ``out`` as JSON and also write it to ``path`` when given; the exit status."""
    text = json.dumps(out, indent=1)
    print(text)
    if path:
        path.write_text(text + "\n")
    return 0
