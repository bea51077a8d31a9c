"""Vessel calibre: diameters perpendicular to the centreline, and the sections of the aorta.

A vessel (aorta, inferior vena cava, portal/splenic vein; the gallbladder's
transverse diameter is measured the same way) is followed along its centre
line (centroids of slabs across its main axis), and cut perpendicular to the
local direction of that line every slab. Each cut gives two Feret diameters:

- the **short axis** (``minor``), the narrowest caliper width of the section,
  robust to a slightly oblique cut;
- the **major axis**, the maximal diameter perpendicular to the centreline that
  the aneurysm guidelines measure: the major axis of the section's equivalent
  ellipse (the ellipse with the same second moments), which on a digitised
  disc equals its diameter, whereas the widest caliper width of the pixel
  squares (``major``, kept as ``perpendicular_major_diameter_mm``) exceeds it
  by up to a voxel diagonal (about 3.7 mm on a 20 mm aorta at 3 mm voxels);
  it is never taken below the cut's short axis.

:func:`vessel_diameters` reports, for the whole vessel and, for the aorta, per
section (``abdominal_``, ``thoracic_``, ``uncertain_`` prefixes):

- ``perpendicular_diameter_mm``: the largest short axis, with
  ``diameter_position_mm`` (from the vessel's cranial end) and ``diameter_ras``;
  ``perpendicular_major_diameter_mm``: the major axis of that same cut;
  ``median_perpendicular_diameter_mm``: the median short axis over the cuts;
- ``major_axis_diameter_mm``: the largest major axis, each cut's major axis
  first replaced by the median of it and its two neighbours along the vessel
  (one oblique cut at a bend cannot make the maximum), with
  ``major_axis_position_mm`` and ``major_axis_ras``.

Sections of the aorta (:func:`aortic_sections`): the aorta crosses the
diaphragm at the aortic hiatus, at the level of the twelfth thoracic vertebra
(Standring S (ed). Gray's Anatomy, 41st ed. Elsevier 2016); above it the aorta
is thoracic, below it abdominal; the level comes from the vertebrae when the
segmentation holds them, else from organs that lie there or that bound it:

1. a TotalSegmentator label map holding T12 and L1 whole (neither touches the
   first or last slice; :func:`vertebra_extents`): the hiatus at the lower
   border of T12 (Gray's), taken as the midpoint of the two vertebrae's
   centres (the T12/L1 disc), since a vertebra's label holds its processes,
   which reach above and below its body; every cut is thoracic or abdominal;
2. the top of the adrenal glands, else of the kidneys (both at about T12):
   the hiatus itself; every cut is thoracic or abdominal;
3. otherwise bounds: above the liver dome (the top of the liver, under the
   diaphragm, above the hiatus) and above the arch (:func:`_centreline`'s
   ``arch_z``) the aorta is thoracic; below the bottom of the pancreas and of
   the portal/splenic vein (L1-L3, below the hiatus) it is abdominal; above the
   centre of a whole T11 thoracic, below the centre of a whole L2 abdominal; cuts
   between the bounds, or all cuts when no landmark exists, are ``uncertain``.

The choice of landmarks and bounds is MedSORA's, from the vertebral levels of
Gray's Anatomy; the findings assess an uncertain cut against the stricter
(abdominal) thresholds and say the section is uncertain
(:mod:`MedSORALib.findings`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from scipy import ndimage

from . import organs
from .measurements import _SQUARE, _feret_2d, _round, _row_extremes, distance_map
from .volume_io import Volume

#: Least front-to-back distance (mm) between two pieces of the aorta in one slab for them to be the
#: ascending and descending aorta below the arch (MedSORA choice: well above one aortic radius).
ARCH_AP_MM = 20.0
#: Organs whose top is taken as the aortic hiatus, in order of preference.
HIATUS_GROUPS = ((("adrenal_gland_right", "adrenal_gland_left"), "top of the adrenal glands"),
                 (("kidney_right", "kidney_left"), "top of the kidneys"))
#: Organs whose top lies above the hiatus: the aorta above their top is thoracic.
THORACIC_ABOVE_TOP_OF = (("liver", "liver dome"),)
#: Organs whose bottom lies below the hiatus: the aorta below their bottom is abdominal.
ABDOMINAL_BELOW_BOTTOM_OF = (("pancreas", "bottom of the pancreas"),
                             ("portal_vein_and_splenic_vein", "bottom of the portal/splenic vein"))
SECTIONS = ("abdominal", "thoracic", "uncertain")
#: TotalSegmentator (v2) label values of the vertebrae that place the aortic hiatus.
TS_VERTEBRAE = {"T11": 33, "T12": 32, "L1": 31, "L2": 30}


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross product of two 3-vectors (numpy's formula, without its per-call overhead)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _cross_section(volume: Volume, mask: np.ndarray, centre: np.ndarray, normal: np.ndarray, reach: float):
    """Major and minor Feret diameters (mm) of the vessel section through ``centre`` perpendicular to ``normal``,
    and the major axis of its equivalent ellipse (module doc); None when the cut misses or runs along the vessel."""
    normal = normal / np.linalg.norm(normal)
    helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = _cross(normal, helper)
    u /= np.linalg.norm(u)
    v = _cross(normal, u)
    step = float(volume.spacing.min()) / 2.0
    n = int(np.ceil(reach / step))
    coords = np.arange(-n, n + 1) * step
    world = centre + coords[:, None, None] * u + coords[None, :, None] * v
    index = np.rint(volume.ras_to_index(world)).astype(int)
    inside = np.all((index >= 0) & (index < np.asarray(mask.shape)), axis=-1)
    plane = np.zeros((len(coords), len(coords)), dtype=bool)
    plane[inside] = mask[tuple(index[inside].T)]
    if not plane[n, n]:
        return None
    labels, _ = ndimage.label(plane)
    region = labels == labels[n, n]
    if region[0, :].any() or region[-1, :].any() or region[:, 0].any() or region[:, -1].any():
        return None  # the section leaves the sampled square: the plane runs along the vessel
    (rows,), first, last = _row_extremes(region)
    square = _SQUARE * step
    corners = np.concatenate([np.stack([rows, first], 1)[:, None, :] * step + square[None, [0, 2]],
                              np.stack([rows, last], 1)[:, None, :] * step + square[None, [1, 3]]], axis=1)
    major, minor, _ = _feret_2d(corners.reshape(-1, 2))
    # The section's equivalent ellipse (same second moments as its union of pixel squares): a digitised disc
    # gives its diameter, where the widest caliper of the pixel corners exceeds it by up to a voxel diagonal.
    pixels = np.argwhere(region) * step
    moments = np.cov(pixels.T, bias=True) + np.eye(2) * step * step / 12.0 if len(pixels) > 1 else np.eye(2)
    ellipse_major = 4.0 * float(np.sqrt(max(np.linalg.eigvalsh(moments)[-1], 0.0)))
    return major, minor, max(ellipse_major, minor)  # a long axis is never shorter than the short axis


def _centreline(volume: Volume, mask: np.ndarray):
    """Ordered centre points (N, 3) of a tubular mask: centroids of slabs across its main axis, per connected piece.

    Returns (centres, order_mm, axis, arch_z): ``order_mm`` is each centre's distance from the
    vessel's cranial end along the main axis; ``arch_z`` is the lowest RAS z of a slab cut by the
    vessel twice, the pieces at least :data:`ARCH_AP_MM` apart front to back (the ascending and
    descending aorta below the arch), None when no slab is.
    """
    idx = np.argwhere(mask)
    points = volume.index_to_ras(idx)
    centred = points - points.mean(0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axis = vectors[:, -1]
    if axis[2] < 0:
        axis = -axis  # pointing cranially
    proj = points @ axis
    slab = max(float(volume.spacing.max()), 2.0)
    bins = np.floor((proj.max() - proj) / slab).astype(int)  # 0 at the cranial end
    centres, orders = [], []
    arch_z = None
    grid = np.zeros(mask.shape, dtype=bool)
    for b in np.unique(bins):
        members = idx[bins == b]
        grid[tuple(members.T)] = True
        lo = members.min(0)
        hi = members.max(0) + 1
        box = tuple(slice(x, y) for x, y in zip(lo, hi))
        labels, count = ndimage.label(grid[box], structure=np.ones((3, 3, 3)))
        grid[tuple(members.T)] = False
        local = members - lo
        ids = labels[tuple(local.T)]
        pieces = []
        for piece in range(1, count + 1):
            sel = members[ids == piece]
            if len(sel) < 3:
                continue
            world = volume.index_to_ras(sel)
            pieces.append(world.mean(0))
            centres.append(pieces[-1])
            orders.append(float(proj.max() - world.mean(0) @ axis))
        if len(pieces) >= 2:
            ys = np.array([p[1] for p in pieces])
            if ys.max() - ys.min() >= ARCH_AP_MM:
                low = float(min(p[2] for p in pieces))
                arch_z = low if arch_z is None else min(arch_z, low)
    return np.array(centres), np.array(orders), axis, arch_z


def vessel_profile(volume: Volume, mask: np.ndarray, distances=None, info: dict | None = None) -> list[dict]:
    """Perpendicular cross-sections along a vessel: position, centre, diameters (minor, major) in mm
    (``distances``: the mask's :func:`distance_map` when already computed; ``info``, when given,
    receives ``arch_z`` of :func:`_centreline`)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.sum() < 8:
        return []
    centres, orders, axis, arch_z = _centreline(volume, mask)
    if info is not None:
        info["arch_z"] = arch_z
    if len(centres) == 0:
        return []
    dist, box, lo = distance_map(mask, volume) if distances is None else distances
    span = 10.0  # mm on either side used for the local direction of the centreline
    profile = []
    for c, order in zip(centres, orders):
        near_index = np.rint(volume.ras_to_index(c)).astype(int)
        # The centre must lie in the vessel: otherwise use the deepest mask voxel of this slab piece.
        if not (np.all(near_index >= 0) and np.all(near_index < mask.shape) and mask[tuple(near_index)]):
            continue
        before = centres[(orders < order - 0.5 * span) & (orders >= order - 1.5 * span)]
        after = centres[(orders > order + 0.5 * span) & (orders <= order + 1.5 * span)]

        def closest(group):
            return group[np.argmin(((group - c) ** 2).sum(1))] if len(group) else c

        tangent = closest(before) - closest(after)
        if np.linalg.norm(tangent) < 1e-6:
            tangent = axis
        local = near_index - lo
        radius = float(dist[tuple(local)]) if np.all(local >= 0) and np.all(local < dist.shape) else 5.0
        reach = min(max(4.0 * radius, 25.0), 120.0)
        section = _cross_section(volume, mask, c, tangent, reach)
        if section is None:
            continue
        profile.append({"position_mm": order, "centre": c, "major_mm": section[0], "minor_mm": section[1],
                        "ellipse_major_mm": section[2]})
    return profile



