"""Generate training texts from the disease catalogue: the program of
:mod:`medsora_training.text.catalogue_texts`; ``python Training/generate_catalogue_texts.py --help`` lists its options.

Writes ``MedSORALib/resources/dataset/catalogue_texts.jsonl`` (one row per text: ``text``, ``organ``, ``organs``,
``outside``, ``disease``, ``register``, ``findings``, ``laterality``, ``split``) and prints the counts by class and
register. The text training reads it when ``product.extra_datasets`` in ``Training/configs/text.yaml`` names it.

    python Training/generate_catalogue_texts.py
    python Training/generate_catalogue_texts.py --per-class 180 --generic 320 --seed 0
    python Training/generate_catalogue_texts.py --variety 0 --vague 0 --history 0.5 --generic 160  # first generator
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from MedSORALib.differential.catalogue import load_catalogue
from MedSORALib.files import atomic_write_text, resource_path
from medsora_training.text.catalogue_texts import Generator, Options

DEFAULT_OUTPUT = resource_path("dataset", "catalogue_texts.jsonl")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="JSONL file to write")
    parser.add_argument("--per-class", type=int, default=Options.per_class,
                        help="texts per reasoning class, shared between its rows (boosted for the weakest classes)")
    parser.add_argument("--min-per-row", type=int, default=Options.min_per_row, help="at least this many per modelled row")
    parser.add_argument("--per-outside-row", type=int, default=Options.per_outside_row, help="texts per outside row")
    parser.add_argument("--generic", type=int, default=Options.generic_texts, help="generic-only texts (spread labels)")
    parser.add_argument("--variety", type=float, default=Options.variety,
                        help="share of findings worded from the lexicon's patterns (0: the hand tables alone)")
    parser.add_argument("--vague", type=float, default=Options.vague, help="share of thin presentations")
    parser.add_argument("--history", type=float, default=Options.history,
                        help="share of texts with an unrelated past history")
    parser.add_argument("--no-boost", action="store_true",
                        help="every class the same share (default: more texts for the classes in BOOST)")
    parser.add_argument("--registers", nargs="+", choices=("case", "short", "lay"), default=list(Options.registers),
                        help="registers written for the rows of the 13 structures and the generic texts")
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--held-out", action="store_true",
                        help="split 80/10/10 into train/val/test (default: every text in train; see Options.held_out)")
    args = parser.parse_args(argv)
    options = Options(per_class=args.per_class, min_per_row=args.min_per_row, per_outside_row=args.per_outside_row,
                      generic_texts=args.generic, seed=args.seed, held_out=args.held_out,
                      variety=args.variety, vague=args.vague, history=args.history, boost=not args.no_boost,
                      registers=tuple(args.registers))
    rows = Generator(load_catalogue(), options).rows()
    atomic_write_text(Path(args.output), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    texts = {r["text"] for r in rows}
    print(f"wrote {len(rows)} rows ({len(texts)} distinct texts) to {args.output}")
    by = Counter((r["organ"] or f"outside:{r['outside']}", r["register"]) for r in rows if not r.get("spread"))
    for organ in sorted({k[0] for k in by}, key=lambda o: (o.startswith("outside"), o)):
        if organ.startswith("outside"):
            continue
        print(f"  {organ:32s} " + "  ".join(f"{reg} {by[(organ, reg)]:4d}" for reg in ("case", "short", "lay")))
    outside = Counter(r["register"] for r in rows if r["outside"])
    print(f"  {'outside (not learned as organs)':32s} " + "  ".join(f"{reg} {outside[reg]:4d}" for reg in ("case", "short", "lay")))
    spread = [r for r in rows if r.get("spread")]
    print(f"  generic-only texts: {len({r['text'] for r in spread})} texts, {len(spread)} rows (one per class of the spread)")
    print("  splits: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r["split"] for r in rows).items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
