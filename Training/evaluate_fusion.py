"""Fused relevance versus the text prior alone, on a CT the image model never saw.

For every symptom of a split (default: test) the organ classes present in the CT
are ranked by (a) the text prior alone, (b) the fused relevance
``fuse(prior, similarity, w)`` of :mod:`MedSORALib.scoring` for several image
weights ``w``, and (c) the image-text similarity alone; Rank-1/2/3 and mAP as in
:mod:`medsora_training.image.evaluation`. Ties in (a) are broken by catalog order for
every weight alike.

    python Training/evaluate_fusion.py --image-weights runs/loco_a/model \\
        --volume Testing/Data/example_ct_dicom --labels Testing/Data/example_ct_dicom_seg.nii.gz
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

WEIGHTS = (0.0, 0.1, 0.25, 0.5)


def evaluate(image_weights, volume_path, labels_path, scheme="totalsegmentator", split="test",
             weights=WEIGHTS, exclude_texts=None) -> dict:
    """The rankings of one image model on one CT (module doc); ``exclude_texts``: texts left out of the split
    (those the image model was trained on)."""
    from medsora_training.image_data import load_symptom_texts
    from medsora_training.image.evaluation import class_scores, ranking_metrics
    from MedSORALib.organs import CLASS_SETTINGS
    from MedSORALib.scoring import fuse, load_models
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    models = load_models(image_weights=image_weights)
    volume = read_volume(volume_path)
    masks = {k: m for k, m in read_organ_masks(labels_path, volume, scheme).items() if m.any()}
    features = models.image_model.encode_volume(volume, masks)
    keys = list(features.keys)
    rows, source = load_symptom_texts(split)
    excluded = 0
    if exclude_texts:
        kept = [r for r in rows if r["text"] not in exclude_texts]
        rows, excluded = kept, len(rows) - len(kept)
    predictions = models.reasoner.predict([r["text"] for r in rows])
    prior = np.array([[p.structure_relevance[k] for k in keys] for p in predictions])
    similarity = models.image_model.score(features, np.stack([p.embedding for p in predictions]))
    labels = [r.get("organs") or [r["organ"]] for r in rows]
    classes = CLASS_SETTINGS["full11"]
    out = {"volume": str(volume_path), "image_weights": str(image_weights), "split": split, "texts": source,
           "n_texts": len(rows), "n_excluded": excluded, "organs": keys, "results": {}}
    # A tiny deterministic tie-break (catalog order) so equal priors rank the same way for every weight.
    tie = -1e-9 * np.arange(len(keys))[None, :]
    for w in weights:
        scores, present = class_scores(fuse(prior, similarity, w) + tie, keys, classes)
        out["results"][f"fused w={w:g}" if w else "text prior alone (w=0)"] = ranking_metrics(scores, present, labels)
    scores, present = class_scores(similarity, keys, classes)
    out["results"]["image similarity alone"] = ranking_metrics(scores, present, labels)
    out["classes"] = present
    from MedSORALib.organs import STRUCTURES

    predicted = features.predicted_organs(list(getattr(models.image_model, "organ_keys", STRUCTURES)))
    out["organ_identification"] = {"correct": sum(predicted[k] == k for k in keys), "n": len(keys),
                                   "predictions": predicted}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-weights", required=True, help="image model folder (e.g. runs/loco_a/model)")
    parser.add_argument("--volume", required=True)
    parser.add_argument("--labels", required=True)
    parser.add_argument("--scheme", default="totalsegmentator")
    parser.add_argument("--split", default="test")
    parser.add_argument("--output", help="write the JSON here")
    args = parser.parse_args()
    out = evaluate(args.image_weights, args.volume, args.labels, args.scheme, args.split)
    print(f"{out['volume']} ({len(out['classes'])} classes), {out['n_texts']} {out['split']} texts, "
          f"image model {out['image_weights']}")
    ident = out["organ_identification"]
    print(f"organ identification (classification head): {ident['correct']} / {ident['n']}")
    print("| ranking | Rank-1 | Rank-2 | Rank-3 | mAP | n |\n|---|---|---|---|---|---|")
    for name, m in out["results"].items():
        print(f"| {name} | {m['rank1']:.2f} | {m['rank2']:.2f} | {m['rank3']:.2f} | {m['mAP']:.2f} | {m['n']} |")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