def _smoothed_majors(profile: list[dict]) -> np.ndarray:
    """Each cut's major axis replaced by the median of it and its neighbours along the vessel (module doc)."""
    majors = np.array([p["ellipse_major_mm"] for p in profile], dtype=np.float64)
    if len(majors) < 3:
        return majors
    order = np.argsort([p["position_mm"] for p in profile], kind="stable")
    ranked = majors[order]
    padded = np.r_[ranked[0], ranked, ranked[-1]]
    smooth = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    out = np.empty_like(majors)
    out[order] = smooth
    return out


def _largest(profile: list[dict], prefix: str = "") -> dict:
    """The diameters of a list of cuts (module doc), keys prefixed with ``prefix``."""
    if not profile:
        return {}
    best = max(profile, key=lambda p: p["minor_mm"])
    majors = _smoothed_majors(profile)
    widest = int(np.argmax(majors))
    return {f"{prefix}perpendicular_diameter_mm": _round(best["minor_mm"]),
            f"{prefix}median_perpendicular_diameter_mm": _round(np.median([p["minor_mm"] for p in profile])),
            f"{prefix}cross_sections": len(profile),
            f"{prefix}perpendicular_major_diameter_mm": _round(best["major_mm"]),
            f"{prefix}diameter_position_mm": _round(best["position_mm"], 1),
            f"{prefix}diameter_ras": _round(best["centre"], 1),
            f"{prefix}major_axis_diameter_mm": _round(majors[widest]),
            f"{prefix}major_axis_position_mm": _round(profile[widest]["position_mm"], 1),
            f"{prefix}major_axis_ras": _round(profile[widest]["centre"], 1)}


