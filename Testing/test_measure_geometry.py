"""Exactness of the fast geometry behind the organ measurements (Feret diameters, BM25 postings).

Each fast routine is checked against a direct computation that compares every pair of points or every
pixel corner, on shapes that exercise the pruning (long, round, hollow, oblique, many points).
"""
from __future__ import annotations

import numpy as np
import pytest

from MedSORALib import measurements as M
from MedSORALib.knowledge.kb import BM25, count_postings, tokenize
from MedSORALib.volume_io import Volume


def _brute_diameter(points: np.ndarray) -> float:
    d = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    return float(np.sqrt(d.max()))


def _all_corners(volume: Volume, mask: np.ndarray) -> np.ndarray:
    return (volume.index_to_ras(np.argwhere(mask))[:, None, :] + M._corner_offsets(volume)[None]).reshape(-1, 3)


def _oblique_volume(shape, spacing=(0.9, 1.3, 2.5), angle=0.4) -> Volume:
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.array(
        [[1.0, 0.0, 0.0], [0.0, np.cos(0.2), -np.sin(0.2)], [0.0, np.sin(0.2), np.cos(0.2)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation * np.asarray(spacing)
    affine[:3, 3] = (-40.0, 25.0, 300.0)
    return Volume(np.zeros(shape, dtype=np.float32), affine)


def _shapes():
    rng = np.random.default_rng(3)
    z, y, x = np.mgrid[:40, :36, :30]
    yield "ellipsoid", ((z - 20) / 18.0) ** 2 + ((y - 18) / 9.0) ** 2 + ((x - 15) / 6.0) ** 2 <= 1
    yield "ball", (z - 20) ** 2 + (y - 18) ** 2 + (x - 15) ** 2 <= 14 ** 2
    shell = ((z - 20) ** 2 + (y - 18) ** 2 + (x - 15) ** 2 <= 13 ** 2) & ((z - 20) ** 2 + (y - 18) ** 2 + (x - 15) ** 2 > 10 ** 2)
    yield "hollow shell", shell
    yield "random blobs", (rng.random((40, 36, 30)) > 0.995) | (((z - 8) ** 2 + (y - 30) ** 2 + (x - 4) ** 2) <= 9)
    bent = np.zeros((40, 36, 30), dtype=bool)
    for k in range(40):
        bent[k, 5 + int(10 * np.sin(k / 8.0)):12 + int(10 * np.sin(k / 8.0)), 10:16] = True
    yield "bent tube", bent


@pytest.mark.parametrize("name,mask", list(_shapes()), ids=[n for n, _ in _shapes()])
def test_largest_3d_diameter_is_exact(name, mask):
    volume = _oblique_volume(mask.shape)
    fast = M._max_feret(M._hull_corners(volume, mask))
    corners = _all_corners(volume, mask)
    hull_free = _brute_diameter(corners[np.unique(np.round(corners, 6), axis=0, return_index=True)[1]])
    assert fast == pytest.approx(hull_free, abs=1e-9)


def test_largest_diameter_of_a_point_cloud_needing_the_pruned_search():
    rng = np.random.default_rng(11)
    for scale in ((60.0, 20.0, 10.0), (30.0, 30.0, 30.0)):  # elongated, and round (little pruning)
        points = rng.normal(size=(3000, 3)) * np.asarray(scale)
        assert len(points) > 256  # past the direct comparison
        assert M._max_feret(points) == pytest.approx(_brute_diameter(points), abs=1e-9)


def test_direction_set_covers_every_line_within_the_stated_angle():
    rng = np.random.default_rng(5)
    lines = rng.normal(size=(200_000, 3))
    lines /= np.linalg.norm(lines, axis=1, keepdims=True)
    closest = np.abs(lines @ M._SPHERE.T).max(axis=1)
    assert closest.min() >= M._COVER_COS
    assert np.allclose(np.linalg.norm(M._SPHERE, axis=1), 1.0) and np.all(M._SPHERE[:, 2] > 0)


def _brute_axial(volume: Volume, mask: np.ndarray) -> tuple[float, float]:
    """Every pixel corner of every section, projected on the 1-degree directions."""
    cc = M.craniocaudal_axis(volume)
    inplane = [a for a in range(3) if a != cc]
    square = M._SQUARE @ volume.affine[:3, :3][:, inplane].T
    best = (0.0, 0.0)
    for k in range(mask.shape[cc]):
        idx = np.argwhere(mask)
        idx = idx[idx[:, cc] == k]
        if not len(idx):
            continue
        corners = (volume.index_to_ras(idx)[:, None, :] + square[None]).reshape(-1, 3)[:, :2]
        proj = corners @ M._DIRS2.T
        widths = proj.max(0) - proj.min(0)
        if widths.max() > best[0]:
            d = M._DIRS2[int(np.argmax(widths))]
            across = corners @ np.array([-d[1], d[0]])
            best = (float(widths.max()), float(across.max() - across.min()))
    return best


@pytest.mark.parametrize("cc_axis", [0, 1, 2])
def test_axial_diameters_equal_the_all_corner_computation(cc_axis):
    masks = dict(_shapes())
    mask = np.moveaxis(masks["bent tube"] | masks["random blobs"], 0, cc_axis)
    volume = _oblique_volume(mask.shape, angle=0.7)
    affine = volume.affine.copy()
    # Put the chosen grid axis along RAS z, so it is the craniocaudal one.
    order = [a for a in range(3) if a != cc_axis]
    affine[:3, :3] = np.zeros((3, 3))
    affine[:3, cc_axis] = (0.1, 0.0, 2.0)
    affine[:3, order[0]] = (0.8, 0.3, 0.0)
    affine[:3, order[1]] = (-0.2, 0.9, 0.05)
    volume = Volume(volume.array if volume.shape == mask.shape else np.zeros(mask.shape, np.float32), affine)
    assert M.craniocaudal_axis(volume) == cc_axis
    fast = M._axial_diameters(volume, mask)
    assert fast == pytest.approx(_brute_axial(volume, mask), abs=1e-9)


def test_postings_and_bm25_equal_a_direct_count():
    documents = [tokenize(t) for t in ("jaundice and pale stools", "pale skin, pale stools", "", "flank pain",
                                       "pain pain pain in the flank", "jaundiced")]
    words, docs, tf, starts = count_postings(documents)
    assert len(words) == len(set(words)) and starts[-1] == len(docs) == len(tf)
    for w, a, z in zip(words, starts[:-1], starts[1:]):
        expected = [(i, d.count(w)) for i, d in enumerate(documents) if w in d]
        assert list(zip(docs[a:z].tolist(), tf[a:z].tolist())) == expected
    index = BM25(documents)
    lengths = np.array([len(d) for d in documents], dtype=np.float64)
    for w in words:
        holders = [i for i, d in enumerate(documents) if w in d]
        idf = np.log(1.0 + (len(documents) - len(holders) + 0.5) / (len(holders) + 0.5))
        tf_w = np.array([documents[i].count(w) for i in holders], dtype=np.float64)
        norm = 1.5 * (1.0 - 0.75 + 0.75 * lengths[holders] / lengths.mean())
        assert np.array_equal(index.postings[w][0], holders)
        assert np.allclose(index.postings[w][1], idf * tf_w / (tf_w + norm), rtol=1e-6)
    assert count_postings([])[0] == [] and BM25([]).scores(["pain"]).shape == (0,)
