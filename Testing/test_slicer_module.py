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
import inspect
import os
import re
import signal
import subprocess
import sys
import time
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from slicer_scene import (SEG, FakeQProcess, application_stand_ins, ct_masks, ct_node, ct_volume,  # noqa: F401
                          known_scorer, load_module_file, organ_node, scene, slicer, vtk)
from conftest import EXAMPLE_CT, EXAMPLE_SEG
from MedSORALib import organs
from MedSORALib.scene import result_nodes as scene_out
from MedSORALib.session import ScoringSettings
from MedSORALib.worker import request_fields

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
                "textEncoder": "QLineEdit", "onePerLine": "QCheckBox", "useImageModel": "QCheckBox",
                "patientAge": "QLineEdit", "patientSex": "QComboBox"}
    for field_name, widget_class in expected.items():
        assert widgets[bindings[field_name]] == widget_class, field_name
    assert re.search(r"device: Annotated\[str, Choice\(", code)  # the combo box connector needs Choice
    assert re.search(r"modelFolder: pathlib\.Path", code)
    assert re.search(r"patientSex: Annotated\[str, Choice\(list\(SEX_CHOICES\)\)\]", code)
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
    """Slicer 5.10 and later: docs/slicer.md says so, the panel refuses older ones, and no newer-only API is called
    unguarded (slicer.packaging, first released in 5.12, is tried; vtkSegment terminology methods are not used)."""
    text = MODULE_PY.read_text(encoding="utf-8")
    assert "MINIMUM_SLICER_VERSION = (5, 10)" in text
    docs = (ROOT / "docs" / "slicer.md").read_text(encoding="utf-8")
    assert "Slicer 5.10 or later" in docs and "5.8" not in docs
    assert "`slicer.packaging.pip_ensure` on Slicer 5.12 and later" in docs and "5.11 and later" not in docs
    assert "Slicer >= 5.12" in text and "5.11;" not in text
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

@pytest.fixture()
def module_file(monkeypatch, scene):
    """MedSORA/MedSORA.py imported on slicer-core, the application-only parts replaced by minimal stand-ins."""
    for name, module in application_stand_ins().items():
        monkeypatch.setitem(sys.modules, name, module)
    FakeQProcess.instances = []

    def no_install(*args, **kwargs):
        raise AssertionError("nothing may be installed here")

    monkeypatch.setattr(slicer.util, "pip_install", no_install, raising=False)
    return load_module_file()


def test_slicer_docs_show_both_developer_tools_install_routes_and_the_exit_codes():
    docs = (ROOT / "docs" / "slicer.md").read_text(encoding="utf-8")
    assert "*Developer Tools for Extensions > Load module*, choose `MedSORA/MedSORA.py`" in docs
    assert "*Developer Tools for Extensions > Install extension archive*" in docs
    assert "cmake --build build --target package" in docs
    assert "<Slicer revision>-<os>-<arch>-MedSORA-git<commit>-<date of the commit>.tar.gz" in docs
    scripts = {name: (ROOT / "MedSORA" / "Scripts" / name).read_text(encoding="utf-8") for name in ("score.py",
                                                                                                     "batch.py")}
    table = docs.split("| status | `score.py` | `batch.py` |", 1)[1].split("\n\n", 1)[0]
    assert [row.split("|")[1].strip() for row in table.strip().splitlines()[1:]] == ["0", "1", "2", "3", "130"]
    for text in scripts.values():
        assert "EXIT_UNEXPECTED = 3" in text and "EXIT_INTERRUPTED = 130" in text
        assert "sys.exit(run(sys.argv[1:]))" in text


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
    assert logic.scoringSettings(node) == ScoringSettings(device="cpu", model_dir="", image_weight=0.0)
    node.useImageModel = True  # the box on: the image term at its evaluated weight
    assert logic.scoringSettings(node).image_weight == 0.25
    node.useImageModel = False
    node.modelFolder = Path("/models/mine")
    assert logic.scoringSettings(node).model_dir == "/models/mine"


SELF_TESTS = {"test_MedSORA_errors", "test_MedSORA_example_ct_through_the_worker", "test_MedSORA_phantom",
              "test_MedSORA_stand_in_scorer"}
MODEL_TESTS = {"test_MedSORA_phantom", "test_MedSORA_example_ct_through_the_worker"}