def organ_extent_z(volume: Volume, mask: np.ndarray) -> tuple[float, float] | None:
    """Lowest and highest RAS z (mm) of a mask's voxel centres; None for an empty mask."""
    idx = np.argwhere(mask)
    if not len(idx):
        return None
    z = volume.index_to_ras(idx)[:, 2]
    return float(z.min()), float(z.max())


def vertebra_extents(volume: Volume, masks) -> dict[str, tuple[float, float]]:
    """Lowest and highest RAS z (mm) of the vertebrae T11-L2 (:data:`TS_VERTEBRAE`) in ``masks``, when it is a
    TotalSegmentator label map (a :class:`~MedSORALib.masks.LabelMasks` whose organ labels are all
    TotalSegmentator's) that holds them whole (not touching the first or last slice); empty otherwise."""
    from .masks import LabelMasks

    if not isinstance(masks, LabelMasks) or not masks.values:
        return {}
    ts = {key: value for value, key in organs.label_table("totalsegmentator").items()}
    if any(tuple(values) != (ts.get(key),) for key, values in masks.values.items()):
        return {}
    from .measurements import craniocaudal_axis

    cc = craniocaudal_axis(volume)
    out = {}
    for name, value in TS_VERTEBRAE.items():
        mask = masks.labels == value
        if not mask.any() or np.take(mask, 0, axis=cc).any() or np.take(mask, mask.shape[cc] - 1, axis=cc).any():
            continue
        out[name] = organ_extent_z(volume, mask)
    return out


