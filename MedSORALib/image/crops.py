"""Organ crops: from a CT and its organ masks to one ``(D, H, W)`` tensor per organ.

For every organ present in the masks (docs/training.md, "Image side"):

1. crop the organ's bounding box, enlarged by a margin in mm, in the CT's own
   voxel grid (cheap, and everything after works on the small crop only);
2. reorient the crop to one axis convention (default ``"LPS"``: array axis 0
   runs to the patient's left, axis 1 to posterior, axis 2 to superior, so an
   axial slice ``[k].T`` shows the patient as a radiologist does);
3. resample it trilinearly to a fixed spacing in mm (:func:`resample_to_spacing`; the same grid and
   values as MONAI's ``Spacing`` used before, see Testing/test_inference.py);
4. window the HU values and scale them to ``[0, 1]``;
5. optionally zero the voxels outside the organ (the paper's choice) or keep
   the surrounding anatomy as context;
6. sample ``D`` axial slices evenly over the organ's extent and resize each to
   ``H x W`` (in-plane aspect kept by padding to a square when asked).

The output tensor axes are ``(D, H, W)`` = (inferior->superior slices,
anterior->posterior rows, patient right->left columns) for the default
``"LPS"`` convention.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import SegmentationError, VolumeError
from ..organs import STRUCTURES


@dataclass
class CropConfig:
    """How organ crops are made.

    Attributes:
        spacing: output voxel size in mm along the reoriented axes (x, y, z); ``None`` keeps the CT's spacing.
        window: (low, high) HU window mapped to [0, 1] (values outside are clipped).
        margin: margin in mm added on every side of the organ's bounding box.
        mask_outside: zero the voxels outside the organ mask (paper) instead of keeping them as context.
        D: number of axial slices sampled over the organ's extent.
        H: slice height in pixels (anterior -> posterior).
        W: slice width in pixels (patient right -> left in the default convention).
        axcodes: target orientation of the reoriented crop (MONAI/nibabel axis codes).
        keep_aspect: pad each slice to a square (in mm) before resizing so organs are not stretched.
    """

    spacing: tuple[float, float, float] | None = (1.5, 1.5, 3.0)
    window: tuple[float, float] = (-160.0, 240.0)
    margin: float = 10.0
    mask_outside: bool = True
    D: int = 16
    H: int = 64
    W: int = 64
    axcodes: str = "LPS"
    keep_aspect: bool = True

    def to_dict(self) -> dict:
        """JSON-able form (tuples become lists)."""
        d = asdict(self)
        d["spacing"] = None if self.spacing is None else [float(s) for s in self.spacing]
        d["window"] = [float(w) for w in self.window]
        return d

    @classmethod
    def from_dict(cls, values: Mapping) -> "CropConfig":
        """Inverse of :meth:`to_dict`; unknown keys are an error so typos do not pass silently."""
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown crop settings: {', '.join(sorted(unknown))}")
        v = dict(values)
        if v.get("spacing") is not None:
            v["spacing"] = tuple(float(s) for s in v["spacing"])
        if "window" in v:
            v["window"] = tuple(float(w) for w in v["window"])
        return cls(**v)


def _bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive-exclusive voxel bounds (lo, hi) of the True voxels, or None when empty."""
    axes_any = [np.any(mask, axis=tuple(a for a in range(3) if a != ax)) for ax in range(3)]
    lo, hi = [], []
    for flags in axes_any:
        idx = np.flatnonzero(flags)
        if idx.size == 0:
            return None
        lo.append(idx[0])
        hi.append(idx[-1] + 1)
    return np.array(lo), np.array(hi)


#: tolerance (mm) under which a voxel size counts as already equal to the target spacing
SPACING_TOLERANCE = 1e-3


