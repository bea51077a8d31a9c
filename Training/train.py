"""Train MedSORA's models: text reasoning, the organ image encoder, and the text-image alignment.

Stages (each switched on and sized in the YAML configuration):

1. ``text``: the organ anchors and relevance MLP, by running ``Training/train_text.py``
   (skipped with a message when that program or its configuration is absent);
2. ``image``: the 2D-3D organ image encoder with its organ-classification heads,
   ``L_image = CE_2D + CE_3D + CE_fused`` (README, "Image side");
3. ``alignment``: ``L_total = L_image + L_align``, where ``L_align`` is InfoNCE (tau = 0.1) of
   symptom texts against the organs of one volume, the similarity being the mean over
   slices of the cosine between organ slice features and the projected 384-d sentence
   embedding of the text (README, "Image side").

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
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from MedSORALib.files import atomic_write_bytes, atomic_write_text  # noqa: E402  (after the path set-up)

import numpy as np  # noqa: E402

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
    "eval": {"every": 1},
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


# ----- distributed ------------------------------------------------------------------------------------------
class Dist:
    """World size, rank and device; DDP when ``WORLD_SIZE`` > 1 (as set by torchrun)."""

    def __init__(self, device: str):
        import torch

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            from MedSORALib.errors import MedSORAError

            raise MedSORAError("--device cuda was asked for but CUDA is not available")
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if device.startswith("cuda") else "gloo"
            dist.init_process_group(backend=backend)
            if device.startswith("cuda"):
                torch.cuda.set_device(self.local_rank)
                device = f"cuda:{self.local_rank}"
        self.device = torch.device(device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        """Average a float over ranks."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


# ----- data -------------------------------------------------------------------------------------------------
def build_cases(cfg: dict) -> dict[str, list]:
    """Training / validation cases (split by patient) and evaluation cases (the real CTs marked for eval)."""
    from Training.datasets import (btcv_cases, labelmap_cases, phantom_cases, split_by_patient,
                                   totalsegmentator_cases)

    data = cfg["data"]
    pool = []
    ph = data.get("phantoms") or {}
    if ph.get("n", 0):
        kwargs = {k: v for k, v in ph.items() if k not in ("n", "seed")}
        pool += phantom_cases(int(ph["n"]), seed=int(ph.get("seed", 1000)), **kwargs)
    if data.get("btcv"):
        pool += btcv_cases(REPO / data["btcv"])
    if data.get("totalsegmentator"):
        pool += totalsegmentator_cases(REPO / data["totalsegmentator"])
    for item in data.get("labelmaps") or []:
        pool += labelmap_cases([(REPO / item["image"], REPO / item["labels"])], item["scheme"])
    splits = split_by_patient(pool, data["split"], seed=int(data.get("split_seed", 0))) if pool else \
        {"train": [], "val": [], "test": []}
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
    from Training.datasets import load_symptom_texts

    rows, source = load_symptom_texts(split, cfg["texts"].get("dataset") and REPO / cfg["texts"]["dataset"])
    if not rows:
        return [], np.zeros((0, 384), np.float32), source
    from MedSORALib.text.encoder import get_default_encoder

    emb = get_default_encoder().encode([r["text"] for r in rows])
    return rows, np.asarray(emb, np.float32), source


# ----- checkpoints ------------------------------------------------------------------------------------------
def optimizer_to_safetensors(optimizer) -> tuple[bytes, str]:
    """Optimizer state as (safetensors bytes of its tensors, JSON of everything else); no pickles."""
    import torch
    from safetensors.torch import save

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    meta = {"param_groups": state["param_groups"], "scalars": scalars}
    return save(tensors) if tensors else save({"_empty": torch.zeros(1)}), json.dumps(meta)


def optimizer_from_safetensors(optimizer, blob: bytes, meta_json: str) -> None:
    from safetensors.torch import load

    tensors = load(blob)
    meta = json.loads(meta_json)
    state: dict = {}
    for key, value in tensors.items():
        if key == "_empty":
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    # JSON turns tuples (Adam's betas) into lists; give them back their type.
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(folder: Path, model, optimizer, state: dict) -> None:
    blob, meta = optimizer_to_safetensors(optimizer)
    model.save(folder)
    atomic_write_bytes(folder / "optimizer.safetensors", blob)
    atomic_write_text(folder / "optimizer.json", meta)
    atomic_write_text(folder / "state.json", json.dumps(state, indent=2))


