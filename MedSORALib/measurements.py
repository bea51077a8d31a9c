"""Organ measurements from the masks and the HU of a CT, in world (RAS millimetre) space.

Every size is computed from the physical positions of the voxels (``Volume.affine``),
never from index counts along an axis, so a re-oriented copy of a CT (axes
permuted or flipped, LPS or RAS) gives the same numbers, and a resampled copy
gives the same numbers up to its voxel size. For each organ present:

- ``voxels``, ``volume_ml``: voxel count and volume;
- ``length_mm``: craniocaudal extent (along RAS z), ``width_mm`` (left-right,
  RAS x) and ``depth_mm`` (anteroposterior, RAS y): extents of the union of the
  voxels, i.e. the span of the voxel centres plus one voxel's extent in that
  direction;
- ``max_axial_diameter_mm``: the largest diameter on any axial slice (the grid
  axis closest to craniocaudal), and ``axial_short_diameter_mm``, the width of
  that slice's section perpendicular to it (Feret diameters of the voxel squares);
- ``max_diameter_mm``: the largest 3D diameter (pole-to-pole length of a kidney);
- ``principal_lengths_mm``: extents along the organ's three principal axes,
  longest first (a gallbladder's transverse diameter is the second);
- ``thickness_mm``: diameter of the largest ball inside the organ (an adrenal
  limb's thickness or a nodule's size);
- ``mean_hu``, ``median_hu``, ``sd_hu``, ``p10_hu``, ``p90_hu``: HU inside the
  organ eroded by one voxel's largest size (``hu_voxels`` voxels used;
  ``hu_eroded`` is false when erosion would leave fewer than
  :data:`MIN_ERODED_VOXELS`, and the whole mask is used);
- ``partially_imaged``: the organ touches the first or last slice along the
  craniocaudal axis (``touches`` says which: ``cranial``, ``caudal``, or
  ``in_plane`` for the edge of the field of view). Its size measurements
  describe the imaged part only and give no size finding.

Vessels (aorta, inferior vena cava, portal/splenic vein) also get their
diameters perpendicular to the centreline, short and major axis
(:func:`MedSORALib.vessels.vessel_diameters`): the aorta per section
(thoracic, abdominal, or uncertain when no landmark places the hiatus), the
portal/splenic label split into the portal vein (right of the inferior vena
cava's centre, else of the aorta's) and the splenic vein. The gallbladder gets
the same diameters across its long axis (its transverse diameter).

:func:`measure_organs` measures every organ; :func:`left_right` gives the
left/right differences of the kidneys and adrenal glands.
"""
from __future__ import annotations


import numpy as np
from scipy import ndimage

from .volume_io import Volume

#: Fewest eroded voxels used for HU statistics; below it the whole mask is used.
MIN_ERODED_VOXELS = 10
#: Structures measured as vessels (perpendicular diameters along a centreline).
VESSELS = ("aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein")
#: Paired structures compared left with right.
PAIRS = (("kidney", "kidney_right", "kidney_left"), ("adrenal_gland", "adrenal_gland_right", "adrenal_gland_left"))
#: Size measurements that describe only the imaged part of a partially imaged organ.
SIZE_KEYS = ("volume_ml", "length_mm", "width_mm", "depth_mm", "max_axial_diameter_mm", "axial_short_diameter_mm",
             "max_diameter_mm", "principal_lengths_mm")
_ANGLES = np.deg2rad(np.arange(0.0, 180.0, 1.0))
_DIRS2 = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1)


def _round(value, digits=2):
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_round(v, digits) for v in value]
    return None if value is None else round(float(value), digits)


def craniocaudal_axis(volume: Volume) -> int:
    """Index of the grid axis (0, 1, 2) closest to the RAS z (craniocaudal) direction."""
    return int(np.argmax(np.abs(volume.direction[2, :])))


def voxel_extent(volume: Volume, direction: np.ndarray) -> float:
    """Extent (mm) of one voxel along a unit RAS direction: sum of |direction . edge| over its edges."""
    return float(np.abs(np.asarray(direction, dtype=np.float64) @ volume.affine[:3, :3]).sum())


#: A voxel's corners from its centre, in voxel units (8, 3).
_CORNER_SIGNS = np.array([[a, b, c] for a in (-0.5, 0.5) for b in (-0.5, 0.5) for c in (-0.5, 0.5)])


def _corner_offsets(volume: Volume) -> np.ndarray:
    """RAS offsets (8, 3) of a voxel's corners from its centre."""
    return _CORNER_SIGNS @ volume.affine[:3, :3].T


def _hemisphere(count: int) -> np.ndarray:
    """``count`` unit directions spread evenly over the upper hemisphere (a Fibonacci lattice)."""
    i = np.arange(count) + 0.5
    z = 1.0 - i / count
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


