"""How close the external-style dev set comes to the training texts (a check on its independence).

For the dev set's abdominal texts, by group (requisition indications vs presentations), counts the
texts that appear verbatim (after normalising case and punctuation) in the shipped datasets
(``symptom_texts.jsonl``, ``register_texts.jsonl``) and the texts whose most similar dataset text has
an all-MiniLM-L6-v2 cosine above 0.95 and 0.90.

Example:
    python Training/dev_overlap.py --dev Training/data/external_dev.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dev", default=str(REPO / "Training" / "data" / "external_dev.jsonl"))
    args = parser.parse_args(argv)
    import numpy as np

    from MedSORALib.files import read_jsonl, resource_path
    from MedSORALib.knowledge.guards import normalise
    from MedSORALib.text.encoder import get_default_encoder

    folder = resource_path("dataset")
    rows = read_jsonl(folder / "symptom_texts.jsonl") + read_jsonl(folder / "register_texts.jsonl")
    dev = [r for r in read_jsonl(args.dev) if r.get("abdominal")]
    keys = {normalise(r["text"]) for r in rows}
    encoder = get_default_encoder()
    best = (encoder.encode([r["text"] for r in dev]) @ encoder.encode([r["text"] for r in rows]).T).max(axis=1)
    report = {}
    for group in ("requisition", "presentations"):
        idx = [i for i, r in enumerate(dev) if (r.get("register") == "requisition") == (group == "requisition")]
        report[group] = {
            "n": len(idx),
            "verbatim": int(sum(normalise(dev[i]["text"]) in keys for i in idx)),
            "cosine_above_0.95": int((best[idx] > 0.95).sum()),
            "cosine_above_0.90": int((best[idx] > 0.90).sum()),
            "median_best_cosine": round(float(np.median(best[idx])), 3),
        }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
