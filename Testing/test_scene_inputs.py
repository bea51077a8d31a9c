"""Scene in (MedSORALib/scene/inputs.py): CT and organ nodes as arrays, on a real MRML scene without the application.

PyPI ``slicer-core`` provides Slicer's MRML libraries; the example CT is a scalar
volume node and its TotalSegmentator organs a segmentation node.
"""
from __future__ import annotations

import numpy as np
import pytest

from slicer_scene import (SEG, ct_masks, ct_node, ct_volume, ijk_to_ras_of, known_scorer,  # noqa: F401
                          organ_node, scene, slicer, vtk)
from conftest import EXAMPLE_VOXELS as EXPECTED_VOXELS
from MedSORALib import organs, result_format, session as scoring_session
from MedSORALib.errors import SegmentationError, SymptomError, VolumeError
from MedSORALib.scene import inputs as scene_in
from MedSORALib.scene import nodes
from MedSORALib.scene import result_nodes as scene_out
from MedSORALib.scene import run as scene_run


# ------------------------------------------------------------------------------------------
# nodes in
# ------------------------------------------------------------------------------------------

def test_mrml_volume_node_round_trip_keeps_voxels_and_geometry(scene, ct_volume, ct_node):
    ijk = (17, 40, 9)
    kji_array = slicer.util.arrayFromVolume(ct_node)
    assert kji_array.shape == tuple(reversed(ct_volume.shape))
    assert kji_array[ijk[2], ijk[1], ijk[0]] == ct_volume.array[ijk]
    np.testing.assert_allclose(ijk_to_ras_of(ct_node), ct_volume.affine, atol=1e-6)

    back = scene_in.volume_from_node(ct_node)
    assert back.array.shape == ct_volume.shape == (122, 101, 30)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, ct_volume.array)
    np.testing.assert_allclose(back.affine, ct_volume.affine, atol=1e-6)


def test_mrml_organ_masks_from_segment_ids_and_names(organ_node, ct_node, ct_masks):
    assert organ_node.GetSegmentation().GetNumberOfSegments() == 12
    masks = scene_in.organ_masks_from_segmentation(organ_node, ct_node)
    assert {k: int(m.sum()) for k, m in masks.items()} == EXPECTED_VOXELS
    assert list(masks) == organs.structures_present(EXPECTED_VOXELS)  # catalog order
    for key, mask in masks.items():
        assert mask.shape == (122, 101, 30) and mask.dtype == bool
        np.testing.assert_array_equal(mask, ct_masks[key])


def test_mrml_organ_masks_from_foreign_names_shared_layer_and_terminology(scene, ct_node, ct_masks):
    """Names from other tools, one shared labelmap layer, and a terminology-only segment all resolve."""
    node = scene_out.segmentation_node_from_masks(
        {k: ct_masks[k] for k in ("liver", "kidney_left", "inferior_vena_cava", "spleen")}, ct_node, "mixed", scene=scene)
    segmentation = node.GetSegmentation()
    # The spleen moves to the ID "Segment_7" and the name "Segment_7": only its SNOMED terminology says what it is.
    spleen = slicer.vtkSegment()
    spleen.DeepCopy(segmentation.GetSegment("spleen"))
    segmentation.RemoveSegment("spleen")
    spleen.SetName("Segment_7")
    segmentation.AddSegment(spleen, "Segment_7")
    renames = {"liver": "Liver", "kidney_left": "Kidney L", "inferior_vena_cava": "IVC"}
    for segment_id, name in renames.items():
        segment = segmentation.GetSegment(segment_id)
        segment.SetName(name)
        segment.RemoveTag(slicer.vtkSegment.GetTerminologyEntryTagName())
    for segment_id in (*renames, "Segment_7"):
        segmentation.GetSegment(segment_id).RemoveTag(result_format.STRUCTURE_TAG)
    segmentation.CollapseBinaryLabelmaps()
    assert segmentation.GetNumberOfLayers() == 1

    masks = scene_in.organ_masks_from_segmentation(node, ct_node)
    assert sorted(masks) == ["inferior_vena_cava", "kidney_left", "liver", "spleen"]
    for key in masks:
        np.testing.assert_array_equal(masks[key], ct_masks[key])


