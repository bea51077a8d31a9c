"""Reading CT volumes and organ masks: real files, real readers, physical geometry."""
import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from conftest import EXAMPLE_CT, EXAMPLE_DICOM, EXAMPLE_SEG, EXAMPLE_VOXELS, snapshot
from MedSORALib.errors import InputFileError, LabelSchemeError, SegmentationError, VolumeError
from MedSORALib.segmentation_io import read_organ_masks
from MedSORALib.volume_io import Volume, read_volume, write_volume


def _value_at(volume: Volume, ras) -> float:
    """The voxel value nearest to a RAS point."""
    return float(volume.array[tuple(np.rint(volume.ras_to_index(np.asarray(ras))).astype(int))])


def _centroid_ras(volume: Volume, mask: np.ndarray) -> np.ndarray:
    return volume.index_to_ras(np.argwhere(mask).mean(axis=0))


def test_nifti_is_read_in_ras_with_hu(example_volume):
    v = example_volume
    assert v.shape == (122, 101, 30)
    np.testing.assert_allclose(v.spacing, [3, 3, 3], atol=1e-4)
    np.testing.assert_allclose(v.direction, np.eye(3), atol=1e-6)
    assert v.array.dtype == np.float32
    assert v.array.min() == -1100 and v.array.max() == 1207  # HU preserved, not rescaled


def test_dicom_series_geometry_and_hu_match_the_headers():
    volume = read_volume(EXAMPLE_DICOM)
    assert volume.shape == (512, 512, 20)
    np.testing.assert_allclose(volume.spacing[:2], [0.9765625, 0.9765625], atol=1e-5)
    datasets = sorted((pydicom.dcmread(p) for p in EXAMPLE_DICOM.iterdir()),
                      key=lambda d: float(d.ImagePositionPatient[2]))
    np.testing.assert_allclose(volume.spacing[2],
                               float(datasets[1].ImagePositionPatient[2]) - float(datasets[0].ImagePositionPatient[2]),
                               atol=1e-4)
    for ds, (row, col) in [(datasets[0], (100, 200)), (datasets[7], (256, 256)), (datasets[-1], (400, 90))]:
        ipp = np.array(ds.ImagePositionPatient, dtype=float)
        iop = np.array(ds.ImageOrientationPatient, dtype=float)
        dr, dc = (float(x) for x in ds.PixelSpacing)
        lps = ipp + iop[:3] * dc * col + iop[3:] * dr * row
        ras = lps * np.array([-1, -1, 1])
        hu = float(ds.pixel_array[row, col]) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert _value_at(volume, ras) == pytest.approx(hu)


@pytest.mark.parametrize("suffix", [".nrrd", ".nhdr", ".mha", ".mhd", ".nii.gz"])
def test_formats_agree_on_geometry_and_hu(tmp_path, suffix):
    dicom = read_volume(EXAMPLE_DICOM)
    copy = tmp_path / f"dicom_copy{suffix}"
    write_volume(copy, dicom, dtype=np.int16)
    back = read_volume(copy)
    assert back.same_grid(dicom, atol=1e-4)
    rng = np.random.default_rng(0)
    for ijk in rng.integers(0, dicom.shape, size=(20, 3)):
        ras = dicom.index_to_ras(ijk)
        assert _value_at(back, ras) == _value_at(dicom, ras)


def test_nrrd_written_by_itk_reads_like_the_nifti(tmp_path, example_volume):
    # Write the NIfTI through SimpleITK (an independent writer, LPS on disk) and read it back.
    image = sitk.ReadImage(str(EXAMPLE_CT))
    sitk.WriteImage(image, str(tmp_path / "ct.nrrd"))
    nrrd = read_volume(tmp_path / "ct.nrrd")
    assert nrrd.same_grid(example_volume, atol=1e-4)
    np.testing.assert_array_equal(nrrd.array, example_volume.array)


