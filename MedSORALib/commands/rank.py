"""``medsora rank``: rank the 13 abdominal structures for a symptom text, without a CT."""
from __future__ import annotations

import argparse
import json
import threading

from ..errors import SymptomError

HELP = "rank the abdominal organs for a symptom text (text model only, no CT)"
DESCRIPTION = """\
Rank the 13 abdominal structures by their relevance to a free-text symptom,
using the text side of MedSORA alone: the trained text model (frozen sentence
encoder, relevance head, out-of-domain detector) and a differential
diagnosis: a clinical reader finds the findings the text asserts, denies or
places in the past (with laboratory values and vital signs against normal
ranges, age and sex), a cited disease catalogue scores each diagnosis by
likelihood ratios, and where the differential is confident its organ
relevance is mixed into the model's (gated fusion). An organ removed by
surgery ("gallbladder removed five years ago") gets 0.

scope is "modelled" (the best diagnoses lie in the 13 structures),
"abdominal-other" (an abdominal structure MedSORA does not show; outside
names it) or "non-abdominal"; in_domain is true only for "modelled".
When the text names a side (left/right flank, loin, side...), the kidney
and adrenal gland of that side rank above the other side's.

Relevance is in [0, 1]. The table lists the leading diagnoses with the
findings read for them and the CT signs to look for."""

