"""A synthetic abdominal CT phantom with organ labels, for tests and smoke training runs.

The phantom is a body cross-section (skin, subcutaneous fat, muscle wall,
intra-abdominal fat, vertebra) holding the 13 BTCV structures as deformed
ellipsoids and tubes. Positions, sizes and non-contrast HU values are taken
from the real TotalSegmentator example CT shipped with the tests (organ
centroids relative to the aorta, in RAS mm), then varied per phantom: global
scale and shift, per-organ offset, size, rotation and HU, a random contrast
phase (enhanced vessels and kidneys), low-frequency surface deformation and
Gaussian noise.

Coordinates are RAS millimetres (x to the patient's right, y anterior, z
superior), relative to the aorta at the level of the adrenal glands.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..organs import ORGANS, STRUCTURES, normalize_scheme


@dataclass(frozen=True)
class OrganShape:
    """Mean shape of one structure.

    Attributes:
        center: RAS offset (mm) from the reference point (aorta at adrenal level).
        radii: semi-axes (mm) along x, y, z before rotation.
        hu: mean non-contrast HU; ``hu_contrast``: mean HU in a contrast phase.
        yaw: rotation about the z axis in degrees (positive turns x toward y).
        kind: ``"ellipsoid"`` or ``"tube"`` (a z-aligned cylinder with rounded radius noise).
    """

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    hu: float
    hu_contrast: float
    yaw: float = 0.0
    kind: str = "ellipsoid"


# Painted in this order, so later (smaller) structures are drawn over larger ones.
SHAPES: dict[str, OrganShape] = {
    "liver": OrganShape((78.0, 25.0, 10.0), (70.0, 75.0, 75.0), 55.0, 100.0, yaw=15.0),
    "spleen": OrganShape((-97.0, -30.0, 5.0), (30.0, 45.0, 48.0), 45.0, 110.0, yaw=-35.0),
    "stomach": OrganShape((-35.0, 50.0, 5.0), (40.0, 38.0, 50.0), 25.0, 60.0, yaw=-30.0),
    "kidney_right": OrganShape((80.0, -32.0, -40.0), (28.0, 30.0, 55.0), 30.0, 160.0, yaw=30.0),
    "kidney_left": OrganShape((-62.0, -34.0, -32.0), (28.0, 30.0, 55.0), 30.0, 160.0, yaw=-30.0),
    "pancreas": OrganShape((-8.0, 32.0, -15.0), (60.0, 13.0, 14.0), 40.0, 95.0, yaw=-20.0),
    "gallbladder": OrganShape((78.0, 57.0, -30.0), (16.0, 22.0, 30.0), 8.0, 10.0, yaw=30.0),
    "portal_vein_and_splenic_vein": OrganShape((5.0, 30.0, -3.0), (55.0, 5.5, 5.5), 45.0, 170.0, yaw=-15.0),
    "inferior_vena_cava": OrganShape((30.0, 15.0, -10.0), (12.0, 10.0, 75.0), 40.0, 140.0, kind="tube"),
    "aorta": OrganShape((0.0, 0.0, 0.0), (10.0, 10.0, 85.0), 45.0, 220.0, kind="tube"),
    "esophagus": OrganShape((-8.0, 12.0, 75.0), (9.0, 8.0, 35.0), 35.0, 45.0, kind="tube"),
    "adrenal_gland_right": OrganShape((46.0, -7.0, 10.0), (3.5, 18.0, 16.0), 25.0, 60.0, yaw=-20.0),
    "adrenal_gland_left": OrganShape((-30.0, -3.0, 12.0), (3.5, 13.0, 18.0), 25.0, 60.0, yaw=20.0),
}


#: Controlled abnormalities :func:`make_phantom` can add (``abnormality=``), each to one structure.
ABNORMALITIES: dict[str, str] = {
    "splenomegaly": "spleen 1.35 x wider and 1.5 x longer (about 3 times the volume)",
    "aaa": "a 45 mm fusiform aneurysm of the infrarenal aorta (50 mm long, 55 mm below the adrenal level)",
    "fatty_liver": "liver at 15 HU (unenhanced)",
    "atrophic_kidney": "left kidney at 0.6 x its size",
    "distended_gallbladder": "gallbladder 54 mm wide and 90 mm long",
    "thick_adrenal": "a 24 mm nodule in the left adrenal gland",
    "dilated_aorta": "the whole aorta dilated to an elliptic section of 38 x 34 mm (left-right x front-back)",
}
#: Diameter (mm) of the aneurysm of the ``"aaa"`` phantom and its centre (RAS mm from the reference point).
AAA_DIAMETER_MM = 45.0
AAA_CENTER = (0.0, 0.0, -55.0)
#: Major and short axis (mm) of the aortic section of the ``"dilated_aorta"`` phantom.
DILATED_AORTA_MM = (38.0, 34.0)


def _rotation_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def _surface_noise(rng: np.random.Generator, u: np.ndarray, amplitude: float) -> np.ndarray:
    """Smooth radial deformation: a few random low-frequency sinusoids of the unit-sphere coordinates u (..., 3)."""
    out = np.zeros(u.shape[:-1])
    for _ in range(3):
        freq = rng.normal(size=3) * 1.5
        out += np.sin(u @ freq + rng.uniform(0, 2 * np.pi))
    return amplitude * out / 3.0


def make_phantom(
    seed: int | None = 0,
    *,
    shape: tuple[int, int, int] = (128, 112, 72),
    spacing: tuple[float, float, float] = (3.0, 3.0, 3.0),
    label_scheme: str = "totalsegmentator",
    variation: float = 1.0,
    noise_hu: float = 12.0,
    contrast: bool | None = None,
    orientation: str = "RAS",
    abnormality: str | None = None,
):
    """Make one phantom CT and its label map.

    Args:
        seed: random seed (the same seed gives the same phantom); ``None`` draws one.
        shape: grid size (I, J, K) in voxels.
        spacing: voxel size in mm along I, J, K.
        label_scheme: label values to write: ``"totalsegmentator"``, ``"btcv"`` or ``"amos"``
            (structures without a label in that scheme are left unlabelled).
        variation: 0 gives the mean anatomy; 1 the default spread of positions, sizes and HU.
        noise_hu: standard deviation of the Gaussian noise in HU.
        contrast: force a contrast phase (True) or none (False); ``None`` draws it (probability 0.4).
        orientation: ``"RAS"`` (index axes along +x, +y, +z) or ``"LPS"`` (along -x, -y, +z), to exercise
            reorientation.
        abnormality: one of :data:`ABNORMALITIES` to add a controlled abnormality, or ``None``.

    Returns:
        (volume, labels): a :class:`MedSORALib.volume_io.Volume` (float32 HU) and an int16 label map (I, J, K).
    """
    from ..volume_io import Volume

    scheme = normalize_scheme(label_scheme)
    if abnormality is not None and abnormality not in ABNORMALITIES:
        raise ValueError(f"unknown abnormality {abnormality!r}; choose one of: {', '.join(ABNORMALITIES)}")
    rng = np.random.default_rng(seed)
    v = float(variation)
    spacing_arr = np.asarray(spacing, dtype=float)
    shape_arr = np.asarray(shape)
    if contrast is None:
        contrast = bool(rng.random() < 0.4)

    # Voxel -> RAS: the grid is centred on the reference point (plus a random shift).
    signs = np.array([1.0, 1.0, 1.0]) if orientation.upper() == "RAS" else np.array([-1.0, -1.0, 1.0])
    shift = rng.normal(0.0, 8.0, size=3) * v
    affine = np.eye(4)
    affine[:3, :3] = np.diag(signs * spacing_arr)
    center_index = (shape_arr - 1) / 2.0
    affine[:3, 3] = shift - affine[:3, :3] @ center_index
    # The reference point sits a little above the middle of the grid so the kidneys fit.
    affine[2, 3] -= 10.0

    ii, jj, kk = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    ras = np.stack([ii, jj, kk], axis=-1) @ affine[:3, :3].T.astype(np.float32) + affine[:3, 3].astype(np.float32)
    x, y = ras[..., 0], ras[..., 1]

    scale = 1.0 + rng.normal(0.0, 0.06) * v
    body_a = (160.0 + rng.normal(0, 10) * v) * scale
    body_b = (125.0 + rng.normal(0, 8) * v) * scale
    body_cx, body_cy = 10.0, 10.0  # body centre relative to the aorta (the aorta lies in front of the spine)
    rb = ((x - body_cx) / body_a) ** 2 + ((y - body_cy) / body_b) ** 2
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[rb <= 1.0] = 40.0  # skin
    fat_in = ((x - body_cx) / (body_a - 4)) ** 2 + ((y - body_cy) / (body_b - 4)) ** 2 <= 1.0
    hu[fat_in] = -100.0 + rng.normal(0, 10) * v  # subcutaneous fat
    wall = ((x - body_cx) / (body_a - 20)) ** 2 + ((y - body_cy) / (body_b - 18)) ** 2 <= 1.0
    hu[wall] = 50.0  # muscle wall
    cavity = ((x - body_cx) / (body_a - 30)) ** 2 + ((y - body_cy) / (body_b - 28)) ** 2 <= 1.0
    hu[cavity] = -90.0 + rng.normal(0, 10) * v  # intra-abdominal fat
    spine = (x / 20.0) ** 2 + ((y + 38.0) / 18.0) ** 2 <= 1.0
    hu[spine] = 350.0 + rng.normal(0, 40) * v
    psoas = ((np.abs(x) - 38.0) / 16.0) ** 2 + ((y + 40.0) / 18.0) ** 2 <= 1.0
    hu[psoas & (ras[..., 2] < -20)] = 45.0

    labels = np.zeros(shape, dtype=np.int16)
    label_of = {k: getattr(ORGANS[k], {"btcv": "btcv_label", "totalsegmentator": "totalseg_label",
                                        "amos": "amos_label"}[scheme]) for k in STRUCTURES}
    inv_affine = np.linalg.inv(affine)
    for key, shp in SHAPES.items():
        # Small structures move less, so neighbours keep their order (left adrenal stays left of the aorta).
        jitter = float(np.clip(min(shp.radii[0], shp.radii[1]) / 4.0, 2.0, 6.0))
        center = np.asarray(shp.center) * scale + rng.normal(0.0, jitter, size=3) * v
        radii = np.asarray(shp.radii) * scale * np.exp(rng.normal(0.0, 0.12, size=3) * v)
        if abnormality == "splenomegaly" and key == "spleen":
            radii = radii * np.array([1.35, 1.35, 1.5])
        elif abnormality == "atrophic_kidney" and key == "kidney_left":
            radii = radii * 0.6
        elif abnormality == "dilated_aorta" and key == "aorta":
            radii = np.array([DILATED_AORTA_MM[0] / 2 * scale, DILATED_AORTA_MM[1] / 2 * scale, radii[2]])
        elif abnormality == "distended_gallbladder" and key == "gallbladder":
            radii = np.array([27.0, 27.0, 45.0]) * scale
        yaw = shp.yaw + rng.normal(0.0, 10.0) * v
        rot = _rotation_z(yaw)
        # Work inside the organ's bounding box only.
        reach = np.abs(rot) @ radii * 1.3 + 2 * spacing_arr.max()
        if abnormality == "aaa" and key == "aorta":
            reach = np.maximum(reach, AAA_DIAMETER_MM / 2 * scale + 2 * spacing_arr.max())
        if abnormality == "thick_adrenal" and key == "adrenal_gland_left":
            reach = np.maximum(reach, 12.0 + 2 * spacing_arr.max())
        corners = np.array([[cx, cy, cz] for cx in (-1, 1) for cy in (-1, 1) for cz in (-1, 1)]) * reach + center
        idx = corners @ inv_affine[:3, :3].T + inv_affine[:3, 3]
        lo = np.clip(np.floor(idx.min(0)).astype(int), 0, shape_arr)
        hi = np.clip(np.ceil(idx.max(0)).astype(int) + 1, 0, shape_arr)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        local = (ras[box] - center) @ rot  # into the organ's own axes
        u = local / radii
        if shp.kind == "tube":
            r = np.sqrt(u[..., 0] ** 2 + u[..., 1] ** 2)
            bend = _surface_noise(rng, u, 0.15 * v)
            inside = (r <= 1.0 + bend) & (np.abs(u[..., 2]) <= 1.0)
        else:
            r = np.sqrt((u ** 2).sum(-1))
            inside = r <= 1.0 + _surface_noise(rng, u, 0.18 * v)
        if abnormality == "aaa" and key == "aorta":
            # A fusiform aneurysm: an ellipsoid of the given diameter around the aortic axis.
            bulge = (ras[box] - (center + np.asarray(AAA_CENTER) * scale)) / np.array(
                [AAA_DIAMETER_MM / 2, AAA_DIAMETER_MM / 2, 25.0])
            inside |= (bulge ** 2).sum(-1) <= 1.0
        if abnormality == "thick_adrenal" and key == "adrenal_gland_left":
            inside |= (((ras[box] - center) / 12.0) ** 2).sum(-1) <= 1.0
        if key == "liver":
            # Left lobe reaching across the midline in front of the stomach.
            lobe_c = np.array([-45.0, 55.0, 25.0]) * scale + rng.normal(0, 5, size=3) * v - center
            lobe = (ras[box] - center - lobe_c) / (np.array([55.0, 25.0, 30.0]) * scale)
            inside |= (lobe ** 2).sum(-1) <= 1.0
        mean_hu = (shp.hu_contrast if contrast else shp.hu) + rng.normal(0.0, 8.0) * v
        if abnormality == "fatty_liver" and key == "liver":
            mean_hu = 15.0 + (45.0 if contrast else 0.0)
        region_hu = hu[box]
        region_hu[inside] = mean_hu
        if key == "stomach":
            # Gas in the anterior, superior part of the stomach.
            gas = inside & (u[..., 1] > 0.35 + rng.normal(0, 0.1) * v) & (u[..., 2] > -0.2)
            region_hu[gas] = -850.0
        if key.startswith("kidney") and contrast:
            # Corticomedullary pattern: the central sinus stays darker.
            region_hu[inside & (r < 0.45)] = 30.0
        lab = label_of[key]
        # A later structure replaces earlier labels where they overlap.
        labels[box][inside] = 0 if lab is None else lab
        hu[box] = region_hu

    hu += rng.normal(0.0, noise_hu, size=shape).astype(np.float32)
    return Volume(array=hu.astype(np.float32), affine=affine, source=f"phantom(seed={seed})"), labels
