"""The differential of a result in the scene: its diagnoses, and the slice views centred on a diagnosis's organ.

A result segmentation carries its top diagnoses as the node attribute
:data:`~MedSORALib.result_format.DIFFERENTIAL_ATTRIBUTE` (JSON, written by
:func:`~MedSORALib.scene.result_nodes.add_relevance_segmentation`).
:func:`show_diagnosis_organ` centres every slice view of the scene on the focus
point of the diagnosis's main organ (:func:`MedSORALib.focus.organ_focus`: on
its largest axial cross-section, inside the organ), as the Slicer panel does
when a diagnosis is chosen.
"""
from __future__ import annotations

import json

import numpy as np
import slicer
import vtk

from ..diagnoses import DiagnosisEntry
from ..focus import organ_focus
from ..result_format import DIFFERENTIAL_ATTRIBUTE
from .inputs import segment_keys
from .nodes import ensure_segmentation_converters


def differential_of(segmentation_node) -> list[DiagnosisEntry]:
    """The diagnoses a result segmentation carries, best first (none for a node without the attribute)."""
    text = segmentation_node.GetAttribute(DIFFERENTIAL_ATTRIBUTE) if segmentation_node is not None else None
    if not text:
        return []
    try:
        return [DiagnosisEntry.from_dict(item) for item in json.loads(text)]
    except (ValueError, KeyError, TypeError):  # an attribute edited by hand: show nothing rather than fail
        return []



def organ_focus_ras(segmentation_node, key: str) -> np.ndarray | None:
    """The world (RAS) focus point of one organ segment of a segmentation; None when it has no voxel."""
    from vtk.util import numpy_support

    segment_id = segment_keys(segmentation_node).get(key)
    if segment_id is None:
        return None
    ensure_segmentation_converters()
    image = slicer.vtkOrientedImageData()
    if not slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentation_node, segment_id, image, False):
        return None
    extent = image.GetExtent()
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return None
    label = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    shape = (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1)
    mask = (numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(shape) == label).transpose(2, 1, 0)
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    affine = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    affine[:3, 3] += affine[:3, :3] @ np.array([extent[0], extent[2], extent[4]], dtype=np.float64)
    point = organ_focus(mask, affine)
    if point is None:
        return None
    parent = segmentation_node.GetParentTransformNode()
    if parent is not None:
        to_world = vtk.vtkGeneralTransform()
        parent.GetTransformToWorld(to_world)
        point = np.array(to_world.TransformPoint(*point))
    return point


def jump_slices(scene, ras) -> int:
    """Centre every slice view of the scene on a RAS point; returns how many slice views moved."""
    nodes = scene.GetNodesByClass("vtkMRMLSliceNode")
    count = 0
    for index in range(nodes.GetNumberOfItems()):
        node = nodes.GetItemAsObject(index)
        node.JumpSliceByCentering(float(ras[0]), float(ras[1]), float(ras[2]))
        count += 1
    return count


def show_diagnosis_organ(segmentation_node, entry: DiagnosisEntry) -> tuple[str, np.ndarray] | None:
    """Centre the slice views on the main organ of a diagnosis that the segmentation holds.

    Returns ``(structure key, RAS point)``, or None when none of the diagnosis's organs is in the
    segmentation (a diagnosis outside the 13 structures, or an organ the CT lacks).
    """
    key = entry.main_organ(list(segment_keys(segmentation_node)))
    point = organ_focus_ras(segmentation_node, key) if key is not None else None
    if point is None:
        return None
    jump_slices(segmentation_node.GetScene(), point)
    return key, point
