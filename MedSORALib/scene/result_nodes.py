"""Scene out: arrays and scoring results as nodes.

:func:`add_symptom_outputs` writes one :class:`~MedSORALib.scoring.SymptomResult`
into the scene: a segmentation node ``"MedSORA: <symptom>"`` on the CT's
geometry (it references the CT as its source volume) whose segments are
coloured by relevance and carry terminology and the ``MedSORA.*`` tags of
:func:`~MedSORALib.result_format.segment_tags` (the segment names and tags of
the ``.seg.nrrd`` file :mod:`MedSORALib.result_files` writes), a table node, a bar
chart and a text node with the supporting knowledge passages, all grouped in a
subject hierarchy folder under the CT's study.
:func:`run_symptom_scoring` is the blocking path for scripts: scene in, score
in this process, scene out.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import slicer
import vtk

from .. import organs
from ..colors import relevance_color
from ..diagnoses import SHOWN_DIAGNOSES
from ..errors import SegmentationError
from ..result_format import (CONTRAST_PHASE_TAG, DIFFERENTIAL_ATTRIBUTE, IN_DOMAIN_ATTRIBUTE, MODELS_ATTRIBUTE,
                             OUTSIDE_ATTRIBUTE, RELEVANCE_TAG, SCOPE_ATTRIBUTE, STRUCTURE_TAG, SYMPTOM_ATTRIBUTE,
                             contrast_phase_text, findings_text, flag_text, passages_text, segment_name,
                             segment_tags)
from ..scoring import SymptomResult
from ..volume_io import Volume
from .inputs import grid_from_node
from .nodes import (ensure_segmentation_converters, ijk_to_ras, scene_or_default, segment_tag,
                    set_segment_terminology, vtk_matrix)

#: Prefix of output node names.
OUTPUT_PREFIX = "MedSORA: "
#: Longest symptom text kept in node names (the full text is in the node attribute).
NAME_SYMPTOM_CHARS = 60

#: Table columns: two names, eight numbers (NaN where not measured), then two texts.
TABLE_COLUMNS = ("Organ", "Structure", "Relevance", "Text prior", "Image score", "Volume (ml)", "Finding boost",
                 "Length (mm)", "Max diameter (mm)", "Mean HU", "Partially imaged", "Findings")


def volume_node_from_volume(volume: Volume, name: str = "CT", scene=None):
    """Add a :class:`Volume` to the scene as a scalar volume node (with a default display node).

    Args:
        volume: array ``(I, J, K)`` (HU) and voxel-to-RAS affine.
        name: node name.
        scene: target scene (default ``slicer.mrmlScene``).
    """
    scene = scene_or_default(scene)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    _set_image_kji(node, np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0)))
    node.SetIJKToRASMatrix(vtk_matrix(np.asarray(volume.affine, dtype=np.float64)))
    node.CreateDefaultDisplayNodes()
    return node


def _set_image_kji(volume_node, kji: np.ndarray) -> None:
    from vtk.util import numpy_support

    kji = np.ascontiguousarray(kji)
    image = vtk.vtkImageData()
    image.SetDimensions(kji.shape[2], kji.shape[1], kji.shape[0])
    vtk_array = numpy_support.numpy_to_vtk(kji.ravel(), deep=True)
    image.GetPointData().SetScalars(vtk_array)
    volume_node.SetAndObserveImageData(image)


def _oriented_mask(mask_ijk: np.ndarray, grid_to_ras: np.ndarray):
    """A boolean ``(I, J, K)`` mask as a ``vtkOrientedImageData`` (uint8 0/1) on the given grid."""
    from vtk.util import numpy_support

    kji = np.ascontiguousarray(np.asarray(mask_ijk, dtype=np.uint8).transpose(2, 1, 0))
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(kji.shape[2], kji.shape[1], kji.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(kji.ravel(), deep=True,
                                                               array_type=vtk.VTK_UNSIGNED_CHAR))
    image.SetImageToWorldMatrix(vtk_matrix(grid_to_ras))
    return image


def segmentation_node_from_masks(masks: dict[str, np.ndarray], reference_volume_node, name: str,
                                 colors: dict[str, Sequence[float]] | None = None,
                                 tags: dict[str, dict[str, str]] | None = None, scene=None):
    """A new segmentation node with one segment per mask, on the reference CT's geometry.

    Args:
        masks: ``{structure key: bool (I, J, K)}`` on the reference grid.
        reference_volume_node: CT whose geometry the segmentation takes.
        name: node name.
        colors: ``{key: (r, g, b) 0..1}``; default the catalog colour.
        tags: extra segment tags ``{key: {tag: value}}``.

    Segment IDs are the structure keys, names their segment names ("Right kidney",
    :func:`~MedSORALib.result_format.segment_name`), terminology entries the
    catalog's SNOMED codes; every segment is tagged ``MedSORA.Structure``.
    """
    scene = scene_or_default(scene if scene is not None else reference_volume_node.GetScene())
    ensure_segmentation_converters()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    grid_to_ras = ijk_to_ras(reference_volume_node)
    shape = tuple(reference_volume_node.GetImageData().GetDimensions())  # (I, J, K)
    segmentation = node.GetSegmentation()
    for key in organs.structures_present(masks):
        mask = np.asarray(masks[key], dtype=bool)
        if mask.shape != shape:
            raise SegmentationError(f"Mask of {key} has shape {mask.shape}; the CT grid is {shape}.")
        organ = organs.ORGANS[key]
        color = tuple(float(c) for c in (colors or {}).get(key, organ.color))
        segment_id = segmentation.AddEmptySegment(key, segment_name(key), color)
        segment = segmentation.GetSegment(segment_id)
        set_segment_terminology(segment, organ.terminology_entry())
        segment.SetTag(STRUCTURE_TAG, key)
        for tag, value in (tags or {}).get(key, {}).items():
            segment.SetTag(tag, str(value))
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            _oriented_mask(mask, grid_to_ras), node, segment_id,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    if reference_volume_node.GetParentTransformNode() is not None:
        node.SetAndObserveTransformNodeID(reference_volume_node.GetParentTransformNode().GetID())
    return node


def organ_segmentation_from_labelmap_file(path: str, reference_volume_node, label_scheme: str | None = None,
                                          name: str | None = None, scene=None):
    """Load an organ label map file (NIfTI, NRRD, seg.nrrd...) as a segmentation node on the CT grid.

    Reading and label resolution are :func:`MedSORALib.segmentation_io.read_organ_masks`'s
    (the same reader the command line uses).
    """
    from ..segmentation_io import read_organ_masks

    reference = grid_from_node(reference_volume_node)
    masks = read_organ_masks(path, reference, label_scheme=label_scheme)
    return segmentation_node_from_masks({k: m for k, m in masks.items() if np.any(m)}, reference_volume_node,
                                        name or "Organs", scene=scene)


def output_name(symptom: str) -> str:
    """``"MedSORA: <symptom>"`` with the symptom on one line and cut to :data:`NAME_SYMPTOM_CHARS`."""
    text = " ".join(str(symptom).split())
    if len(text) > NAME_SYMPTOM_CHARS:
        text = text[:NAME_SYMPTOM_CHARS - 1].rstrip() + "\u2026"
    return OUTPUT_PREFIX + text


@dataclass
class SymptomOutputs:
    """The nodes created for one symptom."""

    symptom: str
    in_domain: bool
    segmentation_node: Any
    table_node: Any
    chart_node: Any
    passages_node: Any
    folder_item: int = 0
    result: SymptomResult | None = None


def add_relevance_segmentation(result: SymptomResult, masks: dict[str, np.ndarray], reference_volume_node,
                               scene=None):
    """The segmentation node of one symptom: organs coloured by relevance, tagged with their scores.

    Args:
        result: the scored symptom.
        masks: the organ masks the result was computed from ``{key: bool (I, J, K)}``.
        reference_volume_node: the CT.

    Each segment carries :func:`~MedSORALib.result_format.segment_tags`, the
    tags of the ``.seg.nrrd`` file written for the same result.
    """
    scores = {score.key: score for score in result.organs}
    keys = [k for k in organs.structures_present(masks) if k in scores and np.any(masks[k])]
    colors = {k: relevance_color(scores[k].relevance) for k in keys}
    tags = segment_tags(result)
    node = segmentation_node_from_masks({k: masks[k] for k in keys}, reference_volume_node,
                                        output_name(result.symptom), colors=colors,
                                        tags={k: tags[k] for k in keys}, scene=scene)
    node.SetAttribute(SYMPTOM_ATTRIBUTE, result.symptom)
    node.SetAttribute(IN_DOMAIN_ATTRIBUTE, flag_text(result.in_domain))
    node.SetAttribute(MODELS_ATTRIBUTE, json.dumps(result.models, default=str))
    node.SetAttribute(SCOPE_ATTRIBUTE, result.scope)
    if result.outside:
        node.SetAttribute(OUTSIDE_ATTRIBUTE, result.outside)
    node.SetAttribute(DIFFERENTIAL_ATTRIBUTE, json.dumps([d.to_dict() for d in result.differential[:SHOWN_DIAGNOSES]]))
    return node


def add_relevance_table(result: SymptomResult, scene=None, name: str | None = None):
    """A table node with one row per organ (relevance order): columns :data:`TABLE_COLUMNS`.

    Relevance and text prior are in [0, 1], image score in [-1, 1] (NaN when the
    image model was not used), volume in millilitres; the organ's measurements
    (:mod:`MedSORALib.measurements`), "yes" when it is partially imaged, and its abnormal
    findings (measurement and reference range). Organs are named by their segment
    names. The contrast phase is the node's ``MedSORA.ContrastPhase`` attribute.
    """
    scene = scene_or_default(scene)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", (name or output_name(result.symptom)) + " table")
    table = node.GetTable()
    organ_col = vtk.vtkStringArray()
    organ_col.SetName(TABLE_COLUMNS[0])
    key_col = vtk.vtkStringArray()
    key_col.SetName(TABLE_COLUMNS[1])
    numeric = []
    for column in TABLE_COLUMNS[2:10]:
        array = vtk.vtkDoubleArray()
        array.SetName(column)
        numeric.append(array)
    texts = []
    for column in TABLE_COLUMNS[10:]:
        array = vtk.vtkStringArray()
        array.SetName(column)
        texts.append(array)
    for score in result.organs:
        organ_col.InsertNextValue(segment_name(score.key))
        key_col.InsertNextValue(score.key)
        m = score.measurements or {}
        values = (score.relevance, score.text_prior, score.image_score, score.volume_ml, score.finding_boost,
                  m.get("length_mm"), m.get("max_diameter_mm"), m.get("mean_hu"))
        for array, value in zip(numeric, values):
            array.InsertNextValue(float(value) if value is not None else np.nan)
        texts[0].InsertNextValue("yes" if m.get("partially_imaged") else ("no" if m else ""))
        texts[1].InsertNextValue(findings_text(score))
    for array in (organ_col, key_col, *numeric, *texts):
        table.AddColumn(array)
    node.SetUseColumnTitleAsColumnHeader(True)
    node.SetAttribute(SYMPTOM_ATTRIBUTE, result.symptom)
    if result.contrast_phase:
        node.SetAttribute(CONTRAST_PHASE_TAG, contrast_phase_text(result.contrast_phase))
    node.Modified()
    return node


def add_relevance_chart(table_node, title: str, scene=None):
    """A bar chart (plot chart + plot series nodes) of the table's relevance column, labelled by organ."""
    scene = scene_or_default(scene)
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", title + " relevance")
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
    series.SetLabelColumnName(TABLE_COLUMNS[0])
    series.SetYColumnName(TABLE_COLUMNS[2])
    series.SetColor(*relevance_color(0.75))
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", title + " chart")
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle(title)
    chart.SetXAxisTitle("Organ")
    chart.SetYAxisTitle("Relevance")
    chart.SetLegendVisibility(False)
    return chart


