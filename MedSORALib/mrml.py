"""MRML side of the 3D Slicer module: nodes in, nodes out.

Everything the MedSORA module does to the scene lives here, so that it runs the
same inside Slicer and in plain Python with PyPI ``slicer-core`` (Slicer's MRML
without Qt), where the tests exercise it. Only ``slicer``, ``vtk``, ``numpy``,
the standard library and :mod:`MedSORALib` are imported; nothing here opens a
dialog or needs ``slicer.app`` / ``slicer.modules``.

The data path:

1. :func:`volume_from_node` and :func:`organ_masks_from_segmentation` turn a CT
   volume node and an organ segmentation node into a
   :class:`~MedSORALib.volume_io.Volume` and boolean masks on the CT grid
   (numpy ``(I, J, K)`` order; Slicer's arrays are ``(K, J, I)``).
2. :class:`ScoringJob` runs the scoring entry
   :func:`MedSORALib.scoring.score_volume` (the same one the command line and
   the batch script call) on those arrays, blocking or in a background thread.
3. :func:`add_symptom_outputs` writes one result into the scene: a segmentation
   node ``"MedSORA: <symptom>"`` whose segments are coloured by relevance and
   carry terminology and ``MedSORA.*`` tags, a table node, a bar chart and a
   text node with the supporting knowledge passages, grouped in a subject
   hierarchy folder next to the CT.
"""
from __future__ import annotations

import json
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import slicer
import vtk

from . import organs
from .colors import relevance_color
from .errors import MedSORAError, SegmentationError, SymptomError, VolumeError
from .volume_io import Volume

#: Segment tag holding the organ's relevance to the symptom, a decimal in [0, 1].
RELEVANCE_TAG = "MedSORA.Relevance"
#: Segment tag holding the text prior (text-only relevance), a decimal in [0, 1].
TEXT_PRIOR_TAG = "MedSORA.TextPrior"
#: Segment tag holding the image-text similarity, a decimal in [-1, 1] ("" when absent).
IMAGE_SCORE_TAG = "MedSORA.ImageScore"
#: Segment tag holding the catalog structure key, e.g. ``kidney_right``.
STRUCTURE_TAG = "MedSORA.Structure"
#: Node attributes on the output segmentation.
SYMPTOM_ATTRIBUTE = "MedSORA.Symptom"
IN_DOMAIN_ATTRIBUTE = "MedSORA.InDomain"
MODELS_ATTRIBUTE = "MedSORA.Models"
#: Prefix of output node names.
OUTPUT_PREFIX = "MedSORA: "
#: Longest symptom text kept in node names (the full text is in the node attribute).
NAME_SYMPTOM_CHARS = 60

TABLE_COLUMNS = ("Organ", "Structure", "Relevance", "Text prior", "Image score", "Volume (ml)")


# --------------------------------------------------------------------------------------------
# Scene helpers
# --------------------------------------------------------------------------------------------

def _scene(scene=None):
    scene = scene if scene is not None else getattr(slicer, "mrmlScene", None)
    if scene is None:
        raise MedSORAError("No MRML scene: set slicer.mrmlScene or pass a scene.")
    return scene


def ensure_segmentation_converters() -> None:
    """Register the labelmap <-> closed surface conversion rules if none are registered.

    The Slicer application registers them when the Segmentations module starts;
    plain ``slicer-core`` does not, and without them a segmentation cannot even
    create an empty binary labelmap.
    """
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for rule_class in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule,
                       slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        if rule_class.__name__ not in registered:
            factory.RegisterConverterRule(rule_class())