def _run_like_run_unit_test(module):
    """The self test as CTest runs it (slicer.testing.runUnitTest: every test_* method of the module's test case)."""
    import io
    import unittest

    suite = unittest.TestLoader().loadTestsFromModule(module)
    return unittest.TextTestRunner(stream=io.StringIO(), verbosity=2).run(suite)


def _blocked_imports() -> list[str]:
    """Top-level import names of torch and of every package in Resources/requirements.txt (absent on a fresh Slicer)."""
    from importlib import metadata

    lines = [line.split("#", 1)[0].strip() for line in
             (ROOT / "MedSORA" / "Resources" / "requirements.txt").read_text(encoding="utf-8").splitlines()]
    wanted = {re.split(r"[<>=!~;\[ ]", line)[0].lower().replace("_", "-") for line in lines if line}
    wanted |= {"torch", "torchvision"}
    names = {name for name, dists in metadata.packages_distributions().items()
             if any(d.lower().replace("_", "-") in wanted for d in dists)}
    assert {"torch", "nibabel", "nrrd", "transformers", "safetensors", "yaml"} <= names
    return sorted(names)


#: Runs in a fresh interpreter: the packages are blocked before anything imports them.
_FACTORY_HARNESS = r"""
import io, json, sys, unittest
blocked = json.loads(sys.argv[1])
for name in blocked:
    sys.modules[name] = None  # "import torch" raises ImportError, as on a fresh Slicer
sys.path[:0] = [sys.argv[2], sys.argv[3]]
import slicer_scene
from slicer_scene import slicer
slicer.mrmlScene = slicer.vtkMRMLScene()
displayed = []
sys.modules.update(slicer_scene.application_stand_ins(displayed))
def no_install(*args, **kwargs):
    raise AssertionError("nothing may be installed while testing")
slicer.util.pip_install = no_install
module = slicer_scene.load_module_file()
suite = unittest.TestLoader().loadTestsFromModule(module)
result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=2).run(suite)
print(json.dumps({
    "run": result.testsRun, "ok": result.wasSuccessful(),
    "problems": [[case.id(), text] for case, text in result.errors + result.failures],
    "skipped": [[case.id().rsplit(".", 1)[1], reason] for case, reason in result.skipped],
    "displayed": displayed, "missing": module.PACKAGES_MISSING if hasattr(module, "PACKAGES_MISSING")
    else module.MedSORATest.PACKAGES_MISSING,
    "imported": sorted(name for name in blocked if sys.modules.get(name) is not None),
}))
"""


