"""Shared fixtures of the scene tests: a fresh MRML scene (PyPI ``slicer-core``) holding the example CT.

Imported by the ``test_scene_*`` and ``test_slicer_*`` modules (``from slicer_scene import ...``). Also the
stand-ins for the parts of the Slicer application that ``slicer-core`` lacks (``qt.QProcess``, the
scripted-module base classes, the parameter node wrapper), with which ``MedSORA/MedSORA.py`` is loaded
(:func:`application_stand_ins`, :func:`load_module_file`).
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

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

ROOT = Path(__file__).resolve().parents[1]
MODULE_PY = ROOT / "MedSORA" / "MedSORA.py"


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




# ------------------------------------------------------------------------------------------
# stand-ins for the application-only parts of Slicer
# ------------------------------------------------------------------------------------------

class FakeProcessEnvironment:
    def __init__(self, values=None):
        self.values = dict(values or {})

    @classmethod
    def systemEnvironment(cls):
        return cls(os.environ)

    def insert(self, key, value):
        self.values[key] = value


class FakeQProcess:
    """``qt.QProcess`` on :mod:`subprocess`; :meth:`pump` delivers its signals as Qt's event loop would."""

    NotRunning, Running = 0, 2
    NormalExit, CrashExit = 0, 1
    instances: list = []

    def __init__(self):
        self.slots = {}
        self.environment = None
        self.popen = None
        self.chunks = {"out": queue.Queue(), "err": queue.Queue()}
        self.finished_sent = False
        FakeQProcess.instances.append(self)

    def connect(self, signal_name, slot):
        self.slots[signal_name] = slot

    def setProcessEnvironment(self, environment):
        self.environment = environment.values

    def start(self, program, arguments):
        self.popen = subprocess.Popen([program, *arguments], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=self.environment)
        for name, stream in (("out", self.popen.stdout), ("err", self.popen.stderr)):
            threading.Thread(target=self._read, args=(stream, self.chunks[name]), daemon=True).start()

    @staticmethod
    def _read(stream, chunks):
        for chunk in iter(lambda: stream.read1(4096), b""):
            chunks.put(chunk)

    def waitForStarted(self, msecs):
        return self.popen is not None

    def processId(self):
        return self.popen.pid if self.popen is not None else 0

    def state(self):
        return self.Running if self.popen is not None and self.popen.poll() is None else self.NotRunning

    def write(self, data):
        self.popen.stdin.write(bytes(data))
        self.popen.stdin.flush()

    def _drain(self, name):
        data = b""
        while True:
            try:
                data += self.chunks[name].get_nowait()
            except queue.Empty:
                return data

    def readAllStandardOutput(self):
        return self._drain("out")

    def readAllStandardError(self):
        return self._drain("err")

    def kill(self):
        self.popen.kill()

    def waitForFinished(self, msecs):
        try:
            self.popen.wait(msecs / 1000)
        except subprocess.TimeoutExpired:
            return False
        self._finish()
        return True

    def _finish(self):
        if not self.finished_sent:
            self.finished_sent = True
            code = self.popen.returncode
            self.slots["finished(int,QProcess::ExitStatus)"](max(code, 0), self.CrashExit if code < 0 else
                                                             self.NormalExit)

    def pump(self):
        """One turn of the event loop: readyRead signals for waiting output, finished when the process ended."""
        ended = self.popen.poll() is not None
        if ended:
            time.sleep(0.05)  # let the reader threads take the last bytes
        if not self.chunks["out"].empty():
            self.slots["readyReadStandardOutput()"]()
        if not self.chunks["err"].empty():
            self.slots["readyReadStandardError()"]()
        if ended and self.chunks["out"].empty():
            self._finish()


def application_stand_ins(displayed: list | None = None) -> dict[str, types.ModuleType]:
    """Module name -> stand-in: ``qt`` (QProcess on subprocess), ``slicer.ScriptedLoadableModule`` and
    ``slicer.parameterNodeWrapper``, minimal but with the behaviour the module file relies on.

    ``delayDisplay`` of the test base class appends to the test's ``messages`` and to ``displayed``.
    """
    import unittest

    qt = types.ModuleType("qt")
    qt.QTimer = type("QTimer", (), {})
    qt.QProcess = FakeQProcess
    qt.QProcessEnvironment = FakeProcessEnvironment

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
            if displayed is not None:
                displayed.append(message)

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    base.ScriptedLoadableModule = ScriptedLoadableModule
    base.ScriptedLoadableModuleLogic = ScriptedLoadableModuleLogic
    base.ScriptedLoadableModuleTest = ScriptedLoadableModuleTest
    base.ScriptedLoadableModuleWidget = ScriptedLoadableModuleWidget
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.WithinRange = lambda low, high: (low, high)
    wrapper.Choice = lambda choices: tuple(choices)
    return {"qt": qt, "slicer.ScriptedLoadableModule": base, "slicer.parameterNodeWrapper": wrapper}


def load_module_file(name: str = "MedSORA_module_under_test", path: Path = MODULE_PY):
    """Execute the module file (after :func:`application_stand_ins` are in ``sys.modules``) and return it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
