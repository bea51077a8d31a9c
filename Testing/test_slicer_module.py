"""The module file MedSORA/MedSORA.py and its Designer file, without the Slicer application.

What needs the application is checked another way here:
- the UI bindings and imports are read statically from the .ui and .py files;
- the logic and the self test run on PyPI ``slicer-core`` with the
  application-only parts (qt, the scripted-module base classes, the parameter
  node wrapper, ``slicer.app``) replaced by minimal stand-ins;
- the panel's worker driver (:class:`ScoringWorkerProcess`) runs a real worker
  process through a stand-in ``qt.QProcess`` built on :mod:`subprocess`, whose
  signals this test delivers the way Qt's event loop would.
"""
from __future__ import annotations

import ast
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from slicer_scene import (SEG, ct_masks, ct_node, ct_volume, known_scorer, organ_node, scene,  # noqa: F401
                          slicer, vtk)
from conftest import EXAMPLE_CT, EXAMPLE_SEG
from MedSORALib import organs
from MedSORALib.scene import result_nodes as scene_out
from MedSORALib.scoring_job import ScoringSettings, request_fields

ROOT = Path(__file__).resolve().parents[1]
MODULE_PY = ROOT / "MedSORA" / "MedSORA.py"
MODULE_UI = ROOT / "MedSORA" / "Resources" / "UI" / "MedSORA.ui"
GALLSTONES = "Pain in the right upper abdomen after fatty meals, with nausea"


def _parameter_fields() -> set[str]:
    tree = ast.parse(MODULE_PY.read_text(encoding="utf-8"))
    wrapper = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedSORAParameterNode")
    assert any(getattr(d, "id", None) == "parameterNodeWrapper" for d in wrapper.decorator_list)
    return {n.target.id for n in wrapper.body if isinstance(n, ast.AnnAssign)}


def test_slicer_every_parameter_is_bound_through_the_gui_connectors():
    ui = ET.parse(MODULE_UI).getroot()
    widgets = {w.get("name"): w.get("class") for w in ui.iter("widget")}
    bindings = {}
    for widget in ui.iter("widget"):
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                assert prop.get("stdset") == "0"  # a dynamic property, as Qt Designer writes it
                bindings[prop.find("string").text] = widget.get("name")
    assert set(bindings) == _parameter_fields()  # every field bound in the .ui, none synchronised by hand
    code = MODULE_PY.read_text(encoding="utf-8")
    # widget classes the parameter node wrapper has connectors for, with the field's type
    expected = {"inputVolume": "qMRMLNodeComboBox", "organSegmentation": "qMRMLNodeComboBox",
                "outputSegmentation": "qMRMLNodeComboBox", "threshold": "ctkSliderWidget",
                "symptomText": "QTextEdit", "device": "QComboBox", "modelFolder": "ctkPathLineEdit",
                "textEncoder": "QLineEdit", "onePerLine": "QCheckBox", "useImageModel": "QCheckBox"}
    for field_name, widget_class in expected.items():
        assert widgets[bindings[field_name]] == widget_class, field_name
    assert re.search(r"device: Annotated\[str, Choice\(", code)  # the combo box connector needs Choice
    assert re.search(r"modelFolder: pathlib\.Path", code)
    # no widget is read or written by hand for a bound field
    for name in ("symptomTextEdit", "deviceComboBox", "modelFolderPathLineEdit", "textEncoderLineEdit"):
        assert f"self.ui.{name}" not in code, name
    # connectGui's tag is kept and given back to disconnectGui
    assert "self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)" in code
    assert "self._parameterNode.disconnectGui(self._parameterNodeGuiTag)" in code
    used = set(re.findall(r"self\.ui\.(\w+)", code))
    assert used and used <= set(widgets), sorted(used - set(widgets))
    for name in ("inputsCollapsibleButton", "symptomCollapsibleButton", "outputsCollapsibleButton",
                 "displayCollapsibleButton", "advancedCollapsibleButton"):
        assert widgets[name] == "ctkCollapsibleButton"
    receivers = {c.find("receiver").text for c in ui.iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"}
    assert {n for n, c in widgets.items() if c in ("qMRMLNodeComboBox", "qMRMLTableView")} <= receivers


def test_slicer_module_imports_no_heavy_package_and_no_thread():
    """The module file loads with Slicer alone; torch and MedSORALib come on first use; no Python thread."""
    text = MODULE_PY.read_text(encoding="utf-8")
    tree = ast.parse(text)
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
    assert top_level <= {"__future__", "logging", "os", "pathlib", "shutil", "sys", "tempfile", "qt", "slicer",
                         "vtk", "typing"}, top_level
    assert "threading" not in text and "Thread(" not in text
    classes = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
    assert {"MedSORA", "MedSORAWidget", "MedSORALogic", "MedSORATest", "MedSORAParameterNode",
            "ScoringWorkerProcess"} <= classes
    logic = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MedSORALogic")
    assert not re.search(r"Display\(|QMessageBox|confirm", ast.get_source_segment(text, logic))


def test_slicer_supported_version_is_stated_and_kept():
    """Slicer 5.10 and later: the README says so, the panel refuses older ones, and no newer-only API is called
    unguarded (slicer.packaging is tried, vtkSegment terminology methods are not used)."""
    text = MODULE_PY.read_text(encoding="utf-8")
    assert "MINIMUM_SLICER_VERSION = (5, 10)" in text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "Slicer 5.10 or later" in readme and "5.8" not in readme.split("\n## In 3D Slicer\n", 1)[1].split("\n## ")[0]
    tree = ast.parse(text)
    ensure = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "ensureDependencies")
    tries = [n for n in ast.walk(ensure) if isinstance(n, ast.Try)]
    guarded = [t for t in tries if any(isinstance(s, ast.Import) and s.names[0].name == "slicer.packaging"
                                       for s in t.body)]
    assert guarded and any(h.type.id == "ImportError" for h in guarded[0].handlers)
    library = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "MedSORALib").rglob("*.py"))
    assert ".SetTerminology(" not in library + text and ".GetTerminology(" not in library + text