def _ijk_to_ras(volume_node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def _vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def _voxel_array_kji(volume_node) -> np.ndarray:
    """Copy of a volume node's voxels in numpy ``(K, J, I)`` order (Slicer's layout)."""
    image = volume_node.GetImageData() if volume_node is not None else None
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise VolumeError(f"Volume {volume_node.GetName() if volume_node else '(none)'!r} has no voxel data.")
    from vtk.util import numpy_support

    dims = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    if image.GetNumberOfScalarComponents() != 1:
        raise VolumeError(f"Volume {volume_node.GetName()!r} has {image.GetNumberOfScalarComponents()} components; "
                          "a CT has one.")
    return np.array(scalars.reshape(dims[2], dims[1], dims[0]))


def volume_from_node(volume_node) -> Volume:
    """A scalar volume node as a :class:`Volume`.

    Args:
        volume_node: ``vtkMRMLScalarVolumeNode`` holding a CT in HU.

    Returns:
        ``Volume(array (I, J, K) float32 HU, affine 4x4 voxel -> RAS mm)``. The
        affine is the node's own IJK-to-RAS matrix; a parent transform is not
        applied (the outputs are placed under the same transform instead).
    """
    if volume_node is None:
        raise VolumeError("No input CT volume selected.")
    if not volume_node.IsA("vtkMRMLScalarVolumeNode") or volume_node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise VolumeError(f"Node {volume_node.GetName()!r} is not a scalar (CT) volume.")
    kji = _voxel_array_kji(volume_node)
    if kji.ndim != 3 or min(kji.shape) < 1:
        raise VolumeError(f"Volume {volume_node.GetName()!r} is not a 3D image (shape {kji.shape}).")
    return Volume(np.ascontiguousarray(kji.transpose(2, 1, 0), dtype=np.float32), _ijk_to_ras(volume_node))


def volume_node_from_volume(volume: Volume, name: str = "CT", scene=None):
    """Add a :class:`Volume` to the scene as a scalar volume node (with a default display node).

    Args:
        volume: array ``(I, J, K)`` (HU) and voxel-to-RAS affine.
        name: node name.
        scene: target scene (default ``slicer.mrmlScene``).
    """
    scene = _scene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    _set_image_kji(node, np.ascontiguousarray(np.asarray(volume.array).transpose(2, 1, 0)))
    node.SetIJKToRASMatrix(_vtk_matrix(np.asarray(volume.affine, dtype=np.float64)))
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


def _oriented_mask(mask_ijk: np.ndarray, ijk_to_ras: np.ndarray):
    """A boolean ``(I, J, K)`` mask as a ``vtkOrientedImageData`` (uint8 0/1) on the given grid."""
    from vtk.util import numpy_support

    kji = np.ascontiguousarray(np.asarray(mask_ijk, dtype=np.uint8).transpose(2, 1, 0))
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(kji.shape[2], kji.shape[1], kji.shape[0])
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(kji.ravel(), deep=True,
                                                               array_type=vtk.VTK_UNSIGNED_CHAR))
    image.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras))
    return image


# --------------------------------------------------------------------------------------------
# Organ segmentation in
# --------------------------------------------------------------------------------------------

