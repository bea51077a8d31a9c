"""``medsora rank``: rank the 13 abdominal structures for a symptom text, without a CT."""
from __future__ import annotations

import argparse
import json

from ..errors import SymptomError

HELP = "rank the abdominal organs for a symptom text (text model only, no CT)"
DESCRIPTION = """\
Rank the 13 abdominal structures by their relevance to a free-text symptom,
using the text side of MedSORA alone: the frozen sentence encoder, the
soft-label relevance MLP trained on learnable organ anchors, and the
out-of-domain detector. A symptom that is not abdominal ("knee joint pain",
"blurred vision") is marked in_domain = false and all its relevances are
pushed low. When the text names a side (left/right flank, loin, side...),
the kidney and adrenal gland of that side rank above the other side's.

Relevance is in [0, 1]: 0 is what an unrelated organ typically gets, 1 what
the organ a symptom was written for typically gets."""

EPILOG = """\
examples:
  medsora rank "painless jaundice with pale stools"
  medsora rank "left flank pain radiating to the groin" --json
  medsora rank --file symptoms.txt          (one text per line -> one JSON object per line)
  medsora rank "vomiting blood" --setting paper7"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "rank", help=HELP, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("symptom", nargs="?", help='symptom text, e.g. "pale stools and dark urine"')
    parser.add_argument(
        "--file",
        metavar="F",
        help="read one symptom per line from F ('-' = standard input; blank lines and lines starting with # "
        "are skipped) and print "
        "one JSON object per line, in input order",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument(
        "--setting",
        choices=("full11", "paper7"),
        default="full11",
        help="reasoning classes: our 11 (default) or the paper's 7 (esophagus, aorta, vena cava and "
        "portal/splenic vein then get 0)",
    )
    parser.add_argument("--weights", metavar="DIR", help="text model folder (default: the shipped weights)")
    return parser


def check_lengths(texts: list[str], source: str | None = None) -> None:
    """The limit of ``medsora score`` (``MAX_SYMPTOM_CHARS``) for every text, checked before any model loads."""
    from ..scoring import MAX_SYMPTOM_CHARS

    for number, text in enumerate(texts, 1):
        if len(text) > MAX_SYMPTOM_CHARS:
            where = f"symptom {number} of {source}" if source else "the symptom"
            raise SymptomError(f"{where} is {len(text):,} characters long; the limit is {MAX_SYMPTOM_CHARS:,}")


def prediction_json(prediction, info: dict) -> dict:
    """The JSON object printed for one symptom."""
    from ..organs import ORGANS, structure_class

    return {
        "symptom": prediction.text,
        "in_domain": prediction.in_domain,
        "ood_score": round(prediction.ood_score, 6),
        "laterality": prediction.laterality,
        "organs": [
            {
                "name": key,
                "display_name": ORGANS[key].display_name,
                "class": structure_class(key),
                "relevance": round(value, 6),
            }
            for key, value in prediction.ranked_structures()
        ],
        "model": info,
    }


def format_table(prediction) -> str:
    from ..organs import ORGANS

    lines = [f"symptom: {prediction.text}"]
    verdict = "abdominal" if prediction.in_domain else "NOT abdominal (out of domain): relevances pushed low"
    lines.append(f"in domain: {verdict} (ood score {prediction.ood_score:.3f})")
    if prediction.laterality:
        lines.append(f"side: {prediction.laterality}")
    lines.append("")
    lines.append(f"{'rank':>4}  {'structure':<30} {'relevance':>9}")
    for rank, (key, value) in enumerate(prediction.ranked_structures(), 1):
        bar = "#" * int(round(value * 20))
        lines.append(f"{rank:>4}  {ORGANS[key].display_name:<30} {value:>9.3f}  {bar}")
    return "\n".join(lines)


def run(args) -> int:
    from ..files import read_symptom_file

    if args.file and args.symptom:
        raise SymptomError("give either a symptom text or --file, not both")
    if args.file:
        texts = read_symptom_file(args.file)
    elif args.symptom is not None:
        if not args.symptom.strip():
            raise SymptomError("the symptom text is empty; give a description such as 'painless jaundice'")
        texts = [args.symptom.strip()]
    else:
        raise SymptomError("no symptom given; run: medsora rank \"TEXT\" or medsora rank --file F")
    check_lengths(texts, args.file)

    from ..text.reasoning import TextReasoner

    reasoner = TextReasoner.load(args.weights, setting=args.setting)
    info = reasoner.info()
    predictions = reasoner.predict(texts)
    if args.file:
        for prediction in predictions:
            print(json.dumps(prediction_json(prediction, info)))
    elif args.json:
        print(json.dumps(prediction_json(predictions[0], info), indent=1))
    else:
        print(format_table(predictions[0]))
    return 0
