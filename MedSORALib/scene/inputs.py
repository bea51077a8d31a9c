"""Scene in: a CT volume node and an organ segmentation node as arrays on the CT grid.

Numpy order is ``(I, J, K)`` here as in :mod:`MedSORALib.volume_io`; Slicer's
own arrays (``slicer.util.arrayFromVolume``) are ``(K, J, I)``. MRML is not
thread safe: call these on the main thread.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import slicer
import vtk

from .. import organs
from ..errors import SegmentationError, SymptomError, VolumeError
from ..result_format import STRUCTURE_TAG
from ..scoring import ScoringInputs
from ..volume_io import Grid, Volume
from .nodes import ensure_segmentation_converters, ijk_to_ras, segment_tag, segment_terminology, vtk_matrix


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
    return Volume(np.ascontiguousarray(kji.transpose(2, 1, 0), dtype=np.float32), ijk_to_ras(volume_node))


def grid_from_node(volume_node) -> Grid:
    """The voxel grid of a scalar volume node, without reading its voxels.

    Returns:
        ``Grid(shape (I, J, K), affine 4x4 voxel -> RAS mm)``, the grid of :func:`volume_from_node`'s
        volume; for placing masks on the CT (no float32 copy of the CT is made).
    """
    if volume_node is None:
        raise VolumeError("No input CT volume selected.")
    image = volume_node.GetImageData()
    if image is None:
        raise VolumeError(f"Volume {volume_node.GetName()!r} has no voxel data.")
    shape = tuple(int(n) for n in image.GetDimensions())
    if min(shape) < 1:
        raise VolumeError(f"Volume {volume_node.GetName()!r} is empty (shape {shape}).")
    return Grid(shape, ijk_to_ras(volume_node))

def segment_keys(segmentation_node) -> dict[str, str]:
    """``{structure key: segment id}`` of the organ segments of a segmentation."""
    segmentation = segmentation_node.GetSegmentation()
    found: dict[str, str] = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment_id = segmentation.GetNthSegmentID(index)
        key = segment_structure_key(segmentation_node, segment_id)
        if key is not None and key not in found:
            found[key] = segment_id
    return found


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
    # Slicer's default "Tissue" terminology matches nothing, so a real match is informative.
    key = organs.organ_key_from_terminology(segment_terminology(segment))
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
    found = segment_keys(segmentation_node)
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
    dims = reference_volume_node.GetImageData().GetDimensions()
    reference = slicer.vtkOrientedImageData()
    reference.SetExtent(0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1)
    reference.SetImageToWorldMatrix(vtk_matrix(ijk_to_ras(reference_volume_node)))
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


def prepare_inputs(volume_node, segmentation_node, symptoms: Sequence[str] | str) -> ScoringInputs:
    """Read the CT, its organ masks and the symptoms out of the scene, ready for a scoring job."""
    if isinstance(symptoms, str):
        symptoms = [symptoms]
    symptoms = [" ".join(str(s).split()) for s in symptoms]
    if not symptoms or not all(symptoms):
        raise SymptomError("Enter a symptom description.")
    volume = volume_from_node(volume_node)
    masks = organ_masks_from_segmentation(segmentation_node, volume_node)
    return ScoringInputs(volume, masks, list(symptoms))
