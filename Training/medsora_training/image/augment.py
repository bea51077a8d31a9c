"""Random augmentation of organ crop batches during training.

Works on already-cut crops ``(B, D, H, W)`` in [0, 1] so the (slow) cropping is done
once per case: a random in-plane rotation, scaling and shift (one 2D affine per
crop, applied to all its slices, bilinear), and an intensity gain and offset
applied to the non-zero voxels only, so the zeroed outside of a masked crop
stays zero.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Ranges of the random augmentation (0 switches a part off).

    Attributes:
        rotate_deg: in-plane rotation drawn from [-r, r] degrees.
        scale: in-plane scale per axis drawn from [1 - s, 1 + s].
        shift: shift drawn from [-t, t] as a fraction of the half size.
        gain: intensity gain drawn from [1 - g, 1 + g].
        offset: intensity offset drawn from [-o, o] (crop values are in [0, 1]).
    """

    rotate_deg: float = 10.0
    scale: float = 0.1
    shift: float = 0.05
    gain: float = 0.1
    offset: float = 0.05

    def to_dict(self) -> dict:
        return asdict(self)


def augment_crops(crops: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augmented copy of ``crops`` (B, D, H, W); the input is not modified."""
    b = crops.shape[0]
    dev = crops.device

    def uniform(lo, hi, *shape):
        return torch.rand(*shape, generator=generator).to(dev) * (hi - lo) + lo

    # Slices as channels: one in-plane 2D affine per crop (the same for all its slices) is much cheaper than a
    # 3D resampling, and the slice axis already spans the organ's extent by construction.
    x = crops.float()
    if config.rotate_deg or config.scale or config.shift:
        angle = uniform(-config.rotate_deg, config.rotate_deg, b) * math.pi / 180.0
        scale = uniform(1 - config.scale, 1 + config.scale, b, 2)
        shift = uniform(-config.shift, config.shift, b, 2)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(b, 2, 3, device=dev)
        # affine_grid's coordinates are (x = W, y = H).
        theta[:, 0, 0] = cos * scale[:, 0]
        theta[:, 0, 1] = -sin * scale[:, 0]
        theta[:, 1, 0] = sin * scale[:, 1]
        theta[:, 1, 1] = cos * scale[:, 1]
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if config.gain or config.offset:
        gain = uniform(1 - config.gain, 1 + config.gain, b, 1, 1, 1)
        offset = uniform(-config.offset, config.offset, b, 1, 1, 1)
        inside = (x > 1e-3).float()
        x = (x * gain + offset * inside).clamp(0.0, 1.0) * inside + x * (1 - inside)
    return x
