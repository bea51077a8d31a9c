"""The point that shows an organ best in the slice views: inside it, on its largest axial cross-section.

When a diagnosis is chosen in the Slicer panel or on the ``serve`` page, the
slice views are centred on its main organ's focus point (:func:`organ_focus`):

1. the voxel axis closest to the patient's superior direction is the axial one;
2. along it, the slice where the organ's cross-section has the most voxels is
   taken (the first such slice when several tie);
3. on that slice, the organ's voxel nearest to the cross-section's centroid is
   the focus, so the point lies inside the organ even when the organ is curved
   (the stomach, the portal and splenic vein) and its centroid falls outside it.

The axial view then shows the organ's largest cross-section, and the coronal and
sagittal views pass through the organ. Only numpy; no Slicer.
"""
from __future__ import annotations

import numpy as np


def axial_axis(affine: np.ndarray) -> int:
    """The voxel axis (0, 1, 2) whose direction is closest to the superior (S) axis of RAS."""
    directions = np.asarray(affine, dtype=np.float64)[:3, :3]
    directions = directions / np.linalg.norm(directions, axis=0)
    return int(np.argmax(np.abs(directions[2])))


def focus_index(mask: np.ndarray, axis: int = 2) -> tuple[int, int, int] | None:
    """The focus voxel ``(i, j, k)`` of a boolean mask (module doc), slices taken along ``axis``; None if empty."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return None
    other = tuple(a for a in range(3) if a != axis)
    areas = mask.sum(axis=other)
    best = int(np.argmax(areas))
    plane = np.take(mask, best, axis=axis)
    points = np.argwhere(plane)  # (n, 2) indices along the two other axes
    centroid = points.mean(axis=0)
    nearest = points[int(np.argmin(((points - centroid) ** 2).sum(axis=1)))]
    index = [0, 0, 0]
    index[axis] = best
    index[other[0]], index[other[1]] = int(nearest[0]), int(nearest[1])
    return int(index[0]), int(index[1]), int(index[2])


def organ_focus(mask: np.ndarray, affine: np.ndarray) -> np.ndarray | None:
    """The RAS point (mm) of a mask's focus voxel on the grid ``affine`` (voxel index -> RAS); None if empty."""
    affine = np.asarray(affine, dtype=np.float64)
    index = focus_index(mask, axial_axis(affine))
    if index is None:
        return None
    return affine[:3, :3] @ np.asarray(index, dtype=np.float64) + affine[:3, 3]