def apply_relevance_display(segmentation_node, threshold: float = 0.0, opacity_by_relevance: bool = True,
                            min_opacity: float = 0.15) -> dict[str, bool]:
    """Show organs at or above a relevance threshold; optionally make opacity follow relevance.

    Args:
        threshold: relevance in [0, 1] below which an organ is hidden.
        opacity_by_relevance: opacity ``min_opacity + (1 - min_opacity) * relevance`` in 2D and 3D
            (else 1).

    Returns:
        ``{segment ID: visible}``.
    """
    display = segmentation_node.GetDisplayNode()
    if display is None:
        segmentation_node.CreateDefaultDisplayNodes()
        display = segmentation_node.GetDisplayNode()
    segmentation = segmentation_node.GetSegmentation()
    visible: dict[str, bool] = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        segment = segmentation.GetSegment(segment_id)
        value = segment_tag(segment, RELEVANCE_TAG)
        if value is None:
            continue
        relevance = float(value)
        shown = relevance >= float(threshold)
        opacity = (min_opacity + (1.0 - min_opacity) * relevance) if opacity_by_relevance else 1.0
        display.SetSegmentVisibility(segment_id, shown)
        display.SetSegmentOpacity3D(segment_id, opacity)
        display.SetSegmentOpacity2DFill(segment_id, opacity)
        visible[segment_id] = shown
    return visible


