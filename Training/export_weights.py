"""Export a trained image model as the package's default weights, with a measured model card.

Copies ``RUN/model/{model.safetensors,config.json}`` into the weights folder, re-measures the
model on the bundled real CT (organ identification by the classification head, crop and
encoding time) and writes ``MODEL_CARD.md`` and ``training_metrics.json`` next to the weights.

Example:
    python Training/export_weights.py --run runs/default --weights-dir MedSORALib/resources/weights/image
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from MedSORALib.files import resource_path

REPO = Path(__file__).resolve().parents[1]


REAL_CT = REPO / "Testing" / "Data" / "example_ct_sm.nii.gz"
REAL_SEG = REPO / "Testing" / "Data" / "example_ct_sm_seg.nii.gz"


def _percent(value: float) -> float:
    """A ranking figure in percent: ``ranking_metrics`` reports fractions; metrics files written before
    it did (values above 1) are already in percent."""
    return 100.0 * value if value <= 1.0 else value

def measure(weights_dir: Path, repeats: int = 5) -> dict:
    """Organ identification and timings of the model in ``weights_dir`` on the bundled real CT (1 CPU thread)."""
    import torch

    from MedSORALib.image.crops import organ_crops
    from medsora_training.image.evaluation import organ_identification
    from MedSORALib.image.model import ImageTextModel
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    torch.set_num_threads(1)
    model = ImageTextModel.load(weights_dir)
    volume = read_volume(REAL_CT)
    masks = read_organ_masks(REAL_SEG, volume, label_scheme="totalsegmentator")
    organ_crops(volume, masks, model.crop_config)
    crop_times, enc_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        crops = organ_crops(volume, masks, model.crop_config)
        t1 = time.perf_counter()
        feats = model.encode_organs(crops)
        t2 = time.perf_counter()
        crop_times.append(t1 - t0)
        enc_times.append(t2 - t1)
    ident = organ_identification(feats.organ_probabilities, feats.keys, model.organ_keys)
    return {"organ_identification": ident, "n_organs": len(crops),
            "crop_s_median": statistics.median(crop_times), "encode_s_median": statistics.median(enc_times),
            "threads": 1, "info": model.info()}


def model_card(metrics: dict, measured: dict) -> str:
    ev = metrics["eval"]
    data = metrics["data"]
    info = measured["info"]
    cfg = metrics.get("model", {})
    hist = metrics["history"]
    ident = measured["organ_identification"]
    real_key = next((k for k in ev.get("by_volume", {}) if k.startswith("real-")), None)
    t2o = ev["by_volume"][real_key]["text_to_organ"] if real_key else {}
    rows = "\n".join(f"| {k} | {v} | {'yes' if k == v else 'no'} |" for k, v in ident["predictions"].items())
    held = ev.get("held_out_phantoms", {})
    # Older runs did not count the copies; one copy per listed real case then.
    real_copies = data["train"].get("real_copies", len(data["train"]["real"]))
    n = measured["n_organs"]
    lines = [
        "# MedSORA default image model (`MedSORALib/resources/weights/image/`)",
        "",
        f"- Architecture: 2D slice ViT + 3D volume ViT + cross-attention fusion (mode `{info['mode']}`), "
        f"width {info['width']}, input {info['input'][0]} x {info['input'][1]} x {info['input'][2]} "
        f"(slices x rows x columns), {info['parameters']:,} parameters, preset `{info.get('preset')}`; "
        "text alignment: a linear projection of the 384-d all-MiniLM-L6-v2 sentence embedding.",
        f"- Weights: `model.safetensors` (sha256 `{info.get('weights_sha256')}`), configuration `config.json`.",
        "- Trained with `python Training/train.py --config Training/configs/default_image_weights.yaml` "
        f"on a shared 2-core CPU in {metrics.get('wall_time_s', 0) / 60:.1f} min.",
        "",
        "## Training data",
        f"- {data['train']['phantoms']} synthetic abdominal phantoms (`MedSORALib.image.phantom.make_phantom`, "
        "seeds from 1000, all 13 structures)" + (
            " and the real example CT (TotalSegmentator example `example_ct_sm`, 12 labelled structures, no "
            f"oesophagus), repeated {real_copies} times per epoch" if real_copies else "") +
        "; random rotation, scaling, shift and intensity changes on every crop: "
        f"{data['train']['organ_crops']} organ crops per epoch.",
        f"- {data['val']['phantoms']} further phantoms held out for validation.",
        f"- Symptom texts for the alignment: the train split of `{data['texts']}` "
        f"(`MedSORALib/resources/dataset/symptom_texts.jsonl`, sha256 `{data.get('texts_sha256')}`).",
        "- Nothing else: no BTCV, no TotalSegmentator dataset, no ImageNet weights." + (
            " The real CT is part of the training data, so the organ identification below is accuracy on seen "
            "data, not generalisation." if real_copies else ""),
        "",
        "## Schedule and loss",
        f"- Image stage {metrics['model_epochs'].get('image', 0)} epochs (L_image = CE_2D + CE_3D + CE_fused), "
        f"alignment stage {metrics['model_epochs'].get('alignment', 0)} epochs (L_image + InfoNCE, tau = 0.1).",
        f"- Training loss: {hist[0]['loss']:.3f} (epoch 1) -> {hist[-1]['loss']:.3f} (epoch {hist[-1]['epoch']}); "
        "the full curve is in `training_metrics.json`.",
        "",
        "## Organ identification on the real CT (classification head, argmax over 13 structures)",
        f"{sum(1 for k, v in ident['predictions'].items() if k == v)} / {ident['n']} organs correct "
        f"({ident['accuracy']:.1f} %).",
        "",
        "| organ | predicted | correct |",
        "|---|---|---|",
        rows,
        "",
        "Held-out phantoms: organ identification "
        f"{held.get('organ_accuracy', float('nan')):.1f} %." if held else "",
        "",
        "## Text-to-organ matching (docs/training.md, 'Image side')",
        f"Test split symptoms ({t2o.get('n', 0)} with a labelled organ present in the real CT; "
        f"{t2o.get('skipped', 0)} left out because their only organ, the oesophagus, is not in it), ranked over the "
        f"{len(t2o.get('classes', []))} organ classes of the real CT by the image-text similarity alone "
        "(no text prior):",
        "",
        "| Rank-1 | Rank-2 | Rank-3 | mAP |",
        "|---|---|---|---|",
        " | ".join(["", *(f"{_percent(t2o.get(k, float('nan'))):.2f}" for k in ("rank1", "rank2", "rank3", "mAP")), ""]).strip(),
        "",
        "## Speed (one CPU thread, the real CT)",
        f"Cropping {n} organs: {measured['crop_s_median']:.2f} s; encoding them: {measured['encode_s_median']:.2f} s "
        f"({1000 * measured['encode_s_median'] / n:.0f} ms per organ); median of 5.",
        "",
        "## Limits",
        "- A small model trained on phantoms and one real CT: its image features separate organs mostly by "
        "shape, position in the crop and HU; it has seen no disease. The relevance shown to users is led by the "
        "text prior (`MedSORALib.scoring`), the image term only re-weights it.",
        "- For research use; not a medical device.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="Training/export_weights.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a Training/train.py output folder")
    parser.add_argument("--weights-dir", default=str(resource_path("weights", "image")))
    args = parser.parse_args(argv)
    from MedSORALib.files import atomic_write_text

    run, target = Path(args.run), Path(args.weights_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    target.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        tmp = target / f".{name}.tmp"
        shutil.copyfile(run / "model" / name, tmp)
        tmp.replace(target / name)
    measured = measure(target)
    metrics["model_epochs"] = {h["stage"]: 0 for h in metrics["history"]}
    for h in metrics["history"]:
        metrics["model_epochs"][h["stage"]] += 1
    card = model_card(metrics, measured)
    atomic_write_text(target / "MODEL_CARD.md", card)
    slim = {"history": metrics["history"], "eval": metrics["eval"], "data": metrics["data"],
            "wall_time_s": metrics.get("wall_time_s"), "measured_on_real_ct": {
                k: v for k, v in measured.items() if k != "info"}}
    atomic_write_text(target / "training_metrics.json", json.dumps(slim, indent=2, default=float))
    print(card)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
