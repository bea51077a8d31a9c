"""The module file MedSORA/MedSORA.py and its Designer file, without the Slicer application.

The UI bindings and imports are read statically; the logic and the self test run
on PyPI ``slicer-core`` with the application-only parts (qt, the scripted-module
base classes, the parameter node wrapper) replaced by minimal stand-ins.
"""
from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from slicer_scene import (SEG, ct_masks, ct_node, ct_volume, known_scorer, organ_node, scene,  # noqa: F401
                          slicer, vtk)
from MedSORALib.scene import outputs as scene_out

ROOT = Path(__file__).resolve().parents[1]
MODULE_PY = ROOT / "MedSORA" / "MedSORA.py"
MODULE_UI = ROOT / "MedSORA" / "Resources" / "UI" / "MedSORA.ui"


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

