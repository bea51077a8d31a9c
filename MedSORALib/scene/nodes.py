"""Shared MRML helpers: scene lookup, grid matrices, converter rules, segment tags and terminology.

The names of MedSORA's own tags and node attributes are in :mod:`MedSORALib.result_format`.
"""
from __future__ import annotations

import numpy as np
import slicer
import vtk

from ..errors import MedSORAError


def scene_or_default(scene=None):
    """``scene``, else ``slicer.mrmlScene``; raises when neither exists."""
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


def ijk_to_ras(volume_node) -> np.ndarray:
    """The node's 4x4 IJK-to-RAS matrix (mm) as a numpy array (parent transforms not applied)."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=np.float64)


def vtk_matrix(array: np.ndarray) -> vtk.vtkMatrix4x4:
    """A 4x4 numpy array as a ``vtkMatrix4x4``."""
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def segment_tag(segment, tag: str) -> str | None:
    """Value of a segment tag, ``None`` when the segment has no such tag."""
    value = vtk.reference("")
    return str(value) if segment.GetTag(tag, value) else None


def terminology_tag_name() -> str:
    """Name of the segment tag holding Slicer's ``TerminologyEntry`` string (``"TerminologyEntry"``)."""
    return slicer.vtkSegment.GetTerminologyEntryTagName()


def segment_terminology(segment) -> str | None:
    """The segment's terminology entry string, read from its tag.

    The tag is used rather than ``vtkSegment.GetTerminology`` /
    ``SetTerminology``, which only exist from Slicer 5.10 on: the tag works on
    every supported version and is what those methods read and write.
    """
    return segment_tag(segment, terminology_tag_name())


def set_segment_terminology(segment, entry: str) -> None:
    """Store a ``TerminologyEntry`` string on a segment (see :func:`segment_terminology`)."""
    segment.SetTag(terminology_tag_name(), entry)
