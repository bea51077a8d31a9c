"""Build and measure the reader's embedding fallback (:mod:`MedSORALib.differential.embedding`).

``python -m MedSORALib.differential.embedding_build --build`` writes the shipped finding vectors;
without ``--build`` it prints the reader's precision and recall per fallback threshold on a clause file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .embedding import VECTORS_FILE, wordings


def build_vectors() -> str:
    """Write ``finding_embeddings.npz`` for the default encoder and the shipped lexicon."""
    from ..text.encoder import TextEncoder
    from .reader import load_reader

    reader = load_reader()
    encoder = TextEncoder(cache_dir=False)
    phrases, _owners = wordings(reader.lexicon, reader._hpo_terms)
    vectors = encoder.encode(phrases)
    np.savez_compressed(VECTORS_FILE, model_id=np.array(encoder.model_id), phrases=np.array(phrases),
                        vectors=vectors.astype(np.float16))
    return f"wrote {VECTORS_FILE} ({len(phrases)} phrases, {encoder.model_id})"


def main(argv=None) -> int:
    """Precision and recall of the reader with the fallback at several thresholds, on a clause file."""
    import argparse
    import json

    from ..text.encoder import TextEncoder
    from .evaluate_reader import DEFAULT_DATA, evaluate_clauses
    from .reader import load_reader

    parser = argparse.ArgumentParser(prog="python -m MedSORALib.differential.embedding_build", description=__doc__)
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.7, 0.75, 0.8, 0.85, 0.9])
    parser.add_argument("--build", action="store_true", help="write the finding vectors shipped with the package")
    args = parser.parse_args(argv)
    if args.build:
        print(build_vectors())
        return 0
    rows = [json.loads(line) for line in Path(args.data).read_text(encoding="utf-8").splitlines() if line.strip()]
    base = load_reader()
    encoder = TextEncoder(cache_dir=False)
    report = {"none": {k: v for k, v in evaluate_clauses(rows, base).items() if k in ("precision", "recall")}}
    for t in args.thresholds:
        reader = _ThresholdReader(base, encoder, t)
        r = evaluate_clauses(rows, reader)
        report[str(t)] = {k: r[k] for k in ("precision", "recall", "status_accuracy")}
    print(json.dumps(report, indent=1))
    return 0


class _ThresholdReader:
    def __init__(self, reader, encoder, threshold):
        self.reader, self.encoder, self.threshold = reader, encoder, threshold

    def read(self, text):
        return self.reader.read(text, encoder=self.encoder, embedding_threshold=self.threshold)


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