def test_slicer_self_test_passes_on_a_factory_slicer():
    """A fresh Slicer in testing mode: torch and the requirements absent, the tests loaded as runUnitTest does.

    The model tests skip with the stated reason, the stand-in scorer and error tests run and pass, nothing is
    installed and no blocked package is imported.
    """
    import json

    blocked = _blocked_imports()
    done = subprocess.run([sys.executable, "-c", _FACTORY_HARNESS, json.dumps(blocked), str(ROOT / "Testing"),
                           str(ROOT)], capture_output=True, text=True, timeout=600, cwd=str(ROOT),
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["problems"] == [] and report["ok"], report["problems"]
    assert report["run"] == len(SELF_TESTS) == 4
    assert sorted(name for name, _ in report["skipped"]) == sorted(MODEL_TESTS)
    assert all(reason == report["missing"] for _, reason in report["skipped"])
    assert "torch" in report["missing"] and "requirements.txt" in report["missing"]
    assert "Stand-in scorer passed (the models were not run)" in report["displayed"]
    assert "Errors passed" in report["displayed"] and "Phantom passed" not in report["displayed"]
    assert report["imported"] == []


def test_slicer_self_test_runs_the_real_checks_with_the_packages(module_file, monkeypatch):
    """Packages present: every test_* method runs its real check (phantom with the models, example CT through
    the worker), none is skipped."""
    import torch

    torch.set_num_threads(1)
    assert module_file.dependenciesAvailable()
    displayed = []
    monkeypatch.setattr(module_file.MedSORATest, "delayDisplay", lambda self, message, msec=None:
                        displayed.append(message))
    result = _run_like_run_unit_test(module_file)
    assert result.errors == [] and result.failures == [] and result.skipped == []
    assert result.testsRun == len(SELF_TESTS)
    for message in ("Phantom passed", "Example CT passed", "Stand-in scorer passed (the models were not run)",
                    "Errors passed"):
        assert message in displayed


def test_slicer_reload_and_test_without_packages_says_why_and_installs_nothing(module_file, monkeypatch):
    """runTest (the panel's Reload and Test) runs every method; the skipped ones are shown with their reason."""
    monkeypatch.setattr(module_file, "dependenciesAvailable", lambda: False)
    case = module_file.MedSORATest("runTest")
    case.runTest()  # slicer.util.pip_install raises if called (module_file fixture)
    missing = module_file.MedSORATest.PACKAGES_MISSING
    assert case.messages[1] == "Stand-in scorer passed (the models were not run)"
    assert f"test_MedSORA_phantom: {missing}" in case.messages
    assert f"test_MedSORA_example_ct_through_the_worker: {missing}" in case.messages
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


def _slicer_app(monkeypatch, testing=False):
    app = types.SimpleNamespace(testingEnabled=lambda: testing, majorVersion=5, minorVersion=12)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    return app


def test_slicer_declining_the_install_returns_quietly(module_file, monkeypatch, tmp_path):
    """pip_ensure raises RuntimeError when the user answers Cancel: ensureDependencies returns False, no error;
    any other error of pip_ensure still reaches the user."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("numpy>=999.0\n", encoding="utf-8")
    monkeypatch.setattr(module_file, "requirementsPath", lambda: str(requirements))
    _slicer_app(monkeypatch)
    packaging = types.ModuleType("slicer.packaging")
    packaging.load_requirements = lambda path: ["numpy>=999.0"]

    def declined(requirements, requester):  # what slicer.packaging.pip_ensure raises on Cancel
        raise RuntimeError("User declined package installation")

    packaging.pip_ensure = declined
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    assert module_file.ensureDependencies() is False

    def failed(requirements, requester):
        raise RuntimeError("pip failed: no network")

    packaging.pip_ensure = failed
    with pytest.raises(RuntimeError, match="no network"):
        module_file.ensureDependencies()
    # Slicer 5.10 (no slicer.packaging): Cancel in MedSORA's own question
    monkeypatch.setitem(sys.modules, "slicer.packaging", None)
    monkeypatch.delattr(slicer, "packaging", raising=False)
    asked = []
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *a, **k: asked.append(a) or False,
                        raising=False)
    assert module_file.ensureDependencies() is False and len(asked) == 1


def test_slicer_torch_comes_from_pytorchutils_with_the_requirement(module_file, monkeypatch):
    """Without torch: PyTorchUtils installs it with MedSORA's version requirement; declining returns quietly."""
    _slicer_app(monkeypatch)
    calls = []

    class PyTorchUtilsLogic:
        def torchInstalled(self):
            return False

        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None,
                         torchvisionVersionRequirement=None):  # its signature (fepegar/SlicerPyTorch)
            calls.append((askConfirmation, torchVersionRequirement))
            return None  # the user declined

    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "PyTorchUtils", types.SimpleNamespace(PyTorchUtilsLogic=PyTorchUtilsLogic))
    assert module_file.ensureDependencies(askConfirmation=True) is False
    assert calls == [(True, module_file.TORCH_REQUIREMENT)] and module_file.TORCH_REQUIREMENT == ">=2.3"
    monkeypatch.setitem(sys.modules, "PyTorchUtils", None)
    with pytest.raises(RuntimeError, match="PyTorch extension"):
        module_file.ensureDependencies()


def test_slicer_installed_torch_is_checked_against_the_requirement(module_file, monkeypatch):
    from importlib import metadata

    import torch

    real_version = metadata.version
    installed = {"torch": "2.1.2+cu118"}
    monkeypatch.setattr(metadata, "version", lambda name: installed.get(name) or real_version(name))
    _slicer_app(monkeypatch)
    assert module_file.torchVersionProblem() == "MedSORA needs PyTorch >=2.3; PyTorch 2.1.2+cu118 is installed."
    assert module_file.dependenciesAvailable() is False
    with pytest.raises(RuntimeError, match=r"PyTorch Utils module.*>=2.3"):
        module_file.ensureDependencies()
    installed["torch"] = "2.5.1+cu121"  # a local version label does not matter
    assert module_file.torchVersionProblem() is None
    installed["torch"] = torch.__version__
    assert module_file.torchVersionProblem() is None and module_file.dependenciesAvailable()