def load_checkpoint(folder: Path, model, optimizer) -> dict:
    from safetensors.torch import load_file

    from MedSORALib.errors import ModelError

    if not (folder / "state.json").is_file():
        raise ModelError(f"no checkpoint in {folder} (state.json missing)")
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    optimizer_from_safetensors(optimizer, (folder / "optimizer.safetensors").read_bytes(),
                               (folder / "optimizer.json").read_text())
    return json.loads((folder / "state.json").read_text())


# ----- evaluation -------------------------------------------------------------------------------------------
def evaluate(model, eval_sets: list[dict], text_rows, text_emb, classes) -> dict:
    """Organ identification on each evaluation volume, and text-to-organ Rank-k / mAP against it."""
    import torch

    from MedSORALib.image.evaluation import organ_identification, text_to_organ_metrics
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


# ----- training ---------------------------------------------------------------------------------------------
def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """Linear warm-up then cosine decay to 5 % of the base rate."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def run_text_stage(cfg: dict, output: Path) -> dict:
    stage = cfg["stages"]["text"]
    program = REPO / "Training" / "train_text.py"
    if not stage.get("enabled"):
        return {"status": "disabled"}
    text_config = REPO / stage.get("config", "Training/configs/text.yaml")
    if not program.is_file() or not text_config.is_file():
        print(f"text stage skipped: {program.name if not program.is_file() else text_config} not found")
        return {"status": "skipped", "reason": "text training program or configuration not found"}
    target = output / "text" if not stage.get("output") else REPO / stage["output"]
    cmd = [sys.executable, str(program), "--config", str(text_config), "--output", str(target)]
    print("text stage:", " ".join(cmd))
    done = subprocess.run(cmd, cwd=str(REPO))
    if done.returncode != 0:
        from MedSORALib.errors import MedSORAError

        raise MedSORAError(f"text training failed with exit code {done.returncode}")
    return {"status": "trained", "output": str(target)}


def train(cfg: dict, output: Path, resume: Path | None = None, device: str | None = None,
          show_progress: bool = True) -> dict:
    """Run the configured stages; returns the metrics dict also written to ``output/metrics.json``."""
    import torch
    from tqdm import tqdm

    from MedSORALib.image.augment import AugmentConfig, augment_crops
    from MedSORALib.image.crops import CropConfig
    from MedSORALib.image.encoder import encoder_config
    from MedSORALib.image.losses import OrganClassificationLoss, OrganInfoNCE
    from MedSORALib.image.model import ImageTextModel
    from MedSORALib.organs import CLASS_SETTINGS, STRUCTURES, structure_class

    t_start = time.time()
    dist = Dist(device or cfg["device"])
    if dist.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    show = show_progress and dist.main
    torch.manual_seed(int(cfg["seed"]) + dist.rank)
    if dist.device.type == "cpu" and cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    output.mkdir(parents=True, exist_ok=True)

    text_stage = run_text_stage(cfg, output) if dist.main else {"status": "rank>0"}

    mcfg = cfg["model"]
    enc_cfg = encoder_config(mcfg.get("preset", "tiny"), mode=mcfg.get("mode", "xattn"), **(mcfg.get("overrides") or {}))
    crop_cfg = CropConfig.from_dict({**cfg["crop"], "D": enc_cfg.D, "H": enc_cfg.H, "W": enc_cfg.W})
    organ_keys = list(STRUCTURES)
    model = ImageTextModel(enc_cfg, crop_cfg, organ_keys,
                           metadata={"name": mcfg.get("name", "medsora-image"), "preset": mcfg.get("preset")})
    if mcfg.get("pretrained_2d") and resume is None:
        from MedSORALib.image.pretrained import load_slice_weights

        report = load_slice_weights(model.encoder.slice_encoder, REPO / mcfg["pretrained_2d"])
        print(f"2D branch initialised from {mcfg['pretrained_2d']}: {report}")
    model.to(dist.device)

    # Data.
    splits = build_cases(cfg)
    cache_dir = Path(cfg["data"]["cache_dir"]) if cfg["data"].get("cache_dir") else output / "cache"
    prep = {name: prepare_split(splits[name], crop_cfg, organ_keys, cache_dir, f"crops {name}", show)
            for name in ("train", "val", "eval")}
    if not prep["train"]:
        from MedSORALib.errors import MedSORAError

        raise MedSORAError("the configuration gives no training cases")
    # Each rank trains on its share of the training cases.
    train_sets = prep["train"][dist.rank::dist.world] if dist.world > 1 else prep["train"]
    classes = CLASS_SETTINGS[cfg["texts"].get("setting", "full11")]
    need_texts = cfg["stages"]["alignment"]["epochs"] > 0
    train_rows, train_emb, text_source = text_rows_and_embeddings(cfg, cfg["texts"]["train_split"], show) \
        if need_texts else ([], np.zeros((0, 384), np.float32), None)
    eval_rows, eval_emb, _ = text_rows_and_embeddings(cfg, cfg["texts"]["eval_split"], show)
    # Headline numbers come from the evaluation volumes (the real CT); held-out phantoms are reported apart.
    eval_sets = prep["eval"] or prep["val"][:2]
    val_sets = prep["val"][:4]
    if show:
        print(f"cases: train {len(prep['train'])}, val {len(prep['val'])}, eval {len(prep['eval'])}; "
              f"texts: train {len(train_rows)}, eval {len(eval_rows)} ({text_source})")

    aug = AugmentConfig(**cfg["augment"])
    cls_loss = OrganClassificationLoss()
    st = cfg["stages"]
    align_loss = OrganInfoNCE(float(st["alignment"].get("temperature", 0.1)))
    # image_2d: fine-tune the 2D branch alone (CE_2D); image: all branches (L_image); alignment: L_image + L_align.
    plan = [(name, int(st[name]["epochs"])) for name in ("image_2d", "image", "alignment") if int(st[name]["epochs"])]
    total_epochs = sum(n for _, n in plan)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=float(st["image"]["lr"]),
                                  weight_decay=float(st["image"].get("weight_decay", 0.05)))
    history: list[dict] = []
    start_epoch = 0
    if resume is not None:
        state = load_checkpoint(resume, model, optimizer)
        history = state["history"]
        start_epoch = int(state["epoch"])
        if show:
            print(f"resumed from {resume} after epoch {start_epoch}")
    net = model
    if dist.world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None, find_unused_parameters=True)

    amp = cfg.get("amp", "none")
    use_amp = dist.device.type == "cuda" and amp in ("bf16", "fp16")
    amp_dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp == "fp16")
    gen = torch.Generator().manual_seed(int(cfg["seed"]) * 1000 + dist.rank)
    rng = np.random.default_rng(int(cfg["seed"]) + 7919 * dist.rank)

    # Half precision in memory: crops are in [0, 1] and a large data set (TotalSegmentator) would not fit otherwise.
    for s_ in train_sets:
        s_["crops"] = s_["crops"].half()
    train_crops = torch.cat([s_["crops"] for s_ in train_sets])
    crops_per_rank = math.ceil(sum(len(s["labels"]) for s in prep["train"]) / dist.world)
    volumes_per_rank = math.ceil(len(prep["train"]) / dist.world)
    train_labels = torch.cat([s["labels"] for s in train_sets])
    row_class = [r["organ"] for r in train_rows]
    train_emb_t = torch.from_numpy(train_emb).to(dist.device) if len(train_rows) else None
    key_class = [structure_class(k) for k in organ_keys]

    def step_optimizer(loss):
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(optimizer)
        scaler.update()

    def set_trainable(stage: str) -> None:
        frozen_2d = bool(st[stage].get("freeze_2d", False))
        for p in model.parameters():
            p.requires_grad_(True)
        if frozen_2d and model.encoder.slice_encoder is not None:
            for p in model.encoder.slice_encoder.parameters():
                p.requires_grad_(False)

    epoch = 0
    for stage, n_epochs in plan:
        scfg = st[stage]
        set_trainable(stage)
        if stage in ("image", "image_2d"):
            steps_per_epoch = max(1, math.ceil(crops_per_rank / int(scfg["batch_size"])))
        else:
            steps_per_epoch = max(1, math.ceil(volumes_per_rank / int(scfg.get("volumes_per_step", 1))))
        total_steps = n_epochs * steps_per_epoch
        warmup = int(scfg.get("warmup_epochs", 0)) * steps_per_epoch
        for stage_epoch in range(n_epochs):
            epoch += 1
            if epoch <= start_epoch:
                continue
            t0 = time.time()
            for group in optimizer.param_groups:
                group["weight_decay"] = float(scfg.get("weight_decay", 0.05))
            sums: dict[str, float] = {}
            count = 0
            if stage in ("image", "image_2d"):
                # Every rank takes the same number of batches (DDP needs matching steps); a rank with fewer
                # crops repeats some.
                order = torch.randperm(len(train_labels), generator=gen).repeat(
                    math.ceil(crops_per_rank / len(train_labels)))[:crops_per_rank]
                bs = int(scfg["batch_size"])
                batches = [order[i:i + bs] for i in range(0, len(order), bs)]
            else:
                vorder = np.tile(rng.permutation(len(train_sets)),
                                 math.ceil(volumes_per_rank / len(train_sets)))[:volumes_per_rank]
                k = int(scfg.get("volumes_per_step", 1))
                batches = [vorder[i:i + k] for i in range(0, len(vorder), k)]
            bar = tqdm(batches, desc=f"epoch {epoch}/{total_epochs} {stage}", disable=None if show else True, leave=False)
            for b_i, batch in enumerate(bar):
                lr = lr_at(stage_epoch * steps_per_epoch + b_i, total_steps, warmup, float(scfg["lr"]))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                with torch.autocast(device_type=dist.device.type, dtype=amp_dtype, enabled=use_amp):
                    if stage in ("image", "image_2d"):
                        x = augment_crops(train_crops[batch].to(dist.device).float(), aug, gen)
                        y = train_labels[batch].to(dist.device)
                        out = net(x)
                        if stage == "image_2d":
                            out = {"logits_2d": out["logits_2d"]}
                        loss, parts = cls_loss(out, y)
                    else:
                        loss, parts = None, {}
                        align_terms = []
                        for v in batch:
                            item = train_sets[int(v)]
                            x = augment_crops(item["crops"].to(dist.device).float(), aug, gen)
                            y = item["labels"].to(dist.device)
                            n_txt = min(int(scfg.get("texts_per_volume", 32)), len(train_rows))
                            pick = rng.choice(len(train_rows), size=n_txt, replace=False)
                            # Text projection inside the (DDP-wrapped) forward so its gradients are reduced too.
                            out = net(x, train_emb_t[torch.as_tensor(pick, device=dist.device)])
                            l_img, p_img = cls_loss(out, y)
                            text = out["text_features"]
                            from MedSORALib.image.losses import slice_mean_similarity

                            sim = slice_mean_similarity(out["features"].float(), text.float())
                            vol_class = [key_class[int(i)] for i in y.cpu()]
                            pos = torch.tensor([[row_class[int(t)] == c for c in vol_class] for t in pick],
                                               device=dist.device)
                            l_align = align_loss(sim, pos) if bool(pos.any()) else sim.sum() * 0.0
                            term = l_img + float(scfg.get("align_weight", 1.0)) * l_align
                            loss = term if loss is None else loss + term
                            for key, val in p_img.items():
                                parts[key] = parts.get(key, 0.0) + val / len(batch)
                            align_terms.append(float(l_align.detach()))
                        loss = loss / len(batch)
                        parts["align"] = float(np.mean(align_terms))
                step_optimizer(loss)
                count += 1
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
                for key, val in parts.items():
                    sums[key] = sums.get(key, 0.0) + val
                bar.set_postfix(loss=f"{sums['loss'] / count:.3f}")
            row = {"epoch": epoch, "stage": stage}
            row.update({k: round(dist.mean(v / count), 5) for k, v in sums.items()})
            row["lr"] = round(lr, 7)
            row["time_s"] = round(time.time() - t0, 2)
            every = int(cfg["eval"].get("every", 1))
            if dist.main and every and (epoch % every == 0 or epoch == total_epochs):
                ev = evaluate(model, eval_sets, eval_rows, eval_emb, classes)
                for key in ("organ_accuracy", "rank1", "rank2", "rank3", "mAP"):
                    if key in ev:
                        row[f"eval_{key}"] = round(ev[key], 3)
            history.append(row)
            if dist.main:
                print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
                save_checkpoint(output / "checkpoint", model, optimizer,
                                {"epoch": epoch, "history": history, "config": cfg})
                write_csv(output / "log.csv", history)

    result: dict = {}
    if dist.main:
        model.metadata.update({
            "trained_on": describe_data(prep, text_source),
            "epochs": {s: n for s, n in plan},
            "config": cfg,
        })
        model.save(output / "model")
        ev = evaluate(model, eval_sets, eval_rows, eval_emb, classes)
        if val_sets and prep["eval"]:
            ev["held_out_phantoms"] = {k: v for k, v in evaluate(model, val_sets, eval_rows, eval_emb,
                                                                 classes).items() if k != "by_volume"}
        result = {"history": history, "eval": ev, "text_stage": text_stage,
                  "data": describe_data(prep, text_source),
                  "model": model.info(), "wall_time_s": round(time.time() - t_start, 1)}
        atomic_write_text(output / "metrics.json", json.dumps(result, indent=2, default=float))
        write_csv(output / "log.csv", history)
    dist.close()
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

    shipped = REPO / "MedSORALib" / "resources" / "dataset" / "symptom_texts.jsonl"
    texts_sha = hashlib.sha256(shipped.read_bytes()).hexdigest() if text_source and "knowledge" in str(text_source) \
        and shipped.is_file() else None
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
