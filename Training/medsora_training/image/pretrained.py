"""Initialise the 2D slice ViT from pretrained weights in a local file.

The paper's 2D branch is an ImageNet-21k ViT-Large/16. Nothing is downloaded here:
the user points to a local ``.safetensors`` file (or a ``.bin``/``.pth`` file, read with
``torch.load(weights_only=True)``) holding one of

- a MedSORA model or slice-encoder state dict (keys ``encoder.slice_encoder.vit.*`` or ``vit.*``);
- a timm ViT (``patch_embed.proj.weight``, ``pos_embed``, ``blocks.N.attn.qkv.weight``, ...), e.g.
  ``vit_large_patch16_224.augreg_in21k``;
- a Hugging Face ``ViTModel`` (``embeddings.patch_embeddings.projection.weight``,
  ``encoder.layer.N.attention.attention.query.weight``, ...), e.g. ``google/vit-large-patch16-224-in21k``.

RGB patch filters are summed over the colour channels (a grey CT slice is R = G = B),
and position embeddings are interpolated when the slice grid differs from the
pretraining grid (e.g. 224 px -> 128 px slices).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from MedSORALib.errors import InputFileError, ModelError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (safetensors, or a torch file loaded with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"pretrained weights {path} do not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    return {k: v for k, v in state.items() if torch.is_tensor(v)}


def _resize_positions(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(1, N, d) patch position embeddings on a square grid -> (1, grid[0] * grid[1], d)."""
    n, d = pos.shape[1], pos.shape[2]
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise ModelError(f"cannot interpolate {n} position embeddings (not a square grid)")
    if (side, side) == tuple(grid):
        return pos
    img = pos.reshape(1, side, side, d).permute(0, 3, 1, 2)
    img = F.interpolate(img, size=grid, mode="bicubic", align_corners=False)
    return img.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d)


def _from_timm(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    out["patch_embedding.patch_embeddings.weight"] = src["patch_embed.proj.weight"]
    out["patch_embedding.patch_embeddings.bias"] = src["patch_embed.proj.bias"]
    pos = src["pos_embed"]
    has_cls_pos = "cls_token" in src and pos.shape[1] > 1 and int(round(math.sqrt(pos.shape[1] - 1))) ** 2 == pos.shape[1] - 1
    if has_cls_pos:
        out["cls_position"] = pos[:, :1]
        pos = pos[:, 1:]
    out["patch_embedding.position_embeddings"] = pos
    if "cls_token" in src:
        out["cls_token"] = src["cls_token"]
    out["norm.weight"], out["norm.bias"] = src["norm.weight"], src["norm.bias"]
    names = {"norm1": "norm1", "norm2": "norm2", "attn.qkv": "attn.qkv", "attn.proj": "attn.out_proj",
             "mlp.fc1": "mlp.linear1", "mlp.fc2": "mlp.linear2"}
    for key, value in src.items():
        m = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", key)
        if m and m.group(2) in names:
            out[f"blocks.{m.group(1)}.{names[m.group(2)]}.{m.group(3)}"] = value
    return out


def _from_hf(src: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    src = {k[4:] if k.startswith("vit.") else k: v for k, v in src.items()}
    out = {}
    out["patch_embedding.patch_embeddings.weight"] = src["embeddings.patch_embeddings.projection.weight"]
    out["patch_embedding.patch_embeddings.bias"] = src["embeddings.patch_embeddings.projection.bias"]
    pos = src["embeddings.position_embeddings"]
    out["cls_position"] = pos[:, :1]
    out["patch_embedding.position_embeddings"] = pos[:, 1:]
    out["cls_token"] = src["embeddings.cls_token"]
    out["norm.weight"], out["norm.bias"] = src["layernorm.weight"], src["layernorm.bias"]
    layers = sorted({int(m.group(1)) for k in src if (m := re.match(r"encoder\.layer\.(\d+)\.", k))})
    for i in layers:
        p = f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            out[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(
                [src[f"{p}attention.attention.{n}.{kind}"] for n in ("query", "key", "value")])
            out[f"blocks.{i}.attn.out_proj.{kind}"] = src[f"{p}attention.output.dense.{kind}"]
            out[f"blocks.{i}.norm1.{kind}"] = src[f"{p}layernorm_before.{kind}"]
            out[f"blocks.{i}.norm2.{kind}"] = src[f"{p}layernorm_after.{kind}"]
            out[f"blocks.{i}.mlp.linear1.{kind}"] = src[f"{p}intermediate.dense.{kind}"]
            out[f"blocks.{i}.mlp.linear2.{kind}"] = src[f"{p}output.dense.{kind}"]
    return out


def convert_to_slice_vit(src: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """Map a foreign state dict onto :class:`~MedSORALib.image.encoder._TokenViT` names; returns (state, format)."""
    if any(k.startswith("encoder.slice_encoder.vit.") for k in src):
        return {k[len("encoder.slice_encoder.vit."):]: v for k, v in src.items()
                if k.startswith("encoder.slice_encoder.vit.")}, "medsora-model"
    if any(k.startswith("vit.patch_embedding.") for k in src):
        return {k[4:]: v for k, v in src.items() if k.startswith("vit.")}, "medsora-slice-encoder"
    if "patch_embed.proj.weight" in src:
        return _from_timm(src), "timm"
    if any(k.endswith("embeddings.patch_embeddings.projection.weight") for k in src):
        return _from_hf(src), "huggingface"
    raise ModelError("pretrained weights are neither a MedSORA, timm nor Hugging Face ViT state dict")


def load_slice_weights(slice_encoder, path: str | Path) -> dict:
    """Load pretrained weights into a :class:`~MedSORALib.image.encoder.SliceViT` in place.

    Returns a report ``{"format", "loaded": n tensors, "skipped": [names]}``.

    Raises:
        ModelError: widths, depths or patch sizes do not match the encoder's configuration.
    """
    state, fmt = convert_to_slice_vit(read_state_dict(path))
    vit = slice_encoder.vit
    target = vit.state_dict()
    weight = state.get("patch_embedding.patch_embeddings.weight")
    if weight is not None and weight.shape[1] != 1:
        state["patch_embedding.patch_embeddings.weight"] = weight.sum(dim=1, keepdim=True)
    pos = state.get("patch_embedding.position_embeddings")
    want = target["patch_embedding.position_embeddings"]
    if pos is not None and pos.shape != want.shape:
        state["patch_embedding.position_embeddings"] = _resize_positions(pos, vit.patch_grid)
    loaded, skipped = 0, []
    new_state = dict(target)
    for key, value in state.items():
        if key not in target:
            skipped.append(key)
            continue
        if value.shape != target[key].shape:
            raise ModelError(f"pretrained {key} has shape {tuple(value.shape)}, the encoder needs "
                             f"{tuple(target[key].shape)}; choose the matching preset")
        new_state[key] = value.to(target[key].dtype)
        loaded += 1
    vit.load_state_dict(new_state, strict=True)
    return {"format": fmt, "loaded": loaded, "skipped": skipped}