def test_mrml_organ_masks_follow_transform_between_nodes(scene, ct_node, ct_masks):
    """A segmentation under a 3 mm (one voxel) translation gives masks shifted by one voxel along I."""
    node = scene_out.segmentation_node_from_masks({"liver": ct_masks["liver"]}, ct_node, "moved", scene=scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    spacing_i = float(np.linalg.norm(ijk_to_ras_of(ct_node)[:3, 0]))
    direction_i = ijk_to_ras_of(ct_node)[:3, 0] / spacing_i
    for axis in range(3):
        matrix.SetElement(axis, 3, float(direction_i[axis] * spacing_i))
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())

    masks = scene_in.organ_masks_from_segmentation(node, ct_node)
    expected = np.zeros_like(ct_masks["liver"])
    expected[1:] = ct_masks["liver"][:-1]
    np.testing.assert_array_equal(masks["liver"], expected)


def test_mrml_organ_masks_resampled_from_coarser_grid(scene, ct_node, ct_volume, ct_masks):
    """Segments stored on another grid (2x coarser) come back on the CT grid, close to the originals."""
    coarse_affine = ct_volume.affine.copy()
    coarse_affine[:3, :3] *= 2.0
    from MedSORALib.volume_io import Volume

    coarse_node = scene_out.volume_node_from_volume(
        Volume(np.zeros((61, 51, 15), np.float32), coarse_affine), "coarse", scene)
    # nearest-neighbour downsampling of the liver onto the coarse grid
    coarse_liver = ct_masks["liver"][::2, ::2, ::2][:61, :51, :15]
    node = scene_out.segmentation_node_from_masks({"liver": coarse_liver}, coarse_node, "coarse seg", scene=scene)
    masks = scene_in.organ_masks_from_segmentation(node, ct_node)
    assert masks["liver"].shape == (122, 101, 30)
    dice = 2 * np.logical_and(masks["liver"], ct_masks["liver"]).sum() / (
        masks["liver"].sum() + ct_masks["liver"].sum())
    assert dice > 0.85


def test_mrml_oblique_lps_grid_round_trip_keeps_world_positions(scene):
    """A CT stored LPS-first and tilted 20 degrees: masks go out and back on the same voxels and RAS points."""
    from MedSORALib.volume_io import Volume

    angle = np.deg2rad(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-2.0, -2.5, 4.0])  # I -> left, J -> posterior (LPS storage), K -> superior
    affine[:3, 3] = (40.0, -12.0, 7.5)
    rng = np.random.default_rng(0)
    ct = Volume(rng.normal(40, 10, (20, 18, 12)).astype(np.float32), affine)
    node = scene_out.volume_node_from_volume(ct, "oblique", scene)
    np.testing.assert_allclose(scene_in.volume_from_node(node).affine, affine, atol=1e-9)
    liver = np.zeros((20, 18, 12), bool)
    liver[3:9, 2:7, 1:5] = True
    spleen = np.zeros_like(liver)
    spleen[12:18, 10:16, 6:11] = True
    seg = scene_out.segmentation_node_from_masks({"liver": liver, "spleen": spleen}, node, "oblique organs", scene=scene)
    back = scene_in.organ_masks_from_segmentation(seg, node)
    np.testing.assert_array_equal(back["liver"], liver)
    np.testing.assert_array_equal(back["spleen"], spleen)
    # the segment's labelmap sits at the same RAS position as the CT voxels
    image = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(seg, "spleen", image, True)
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    image_to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    ijk = np.array([12, 10, 6, 1.0])
    np.testing.assert_allclose(image_to_world @ ijk, affine @ ijk, atol=1e-6)


def test_mrml_masks_from_a_surface_only_segmentation(scene, ct_node, ct_masks):
    """Segments whose source representation is a closed surface are converted back to voxels on the CT grid."""
    seg = scene_out.segmentation_node_from_masks({"kidney_right": ct_masks["kidney_right"]}, ct_node, "surfaces",
                                            scene=scene)
    surface_name = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    seg.CreateClosedSurfaceRepresentation()
    seg.GetSegmentation().SetSourceRepresentationName(surface_name)
    seg.GetSegmentation().RemoveRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    masks = scene_in.organ_masks_from_segmentation(seg, ct_node)
    truth = ct_masks["kidney_right"]
    dice = 2 * np.logical_and(masks["kidney_right"], truth).sum() / (masks["kidney_right"].sum() + truth.sum())
    assert dice > 0.95  # 0.973 measured: the surface round trip only moves boundary voxels


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------

