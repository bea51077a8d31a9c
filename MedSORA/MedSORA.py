"""MedSORA: which abdominal organs does a symptom point to, on this CT?

The 3D Slicer module: a panel (inputs, symptom, outputs, display, advanced),
``MedSORALogic`` (scriptable, no dialogs) and ``MedSORATest``. The scene work is
in :mod:`MedSORALib.mrml` and the scoring in :func:`MedSORALib.scoring.score_volume`,
the same entry the ``medsora`` command line and ``Scripts/score.py`` use.
"""
from __future__ import annotations

import logging
import os
import sys

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

try:  # Slicer >= 5.4
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # older Slicer: no translation
    def _(text):
        return text

    def translate(context, text):
        return text

from slicer.parameterNodeWrapper import parameterNodeWrapper, WithinRange
from typing import Annotated

# The MedSORALib package is installed next to this file by the extension's CMake
# (and sits one folder up in a source checkout).
_MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
for _candidate in (_MODULE_DIR, os.path.dirname(_MODULE_DIR)):
    if os.path.isdir(os.path.join(_candidate, "MedSORALib")) and _candidate not in sys.path:
        sys.path.insert(0, _candidate)
        break

#: Example symptoms offered in the panel.
EXAMPLE_SYMPTOMS = (
    "Pain in the right upper abdomen after fatty meals, with nausea.",
    "Yellow skin and eyes, dark urine and pale stools.",
    "Severe upper abdominal pain radiating to the back, worse after alcohol.",
    "Blood in the urine and pain in the left flank.",
    "Pain in the upper left abdomen after a fall, feeling faint.",
    "Burning pain in the upper abdomen, vomiting blood.",
    "Difficulty swallowing solid food, food sticking behind the breastbone.",
    "Episodes of headache, palpitations and sweating with very high blood pressure.",
    "Sudden tearing pain in the back and a pulsating mass in the abdomen.",
    "Swollen legs and abdomen, distended veins on the belly.",
)
#: Application setting keys.
SETTINGS_HISTORY = "MedSORA/SymptomHistory"
HISTORY_LENGTH = 10
DEVICES = ("auto", "cpu", "cuda", "mps")


#
# MedSORA
#

class MedSORA(ScriptedLoadableModule):
    """Module description shown in the application."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedSORA")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedSORA contributors"]
        self.parent.helpText = _(
            "Symptom-to-organ reasoning in abdominal CT. Type a symptom; MedSORA scores how relevant each "
            "segmented organ (liver, pancreas, kidneys, gallbladder, spleen, stomach, adrenal glands, esophagus, "
            "aorta, inferior vena cava, portal and splenic vein) is to it, from the symptom text and the organs' "
            "appearance on this CT, and colours the organs by relevance. A research tool, not a diagnosis. "
            'See the <a href="https://github.com/medsora/SlicerMedSORA">documentation</a>.')
        self.parent.acknowledgementText = _(
            "Based on Med-SORA (arXiv 2511.06752). Symptom knowledge from the Symptom Ontology (CC0) and the "
            "Human Phenotype Ontology; example CT from TotalSegmentator (CC BY 4.0).")


#
# Parameter node
#

@parameterNodeWrapper
class MedSORAParameterNode:
    """The panel's state, saved with the scene.

    inputVolume: the CT (HU). organSegmentation: organ segments in any common naming.
    symptomText: the symptom description; onePerLine: each non-empty line is a separate symptom.
    threshold: organs below this relevance are hidden. opacityByRelevance: more relevant organs are more opaque.
    show3D: build surfaces and show the result in 3D.
    device, modelFolder, textEncoder, useImageModel: the Advanced section.
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    organSegmentation: slicer.vtkMRMLSegmentationNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    symptomText: str = ""
    onePerLine: bool = False
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.0
    opacityByRelevance: bool = True
    show3D: bool = True
    device: str = "auto"
    modelFolder: str = ""
    textEncoder: str = ""
    useImageModel: bool = True


#
# Dependencies
#

def requirementsPath() -> str:
    return os.path.join(_MODULE_DIR, "Resources", "requirements.txt")


def missingRequirements() -> list[str]:
    """Requirement lines of Resources/requirements.txt whose distribution is not installed (no version check)."""
    from importlib import metadata

    missing = []
    with open(requirementsPath(), encoding="utf-8") as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            name = line
            for sep in ("<", ">", "=", "!", "~", ";", "[", " "):
                name = name.split(sep, 1)[0]
            try:
                metadata.version(name)
            except metadata.PackageNotFoundError:
                missing.append(line)
    return missing