def segment_tag(segment, tag: str) -> str | None:
    """Value of a segment tag, ``None`` when the segment has no such tag."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(tag, value) else None


def segment_structure_key(segmentation_node, segment_id: str) -> str | None:
    """Catalog structure key of a segment, or ``None`` for segments that are not one of the 13.

    Tried in order: the ``MedSORA.Structure`` tag, the terminology entry's SNOMED
    codes, the segment ID and the segment name (any common spelling:
    ``kidney_right``, ``Right kidney``, ``IVC``), so that segmentations from
    TotalSegmentator, other tools or hand editing all resolve.
    """
    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    if segment is None:
        return None
    tag = segment_tag(segment, STRUCTURE_TAG)
    if tag in organs.ORGANS:
        return tag
    if segment.HasTag(slicer.vtkSegment.GetTerminologyEntryTagName()):
        key = organs.organ_key_from_terminology(segment.GetTerminology())
        # Slicer's default "Tissue" terminology matches nothing, so a real match is informative.
        if key is not None:
            return key
    return organs.organ_key(segment_id) or organs.organ_key(segment.GetName())


def organ_masks_from_segmentation(segmentation_node, reference_volume_node) -> dict[str, np.ndarray]:
    """Boolean masks of the catalog organs found in a segmentation, on the CT grid.

    Args:
        segmentation_node: ``vtkMRMLSegmentationNode`` with organ segments in any
            naming (see :func:`segment_structure_key`); other segments are ignored.
        reference_volume_node: the CT; masks are resampled onto its grid (and
            through any transforms between the two nodes).

    Returns:
        ``{structure key: bool array (I, J, K)}``, only organs with at least one
        voxel inside the CT, in catalog order.

    Raises:
        SegmentationError: no segmentation, no known organ, or all known organs empty.
    """
    if segmentation_node is None:
        raise SegmentationError("No organ segmentation selected.")
    if reference_volume_node is None:
        raise VolumeError("No input CT volume selected.")
    ensure_segmentation_converters()
    segmentation = segmentation_node.GetSegmentation()
    found: dict[str, str] = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        key = segment_structure_key(segmentation_node, segment_id)
        if key is not None and key not in found:
            found[key] = segment_id
    if not found:
        raise SegmentationError(
            f"Segmentation {segmentation_node.GetName()!r} has no abdominal organ segments "
            f"({segmentation.GetNumberOfSegments()} segments; expected names such as liver, spleen, right kidney).")

    labelmap_name = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    if not segmentation.ContainsRepresentation(labelmap_name):
        # e.g. segments imported from models: derive the labelmap, as Slicer does to show them in 2D
        if not segmentation_node.CreateBinaryLabelmapRepresentation():
            raise SegmentationError(f"Segmentation {segmentation_node.GetName()!r} cannot be converted to a "
                                    "binary labelmap.")
    # Each segment is resampled (nearest neighbour) onto the CT grid through any transforms
    # between the two nodes, without adding temporary nodes to the user's scene.
    ijk_to_ras = _ijk_to_ras(reference_volume_node)
    dims = reference_volume_node.GetImageData().GetDimensions()
    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
    reference.SetImageToWorldMatrix(_vtk_matrix(ijk_to_ras))
    segmentation_to_volume = vtk.vtkGeneralTransform()
    slicer.vtkMRMLTransformNode.GetTransformBetweenNodes(
        segmentation_node.GetParentTransformNode(), reference_volume_node.GetParentTransformNode(),
        segmentation_to_volume)
    masks: dict[str, np.ndarray] = {}
    for key in organs.structures_present(found):
        segment_image = slicer.vtkOrientedImageData()
        if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
                segmentation_node, found[key], segment_image, False):
            raise SegmentationError(f"Segment {found[key]!r} has no binary labelmap.")
        mask = np.zeros(tuple(dims), dtype=bool)
        extent = segment_image.GetExtent()
        if extent[1] >= extent[0] and extent[3] >= extent[2] and extent[5] >= extent[4]:
            resampled = slicer.vtkOrientedImageData()
            if not slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(
                    segment_image, reference, resampled, False, False, segmentation_to_volume):
                raise SegmentationError(f"Could not resample segment {found[key]!r} onto the CT grid.")
            mask = _mask_on_extent(resampled, segmentation_node, found[key], dims)
        if mask.any():
            masks[key] = mask
    if not masks:
        raise SegmentationError(
            f"The organ segments of {segmentation_node.GetName()!r} ({', '.join(found)}) are empty inside the CT.")
    return masks


def _mask_on_extent(image, segmentation_node, segment_id: str, dims) -> np.ndarray:
    """Voxels of one segment (label value in a possibly shared layer) as bool ``(I, J, K)`` on a full grid."""
    from vtk.util import numpy_support

    segment = segmentation_node.GetSegmentation().GetSegment(segment_id)
    label = segment.GetLabelValue() if segment is not None else 1
    extent = image.GetExtent()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    kji = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape) == label
    mask = np.zeros(tuple(dims), dtype=bool)
    lo = [max(extent[0], 0), max(extent[2], 0), max(extent[4], 0)]
    hi = [min(extent[1], dims[0] - 1), min(extent[3], dims[1] - 1), min(extent[5], dims[2] - 1)]
    if any(h < l for l, h in zip(lo, hi)):
        return mask
    mask[lo[0]:hi[0] + 1, lo[1]:hi[1] + 1, lo[2]:hi[2] + 1] = kji[
        lo[2] - extent[4]:hi[2] - extent[4] + 1,
        lo[1] - extent[2]:hi[1] - extent[2] + 1,
        lo[0] - extent[0]:hi[0] - extent[0] + 1].transpose(2, 1, 0)
    return mask


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

    Segment IDs are the structure keys, names are the catalog display names
    ("Right kidney"), terminology entries the catalog's SNOMED codes.
    """
    scene = _scene(scene if scene is not None else reference_volume_node.GetScene())
    ensure_segmentation_converters()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    ijk_to_ras = _ijk_to_ras(reference_volume_node)
    shape = tuple(reference_volume_node.GetImageData().GetDimensions())  # (I, J, K)
    segmentation = node.GetSegmentation()
    for key in organs.structures_present(masks):
        mask = np.asarray(masks[key], dtype=bool)
        if mask.shape != shape:
            raise SegmentationError(f"Mask of {key} has shape {mask.shape}; the CT grid is {shape}.")
        organ = organs.ORGANS[key]
        color = tuple(float(c) for c in (colors or {}).get(key, organ.color))
        segment_id = segmentation.AddEmptySegment(key, _segment_name(organ), color)
        segment = segmentation.GetSegment(segment_id)
        segment.SetTerminology(organ.terminology_entry())
        segment.SetTag(STRUCTURE_TAG, key)
        for tag, value in (tags or {}).get(key, {}).items():
            segment.SetTag(tag, str(value))
        slicer.vtkSlicerSegmentationsModuleLogic.SetBinaryLabelmapToSegment(
            _oriented_mask(mask, ijk_to_ras), node, segment_id,
            slicer.vtkSlicerSegmentationsModuleLogic.MODE_REPLACE)
    if reference_volume_node.GetParentTransformNode() is not None:
        node.SetAndObserveTransformNodeID(reference_volume_node.GetParentTransformNode().GetID())
    return node