def hiatus_level(volume: Volume, masks: Mapping[str, np.ndarray]) -> float | None:
    """RAS z (mm) taken as the aortic hiatus: the vertebrae, else the top of the adrenal glands, else of the
    kidneys (module doc)."""
    extents = {k: organ_extent_z(volume, masks[k]) for k in masks}
    return aortic_sections({k: e for k, e in extents.items() if e is not None},
                           vertebrae=vertebra_extents(volume, masks))["hiatus_z"]


def aortic_sections(extents: Mapping[str, tuple[float, float]], arch_z: float | None = None,
                    vertebrae: Mapping[str, tuple[float, float]] | None = None) -> dict:
    """Levels dividing the aorta into its sections (module doc).

    ``extents``: organ key -> (lowest, highest) RAS z of its voxels; ``arch_z``: :func:`_centreline`'s;
    ``vertebrae``: :func:`vertebra_extents`'s. Returns ``{"hiatus_z", "thoracic_above_z",
    "abdominal_below_z", "landmark"}``; ``landmark`` names what placed the levels, None when nothing did
    (every cut is then uncertain).
    """
    vertebrae = vertebrae or {}

    def centre(name):
        return 0.5 * (vertebrae[name][0] + vertebrae[name][1])

    if "T12" in vertebrae and "L1" in vertebrae and centre("L1") < centre("T12"):
        return {"hiatus_z": 0.5 * (centre("T12") + centre("L1")), "thoracic_above_z": None,
                "abdominal_below_z": None, "landmark": "twelfth thoracic and first lumbar vertebrae"}
    for group, name in HIATUS_GROUPS:
        tops = [extents[k][1] for k in group if k in extents]
        if tops:
            return {"hiatus_z": max(tops), "thoracic_above_z": None, "abdominal_below_z": None, "landmark": name}
    above = [(extents[k][1], name) for k, name in THORACIC_ABOVE_TOP_OF if k in extents]
    if arch_z is not None:
        above.append((arch_z, "aortic arch"))
    if "T11" in vertebrae:
        above.append((centre("T11"), "eleventh thoracic vertebra"))
    below = [(extents[k][0], name) for k, name in ABDOMINAL_BELOW_BOTTOM_OF if k in extents]
    if "L2" in vertebrae:
        below.append((centre("L2"), "second lumbar vertebra"))
    upper = min(above) if above else None
    lower = max(below) if below else None
    if upper is not None and lower is not None and lower >= upper:
        upper = lower = None  # contradictory landmarks: trust neither
    names = [bound[1] for bound in (upper, lower) if bound is not None]
    return {"hiatus_z": None, "thoracic_above_z": None if upper is None else upper[0],
            "abdominal_below_z": None if lower is None else lower[0],
            "landmark": " and ".join(names) if names else None}


