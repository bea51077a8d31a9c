"""MedSORA: which abdominal organs does a symptom point to, on this CT?

The 3D Slicer module: a panel (inputs, symptom, outputs, display, advanced),
``MedSORALogic`` (scriptable, no dialogs) and ``MedSORATest``.

The panel scores in a child process, the scoring worker (``PythonSlicer -m
MedSORALib worker``, :mod:`MedSORALib.worker`), driven through ``qt.QProcess``:
it is started on the first Apply and kept, so the models stay loaded; progress
comes back as JSON lines; Cancel kills it and all it started; results are
imported on the main thread from the files it wrote. Scene reading and writing are in
:mod:`MedSORALib.scene`, the worker and its protocol in :mod:`MedSORALib.worker`;
scoring is a :class:`MedSORALib.session.ScoringSession`'s, as for the ``medsora``
command line and ``Scripts/score.py``.

Supported Slicer versions: 5.10 and later (:data:`MINIMUM_SLICER_VERSION`).
"""
from __future__ import annotations

import logging
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Annotated

import qt
import slicer
import vtk
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

try:  # Slicer >= 5.4
    from slicer.i18n import tr as _
    from slicer.i18n import translate
except ImportError:  # no translation
    def _(text):
        return text

    def translate(context, text):
        return text

from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

# The MedSORALib package is installed next to this file by the extension's CMake
# (and sits one folder up in a source checkout).
_MODULE_DIR = os.path.dirname(os.path.abspath(__file__))
for _candidate in (_MODULE_DIR, os.path.dirname(_MODULE_DIR)):
    if os.path.isdir(os.path.join(_candidate, "MedSORALib")) and _candidate not in sys.path:
        sys.path.insert(0, _candidate)
        break

#: Oldest Slicer this module supports: the parameter node's connectGui returns a tag to disconnect (5.8 returns
#: nothing, so connections would pile up on each module entry) and every API used below exists.
MINIMUM_SLICER_VERSION = (5, 10)
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
#: How long Cancel waits for the killed worker, in milliseconds.
CANCEL_WAIT_MS = 1000
#: The torch versions MedSORA runs with (torch.amp.GradScaler(device), as pyproject.toml says); given to the
#: PyTorch extension's installer as its version requirement and checked against an installed torch.
TORCH_REQUIREMENT = ">=2.3"


def slicerVersion() -> tuple[int, int]:
    """(major, minor) of the running Slicer."""
    return (int(slicer.app.majorVersion), int(slicer.app.minorVersion))


def testingEnabled() -> bool:
    """True when Slicer runs its tests (``--testing``): nothing may be installed or asked then."""
    app = getattr(slicer, "app", None)
    return bool(app is not None and app.testingEnabled())


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
            "aorta, inferior vena cava, portal vein and splenic vein) is to it, from the symptom text and the organs' "
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
    """The panel's state, saved with the scene; every field is bound to its widget in MedSORA.ui.

    inputVolume: the CT (HU). organSegmentation: organ segments in any common naming.
    symptomText: the symptom description; onePerLine: each non-empty line is a separate symptom.
    threshold: organs below this relevance are hidden. opacityByRelevance: more relevant organs are more opaque.
    show3D: build surfaces and show the result in 3D.
    device, modelFolder, textEncoder, useImageModel: the Advanced section (modelFolder empty: shipped weights).
    """

    inputVolume: slicer.vtkMRMLScalarVolumeNode
    organSegmentation: slicer.vtkMRMLSegmentationNode
    outputSegmentation: slicer.vtkMRMLSegmentationNode
    symptomText: str = ""
    onePerLine: bool = False
    threshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.0
    opacityByRelevance: bool = True
    show3D: bool = True
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    modelFolder: pathlib.Path = pathlib.Path()
    textEncoder: str = ""
    useImageModel: bool = False


def _folderText(path) -> str:
    """A path parameter as text, '' for an empty one (``pathlib.Path('')`` is ``'.'``)."""
    text = str(path or "")
    return "" if text in ("", ".") else text


#
# Dependencies
#

def requirementsPath() -> str:
    return os.path.join(_MODULE_DIR, "Resources", "requirements.txt")


def requirementLines() -> list[str]:
    with open(requirementsPath(), encoding="utf-8") as f:
        return [line.split("#", 1)[0].strip() for line in f if line.split("#", 1)[0].strip()]


def unmetRequirements() -> list[str]:
    """Requirement lines of Resources/requirements.txt that are missing or installed in a version outside their range.

    Versions are compared with ``packaging`` (pip's own), so ``transformers>=4.40`` with
    4.30 installed counts as unmet.
    """
    from importlib import metadata

    from packaging.requirements import Requirement

    unmet = []
    for line in requirementLines():
        requirement = Requirement(line)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            unmet.append(line)
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, prereleases=True):
            unmet.append(line)
    return unmet