def _segment_name(organ) -> str:
    return organ.display_name[:1].upper() + organ.display_name[1:]


def organ_segmentation_from_labelmap_file(path: str, reference_volume_node, label_scheme: str | None = None,
                                          name: str | None = None, scene=None):
    """Load an organ label map file (NIfTI, NRRD, seg.nrrd...) as a segmentation node on the CT grid.

    Reading and label resolution are :func:`MedSORALib.volume_io.read_organ_masks`'s
    (the same reader the command line uses).
    """
    from .volume_io import read_organ_masks

    reference = volume_from_node(reference_volume_node)
    masks = read_organ_masks(path, reference, label_scheme=label_scheme)
    return segmentation_node_from_masks({k: m for k, m in masks.items() if np.any(m)}, reference_volume_node,
                                        name or "Organs", scene=scene)


# --------------------------------------------------------------------------------------------
# Results out
# --------------------------------------------------------------------------------------------

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
    result: Any = None


def _format_passage(passage) -> str:
    if isinstance(passage, str):
        return passage
    get = passage.get if isinstance(passage, dict) else (lambda k, d=None: getattr(passage, k, d))
    text = get("text", "") or ""
    source = get("source", "") or ""
    ident = get("id", "") or get("chunk_id", "") or ""
    score = get("score", None)
    head = f"[{ident}]" if ident else ""
    if score is not None:
        try:
            head += f" (score {float(score):.2f})"
        except (TypeError, ValueError):
            pass
    lines = [part for part in (head.strip(), str(text).strip(), f"Source: {source}" if source else "") if part]
    return "\n".join(lines)


def passages_text(result) -> str:
    """The supporting knowledge passages of a result as plain text.

    ``result.passages`` is ``{structure key: [passage, ...]}`` (grouped under the
    organ's name) or a plain list; a passage is a dict with ``id``, ``text``,
    ``source`` and ``score``.
    """
    passages = getattr(result, "passages", None) or []
    if isinstance(passages, dict):
        names = {score.key: score.display_name for score in getattr(result, "organs", [])}
        blocks = []
        for key, items in passages.items():
            if not items:
                continue
            name = names.get(key) or (organs.ORGANS[key].display_name if key in organs.ORGANS else str(key))
            blocks.append(f"== {name[:1].upper() + name[1:]} ==\n" + "\n\n".join(_format_passage(p) for p in items))
        return "\n\n".join(blocks)
    return "\n\n".join(_format_passage(p) for p in passages)


def _scores_by_key(result) -> dict[str, Any]:
    return {score.key: score for score in result.organs}