def ensureDependencies(askConfirmation: bool = True) -> bool:
    """Make torch (from the PyTorch extension) and the Python packages of requirements.txt available.

    Called on the first Apply, not at import. Returns True when everything is
    importable; False when the user declined or a restart is needed.
    """
    # torch: through the PyTorch extension, which picks the build for this computer's GPU/CUDA.
    try:
        import torch  # noqa: F401
    except ImportError:
        try:
            import PyTorchUtils
        except ImportError as error:
            raise RuntimeError(_("MedSORA needs the PyTorch extension: install it from the Extensions "
                                 "Manager and restart Slicer.")) from error
        torchLogic = PyTorchUtils.PyTorchUtilsLogic()
        if not torchLogic.torchInstalled():
            if torchLogic.installTorch(askConfirmation=askConfirmation, torchVersionRequirement=">=2.2") is None:
                return False

    if hasattr(slicer, "packaging") and hasattr(slicer.packaging, "pip_ensure"):
        # Slicer >= 5.12: asks, installs with progress, offers a restart, skips in testing mode.
        requirements = slicer.packaging.load_requirements(requirementsPath())
        slicer.packaging.pip_ensure(requirements, requester="MedSORA")
        return not missingRequirements()

    missing = missingRequirements()
    if not missing:
        return True
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _("MedSORA needs these Python packages:\n\n{packages}\n\nInstall them now? This takes a few minutes "
              "and needs an internet connection.").format(packages="\n".join(missing)),
            windowTitle=_("MedSORA: install packages")):
        return False
    slicer.util.pip_install(missing)
    return not missingRequirements()


#
# MedSORAWidget
#

class MedSORAWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel. Scoring runs in a background thread polled by a timer, so the application stays responsive."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._jobInputs = None
        self._jobVolumeNode = None
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.connect("timeout()", self._pollJob)
        self._dependenciesReady = False
        self._lastOutputs = []

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/MedSORA.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = MedSORALogic()

        self.ui.exampleComboBox.addItem(_("Examples..."))
        for example in EXAMPLE_SYMPTOMS:
            self.ui.exampleComboBox.addItem(example)
        self._refreshHistory()
        self.ui.exampleComboBox.connect("activated(int)", self._onExampleChosen)
        self.ui.historyComboBox.connect("activated(int)", self._onHistoryChosen)
        self.ui.symptomTextEdit.connect("textChanged()", self._onSymptomTextChanged)
        self.ui.deviceComboBox.clear()
        for device in DEVICES:
            self.ui.deviceComboBox.addItem(device)

        # device and model folder are kept in the parameter node by hand (no typed GUI connector for them)
        self.ui.deviceComboBox.connect("currentTextChanged(QString)", self._onDeviceChanged)
        self.ui.modelFolderPathLineEdit.connect("currentPathChanged(QString)", self._onModelFolderChanged)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.totalSegmentatorButton.connect("clicked(bool)", self.onTotalSegmentatorButton)
        self.ui.totalSegmentatorButton.visible = self.logic.totalSegmentatorAvailable()
        # only MedSORA results (segmentations that carry the symptom attribute) in the result selector
        self.ui.outputSegmentationSelector.addAttribute("vtkMRMLSegmentationNode", "MedSORA.Symptom")
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onOutputChanged)
        self.ui.thresholdSliderWidget.connect("valueChanged(double)", self._updateDisplay)
        self.ui.opacityCheckBox.connect("toggled(bool)", self._updateDisplay)
        self.ui.showChartButton.connect("clicked(bool)", self._showChart)
        self.ui.progressBar.visible = False
        self.ui.outOfDomainLabel.visible = False

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self._cancelJob()
        self._timer.stop()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelJob()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            volume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if volume and not volume.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = volume

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    # --- symptom box -----------------------------------------------------------------------

    def _onSymptomTextChanged(self) -> None:
        if self._parameterNode and self._parameterNode.symptomText != self.ui.symptomTextEdit.toPlainText():
            self._parameterNode.symptomText = self.ui.symptomTextEdit.toPlainText()

    def _onExampleChosen(self, index: int) -> None:
        if index > 0:
            self.ui.symptomTextEdit.setPlainText(self.ui.exampleComboBox.itemText(index))
        self.ui.exampleComboBox.setCurrentIndex(0)

    def _onHistoryChosen(self, index: int) -> None:
        if index > 0:
            self.ui.symptomTextEdit.setPlainText(self.ui.historyComboBox.itemData(index))
        self.ui.historyComboBox.setCurrentIndex(0)

    def _history(self) -> list:
        value = qt.QSettings().value(SETTINGS_HISTORY)
        if not value:
            return []
        return [value] if isinstance(value, str) else list(value)

    def _refreshHistory(self) -> None:
        self.ui.historyComboBox.clear()
        self.ui.historyComboBox.addItem(_("Recent..."), "")
        for text in self._history():
            short = text if len(text) <= 70 else text[:69] + "\u2026"
            self.ui.historyComboBox.addItem(short, text)
        self.ui.historyComboBox.enabled = self.ui.historyComboBox.count > 1

    def _remember(self, text: str) -> None:
        history = [text] + [t for t in self._history() if t != text]
        qt.QSettings().setValue(SETTINGS_HISTORY, history[:HISTORY_LENGTH])
        self._refreshHistory()

    def _onDeviceChanged(self, text: str) -> None:
        if self._parameterNode and self._parameterNode.device != text:
            self._parameterNode.device = text

    def _onModelFolderChanged(self, path: str) -> None:
        if self._parameterNode and self._parameterNode.modelFolder != path:
            self._parameterNode.modelFolder = path

    # --- state -----------------------------------------------------------------------------

    def _checkCanApply(self, caller=None, event=None) -> None:
        p = self._parameterNode
        if p:
            if self.ui.deviceComboBox.currentText != p.device:
                self.ui.deviceComboBox.setCurrentIndex(max(self.ui.deviceComboBox.findText(p.device), 0))
            if self.ui.modelFolderPathLineEdit.currentPath != p.modelFolder:
                self.ui.modelFolderPathLineEdit.currentPath = p.modelFolder
            if self.ui.symptomTextEdit.toPlainText() != p.symptomText:  # changed by a script
                self.ui.symptomTextEdit.setPlainText(p.symptomText)
        if self._job is not None:
            return
        ready = bool(p and p.inputVolume and p.organSegmentation and p.symptomText.strip())
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Score the organs for the symptom") if ready else _(
            "Select a CT, its organ segmentation and type a symptom")

    def _setRunning(self, running: bool) -> None:
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.toolTip = _("Stop scoring") if running else _("Score the organs for the symptom")
        self.ui.progressBar.visible = running
        for widget in (self.ui.inputsCollapsibleButton, self.ui.symptomCollapsibleButton,
                       self.ui.advancedCollapsibleButton):
            widget.enabled = not running
        if not running:
            self._checkCanApply()

    def _status(self, text: str) -> None:
        self.ui.statusLabel.text = text
        slicer.util.showStatusMessage(text, 3000)

    # --- run -------------------------------------------------------------------------------

    def onApplyButton(self) -> None:
        if self._job is not None:
            self._cancelJob()
            return
        with slicer.util.tryWithErrorDisplay(_("MedSORA could not start."), waitCursor=True):
            if not self._dependenciesReady:
                self._status(_("Checking Python packages..."))
                self._dependenciesReady = ensureDependencies(askConfirmation=True)
                if not self._dependenciesReady:
                    self._status(_("MedSORA needs its Python packages; scoring was not started."))
                    return
            p = self._parameterNode
            from MedSORALib import mrml

            symptoms = mrml.split_symptoms(p.symptomText, p.onePerLine)
            inputs = mrml.prepare_inputs(p.inputVolume, p.organSegmentation, symptoms)
            self._remember(p.symptomText.strip())
            self._job = mrml.ScoringJob(inputs, self.logic.scoringSettings(p))
            self._jobInputs = inputs
            self._jobVolumeNode = p.inputVolume
            self.ui.outOfDomainLabel.visible = False
            self.ui.progressBar.value = 0
            self._setRunning(True)
            self._status(_("Scoring {count} organ(s)...").format(count=len(inputs.masks)))
            self._job.start()
            self._timer.start()

    def _cancelJob(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._status(_("Cancelling..."))

    def _pollJob(self) -> None:
        job = self._job
        if job is None:
            self._timer.stop()
            return
        finished = job.poll()
        self.ui.progressBar.value = int(round(100 * job.progress_fraction))
        if job.progress_message:
            self.ui.statusLabel.text = job.progress_message
        if not finished:
            return
        self._timer.stop()
        self._job = None
        self._setRunning(False)
        from MedSORALib import mrml

        if isinstance(job.error, mrml.ScoringCancelled):
            self._status(_("Cancelled."))
            return
        if job.error is not None:
            self._status(_("Failed: {error}").format(error=job.error))
            if isinstance(job.error, mrml.MedSORAError):  # a user-facing, one-line message
                slicer.util.errorDisplay(str(job.error), windowTitle=_("MedSORA"))
            else:
                logging.error("MedSORA scoring failed", exc_info=job.error)
                slicer.util.errorDisplay(_("MedSORA scoring failed."), detailedText=repr(job.error))
            return
        p = self._parameterNode
        if p is None or self._jobVolumeNode is None or self._jobVolumeNode.GetScene() is None:
            self._status(_("The scene was closed; results discarded."))
            return
        with slicer.util.tryWithErrorDisplay(_("MedSORA could not create its outputs."), waitCursor=True):
            outputs = self.logic.createOutputs(job.results, self._jobInputs.masks, self._jobVolumeNode,
                                               threshold=p.threshold, opacityByRelevance=p.opacityByRelevance,
                                               show3D=p.show3D)
            self._showOutputs(outputs)
            seconds = (job.finished_at or 0) - (job.started_at or 0)
            self._status(_("Done in {seconds:.1f} s.").format(seconds=seconds))

    def onTotalSegmentatorButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("TotalSegmentator failed."), waitCursor=True):
            self._status(_("Segmenting organs with TotalSegmentator..."))
            node = self.logic.segmentOrgansWithTotalSegmentator(self._parameterNode.inputVolume)
            self._parameterNode.organSegmentation = node
            self._status(_("Organs segmented."))

    # --- outputs ---------------------------------------------------------------------------

    def _showOutputs(self, outputs) -> None:
        self._lastOutputs = outputs
        if not outputs:
            return
        last = outputs[-1]
        self._parameterNode.outputSegmentation = last.segmentation_node
        self._onOutputChanged(last.segmentation_node)
        if last.segmentation_node.GetDisplayNode():
            slicer.util.setSliceViewerLayers(background=self._jobVolumeNode)

    def _outputsFor(self, segmentationNode):
        for outputs in self._lastOutputs:
            if outputs.segmentation_node is segmentationNode:
                return outputs
        return None

    def _onOutputChanged(self, node) -> None:
        from MedSORALib import mrml

        self.ui.outOfDomainLabel.visible = bool(node) and node.GetAttribute(mrml.IN_DOMAIN_ATTRIBUTE) == "false"
        table = self.logic.tableForSegmentation(node) if node else None
        self.ui.resultsTableView.setMRMLTableNode(table)
        if table is not None:  # the structure key column is for scripts; the organ name says the same
            self.ui.resultsTableView.setColumnHidden(1, True)
        passages = self.logic.passagesForSegmentation(node) if node else None
        self.ui.passagesTextBrowser.setPlainText(passages.GetText() if passages else "")
        self.ui.showChartButton.enabled = table is not None
        self._updateDisplay()

    def _updateDisplay(self, *args) -> None:
        node = self.ui.outputSegmentationSelector.currentNode()
        if node is None:
            return
        from MedSORALib import mrml

        mrml.apply_relevance_display(node, self.ui.thresholdSliderWidget.value, self.ui.opacityCheckBox.checked)

    def _showChart(self) -> None:
        node = self.ui.outputSegmentationSelector.currentNode()
        chart = self.logic.chartForSegmentation(node) if node else None
        if chart is None:
            return
        layoutManager = slicer.app.layoutManager()
        layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
        slicer.modules.plots.logic().ShowChartInLayout(chart)


