"""The relevance colour map, shared by every output (files, Slicer nodes, previews).

Relevance in [0, 1] is shown on matplotlib's perceptually uniform "plasma" map
(dark blue = 0, yellow = 1), interpolated linearly from 17 of its stops so that
it needs no matplotlib (3D Slicer does not ship it); the interpolation is within
0.02 of matplotlib's table.
"""
from __future__ import annotations

import numpy as np

#: Name of the colour map the stops come from.
RELEVANCE_COLORMAP = "plasma"

#: matplotlib's "plasma" at 0, 1/16, ..., 1 (RGB in 0..1).
PLASMA_STOPS = np.array([
    (0.050383, 0.029803, 0.527975), (0.193374, 0.018354, 0.59033), (0.299855, 0.009561, 0.631624),
    (0.399411, 0.000859, 0.656133), (0.494877, 0.01199, 0.657865), (0.584391, 0.068579, 0.632812),
    (0.665129, 0.138566, 0.585582), (0.736019, 0.209439, 0.527908), (0.798216, 0.280197, 0.469538),
    (0.853319, 0.351553, 0.413734), (0.901807, 0.425087, 0.359688), (0.942598, 0.502639, 0.305816),
    (0.973416, 0.585761, 0.25154), (0.991365, 0.675355, 0.198453), (0.993033, 0.77172, 0.154808),
    (0.974443, 0.874622, 0.144061), (0.940015, 0.975158, 0.131326),
])


def relevance_color(value: float) -> tuple[float, float, float]:
    """RGB in 0..1 of a relevance (clipped to [0, 1]; NaN counts as 0)."""
    value = float(value) if np.isfinite(value) else 0.0
    x = float(np.clip(value, 0.0, 1.0)) * (len(PLASMA_STOPS) - 1)
    low = min(int(np.floor(x)), len(PLASMA_STOPS) - 2)
    t = x - low
    rgb = (1 - t) * PLASMA_STOPS[low] + t * PLASMA_STOPS[low + 1]
    return (round(float(rgb[0]), 6), round(float(rgb[1]), 6), round(float(rgb[2]), 6))


def relevance_colormap():
    """The same map as a matplotlib colormap (for previews)."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("medsora_relevance", [tuple(c) for c in PLASMA_STOPS])