def add_relevance_segmentation(result, masks: dict[str, np.ndarray], reference_volume_node, scene=None):
    """The segmentation node of one symptom: organs coloured by relevance, tagged with their scores.

    Args:
        result: a ``SymptomResult`` (``symptom``, ``in_domain``, ``organs``: list
            of ``OrganScore(key, display_name, relevance, text_prior, image_score,
            voxels, volume_ml)``, ``models``).
        masks: the organ masks the result was computed from ``{key: bool (I, J, K)}``.
        reference_volume_node: the CT.
    """
    scores = _scores_by_key(result)
    keys = [k for k in organs.structures_present(masks) if k in scores and np.any(masks[k])]
    colors = {k: relevance_color(scores[k].relevance) for k in keys}
    tags = {}
    for k in keys:
        s = scores[k]
        image_score = getattr(s, "image_score", None)
        tags[k] = {RELEVANCE_TAG: f"{float(s.relevance):.6f}",
                   TEXT_PRIOR_TAG: f"{float(s.text_prior):.6f}",
                   IMAGE_SCORE_TAG: "" if image_score is None else f"{float(image_score):.6f}"}
    node = segmentation_node_from_masks({k: masks[k] for k in keys}, reference_volume_node,
                                        output_name(result.symptom), colors=colors, tags=tags, scene=scene)
    node.SetAttribute(SYMPTOM_ATTRIBUTE, str(result.symptom))
    node.SetAttribute(IN_DOMAIN_ATTRIBUTE, "true" if result.in_domain else "false")
    try:
        node.SetAttribute(MODELS_ATTRIBUTE, json.dumps(getattr(result, "models", {}) or {}, default=str))
    except (TypeError, ValueError):
        pass
    return node


def add_relevance_table(result, scene=None, name: str | None = None):
    """A table node with one row per organ (relevance order): columns :data:`TABLE_COLUMNS`.

    Relevance and text prior are in [0, 1], image score in [-1, 1] (NaN when the
    image model was not used), volume in millilitres.
    """
    scene = _scene(scene)
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", (name or output_name(result.symptom)) + " table")
    table = node.GetTable()
    organ_col = vtk.vtkStringArray()
    organ_col.SetName(TABLE_COLUMNS[0])
    key_col = vtk.vtkStringArray()
    key_col.SetName(TABLE_COLUMNS[1])
    numeric = []
    for column in TABLE_COLUMNS[2:]:
        array = vtk.vtkDoubleArray()
        array.SetName(column)
        numeric.append(array)
    for score in result.organs:
        organ_col.InsertNextValue(str(score.display_name))
        key_col.InsertNextValue(str(score.key))
        image_score = getattr(score, "image_score", None)
        values = (score.relevance, score.text_prior, np.nan if image_score is None else image_score,
                  getattr(score, "volume_ml", np.nan))
        for array, value in zip(numeric, values):
            array.InsertNextValue(float(value) if value is not None else np.nan)
    for array in (organ_col, key_col, *numeric):
        table.AddColumn(array)
    node.SetUseColumnTitleAsColumnHeader(True)
    node.SetAttribute(SYMPTOM_ATTRIBUTE, str(result.symptom))
    node.Modified()
    return node


def add_relevance_chart(table_node, title: str, scene=None):
    """A bar chart (plot chart + plot series nodes) of the table's relevance column, labelled by organ."""
    scene = _scene(scene)
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


def add_symptom_outputs(result, masks: dict[str, np.ndarray], reference_volume_node, *,
                        threshold: float = 0.0, opacity_by_relevance: bool = True,
                        show_3d: bool = False, scene=None) -> SymptomOutputs:
    """Write one symptom's result into the scene (segmentation, table, chart, passages, folder).

    Every call creates new nodes, so a second symptom (or a rerun) never
    overwrites an earlier result.
    """
    scene = _scene(scene if scene is not None else reference_volume_node.GetScene())
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
    return SymptomOutputs(str(result.symptom), bool(result.in_domain), segmentation_node, table_node, chart_node,
                          passages_node, folder, result)


