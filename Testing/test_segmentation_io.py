"""Writing organ segmentations: .seg.nrrd read back by slicerio and by Slicer's MRML (slicer-core)."""

import numpy as np
import pytest

from conftest import EXAMPLE_VOXELS, snapshot
from MedSORALib import organs, result_format
from MedSORALib.errors import SegmentationError
from MedSORALib.segmentation_io import read_organ_masks, read_seg_nrrd, write_seg_nrrd
from MedSORALib.volume_io import Grid


@pytest.fixture()
def written(tmp_path, example_volume, example_masks):
    tags = {k: {"MedSORA.Relevance": f"{0.1 + 0.05 * i:.3f}"} for i, k in enumerate(example_masks)}
    colors = {"liver": (0.9, 0.1, 0.2)}
    path = write_seg_nrrd(tmp_path / "organs.seg.nrrd", example_masks, example_volume, segment_tags=tags, colors=colors)
    return path, tags, colors


def test_seg_nrrd_reads_back_through_slicerio(written, example_volume, example_masks):
    path, tags, colors = written
    seg = read_seg_nrrd(path)
    np.testing.assert_allclose(seg["affine"], example_volume.affine, atol=1e-6)
    by_id = {s["id"]: s for s in seg["segments"]}
    assert list(by_id) == list(example_masks)
    for key, segment in by_id.items():
        organ = organs.ORGANS[key]
        assert segment["name"] == result_format.segment_name(key)
        expected_color = colors.get(key, organ.color)
        np.testing.assert_allclose(segment["color"], expected_color, atol=1e-5)
        assert segment["terminology"]["type"] == list(organ.snomed_type)
        assert segment["tags"]["MedSORA.Relevance"] == tags[key]["MedSORA.Relevance"]
        mask = seg["voxels"] == segment["labelValue"]
        assert int(mask.sum()) == EXAMPLE_VOXELS[key]
        np.testing.assert_array_equal(mask, example_masks[key])
    # And through the library's own mask reader (names + terminology matching).
    again = read_organ_masks(path, example_volume)
    assert {k: int(m.sum()) for k, m in again.items()} == EXAMPLE_VOXELS


def test_seg_nrrd_reads_back_through_slicer_mrml(written, example_volume, example_masks):
    slicer = pytest.importorskip("slicer")
    import vtk

    path, tags, colors = written
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(example_masks)
    for key, mask in example_masks.items():
        segment = segmentation.GetSegment(key)
        organ = organs.ORGANS[key]
        assert segment.GetName() == result_format.segment_name(key)
        np.testing.assert_allclose(segment.GetColor(), colors.get(key, organ.color), atol=1e-5)
        entry = vtk.reference("")
        assert segment.GetTag("TerminologyEntry", entry)
        assert organs.organ_key_from_terminology(str(entry)) == key
        relevance = vtk.reference("")
        assert segment.GetTag("MedSORA.Relevance", relevance) and str(relevance) == tags[key]["MedSORA.Relevance"]
        labelmap = slicer.vtkOrientedImageData()
        node.GetBinaryLabelmapRepresentation(key, labelmap)
        matrix = vtk.vtkMatrix4x4()
        labelmap.GetImageToWorldMatrix(matrix)
        image_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        extent = labelmap.GetExtent()
        from vtk.util.numpy_support import vtk_to_numpy

        dims = [extent[1] - extent[0] + 1, extent[3] - extent[2] + 1, extent[5] - extent[4] + 1]
        scalars = vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(dims[::-1]).transpose(2, 1, 0)
        ijk = np.argwhere(scalars > 0) + np.array(extent[::2])  # a binary labelmap of this segment alone
        # Physical positions of MRML's voxels equal those of the input mask.
        mrml_ras = ijk @ image_to_ras[:3, :3].T + image_to_ras[:3, 3]
        ours = example_volume.index_to_ras(np.argwhere(mask))
        assert len(mrml_ras) == len(ours) == EXAMPLE_VOXELS[key]
        np.testing.assert_allclose(np.sort(mrml_ras, axis=0), np.sort(ours, axis=0), atol=1e-3)


def test_overlapping_masks_go_to_layers(tmp_path, example_volume, example_masks):
    masks = dict(example_masks)
    masks["pancreas"] = masks["pancreas"] | masks["spleen"]  # overlaps the spleen
    path = write_seg_nrrd(tmp_path / "overlap.seg.nrrd", masks, example_volume)
    seg = read_seg_nrrd(path)
    assert seg["voxels"].ndim == 4 and seg["voxels"].shape[0] == 2
    back = read_organ_masks(path, example_volume)
    np.testing.assert_array_equal(back["pancreas"], masks["pancreas"])
    np.testing.assert_array_equal(back["spleen"], masks["spleen"])


def test_failed_write_leaves_nothing(tmp_path, example_volume, example_masks):
    before = snapshot(tmp_path)
    bad = {"liver": example_masks["liver"][:-1]}
    with pytest.raises(SegmentationError, match="shape"):
        write_seg_nrrd(tmp_path / "x.seg.nrrd", bad, example_volume)
    with pytest.raises(SegmentationError, match="cannot store"):
        write_seg_nrrd(tmp_path / "x.seg.nrrd", {"liver": example_masks["liver"]}, example_volume,
                       segment_tags={"liver": {"note": "a|b"}})
    with pytest.raises(SegmentationError, match="unknown organ"):
        write_seg_nrrd(tmp_path / "x.seg.nrrd", {"lung": example_masks["liver"]}, example_volume)
    assert snapshot(tmp_path) == before


def test_atomic_writes_keep_the_old_file_on_error_and_use_umask_permissions(tmp_path):
    import os

    from MedSORALib.files import atomic_target, atomic_write_text

    target = atomic_write_text(tmp_path / "report.json", "{}\n")
    mask = os.umask(0o022)
    os.umask(mask)
    assert (target.stat().st_mode & 0o777) == (0o666 & ~mask)
    with pytest.raises(RuntimeError):
        with atomic_target(target) as tmp:
            tmp.write_text("half written")
            raise RuntimeError("writer failed")
    assert target.read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_masks_placed_on_a_grid_equal_those_placed_on_the_ct(tmp_path, example_volume, example_masks):
    """Reading needs the CT's shape and affine only: a Grid gives the same masks as the Volume."""
    coarse = example_volume.affine.copy()
    coarse[:3, :3] *= 2.0  # the masks on a grid of twice the spacing, same origin
    shape = tuple((n + 1) // 2 for n in example_volume.shape)
    on_coarse = {k: m[::2, ::2, ::2] for k, m in example_masks.items()}
    from MedSORALib.volume_io import Volume

    path = write_seg_nrrd(tmp_path / "coarse.seg.nrrd", on_coarse, Volume(np.zeros(shape, np.float32), coarse))
    grid = example_volume.grid
    assert isinstance(grid, Grid) and grid.shape == example_volume.shape
    from_grid = read_organ_masks(path, grid)
    from_volume = read_organ_masks(path, example_volume)
    assert sorted(from_grid) == sorted(from_volume) == sorted(example_masks)
    for key in from_grid:
        assert from_grid[key].shape == example_volume.shape
        np.testing.assert_array_equal(from_grid[key], from_volume[key])
        # nearest neighbour back onto the fine grid: every even voxel keeps its coarse value
        np.testing.assert_array_equal(from_grid[key][::2, ::2, ::2], on_coarse[key])