def test_mrml_missing_volume_is_a_volume_error(organ_node):
    with pytest.raises(VolumeError, match="No input CT volume"):
        scene_run.run_symptom_scoring(None, organ_node, "abdominal pain", scorer=known_scorer())


def test_mrml_label_volume_is_not_a_ct(scene, organ_node):
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(VolumeError, match="not a scalar"):
        scene_in.volume_from_node(labelmap)


def test_mrml_missing_or_empty_segmentation_errors(scene, ct_node, ct_masks):
    with pytest.raises(SegmentationError, match="No organ segmentation"):
        scene_run.run_symptom_scoring(ct_node, None, "abdominal pain", scorer=known_scorer())

    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    with pytest.raises(SegmentationError, match="no abdominal organ segments"):
        scene_run.run_symptom_scoring(ct_node, empty, "abdominal pain", scorer=known_scorer())

    unknown = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour only")
    unknown.GetSegmentation().AddEmptySegment("tumor", "Tumor")
    with pytest.raises(SegmentationError, match="no abdominal organ segments"):
        scene_in.organ_masks_from_segmentation(unknown, ct_node)

    hollow = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "hollow")
    hollow.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    nodes.ensure_segmentation_converters()
    hollow.GetSegmentation().AddEmptySegment("liver", "Liver")
    with pytest.raises(SegmentationError, match="empty inside the CT"):
        scene_in.organ_masks_from_segmentation(hollow, ct_node)


def test_mrml_empty_symptom_is_a_symptom_error(ct_node, organ_node):
    with pytest.raises(SymptomError):
        scene_run.run_symptom_scoring(ct_node, organ_node, "   ", scorer=known_scorer())
    with pytest.raises(SymptomError):
        scoring_session.split_symptoms("\n \n")
    assert scoring_session.split_symptoms("pain\n  after meals ") == ["pain after meals"]
    assert scoring_session.split_symptoms("pain after meals\n\njaundice\n", one_per_line=True) == ["pain after meals", "jaundice"]



def test_scene_totalsegmentator_portal_vein_code_is_accepted_on_input(scene, ct_node, ct_masks):
    """TotalSegmentator codes its portal vein and splenic vein 110765007; a segment named only by that code resolves."""
    node = scene_out.segmentation_node_from_masks(
        {"portal_vein_and_splenic_vein": ct_masks["portal_vein_and_splenic_vein"], "liver": ct_masks["liver"]},
        ct_node, "ts", scene=scene)
    segmentation = node.GetSegmentation()
    vein = segmentation.GetSegment("portal_vein_and_splenic_vein")
    vein.RemoveTag(result_format.STRUCTURE_TAG)
    vein.SetName("Segment_1")
    nodes.set_segment_terminology(vein, "Segmentation category and type - Total Segmentator~SCT^123037004^Anatomical "
                                  "Structure~SCT^110765007^Portal vein and splenic vein~^^~Anatomic codes - DICOM "
                                  "master list~^^~^^")
    # the segment ID still spells the key: move the segment to an anonymous ID so only the code is left
    copy = slicer.vtkSegment()
    copy.DeepCopy(vein)
    segmentation.RemoveSegment("portal_vein_and_splenic_vein")
    segmentation.AddSegment(copy, "Segment_1")
    assert scene_in.segment_structure_key(node, "Segment_1") == "portal_vein_and_splenic_vein"
    masks = scene_in.organ_masks_from_segmentation(node, ct_node)
    np.testing.assert_array_equal(masks["portal_vein_and_splenic_vein"], ct_masks["portal_vein_and_splenic_vein"])
    # the output side writes the catalog's own code (32764006, in the DICOM master list), not TotalSegmentator's
    written = nodes.segment_terminology(scene_out.segmentation_node_from_masks(
        {"portal_vein_and_splenic_vein": ct_masks["portal_vein_and_splenic_vein"]}, ct_node, "out", scene=scene)
        .GetSegmentation().GetSegment("portal_vein_and_splenic_vein"))
    assert "SCT^32764006^Portal vein" in written and "110765007" not in written