def _group_in_folder(scene, reference_volume_node, title: str, nodes) -> int:
    """Put the output nodes in a subject hierarchy folder next to the CT (under its study if any)."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    if sh is None:
        return 0
    volume_item = sh.GetItemByDataNode(reference_volume_node)
    parent = sh.GetItemParent(volume_item) if volume_item else sh.GetSceneItemID()
    folder = sh.CreateFolderItem(parent or sh.GetSceneItemID(), title)
    for node in nodes:
        item = sh.GetItemByDataNode(node)
        if item:
            sh.SetItemParent(item, folder)
        else:  # without the application's subject hierarchy plugins nodes get no item by themselves
            sh.CreateItem(folder, node)
    return folder


# --------------------------------------------------------------------------------------------
# Running the scoring
# --------------------------------------------------------------------------------------------

class ScoringCancelled(MedSORAError):
    """The user cancelled a running scoring job."""


def split_symptoms(text: str, one_per_line: bool = False) -> list[str]:
    """Symptom texts from the panel's text box: the whole text, or one symptom per non-empty line."""
    text = (text or "").strip()
    if not text:
        raise SymptomError("Enter a symptom description.")
    if one_per_line:
        return [line.strip() for line in text.splitlines() if line.strip()]
    return [" ".join(text.split())]


@dataclass
class ScoringSettings:
    """What the Advanced section chooses.

    Attributes:
        device: ``"cpu"``, ``"cuda"``, ``"cuda:0"``, ``"mps"`` or ``"auto"`` (CUDA when available).
        model_dir: folder with ``text/`` and ``image/`` weight folders (empty: the shipped weights).
        text_encoder: sentence encoder name or local folder (empty: the shipped default).
        use_image_model: combine the image-text score with the text prior (else text only).
    """

    device: str = "cpu"
    model_dir: str = ""
    text_encoder: str = ""
    use_image_model: bool = True


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; other values unchanged."""
    device = (device or "cpu").strip()
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def scoring_arguments(settings: ScoringSettings) -> dict:
    """Keyword arguments for ``score_volume`` from the Advanced settings (models loaded once per process).

    ``model_dir/text`` and ``model_dir/image`` replace the shipped text and image
    weights when they exist; an empty ``model_dir`` or ``text_encoder`` keeps the
    shipped ones. Without the image model the relevance is the text prior
    (``image_weight=0``).
    """
    import os

    from .scoring import load_models as load_scoring_models

    device = resolve_device(settings.device)
    if settings.model_dir and not os.path.isdir(settings.model_dir):
        raise MedSORAError(f"Model folder {settings.model_dir!r} does not exist.")
    text_dir = os.path.join(settings.model_dir, "text") if settings.model_dir else ""
    image_dir = os.path.join(settings.model_dir, "image") if settings.model_dir else ""
    if settings.model_dir and not (os.path.isdir(text_dir) or os.path.isdir(image_dir)):
        raise MedSORAError(f"Model folder {settings.model_dir!r} has neither a text/ nor an image/ folder.")
    models = load_scoring_models(text_weights=text_dir if os.path.isdir(text_dir) else None,
                                 image_weights=image_dir if os.path.isdir(image_dir) else None,
                                 device=device, text_encoder=settings.text_encoder or None)
    arguments = {"models": models}
    if not settings.use_image_model:
        arguments["image_weight"] = 0.0
    return arguments


def default_scorer(volume, masks, symptoms, **kwargs):
    """The project's scoring entry, :func:`MedSORALib.scoring.score_volume`."""
    from .scoring import score_volume

    return score_volume(volume, masks, symptoms, **kwargs)


@dataclass
class ScoringInputs:
    """Arrays taken from the scene on the main thread, safe to hand to a worker thread."""

    volume: Volume
    masks: dict[str, np.ndarray]
    symptoms: list[str]


def prepare_inputs(volume_node, segmentation_node, symptoms: Sequence[str] | str) -> ScoringInputs:
    """Read the CT and organ masks out of the scene (main thread only: MRML is not thread safe)."""
    if isinstance(symptoms, str):
        symptoms = [symptoms]
    symptoms = [" ".join(str(s).split()) for s in symptoms]
    if not symptoms or not all(symptoms):
        raise SymptomError("Enter a symptom description.")
    volume = volume_from_node(volume_node)
    masks = organ_masks_from_segmentation(segmentation_node, volume_node)
    return ScoringInputs(volume, masks, list(symptoms))