def reorient(channels: np.ndarray, affine: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """Flip and transpose ``(C, I, J, K)`` voxels so the axes point along ``axcodes`` (e.g. ``"LPS"``).

    Returns the reordered array and its voxel -> RAS affine.
    """
    from nibabel import orientations

    transform = orientations.ornt_transform(orientations.io_orientation(affine), orientations.axcodes2ornt(axcodes))
    moved = orientations.apply_orientation(np.moveaxis(channels, 0, -1), transform)
    new_affine = affine @ orientations.inv_ornt_aff(transform, channels.shape[1:])
    return np.moveaxis(moved, -1, 0), new_affine


def _resampled_grid(shape, affine: np.ndarray, pixdim) -> tuple[tuple[int, ...], np.ndarray]:
    """Output shape and affine of resampling a grid to voxel size ``pixdim`` along its own axes.

    The output keeps the input's axis directions (shear dropped), starts at the input's first voxel
    centre and covers the input's voxel centres.
    """
    rzs = affine[:3, :3]
    spacing = np.sqrt((rzs ** 2).sum(axis=0))
    target = np.asarray(pixdim, dtype=float)
    target = np.where(np.abs(spacing - target) <= SPACING_TOLERANCE, spacing, target)
    zooms = np.linalg.cholesky(rzs.T @ rzs).T
    new_affine = np.eye(4)
    new_affine[:3, :3] = rzs @ np.linalg.inv(zooms) @ np.diag(np.sign(np.diag(zooms)) * target)
    corners = np.array(np.meshgrid(*[(0.0, n - 1.0) for n in shape], indexing="ij")).reshape(3, -1)
    corners = np.vstack([corners, np.ones((1, corners.shape[1]))])
    in_out = np.linalg.solve(new_affine, affine) @ corners
    out_shape = np.round(np.ptp(in_out[:3], axis=1) + 1.0)
    # Origin: an input corner that is lowest along every output axis (the first voxel when the axes keep
    # their sense); failing one, the output is centred on the input.
    lowest = [c for c in range(corners.shape[1]) if np.allclose(np.min(in_out[:3] - in_out[:3, c:c + 1], 1), 0.0,
                                                                rtol=SPACING_TOLERANCE)]
    if lowest:
        new_affine[:3, 3] = (affine @ corners[:, lowest[0]])[:3]
    else:
        new_affine[:3, 3] = rzs @ (np.asarray(shape) / 2.0) + affine[:3, 3] - new_affine[:3, :3] @ (out_shape / 2.0)
    return tuple(int(n) for n in out_shape), new_affine


def _linear_along(t: torch.Tensor, axis: int, coords: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of ``t`` along ``axis`` at continuous indexes ``coords`` (border values outside)."""
    n = t.shape[axis]
    c = coords.clamp(0, n - 1)
    lo = c.floor().long().clamp(max=n - 1)
    hi = (lo + 1).clamp(max=n - 1)
    shape = [1] * t.ndim
    shape[axis] = -1
    w = (c - lo).view(shape)
    return t.index_select(axis, lo) * (1.0 - w) + t.index_select(axis, hi) * w


def resample_to_spacing(channels: torch.Tensor, affine: np.ndarray, pixdim) -> torch.Tensor:
    """Trilinear resampling of ``(C, I, J, K)`` voxels to voxel size ``pixdim`` mm (border values outside).

    Computed in float64, like the training-time pipeline, so a mask value of exactly 0.5 falls on the same
    side; an axis-aligned grid (no shear) is interpolated one axis at a time, which needs far less memory
    than a sampling grid of every output voxel.
    """
    shape = tuple(channels.shape[1:])
    out_shape, new_affine = _resampled_grid(shape, affine, pixdim)
    to_input = np.linalg.solve(affine, new_affine)  # output voxel -> input voxel
    t = channels.double()
    if np.allclose(to_input[:3, :3], np.diag(np.diag(to_input[:3, :3])), atol=1e-9):
        # Shrinking axes first keeps the intermediate arrays small.
        for axis in sorted(range(3), key=lambda a: out_shape[a] / shape[a]):
            coords = torch.arange(out_shape[axis], dtype=torch.float64) * to_input[axis, axis] + to_input[axis, 3]
            t = _linear_along(t, axis + 1, coords)
        return t.float()
    axes = [torch.arange(n, dtype=torch.float64) for n in out_shape]
    points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    coords = points @ torch.from_numpy(to_input[:3, :3].T.copy()) + torch.from_numpy(to_input[:3, 3].copy())
    # grid_sample reads (x, y, z) = (K, J, I) in [-1, 1] with corners on the first and last voxel centres.
    size = torch.tensor([max(n - 1, 1) for n in shape], dtype=torch.float64)
    grid = (2.0 * coords / size - 1.0).flip(-1)
    out = F.grid_sample(t[None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)
    return out[0].float()


def _resize(t: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """Trilinear resize of a (C, X, Y, Z) tensor to (C, *size)."""
    return F.interpolate(t[None], size=size, mode="trilinear", align_corners=True)[0]


def organ_crop(
    array: np.ndarray, affine: np.ndarray, mask: np.ndarray, config: CropConfig
) -> torch.Tensor | None:
    """Crop one organ.

    Args:
        array: CT in HU, shape (I, J, K), voxel index order.
        affine: 4x4 voxel -> RAS (mm) matrix of ``array``.
        mask: bool (I, J, K) on the same grid.
        config: crop settings.

    Returns:
        float32 tensor (D, H, W) with values in [0, 1], or ``None`` when the mask is empty.
    """
    box = _bounding_box(mask)
    if box is None:
        return None
    lo, hi = box
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    pad = np.ceil(config.margin / spacing).astype(int)
    lo = np.maximum(lo - pad, 0)
    hi = np.minimum(hi + pad, np.array(array.shape))
    sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]

    stacked = np.stack([array[sl].astype(np.float32), mask[sl].astype(np.float32)])
    stacked, crop_affine = reorient(stacked, crop_affine, config.axcodes)
    t = torch.from_numpy(np.ascontiguousarray(stacked))
    if config.spacing is not None:
        from ..validation import check_crop_size

        # Refuse before MONAI allocates: a wrong voxel spacing can ask for hundreds of GB here.
        check_crop_size((hi - lo) * spacing / np.asarray(config.spacing, dtype=float))
        # The crop is small, so resampling it (not the whole CT) keeps this fast.
        t = resample_to_spacing(t, crop_affine, config.spacing)
    low, high = config.window
    image = ((t[:1] - low) / (high - low)).clamp_(0.0, 1.0)
    organ = t[1:2]

    # (C, X, Y, Z) -> (C, Z, Y, X): slices along the superior axis, rows along y, columns along x.
    image = image.permute(0, 3, 2, 1)
    organ = organ.permute(0, 3, 2, 1)
    if config.keep_aspect:
        out_sp = np.asarray(config.spacing if config.spacing is not None else spacing, dtype=float)
        rows_mm, cols_mm = image.shape[2] * out_sp[1], image.shape[3] * out_sp[0]
        side_mm = max(rows_mm, cols_mm)
        rows = int(round(side_mm / out_sp[1]))
        cols = int(round(side_mm / out_sp[0]))
        pr, pc = rows - image.shape[2], cols - image.shape[3]
        padding = (pc // 2, pc - pc // 2, pr // 2, pr - pr // 2)
        image = F.pad(image, padding, value=0.0)
        organ = F.pad(organ, padding, value=0.0)
    size = (config.D, config.H, config.W)
    image = _resize(image, size)
    organ = _resize(organ, size) >= 0.5
    if config.mask_outside:
        image = image * organ
    return image[0].contiguous().clamp_(0.0, 1.0)


def organ_crops(volume, masks: Mapping[str, np.ndarray], config: CropConfig | None = None) -> dict[str, torch.Tensor]:
    """Crops of every organ present in ``masks``.

    Args:
        volume: a :class:`MedSORALib.volume_io.Volume` (``array`` (I, J, K) HU, ``affine`` voxel -> RAS mm).
        masks: structure key -> bool array (I, J, K) on the volume's grid; empty masks are skipped.
        config: crop settings (defaults: :class:`CropConfig`).

    Returns:
        structure key -> float32 tensor (D, H, W) in [0, 1], keys in catalog order.

    Raises:
        VolumeError: the volume is not a 3D array with a 4x4 affine.
        SegmentationError: a mask has another shape than the volume, or no mask has any voxel.
    """
    config = config or CropConfig()
    array = np.asarray(volume.array)
    affine = np.asarray(volume.affine, dtype=float)
    if array.ndim != 3 or affine.shape != (4, 4):
        raise VolumeError(f"expected a 3D volume with a 4x4 affine, got array {array.shape} and affine {affine.shape}")
    order = [k for k in STRUCTURES if k in masks] + [k for k in masks if k not in STRUCTURES]
    crops: dict[str, torch.Tensor] = {}
    for key in order:
        mask = np.asarray(masks[key])
        if mask.shape != array.shape:
            raise SegmentationError(f"mask of {key} has shape {mask.shape}, the CT has {array.shape}")
        crop = organ_crop(array, affine, mask.astype(bool, copy=False), config)
        if crop is not None:
            crops[key] = crop
    if not crops:
        raise SegmentationError("none of the organ masks contains a voxel")
    return crops