def test_label_map_gives_the_twelve_organs_with_their_voxel_counts(example_masks):
    from MedSORALib.organs import STRUCTURES

    assert list(example_masks) == [k for k in STRUCTURES if k in EXAMPLE_VOXELS]  # catalog order
    assert "esophagus" not in example_masks
    assert {k: int(m.sum()) for k, m in example_masks.items()} == EXAMPLE_VOXELS


def test_reoriented_label_map_gives_the_same_physical_organs(tmp_path, example_volume, example_masks):
    import nibabel as nib

    image = nib.load(str(EXAMPLE_SEG))
    labels = np.asarray(image.dataobj)
    # Permute axes (i, j, k) -> (k, i, j) and flip the new first axis; fix the affine to match.
    permuted = np.transpose(labels, (2, 0, 1))[::-1]
    # new[a, b, c] = old[b, c, n - 1 - a]: the new -> old index map, composed with the old affine.
    new_to_old = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [-1, 0, 0, permuted.shape[0] - 1], [0, 0, 0, 1]], float)
    affine = image.affine @ new_to_old
    nib.save(nib.Nifti1Image(np.ascontiguousarray(permuted), affine), str(tmp_path / "reoriented.nii.gz"))
    masks = read_organ_masks(tmp_path / "reoriented.nii.gz", example_volume, "totalsegmentator")
    assert set(masks) == set(example_masks)
    for key in masks:
        np.testing.assert_array_equal(masks[key], example_masks[key])


def test_label_map_on_another_grid_is_resampled_onto_the_ct(tmp_path, example_volume, example_masks):
    # An independent resampler (SimpleITK) puts the labels on a finer, shifted, LPS NRRD grid.
    image = sitk.ReadImage(str(EXAMPLE_SEG))
    spacing = (2.0, 2.5, 1.5)
    size = [int(round(sz * sp / ns)) for sz, sp, ns in zip(image.GetSize(), image.GetSpacing(), spacing)]
    origin = tuple(o + d for o, d in zip(image.GetOrigin(), (1.1, -0.7, 0.4)))
    resampled = sitk.Resample(image, size, sitk.Transform(), sitk.sitkNearestNeighbor, origin, spacing,
                              image.GetDirection(), 0, image.GetPixelID())
    sitk.WriteImage(resampled, str(tmp_path / "finer.nrrd"))
    masks = read_organ_masks(tmp_path / "finer.nrrd", example_volume, "totalsegmentator")
    assert set(masks) == set(example_masks)
    for key in masks:
        shift = np.linalg.norm(_centroid_ras(example_volume, masks[key]) - _centroid_ras(example_volume, example_masks[key]))
        assert shift < 3.0, f"{key} moved {shift:.2f} mm"


def _bad_inputs(tmp_path, example_volume):
    text = tmp_path / "notes.nii.gz"
    text.write_text("not an image at all")
    flat = Volume(np.zeros((10, 10, 1), np.float32), np.eye(4))
    write_volume(tmp_path / "slice.nrrd", flat)
    import nibabel as nib
    nib.save(nib.Nifti1Image(np.random.rand(8, 8, 8, 3).astype(np.float32), np.eye(4)), str(tmp_path / "four_d.nii.gz"))
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), np.nan, np.float32), np.eye(4)), str(tmp_path / "nan.nii.gz"))
    nib.save(nib.Nifti1Image(np.full((8, 8, 8), 40, np.int16), np.eye(4)), str(tmp_path / "constant.nii.gz"))
    return {
        "missing.nii.gz": (InputFileError, "no such file"),
        "notes.nii.gz": (InputFileError, "not a readable NIfTI"),
        "slice.nrrd": (VolumeError, "2D image"),
        "four_d.nii.gz": (VolumeError, "4 dimensions"),
        "nan.nii.gz": (VolumeError, "NaN"),
        "constant.nii.gz": (VolumeError, "same value"),
    }