def segment_relevances(segmentation_node) -> dict[str, float]:
    """``{structure key: relevance}`` read back from an output segmentation's tags."""
    out = {}
    segmentation = segmentation_node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        relevance, key = segment_tag(segment, RELEVANCE_TAG), segment_tag(segment, STRUCTURE_TAG)
        if relevance is not None and key is not None:
            out[key] = float(relevance)
    return out


def add_symptom_outputs(result: SymptomResult, masks: dict[str, np.ndarray], reference_volume_node, *,
                        threshold: float = 0.0, opacity_by_relevance: bool = True,
                        show_3d: bool = False, scene=None) -> SymptomOutputs:
    """Write one symptom's result into the scene (segmentation, table, chart, passages, folder).

    Every call creates new nodes, so a second symptom (or a rerun) never
    overwrites an earlier result.
    """
    scene = scene_or_default(scene if scene is not None else reference_volume_node.GetScene())
    title = output_name(result.symptom)
    segmentation_node = add_relevance_segmentation(result, masks, reference_volume_node, scene=scene)
    apply_relevance_display(segmentation_node, threshold, opacity_by_relevance)
    if show_3d:
        segmentation_node.CreateClosedSurfaceRepresentation()
    table_node = add_relevance_table(result, scene=scene, name=title)
    chart_node = add_relevance_chart(table_node, title, scene=scene)
    passages_node = scene.AddNewNodeByClass("vtkMRMLTextNode", title + " passages")
    passages_node.SetText(passages_text(result))
    folder = _group_in_folder(scene, reference_volume_node, title,
                              (segmentation_node, table_node, chart_node, chart_node.GetNthPlotSeriesNode(0),
                               passages_node))
    return SymptomOutputs(result.symptom, result.in_domain, segmentation_node, table_node, chart_node,
                          passages_node, folder, result)