def torchVersionProblem() -> str | None:
    """Why the installed torch does not meet :data:`TORCH_REQUIREMENT`, or None when it does.

    Read from the package metadata (``2.5.1+cu121`` counts as 2.5.1), not by importing torch.
    """
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    try:
        installed = metadata.version("torch")
    except metadata.PackageNotFoundError:
        return _("PyTorch is not installed.")
    if not SpecifierSet(TORCH_REQUIREMENT).contains(installed, prereleases=True):
        return _("MedSORA needs PyTorch {requirement}; PyTorch {installed} is installed.").format(
            requirement=TORCH_REQUIREMENT, installed=installed)
    return None


def dependenciesAvailable() -> bool:
    """torch importable in a version meeting :data:`TORCH_REQUIREMENT` and every requirement met (installs nothing)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return torchVersionProblem() is None and not unmetRequirements()


#: What ``pip_ensure`` raises when the user answers Cancel to its install question.
_DECLINED = "User declined package installation"


def ensureDependencies(askConfirmation: bool = True) -> bool:
    """Make torch (from the PyTorch extension) and the Python packages of requirements.txt available.

    Called on the first Apply, not at import. Returns True when everything is
    importable in the required versions; False when the user declined an
    install (quietly: no error), a restart is needed, or Slicer runs its tests
    (nothing is installed then). An installed torch older than
    :data:`TORCH_REQUIREMENT` raises an error that says how to upgrade it.
    """
    if testingEnabled():
        return dependenciesAvailable()
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
            if torchLogic.installTorch(askConfirmation=askConfirmation,
                                       torchVersionRequirement=TORCH_REQUIREMENT) is None:
                return False  # declined: the status line says that scoring was not started
    problem = torchVersionProblem()
    if problem is not None:
        raise RuntimeError(problem + " " + _(
            "Open the PyTorch Utils module, set the version requirement to {requirement}, install, and restart "
            "Slicer.").format(requirement=TORCH_REQUIREMENT))

    try:  # Slicer >= 5.12; "import slicer" does not import it
        import slicer.packaging as packaging
    except ImportError:
        packaging = None
    if packaging is not None and hasattr(packaging, "pip_ensure"):
        # asks, installs with progress, offers a restart, and skips installing in testing mode
        try:
            packaging.pip_ensure(packaging.load_requirements(requirementsPath()), requester="MedSORA")
        except RuntimeError as error:
            if str(error) == _DECLINED:
                return False
            raise
        return not unmetRequirements()

    unmet = unmetRequirements()
    if not unmet:
        return True
    if askConfirmation and not slicer.util.confirmOkCancelDisplay(
            _("MedSORA needs these Python packages:\n\n{packages}\n\nInstall them now? This takes a few minutes "
              "and needs an internet connection.").format(packages="\n".join(unmet)),
            windowTitle=_("MedSORA: install packages")):
        return False
    slicer.util.pip_install(unmet)
    return not unmetRequirements()


#
# The scoring worker in a QProcess
#

def _bytes(data) -> bytes:
    """A QByteArray (as PythonQt returns it) as bytes."""
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    raw = data.data() if hasattr(data, "data") else data
    return raw if isinstance(raw, bytes) else bytes(raw)


class ScoringWorkerProcess:
    """``PythonSlicer -m MedSORALib worker`` in a ``qt.QProcess``, its events delivered to a callback.

    The process starts on the first :meth:`submit` and is kept for the next
    ones (models stay loaded in it). Its stdout is parsed by
    :class:`MedSORALib.worker.WorkerProtocol`; its stderr goes to the log.
    If it dies with a request pending, the callback gets an ``error`` event.

    ``PythonSlicer`` is a launcher that runs the real interpreter as its child,
    so the process ``QProcess`` holds is not the worker. The worker is started
    as the leader of its own process group (POSIX,
    :func:`MedSORALib.process_tree.group_leader_command`), and :meth:`cancel` and
    :meth:`stop` end the launcher's whole tree
    (:func:`MedSORALib.process_tree.kill_tree`): nothing of the worker survives
    Cancel, closing the module or quitting Slicer.
    """

    #: How long :meth:`stop` lets an idle worker exit on its own, in milliseconds.
    STOP_WAIT_MS = 2000

    def __init__(self, onEvent, onLog=None):
        self.onEvent = onEvent
        self.onLog = onLog or (lambda text: logging.info(text))
        self.process = None
        self.protocol = None
        self.pid = None  # the launched process (the launcher inside Slicer)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.state() != qt.QProcess.NotRunning

    def start(self) -> None:
        if self.running:
            return
        from MedSORALib.process_tree import group_leader_command
        from MedSORALib.worker import WorkerProtocol, worker_command, worker_environment

        self.protocol = WorkerProtocol()
        process = qt.QProcess()
        environment = qt.QProcessEnvironment.systemEnvironment()
        for key, value in worker_environment().items():
            environment.insert(key, value)
        process.setProcessEnvironment(environment)
        process.connect("readyReadStandardOutput()", self._onStdout)
        process.connect("readyReadStandardError()", self._onStderr)
        process.connect("finished(int,QProcess::ExitStatus)", self._onFinished)
        self.process = process
        command = group_leader_command(worker_command())
        process.start(command[0], command[1:])
        if not process.waitForStarted(30000):
            self.process = None
            raise RuntimeError(_("The MedSORA scoring worker did not start ({command}).").format(
                command=" ".join(command)))
        self.pid = int(process.processId())

    def submit(self, fields) -> int:
        """Send a scoring request, starting the worker if needed; returns the request id."""
        self.start()
        requestId, line = self.protocol.request(fields)
        self.process.write(line)
        return requestId

    def _onStdout(self) -> None:
        for event in self.protocol.feed(_bytes(self.process.readAllStandardOutput())):
            self.onEvent(event)

    def _onStderr(self) -> None:
        text = _bytes(self.process.readAllStandardError()).decode("utf-8", "replace").rstrip()
        if text:
            self.onLog(text)

    def _onFinished(self, exitCode, exitStatus=None) -> None:
        crashed = exitStatus is not None and exitStatus == qt.QProcess.CrashExit
        events = self.protocol.exited(None if crashed else int(exitCode)) if self.protocol else []
        for event in events:
            self.onEvent(event)

    def _killTree(self) -> None:
        """Kill the launched process and everything below it, then let ``QProcess`` reap it."""
        from MedSORALib.process_tree import kill_tree

        if self.pid and self.running:  # once it has ended and been reaped, its pid may be another process's
            kill_tree(self.pid)
        self.process.kill()
        self.process.waitForFinished(CANCEL_WAIT_MS)

    def cancel(self) -> None:
        """Kill the worker and all it started, now (the next request starts a new one)."""
        if self.process is None:
            return
        if self.protocol is not None:
            self.protocol.cancel()
        self._killTree()
        self.process = None
        self.pid = None

    def stop(self) -> None:
        """Ask the worker to exit; if it has not within :attr:`STOP_WAIT_MS` (busy), kill its tree."""
        if self.process is None:
            return
        if self.running:
            self.protocol.cancel()
            self.process.write(self.protocol.shutdown())
            if not self.process.waitForFinished(self.STOP_WAIT_MS):
                self._killTree()
        self.process = None
        self.pid = None


#
# MedSORAWidget
#

class MedSORAWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel. Scoring runs in the worker process, so Slicer stays responsive and Cancel is immediate."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._worker = None
        self._run = None  # the request in flight: id, folder, CT node, start time
        self._dependenciesReady = False
        self._lastOutputs = []
        self._quitConnected = False

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

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.totalSegmentatorButton.connect("clicked(bool)", self.onTotalSegmentatorButton)
        self.ui.totalSegmentatorButton.visible = self.logic.totalSegmentatorAvailable()
        from MedSORALib.result_format import SYMPTOM_ATTRIBUTE

        # only MedSORA results (segmentations that carry the symptom attribute) in the result selector
        self.ui.outputSegmentationSelector.addAttribute("vtkMRMLSegmentationNode", SYMPTOM_ATTRIBUTE)
        self.ui.outputSegmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onOutputChanged)
        self.ui.thresholdSliderWidget.connect("valueChanged(double)", self._updateDisplay)
        self.ui.opacityCheckBox.connect("toggled(bool)", self._updateDisplay)
        self.ui.showChartButton.connect("clicked(bool)", self._showChart)
        self.ui.differentialTreeWidget.connect("currentItemChanged(QTreeWidgetItem*,QTreeWidgetItem*)",
                                               self._onDiagnosisChosen)
        self.ui.progressBar.visible = False
        self.ui.outOfDomainLabel.visible = False

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._connectApplicationQuit()
        self.initializeParameterNode()

    def cleanup(self) -> None:
        """Module closed (application exit or reload): end the worker's process tree, unbind the widgets."""
        self.stopWorker()
        self._disconnectApplicationQuit()
        self._disconnectParameterNode()
        self.removeObservers()

    def stopWorker(self) -> None:
        """Forget a run in flight and end the worker with everything it started (a busy one is killed at once).

        Called on closing the module and when the application is about to quit;
        touches no widget, so it is safe while the panel is being destroyed.
        """
        run, self._run = self._run, None
        worker, self._worker = self._worker, None
        if worker is not None:
            if run is not None:
                worker.cancel()
            else:
                worker.stop()
        if run is not None:
            shutil.rmtree(run["folder"], ignore_errors=True)

    def _connectApplicationQuit(self) -> None:
        """Quitting Slicer ends the worker even if the module's cleanup does not run first."""
        app = getattr(slicer, "app", None)
        if app is not None and not self._quitConnected:
            app.connect("aboutToQuit()", self.stopWorker)
            self._quitConnected = True

    def _disconnectApplicationQuit(self) -> None:
        app = getattr(slicer, "app", None)
        if app is not None and self._quitConnected:
            app.disconnect("aboutToQuit()", self.stopWorker)
            self._quitConnected = False

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        # unbind the widgets but keep the node: a run in flight still imports its results
        self._disconnectParameterNode()

    def onSceneStartClose(self, caller, event) -> None:
        self._cancelRun()
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
        """Bind the parameter node to the widgets (SlicerParameterName in MedSORA.ui); unbind the previous one."""
        self._disconnectParameterNode()
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _disconnectParameterNode(self) -> None:
        if self._parameterNode and self._parameterNodeGuiTag is not None:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    # --- symptom box -----------------------------------------------------------------------

    def _onExampleChosen(self, index: int) -> None:
        if index > 0:
            self._parameterNode.symptomText = self.ui.exampleComboBox.itemText(index)
        self.ui.exampleComboBox.setCurrentIndex(0)

    def _onHistoryChosen(self, index: int) -> None:
        if index > 0:
            self._parameterNode.symptomText = self.ui.historyComboBox.itemData(index)
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

    # --- state -----------------------------------------------------------------------------

    def _checkCanApply(self, caller=None, event=None) -> None:
        if self._run is not None:
            return
        p = self._parameterNode
        if slicerVersion() < MINIMUM_SLICER_VERSION:
            self.ui.applyButton.enabled = False
            self.ui.applyButton.toolTip = _("MedSORA needs Slicer {version} or later").format(
                version=".".join(str(v) for v in MINIMUM_SLICER_VERSION))
            return
        ready = bool(p and p.inputVolume and p.organSegmentation and p.symptomText.strip())
        self.ui.applyButton.enabled = ready
        self.ui.applyButton.toolTip = _("Score the organs for the symptom") if ready else _(
            "Select a CT, its organ segmentation and type a symptom")

    def _setRunning(self, running: bool) -> None:
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.toolTip = _("Stop scoring") if running else _("Score the organs for the symptom")
        self.ui.applyButton.enabled = True
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
        if self._run is not None:
            self._cancelRun()
            self._status(_("Cancelled; the scene is unchanged."))
            return
        with slicer.util.tryWithErrorDisplay(_("MedSORA could not start."), waitCursor=True):
            if not self._dependenciesReady:
                self._status(_("Checking Python packages..."))
                self._dependenciesReady = ensureDependencies(askConfirmation=True)
                if not self._dependenciesReady:
                    self._status(_("MedSORA needs its Python packages; scoring was not started."))
                    return
            from MedSORALib.session import split_symptoms

            p = self._parameterNode
            symptoms = split_symptoms(p.symptomText, p.onePerLine)
            folder = tempfile.mkdtemp(prefix="MedSORA-")
            try:
                fields = self.logic.writeWorkerRequest(p.inputVolume, p.organSegmentation, symptoms, folder,
                                                       self.logic.scoringSettings(p))
                if self._worker is None:
                    self._worker = ScoringWorkerProcess(self._onWorkerEvent, self._onWorkerLog)
                self._status(_("Starting the scoring worker...") if not self._worker.running else _("Scoring..."))
                requestId = self._worker.submit(fields)
            except Exception:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self._remember(p.symptomText.strip())
            self._run = {"id": requestId, "folder": folder, "volume": p.inputVolume,
                         "started": vtk.vtkTimerLog.GetUniversalTime()}
            self.ui.outOfDomainLabel.visible = False
            self.ui.progressBar.value = 0
            self._setRunning(True)

    def _cancelRun(self) -> None:
        """Kill the worker and forget the request: nothing is imported, the scene stays as it was."""
        run, self._run = self._run, None
        if run is None:
            return
        if self._worker is not None:
            self._worker.cancel()
        shutil.rmtree(run["folder"], ignore_errors=True)
        self._setRunning(False)

    def _onWorkerLog(self, text: str) -> None:
        logging.info("MedSORA worker: %s", text)

    def _onWorkerEvent(self, event: dict) -> None:
        run = self._run
        if run is None or event.get("id") != run["id"]:
            return
        kind = event.get("event")
        if kind == "progress":
            self.ui.progressBar.value = int(round(100 * float(event.get("fraction", 0.0))))
            self.ui.statusLabel.text = str(event.get("message", ""))
            return
        self._run = None
        self._setRunning(False)
        try:
            if kind == "error":
                message = str(event.get("message", ""))
                self._status(_("Failed: {error}").format(error=message))
                slicer.util.errorDisplay(message, windowTitle=_("MedSORA"))
                return
            p = self._parameterNode
            volumeNode = run["volume"]
            if p is None or volumeNode is None or volumeNode.GetScene() is None:
                self._status(_("The scene was closed; results discarded."))
                return
            with slicer.util.tryWithErrorDisplay(_("MedSORA could not import its results."), waitCursor=True):
                outputs = self.logic.importWorkerResult(event, volumeNode, threshold=p.threshold,
                                                        opacityByRelevance=p.opacityByRelevance, show3D=p.show3D)
                self._showOutputs(outputs, volumeNode)
                seconds = vtk.vtkTimerLog.GetUniversalTime() - run["started"]
                self._status(_("Done in {seconds:.1f} s.").format(seconds=seconds))
        finally:
            shutil.rmtree(run["folder"], ignore_errors=True)

    def onTotalSegmentatorButton(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("TotalSegmentator failed."), waitCursor=True):
            self._status(_("Segmenting organs with TotalSegmentator..."))
            node = self.logic.segmentOrgansWithTotalSegmentator(self._parameterNode.inputVolume)
            self._parameterNode.organSegmentation = node
            self._status(_("Organs segmented."))

    # --- outputs ---------------------------------------------------------------------------

    def _showOutputs(self, outputs, volumeNode) -> None:
        self._lastOutputs = outputs
        if not outputs:
            return
        last = outputs[-1]
        self._parameterNode.outputSegmentation = last.segmentation_node
        self._onOutputChanged(last.segmentation_node)
        if last.segmentation_node.GetDisplayNode():
            slicer.util.setSliceViewerLayers(background=volumeNode)

    def _onOutputChanged(self, node) -> None:
        from MedSORALib.result_format import IN_DOMAIN_ATTRIBUTE

        self.ui.outOfDomainLabel.visible = bool(node) and node.GetAttribute(IN_DOMAIN_ATTRIBUTE) == "false"
        table = self.logic.tableForSegmentation(node) if node else None
        self.ui.resultsTableView.setMRMLTableNode(table)
        if table is not None:  # the structure key column is for scripts; the organ name says the same
            self.ui.resultsTableView.setColumnHidden(1, True)
        passages = self.logic.passagesForSegmentation(node) if node else None
        self.ui.passagesTextBrowser.setPlainText(passages.GetText() if passages else "")
        self.ui.showChartButton.enabled = table is not None
        self._showDifferential(node)
        self._updateDisplay()

    def _showDifferential(self, node) -> None:
        """The top diagnoses of a result: each with its probability, "look for" signs as a checklist under it."""
        from MedSORALib.diagnoses import scope_text
        from MedSORALib.result_format import OUTSIDE_ATTRIBUTE, SCOPE_ATTRIBUTE

        tree = self.ui.differentialTreeWidget
        tree.clear()
        rows = self.logic.differentialRows(node) if node else []
        scope = node.GetAttribute(SCOPE_ATTRIBUTE) if node else None
        outside = node.GetAttribute(OUTSIDE_ATTRIBUTE) if node else None
        self.ui.differentialScopeLabel.text = scope_text(scope, outside) if scope else ""
        for row in rows:
            item = qt.QTreeWidgetItem([f"{row['rank']}. {row['diagnosis']} ({row['where']})", row["probability"]])
            item.setData(0, qt.Qt.UserRole, row["rank"] - 1)
            item.setToolTip(0, _("Read in the text: {read}\nSource: {source}").format(
                read=row["read"] or "-", source=row["source"]))
            for sign in row["look_for"]:
                child = qt.QTreeWidgetItem([sign])
                child.setFlags(child.flags() | qt.Qt.ItemIsUserCheckable)
                child.setCheckState(0, qt.Qt.Unchecked)
                child.setData(0, qt.Qt.UserRole, row["rank"] - 1)
                item.addChild(child)
            tree.addTopLevelItem(item)
            item.setExpanded(row["rank"] == 1)
        tree.resizeColumnToContents(1)

    def _onDiagnosisChosen(self, item, previous=None) -> None:
        """Centre the slice views on the chosen diagnosis's organ (its largest axial cross-section)."""
        node = self.ui.outputSegmentationSelector.currentNode()
        if item is None or node is None:
            return
        index = item.data(0, qt.Qt.UserRole)
        shown = self.logic.showDiagnosis(node, int(index)) if index is not None else None
        if shown is None:
            self._status(_("This diagnosis lies outside the organs of this CT; the views stay where they are."))
        else:
            self._status(_("Slice views centred on the {organ}.").format(organ=shown))

    def _updateDisplay(self, *args) -> None:
        node = self.ui.outputSegmentationSelector.currentNode()
        if node is None:
            return
        from MedSORALib.scene.result_nodes import apply_relevance_display

        apply_relevance_display(node, self.ui.thresholdSliderWidget.value, self.ui.opacityCheckBox.checked)

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
    def scoringSettings(parameterNode=None, device="auto", modelFolder="", textEncoder="", useImageModel=False):
        from MedSORALib.scoring import IMAGE_WEIGHT_ON
        from MedSORALib.session import ScoringSettings

        if parameterNode is not None:
            device, modelFolder = parameterNode.device, parameterNode.modelFolder
            textEncoder, useImageModel = parameterNode.textEncoder, parameterNode.useImageModel
        return ScoringSettings(device=device or "auto", model_dir=_folderText(modelFolder),
                               text_encoder=textEncoder or "", image_weight=IMAGE_WEIGHT_ON if useImageModel else 0.0)

    def process(self, inputVolume, organSegmentation, symptoms, *, device="auto", modelFolder="", textEncoder="",
                useImageModel=False, threshold=0.0, opacityByRelevance=True, show3D=False, scorer=None):
        """Score one or more symptoms in this process (blocking) and create their output nodes.

        Args:
            inputVolume: CT volume node (HU).
            organSegmentation: segmentation node with organ segments.
            symptoms: one symptom text or a list of them.
            scorer: a scorer ``(volume, masks, symptoms, progress=None) -> results`` used instead of
                the models (tests; see :mod:`MedSORALib.session`).

        Returns:
            list of ``MedSORALib.scene.result_nodes.SymptomOutputs`` (segmentation, table, chart, passages nodes).
        """
        from MedSORALib.scene.run import run_symptom_scoring

        settings = self.scoringSettings(device=device, modelFolder=modelFolder, textEncoder=textEncoder,
                                        useImageModel=useImageModel)
        return run_symptom_scoring(inputVolume, organSegmentation, symptoms, settings=settings, scorer=scorer,
                                   threshold=threshold, opacity_by_relevance=opacityByRelevance, show_3d=show3D)

    @staticmethod
    def writeWorkerRequest(inputVolume, organSegmentation, symptoms, folder, settings=None) -> dict:
        """Write the CT and its organs from the scene into ``folder`` and return the worker request's fields.

        The CT goes to ``ct.nii`` (uncompressed: fast to write on the main
        thread), the organs to ``organs.seg.nrrd`` on the CT grid; results will be
        written under ``folder/result``. Nothing in the scene changes.
        """
        from MedSORALib.scene.inputs import organ_masks_from_segmentation, volume_from_node
        from MedSORALib.worker import request_fields
        from MedSORALib.segmentation_io import write_seg_nrrd
        from MedSORALib.volume_io import write_volume

        volume = volume_from_node(inputVolume)
        masks = organ_masks_from_segmentation(organSegmentation, inputVolume)
        ctPath = write_volume(os.path.join(folder, "ct.nii"), volume)
        organsPath = write_seg_nrrd(os.path.join(folder, "organs.seg.nrrd"), masks, volume)
        return request_fields(ctPath, organsPath, symptoms, os.path.join(folder, "result"), settings)

    @staticmethod
    def importWorkerResult(event, inputVolume, threshold=0.0, opacityByRelevance=True, show3D=False):
        """Output nodes from the files a worker ``result`` event lists (main thread)."""
        from MedSORALib.scene.result_nodes import add_outputs_from_files

        return add_outputs_from_files(event["result"]["outputs"], inputVolume, threshold=threshold,
                                      opacity_by_relevance=opacityByRelevance, show_3d=show3D)

    def createOutputs(self, results, masks, inputVolume, threshold=0.0, opacityByRelevance=True, show3D=False):
        """Output nodes for results computed elsewhere."""
        from MedSORALib.scene.result_nodes import add_symptom_outputs

        return [add_symptom_outputs(result, masks, inputVolume, threshold=threshold,
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
    def differentialRows(segmentationNode) -> list:
        """The top five diagnoses a result segmentation carries (``MedSORALib.diagnoses.checklist_rows``)."""
        from MedSORALib.diagnoses import checklist_rows
        from MedSORALib.scene.diagnosis_view import differential_of, segment_keys

        return checklist_rows(differential_of(segmentationNode), list(segment_keys(segmentationNode)))

    @staticmethod
    def showDiagnosis(segmentationNode, index: int):
        """Centre the slice views on the main organ of the result's diagnosis number ``index`` (0 = best).

        Returns the organ's display name, or None when the CT holds none of the diagnosis's organs.
        """
        from MedSORALib.organs import ORGANS
        from MedSORALib.scene.diagnosis_view import differential_of, show_diagnosis_organ

        entries = differential_of(segmentationNode)
        if not 0 <= index < len(entries):
            return None
        shown = show_diagnosis_organ(segmentationNode, entries[index])
        return ORGANS[shown[0]].display_name if shown else None

    @staticmethod
    def totalSegmentatorAvailable() -> bool:
        return hasattr(slicer.modules, "totalsegmentator")

    @staticmethod
    def gpuAvailable() -> bool:
        """True when torch sees a CUDA GPU (False without torch)."""
        try:
            import torch
        except ImportError:
            return False
        return bool(torch.cuda.is_available())

    @staticmethod
    def totalSegmentatorOptions(process, fast: bool, cpu: bool) -> dict:
        """Keyword arguments for the TotalSegmentator logic's ``process``, in the form its signature takes.

        The speed setting changed across versions of the extension: ``fast`` (a
        bool; 2023 to early 2026) became ``quality`` ("normal", "fast" or
        "faster"). Whichever the installed ``process`` accepts is passed, so the
        fast mode is never dropped silently; the other options are passed only
        when accepted.
        """
        import inspect

        accepted = inspect.signature(process).parameters
        options = {}
        if "quality" in accepted:
            options["quality"] = "fast" if fast else "normal"
        elif "fast" in accepted:
            options["fast"] = bool(fast)
        else:
            raise RuntimeError(_("This version of the TotalSegmentator extension takes neither 'quality' nor "
                                 "'fast'; update it from the Extensions Manager."))
        from MedSORALib import organs

        wanted = {"cpu": bool(cpu), "task": "total", "subset": list(organs.STRUCTURES), "interactive": True}
        options.update({name: value for name, value in wanted.items() if name in accepted})
        return options

    def segmentOrgansWithTotalSegmentator(self, inputVolume, fast=None, cpu=False):
        """Organ segmentation from the TotalSegmentator extension ("total" task, our 13 structures).

        Its Python requirements are set up first (``setupPythonRequirements``); the
        segmentation runs in its own process with ``interactive=True``, so the
        application keeps processing events. ``fast=None`` picks the fast mode
        (3 mm, a few minutes) when the segmentation runs on the CPU (``cpu`` set or
        no CUDA GPU) and the normal mode (1.5 mm) on a GPU. Options are passed by
        keyword in the form the installed version takes
        (:meth:`totalSegmentatorOptions`); errors are not retried.
        """
        if inputVolume is None:
            raise ValueError(_("Select the input CT first."))
        if not self.totalSegmentatorAvailable():
            raise RuntimeError(_("The TotalSegmentator extension is not installed."))

        tsLogic = slicer.util.getModuleLogic("TotalSegmentator")
        tsLogic.setupPythonRequirements()
        if fast is None:
            fast = bool(cpu) or not self.gpuAvailable()
        options = self.totalSegmentatorOptions(tsLogic.process, fast, cpu)
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", inputVolume.GetName() + " organs")
        try:
            tsLogic.process(inputVolume=inputVolume, outputSegmentation=node, **options)
        except Exception:
            slicer.mrmlScene.RemoveNode(node)
            raise
        return node


#
# MedSORATest
#

class MedSORATest(ScriptedLoadableModuleTest):
    """Runs the logic on small data; installs nothing.

    CTest runs this file with ``slicer.testing.runUnitTest``, which loads every
    ``test_*`` method as its own test (``runTest`` is for *Reload and Test*).
    Each method decides for itself:

    - ``test_MedSORA_stand_in_scorer`` and ``test_MedSORA_errors`` need only
      Slicer: the logic and every output node with a stand-in scorer of known
      numbers, and the error paths. They run on a fresh (factory) Slicer.
    - ``test_MedSORA_phantom`` (the real models in this process) and
      ``test_MedSORA_example_ct_through_the_worker`` (the example CT through the
      worker process, as the panel scores) need MedSORA's Python packages; without
      them they are skipped with :data:`PACKAGES_MISSING`, as nothing may be
      installed while testing.
    """

    #: Why the model tests are skipped on a Slicer without MedSORA's packages.
    PACKAGES_MISSING = ("MedSORA's Python packages (torch from the PyTorch extension, Resources/requirements.txt) "
                        "are not installed and nothing is installed while testing: skipped; the logic was tested "
                        "with the stand-in scorer")

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        """Every test method, as *Reload and Test* runs it; a skipped one says why."""
        import unittest

        for name in ("test_MedSORA_stand_in_scorer", "test_MedSORA_phantom",
                     "test_MedSORA_example_ct_through_the_worker", "test_MedSORA_errors"):
            self.setUp()
            try:
                getattr(self, name)()
            except unittest.SkipTest as skipped:
                self.delayDisplay(f"{name}: {skipped}")

    def _requirePackages(self):
        if not dependenciesAvailable():
            self.skipTest(self.PACKAGES_MISSING)

    @staticmethod
    def standInScorer(volume, masks, symptoms, progress=None):
        """Known numbers without models: relevance = organ volume / largest organ volume, text prior half of it."""
        from MedSORALib import organs
        from MedSORALib.scoring import OrganScore, SymptomResult

        voxels = {key: int(masks[key].sum()) for key in organs.structures_present(masks)}
        largest = max(voxels.values())
        results = []
        for symptom in symptoms:
            scores = [OrganScore(key, organs.ORGANS[key].display_name, count / largest, count / largest / 2, 0.0,
                                 count, count * volume.voxel_volume_ml) for key, count in voxels.items()]
            scores.sort(key=lambda s: -s.relevance)
            results.append(SymptomResult(symptom, True, 1.0, None, scores))
            if progress:
                progress(len(results) / len(symptoms), "stand-in scoring")
        return results

    def _checkOutputs(self, outputs, ctNode, masks):
        import numpy as np
        from MedSORALib.colors import relevance_color
        from MedSORALib.scene.inputs import organ_masks_from_segmentation
        from MedSORALib.scene.result_nodes import OUTPUT_PREFIX, segment_relevances

        self.assertEqual(len(outputs), 1)
        out = outputs[0]
        segmentation = out.segmentation_node.GetSegmentation()
        self.assertEqual(segmentation.GetNumberOfSegments(), len(masks))
        self.assertTrue(out.segmentation_node.GetName().startswith(OUTPUT_PREFIX))
        relevances = segment_relevances(out.segmentation_node)
        self.assertEqual(sorted(relevances), sorted(masks))
        for key, value in relevances.items():
            self.assertGreaterEqual(value, 0.0)
            self.assertLessEqual(value, 1.0)
            color = segmentation.GetSegment(key).GetColor()
            np.testing.assert_allclose(color, relevance_color(value), atol=1e-6)
        self.assertEqual(out.table_node.GetNumberOfRows(), len(out.result.organs))
        table = out.table_node.GetTable()
        column = [table.GetValueByName(r, "Relevance").ToDouble() for r in range(table.GetNumberOfRows())]
        self.assertEqual(column, sorted(column, reverse=True))
        back = organ_masks_from_segmentation(out.segmentation_node, ctNode)
        for key in masks:
            np.testing.assert_array_equal(back[key], masks[key])

    def _phantomScene(self):
        from MedSORALib.image.phantom import make_phantom
        from MedSORALib.scene.result_nodes import segmentation_node_from_masks, volume_node_from_volume
        from MedSORALib.segmentation_io import masks_from_labelmap

        volume, labels = make_phantom(seed=3, shape=(64, 56, 36), spacing=(6.0, 6.0, 6.0), variation=0.0)
        masks = {k: m for k, m in masks_from_labelmap(labels, "totalsegmentator").items() if m.any()}
        ctNode = volume_node_from_volume(volume, "phantom CT")
        organsNode = segmentation_node_from_masks(masks, ctNode, "phantom organs")
        return ctNode, organsNode, masks

    def test_MedSORA_phantom(self):
        """Phantom CT and organs built in the scene; the logic runs the real scoring in this process."""
        self._requirePackages()
        from MedSORALib import organs

        self.delayDisplay("MedSORA on a phantom")
        ctNode, organsNode, masks = self._phantomScene()
        outputs = MedSORALogic().process(ctNode, organsNode, "Yellow skin and dark urine", device="cpu")
        self._checkOutputs(outputs, ctNode, masks)
        top = outputs[0].result.organs[0].key
        self.assertIn(organs.structure_class(top), organs.FULL_CLASSES)
        self.delayDisplay("Phantom passed")

    def test_MedSORA_stand_in_scorer(self):
        """The logic and every output node, with known numbers instead of the models."""
        self.delayDisplay("MedSORA on a phantom with a stand-in scorer")
        ctNode, organsNode, masks = self._phantomScene()
        outputs = MedSORALogic().process(ctNode, organsNode, "Yellow skin and dark urine", scorer=self.standInScorer)
        self._checkOutputs(outputs, ctNode, masks)
        largest = max(masks, key=lambda k: int(masks[k].sum()))
        self.assertEqual(outputs[0].result.organs[0].key, largest)
        self.delayDisplay("Stand-in scorer passed (the models were not run)")

    def test_MedSORA_example_ct_through_the_worker(self):
        """The example CT scored by the worker process from files written out of the scene, results imported back."""
        self._requirePackages()
        from MedSORALib.scene.result_nodes import organ_segmentation_from_labelmap_file, volume_node_from_volume
        from MedSORALib.segmentation_io import read_organ_masks
        from MedSORALib.session import ScoringSettings
        from MedSORALib.volume_io import read_volume
        from MedSORALib.worker import WorkerClient

        folders = [os.environ.get("MEDSORA_TEST_DATA", ""),
                   os.path.join(os.path.dirname(_MODULE_DIR), "Testing", "Data")]
        folder = next((f for f in folders if f and os.path.exists(os.path.join(f, "example_ct_sm.nii.gz"))), None)
        if folder is None:
            self.skipTest("the example CT was not found (set MEDSORA_TEST_DATA to the repository's Testing/Data)")
        volume = read_volume(os.path.join(folder, "example_ct_sm.nii.gz"))
        ctNode = volume_node_from_volume(volume, "example_ct_sm")
        organsNode = organ_segmentation_from_labelmap_file(
            os.path.join(folder, "example_ct_sm_seg.nii.gz"), ctNode, "totalsegmentator", "organs")
        masks = read_organ_masks(os.path.join(folder, "example_ct_sm_seg.nii.gz"), volume, "totalsegmentator")
        masks = {k: m for k, m in masks.items() if m.any()}
        work = tempfile.mkdtemp(prefix="MedSORATest-")
        logic = MedSORALogic()
        try:
            fields = logic.writeWorkerRequest(ctNode, organsNode, ["Pain in the right upper abdomen after fatty meals"],
                                              work, ScoringSettings(device="cpu"))
            nodesBefore = slicer.mrmlScene.GetNumberOfNodes()
            with WorkerClient() as worker:
                event = worker.run(fields)
            self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodesBefore)  # the worker never touches the scene
            outputs = logic.importWorkerResult(event, ctNode, show3D=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._checkOutputs(outputs, ctNode, masks)
        self.delayDisplay("Example CT passed")

    def test_MedSORA_errors(self):
        from MedSORALib.errors import SegmentationError, VolumeError
        from MedSORALib.image.phantom import make_phantom
        from MedSORALib.scene.result_nodes import volume_node_from_volume

        with self.assertRaises(VolumeError):
            MedSORALogic().process(None, None, "abdominal pain", scorer=self.standInScorer)
        ctNode = volume_node_from_volume(make_phantom(seed=1, shape=(32, 28, 18), spacing=(12.0, 12.0, 12.0))[0],
                                         "small CT")
        empty = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
        with self.assertRaises(SegmentationError):
            MedSORALogic().process(ctNode, empty, "abdominal pain", scorer=self.standInScorer)
        self.delayDisplay("Errors passed")