def test_bad_volumes_get_one_line_errors_and_nothing_is_touched(tmp_path, example_volume):
    cases = _bad_inputs(tmp_path, example_volume)
    before = snapshot(tmp_path)
    for name, (error, message) in cases.items():
        with pytest.raises(error, match=message) as info:
            read_volume(tmp_path / name)
        assert "\n" not in str(info.value)
    assert snapshot(tmp_path) == before


def test_bad_segmentations(tmp_path, example_volume):
    import nibabel as nib

    labels = np.asarray(nib.load(str(EXAMPLE_SEG)).dataobj)
    # Only non-organ labels (e.g. lungs = 10..14 in TotalSegmentator).
    nib.save(nib.Nifti1Image(np.where(labels > 0, 11, 0).astype(np.int16), np.eye(4) * [3, 3, 3, 1]),
             str(tmp_path / "lungs.nii.gz"))
    far = nib.load(str(EXAMPLE_SEG)).affine.copy()
    far[:3, 3] += 5000.0
    nib.save(nib.Nifti1Image(labels, far), str(tmp_path / "far.nii.gz"))
    shutil.copy(EXAMPLE_SEG, tmp_path / "seg.nii.gz")
    before = snapshot(tmp_path)
    with pytest.raises(SegmentationError, match="no known organ label"):
        read_organ_masks(tmp_path / "lungs.nii.gz", example_volume, "totalsegmentator")
    with pytest.raises(SegmentationError, match="does not overlap"):
        read_organ_masks(tmp_path / "far.nii.gz", example_volume, "totalsegmentator")
    with pytest.raises(LabelSchemeError, match="unknown label scheme"):
        read_organ_masks(tmp_path / "seg.nii.gz", example_volume, "nnunet")
    with pytest.raises(SegmentationError, match="needs its label scheme"):
        read_organ_masks(tmp_path / "seg.nii.gz", example_volume)
    with pytest.raises(InputFileError, match="no such file"):
        read_organ_masks(tmp_path / "absent.seg.nrrd", example_volume)
    assert snapshot(tmp_path) == before


def test_btcv_scheme_reads_a_btcv_label_map(tmp_path, example_volume, example_masks):
    import nibabel as nib
    from MedSORALib import organs

    btcv = np.zeros(example_volume.shape, np.uint8)
    for key, mask in example_masks.items():
        btcv[mask] = organs.ORGANS[key].btcv_label
    nib.save(nib.Nifti1Image(btcv, example_volume.affine), str(tmp_path / "btcv.nii.gz"))
    masks = read_organ_masks(tmp_path / "btcv.nii.gz", example_volume, "btcv")
    assert {k: int(m.sum()) for k, m in masks.items()} == EXAMPLE_VOXELS


def test_label_map_masks_are_computed_on_access_and_equal_the_split_label_map(example_volume):
    import nibabel as nib

    from MedSORALib.masks import LabelMasks, restrict
    from MedSORALib.segmentation_io import masks_from_labelmap

    masks = read_organ_masks(EXAMPLE_SEG, example_volume, "totalsegmentator")
    assert isinstance(masks, LabelMasks) and masks.shape == example_volume.shape
    expected = masks_from_labelmap(np.asarray(nib.load(str(EXAMPLE_SEG)).dataobj), "totalsegmentator")
    assert list(masks) == list(expected) and len(masks) == 12
    for key, mask in masks.items():
        assert mask.dtype == bool and np.array_equal(mask, expected[key]), key
        assert int(mask.sum()) == EXAMPLE_VOXELS[key]
    assert masks["liver"] is not masks["liver"]  # a fresh array each time, nothing kept
    some = restrict(masks, ["liver", "spleen"])
    assert isinstance(some, LabelMasks) and list(some) == ["spleen", "liver"]
    assert list(restrict(dict(expected), ["liver", "spleen"])) == ["liver", "spleen"]
    two_values = LabelMasks(np.array([[[0, 1], [2, 3]]]), {"kidney_left": [2, 3], "spleen": [1]})
    assert list(two_values) == ["spleen", "kidney_left"]
    assert two_values["kidney_left"].tolist() == [[[False, False], [True, True]]]