def _study_or_parent_item(sh, volume_item) -> int:
    """The CT's study item when it has one above it, else the CT's parent (the scene at worst)."""
    study_level = slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy()
    item = sh.GetItemParent(volume_item) if volume_item else 0
    while item and item != sh.GetSceneItemID():
        if sh.GetItemLevel(item) == study_level:
            return item
        item = sh.GetItemParent(item)
    parent = sh.GetItemParent(volume_item) if volume_item else 0
    return parent or sh.GetSceneItemID()


def _group_in_folder(scene, reference_volume_node, title: str, nodes) -> int:
    """Put the output nodes in a subject hierarchy folder under the CT's study (beside the CT without one)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if sh is None:
        return 0
    folder = sh.CreateFolderItem(_study_or_parent_item(sh, sh.GetItemByDataNode(reference_volume_node)), title)
    for node in nodes:
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, folder)
        else:  # without the application's subject hierarchy plugins nodes get no item by themselves
            sh.CreateItem(folder, node)
    return folder


def add_outputs_from_files(outputs: Sequence[dict], reference_volume_node, *, threshold: float = 0.0,
                           opacity_by_relevance: bool = True, show_3d: bool = False) -> list[SymptomOutputs]:
    """Output nodes from the files the scoring worker wrote (the ``outputs`` of its ``result`` event).

    Each entry names a ``PREFIX.json`` (the scored result) and a
    ``PREFIX.seg.nrrd`` (the organ masks that were scored, on the CT grid); both
    are read here, so the nodes show exactly what the files hold.
    """
    from ..segmentation_io import read_organ_masks

    reference = grid_from_node(reference_volume_node)  # the masks need the CT's grid, not its voxels
    created = []
    for output in outputs:
        with open(output["files"]["json"], encoding="utf-8") as handle:
            result = SymptomResult.from_dict(json.load(handle))
        masks = read_organ_masks(output["files"]["segmentation"], reference)
        created.append(add_symptom_outputs(result, masks, reference_volume_node, threshold=threshold,
                                           opacity_by_relevance=opacity_by_relevance, show_3d=show_3d))
    return created
