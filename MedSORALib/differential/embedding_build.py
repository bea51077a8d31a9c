"""Build and measure the reader's embedding fallback (:mod:`MedSORALib.differential.embedding`).

    python -m MedSORALib.differential.embedding_build --build
        writes the shipped finding vectors (``finding_embeddings.npz``);
    python -m MedSORALib.differential.embedding_build --bank OUT
        writes a clause bank (not shipped; the fallback uses one only when given its path);
    python -m MedSORALib.differential.embedding_build [--data F ...] [--thresholds T ...]
        prints the reader's precision and recall per wording threshold on clause files;
    python -m MedSORALib.differential.embedding_build --sweep --bank-file OUT [--data F ...]
        prints the reader's precision and recall per clause-bank setting (k, share, cosine) on clause files;
    python -m MedSORALib.differential.embedding_build --compare --bank-file OUT --data F ...
        prints, per clause file, the reader's figures without the fallback, with the wordings alone and with the
        wordings and the clause bank at the shipped settings;
    python -m MedSORALib.differential.embedding_build --ranking --bank-file OUT [--half tune] [--case-derived F ...]
        prints the fused ranking's figures (Rank-1, Rank-3, mAP, kept, caught) with the fallback's wordings alone
        and with the clause bank, on one half of the dev sets and on whole case-derived sets (aggregates only).

The clause bank holds clauses of the project's training texts (``resources/dataset``: the symptom texts and team
observations but their test split, the register texts but their test split, the catalogue texts) in which the
regular-expression reader reads exactly one finding, a present symptom or sign, with no negation, doubt, history
or family trigger touching the clause: the reader labels them itself. At most ``BANK_CAP`` clauses per finding
are kept, taken in a seeded random order and skipping a clause within cosine ``BANK_DUPLICATE`` of one already
kept for the finding (designed values).
"""
from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

import numpy as np

from .context import PRESENT
from .embedding import _KINDS, _MIN_WORDS, NONE, VECTORS_FILE, touched, wordings, words

DATASET = Path(__file__).resolve().parent.parent / "resources" / "dataset"
#: The training texts the bank is read from (never a dev or test text).
TRAINING_FILES = ("symptom_texts.jsonl", "team_observations.jsonl", "register_texts.jsonl", "catalogue_texts.jsonl")
BANK_CAP = 40
#: Clauses of no finding kept (they outvote a finding where a clause is nearest plain context).
NONE_CAP = 1500
BANK_DUPLICATE = 0.95
BANK_SEED = 30


def training_texts(root: Path = DATASET) -> list[str]:
    """The distinct texts of :data:`TRAINING_FILES`, leaving out the text model's test split (a team observation
    takes the split of the symptom text with its id)."""
    split: dict[str, str] = {}
    texts: list[str] = []
    for name in TRAINING_FILES:
        path = root / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            s = row.get("split") or split.get(row.get("id"))
            if row.get("split"):
                split[row.get("id")] = row["split"]
            if s == "test":
                continue
            texts.append(row["text"])
    return list(dict.fromkeys(texts))


def evaluation_clauses() -> set[str]:
    """The texts of the reader's hand-annotated clause sets (``Testing/data/reader_clauses*.jsonl``), lower case:
    a training clause that happens to equal one is left out of the bank, so that it never holds an evaluation
    text."""
    root = Path(__file__).resolve().parents[2] / "Testing" / "data"
    out = set()
    for path in sorted(root.glob("reader_clauses*.jsonl")):
        out |= {" ".join(row["text"].lower().split()) for row in _rows(str(path))}
    return out


def bank_candidates(reader, texts: list[str]) -> list[tuple[str, str]]:
    """(clause, finding id) for every clause of ``texts`` the reader labels with one present symptom or sign,
    and (clause, ``NONE``) for every clause where it reads nothing at all.

    A clause is a segment of the reader's own cut (:class:`~.context.Context`) with at least two words and no
    trigger touching it. Read alone, a finding's clause must yield exactly one finding, of kind symptom or sign,
    present, read by the lexicon or an HPO wording, and the whole text must read that finding as present; a
    clause of no finding yields none alone and holds no finding of the whole text."""
    out = []
    for text in texts:
        reading = reader.read(text)
        ctx = reading.context
        for seg in ctx.segments:
            clause = text[seg.start:seg.end].strip()
            if words(ctx.norm[seg.start:seg.end]) < _MIN_WORDS or touched(seg, ctx):
                continue
            own = reader.read(clause).findings
            key = " ".join(clause.lower().split())
            if not own:
                if not any(f.start < seg.end and seg.start < f.end for f in reading.findings):
                    out.append((key, NONE))
                continue
            if len(own) != 1:
                continue
            f = own[0]
            if (f.status != PRESENT or f.kind not in _KINDS or f.source not in ("lexicon", "hpo")
                    or reading.status_of(f.id) != PRESENT):
                continue
            out.append((key, f.id))
    return out


