"""How close the development sets come to every text the models were built from (their independence check).

A development text must not be a copy or a close paraphrase of any text the text model, the knowledge
channel or the out-of-domain detector was built from. Two word-level measures, on lower-cased words
(runs of letters and digits):

* **trigram coverage** of a development text against another text: the share of the development text's
  distinct word trigrams that also occur in the other text (1.0 = every three-word run is copied);
* **word Jaccard**: |A & B| / |A | B| of the two texts' distinct words.

The development sets (``Training/data/dev_*.jsonl``) fail the check when any text reaches coverage >= 0.5
or Jaccard >= 0.6 against any reference text (``Testing/test_dev_sets.py``). Reference texts:

* every ``*.jsonl`` under ``MedSORALib/resources/dataset/`` and ``MedSORALib/resources/differential/``
  (training texts, today's and any generated later), field ``text``;
* the knowledge base: ``resources/knowledge/corpus.jsonl`` and every text, name, definition, synonym and
  lay term of ``resources/knowledge/chunks.json.gz``, and the terms stored with the text weights
  (``resources/weights/text/*/knowledge_terms.json``);
* the out-of-domain calibration and test rows, ``resources/ood/*.jsonl``.

Both measures are computed at once for all pairs with sparse binary matrices (scipy).

Examples (print the closest reference text of the worst development texts; the retired set):
    python Training/dev_overlap.py --top 10
    python Training/dev_overlap.py --top 0 --dev Training/data/external_dev.jsonl
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESOURCES = REPO / "MedSORALib" / "resources"
DEV_DIR = REPO / "Training" / "data"
DEV_FILES = ("dev_presentations.jsonl", "dev_short_histories.jsonl", "dev_non_abdominal.jsonl",
             "dev_case_derived.jsonl", "dev_case_derived2.jsonl", "dev_case_derived3.jsonl")
#: Limits of the independence rule (issue 24, item 8).
MAX_COVERAGE = 0.5
MAX_JACCARD = 0.6

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits."""
    return _WORD.findall(text.lower())


def trigrams(text: str) -> set[str]:
    w = words(text)
    return {" ".join(w[i:i + 3]) for i in range(len(w) - 2)}


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def dev_rows(paths=None) -> list[dict]:
    """Rows of the development sets (default: the six of ``DEV_FILES``), each with ``set`` (its file name) added."""
    rows = []
    for path in paths or [DEV_DIR / name for name in DEV_FILES]:
        for row in _read_jsonl(Path(path)):
            rows.append({**row, "set": Path(path).name})
    return rows


def reference_texts(resources: Path = RESOURCES) -> list[tuple[str, str]]:
    """(source, text) of every text the models were built from (see the module docstring)."""
    out: list[tuple[str, str]] = []
    for sub in ("dataset", "differential"):
        for path in sorted((resources / sub).rglob("*.jsonl")):
            for row in _read_jsonl(path):
                if isinstance(row.get("text"), str):
                    out.append((str(path.relative_to(resources)), row["text"]))
    for row in _read_jsonl(resources / "knowledge" / "corpus.jsonl"):
        out.append(("knowledge/corpus.jsonl", row["text"]))
    with gzip.open(resources / "knowledge" / "chunks.json.gz", "rt", encoding="utf-8") as handle:
        chunks = json.load(handle)["chunks"]
    for chunk in chunks:
        for key in ("text", "name", "definition", "synonyms", "lay_terms"):
            value = chunk.get(key)
            for item in (value if isinstance(value, list) else [value]):
                if isinstance(item, str) and item.strip():
                    out.append(("knowledge/chunks.json.gz", item))
    for path in sorted((resources / "weights" / "text").glob("*/knowledge_terms.json")):
        for term in json.loads(path.read_text(encoding="utf-8")):
            out.append((str(path.relative_to(resources)), term["text"]))
    for path in sorted((resources / "ood").glob("*.jsonl")):
        for row in _read_jsonl(path):
            out.append((str(path.relative_to(resources)), row["text"]))
    return out


def _binary_matrix(token_sets: list[set[str]], vocab: dict[str, int]):
    indptr, indices = [0], []
    for tokens in token_sets:
        for token in tokens:
            indices.append(vocab.setdefault(token, len(vocab)))
        indptr.append(len(indices))
    return indptr, indices


def _matrices(left: list[set[str]], right: list[set[str]]):
    from scipy.sparse import csr_matrix

    vocab: dict[str, int] = {}
    built = [_binary_matrix(s, vocab) for s in (left, right)]
    return [csr_matrix((np.ones(len(ind), np.float32), ind, ptr), shape=(len(ptr) - 1, len(vocab)))
            for ptr, ind in built]


