"""Self-consistency of the catalogue: does each row win on its own textbook picture?

For every row of the 13 structures, the *textbook reading* is the row's most characteristic presenting findings
(kinds symptom, sign, lab and vital; the ``TEXTBOOK_FINDINGS`` with the largest ``freq x log(LR)``, generic
findings counted at the scorer's discount) read as present, with the middle of the row's typical ages and its
sex where the row names them. The reading is built directly (the reader is not involved: this checks the weights,
not the wording), scored by the shipped differential, and the row's rank recorded.

A row that does not reach the top ``SHADOW_RANK`` on its own picture is *shadowed*: another row claims the same
findings with larger weights, its prior is too low, or its own weights are too weak. The report names, for each
shadowed row, the rows that beat it.

A row whose single most characteristic finding is being found incidentally on imaging (a cyst, a haemangioma, an
adrenal incidentaloma) has no presenting picture of its own; such rows are counted in the figures and also
reported apart. ``--context K`` adds the row's K most characteristic risk or history findings to the picture (an
aortic graft, known gallstones, a known cancer): the background a textbook names with the presentation.

``python -m MedSORALib.differential.consistency`` prints the shadowed rows and the share of rows in the top 1 and
top 3; ``--all`` prints every row; ``--json FILE`` writes the ranks (docs/catalogue.md, sixth pass).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass

from .context import PRESENT
from .differential import GENERIC_WEIGHT, PRESENTING_KINDS, Differential, load_differential
from .readings import ReadFinding

#: How many findings make a row's textbook picture (designed: the 3-4 features a textbook names first).
TEXTBOOK_FINDINGS = 4
#: A row outside this rank on its own picture is shadowed (designed).
SHADOW_RANK = 3
#: Kinds of the background findings ``--context`` adds to the picture.
CONTEXT_KINDS = ("risk", "history")
#: A row whose single most characteristic finding (any kind) is this one is an incidental lesion: its textbook
#: presentation is none, and its presenting findings are the few symptoms a large lesion gives (reported apart).
INCIDENTAL = "incidental_finding"


@dataclass(frozen=True)
class RowCheck:
    """One row's textbook picture and where the differential ranks the row on it."""

    id: str
    findings: tuple[str, ...]
    age: float | None
    sex: str | None
    rank: int | None  # 1-based; None when the row was dropped (never for these readings)
    probability: float
    ahead: tuple[str, ...]  # ids of the rows ranked above it (at most SHADOW_RANK shown)
    incidental: bool = False  # the row's most characteristic finding is being found incidentally on imaging

    @property
    def shadowed(self) -> bool:
        return self.rank is None or self.rank > SHADOW_RANK


def characteristic_findings(disease, catalogue, n: int = TEXTBOOK_FINDINGS, generic_weight: float = GENERIC_WEIGHT,
                            kinds: tuple[str, ...] = PRESENTING_KINDS):
    """The row's ``n`` findings of ``kinds`` (presenting findings by default) with the largest freq x log(LR)
    (generic findings discounted as the scorer discounts them); ties broken by id so the picture is the same in
    every process."""
    scored = []
    for w in disease.findings:
        finding = catalogue.findings.get(w.id)
        if finding is None or finding.kind not in kinds or w.lr <= 1.0:
            continue
        value = (w.freq or 0.0) * math.log(w.lr) * (generic_weight if finding.generic else 1.0)
        scored.append((-value, w.id))
    scored.sort()
    return tuple(fid for _, fid in scored[:n])


