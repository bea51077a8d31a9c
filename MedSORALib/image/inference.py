"""The image-text model for inference, in plain torch.

Training builds the encoder from MONAI blocks (:mod:`.encoder`); importing
MONAI costs seconds, so scoring runs :class:`InferenceModel` instead: the same
network written with ``torch.nn`` layers only, with parameter names of its
own. :func:`inference_state` maps a saved ``model.safetensors`` (whose keys
follow the training modules' names) onto it, so a MONAI release that adds or
renames a layer changes this one table, not the shipped weights. Testing
checks that both networks give the same features within float tolerance.

:class:`OrganScoring` holds the inference API (``encode_organs``, ``score``,
``encode_volume``, ``info``) shared by :class:`InferenceModel` and the
training-time :class:`~MedSORALib.image.model.ImageTextModel`.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..files import resource_path
from ..organs import STRUCTURES
from .crops import CropConfig
from .encoder import EncoderConfig, SliceVolumeConcat, classification_head, encoder_outputs, organ_logits
from .losses import slice_mean_similarity

DEFAULT_WEIGHTS_DIR = resource_path("weights", "image")
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"

#: saved (training) parameter name patterns -> inference names; ``None`` drops a parameter the forward never uses
#: (MONAI >= 1.4 builds ``norm_cross_attn`` in every ``TransformerBlock``, used only with cross-attention).
_RENAMES: list[tuple[str, str | None]] = [
    (r"encoder\.(slice|volume)_encoder\.vit\.blocks\.(\d+)\.norm_cross_attn\.(weight|bias)", None),
    (r"encoder\.(slice|volume)_encoder\.vit\.blocks\.(\d+)\.norm([12])\.(weight|bias)", r"\1.layers.\2.norm\3.\4"),
    (r"encoder\.(slice|volume)_encoder\.vit\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"\1.layers.\2.qkv.\3"),
    (r"encoder\.(slice|volume)_encoder\.vit\.blocks\.(\d+)\.attn\.out_proj\.(weight|bias)", r"\1.layers.\2.proj.\3"),
    (r"encoder\.(slice|volume)_encoder\.vit\.blocks\.(\d+)\.mlp\.linear([12])\.(weight|bias)", r"\1.layers.\2.fc\3.\4"),
    (r"encoder\.(slice|volume)_encoder\.vit\.patch_embedding\.patch_embeddings\.(weight|bias)", r"\1.patches.\2"),
    (r"encoder\.(slice|volume)_encoder\.vit\.patch_embedding\.position_embeddings", r"\1.positions"),
    (r"encoder\.(slice|volume)_encoder\.vit\.(cls_token|cls_position)", r"\1.\2"),
    (r"encoder\.(slice|volume)_encoder\.vit\.norm\.(weight|bias)", r"\1.norm.\2"),
    (r"encoder\.volume_encoder\.to_width\.(weight|bias)", r"volume.to_width.\1"),
    (r"encoder\.fusion\.norm_(query|context)\.(weight|bias)", r"fusion.norm_\1.\2"),
    (r"encoder\.fusion\.attention\.to_([qkv])\.(weight|bias)", r"fusion.\1.\2"),
    (r"encoder\.fusion\.attention\.out_proj\.(weight|bias)", r"fusion.proj.\1"),
    (r"encoder\.fusion\.proj\.(weight|bias)", r"fusion.proj.\1"),
    (r"encoder\.head_(2d|3d|fused)\.(\d+)\.(weight|bias)", r"head_\1.\2.\3"),
    (r"text_projection\.(weight|bias)", r"text_projection.\1"),
]


def inference_state(saved: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A saved model's tensors under :class:`InferenceModel`'s names; unknown names raise :class:`ModelError`."""
    out: dict[str, torch.Tensor] = {}
    for key, value in saved.items():
        for pattern, target in _RENAMES:
            if re.fullmatch(pattern, key):
                if target is not None:
                    out[re.sub(pattern, target, key)] = value
                break
        else:
            raise ModelError(f"the image weights hold a tensor this version does not know: {key}")
    return out