def section_of(z: float, levels: Mapping) -> str:
    """``"thoracic"``, ``"abdominal"`` or ``"uncertain"`` for a cut at RAS z (mm), by :func:`aortic_sections`."""
    if levels.get("hiatus_z") is not None:
        return "thoracic" if z > levels["hiatus_z"] else "abdominal"
    if levels.get("thoracic_above_z") is not None and z >= levels["thoracic_above_z"]:
        return "thoracic"
    if levels.get("abdominal_below_z") is not None and z <= levels["abdominal_below_z"]:
        return "abdominal"
    return "uncertain"


_UNSET = object()


def split_x(volume: Volume, masks: Mapping[str, np.ndarray]) -> float | None:
    """RAS x (mm) dividing the portal vein (right) from the splenic vein: the IVC's centre, else the aorta's."""
    reference = next((masks[k] for k in ("inferior_vena_cava", "aorta") if k in masks and np.any(masks[k])), None)
    return None if reference is None else float(volume.index_to_ras(np.argwhere(reference))[:, 0].mean())


def vessel_diameters(volume: Volume, masks: Mapping[str, np.ndarray], key: str, *, extents=_UNSET,
                     split=_UNSET, distances=None, vertebrae=_UNSET) -> dict:
    """Perpendicular diameters of a vessel (module doc), with where they lie.

    ``extents`` (organ key -> lowest and highest RAS z, for the aortic sections), ``vertebrae``
    (:func:`vertebra_extents`) and ``split`` (the portal/splenic division) are computed from ``masks`` unless
    given; ``distances`` is the
    :func:`~MedSORALib.measurements.distance_map` of ``masks[key]`` when already computed.
    """
    mask = np.asarray(masks[key], dtype=bool)
    out: dict = {}
    if key == "portal_vein_and_splenic_vein":
        # The main portal vein runs to the right of the confluence, in front of the inferior vena cava.
        x_split = split_x(volume, masks) if split is _UNSET else split
        idx = np.argwhere(mask)
        if x_split is not None:
            right = volume.index_to_ras(idx)[:, 0] > x_split
            portal = np.zeros_like(mask)
            portal[tuple(idx[right].T)] = True
            splenic = np.zeros_like(mask)
            splenic[tuple(idx[~right].T)] = True
            out.update(_largest(vessel_profile(volume, portal), "portal_"))
            out.update(_largest(vessel_profile(volume, splenic), "splenic_"))
            out["portal_split_x_mm"] = _round(x_split, 1)
        out.update(_largest(vessel_profile(volume, mask, distances)))
        return out
    info: dict = {}
    profile = vessel_profile(volume, mask, distances, info)
    out.update(_largest(profile))
    if key != "aorta":
        return out
    if extents is _UNSET:
        extents = {k: e for k in masks if (e := organ_extent_z(volume, masks[k])) is not None}
    if vertebrae is _UNSET:
        vertebrae = vertebra_extents(volume, masks)
    levels = aortic_sections(extents, info.get("arch_z"), vertebrae)
    out["hiatus_z_mm"] = _round(levels["hiatus_z"], 1)
    out["thoracic_above_z_mm"] = _round(levels["thoracic_above_z"], 1)
    out["abdominal_below_z_mm"] = _round(levels["abdominal_below_z"], 1)
    out["section_landmark"] = levels["landmark"]
    sections = [section_of(float(p["centre"][2]), levels) for p in profile]
    for name in SECTIONS:
        out.update(_largest([p for p, s in zip(profile, sections) if s == name], f"{name}_"))
    return out