def select_bank(candidates: list[tuple[str, str]], encoder, cap: int = BANK_CAP, none_cap: int = NONE_CAP,
                duplicate: float = BANK_DUPLICATE, seed: int = BANK_SEED) -> tuple[list[str], list[str], np.ndarray]:
    """At most ``cap`` diverse clauses per finding and ``none_cap`` of no finding: (clauses, finding ids,
    float32 unit vectors)."""
    by_finding: dict[str, list[str]] = defaultdict(list)
    for clause, fid in dict.fromkeys(candidates):
        by_finding[fid].append(clause)
    rng = random.Random(seed)
    phrases, ids, vectors = [], [], []
    for fid in sorted(by_finding):
        pool = by_finding[fid]
        rng.shuffle(pool)
        limit = none_cap if fid == NONE else cap
        pool = pool[:6 * limit]
        encoded = encoder.encode(pool)
        kept: list[int] = []
        for i in range(len(pool)):
            if kept and float(np.max(encoded[kept] @ encoded[i])) > duplicate:
                continue
            kept.append(i)
            if len(kept) == limit:
                break
        phrases += [pool[i] for i in kept]
        ids += [fid] * len(kept)
        vectors.append(encoded[kept])
    return phrases, ids, (np.concatenate(vectors) if vectors else np.zeros((0, 1), dtype=np.float32))


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


def build_bank(path, texts: list[str] | None = None, encoder=None) -> str:
    """Write the clause bank for ``encoder`` (default: the default encoder), the shipped lexicon and ``texts``
    (default: :func:`training_texts`)."""
    from ..text.encoder import TextEncoder
    from .reader import load_reader

    reader = load_reader()
    encoder = encoder if encoder is not None else TextEncoder(cache_dir=False)
    texts = training_texts() if texts is None else texts
    labels = set(wordings(reader.lexicon, reader._hpo_terms)[0])  # the wordings vote already
    left_out = labels | evaluation_clauses()
    candidates = [(c, fid) for c, fid in bank_candidates(reader, texts) if c not in left_out]
    phrases, ids, vectors = select_bank(candidates, encoder)
    np.savez_compressed(path, model_id=np.array(encoder.model_id), phrases=np.array(phrases),
                        finding_ids=np.array(ids), vectors=vectors.astype(np.float16))
    return (f"wrote {path} ({len(phrases)} clauses, {ids.count(NONE)} of no finding and the others of "
            f"{len(set(ids) - {NONE})} findings, from {len(texts)} training texts, "
            f"{encoder.model_id})")