# The signatures of TotalSegmentatorLogic.process in the TotalSegmentator extension
# (github.com/lassoan/SlicerTotalSegmentator, TotalSegmentator/TotalSegmentator.py), parameter lists as there.
# Each stand-in resolves the speed mode as that version does and records it.

class _TotalSegmentatorLogic:
    def __init__(self):
        self.calls = []

    def setupPythonRequirements(self, upgrade=False):
        self.calls.append("setup")

    def _record(self, mode, **options):
        self.calls.append(dict(options, mode=mode))


class TotalSegmentator2023(_TotalSegmentatorLogic):  # 2023-07 (commit d4f35a4)
    def process(self, inputVolume, outputSegmentation, fast=True, task=None, subset=None):
        self._record("fast" if fast else "normal", task=task, subset=subset)


class TotalSegmentator2025(_TotalSegmentatorLogic):  # 2024 to 2026-02-11 (commit c5421de)
    def process(self, inputVolume, outputSegmentation, fast=True, cpu=False, task=None, subset=None,
                interactive=False, sequenceBrowserNode=None):
        self._record("fast" if fast else "normal", cpu=cpu, task=task, subset=subset, interactive=interactive)


class TotalSegmentator2026Feb(_TotalSegmentatorLogic):  # 2026-02-11 to 2026-02-21 (commit a1f8b4a)
    def process(self, inputVolume, outputSegmentation, fast=True, fastest=False, cpu=False, task=None, subset=None,
                interactive=False, sequenceBrowserNode=None, robustCrop=False, removeSmallBlobs=False,
                higherOrderResampling=False):
        self._record("faster" if fastest else "fast" if fast else "normal", cpu=cpu, task=task, subset=subset,
                     interactive=interactive)


class TotalSegmentatorCurrent(_TotalSegmentatorLogic):  # since 2026-02-21 (commit a40fc4d; 6a82370, 2026-05)
    def process(self, inputVolume, outputSegmentation, quality=None, cpu=False, task=None, subset=None,
                interactive=False, sequenceBrowserNode=None):
        if quality is True:  # its backward compatibility: a bool is the old fast flag
            quality = "fast"
        elif quality is False:
            quality = "normal"
        if quality not in ("normal", "fast", "faster"):  # None: the task's first mode, "normal" for "total"
            quality = "normal"
        self._record(quality, cpu=cpu, task=task, subset=subset, interactive=interactive)


TOTALSEGMENTATOR_VERSIONS = (TotalSegmentator2023, TotalSegmentator2025, TotalSegmentator2026Feb,
                             TotalSegmentatorCurrent)


@pytest.mark.parametrize("version", TOTALSEGMENTATOR_VERSIONS, ids=lambda v: v.__name__)
@pytest.mark.parametrize("gpu", [False, True], ids=["cpu", "gpu"])
def test_slicer_totalsegmentator_runs_fast_on_a_cpu_with_every_signature(module_file, monkeypatch, ct_node, version,
                                                                          gpu):
    logic = version()
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(totalsegmentator=object()), raising=False)
    monkeypatch.setattr(slicer.util, "getModuleLogic", lambda name: logic, raising=False)
    monkeypatch.setattr(module_file.MedSORALogic, "gpuAvailable", staticmethod(lambda: gpu))
    node = module_file.MedSORALogic().segmentOrgansWithTotalSegmentator(ct_node)
    assert node.IsA("vtkMRMLSegmentationNode") and node.GetName() == "example_ct_sm organs"
    assert logic.calls[0] == "setup"  # its packages are set up before its signature is read
    call = logic.calls[1]
    assert call["mode"] == ("normal" if gpu else "fast")
    assert call["task"] == "total" and call["subset"] == list(organs.STRUCTURES)
    if version is not TotalSegmentator2023:
        assert call["interactive"] is True and call["cpu"] is False
    # cpu=True forces the fast mode even with a GPU
    logic.calls.clear()
    module_file.MedSORALogic().segmentOrgansWithTotalSegmentator(ct_node, cpu=True)
    assert logic.calls[1]["mode"] == "fast"
    if version is not TotalSegmentator2023:
        assert logic.calls[1]["cpu"] is True


