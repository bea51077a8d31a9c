"""Offscreen pictures drawn by Slicer's own views (MedSORALib/scene/render.py) and the score preview that uses them.

Rendering needs slicer-core ([dev]) and an offscreen OpenGL (EGL from Mesa; the
Debian packages are listed in .ci/apt-packages.txt), so these tests run in CI.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from MedSORALib import organs
from MedSORALib.colors import relevance_color
from MedSORALib.scene import render
from MedSORALib.scoring import OrganScore, SymptomResult

ROOT = Path(__file__).resolve().parents[1]


def _result(example_masks, top: str, top_relevance: float, others: float = 0.0) -> SymptomResult:
    scores = []
    for key in organs.structures_present(example_masks):
        relevance = top_relevance if key == top else others
        voxels = int(example_masks[key].sum())
        scores.append(OrganScore(key, organs.ORGANS[key].display_name, relevance, relevance, 0.0, voxels,
                                 voxels * 0.027))
    scores.sort(key=lambda s: -s.relevance)
    return SymptomResult("pain", True, 1.0, None, scores)


def _near(image: np.ndarray, rgb, tolerance: float = 40.0) -> np.ndarray:
    target = np.array(rgb, dtype=float) * 255
    return np.linalg.norm(image.astype(float) - target, axis=2) < tolerance


@pytest.fixture(scope="module")
def liver_renders(example_volume, example_masks):
    return render.render_result(_result(example_masks, "liver", 1.0), example_volume, example_masks)


def test_render_axial_slice_shows_the_relevant_organ_on_the_patients_right(liver_renders, example_volume,
                                                                          example_masks):
    axial = liver_renders.axial
    assert axial.shape == (560, 560, 3) and axial.dtype == np.uint8
    # the slice passes through the liver's centre (S coordinate of its centroid)
    centre = np.argwhere(example_masks["liver"]).mean(axis=0)
    assert liver_renders.axial_slice_ras == pytest.approx((example_volume.affine @ np.r_[centre, 1])[2], abs=1e-6)
    # the CT is drawn (grey levels of the abdominal window), not only the overlay
    grey = (np.abs(axial[..., 0].astype(int) - axial[..., 1]) < 4) & (np.abs(axial[..., 1].astype(int) -
                                                                            axial[..., 2]) < 4)
    assert (grey & (axial[..., 0] > 60)).mean() > 0.2
    # the liver (relevance 1: yellow of the plasma map, blended over the CT) lies on the image's left,
    # the patient's right in Slicer's radiological axial view
    yellowish = (axial[..., 0] > 110) & (axial[..., 1] > 90) & (axial[..., 2] < 0.6 * axial[..., 1])
    assert yellowish.sum() > 2000
    columns = np.nonzero(yellowish)[1]
    assert np.median(columns) < 280


def test_render_colours_follow_relevance(liver_renders, example_volume, example_masks):
    """The same scene with every relevance 0 has no yellow organ; with the liver at 1 the 3D view is full of it."""
    flat = render.render_result(_result(example_masks, "liver", 0.0), example_volume, example_masks)
    yellow = relevance_color(1.0)
    liver_3d = _near(liver_renders.three_d, yellow, 60).sum()
    assert liver_3d > 5000
    assert _near(flat.three_d, yellow, 60).sum() < 0.01 * liver_3d
    # the 3D view shows surfaces, not just the background gradient
    assert liver_renders.three_d.reshape(-1, 3).std(axis=0).max() > 20


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_score_preview_uses_the_rendered_views_else_the_2d_figure(tmp_path, monkeypatch, example_volume,
                                                                   example_masks):
    from MedSORALib import result_files as outputs

    result = _result(example_masks, "gallbladder", 0.8, 0.1)
    masks = {o.key: example_masks[o.key] for o in result.organs}
    rendered = outputs.write_best_preview(tmp_path / "rendered.png", result, example_volume, masks)
    assert _png_size(rendered) == (1200, 460)  # the composite of scene.render
    monkeypatch.setattr(render, "rendering_available", lambda: False)
    plain = outputs.write_best_preview(tmp_path / "plain.png", result, example_volume, masks)
    assert _png_size(plain) == (1430, 462)  # the matplotlib figure of preview.write_preview
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.png", "rendered.png"]


def test_readme_and_extension_show_the_rendered_screenshots():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## In 3D Slicer\n", 1)[1].split("\n## ", 1)[0]
    assert "mock-up" not in section.lower() and "Screenshots/MedSORA-panel.png" in section
    assert "python Screenshots/render.py" in section
    cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    for name in ("MedSORA-panel.png", "MedSORA-3d.png", "MedSORA-axial.png"):
        assert f"Screenshots/{name}" in cmake
        assert _png_size(ROOT / "Screenshots" / name)[0] >= 560