def _rows(path: str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def sweep(paths: list[str], bank, ks=(5, 10, 15, 20), shares=(0.5, 0.6, 0.7, 0.8, 0.9),
          cosines=(0.6, 0.65, 0.7, 0.75, 0.8)) -> dict:
    """Precision and recall of the reader on the clause files with the fallback at each bank setting; the
    wording rule stays at its thresholds. Keys: ``none`` (no fallback), ``wordings`` (the wording rule alone)
    and ``k/share/cosine``."""
    from ..text.encoder import TextEncoder
    from .embedding import NONE, EmbeddingMatcher, fallback_clauses, vote
    from .evaluate_reader import evaluate_clauses
    from .reader import load_reader
    from .readings import ReadFinding

    reader = load_reader()
    encoder = TextEncoder(cache_dir=False)
    matcher = EmbeddingMatcher(encoder, reader.lexicon, reader._hpo_terms, bank=bank)
    rows = [r for p in paths for r in _rows(p)]
    readings = {r["text"]: reader.read(r["text"]) for r in rows}
    jobs = []  # (text, start, end, clause)
    for text, reading in readings.items():
        ctx = reading.text_context()
        jobs += [(text, s, e, text[s:e].strip()) for s, e in fallback_clauses(reading, ctx, ctx.norm)]
    clauses = [j[3] for j in jobs]
    by_id = dict(reader.lexicon)
    firm = {i: f for i, f, _c in matcher.match(clauses, share=2.0)} if clauses else {}  # wording rule alone
    bank_ids = matcher.bank[0] if clauses else []
    encoded = encoder.encode(clauses) if clauses else np.zeros((0, 1))
    sims = encoded @ matcher.bank[1].T if clauses else np.zeros((0, 0))

    class Fixed:
        def __init__(self, added):
            self.added = added

        def read(self, text):
            base = readings[text]
            out = type(base)(text=base.text, findings=list(base.findings), age=base.age, sex=base.sex,
                             removed=base.removed, laterality=base.laterality)
            known = {f.id for f in out.findings}
            for (t, s, e, clause), finding in self.added:
                if t == text and finding.id not in known:
                    out.findings.append(ReadFinding(finding.id, finding.label, finding.kind, PRESENT, clause, s, e,
                                                    finding.generic, finding.side, None, "embedding", None))
                    known.add(finding.id)
            return out

    def figures(added):
        r = evaluate_clauses(rows, Fixed(added))
        return {"precision": r["precision"], "recall": r["recall"], "added": len(added)}

    report = {"clauses": len(rows), "fallback_clauses": len(jobs), "none": figures([]),
              "wordings": figures([(jobs[i], f) for i, f in firm.items()])}
    for k in ks:
        votes = [vote(row, bank_ids, k) for row in sims]
        for s in shares:
            for c in cosines:
                added = [(jobs[i], firm[i]) if i in firm else (jobs[i], by_id[v[0]])
                         for i, v in enumerate(votes)
                         if i in firm or (v is not None and v[0] != NONE and v[1] >= s and v[2] >= c)]
                report[f"{k}/{s}/{c}"] = figures(added)
    return report


def ranking(bank, half: str = "tune", case_derived=()) -> dict:
    """The fused ranking (:func:`.fusion.reason` with the text model) with the wordings alone and with the clause
    bank: figures per set (:func:`.evaluate.summarise`) and the number of findings the fallback added."""
    from ..text.reasoning import TextReasoner
    from . import fusion
    from .embedding import EmbeddingMatcher
    from .evaluate import DEFAULT_SETS, load_rows, structures_of, summarise
    from .reader import load_reader

    rows = [r for r in load_rows(DEFAULT_SETS) if r["half"] == half]
    for path in case_derived:
        for row in _rows(path):
            row["set"], row["structures"] = Path(path).stem, structures_of(row)
            rows.append(row)
    texts = [r["text"] for r in rows]
    reasoner = TextReasoner.load(None, setting="full11")
    predictions = reasoner.predict(texts)
    reader = load_reader()
    report = {}
    for name, matcher in (("wordings", EmbeddingMatcher(reasoner.encoder, reader.lexicon, reader._hpo_terms)),
                          ("bank", EmbeddingMatcher(reasoner.encoder, reader.lexicon, reader._hpo_terms, bank=bank))):
        out = fusion.reason(texts, reasoner=reasoner, predictions=predictions, matcher=matcher)
        report[name] = summarise(rows, [(x.structure_relevance, x.scope) for x in out])
        report[name]["added"] = sum(f.source == "embedding" for x in out for f in x.differential.reading.findings)
    return report


def main(argv=None) -> int:
    """Precision and recall of the reader with the fallback at several thresholds, on clause files."""
    import argparse

    from ..text.encoder import TextEncoder
    from .evaluate_reader import DEFAULT_DATA, evaluate_clauses
    from .reader import load_reader

    parser = argparse.ArgumentParser(prog="python -m MedSORALib.differential.embedding_build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)])
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.7, 0.75, 0.8, 0.85, 0.9])
    parser.add_argument("--build", action="store_true", help="write the shipped finding vectors")
    parser.add_argument("--bank", metavar="OUT", help="write a clause bank to OUT (.npz)")
    parser.add_argument("--bank-file", metavar="F", help="the clause bank --sweep and --compare use")
    parser.add_argument("--sweep", action="store_true", help="figures per clause-bank setting")
    parser.add_argument("--compare", action="store_true", help="per file: no fallback, wordings, wordings + bank")
    parser.add_argument("--ranking", action="store_true", help="fused ranking figures, wordings vs wordings + bank")
    parser.add_argument("--half", choices=("tune", "check"), default="tune", help="the dev sets' half (--ranking)")
    parser.add_argument("--case-derived", nargs="*", default=[], metavar="F", help="whole sets (--ranking)")
    parser.add_argument("--k", type=int, help="the bank's neighbours (--compare, --ranking; default BANK_K)")
    parser.add_argument("--share", type=float, help="the winner's least share (default BANK_SHARE)")
    parser.add_argument("--cosine", type=float, help="the winner's least cosine (default BANK_COSINE)")
    args = parser.parse_args(argv)
    if args.build or args.bank:
        if args.build:
            print(build_vectors())
        if args.bank:
            print(build_bank(args.bank))
        return 0
    if (args.sweep or args.compare or args.ranking) and not args.bank_file:
        parser.error("--sweep, --compare and --ranking need --bank-file (made with --bank OUT)")
    from . import embedding

    for name, value in (("BANK_K", args.k), ("BANK_SHARE", args.share), ("BANK_COSINE", args.cosine)):
        if value is not None:
            setattr(embedding, name, value)
    if args.ranking:
        print(json.dumps(ranking(args.bank_file, args.half, args.case_derived), indent=1))
        return 0
    if args.compare:
        setting = f"{embedding.BANK_K}/{embedding.BANK_SHARE}/{embedding.BANK_COSINE}"
        for path in args.data:
            r = sweep([path], args.bank_file, (embedding.BANK_K,), (embedding.BANK_SHARE,), (embedding.BANK_COSINE,))
            print(json.dumps({"data": path, "clauses": r["clauses"], "none": r["none"], "wordings": r["wordings"],
                              f"bank {setting}": r[setting]}))
        return 0
    if args.sweep:
        print(json.dumps(sweep(args.data, args.bank_file), indent=1))
        return 0
    rows = [r for p in args.data for r in _rows(p)]
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