def test_slicer_totalsegmentator_options_name_the_mode_as_each_version_does(module_file):
    options = module_file.MedSORALogic.totalSegmentatorOptions
    assert options(TotalSegmentatorCurrent().process, True, False)["quality"] == "fast"
    assert options(TotalSegmentatorCurrent().process, False, False)["quality"] == "normal"
    assert "fast" not in options(TotalSegmentatorCurrent().process, True, False)
    assert options(TotalSegmentator2025().process, True, False)["fast"] is True
    assert "quality" not in options(TotalSegmentator2025().process, True, False)
    assert set(options(TotalSegmentator2023().process, True, True)) == {"fast", "task", "subset"}
    # the filter this replaces passed only names in the signature, and so ran the current version at normal quality
    logic = TotalSegmentatorCurrent()
    accepted = inspect.signature(logic.process).parameters
    old_options = {"fast": True, "cpu": False, "task": "total", "subset": ["liver"], "interactive": True}
    logic.process(None, None, **{k: v for k, v in old_options.items() if k in accepted})
    assert logic.calls[-1]["mode"] == "normal"

    def process_without_speed(inputVolume, outputSegmentation, cpu=False, task=None):
        pass

    with pytest.raises(RuntimeError, match="neither 'quality' nor 'fast'"):
        options(process_without_speed, True, False)


def test_slicer_totalsegmentator_failure_removes_the_node_and_is_not_retried(module_file, monkeypatch, ct_node):
    class Failing(TotalSegmentatorCurrent):
        def process(self, inputVolume, outputSegmentation, quality=None, cpu=False, task=None, subset=None,
                    interactive=False, sequenceBrowserNode=None):
            self.calls.append("process")
            raise TypeError("a bug inside TotalSegmentator")

    logic = Failing()
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(totalsegmentator=object()), raising=False)
    monkeypatch.setattr(slicer.util, "getModuleLogic", lambda name: logic, raising=False)
    monkeypatch.setattr(module_file.MedSORALogic, "gpuAvailable", staticmethod(lambda: False))
    before = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode")
    with pytest.raises(TypeError, match="a bug inside"):
        module_file.MedSORALogic().segmentOrgansWithTotalSegmentator(ct_node)
    assert logic.calls == ["setup", "process"]  # not retried with other arguments
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


# ------------------------------------------------------------------------------------------
# the worker behind a launcher, as PythonSlicer runs it: Cancel, closing the module, quitting Slicer
# ------------------------------------------------------------------------------------------