EPILOG = """\
examples:
  medsora rank "painless jaundice with pale stools"
  medsora rank "left flank pain radiating to the groin" --json
  medsora rank "constant RUQ pain since last night's dinner, fever 38.4, Murphy's sign"
  medsora rank --file symptoms.txt          (one text per line -> one JSON object per line, as it goes)
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


#: Texts encoded and reasoned together by ``--file`` (bounded memory on long files).
CHUNK = 256
#: Diagnoses given in the JSON and the table.
TOP_DIAGNOSES = 5


def prediction_json(reasoned, info: dict, setting: str = "full11") -> dict:
    """The JSON object printed for one symptom (a :class:`~MedSORALib.differential.fusion.Reasoned`)."""
    from ..organs import ORGANS, structure_class

    prediction = reasoned.prediction
    result = reasoned.differential
    reading = result.reading
    return {
        "symptom": reasoned.text,
        "in_domain": reasoned.in_domain,
        "scope": reasoned.scope,
        "outside": reasoned.outside,
        "ood_score": round(prediction.ood_score, 6),
        "non_specific": bool(reasoned.non_specific),
        "laterality": prediction.laterality,
        "organs": [
            {
                "name": key,
                "display_name": ORGANS[key].display_name,
                "class": structure_class(key),
                "relevance": round(value, 6),
                "model_relevance": round(prediction.structure_relevance.get(key, 0.0), 6),
                "why": result.organ_why(key) if value > 0 else [],
            }
            for key, value in reasoned.ranked_structures()
        ],
        "differential": [d.to_dict() for d in result.diagnoses[:TOP_DIAGNOSES]],
        "none_of_these": round(result.none_probability, 4),
        "findings": [f.to_dict() for f in reading.findings],
        "age": reading.age,
        "sex": reading.sex,
        "removed": list(result.removed),
        "fusion": {"differential_weight": round(reasoned.alpha, 4)},
        "model": info,
    }


def format_table(reasoned) -> str:
    from ..organs import ORGANS

    prediction = reasoned.prediction
    result = reasoned.differential
    reading = result.reading
    lines = [f"symptom: {reasoned.text}"]
    verdict = {"modelled": "abdominal (the 13 structures)",
               "abdominal-other": f"abdominal, outside the 13 structures ({reasoned.outside or 'other'})",
               "non-abdominal": "NOT abdominal (out of domain): relevances pushed low"}[reasoned.scope]
    lines.append(f"scope: {verdict} (ood score {prediction.ood_score:.3f})")
    if reasoned.non_specific:
        lines.append("non-specific: every finding read is generic, so the ranking is flat")
    if prediction.laterality:
        lines.append(f"side: {prediction.laterality}")
    facts = []
    if reading.age is not None:
        facts.append(f"age {reading.age:g}")
    if reading.sex:
        facts.append(reading.sex)
    if result.removed:
        facts.append("removed: " + ", ".join(ORGANS[k].display_name for k in result.removed))
    if facts:
        lines.append("patient: " + "; ".join(facts))
    present = [f.label for f in reading.findings if f.status == "present"]
    denied = [f.label for f in reading.findings if f.status == "negated"]
    past = [f.label for f in reading.findings if f.status == "history"]
    lines.append("read: " + (", ".join(present) if present else "(no specific finding)"))
    if denied:
        lines.append("denied: " + ", ".join(denied))
    if past:
        lines.append("history: " + ", ".join(past))
    lines.append("")
    shown = [d for d in result.diagnoses[:TOP_DIAGNOSES] if d.probability >= 0.01]
    if shown:
        lines.append(f"differential (none of these / non-specific: {result.none_probability:.2f})")
        for i, d in enumerate(shown, 1):
            where = ", ".join(ORGANS[k].display_name for k in d.structures) if d.disease.organs else \
                f"outside the 13 structures: {d.disease.outside}"
            lines.append(f"  {i}. {d.disease.name}  p={d.probability:.2f}  [{where}]")
            if d.supporting:
                lines.append("       read: " + ", ".join(f.label for f in d.supporting))
            if d.against:
                lines.append("       against: " + ", ".join(f.label for f in d.against))
            lines.append("       look for: " + ", ".join(d.disease.look_for))
        lines.append("")
    lines.append(f"{'rank':>4}  {'structure':<30} {'relevance':>9}")
    for rank, (key, value) in enumerate(reasoned.ranked_structures(), 1):
        bar = "#" * int(round(value * 20))
        why = result.organ_why(key, 2) if value > 0 else []
        lines.append(f"{rank:>4}  {ORGANS[key].display_name:<30} {value:>9.3f}  {bar:<20}"
                     + (f"  ({'; '.join(why)})" if why else ""))
    return "\n".join(lines)


def _restrict(reasoned_list, reasoner) -> None:
    """Structures the setting has no class for keep 0 (the paper7 setting)."""
    from ..organs import class_structures

    allowed = {k for c in reasoner.classes for k in class_structures(c)}
    for r in reasoned_list:
        for key in r.structure_relevance:
            if key not in allowed:
                r.structure_relevance[key] = 0.0


def _load_differential() -> None:
    from ..differential.differential import load_differential
    from ..differential.reader import load_reader

    try:
        load_reader()
        load_differential()
    except Exception:  # noqa: BLE001 - the main thread loads again and reports the error
        pass


def reason_chunk(texts: list[str], reasoner) -> list:
    """Model prediction, differential and fusion for a list of texts."""
    from ..differential.fusion import reason

    out = reason(texts, reasoner)
    _restrict(out, reasoner)
    return out


def run(args) -> int:
    import sys

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

    # The catalogue and lexicon (regular expressions compiled in Python) load in a thread while the text model
    # loads and encodes (torch works outside the interpreter lock), so a cold run pays for them only once.
    warm = threading.Thread(target=_load_differential, daemon=True)
    warm.start()
    reasoner = TextReasoner.load(args.weights, setting=args.setting)
    info = reasoner.info()
    warm.join()
    if args.file:
        total = len(texts)
        progress = total > CHUNK
        step = max(CHUNK, (total // 20) // CHUNK * CHUNK)
        for start in range(0, total, CHUNK):
            chunk = texts[start:start + CHUNK]
            lines = [json.dumps(prediction_json(r, info, args.setting)) for r in reason_chunk(chunk, reasoner)]
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
            # the encoder keeps every vector it made in a dict; on a long file that grows without bound
            memory = getattr(reasoner.encoder, "_memory", None)
            if isinstance(memory, dict):
                memory.clear()
            done = start + len(chunk)
            if progress and (done % step == 0 or done == total):
                print(f"medsora: rank: {done:,}/{total:,} texts", file=sys.stderr, flush=True)
        return 0
    reasoned = reason_chunk(texts, reasoner)[0]
    if args.json:
        print(json.dumps(prediction_json(reasoned, info, args.setting), indent=1))
    else:
        print(format_table(reasoned))
    return 0