def overlap(dev_texts: list[str], other_texts: list[str]) -> dict[str, np.ndarray]:
    """For each development text, its highest trigram coverage and word Jaccard against ``other_texts``.

    Returns:
        ``coverage`` and ``jaccard`` (N,) float arrays and ``coverage_at`` / ``jaccard_at`` (N,) int arrays,
        the index in ``other_texts`` of the text reaching each maximum (-1 where nothing is shared).
    """
    n = len(dev_texts)
    out = {"coverage": np.zeros(n), "jaccard": np.zeros(n),
           "coverage_at": np.full(n, -1), "jaccard_at": np.full(n, -1)}
    if not n or not other_texts:
        return out
    dev_w = [set(words(t)) for t in dev_texts]
    oth_w = [set(words(t)) for t in other_texts]
    a, b = _matrices(dev_w, oth_w)
    inter = (a @ b.T).tocoo()
    size_a = np.array([len(s) for s in dev_w], float)
    size_b = np.array([len(s) for s in oth_w], float)
    jac = inter.data / (size_a[inter.row] + size_b[inter.col] - inter.data)
    _scatter_max(out["jaccard"], out["jaccard_at"], inter.row, inter.col, jac)
    dev_t = [trigrams(t) for t in dev_texts]
    a, b = _matrices(dev_t, [trigrams(t) for t in other_texts])
    inter = (a @ b.T).tocoo()
    size_a = np.array([max(len(s), 1) for s in dev_t], float)
    _scatter_max(out["coverage"], out["coverage_at"], inter.row, inter.col, inter.data / size_a[inter.row])
    return out


def _scatter_max(best: np.ndarray, where: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    order = np.lexsort((values, rows))  # by row, then value ascending: the last of each row is its maximum
    rows, cols, values = rows[order], cols[order], values[order]
    last = np.r_[rows[1:] != rows[:-1], True]
    best[rows[last]] = values[last]
    where[rows[last]] = cols[last]


def violations(dev: list[dict], references: list[tuple[str, str]]) -> list[dict]:
    """Development texts at or over either limit, with the reference text that reaches it."""
    result = overlap([r["text"] for r in dev], [t for _, t in references])
    bad = []
    for i, row in enumerate(dev):
        cov, jac = result["coverage"][i], result["jaccard"][i]
        if cov >= MAX_COVERAGE or jac >= MAX_JACCARD:
            j = result["coverage_at"][i] if cov >= MAX_COVERAGE else result["jaccard_at"][i]
            bad.append({"id": row["id"], "text": row["text"], "coverage": round(float(cov), 3),
                        "jaccard": round(float(jac), 3), "source": references[j][0], "reference": references[j][1]})
    return bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10, help="print the N development texts closest to a reference")
    parser.add_argument("--dev", nargs="+", default=None, help="development files (default: the dev_*.jsonl of DEV_FILES)")
    args = parser.parse_args(argv)
    dev = dev_rows(args.dev)
    refs = reference_texts()
    result = overlap([r["text"] for r in dev], [t for _, t in refs])
    worst = np.argsort(-np.maximum(result["coverage"] / MAX_COVERAGE, result["jaccard"] / MAX_JACCARD))[:args.top]
    summary = {"dev_texts": len(dev), "reference_texts": len(refs),
               "max_coverage": round(float(result["coverage"].max()), 3),
               "median_coverage": round(float(np.median(result["coverage"])), 3),
               "max_jaccard": round(float(result["jaccard"].max()), 3),
               "median_jaccard": round(float(np.median(result["jaccard"])), 3),
               "violations": len(violations(dev, refs)),
               "identical_words": int((result["jaccard"] >= 1.0).sum()),
               "jaccard_0.6_to_1": int(((result["jaccard"] >= MAX_JACCARD) & (result["jaccard"] < 1.0)).sum()),
               "coverage_at_least_0.5": int((result["coverage"] >= MAX_COVERAGE).sum())}
    print(json.dumps(summary, indent=1))
    for i in worst:
        j = result["coverage_at"][i] if result["coverage"][i] / MAX_COVERAGE >= result["jaccard"][i] / MAX_JACCARD \
            else result["jaccard_at"][i]
        print(f"{dev[i]['id']}  coverage {result['coverage'][i]:.2f}  jaccard {result['jaccard'][i]:.2f}\n"
              f"   dev: {dev[i]['text']}\n   ref ({refs[j][0]}): {refs[j][1][:200]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