def textbook_reading(disease, catalogue, n: int = TEXTBOOK_FINDINGS, context: int = 0):
    """A :class:`~MedSORALib.differential.reader.Reading` of the row's textbook picture; with ``context``, the row's
    ``context`` most characteristic risk or history findings are added (the background a textbook names with the
    presentation: gallstones, an aortic graft, a known cancer)."""
    from .reader import Reading

    ids = characteristic_findings(disease, catalogue, n)
    if context:
        ids += characteristic_findings(disease, catalogue, context, kinds=CONTEXT_KINDS)
    findings = []
    for fid in ids:
        f = catalogue.findings[fid]
        findings.append(ReadFinding(id=fid, label=f.label, kind=f.kind, status=PRESENT, text=f.label, start=0,
                                    end=0, generic=f.generic, side=f.side))
    age = (disease.age[0] + disease.age[1]) / 2.0 if disease.age else None
    text = "; ".join(catalogue.findings[fid].label for fid in ids)
    return Reading(text=text, findings=findings, age=age, sex=disease.sex)


def check(differential: Differential | None = None, rows=None, n: int = TEXTBOOK_FINDINGS,
          context: int = 0) -> list[RowCheck]:
    """The textbook check of every row of the 13 structures (or of ``rows``, a list of ids); ``context``: see
    :func:`textbook_reading`."""
    diff = differential or load_differential()
    catalogue = diff.catalogue
    chosen = [d for d in catalogue.diseases if d.organs] if rows is None else [catalogue.by_id[r] for r in rows]
    out = []
    for disease in chosen:
        reading = textbook_reading(disease, catalogue, n, context)
        result = diff.score(reading)
        ids = [d.disease.id for d in result.diagnoses]
        rank = ids.index(disease.id) + 1 if disease.id in ids else None
        prob = result.diagnoses[rank - 1].probability if rank else 0.0
        ahead = tuple(ids[: min((rank or len(ids)) - 1, SHADOW_RANK)])
        top = characteristic_findings(disease, catalogue, 1, kinds=PRESENTING_KINDS + CONTEXT_KINDS)
        out.append(RowCheck(disease.id, tuple(f.id for f in reading.findings), reading.age, reading.sex, rank,
                            prob, ahead, top == (INCIDENTAL,)))
    return out


def summary(checks: list[RowCheck]) -> dict:
    """Shares of rows at rank 1 and within the top ``SHADOW_RANK`` (all rows, and the rows that are not incidental
    lesions), and the shadowed rows' ids."""
    n = len(checks) or 1
    presenting = [c for c in checks if not c.incidental]
    m = len(presenting) or 1
    return {
        "rows": len(checks),
        "top1": sum(c.rank == 1 for c in checks) / n,
        "top3": sum(not c.shadowed for c in checks) / n,
        "presenting_rows": len(presenting),
        "presenting_top1": sum(c.rank == 1 for c in presenting) / m,
        "presenting_top3": sum(not c.shadowed for c in presenting) / m,
        "shadowed": [c.id for c in checks if c.shadowed],
        "incidental": [c.id for c in checks if c.incidental],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m MedSORALib.differential.consistency",
                                     description="Rank of every catalogue row on its own textbook picture.")
    parser.add_argument("--all", action="store_true", help="print every row, not only the shadowed ones")
    parser.add_argument("--json", metavar="FILE", help="write the ranks as JSON")
    parser.add_argument("--context", type=int, default=0, metavar="K",
                        help="add the row's K most characteristic risk or history findings to its picture")
    args = parser.parse_args(argv)
    checks = check(context=args.context)
    for c in checks:
        if args.all or c.shadowed:
            print(f"{c.id:40s} rank {c.rank if c.rank else '-':>3}  p {c.probability:.3f}  "
                  f"[{', '.join(c.findings)}]  age {c.age}  sex {c.sex}{'  (incidental)' if c.incidental else ''}"
                  f"  behind: {', '.join(c.ahead)}")
    s = summary(checks)
    print(f"rows {s['rows']}: top 1 {s['top1']:.3f}, top {SHADOW_RANK} {s['top3']:.3f}, "
          f"shadowed {len(s['shadowed'])}; not incidental ({s['presenting_rows']}): top 1 "
          f"{s['presenting_top1']:.3f}, top {SHADOW_RANK} {s['presenting_top3']:.3f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"summary": s, "rows": [c.__dict__ for c in checks]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
