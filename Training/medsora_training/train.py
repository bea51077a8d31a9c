"""Train MedSORA's models: text reasoning, the organ image encoder, and the text-image alignment.

Stages (each switched on and sized in the YAML configuration):

1. ``text``: the organ anchors and relevance MLP, fitted by ``Training/train_text.py`` (called in-process
   once the image data is read; a ``--resume`` keeps text models already written from the same text
   configuration and resources; skipped with a message when its configuration is absent);
2. ``image``: the 2D-3D organ image encoder with its organ-classification heads,
   ``L_image = CE_2D + CE_3D + CE_fused`` (docs/training.md, "Image side");
3. ``alignment``: ``L_total = L_image + L_align``, where ``L_align`` is InfoNCE (tau = 0.1) of
   symptom texts against the organs of one volume, the similarity being the mean over
   slices of the cosine between organ slice features and the projected 384-d sentence
   embedding of the text (docs/training.md, "Image side").

Data: synthetic phantoms, BTCV, TotalSegmentator-layout folders, generic (image, label map)
pairs, and the real example CT, as the configuration says. Cases are split by patient;
organ crops are cut once per case and cached under ``--output``/cache.

Outputs in ``--output``:
    model/                 final model (model.safetensors + config.json; load with ImageTextModel.load)
    checkpoint/            last epoch: model, optimizer.safetensors + optimizer.json, state.json
    metrics.json           {"history": [{"epoch", "stage", "loss", ...}], "eval": {"rank1", "rank2", "rank3", "mAP",
                            "organ_accuracy", ...}, ...}
    log.csv                one row per epoch

Examples:
    python Training/train.py --config Training/configs/cpu_smoke.yaml --output runs/smoke
    python Training/train.py --config Training/configs/cpu_smoke.yaml --output runs/smoke --resume
    torchrun --nproc_per_node 4 Training/train.py --config Training/configs/paper_gpu.yaml --output runs/paper --device cuda
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from MedSORALib.files import atomic_write_bytes, atomic_write_text, file_sha256, resource_path

from . import REPO

DEFAULTS: dict = {
    "seed": 0,
    "device": "cpu",
    "threads": 2,
    "amp": "none",  # "bf16" or "fp16" on CUDA
    "model": {"preset": "tiny", "mode": "xattn", "overrides": {}, "pretrained_2d": None, "name": "medsora-image"},
    "crop": {},
    "data": {
        "phantoms": {"n": 0, "seed": 1000, "variation": 1.0},
        "btcv": None,
        "totalsegmentator": None,
        "labelmaps": [],
        "split": [0.8, 0.1, 0.1],
        "split_seed": 0,
        "real": [],  # [{"image", "labels", "scheme", "role": "train" | "eval" | "both"}]
        "real_copies": 1,  # how often a real training case is repeated per epoch
    },
    "texts": {"dataset": None, "train_split": "train", "eval_split": "test", "setting": "full11"},
    "augment": {},
    "stages": {
        "text": {"enabled": False, "config": "Training/configs/text.yaml", "output": None},
        "image_2d": {"epochs": 0, "batch_size": 32, "lr": 1e-4, "weight_decay": 0.05, "warmup_epochs": 0},
        "image": {"epochs": 0, "batch_size": 32, "lr": 3e-4, "weight_decay": 0.05, "warmup_epochs": 0,
                  "freeze_2d": False},
        "alignment": {"epochs": 0, "texts_per_volume": 32, "volumes_per_step": 1, "lr": 3e-4,
                      "weight_decay": 0.05, "temperature": 0.1, "align_weight": 1.0, "warmup_epochs": 0,
                      "freeze_2d": False},
    },
    # every: evaluate every N epochs; val_volumes: validation volumes evaluated at the end beside the evaluation
    # CTs (null: all of them, as for a standard split such as BTCV's validation list)
    "eval": {"every": 1, "val_volumes": 4},
}


def deep_update(base: dict, update: dict) -> dict:
    out = dict(base)
    for k, v in (update or {}).items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | os.PathLike) -> dict:
    """The YAML configuration merged over :data:`DEFAULTS`.

    A ``base: other.yaml`` entry (relative to the configuration's folder) is read first and
    the configuration's own entries override it.
    """
    import yaml

    from MedSORALib.errors import InputFileError

    p = Path(path)
    if not p.is_file():
        raise InputFileError(f"configuration {p} does not exist")
    own = yaml.safe_load(p.read_text()) or {}
    base = own.pop("base", None)
    merged = load_config(p.parent / base) if base else DEFAULTS
    return deep_update(merged, own)


# ----- data -------------------------------------------------------------------------------------------------
def build_cases(cfg: dict) -> dict[str, list]:
    """Training / validation cases (split by patient) and evaluation cases (the real CTs marked for eval).

    A BTCV folder whose ``dataset_0.json`` has a ``validation`` list keeps its standard split as given: the
    ``training`` list is trained on and the ``validation`` list validates, neither is merged into the pool that
    ``data.split`` divides, so figures compare with other work on that split.
    """
    from medsora_training.image_data import (btcv_cases, labelmap_cases, phantom_cases, split_by_patient,
                                   totalsegmentator_cases)

    data = cfg["data"]
    pool = []
    ph = data.get("phantoms") or {}
    if ph.get("n", 0):
        kwargs = {k: v for k, v in ph.items() if k not in ("n", "seed")}
        pool += phantom_cases(int(ph["n"]), seed=int(ph.get("seed", 1000)), **kwargs)
    fixed = {"train": [], "val": []}
    if data.get("btcv"):
        root = REPO / data["btcv"]
        listing = root / "dataset_0.json"
        if listing.is_file() and json.loads(listing.read_text()).get("validation"):
            fixed = {"train": btcv_cases(root, "training"), "val": btcv_cases(root, "validation")}
        else:
            pool += btcv_cases(root)
    if data.get("totalsegmentator"):
        pool += totalsegmentator_cases(REPO / data["totalsegmentator"])
    for item in data.get("labelmaps") or []:
        pool += labelmap_cases([(REPO / item["image"], REPO / item["labels"])], item["scheme"])
    splits = split_by_patient(pool, data["split"], seed=int(data.get("split_seed", 0))) if pool else \
        {"train": [], "val": [], "test": []}
    for name, cases in fixed.items():
        splits[name] += cases
    evaluation = []
    for item in data.get("real") or []:
        case = labelmap_cases([(REPO / item["image"], REPO / item["labels"])], item["scheme"], source="real")[0]
        case.case_id = f"real-{case.case_id}"
        role = item.get("role", "eval")
        if role in ("train", "both"):
            splits["train"] += [case] * int(data.get("real_copies", 1))
        if role in ("eval", "both"):
            evaluation.append(case)
    splits["eval"] = evaluation
    return splits


def case_crops(case, crop_config, organ_keys, cache_dir: Path | None):
    """(crops (n, D, H, W) float32, labels (n,) int64, keys) of one case, cached as safetensors."""
    import torch
    from safetensors.torch import load_file, save

    from MedSORALib.image.crops import organ_crops

    tag = hashlib.sha256(json.dumps([case.case_id, crop_config.to_dict()], sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"{case.case_id}-{tag}.safetensors" if cache_dir else None
    if path is not None and path.is_file():
        data = load_file(str(path))
        keys = [organ_keys[int(i)] for i in data["labels"]]
        return data["crops"], data["labels"], keys
    volume, masks = case.load()
    crops = organ_crops(volume, {k: m for k, m in masks.items() if k in organ_keys}, crop_config)
    keys = list(crops)
    stacked = torch.stack([crops[k] for k in keys]).float()
    labels = torch.tensor([organ_keys.index(k) for k in keys], dtype=torch.int64)
    if path is not None:
        atomic_write_bytes(path, save({"crops": stacked, "labels": labels}))
    return stacked, labels, keys


def prepare_split(cases, crop_config, organ_keys, cache_dir, desc: str, show: bool):
    from tqdm import tqdm

    out = []
    for case in tqdm(cases, desc=desc, disable=None if (show and cases) else True, leave=False):
        crops, labels, keys = case_crops(case, crop_config, organ_keys, cache_dir)
        out.append({"case_id": case.case_id, "crops": crops, "labels": labels, "keys": keys})
    return out


def text_rows_and_embeddings(cfg: dict, split: str, show: bool):
    """Rows of a text split and their (N, 384) sentence embeddings."""
    from medsora_training.image_data import load_symptom_texts

    rows, source = load_symptom_texts(split, cfg["texts"].get("dataset") and REPO / cfg["texts"]["dataset"])
    if not rows:
        return [], np.zeros((0, 384), np.float32), source
    from MedSORALib.text.encoder import get_default_encoder

    emb = get_default_encoder().encode([r["text"] for r in rows])
    return rows, np.asarray(emb, np.float32), source


# ----- evaluation -------------------------------------------------------------------------------------------
def evaluate(model, eval_sets: list[dict], text_rows, text_emb, classes) -> dict:
    """Organ identification on each evaluation volume, and text-to-organ Rank-k / mAP against it."""
    import torch

    from medsora_training.image.evaluation import organ_identification, text_to_organ_metrics
    from MedSORALib.image.model import OrganFeatures

    results = {}
    model.eval()
    with torch.no_grad():
        for item in eval_sets:
            crops = {k: c for k, c in zip(item["keys"], item["crops"])}
            feats: OrganFeatures = model.encode_organs(crops)
            entry = {"organ_identification": organ_identification(feats.organ_probabilities, feats.keys,
                                                                  model.organ_keys)}
            if len(text_rows):
                sims = model.score(feats, text_emb)
                entry["text_to_organ"] = text_to_organ_metrics(sims, feats.keys, text_rows, classes)
            results[item["case_id"]] = entry
    model.train()
    summary: dict = {"by_volume": results}
    if results:
        summary["organ_accuracy"] = float(np.mean([r["organ_identification"]["accuracy"] for r in results.values()]))
        ranked = [r["text_to_organ"] for r in results.values() if "text_to_organ" in r and r["text_to_organ"]["n"]]
        for key in ("rank1", "rank2", "rank3", "mAP"):
            summary[key] = float(np.mean([m[key] for m in ranked])) if ranked else float("nan")
        summary["n_texts"] = ranked[0]["n"] if ranked else 0
    return summary


# ----- set-up -----------------------------------------------------------------------------------------------
def build_model(cfg: dict, fresh: bool):
    """The image-text model of the configuration; a fresh run loads the pretrained 2D weights if given."""
    from MedSORALib.image.crops import CropConfig
    from MedSORALib.image.encoder import encoder_config
    from MedSORALib.image.model import ImageTextModel
    from MedSORALib.organs import STRUCTURES

    mcfg = cfg["model"]
    enc_cfg = encoder_config(mcfg.get("preset", "tiny"), mode=mcfg.get("mode", "xattn"), **(mcfg.get("overrides") or {}))
    crop_cfg = CropConfig.from_dict({**cfg["crop"], "D": enc_cfg.D, "H": enc_cfg.H, "W": enc_cfg.W})
    model = ImageTextModel(enc_cfg, crop_cfg, list(STRUCTURES),
                           metadata={"name": mcfg.get("name", "medsora-image"), "preset": mcfg.get("preset")})
    if mcfg.get("pretrained_2d") and fresh:
        from medsora_training.image.pretrained import load_slice_weights

        report = load_slice_weights(model.encoder.slice_encoder, REPO / mcfg["pretrained_2d"])
        print(f"2D branch initialised from {mcfg['pretrained_2d']}: {report}")
    return model


@dataclass
class RunData:
    """Organ crops and symptom texts of a run, this rank's share of the training data included."""

    prep: dict                 # split name -> [{"case_id", "crops", "labels", "keys"}]
    train_sets: list           # this rank's training volumes
    train_crops: object        # (n, D, H, W) float16 crops of train_sets
    train_labels: object       # (n,) organ indexes
    crops_per_rank: int        # crops every rank goes through per image epoch (the largest share)
    volumes_per_rank: int      # volumes every rank goes through per alignment epoch
    train_rows: list
    train_emb: object          # (N, 384) tensor on the device, or None
    eval_rows: list
    eval_emb: np.ndarray
    text_source: str | None
    eval_sets: list
    val_sets: list


def load_data(cfg: dict, model, output: Path, dist, show: bool) -> RunData:
    """Crops of every split (cached under ``output/cache``) and the text embeddings the stages need."""
    import torch

    from MedSORALib.errors import MedSORAError

    splits = build_cases(cfg)
    cache_dir = Path(cfg["data"]["cache_dir"]) if cfg["data"].get("cache_dir") else output / "cache"
    prep = {name: prepare_split(splits[name], model.crop_config, model.organ_keys, cache_dir, f"crops {name}", show)
            for name in ("train", "val", "eval")}
    if not prep["train"]:
        raise MedSORAError("the configuration gives no training cases")
    train_sets = prep["train"][dist.rank::dist.world]
    # Half precision in memory: crops are in [0, 1] and a large data set (TotalSegmentator) would not fit otherwise.
    for item in train_sets:
        item["crops"] = item["crops"].half()
    if cfg["stages"]["alignment"]["epochs"] > 0:
        train_rows, train_emb, source = text_rows_and_embeddings(cfg, cfg["texts"]["train_split"], show)
    else:
        train_rows, train_emb, source = [], np.zeros((0, 384), np.float32), None
    eval_rows, eval_emb, _ = text_rows_and_embeddings(cfg, cfg["texts"]["eval_split"], show)
    data = RunData(
        prep=prep, train_sets=train_sets, train_crops=torch.cat([s["crops"] for s in train_sets]),
        train_labels=torch.cat([s["labels"] for s in train_sets]),
        crops_per_rank=math.ceil(sum(len(s["labels"]) for s in prep["train"]) / dist.world),
        volumes_per_rank=math.ceil(len(prep["train"]) / dist.world), train_rows=train_rows,
        train_emb=torch.from_numpy(train_emb).to(dist.device) if len(train_rows) else None,
        eval_rows=eval_rows, eval_emb=eval_emb, text_source=source,
        # Headline numbers come from the evaluation volumes (the real CT); validation volumes are reported apart.
        eval_sets=prep["eval"] or prep["val"][:2], val_sets=prep["val"][:cfg["eval"].get("val_volumes", 4)])
    if show:
        print(f"cases: train {len(prep['train'])}, val {len(prep['val'])}, eval {len(prep['eval'])}; "
              f"texts: train {len(train_rows)}, eval {len(eval_rows)} ({source})")
    return data


def mixed_precision(amp: str, device) -> tuple[bool, object, str]:
    """(autocast on, its dtype, the precision used) for the configuration's ``amp`` on ``device``.

    Autocast is used on CUDA only; elsewhere the run says so and trains in float32.
    """
    import torch

    from MedSORALib.errors import MedSORAError

    if amp not in ("none", "bf16", "fp16"):
        raise MedSORAError(f"amp: {amp!r} is not one of none, bf16, fp16")
    if amp == "none":
        return False, torch.float32, "float32"
    if device.type != "cuda":
        print(f"amp: {amp} is used on CUDA only; this {device.type} run trains in float32")
        return False, torch.float32, "float32"
    return True, torch.bfloat16 if amp == "bf16" else torch.float16, amp


TEXT_STAGE_STAMP = "text_stage.json"


def text_stage_inputs(text_config: Path) -> dict:
    """What the text stage fits from, by SHA-256: its configuration and the package's text resources."""
    return {"config": file_sha256(text_config),
            **{folder: file_sha256(resource_path(folder)) for folder in ("dataset", "ood", "knowledge")}}


def run_text_stage(cfg: dict, output: Path, resume: bool) -> dict:
    """Fit the text models (``Training/train_text.py``, in this process) when the configuration asks.

    A resumed run keeps the text models already written when they were fitted from the same configuration and
    resources (``text_stage.json`` beside them records their checksums); otherwise it fits them again.
    """
    stage = cfg["stages"]["text"]
    if not stage.get("enabled"):
        return {"status": "disabled"}
    text_config = REPO / stage.get("config", "Training/configs/text.yaml")
    if not text_config.is_file():
        print(f"text stage skipped: {text_config} not found")
        return {"status": "skipped", "reason": "text training configuration not found"}
    target = output / "text" if not stage.get("output") else REPO / stage["output"]
    inputs, stamp = text_stage_inputs(text_config), target / TEXT_STAGE_STAMP
    if resume and (target / "training_summary.json").is_file():
        try:
            fitted_from = json.loads(stamp.read_text())
        except (OSError, ValueError):
            fitted_from = None
        if fitted_from == inputs:
            print(f"text stage: kept the text models of {target} (same configuration and resources)")
            return {"status": "kept", "output": str(target)}
        print(f"text stage: the text models of {target} were fitted from another configuration or other "
              "resources; fitting them again")
    import torch

    from MedSORALib.errors import MedSORAError
    from medsora_training.train_text import main as train_text

    threads = torch.get_num_threads()
    print(f"text stage: {text_config} -> {target}")
    try:
        status = train_text(["--config", str(text_config), "--output", str(target)])
    except SystemExit as exc:  # train_text reports a missing data set this way
        raise MedSORAError(f"text training failed: {exc}") from None
    finally:
        torch.set_num_threads(threads)
    if status:
        raise MedSORAError(f"text training failed with status {status}")
    atomic_write_text(stamp, json.dumps(inputs, indent=2) + "\n")
    return {"status": "trained", "output": str(target)}


# ----- training ---------------------------------------------------------------------------------------------
@dataclass
class Step:
    """What one optimisation step needs: the (DDP-wrapped) network, losses, precision and random sources."""

    net: object
    data: RunData
    key_class: list            # reasoning class of each organ index
    augment: object            # AugmentConfig
    cls_loss: object
    align_loss: object
    autocast: object           # () -> autocast context
    gen: object                # torch.Generator of the augmentation and the crop order
    rng: np.random.Generator   # text sampling and volume order


def image_step(step: Step, batch, stage: str, device):
    """Organ classification of a batch of crops: (loss, parts); stage ``image_2d`` uses the 2D head only.

    Augmentation runs before autocast, so its sampling grid stays in float32."""
    from medsora_training.image.augment import augment_crops

    x = augment_crops(step.data.train_crops[batch].to(device).float(), step.augment, step.gen)
    y = step.data.train_labels[batch].to(device)
    with step.autocast():
        out = step.net(x)
        if stage == "image_2d":
            out = {"logits_2d": out["logits_2d"]}
        return step.cls_loss(out, y)


def alignment_step(step: Step, volumes, scfg: dict, device):
    """``L_image + w * L_align`` averaged over ``volumes``, each scored against a sample of training texts."""
    import torch

    from medsora_training.image.augment import augment_crops

    data, loss, parts, align_terms = step.data, None, {}, []
    row_class = [r["organ"] for r in data.train_rows]
    for v in volumes:
        item = data.train_sets[int(v)]
        x = augment_crops(item["crops"].to(device).float(), step.augment, step.gen)
        y = item["labels"].to(device)
        pick = step.rng.choice(len(data.train_rows), size=min(int(scfg.get("texts_per_volume", 32)),
                                                              len(data.train_rows)), replace=False)
        vol_class = [step.key_class[int(i)] for i in y.cpu()]
        pos = torch.as_tensor(np.array([[row_class[int(t)] == c for c in vol_class] for t in pick]), device=device)
        with step.autocast():
            # The similarity is part of the (DDP-wrapped) forward so the text projection's gradients are reduced.
            out = step.net(x, data.train_emb[torch.as_tensor(pick, device=device)])
            l_img, p_img = step.cls_loss(out, y)
            sim = out["similarity"]
            l_align = step.align_loss(sim, pos) if bool(pos.any()) else sim.sum() * 0.0
        term = l_img + float(scfg.get("align_weight", 1.0)) * l_align
        loss = term if loss is None else loss + term
        for key, val in p_img.items():
            parts[key] = parts.get(key, 0.0) + val / len(volumes)
        align_terms.append(float(l_align.detach()))
    parts["align"] = float(np.mean(align_terms))
    return loss / len(volumes), parts


def epoch_batches(stage: str, scfg: dict, step: Step) -> list:
    """This rank's batches for one epoch; every rank takes the same number (DDP needs matching steps), so a
    rank with fewer crops or volumes repeats some."""
    import torch

    data = step.data
    if stage in ("image", "image_2d"):
        order = torch.randperm(len(data.train_labels), generator=step.gen).repeat(
            math.ceil(data.crops_per_rank / len(data.train_labels)))[:data.crops_per_rank]
        size = int(scfg["batch_size"])
        return [order[i:i + size] for i in range(0, len(order), size)]
    order = np.tile(step.rng.permutation(len(data.train_sets)),
                    math.ceil(data.volumes_per_rank / len(data.train_sets)))[:data.volumes_per_rank]
    size = int(scfg.get("volumes_per_step", 1))
    return [order[i:i + size] for i in range(0, len(order), size)]


def set_trainable(model, freeze_2d: bool) -> None:
    for p in model.parameters():
        p.requires_grad_(True)
    if freeze_2d and model.encoder.slice_encoder is not None:
        for p in model.encoder.slice_encoder.parameters():
            p.requires_grad_(False)


def train_epoch(step: Step, optimizer, scaler, stage: str, scfg: dict, stage_epoch: int, n_epochs: int,
                label: str, dist, show: bool) -> dict:
    """One epoch of ``stage``; returns its log row (mean losses over ranks, last learning rate, time)."""
    import torch
    from tqdm import tqdm

    from medsora_training.schedule import lr_at, set_rate

    t0 = time.time()
    batches = epoch_batches(stage, scfg, step)
    total, warmup = n_epochs * len(batches), int(scfg.get("warmup_epochs", 0)) * len(batches)
    set_rate(optimizer, weight_decay=float(scfg.get("weight_decay", 0.05)))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sums: dict[str, float] = {}
    bar = tqdm(batches, desc=label, disable=None if show else True, leave=False)
    for b_i, batch in enumerate(bar):
        lr = lr_at(stage_epoch * len(batches) + b_i, total, warmup, float(scfg["lr"]))
        set_rate(optimizer, lr=lr)
        loss, parts = (image_step(step, batch, stage, dist.device) if stage in ("image", "image_2d")
                       else alignment_step(step, batch, scfg, dist.device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()
        for key, val in {"loss": float(loss.detach()), **parts}.items():
            sums[key] = sums.get(key, 0.0) + val
        bar.set_postfix(loss=f"{sums['loss'] / (b_i + 1):.3f}")
    row = {k: round(dist.mean(v / len(batches)), 5) for k, v in sums.items()}
    return {**row, "lr": round(lr, 7), "time_s": round(time.time() - t0, 2)}


def train(cfg: dict, output: Path, resume: Path | None = None, device: str | None = None,
          show_progress: bool = True) -> dict:
    """Run the configured stages; returns the metrics dict also written to ``output/metrics.json``."""
    import torch

    from medsora_training.image.augment import AugmentConfig
    from MedSORALib.image.losses import OrganClassificationLoss, OrganInfoNCE
    from MedSORALib.organs import CLASS_SETTINGS, structure_class
    from medsora_training.checkpoint import load_checkpoint, save_checkpoint
    from medsora_training.distributed import Dist

    t_start = time.time()
    dist = Dist(device or cfg["device"])
    if dist.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    show = show_progress and dist.main
    use_amp, amp_dtype, precision = mixed_precision(cfg.get("amp", "none"), dist.device)
    torch.manual_seed(int(cfg["seed"]) + dist.rank)
    if dist.device.type == "cpu" and cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    output.mkdir(parents=True, exist_ok=True)
    model = build_model(cfg, fresh=resume is None).to(dist.device)
    data = load_data(cfg, model, output, dist, show)
    # The text models are fitted once the image data is known to be there (rank 0 only).
    text_stage = run_text_stage(cfg, output, resume is not None) if dist.main else {"status": "rank>0"}
    classes = CLASS_SETTINGS[cfg["texts"].get("setting", "full11")]
    st = cfg["stages"]
    # image_2d: fine-tune the 2D branch alone (CE_2D); image: all branches (L_image); alignment: L_image + L_align.
    plan = [(name, int(st[name]["epochs"])) for name in ("image_2d", "image", "alignment") if int(st[name]["epochs"])]
    total_epochs = sum(n for _, n in plan)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=float(st["image"]["lr"]),
                                  weight_decay=float(st["image"].get("weight_decay", 0.05)))
    history: list[dict] = []
    start_epoch = 0
    if resume is not None:
        state = load_checkpoint(resume, model, optimizer)
        history, start_epoch = state["history"], int(state["epoch"])
        if show:
            print(f"resumed from {resume} after epoch {start_epoch}")
    scaler = torch.amp.GradScaler(dist.device.type, enabled=use_amp and amp_dtype == torch.float16)
    step = Step(net=dist.wrap(model), data=data, key_class=[structure_class(k) for k in model.organ_keys],
                augment=AugmentConfig(**cfg["augment"]), cls_loss=OrganClassificationLoss(),
                align_loss=OrganInfoNCE(float(st["alignment"].get("temperature", 0.1))),
                autocast=lambda: torch.autocast(device_type=dist.device.type, dtype=amp_dtype, enabled=use_amp),
                gen=torch.Generator().manual_seed(int(cfg["seed"]) * 1000 + dist.rank),
                rng=np.random.default_rng(int(cfg["seed"]) + 7919 * dist.rank))
    epoch = 0
    for stage, n_epochs in plan:
        set_trainable(model, bool(st[stage].get("freeze_2d", False)))
        for stage_epoch in range(n_epochs):
            epoch += 1
            if epoch <= start_epoch:
                continue
            row = {"epoch": epoch, "stage": stage, **train_epoch(
                step, optimizer, scaler, stage, st[stage], stage_epoch, n_epochs,
                f"epoch {epoch}/{total_epochs} {stage}", dist, show)}
            every = int(cfg["eval"].get("every", 1))
            if dist.main and every and (epoch % every == 0 or epoch == total_epochs):
                ev = evaluate(model, data.eval_sets, data.eval_rows, data.eval_emb, classes)
                row.update({f"eval_{k}": round(ev[k], 3) for k in ("organ_accuracy", "rank1", "rank2", "rank3",
                                                                   "mAP") if k in ev})
            history.append(row)
            if dist.main:
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
                save_checkpoint(output / "checkpoint", model, optimizer,
                                {"epoch": epoch, "history": history, "config": cfg})
                write_csv(output / "log.csv", history)
    result = finish(cfg, model, data, plan, history, text_stage, precision, output, t_start) if dist.main else {}
    dist.close()
    return result


def finish(cfg: dict, model, data: RunData, plan, history, text_stage, precision, output: Path, t_start) -> dict:
    """Save the final model, evaluate it and write ``metrics.json`` and ``log.csv``; returns the metrics."""
    from MedSORALib.organs import CLASS_SETTINGS

    classes = CLASS_SETTINGS[cfg["texts"].get("setting", "full11")]
    model.metadata.update({"trained_on": describe_data(data.prep, data.text_source),
                           "epochs": {s: n for s, n in plan}, "precision": precision, "config": cfg})
    model.save(output / "model")
    ev = evaluate(model, data.eval_sets, data.eval_rows, data.eval_emb, classes)
    if data.val_sets and data.prep["eval"]:
        ev["held_out_phantoms"] = {k: v for k, v in evaluate(model, data.val_sets, data.eval_rows, data.eval_emb,
                                                             classes).items() if k != "by_volume"}
    result = {"history": history, "eval": ev, "text_stage": text_stage, "precision": precision,
              "data": describe_data(data.prep, data.text_source),
              "model": model.info(), "wall_time_s": round(time.time() - t_start, 1)}
    atomic_write_text(output / "metrics.json", json.dumps(result, indent=2, default=float))
    write_csv(output / "log.csv", history)
    return result


def describe_data(prep: dict, text_source) -> dict:
    def names(items):
        real = sorted({i["case_id"] for i in items if i["case_id"].startswith("real-")})
        n_ph = sum(1 for i in items if i["case_id"].startswith("phantom-"))
        other = sorted({i["case_id"] for i in items
                        if not i["case_id"].startswith(("real-", "phantom-"))})
        return {"phantoms": n_ph, "real": real,
                "real_copies": sum(1 for i in items if i["case_id"].startswith("real-")), "other": other,
                "organ_crops": int(sum(len(i["keys"]) for i in items))}

    shipped = resource_path("dataset", "symptom_texts.jsonl")
    texts_sha = file_sha256(shipped) if text_source and "knowledge" in str(text_source) and shipped.is_file() else None
    return {"train": names(prep["train"]), "val": names(prep["val"]), "eval": names(prep["eval"]),
            "texts": text_source, "texts_sha256": texts_sha}


def write_csv(path: Path, history: list[dict]) -> None:
    columns: list[str] = []
    for row in history:
        for k in row:
            if k not in columns:
                columns.append(k)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buf.getvalue())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="Training/train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML training configuration (see Training/configs/)")
    parser.add_argument("--output", required=True, help="run folder: model/, checkpoint/, metrics.json, log.csv")
    parser.add_argument("--resume", nargs="?", const="auto", default=None, metavar="CHECKPOINT",
                        help="continue from a checkpoint folder (default: OUTPUT/checkpoint)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the configuration's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from MedSORALib.errors import MedSORAError

    try:
        cfg = load_config(args.config)
        output = Path(args.output)
        resume = None
        if args.resume is not None:
            resume = output / "checkpoint" if args.resume == "auto" else Path(args.resume)
        train(cfg, output, resume=resume, device=args.device, show_progress=not args.no_progress)
    except MedSORAError as exc:
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