class ScoringJob:
    """One scoring run, blocking (:meth:`run`) or in a background thread (:meth:`start` + :meth:`poll`).

    The worker thread only touches numpy arrays and models; the scene is read
    before (:func:`prepare_inputs`) and written after (:func:`add_symptom_outputs`)
    on the caller's thread. Cancel is cooperative: the progress callback given to
    the scorer raises :class:`ScoringCancelled` at its next call.

    Args:
        inputs: arrays and symptoms.
        settings: device and models.
        scorer: the scoring function (default :func:`default_scorer`), called as
            ``scorer(volume, masks, symptoms, device=..., progress=callback(fraction, message))``
            plus ``models=`` and ``image_weight=`` (:func:`scoring_arguments`) for the default scorer.
    """

    def __init__(self, inputs: ScoringInputs, settings: ScoringSettings | None = None,
                 scorer: Callable | None = None):
        self.inputs = inputs
        self.settings = settings or ScoringSettings()
        self.scorer = scorer or default_scorer
        self.results: list | None = None
        self.error: BaseException | None = None
        self.progress_fraction = 0.0
        self.progress_message = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self._events: queue.Queue = queue.Queue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    # progress callback given to the scorer
    def _progress(self, *args, **kwargs) -> None:
        if self._cancel.is_set():
            raise ScoringCancelled("Cancelled.")
        fraction, message = None, ""
        values = list(args) + [kwargs[k] for k in ("fraction", "message") if k in kwargs]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        texts = [v for v in values if isinstance(v, str)]
        if len(numbers) >= 2 and numbers[1]:
            fraction = float(numbers[0]) / float(numbers[1])  # (step, total)
        elif numbers:
            fraction = float(numbers[0])
        if texts:
            message = texts[0]
        self._events.put(("progress", fraction, message))

    def _work(self) -> None:
        try:
            self._events.put(("progress", 0.0, "Loading models"))
            arguments = scoring_arguments(self.settings) if self.scorer is default_scorer else {}
            if self._cancel.is_set():
                raise ScoringCancelled("Cancelled.")
            self.results = list(self.scorer(self.inputs.volume, self.inputs.masks, self.inputs.symptoms,
                                             device=resolve_device(self.settings.device),
                                             progress=self._progress, **arguments))
            self._events.put(("progress", 1.0, "Done"))
        except BaseException as error:  # reported to the caller's thread
            self.error = error
        finally:
            self.finished_at = time.monotonic()
            self._events.put(("finished", None, ""))

    def run(self) -> list:
        """Score on the calling thread; returns the ``SymptomResult`` list or raises the scorer's error."""
        self.started_at = time.monotonic()
        self._work()
        if self.error is not None:
            raise self.error
        return self.results

    def start(self) -> None:
        """Score in a daemon thread; follow it with :meth:`poll`."""
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._work, name="MedSORA scoring", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        """Ask the running job to stop at its next progress report."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll(self) -> bool:
        """Drain progress events (updates :attr:`progress_fraction`, :attr:`progress_message`); True when finished."""
        finished = False
        while True:
            try:
                kind, fraction, message = self._events.get_nowait()
            except queue.Empty:
                break
            if kind == "finished":
                finished = True
            else:
                if fraction is not None:
                    self.progress_fraction = min(max(fraction, 0.0), 1.0)
                if message:
                    self.progress_message = message
        return finished

    def wait(self, timeout: float | None = None) -> bool:
        """Join the thread; True when it finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running


def run_symptom_scoring(volume_node, segmentation_node, symptoms: Sequence[str] | str, *,
                        settings: ScoringSettings | None = None, scorer: Callable | None = None,
                        threshold: float = 0.0, opacity_by_relevance: bool = True,
                        show_3d: bool = False) -> list[SymptomOutputs]:
    """Score symptoms for a CT and its organs and write the outputs into the scene (blocking).

    This is what ``MedSORALogic.process`` does; scripts call it directly.
    """
    inputs = prepare_inputs(volume_node, segmentation_node, symptoms)
    results = ScoringJob(inputs, settings, scorer).run()
    return [add_symptom_outputs(result, inputs.masks, volume_node, threshold=threshold,
                                opacity_by_relevance=opacity_by_relevance, show_3d=show_3d)
            for result in results]
