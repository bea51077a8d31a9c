"""The preview is in radiological convention whatever the storage order of the CT file."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, EXAMPLE_DICOM
from MedSORALib.organs import ORGANS
from MedSORALib.preview import PREVIEW_VIEWS, preview_slices, write_preview
from MedSORALib.scoring import OrganScore, SymptomResult
from MedSORALib.segmentation_io import read_organ_masks
from MedSORALib.volume_io import Volume, read_volume, write_volume

EXAMPLE_DICOM_SEG = DATA / "example_ct_dicom_seg.nii.gz"


def _reoriented(volume: Volume, masks: dict, axes: tuple[int, int, int], flips: tuple[int, ...]):
    """The same voxels stored in another order: axes permuted then flipped, the affine adjusted."""
    array = np.transpose(volume.array, axes)
    moved = {k: np.transpose(m, axes) for k, m in masks.items()}
    index_map = np.zeros((4, 4))  # new index -> old index
    for new_axis, old_axis in enumerate(axes):
        index_map[old_axis, new_axis] = 1.0
    index_map[3, 3] = 1.0
    for axis in flips:
        array = np.flip(array, axis)
        moved = {k: np.flip(m, axis) for k, m in moved.items()}
        flip = np.eye(4)
        flip[axis, axis] = -1.0
        flip[axis, 3] = array.shape[axis] - 1
        index_map = index_map @ flip
    return Volume(np.ascontiguousarray(array), volume.affine @ index_map), {
        k: np.ascontiguousarray(m) for k, m in moved.items()}


STORAGE_ORDERS = [((0, 1, 2), ()), ((0, 1, 2), (0, 1)), ((2, 0, 1), (0,)), ((1, 2, 0), (1, 2)), ((1, 0, 2), (2,))]


def _physical(volume: Volume) -> dict[str, np.ndarray]:
    """RAS x, y, z (mm) of every voxel."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), axis=-1)
    ras = volume.index_to_ras(ijk.reshape(-1, 3)).reshape(*volume.shape, 3)
    return {"x": ras[..., 0], "y": ras[..., 1], "z": ras[..., 2]}


def _check_radiological(panels):
    """Right (+x) on the image's left; anterior (+y) up in the axial panel; superior (+z) up otherwise."""
    axial, coronal, sagittal = (panels[v] for v in PREVIEW_VIEWS)
    assert np.all(np.diff(axial["x"], axis=1) < 0) and np.all(np.diff(axial["y"], axis=0) < 0)
    assert np.all(np.diff(coronal["x"], axis=1) < 0) and np.all(np.diff(coronal["z"], axis=0) < 0)
    # Sagittal as 3D Slicer shows it: anterior on the left, superior up.
    assert np.all(np.diff(sagittal["y"], axis=1) < 0) and np.all(np.diff(sagittal["z"], axis=0) < 0)


@pytest.mark.parametrize("axes,flips", STORAGE_ORDERS)
def test_panels_are_radiological_for_any_storage_order(tmp_path, example_volume, example_masks, axes, flips):
    volume, masks = _reoriented(example_volume, example_masks, axes, flips)
    # Through a file stored in LPS (NRRD), read back by the reader.
    write_volume(tmp_path / "ct.nrrd", volume, dtype=np.int16)
    volume = read_volume(tmp_path / "ct.nrrd")
    panels, aspects = preview_slices(volume, _physical(volume), masks["liver"])
    _check_radiological(panels)
    assert aspects == pytest.approx({"axial": 1.0, "coronal": 1.0, "sagittal": 1.0})
    # The same physical slices as the original storage order.
    reference, _ = preview_slices(example_volume, _physical(example_volume), example_masks["liver"])
    for view in PREVIEW_VIEWS:
        for axis in "xyz":
            np.testing.assert_allclose(panels[view][axis], reference[view][axis], atol=1e-3)


def _liver_column(volume, masks):
    panels, _ = preview_slices(volume, {"liver": masks["liver"].astype(np.uint8)}, masks["liver"])
    axial = panels["axial"]["liver"]
    return np.argwhere(axial)[:, 1].mean() / axial.shape[1], panels


def test_the_liver_is_on_the_image_left_for_the_nifti_and_the_dicom_series(example_volume, example_masks):
    nifti, _ = _liver_column(example_volume, example_masks)
    dicom = read_volume(EXAMPLE_DICOM)
    dicom_masks = read_organ_masks(EXAMPLE_DICOM_SEG, dicom, "totalsegmentator")
    assert dicom.direction[0, 0] < 0  # the series is stored with i towards the patient's left (LPS)
    column, panels = _liver_column(dicom, dicom_masks)
    assert nifti < 0.5 and column < 0.5, (nifti, column)
    # Anterior up: in the axial panel through the liver, the spleen lies posterior (lower) and to the right.
    both, _ = preview_slices(dicom, {k: dicom_masks[k].astype(np.uint8) for k in ("liver", "spleen", "aorta")},
                             dicom_masks["liver"])
    centre = {k: np.argwhere(both["axial"][k]).mean(axis=0) for k in ("liver", "spleen", "aorta")}
    assert centre["spleen"][1] > centre["aorta"][1] > centre["liver"][1]  # patient's left on the image's right


def _result(masks) -> SymptomResult:
    scores = [OrganScore(key=k, display_name=ORGANS[k].display_name, relevance=1.0 - n / len(masks),
                         text_prior=0.5, image_score=0.1, voxels=int(m.sum()), volume_ml=1.0)
              for n, (k, m) in enumerate(masks.items())]
    return SymptomResult(symptom="right upper quadrant pain", in_domain=True, ood_score=0.9, laterality="right",
                         organs=scores)


def test_the_png_is_the_same_for_every_storage_order(tmp_path, example_volume, example_masks):
    result = _result(example_masks)
    write_preview(tmp_path / "original.png", result, example_volume, example_masks)
    reference = np.asarray(Image.open(tmp_path / "original.png"))
    for n, (axes, flips) in enumerate(STORAGE_ORDERS[1:]):
        volume, masks = _reoriented(example_volume, example_masks, axes, flips)
        write_preview(tmp_path / f"copy{n}.png", result, volume, masks)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / f"copy{n}.png")), reference)