@dataclass
class OrganFeatures:
    """Image features of the organs of one volume.

    Attributes:
        keys: organ keys, the column order of :meth:`OrganScoring.score`.
        slice_features: (n_organs, S, d) L2-normalised fused slice features (S = D, or 1 in mode "3d").
        organ_probabilities: (n_organs, n_classes) softmax of the organ-classification head
            (columns: the model's ``organ_keys``).
    """

    keys: list[str]
    slice_features: torch.Tensor
    organ_probabilities: np.ndarray

    def predicted_organs(self, organ_keys: Sequence[str]) -> dict[str, str]:
        """Organ named by the classification head for each crop key."""
        return {k: organ_keys[int(i)] for k, i in zip(self.keys, self.organ_probabilities.argmax(1))}


# ----- the network -------------------------------------------------------------------------------------
class _Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))`` (erf GELU)."""

    def __init__(self, width: int, heads: int, mlp: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, mlp)
        self.fc2 = nn.Linear(mlp, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, width = x.shape
        # qkv's output features are ordered (q/k/v, head, channel).
        q, k, v = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        x = x + self.proj(_attend(q, k, v).transpose(1, 2).reshape(b, n, width))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention of (B, heads, N, c) queries over (B, heads, M, c) keys and values."""
    return ((q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5).softmax(-1) @ v


class _ViT(nn.Module):
    """Convolutional patches + learnable positions, a [CLS] token with its own position, blocks, LayerNorm."""

    def __init__(self, spatial_dims: int, img_size, patch, width: int, layers: int, heads: int, mlp: int):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        n_patches = int(np.prod([int(s) // int(p) for s, p in zip(img_size, patch)]))
        self.patches = conv(1, width, kernel_size=tuple(patch), stride=tuple(patch))
        self.positions = nn.Parameter(torch.zeros(1, n_patches, width))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_position = nn.Parameter(torch.zeros(1, 1, width))
        self.layers = nn.ModuleList(_Block(width, heads, mlp) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, 1, *spatial) -> [CLS] output (B, width)."""
        tokens = self.patches(x).flatten(2).transpose(1, 2) + self.positions
        cls = (self.cls_token + self.cls_position).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        for layer in self.layers:
            tokens = layer(tokens)
        return self.norm(tokens[:, 0])


class _SliceEncoder(_ViT):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w = x.shape
        return super().forward(x.reshape(b * d, 1, h, w)).reshape(b, d, -1)


class _VolumeEncoder(_ViT):
    def __init__(self, config: EncoderConfig):
        super().__init__(3, (config.D, config.H, config.W), config.volume_patch, config.volume_hidden,
                         config.volume_layers, config.volume_heads, config.volume_mlp)
        self.to_width = (nn.Identity() if config.volume_hidden == config.slice_hidden
                         else nn.Linear(config.volume_hidden, config.slice_hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_width(super().forward(x[:, None]))


class _CrossAttention(nn.Module):
    """``F2D + Attn(Q = norm(f3D), K = V = norm(F2D))``; the one query's output is added to every slice."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm_query = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(width)
        self.q, self.k, self.v = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)
        self.proj = nn.Linear(width, width)

    def forward(self, f2d: torch.Tensor, f3d: torch.Tensor) -> torch.Tensor:
        b, n, width = f2d.shape

        def split(t):
            return t.view(b, t.shape[1], self.heads, width // self.heads).transpose(1, 2)

        context = self.norm_context(f2d)
        q = split(self.q(self.norm_query(f3d[:, None])))
        out = _attend(q, split(self.k(context)), split(self.v(context))).transpose(1, 2).reshape(b, 1, width)
        return f2d + self.proj(out)


class InferenceEncoder(nn.Module):
    """The organ encoder's forward pass (every fusion mode) with the output dict of ``OrganImageEncoder``."""

    def __init__(self, config: EncoderConfig):
        super().__init__()
        width, mode = config.slice_hidden, config.mode
        self.slice = (_SliceEncoder(2, (config.H, config.W), config.slice_patch, width, config.slice_layers,
                                    config.slice_heads, config.slice_mlp) if mode != "3d" else None)
        self.volume = _VolumeEncoder(config) if mode != "2d" else None
        self.fusion = (_CrossAttention(width, config.fusion_heads) if mode == "xattn"
                       else SliceVolumeConcat(width) if mode == "concat" else None)
        self.head_2d = classification_head(width, config.n_classes) if self.slice is not None else None
        self.head_3d = classification_head(width, config.n_classes) if self.volume is not None else None
        self.head_fused = classification_head(width, config.n_classes) if self.fusion is not None else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f2d = self.slice(x) if self.slice is not None else None
        f3d = self.volume(x) if self.volume is not None else None
        return encoder_outputs(f2d, f3d, self.fusion, self.head_2d, self.head_3d, self.head_fused)

    organ_logits = staticmethod(organ_logits)


# ----- the inference API ---------------------------------------------------------------------------------
class OrganScoring:
    """Encoding organ crops and scoring texts against them; needs ``encoder``, ``text_projection``,
    ``encoder_config``, ``crop_config``, ``organ_keys``, ``metadata`` and ``source`` on the module."""

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode_organs(self, crops: Mapping[str, torch.Tensor], batch_size: int = 16) -> OrganFeatures:
        """Encode the crops of one volume.

        Args:
            crops: organ key -> (D, H, W) tensor from :func:`MedSORALib.image.crops.organ_crops`
                with this model's ``crop_config``.
            batch_size: organs per forward pass.

        Returns:
            :class:`OrganFeatures` with keys in the order of ``crops``.
        """
        if not crops:
            raise ModelError("no organ crops to encode")
        expected = (self.encoder_config.D, self.encoder_config.H, self.encoder_config.W)
        keys = list(crops)
        for k in keys:
            if tuple(crops[k].shape) != expected:
                raise ModelError(f"crop of {k} has shape {tuple(crops[k].shape)}, the model expects {expected}")
        was_training = self.training
        self.eval()
        feats, probs = [], []
        try:
            for start in range(0, len(keys), batch_size):
                batch = torch.stack([torch.as_tensor(crops[k], dtype=torch.float32) for k in
                                     keys[start:start + batch_size]]).to(self.device)
                out = self.encoder(batch)
                feats.append(torch.nn.functional.normalize(out["features"].float(), dim=-1).cpu())
                probs.append(torch.softmax(self.encoder.organ_logits(out).float(), dim=-1).cpu())
        finally:
            self.train(was_training)
        return OrganFeatures(keys=keys, slice_features=torch.cat(feats), organ_probabilities=torch.cat(probs).numpy())

    @torch.no_grad()
    def score(self, features: OrganFeatures, text_embeddings: np.ndarray) -> np.ndarray:
        """Cosine similarity (mean over slices) of each text with each organ.

        Args:
            features: from :meth:`encode_organs`.
            text_embeddings: (N, text_dim) float sentence embeddings (``TextEncoder.encode``).

        Returns:
            float32 (N, len(features.keys)) in [-1, 1].
        """
        emb = np.asarray(text_embeddings, dtype=np.float32)
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2 or emb.shape[1] != self.encoder_config.text_dim:
            raise ModelError(f"text embeddings must be (N, {self.encoder_config.text_dim}), got {emb.shape}")
        text = self.text_projection(torch.from_numpy(emb).to(self.device)).float().cpu()
        sims = slice_mean_similarity(features.slice_features.float(), text)
        return sims.clamp(-1.0, 1.0).numpy().astype(np.float32)

    def encode_volume(self, volume, masks: Mapping[str, np.ndarray]) -> OrganFeatures:
        """Crop every organ of ``volume`` with this model's crop settings and encode them."""
        from .crops import organ_crops

        return self.encode_organs(organ_crops(volume, masks, self.crop_config))

    def info(self) -> dict:
        """Model identity for JSON outputs."""
        meta = self.metadata
        return {
            "name": meta.get("name", "medsora-image"),
            "version": meta.get("version"),
            "mode": self.encoder_config.mode,
            "preset": meta.get("preset"),
            "width": self.encoder_config.slice_hidden,
            "input": [self.encoder_config.D, self.encoder_config.H, self.encoder_config.W],
            "parameters": int(sum(p.numel() for p in self.parameters())),
            "organ_keys": list(self.organ_keys),
            "trained_on": meta.get("trained_on"),
            "source": self.source,
            "weights_sha256": meta.get("weights_sha256"),
        }


def parse_config(config: Mapping) -> tuple[EncoderConfig, CropConfig, list[str], dict]:
    """Encoder sizes, crop settings, organ keys and metadata of a model folder's ``config.json``."""
    try:
        encoder = EncoderConfig.from_dict(config["encoder"])
        crop = CropConfig.from_dict(config["crop"])
        keys = list(config.get("organ_keys", list(STRUCTURES)))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"invalid image model configuration: {exc}") from exc
    return encoder, crop, keys, dict(config.get("metadata") or {})


def checked_crop_config(encoder_config: EncoderConfig, crop_config: CropConfig | None,
                        organ_keys: Sequence[str]) -> CropConfig:
    """The crop settings of a model (default: the encoder's input size); raises when sizes or classes differ."""
    if encoder_config.n_classes != len(organ_keys):
        raise ModelError(f"encoder has {encoder_config.n_classes} classes but {len(organ_keys)} organ keys")
    crop_config = crop_config or CropConfig(D=encoder_config.D, H=encoder_config.H, W=encoder_config.W)
    if (crop_config.D, crop_config.H, crop_config.W) != (encoder_config.D, encoder_config.H, encoder_config.W):
        raise ModelError("crop size and encoder input size differ")
    return crop_config


def read_model_folder(weights_dir: str | os.PathLike | None) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    """(folder, parsed config.json, tensors of model.safetensors) of a model folder (default: shipped)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
    cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelError(f"no image model in {folder} (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{cfg_path} is not valid JSON: {exc}") from exc
    try:
        state = load_file(str(w_path))
    except (OSError, SafetensorError) as exc:
        raise ModelError(f"cannot read the weights in {w_path}: {str(exc).splitlines()[0]}") from exc
    return folder, config, state


class InferenceModel(OrganScoring, nn.Module):
    """The image-text model for scoring: :class:`InferenceEncoder` plus ``W_align`` (text -> width d)."""

    def __init__(self, encoder_config: EncoderConfig, crop_config: CropConfig | None = None,
                 organ_keys: Sequence[str] = STRUCTURES, metadata: dict | None = None):
        super().__init__()
        self.encoder_config = encoder_config
        self.crop_config = checked_crop_config(encoder_config, crop_config, organ_keys)
        self.organ_keys, self.metadata = list(organ_keys), dict(metadata or {})
        self.encoder = InferenceEncoder(encoder_config)
        self.text_projection = nn.Linear(encoder_config.text_dim, encoder_config.slice_hidden)
        self.source: str | None = None

    def load_saved_state(self, saved: Mapping[str, torch.Tensor], assign: bool = False) -> None:
        """Load a saved ``model.safetensors``'s tensors (training names), strictly; ``assign`` as in torch."""
        state = inference_state(saved)
        ours = {("encoder." + k if not k.startswith("text_projection.") else k): v for k, v in state.items()}
        self.load_state_dict(ours, strict=True, assign=assign)

    @classmethod
    def load(cls, weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "InferenceModel":
        """Load a model folder (default: the shipped weights) onto ``device``.

        Raises:
            ModelError: the folder, its config or its weights are missing or do not match.
        """
        folder, config, saved = read_model_folder(weights_dir)
        model = cls(*parse_config(config))
        try:
            model.load_saved_state(saved, assign=True)
        except RuntimeError as exc:
            w_path = folder / WEIGHTS_FILE
            raise ModelError(f"weights in {w_path} do not fit the configuration: {str(exc).splitlines()[0]}") from exc
        model.source = str(folder)
        return model.eval().to(device)
