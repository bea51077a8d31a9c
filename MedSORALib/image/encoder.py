"""The organ image encoder: a 2D slice ViT, a 3D volume ViT and their cross-attention fusion (docs/training.md, "Image side").

Built from MONAI blocks (``PatchEmbeddingBlock``, ``TransformerBlock``,
``CrossAttentionBlock``). Shapes: an organ crop batch is ``(B, D, H, W)``
(``D`` axial slices of ``H x W`` pixels, values in [0, 1]); ``d`` is the
model width (the 2D branch's width).

- :class:`SliceViT`: every slice on its own -> the [CLS] vector of each slice, ``F2D (B, D, d)``.
- :class:`VolumeViT`: the whole crop, patches of ``(8, 16, 16)`` voxels by a 3D convolution,
  6 blocks, learnable [CLS] and positions -> ``f3D (B, d)``.
- :class:`SliceVolumeFusion`: ``Fout = Attn(Q=f3D, K=V=F2D)``, ``F = F2D + Fout``.
- :class:`OrganImageEncoder`: the three plus organ-classification heads and an ablation mode:
  ``"2d"`` (F = F2D), ``"3d"`` (F = f3D as a single slice), ``"concat"`` (F = Linear([F2D, f3D]))
  or ``"xattn"`` (the paper's fusion).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Mapping

import torch
from torch import nn

FUSION_MODES = ("2d", "3d", "concat", "xattn")


@dataclass
class EncoderConfig:
    """Sizes of the encoder.

    Attributes:
        D, H, W: input crop size (slices, rows, columns).
        slice_patch: 2D patch size (rows, columns) of the slice ViT.
        slice_hidden / slice_layers / slice_heads / slice_mlp: slice ViT width, depth, heads, MLP width;
            ``slice_hidden`` is the model width ``d``.
        volume_patch: 3D patch size (slices, rows, columns); kernel = stride.
        volume_hidden / volume_layers / volume_heads / volume_mlp: the 3D ViT's sizes (projected to ``d``).
        fusion_heads: heads of the cross-attention.
        mode: one of ``"2d"``, ``"3d"``, ``"concat"``, ``"xattn"``.
        n_classes: number of organ classes of the classification heads.
        text_dim: width of the text feature that the alignment projects to ``d``.
        dropout: dropout rate in the transformer blocks.
    """

    D: int = 16
    H: int = 64
    W: int = 64
    slice_patch: tuple[int, int] = (16, 16)
    slice_hidden: int = 64
    slice_layers: int = 4
    slice_heads: int = 4
    slice_mlp: int = 256
    volume_patch: tuple[int, int, int] = (8, 16, 16)
    volume_hidden: int = 64
    volume_layers: int = 6
    volume_heads: int = 4
    volume_mlp: int = 256
    fusion_heads: int = 4
    mode: str = "xattn"
    n_classes: int = 13
    text_dim: int = 384
    dropout: float = 0.0

    def __post_init__(self):
        self.slice_patch = tuple(int(p) for p in self.slice_patch)
        self.volume_patch = tuple(int(p) for p in self.volume_patch)
        if self.mode not in FUSION_MODES:
            raise ValueError(f"unknown fusion mode {self.mode!r}; choose one of {', '.join(FUSION_MODES)}")
        if (self.H % self.slice_patch[0]) or (self.W % self.slice_patch[1]):
            raise ValueError(f"slice size {self.H}x{self.W} is not a multiple of the 2D patch {self.slice_patch}")
        if any(s % p for s, p in zip((self.D, self.H, self.W), self.volume_patch)):
            raise ValueError(f"crop size {(self.D, self.H, self.W)} is not a multiple of the 3D patch {self.volume_patch}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["slice_patch"] = list(self.slice_patch)
        d["volume_patch"] = list(self.volume_patch)
        return d

    @classmethod
    def from_dict(cls, values: Mapping) -> "EncoderConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown encoder settings: {', '.join(sorted(unknown))}")
        return cls(**dict(values))


#: Named sizes. ``tiny`` runs on a laptop CPU; ``base`` / ``large`` follow ViT-B/16 and ViT-L/16 (the paper's 2D branch).
PRESETS: dict[str, dict] = {
    "tiny": dict(slice_hidden=64, slice_layers=4, slice_heads=4, slice_mlp=256,
                 volume_hidden=64, volume_layers=6, volume_heads=4, volume_mlp=256, fusion_heads=4),
    "small": dict(slice_hidden=192, slice_layers=12, slice_heads=3, slice_mlp=768,
                  volume_hidden=192, volume_layers=6, volume_heads=3, volume_mlp=768, fusion_heads=3),
    "base": dict(slice_hidden=768, slice_layers=12, slice_heads=12, slice_mlp=3072,
                 volume_hidden=384, volume_layers=6, volume_heads=6, volume_mlp=1536, fusion_heads=12),
    "large": dict(slice_hidden=1024, slice_layers=24, slice_heads=16, slice_mlp=4096,
                  volume_hidden=512, volume_layers=6, volume_heads=8, volume_mlp=2048, fusion_heads=16),
}


def encoder_config(preset: str = "tiny", **overrides) -> EncoderConfig:
    """An :class:`EncoderConfig` from a named preset with overrides (e.g. ``D=16, mode="2d"``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown encoder preset {preset!r}; choose one of {', '.join(PRESETS)}")
    values = dict(PRESETS[preset])
    values.update(overrides)
    return EncoderConfig(**values)


class _TokenViT(nn.Module):
    """Patch embedding + learnable [CLS] (with its own position) + transformer blocks + LayerNorm.

    The parameter names follow MONAI's ``ViT`` (``patch_embedding``, ``blocks``, ``norm``, ``cls_token``)
    so MONAI ViT checkpoints load directly.
    """

    def __init__(self, spatial_dims: int, img_size, patch_size, hidden: int, layers: int, heads: int, mlp: int,
                 dropout: float):
        super().__init__()
        from monai.networks.blocks import PatchEmbeddingBlock, TransformerBlock

        #: number of patches along each spatial axis
        self.patch_grid = tuple(int(s) // int(p) for s, p in zip(img_size, patch_size))

        self.patch_embedding = PatchEmbeddingBlock(
            in_channels=1, img_size=img_size, patch_size=patch_size, hidden_size=hidden, num_heads=heads,
            proj_type="conv", pos_embed_type="learnable", dropout_rate=dropout, spatial_dims=spatial_dims)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, hidden))
        self.cls_position = nn.Parameter(torch.zeros(1, 1, hidden))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            [TransformerBlock(hidden, mlp, heads, dropout, qkv_bias=True) for _ in range(layers)])
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 1, *spatial) -> [CLS] output (B, hidden)."""
        tokens = self.patch_embedding(x)
        cls = (self.cls_token + self.cls_position).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens[:, 0])


class SliceViT(nn.Module):
    """2D branch: a ViT applied to every axial slice.

    Args:
        config: encoder sizes (``H``, ``W``, ``slice_*``).

    Input ``(B, D, H, W)``; output ``F2D (B, D, d)`` with ``d = config.slice_hidden``.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.vit = _TokenViT(2, (config.H, config.W), config.slice_patch, config.slice_hidden, config.slice_layers,
                             config.slice_heads, config.slice_mlp, config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, d, h, w = x.shape
        cls = self.vit(x.reshape(b * d, 1, h, w))
        return cls.reshape(b, d, -1)


class VolumeViT(nn.Module):
    """3D branch: a lighter ViT over the whole crop with Conv3D patches (kernel = stride = ``volume_patch``).

    Input ``(B, D, H, W)``; output ``f3D (B, d)`` (projected from ``volume_hidden`` to ``d`` when they differ).
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.vit = _TokenViT(3, (config.D, config.H, config.W), config.volume_patch, config.volume_hidden,
                             config.volume_layers, config.volume_heads, config.volume_mlp, config.dropout)
        self.to_width = (nn.Identity() if config.volume_hidden == config.slice_hidden
                         else nn.Linear(config.volume_hidden, config.slice_hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.to_width(self.vit(x[:, None]))


class SliceVolumeFusion(nn.Module):
    """Cross-attention fusion: query f3D, keys and values F2D.

    ``forward(f2d (B, D, d), f3d (B, d)) -> F (B, D, d) = F2D + Fout`` with ``Fout (B, 1, d)`` broadcast over slices.
    """

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        from monai.networks.blocks import CrossAttentionBlock

        self.norm_query = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(width)
        self.attention = CrossAttentionBlock(hidden_size=width, num_heads=heads, dropout_rate=dropout, qkv_bias=True)

    def forward(self, f2d: torch.Tensor, f3d: torch.Tensor) -> torch.Tensor:
        out = self.attention(self.norm_query(f3d[:, None]), context=self.norm_context(f2d))
        return f2d + out


class SliceVolumeConcat(nn.Module):
    """Ablation fusion: ``F = Linear([F2D, f3D])`` per slice, (B, D, 2d) -> (B, D, d)."""

    def __init__(self, width: int):
        super().__init__()
        self.proj = nn.Linear(2 * width, width)

    def forward(self, f2d: torch.Tensor, f3d: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([f2d, f3d[:, None].expand_as(f2d)], dim=-1))


def classification_head(width: int, n_classes: int) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.GELU(), nn.Linear(width, n_classes))


class OrganImageEncoder(nn.Module):
    """2D + 3D organ encoder with organ-classification heads.

    ``forward(x (B, D, H, W))`` returns a dict:
        ``features``: fused slice features F (B, S, d) (S = D, or 1 in mode ``"3d"``);
        ``f2d`` (B, D, d) and ``f3d`` (B, d) where the mode computes them;
        ``logits_2d`` / ``logits_3d`` / ``logits_fused`` (B, n_classes) from the heads on
        mean-over-slices F2D, f3D and mean-over-slices F.
    """

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        width = config.slice_hidden
        uses_2d = config.mode in ("2d", "concat", "xattn")
        uses_3d = config.mode in ("3d", "concat", "xattn")
        self.slice_encoder = SliceViT(config) if uses_2d else None
        self.volume_encoder = VolumeViT(config) if uses_3d else None
        self.fusion: nn.Module | None = None
        if config.mode == "xattn":
            self.fusion = SliceVolumeFusion(width, config.fusion_heads, config.dropout)
        elif config.mode == "concat":
            self.fusion = SliceVolumeConcat(width)
        self.head_2d = classification_head(width, config.n_classes) if uses_2d else None
        self.head_3d = classification_head(width, config.n_classes) if uses_3d else None
        self.head_fused = classification_head(width, config.n_classes) if self.fusion is not None else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4:
            raise ValueError(f"expected crops (B, D, H, W), got shape {tuple(x.shape)}")
        f2d = self.slice_encoder(x) if self.slice_encoder is not None else None
        f3d = self.volume_encoder(x) if self.volume_encoder is not None else None
        return encoder_outputs(f2d, f3d, self.fusion, self.head_2d, self.head_3d, self.head_fused)

    def organ_logits(self, out: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The logits used to name an organ: fused head where present, else the single branch's head."""
        return organ_logits(out)


def encoder_outputs(f2d, f3d, fusion, head_2d, head_3d, head_fused) -> dict[str, torch.Tensor]:
    """The encoder's output dict from the branch features (``None`` for a branch the mode leaves out)."""
    out: dict[str, torch.Tensor] = {}
    if f2d is not None:
        out["f2d"] = f2d
        out["logits_2d"] = head_2d(f2d.mean(1))
    if f3d is not None:
        out["f3d"] = f3d
        out["logits_3d"] = head_3d(f3d)
    if fusion is not None:
        fused = fusion(f2d, f3d)
        out["logits_fused"] = head_fused(fused.mean(1))
    elif f2d is not None:
        fused = f2d
    else:
        fused = f3d[:, None]
    out["features"] = fused
    return out


def organ_logits(out: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The logits used to name an organ: fused head where present, else the single branch's head."""
    for name in ("logits_fused", "logits_2d", "logits_3d"):
        if name in out:
            return out[name]
    raise KeyError("no logits in the encoder output")
