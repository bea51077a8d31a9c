"""Shared fixtures of the scene tests: a fresh MRML scene (PyPI ``slicer-core``) holding the example CT.

Imported by the ``test_scene_*`` and ``test_slicer_module`` modules (``from slicer_scene import ...``).
"""
from __future__ import annotations


import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (Slicer's MRML for Python) is not installed", allow_module_level=True)

from conftest import EXAMPLE_SEG as SEG  # noqa: E402
from MedSORALib import organs, result_format  # noqa: E402
from MedSORALib.scoring import OrganScore, SymptomResult  # noqa: E402
from MedSORALib.scene import result_nodes as scene_out  # noqa: E402


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
    return scene_out.volume_node_from_volume(ct_volume, "example_ct_sm", scene)


@pytest.fixture()
def organ_node(scene, ct_node):
    """The organs as a segmentation node the way the TotalSegmentator extension names them.

    Segment IDs are TotalSegmentator's structure names; the names are Slicer's
    display names; terminology entries are removed so that resolution goes
    through IDs and names like for a hand-made segmentation.
    """
    node = scene_out.organ_segmentation_from_labelmap_file(str(SEG), ct_node, "totalsegmentator", "TotalSegmentator")
    segmentation = node.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        segment.RemoveTag(result_format.STRUCTURE_TAG)
        segment.RemoveTag(slicer.vtkSegment.GetTerminologyEntryTagName())
    return node


def ijk_to_ras_of(node):
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def known_scorer(calls=None):
    """A scorer with fixed, distinct numbers: relevance falls by 0.05 per organ in catalog order."""

    def scorer(volume, masks, symptoms, progress=None):
        if calls is not None:
            calls.append({"keys": sorted(masks), "symptoms": list(symptoms), "shape": volume.array.shape})
        results = []
        for s_index, symptom in enumerate(symptoms):
            if progress is not None:
                progress((s_index + 1) / len(symptoms), f"symptom {s_index + 1}")
            scores = []
            for rank, key in enumerate(organs.structures_present(masks)):
                relevance = round(0.9 - 0.05 * rank - 0.1 * s_index, 4)
                voxels = int(masks[key].sum())
                measured = rank == 0  # the first organ carries measurements and an abnormal finding
                scores.append(OrganScore(
                    key=key, display_name=organs.ORGANS[key].display_name, relevance=relevance,
                    text_prior=round(relevance / 2, 4), image_score=round(relevance - 0.5, 4), voxels=voxels,
                    volume_ml=voxels * volume.voxel_volume_ml,
                    finding_boost=0.05 if measured else 0.0,
                    measurements={"length_mm": 120.0, "max_diameter_mm": 80.5, "mean_hu": 45.0,
                                  "partially_imaged": False} if measured else {},
                    findings=[{"key": "test_size", "abnormal": True, "value": 120.0, "unit": "mm",
                               "text": "length 120 mm; test upper reference 100 mm", "reference": "test"},
                              {"key": "test_hu", "abnormal": False, "value": 45.0, "unit": "HU",
                               "text": "mean 45 HU; test range 40-60 HU", "reference": "test"}] if measured else []))
            scores.sort(key=lambda s: s.relevance, reverse=True)
            results.append(SymptomResult(
                symptom=symptom, in_domain=s_index == 0, ood_score=0.1 if s_index == 0 else 0.9, laterality=None,
                organs=scores, contrast_phase={"phase": "non-contrast", "confidence": 0.9},
                passages={scores[0].key: [{"id": "liver-001", "text": "The liver lies in the right upper quadrant.",
                                           "source": "test", "score": 0.8}]},
                models={"text": "test"}))
        return results

    return scorer