# ------------------------------------------------------------------------------------------
# the module file on slicer-core
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


@pytest.fixture()
def module_file(monkeypatch, scene):
    """MedSORA/MedSORA.py imported on slicer-core, the application-only parts replaced by minimal stand-ins."""
    import importlib.util
    import unittest

    qt = types.ModuleType("qt")
    qt.QTimer = type("QTimer", (), {})
    qt.QProcess = FakeQProcess
    qt.QProcessEnvironment = FakeProcessEnvironment
    monkeypatch.setitem(sys.modules, "qt", qt)
    FakeQProcess.instances = []

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
    wrapper.Choice = lambda choices: tuple(choices)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)

    def no_install(*args, **kwargs):
        raise AssertionError("nothing may be installed here")

    monkeypatch.setattr(slicer.util, "pip_install", no_install, raising=False)
    spec = importlib.util.spec_from_file_location("MedSORA_module_under_test", MODULE_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_slicer_module_logic_process_with_known_scores(module_file, ct_node, organ_node):
    outputs = module_file.MedSORALogic().process(ct_node, organ_node, ["right upper quadrant pain"],
                                                 threshold=0.6, scorer=known_scorer())
    assert len(outputs) == 1
    seg = outputs[0].segmentation_node
    assert seg.GetName() == "MedSORA: right upper quadrant pain"
    logic = module_file.MedSORALogic()
    assert logic.tableForSegmentation(seg) is outputs[0].table_node
    assert logic.chartForSegmentation(seg) is outputs[0].chart_node
    assert logic.passagesForSegmentation(seg) is outputs[0].passages_node
    visible = [k for k, v in scene_out.apply_relevance_display(seg, 0.6).items() if v]
    assert sorted(visible) == sorted(s.key for s in outputs[0].result.organs if s.relevance >= 0.6)
    assert module_file.unmetRequirements() == []  # this venv has every package Slicer would install


def test_slicer_model_folder_parameter_maps_to_settings(module_file):
    logic = module_file.MedSORALogic
    node = types.SimpleNamespace(device="cpu", modelFolder=Path(), textEncoder="", useImageModel=False)
    assert logic.scoringSettings(node) == ScoringSettings(device="cpu", model_dir="", use_image_model=False)
    node.modelFolder = Path("/models/mine")
    assert logic.scoringSettings(node).model_dir == "/models/mine"


def test_slicer_MedSORATest_runs_in_slicer_core(module_file):
    """The self test with the packages present: phantom (real models, in process), example CT through the worker."""
    import torch

    torch.set_num_threads(1)
    case = module_file.MedSORATest("runTest")
    case.runTest()
    assert case.messages[-1] == "Errors passed"
    assert "Phantom passed" in case.messages and "Example CT passed" in case.messages


def test_slicer_MedSORATest_without_packages_installs_nothing_and_says_so(module_file, monkeypatch):
    monkeypatch.setattr(module_file, "dependenciesAvailable", lambda: False)
    case = module_file.MedSORATest("runTest")
    case.runTest()  # slicer.util.pip_install raises if called (module_file fixture)
    assert "stand-in scorer" in case.messages[0]
    assert "Stand-in scorer passed (the models were not run)" in case.messages
    assert "Phantom passed" not in case.messages and case.messages[-1] == "Errors passed"


def test_slicer_dependency_check_compares_versions(module_file, monkeypatch, tmp_path):
    import numpy

    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"# comment\nnumpy>={numpy.__version__}\nnumpy>=999.0\nno-such-package-medsora>=1\n"
                            "safetensors\n", encoding="utf-8")
    monkeypatch.setattr(module_file, "requirementsPath", lambda: str(requirements))
    assert module_file.unmetRequirements() == ["numpy>=999.0", "no-such-package-medsora>=1"]


