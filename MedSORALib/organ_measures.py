"""Measurements of every organ of a case: each organ's shape and HU (:mod:`MedSORALib.measurements`), the
diameters of the vessels and the gallbladder (:mod:`MedSORALib.vessels`) and the right-left differences of the
paired organs.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from . import organs
from .measurements import PAIRS, VESSELS, _round, crop_to_organ, distance_map, organ_measurements
from .vessels import organ_extent_z, split_x, vertebra_extents, vessel_diameters
from .volume_io import Volume


def left_right(measurements: Mapping[str, dict]) -> dict:
    """Right minus left differences of kidneys and adrenal glands (length, volume, thickness, mean HU)."""
    out = {}
    for name, right, left in PAIRS:
        if right not in measurements or left not in measurements:
            continue
        r, l = measurements[right], measurements[left]
        entry = {}
        for field in ("max_diameter_mm", "volume_ml", "thickness_mm", "mean_hu"):
            if r.get(field) is not None and l.get(field) is not None:
                entry[f"{field}_difference"] = _round(r[field] - l[field], 2)
        if r.get("volume_ml") and l.get("volume_ml"):
            entry["volume_ratio_small_to_large"] = _round(min(r["volume_ml"], l["volume_ml"])
                                                          / max(r["volume_ml"], l["volume_ml"]), 3)
        entry["partially_imaged"] = bool(r.get("partially_imaged") or l.get("partially_imaged"))
        out[name] = entry
    return out


def measure_organs(volume: Volume, masks: Mapping[str, np.ndarray]) -> dict[str, dict]:
    """Measurements of every organ present in ``masks`` (module doc), keyed by structure, in catalog order."""
    # Each organ is measured on its bounding box: the same world positions, far fewer voxels to scan. One
    # full-grid mask at a time (a label map's masks are made on demand; each is 79 MB on a 512 x 512 x 300 CT).
    crops = {}
    for key in organs.structures_present(masks):
        mask = np.asarray(masks[key], dtype=bool)
        if mask.any():
            crops[key] = crop_to_organ(volume, mask)
        del mask
    vertebrae = vertebra_extents(volume, masks) if "aorta" in crops else {}

    extents = {key: organ_extent_z(sub, submask) for key, (sub, submask, _) in crops.items()}
    reference = next((k for k in ("inferior_vena_cava", "aorta") if k in crops), None)
    split = None if reference is None else split_x(crops[reference][0], {reference: crops[reference][1]})
    out = {}
    for key, (sub, submask, touches) in crops.items():
        distances = distance_map(submask, sub)  # shared by the HU statistics, the thickness and the vessel profile
        out[key] = organ_measurements(sub, submask, touches=touches, distances=distances)
        if key in VESSELS or key == "gallbladder":
            out[key].update(vessel_diameters(sub, {key: submask}, key, extents=extents, split=split,
                                             distances=distances, vertebrae=vertebrae))
    pairs = left_right(out)
    for name, right, left in PAIRS:
        if name in pairs:
            out[right]["left_right"] = pairs[name]
            out[left]["left_right"] = pairs[name]
    return out