#
# MedSORALogic
#

class MedSORALogic(ScriptedLoadableModuleLogic):
    """Scriptable processing: takes nodes and parameters, returns nodes; never opens a dialog.

    Example (Python console or ``Slicer --python-script``)::

        logic = slicer.util.getModuleLogic("MedSORA")
        outputs = logic.process(ctNode, organsNode, "pain in the right upper abdomen after meals")
        outputs[0].segmentation_node, outputs[0].table_node
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return MedSORAParameterNode(super().getParameterNode())

    @staticmethod
    def scoringSettings(parameterNode=None, device="auto", modelFolder="", textEncoder="", useImageModel=True):
        from MedSORALib import mrml

        if parameterNode is not None:
            device, modelFolder = parameterNode.device, parameterNode.modelFolder
            textEncoder, useImageModel = parameterNode.textEncoder, parameterNode.useImageModel
        return mrml.ScoringSettings(device=device or "auto", model_dir=modelFolder or "",
                                    text_encoder=textEncoder or "", use_image_model=bool(useImageModel))

    def process(self, inputVolume, organSegmentation, symptoms, *, device="auto", modelFolder="", textEncoder="",
                useImageModel=True, threshold=0.0, opacityByRelevance=True, show3D=False, scorer=None):
        """Score one or more symptoms (blocking) and create their output nodes.

        Args:
            inputVolume: CT volume node (HU).
            organSegmentation: segmentation node with organ segments.
            symptoms: one symptom text or a list of them.
            scorer: replacement for ``MedSORALib.scoring.score_volume`` (tests).

        Returns:
            list of ``MedSORALib.mrml.SymptomOutputs`` (segmentation, table, chart, passages nodes).
        """
        from MedSORALib import mrml

        settings = self.scoringSettings(device=device, modelFolder=modelFolder, textEncoder=textEncoder,
                                        useImageModel=useImageModel)
        return mrml.run_symptom_scoring(inputVolume, organSegmentation, symptoms, settings=settings, scorer=scorer,
                                        threshold=threshold, opacity_by_relevance=opacityByRelevance,
                                        show_3d=show3D)

    def createOutputs(self, results, masks, inputVolume, threshold=0.0, opacityByRelevance=True, show3D=False):
        """Output nodes for results computed elsewhere (the panel's background job)."""
        from MedSORALib import mrml

        return [mrml.add_symptom_outputs(result, masks, inputVolume, threshold=threshold,
                                         opacity_by_relevance=opacityByRelevance, show_3d=show3D)
                for result in results]

    @staticmethod
    def _siblingOfType(segmentationNode, className):
        """Output node of a class in the same subject hierarchy folder as an output segmentation."""
        sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
        item = sh.GetItemByDataNode(segmentationNode)
        if not item:
            return None
        children = vtk.vtkIdList()
        sh.GetItemChildren(sh.GetItemParent(item), children)
        for index in range(children.GetNumberOfIds()):
            node = sh.GetItemDataNode(children.GetId(index))
            if node is not None and node.IsA(className):
                return node
        return None

    def tableForSegmentation(self, segmentationNode):
        return self._siblingOfType(segmentationNode, "vtkMRMLTableNode")

    def chartForSegmentation(self, segmentationNode):
        return self._siblingOfType(segmentationNode, "vtkMRMLPlotChartNode")

    def passagesForSegmentation(self, segmentationNode):
        return self._siblingOfType(segmentationNode, "vtkMRMLTextNode")

    @staticmethod
    def totalSegmentatorAvailable() -> bool:
        return hasattr(slicer.modules, "totalsegmentator")

    def segmentOrgansWithTotalSegmentator(self, inputVolume, fast=True, cpu=False):
        """Organ segmentation from the TotalSegmentator extension ("total" task, our 13 structures when supported)."""
        if inputVolume is None:
            raise ValueError(_("Select the input CT first."))
        if not self.totalSegmentatorAvailable():
            raise RuntimeError(_("The TotalSegmentator extension is not installed."))
        from MedSORALib import organs

        tsLogic = slicer.util.getModuleLogic("TotalSegmentator")
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", inputVolume.GetName() + " organs")
        try:
            tsLogic.process(inputVolume, node, fast, cpu, "total", subset=list(organs.STRUCTURES))
        except TypeError:  # versions without the subset argument
            tsLogic.process(inputVolume, node, fast, cpu, "total")
        return node


#
# MedSORATest
#

class MedSORATest(ScriptedLoadableModuleTest):
    """Runs the logic with the real scoring on small data (a phantom, and the example CT when available)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    @staticmethod
    def installDependencies():
        """Install what is missing without asking (a test run has no one to answer; pip_ensure skips then)."""
        try:
            import torch  # noqa: F401
        except ImportError:
            import PyTorchUtils

            PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=False, torchVersionRequirement=">=2.2")
        missing = missingRequirements()
        if missing:
            slicer.util.pip_install(missing)

    def runTest(self):
        self.installDependencies()
        self.setUp()
        self.test_MedSORA_phantom()
        self.setUp()
        self.test_MedSORA_example_ct()
        self.setUp()
        self.test_MedSORA_errors()

    def _checkOutputs(self, outputs, ctNode, masks):
        import numpy as np
        from MedSORALib import mrml

        self.assertEqual(len(outputs), 1)
        out = outputs[0]
        segmentation = out.segmentation_node.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), len(masks))
        self.assertTrue(out.segmentation_node.GetName().startswith(mrml.OUTPUT_PREFIX))
        relevances = mrml.segment_relevances(out.segmentation_node)
        self.assertEqual(sorted(relevances), sorted(masks))
        for key, value in relevances.items():
            self.assertGreaterEqual(value, 0.0)
            self.assertLessEqual(value, 1.0)
            color = segmentation.GetSegment(key).GetColor()
            np.testing.assert_allclose(color, mrml.relevance_color(value), atol=1e-6)
        self.assertEqual(out.table_node.GetNumberOfRows(), len(out.result.organs))
        table = out.table_node.GetTable()
        column = [table.GetValueByName(r, "Relevance").ToDouble() for r in range(table.GetNumberOfRows())]
        self.assertEqual(column, sorted(column, reverse=True))
        back = mrml.organ_masks_from_segmentation(out.segmentation_node, ctNode)
        for key in masks:
            np.testing.assert_array_equal(back[key], masks[key])

    def test_MedSORA_phantom(self):
        """Phantom CT and organs built in the scene; the logic runs the real scoring."""
        from MedSORALib import mrml, organs
        from MedSORALib.image.phantom import make_phantom
        from MedSORALib.volume_io import masks_from_labelmap

        self.delayDisplay("MedSORA on a phantom")
        volume, labels = make_phantom(seed=3, shape=(64, 56, 36), spacing=(6.0, 6.0, 6.0), variation=0.0)
        masks = {k: m for k, m in masks_from_labelmap(labels, "totalsegmentator").items() if m.any()}
        ctNode = mrml.volume_node_from_volume(volume, "phantom CT")
        organsNode = mrml.segmentation_node_from_masks(masks, ctNode, "phantom organs")
        outputs = MedSORALogic().process(ctNode, organsNode, "Yellow skin and dark urine", device="cpu")
        self._checkOutputs(outputs, ctNode, masks)
        top = outputs[0].result.organs[0].key
        self.assertIn(organs.structure_class(top), organs.FULL_CLASSES)
        self.delayDisplay("Phantom passed")

    def test_MedSORA_example_ct(self):
        """The example CT and its TotalSegmentator labels, when the test data folder is found."""
        from MedSORALib import mrml
        from MedSORALib.volume_io import read_organ_masks, read_volume

        folders = [os.environ.get("MEDSORA_TEST_DATA", ""),
                   os.path.join(os.path.dirname(_MODULE_DIR), "Testing", "Data")]
        folder = next((f for f in folders if f and os.path.exists(os.path.join(f, "example_ct_sm.nii.gz"))), None)
        if folder is None:
            self.delayDisplay("Example CT not found (set MEDSORA_TEST_DATA); phantom test only")
            return
        volume = read_volume(os.path.join(folder, "example_ct_sm.nii.gz"))
        ctNode = mrml.volume_node_from_volume(volume, "example_ct_sm")
        organsNode = mrml.organ_segmentation_from_labelmap_file(
            os.path.join(folder, "example_ct_sm_seg.nii.gz"), ctNode, "totalsegmentator", "organs")
        masks = read_organ_masks(os.path.join(folder, "example_ct_sm_seg.nii.gz"), volume, "totalsegmentator")
        masks = {k: m for k, m in masks.items() if m.any()}
        outputs = MedSORALogic().process(ctNode, organsNode, "Pain in the right upper abdomen after fatty meals",
                                         device="cpu", show3D=True)
        self._checkOutputs(outputs, ctNode, masks)
        self.delayDisplay("Example CT passed")

    def test_MedSORA_errors(self):
        from MedSORALib import mrml
        from MedSORALib.errors import SegmentationError, VolumeError

        with self.assertRaises(VolumeError):
            MedSORALogic().process(None, None, "abdominal pain")
        ctNode = mrml.volume_node_from_volume(
            __import__("MedSORALib.image.phantom", fromlist=["make_phantom"]).make_phantom(
                seed=1, shape=(32, 28, 18), spacing=(12.0, 12.0, 12.0))[0], "small CT")
        empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
        with self.assertRaises(SegmentationError):
            MedSORALogic().process(ctNode, empty, "abdominal pain")
        self.delayDisplay("Errors passed")