def test_slicer_dependencies_use_pip_ensure_and_install_nothing_in_testing_mode(module_file, monkeypatch, tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy>=999.0\n", encoding="utf-8")
    monkeypatch.setattr(module_file, "requirementsPath", lambda: str(requirements))
    calls = []
    packaging = types.ModuleType("slicer.packaging")
    packaging.load_requirements = lambda path: calls.append(("load", path)) or ["numpy>=999.0"]
    packaging.pip_ensure = lambda requirements, requester: calls.append(("ensure", requirements, requester))
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    app = types.SimpleNamespace(testingEnabled=lambda: True, majorVersion=5, minorVersion=12)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    assert module_file.ensureDependencies() is False and calls == []  # testing mode: only a check
    app.testingEnabled = lambda: False
    assert module_file.ensureDependencies(askConfirmation=False) is False  # still unmet after pip_ensure
    assert calls == [("load", str(requirements)), ("ensure", ["numpy>=999.0"], "MedSORA")]
    # Slicer without slicer.packaging: the fallback installs only what is unmet (here refused: no install)
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)
    monkeypatch.delattr(slicer, "packaging", raising=False)
    with pytest.raises(AssertionError, match="nothing may be installed"):
        module_file.ensureDependencies(askConfirmation=False)


def test_slicer_totalsegmentator_call_sets_up_first_and_passes_keywords(module_file, monkeypatch, ct_node):
    calls = []

    class NewTotalSegmentatorLogic:  # a process() without "fast", as in its 2026 signature
        def setupPythonRequirements(self, upgrade=False):
            calls.append("setup")

        def process(self, inputVolume, outputSegmentation, cpu=False, task=None, subset=None, interactive=False):
            calls.append({"inputVolume": inputVolume, "outputSegmentation": outputSegmentation, "cpu": cpu,
                          "task": task, "subset": subset, "interactive": interactive})
            if task != "total":
                raise TypeError("unexpected task")

    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(totalsegmentator=object()), raising=False)
    monkeypatch.setattr(slicer.util, "getModuleLogic", lambda name: NewTotalSegmentatorLogic(), raising=False)
    node = module_file.MedSORALogic().segmentOrgansWithTotalSegmentator(ct_node, fast=True, cpu=True)
    assert calls[0] == "setup"
    assert calls[1] == {"inputVolume": ct_node, "outputSegmentation": node, "cpu": True, "task": "total",
                        "subset": list(organs.STRUCTURES), "interactive": True}

    class FailingLogic(NewTotalSegmentatorLogic):
        def process(self, inputVolume, outputSegmentation, fast=True, cpu=False, task=None, subset=None):
            calls.append("process")
            raise TypeError("a bug inside TotalSegmentator")

    calls.clear()
    monkeypatch.setattr(slicer.util, "getModuleLogic", lambda name: FailingLogic(), raising=False)
    before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    with pytest.raises(TypeError, match="a bug inside"):
        module_file.MedSORALogic().segmentOrgansWithTotalSegmentator(ct_node)
    assert calls == ["setup", "process"]  # not retried with other arguments
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == before


# ------------------------------------------------------------------------------------------
# the panel's worker driver with a real worker process
# ------------------------------------------------------------------------------------------

def _pump_until(process, events, done, limit=600):
    deadline = time.monotonic() + limit
    while not done() and time.monotonic() < deadline:
        process.pump()
        time.sleep(0.02)
    assert done(), events


def _request(tmp_path):
    return request_fields(EXAMPLE_CT, EXAMPLE_SEG, [GALLSTONES], tmp_path / "out", ScoringSettings(device="cpu"),
                          label_scheme="totalsegmentator")


def test_slicer_worker_process_cancel_kills_it_without_an_error(module_file, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    events, logs = [], []
    worker = module_file.ScoringWorkerProcess(events.append, logs.append)
    request_id = worker.submit(_request(tmp_path))
    process = FakeQProcess.instances[-1]
    _pump_until(process, events, lambda: any(e.get("message") == "loading models" for e in events))
    assert all(e["id"] == request_id and e["event"] == "progress" for e in events)
    worker.cancel()
    assert process.popen.returncode == -signal.SIGKILL and not worker.running
    process.pump()
    assert [e["event"] for e in events].count("error") == 0 and not (tmp_path / "out.json").exists()
    # the next request starts a new worker, which answers a bad request with an error event
    events.clear()
    bad = dict(_request(tmp_path), volume=str(tmp_path / "missing.nii"))
    second_id = worker.submit(bad)
    assert FakeQProcess.instances[-1] is not process
    _pump_until(FakeQProcess.instances[-1], events, lambda: any(e["event"] == "error" for e in events))
    assert events[-1]["id"] == second_id and "no such file" in events[-1]["message"]
    worker.stop()
    assert not worker.running and FakeQProcess.instances[-1].popen.poll() is not None


def test_slicer_worker_process_crash_is_reported(module_file, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    events = []
    worker = module_file.ScoringWorkerProcess(events.append, lambda text: None)
    request_id = worker.submit(_request(tmp_path))
    process = FakeQProcess.instances[-1]
    _pump_until(process, events, lambda: any(e.get("message") == "loading models" for e in events))
    os.kill(process.popen.pid, signal.SIGSEGV)
    _pump_until(process, events, lambda: events[-1]["event"] == "error")
    assert events[-1] == {"id": request_id, "event": "error",
                          "message": "The scoring worker stopped unexpectedly (crashed)."}
    assert not worker.running