@pytest.fixture()
def behind_launcher(tmp_path, monkeypatch):
    """``PythonSlicer`` on the PATH is a launcher stand-in that runs the real interpreter as its child."""
    from test_process_tree import write_launcher

    launcher = write_launcher(tmp_path / "bin")
    monkeypatch.setenv("PATH", os.pathsep.join([str(launcher.parent), os.environ.get("PATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return launcher


def _worker_tree(worker):
    """The launcher's pid and the pids below it; asserts the real worker is among them, leading its group."""
    from MedSORALib import process_tree

    def command(pid):
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[1:4]
        except OSError:
            return []

    deadline = time.monotonic() + 120
    while True:  # the group leader wrapper replaces itself with the worker (exec) right after it starts
        below = process_tree.descendants(worker.pid)
        workers = [pid for pid in below if command(pid) == [b"-m", b"MedSORALib", b"worker"]]
        if workers or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(workers) == 1, below
    assert os.getpgid(workers[0]) == workers[0] != os.getpgrp()
    return [worker.pid, *below]


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the worker's command line from /proc")
def test_slicer_cancel_ends_the_worker_behind_the_launcher(module_file, behind_launcher, tmp_path):
    from MedSORALib import process_tree

    events = []
    worker = module_file.ScoringWorkerProcess(events.append, lambda text: None)
    worker.submit(_request(tmp_path))
    process = FakeQProcess.instances[-1]
    assert process.popen.args[0] == str(behind_launcher)  # the worker command went through the launcher
    _pump_until(process, events, lambda: any(e.get("message") == "loading models" for e in events))
    tree = _worker_tree(worker)
    started = time.monotonic()
    worker.cancel()
    assert time.monotonic() - started < 3.0
    assert [pid for pid in tree if process_tree.alive(pid)] == []
    process.pump()
    assert [e["event"] for e in events].count("error") == 0 and not worker.running


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads the worker's command line from /proc")
def test_slicer_closing_the_module_or_quitting_slicer_ends_the_worker(module_file, behind_launcher, tmp_path,
                                                                      monkeypatch):
    """cleanup() (module closed) stops an idle worker through the protocol; the application's aboutToQuit
    kills a busy one; either way no process of the tree is left and the run's folder is removed."""
    from MedSORALib import process_tree

    connections = []
    app = types.SimpleNamespace(connect=lambda signal_name, slot: connections.append((signal_name, slot)),
                                disconnect=lambda signal_name, slot: connections.remove((signal_name, slot)))
    monkeypatch.setattr(slicer, "app", app, raising=False)
    monkeypatch.setattr(module_file.ScoringWorkerProcess, "STOP_WAIT_MS", 60000)

    # busy worker, application quits
    widget = module_file.MedSORAWidget()
    widget._connectApplicationQuit()
    assert [name for name, _ in connections] == ["aboutToQuit()"]
    events = []
    widget._worker = module_file.ScoringWorkerProcess(events.append, lambda text: None)
    folder = tmp_path / "run"
    folder.mkdir()
    widget._run = {"id": widget._worker.submit(_request(tmp_path)), "folder": str(folder)}
    _pump_until(FakeQProcess.instances[-1], events, lambda: any(e.get("message") == "loading models" for e in events))
    tree = _worker_tree(widget._worker)
    connections[0][1]()  # Qt emits aboutToQuit
    assert [pid for pid in tree if process_tree.alive(pid)] == []
    assert widget._worker is None and widget._run is None and not folder.exists()
    widget.cleanup()  # afterwards: nothing left to stop, the connection is removed
    assert connections == []

    # idle worker, module closed: asked to shut down, it exits by itself (status 0 through the launcher)
    widget = module_file.MedSORAWidget()
    worker = widget._worker = module_file.ScoringWorkerProcess(lambda event: None, lambda text: None)
    worker.start()
    process = FakeQProcess.instances[-1]
    tree = _worker_tree(worker)
    widget.cleanup()
    assert process.popen.returncode == 0
    assert [pid for pid in tree if process_tree.alive(pid)] == []


# -- the patient's age and sex (reference ranges of the findings) -----------------------------------------------


def _apply_widget(module_file, monkeypatch, ct_node, organ_node, age, sex):
    """A panel with stand-in widgets and worker around the real onApplyButton; returns (widget, submitted,
    shown errors, temporary folders made)."""
    import contextlib

    submitted, errors, folders = [], [], []
    real_mkdtemp = module_file.tempfile.mkdtemp

    def mkdtemp(**kwargs):
        folders.append(real_mkdtemp(**kwargs))
        return folders[-1]

    monkeypatch.setattr(module_file.tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(slicer.util, "tryWithErrorDisplay", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **k: errors.append(text))
    monkeypatch.setattr(slicer.util, "showStatusMessage", lambda *a, **k: None)
    widget = module_file.MedSORAWidget()
    widget.logic = module_file.MedSORALogic()
    widget._dependenciesReady = True
    widget._parameterNode = types.SimpleNamespace(
        inputVolume=ct_node, organSegmentation=organ_node, symptomText=GALLSTONES, onePerLine=False, device="cpu",
        modelFolder=Path(), textEncoder="", useImageModel=False, patientAge=age, patientSex=sex)
    widget.ui = types.SimpleNamespace(statusLabel=types.SimpleNamespace(text=""),
                                      outOfDomainLabel=types.SimpleNamespace(visible=True),
                                      progressBar=types.SimpleNamespace(value=50))
    widget._worker = types.SimpleNamespace(running=True, submit=lambda fields: submitted.append(fields) or 7)
    widget._remember = lambda text: None
    widget._setRunning = lambda running: None
    return widget, submitted, errors, folders


def test_slicer_apply_sends_the_age_and_sex_with_the_request(module_file, monkeypatch, ct_node, organ_node):
    from MedSORALib.patient import Patient
    from MedSORALib.worker.protocol import parse_request

    widget, submitted, errors, folders = _apply_widget(module_file, monkeypatch, ct_node, organ_node, "64", "female")
    widget.onApplyButton()
    assert errors == [] and len(submitted) == 1 and widget._run["id"] == 7
    (fields,) = submitted
    assert (fields["age"], fields["sex"]) == (64.0, "F")
    assert parse_request({"id": 1, **fields}).patient == Patient(64.0, "F", "request")  # what the worker reads
    assert Path(fields["volume"]).parent == Path(folders[0]) and Path(fields["volume"]).is_file()
    # Unknown age and sex: the request carries neither field.
    widget, submitted, errors, _ = _apply_widget(module_file, monkeypatch, ct_node, organ_node, "", "unknown")
    widget.onApplyButton()
    assert errors == [] and len(submitted) == 1 and "age" not in submitted[0] and "sex" not in submitted[0]
    for folder in folders:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("age", ["sixty", "-4", "200"])
def test_slicer_a_bad_age_gives_one_message_and_no_request(module_file, monkeypatch, ct_node, organ_node, age):
    widget, submitted, errors, folders = _apply_widget(module_file, monkeypatch, ct_node, organ_node, age, "male")
    widget.onApplyButton()
    assert submitted == [] and folders == [] and widget._run is None
    assert len(errors) == 1 and f"age {age!r}" in errors[0] and "\n" not in errors[0]
    assert widget.ui.statusLabel.text.startswith("Check the patient's age or sex: ")


def test_slicer_age_and_sex_come_from_the_dicom_header(module_file, monkeypatch, ct_node):
    values = {("1.2.3", "0010,1010"): "071Y", ("1.2.3", "0010,0040"): "M"}
    database = types.SimpleNamespace(instanceValue=lambda uid, tag: values.get((uid, tag), ""))
    monkeypatch.setattr(slicer, "dicomDatabase", None, raising=False)
    ct_node.SetAttribute("DICOM.instanceUIDs", "1.2.3 1.2.4")
    assert module_file.dicomPatient(ct_node) is None  # no DICOM database: nothing to read
    monkeypatch.setattr(slicer, "dicomDatabase", database)
    assert module_file.dicomPatient(ct_node) == ("71", "male")
    values[("1.2.3", "0010,1010")], values[("1.2.3", "0010,0040")] = "old", "O"
    assert module_file.dicomPatient(ct_node) == ("", "unknown")  # unreadable header values: unknown
    ct_node.SetAttribute("DICOM.instanceUIDs", "")
    assert module_file.dicomPatient(ct_node) is None and module_file.dicomPatient(None) is None
    # The panel: the first CT only fills empty fields (a saved scene keeps its values); another CT replaces them.
    values[("1.2.3", "0010,1010")], values[("1.2.3", "0010,0040")] = "058Y", "F"
    ct_node.SetAttribute("DICOM.instanceUIDs", "1.2.3")
    widget = module_file.MedSORAWidget()
    widget._parameterNode = types.SimpleNamespace(inputVolume=ct_node, patientAge="", patientSex="male")
    widget._prefillPatient()
    assert (widget._parameterNode.patientAge, widget._parameterNode.patientSex) == ("58", "male")
    other = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")
    widget._parameterNode.inputVolume = other
    widget._prefillPatient()  # a CT without a header: the previous patient's values do not stay
    assert (widget._parameterNode.patientAge, widget._parameterNode.patientSex) == ("", "unknown")
    widget._parameterNode.inputVolume = ct_node
    widget._prefillPatient()
    assert (widget._parameterNode.patientAge, widget._parameterNode.patientSex) == ("58", "female")


def test_slicer_in_process_scoring_uses_the_age_and_sex(module_file, ct_node, organ_node):
    logic = module_file.MedSORALogic()
    (woman,) = logic.process(ct_node, organ_node, [GALLSTONES], device="cpu", age="64", sex="female")
    assert woman.result.patient == {"age": 64.0, "sex": "F", "source": "Slicer panel"}
    findings = {f["key"]: f for o in woman.result.organs for f in o.findings}
    (unknown,) = logic.process(ct_node, organ_node, [GALLSTONES], device="cpu")
    assert unknown.result.patient["sex"] is None
    assert "abdominal_aortic_aneurysm_for_sex" in findings
    assert "abdominal_aortic_aneurysm_for_sex" not in {f["key"] for o in unknown.result.organs for f in o.findings}
    from MedSORALib.patient import PatientError

    with pytest.raises(PatientError, match="age 'x'"):
        logic.process(ct_node, organ_node, [GALLSTONES], device="cpu", age="x")