#: Directions used to bound the largest 3D diameter, and the cosine of the largest angle between any line
#: and its nearest direction (14.4 degrees, measured over 2 million random directions), with a 25 % margin:
#: for every vector v, max |v . d| >= _COVER_COS |v|.
_SPHERE = _hemisphere(64)
_COVER_COS = float(np.cos(np.deg2rad(1.25 * 14.4)))
_BLOCK = 16384


def _pairwise_max(points: np.ndarray) -> float:
    """Largest distance between two of the points, comparing every pair (in blocks of about a million).

    Squared distances come from one matrix product per block; the pair found is measured again directly.
    """
    norms = (points ** 2).sum(1)
    best, pair = -np.inf, (0, 0)
    rows = max(16, 1_000_000 // max(len(points), 1))
    for start in range(0, len(points), rows):
        block = norms[start:start + rows, None] + norms[None, :] - 2.0 * (points[start:start + rows] @ points.T)
        at = np.unravel_index(int(np.argmax(block)), block.shape)
        if block[at] > best:
            best, pair = float(block[at]), (start + int(at[0]), int(at[1]))
    return float(np.sqrt(((points[pair[0]] - points[pair[1]]) ** 2).sum()))


def _max_feret(points: np.ndarray) -> float:
    """Largest distance between two of the points, exactly, without comparing every pair.

    The points extreme along the sampled directions give a lower bound ``L`` (a distance between two of
    them). A point ``p`` is at most ``max_d reach_d(p) / _COVER_COS`` from any other, where ``reach_d(p)``
    is how far the points extend beyond ``p`` either way along ``d``; points whose bound falls short of
    ``L`` cannot end the longest segment, and the remaining pairs are compared.
    """
    if len(points) < 2:
        return 0.0
    if len(points) <= 256:
        return _pairwise_max(points)
    top = np.full(len(_SPHERE), -np.inf)
    bottom = np.full(len(_SPHERE), np.inf)
    top_at = np.zeros(len(_SPHERE), dtype=np.int64)
    bottom_at = np.zeros(len(_SPHERE), dtype=np.int64)
    blocks = range(0, len(points), _BLOCK)
    rows = np.arange(len(_SPHERE))
    for start in blocks:  # (directions, points) layout: the reductions run along contiguous rows
        proj = _SPHERE @ points[start:start + _BLOCK].T
        hi, lo = proj.argmax(1), proj.argmin(1)
        high, low = proj[rows, hi], proj[rows, lo]
        better, worse = high > top, low < bottom
        top_at[better], top[better] = start + hi[better], high[better]
        bottom_at[worse], bottom[worse] = start + lo[worse], low[worse]
    lower = _pairwise_max(points[np.unique(np.r_[top_at, bottom_at])])
    keep = np.zeros(len(points), dtype=bool)
    for start in blocks:
        proj = _SPHERE @ points[start:start + _BLOCK].T
        reach = np.maximum(top[:, None] - proj, proj - bottom[:, None]).max(0)
        keep[start:start + _BLOCK] = reach >= lower * _COVER_COS * (1.0 - 1e-9)
    return max(lower, _pairwise_max(points[keep]))


def _row_extremes(plane: np.ndarray):
    """Rows of a 2D mask that hold a pixel, with the column of their first and last pixel.

    The convex hull of a row's pixel squares is the rectangle from its first to its last pixel, so the
    hull of the whole mask is that of the outer corners of these two pixels per row: a few points per row
    in place of every boundary pixel, and the same hull.
    """
    has = plane.any(axis=-1)
    first = plane.argmax(axis=-1)
    last = plane.shape[-1] - 1 - plane[..., ::-1].argmax(axis=-1)
    rows = np.nonzero(has)
    return rows, first[rows], last[rows]


def _feret_2d(points: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(max, min, direction of max) caliper widths of 2D points over 1-degree steps."""
    proj = points @ _DIRS2.T
    widths = proj.max(0) - proj.min(0)
    i = int(np.argmax(widths))
    return float(widths[i]), float(widths.min()), _DIRS2[i]


def _extent(points: np.ndarray, direction: np.ndarray, volume: Volume) -> float:
    proj = points @ direction
    return float(proj.max() - proj.min()) + voxel_extent(volume, direction)


def _touches(mask: np.ndarray, volume: Volume) -> list[str]:
    cc = craniocaudal_axis(volume)
    z_sign = np.sign(volume.direction[2, cc])
    found = []
    first = np.take(mask, 0, axis=cc).any()
    last = np.take(mask, mask.shape[cc] - 1, axis=cc).any()
    # The first slice is caudal when the craniocaudal axis runs towards +z (superior).
    if (first and z_sign > 0) or (last and z_sign < 0):
        found.append("caudal")
    if (last and z_sign > 0) or (first and z_sign < 0):
        found.append("cranial")
    for axis in range(3):
        if axis != cc and (np.take(mask, 0, axis=axis).any() or np.take(mask, mask.shape[axis] - 1, axis=axis).any()):
            found.append("in_plane")
            break
    return found


def _crop(mask: np.ndarray, pad: int = 1):
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(0) - pad, 0)
    hi = np.minimum(idx.max(0) + pad + 1, mask.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi)), lo


def distance_map(mask: np.ndarray, volume: Volume) -> tuple[np.ndarray, tuple, np.ndarray]:
    """Distance (mm) from each voxel of the mask to the nearest voxel outside, on the cropped mask."""
    box, lo = _crop(mask, pad=1)
    local = np.pad(mask[box], 1)
    dist = ndimage.distance_transform_edt(local, sampling=volume.spacing)[1:-1, 1:-1, 1:-1]
    return dist, box, lo


def _thickness(mask: np.ndarray, volume: Volume, distances=None) -> float:
    """Diameter of the largest ball inside the union of the mask's voxels.

    The cropped mask is subdivided (each voxel into up to 4 x 4 x 4 sub-voxels, fewer for
    large organs, whose thickness is large against one voxel) so that the ball is not limited to voxel-centre distances; the
    distance from the deepest sub-voxel centre to the nearest outside one, less half a
    sub-voxel, is the ball's radius. ``distances`` (:func:`distance_map` of the mask) serves when the
    mask is not subdivided.
    """
    box, _ = _crop(mask, pad=0)
    local = mask[box]
    factor = int(np.clip(np.ceil(float(volume.spacing.max()) / 0.75), 1, 4))
    while factor > 1 and local.size * factor ** 3 > 250_000:
        factor -= 1
    if factor > 1:
        local = local.repeat(factor, 0).repeat(factor, 1).repeat(factor, 2)
    sub = volume.spacing / factor
    if factor == 1 and distances is not None:
        deepest = float(distances[0].max())
    else:
        deepest = float(ndimage.distance_transform_edt(np.pad(local, 1), sampling=sub).max())
    return float(max(2.0 * (deepest - 0.5 * float(sub.min())), float(sub.min())))


def hu_statistics(volume: Volume, mask: np.ndarray, distances=None) -> dict:
    """HU statistics inside the mask eroded by the largest voxel size (module doc); ``distances`` is the
    mask's :func:`distance_map` when already computed."""
    dist, box, _ = distance_map(mask, volume) if distances is None else distances
    margin = float(volume.spacing.max())
    inner = np.zeros_like(mask)
    inner[box] = dist > margin + 1e-6
    eroded = int(inner.sum()) >= MIN_ERODED_VOXELS
    values = volume.array[inner if eroded else mask].astype(np.float64)
    p10, p50, p90 = np.percentile(values, [10, 50, 90])
    return {"mean_hu": _round(values.mean(), 1), "median_hu": _round(p50, 1), "sd_hu": _round(values.std(), 1),
            "p10_hu": _round(p10, 1), "p90_hu": _round(p90, 1), "hu_voxels": int(values.size),
            "hu_eroded": bool(eroded)}


_SQUARE = np.array([[a, b] for a in (-0.5, 0.5) for b in (-0.5, 0.5)])  # (-,-), (-,+), (+,-), (+,+)
_SECTION_BLOCK = 40_000  # corner points projected at once in _axial_diameters


def _line_ends(mask: np.ndarray, axis: int):
    """Index (N, 3) of the first and of the last voxel of each line of ``mask`` along ``axis`` that holds one."""
    others = [a for a in range(3) if a != axis]
    (u, v), first, last = _row_extremes(np.moveaxis(mask, axis, -1))
    start = np.empty((len(u), 3), dtype=np.int64)
    start[:, others[0]], start[:, others[1]], start[:, axis] = u, v, first
    end = start.copy()
    end[:, axis] = last
    return start, end


def _hull_corners(volume: Volume, mask: np.ndarray) -> np.ndarray:
    """RAS corners (N, 3) with the convex hull of the mask's voxel cubes: the outer faces of each line's ends.

    Lines run along the grid axis with the fewest of them (the organ's longest extent in voxels).
    """
    axis = int(np.argmin([np.count_nonzero(mask.any(axis=a)) for a in range(3)]))
    start, end = _line_ends(mask, axis)
    offsets = _corner_offsets(volume)
    low = _CORNER_SIGNS[:, axis] < 0
    return np.concatenate([volume.index_to_ras(start)[:, None, :] + offsets[None, low],
                           volume.index_to_ras(end)[:, None, :] + offsets[None, ~low]], axis=1).reshape(-1, 3)


def _axial_diameters(volume: Volume, mask: np.ndarray) -> tuple[float, float]:
    """Largest Feret diameter of the axial sections (slices along the craniocaudal grid axis) and the width of
    that section across it, from the corners of the pixel squares (mm)."""
    cc = craniocaudal_axis(volume)
    inplane = [a for a in range(3) if a != cc]
    square = _SQUARE @ volume.affine[:3, :3][:, inplane].T  # (4, 3) RAS offsets of a pixel's corners
    start, end = _line_ends(mask, inplane[1])  # the rows of each section
    if not len(start):
        return 0.0, 0.0
    order = np.argsort(start[:, cc], kind="stable")
    start, end = start[order], end[order]
    corners = np.concatenate([volume.index_to_ras(start)[:, None, :] + square[None, [0, 2]],
                              volume.index_to_ras(end)[:, None, :] + square[None, [1, 3]]], axis=1)
    points = corners[..., :2].reshape(-1, 2)
    section = start[:, cc]
    bounds = 4 * np.r_[np.flatnonzero(np.r_[True, section[1:] != section[:-1]]), len(section)]
    best, across = 0.0, 0.0
    i = 0
    while i < len(bounds) - 1:  # caliper widths of a block of sections at once (bounded memory)
        j = max(i + 1, int(np.searchsorted(bounds, bounds[i] + _SECTION_BLOCK, side="right")) - 1)
        proj = points[bounds[i]:bounds[j]] @ _DIRS2.T
        local = bounds[i:j] - bounds[i]
        widths = np.maximum.reduceat(proj, local, axis=0) - np.minimum.reduceat(proj, local, axis=0)
        majors = widths.max(axis=1)
        s = int(np.argmax(majors))
        if majors[s] > best:
            direction = _DIRS2[int(np.argmax(widths[s]))]
            side = points[bounds[i + s]:bounds[i + s + 1]] @ np.array([-direction[1], direction[0]])
            best, across = float(majors[s]), float(side.max() - side.min())
        i = j
    return best, across


def organ_measurements(volume: Volume, mask: np.ndarray, touches: list[str] | None = None, distances=None) -> dict:
    """Sizes, HU and partial imaging of one organ (module doc); ``mask`` is boolean on the CT grid.

    ``touches`` (the scan edges the organ reaches) is computed from ``mask`` unless given, as it is
    for a mask cropped from a larger scan (:func:`crop_to_organ`); ``distances`` is the mask's
    :func:`distance_map` when already computed.
    """
    mask = np.asarray(mask, dtype=bool)
    distances = distance_map(mask, volume) if distances is None else distances
    idx = np.argwhere(mask)
    points = volume.index_to_ras(idx)
    out: dict = {"voxels": int(len(idx)), "volume_ml": _round(len(idx) * volume.voxel_volume_ml, 3)}
    out["length_mm"] = _round(_extent(points, np.array([0.0, 0.0, 1.0]), volume))
    out["width_mm"] = _round(_extent(points, np.array([1.0, 0.0, 0.0]), volume))
    out["depth_mm"] = _round(_extent(points, np.array([0.0, 1.0, 0.0]), volume))
    out["max_axial_diameter_mm"], out["axial_short_diameter_mm"] = _round(_axial_diameters(volume, mask))
    out["max_diameter_mm"] = _round(_max_feret(_hull_corners(volume, mask)))
    if len(idx) >= 3:
        centred = points - points.mean(0)
        _, vectors = np.linalg.eigh(centred.T @ centred)
        out["principal_lengths_mm"] = _round(sorted((_extent(points, vectors[:, a], volume) for a in range(3)),
                                                    reverse=True))
    out["thickness_mm"] = _round(_thickness(mask, volume, distances))
    out.update(hu_statistics(volume, mask, distances))
    touches = _touches(mask, volume) if touches is None else touches
    out["touches"] = touches
    out["partially_imaged"] = bool(touches)
    return out


def crop_to_organ(volume: Volume, mask: np.ndarray) -> tuple[Volume, np.ndarray, list[str]]:
    """The CT and mask cut to the organ's bounding box (same world positions), and the scan edges it touches."""
    shape = mask.shape
    lo, hi = [], []
    for axis in range(3):
        nz = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(nz[0]))
        hi.append(int(nz[-1]) + 1)
    cc = craniocaudal_axis(volume)
    z_sign = np.sign(volume.direction[2, cc])
    first, last = lo[cc] == 0, hi[cc] == shape[cc]
    touches = []
    if (first and z_sign > 0) or (last and z_sign < 0):
        touches.append("caudal")
    if (last and z_sign > 0) or (first and z_sign < 0):
        touches.append("cranial")
    if any(lo[a] == 0 or hi[a] == shape[a] for a in range(3) if a != cc):
        touches.append("in_plane")
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ np.asarray(lo, dtype=np.float64) + volume.affine[:3, 3]
    return Volume(volume.array[box], affine, volume.source), mask[box].copy(), touches  # not a view: frees the grid
