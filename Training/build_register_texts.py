"""Build the register texts: the product model's training texts in the language users type.

The paper-style dataset (``symptom_texts.jsonl``) never names an organ and is written as 1-2 sentence
observations. Users also type requisition indications ("RUQ pain, r/o cholecystitis", "AAA
surveillance"), organ, adjective and disease names ("splenomegaly", "renal", "varices"), exam-stem
presentations and first-person stories. This program writes
``MedSORALib/resources/dataset/register_texts.jsonl`` from three sources:

* ``team_registers.yaml``: team-written concepts, each with its organs, literal texts per register
  and disease / finding names; every name is written bare and in two requisition frames chosen by a
  hash of the name ("r/o {name}", "h/o {name}, follow-up", ...);
* the knowledge base's organ-tagged ontology terms (HPO terms under the organ subtrees, Symptom
  Ontology terms): term name, layperson and exact synonyms, with the term's organs, at most
  ``--terms-per-organ`` terms per primary organ (seeded choice; HPO has 600 kidney terms);
* the knowledge base's team corpus passages (they name organs and diseases), with their organs.

Split: texts of a corpus passage take the split that passage has in the paper-style dataset (so no
passage crosses splits between the two files); the other groups (one per team-written name with its frames, one per
literal text, one per ontology term) are split by :func:`MedSORALib.knowledge.symptom_texts.split_by_passage` with the dataset's seed.
Exact duplicates (after normalising case and punctuation), within the file or of a paper-style
text, are dropped.

Example:
    python Training/build_register_texts.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from pathlib import Path

from MedSORALib.files import atomic_write_text, resource_path

REPO = Path(__file__).resolve().parent.parent


DATASET_DIR = resource_path("dataset")
SOURCE = DATASET_DIR / "team_registers.yaml"
OUTPUT = DATASET_DIR / "register_texts.jsonl"
ALIASES = {
    "liver": "liver", "pancreas": "pancreas", "kidney": "kidney", "gallbladder": "gallbladder", "spleen": "spleen",
    "stomach": "stomach", "adrenal": "adrenal_gland", "esophagus": "esophagus", "aorta": "aorta",
    "ivc": "inferior_vena_cava", "portal": "portal_vein_and_splenic_vein",
}
#: Requisition frames for a name; two per name are chosen by a hash of the name.
FRAMES = (
    "r/o {n}", "?{n}", "h/o {n}, follow-up", "known {n}, reassess", "suspected {n}", "query {n}",
    "{n} on ultrasound, please characterise", "eval for {n}", "{N}: assess for complications",
    "CT abdomen for {n}", "pt with {n}", "{N}?", "likely {n}", "clinical suspicion of {n}",
)
REGISTERS = ("requisition", "case", "lay")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=str(SOURCE))
    parser.add_argument("--dataset", default=str(DATASET_DIR / "symptom_texts.jsonl"),
                        help="the paper-style dataset whose passage splits corpus texts inherit")
    parser.add_argument("--output", default=str(OUTPUT))
    parser.add_argument("--terms-per-organ", type=int, default=60)
    parser.add_argument("--seed", type=int, default=20251110)
    return parser.parse_args(argv)


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:8], 16)


def framed(name: str, count: int = 2) -> list[str]:
    """``name`` bare plus ``count`` requisition frames chosen by its hash."""
    start = _digest(name) % len(FRAMES)
    step = 1 + _digest(name[::-1]) % (len(FRAMES) - 1)
    out = [name]
    for i in range(count):
        frame = FRAMES[(start + i * step) % len(FRAMES)]
        out.append(frame.format(n=name, N=name[:1].upper() + name[1:]))
    return out


def concept_rows(source: Path) -> list[dict]:
    import yaml

    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    rows = []
    for concept in data["concepts"]:
        organs = [ALIASES[o] for o in concept["organs"]]
        # One group per name (the bare name and its frames) and per literal text.
        texts = [(t, "requisition", f"name:{concept['id']}:{name}") for name in concept.get("names", [])
                 for t in framed(str(name))]
        for register in REGISTERS:
            texts += [(str(t), register, f"text:{concept['id']}:{register}:{i}")
                      for i, t in enumerate(concept.get(register, []) or [])]
        for i, (text, register, group) in enumerate(texts):
            rows.append({"id": f"reg-{concept['id']}-{i:03d}", "text": text, "organs": organs, "chunk_ids": [group],
                         "register": register, "backend": "team-register"})
    return rows


def knowledge_rows(terms_per_organ: int, seed: int) -> list[dict]:
    from MedSORALib.knowledge.kb import KnowledgeBase

    kb = KnowledgeBase.load()
    by_organ: dict[str, list] = {}
    rows = []
    for chunk in kb.chunks:
        if chunk.origin == "team":
            rows.append({"id": f"kb-{chunk.id}", "text": chunk.text, "organs": list(chunk.organs),
                         "chunk_ids": [chunk.id], "register": "knowledge", "backend": "kb-corpus"})
        else:
            by_organ.setdefault(chunk.organs[0], []).append(chunk)
    for organ in sorted(by_organ):
        chunks = sorted(by_organ[organ], key=lambda c: c.id)
        random.Random(f"{seed}:{organ}").shuffle(chunks)
        for chunk in chunks[:terms_per_organ]:
            names = [chunk.name, *chunk.lay_terms, *chunk.synonyms][:4]
            for i, name in enumerate(dict.fromkeys(n.strip() for n in names if n.strip())):
                text = name if i else framed(name, 1)[_digest(chunk.id) % 2]
                rows.append({"id": f"term-{chunk.id}-{i}", "text": text, "organs": list(chunk.organs),
                             "chunk_ids": [chunk.id], "register": "term", "backend": f"kb-{chunk.origin}"})
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    from MedSORALib.files import read_jsonl
    from MedSORALib.knowledge.symptom_texts import DEFAULT_RATIOS, split_by_passage
    from MedSORALib.knowledge.guards import normalise
    from MedSORALib.text.laterality import detect_laterality

    paper = read_jsonl(args.dataset)
    passage_split = {c: r["split"] for r in paper for c in r.get("chunk_ids") or []}
    seen = {normalise(r["text"]) for r in paper}
    rows = []
    for row in concept_rows(Path(args.source)) + knowledge_rows(args.terms_per_organ, args.seed):
        key = normalise(row["text"])
        if not key or key in seen:
            continue
        seen.add(key)
        row["organ"] = row["organs"][0]
        paired = row["organ"] in ("kidney", "adrenal_gland")
        row["laterality"] = detect_laterality(row["text"]) if paired else None
        row["phrasing"] = "lay" if row["register"] == "lay" else "clinical"
        rows.append(row)
    inherited = [r for r in rows if r["chunk_ids"][0] in passage_split]
    for row in inherited:
        row["split"] = passage_split[row["chunk_ids"][0]]
    rest = [r for r in rows if r["chunk_ids"][0] not in passage_split]
    split_by_passage(rest, DEFAULT_RATIOS, args.seed)
    fields = ("id", "text", "organ", "organs", "chunk_ids", "register", "phrasing", "laterality", "backend", "split")
    lines = [json.dumps({k: r[k] for k in fields}, ensure_ascii=False) for r in rows]
    atomic_write_text(Path(args.output), "\n".join(lines) + "\n")
    counts: dict = {}
    for r in rows:
        counts.setdefault(r["register"], {}).setdefault(r["split"], 0)
        counts[r["register"]][r["split"]] += 1
    print(f"wrote {len(rows)} texts to {args.output}")
    for register, per in sorted(counts.items()):
        print(f"  {register:12s} " + ", ".join(f"{s} {per.get(s, 0)}" for s in ("train", "val", "test")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
