"""The ``medsora serve`` page: trame-slicer views of the CT and its organs coloured by relevance.

The scene lives in a trame-slicer :class:`~trame_slicer.core.SlicerApp` (Slicer's
MRML from ``slicer-core``, no Qt). The CT and the result segmentations are made
by the Slicer module's own MRML functions (:mod:`MedSORALib.scene.result_nodes`), so the colour
map, segment names, terminology and tags are those of the module. Views render
offscreen (EGL, or OSMesa when ``VTK_DEFAULT_OPENGL_WINDOW=vtkOSOpenGLRenderWindow``)
and reach the page as images over trame's websocket.

Scoring and loading run in a worker thread; the page shows their progress and
stays live, and a job can be cancelled: the page is free at once, and the
thread stops at its next step (:mod:`MedSORALib.web.jobs`: every MiB of the
input checksums, between reading, measuring and scoring steps) without
touching the scene; a step that is one library call finishes first, and its
result is dropped. MRML is only touched on the server's event-loop thread.

Who may reach the server is decided by :class:`~MedSORALib.web.access.AccessGuard`
(access token, Host and Origin checks, one browser window at a time). The page
may load a CT only from under the server's data root (or a segmentation this
server wrote), and every refused path gets the same message, so the page
cannot probe the server's disk. Downloads are served only for the files this
server wrote.
"""
from __future__ import annotations

import asyncio
import os
import sys
from contextlib import ExitStack
from pathlib import Path

# Offscreen rendering without a display: EGL (Mesa's software rasteriser when there is no GPU).
if not os.environ.get("DISPLAY"):
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import slicer  # noqa: E402
from trame.app import TrameApp  # noqa: E402
from trame_slicer.core import LayoutManager, SlicerApp  # noqa: E402
from trame_slicer.rca_view import register_rca_factories  # noqa: E402
from trame_slicer.views import Layout, LayoutDirection, ViewLayoutDefinition  # noqa: E402

# The Slicer module's MRML code (one import line, so that the page and the Slicer module share it).
from ..scene.result_nodes import add_symptom_outputs, segmentation_node_from_masks, volume_node_from_volume  # noqa: E402
from ..errors import InputFileError, MedSORAError  # noqa: E402
from .access import AccessGuard, loadable_path  # noqa: E402
from .jobs import CancelToken, JobCancelled, run_in_thread  # noqa: E402
from .layout import LABEL_SCHEMES, ORIENTATIONS  # noqa: E402
from .session import WebSession, result_passages, result_rows  # noqa: E402
from . import differential_view  # noqa: E402

#: URL folder under which the result files are served.
FILES_URL = "medsora-files"
LAYOUT_ID = "MedSORA"
#: Camera turn of the 3D view from the anterior view (degrees): organs seen from the front, above and the left.
CAMERA_AZIMUTH, CAMERA_ELEVATION = 25.0, 30.0


def shown_path(path) -> str:
    """A path as the page shows it: relative to the server's working folder when inside it."""
    if not path:
        return ""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (OSError, ValueError):
        return str(path)


def _log(message: str) -> None:
    print(f"medsora: {message}", file=sys.stderr, flush=True)


class MedSORAWebApp(TrameApp):
    """The page and its scene.

    Args:
        session: the case and the models (:class:`WebSession`), already holding a case.
        server: a trame server (default: a new one).
        guard: the access rules of the server (default: a new token, 127.0.0.1).
        data_root: the folder under which the page may load CTs (None: loading by path is off).
    """

    def __init__(self, session: WebSession, server=None, *, guard: AccessGuard | None = None,
                 data_root: str | os.PathLike | None = None):
        super().__init__(server=server, client_type="vue3")
        self.session = session
        self.guard = guard or AccessGuard("127.0.0.1")
        self.guard.on_new_session = self._forget_typing
        self.data_root = os.path.realpath(data_root) if data_root else None
        #: URL path below FILES_URL -> file this server wrote (the only files served for download).
        self._downloads: dict[str, Path] = {}
        #: Real paths of the files this server wrote (the page may load them back).
        self._written: set[str] = set()
        self._job_number = 0
        self._cancel = CancelToken()
        self.scored: list = []
        self._outputs: list = []
        self._organs_node = None
        self._volume_node = None

        self.slicer_app = SlicerApp()
        register_rca_factories(self.slicer_app.view_manager, self.server)
        self.layout_manager = LayoutManager(self.slicer_app.scene, self.slicer_app.view_manager, self.server)
        self.layout_manager.register_layout(LAYOUT_ID, Layout(LayoutDirection.Horizontal, [
            ViewLayoutDefinition.axial_view(), ViewLayoutDefinition.threed_view()]))
        self.layout_manager.set_layout(LAYOUT_ID)
        for view in self.slicer_app.view_manager.get_threed_views():
            # Depth peeling (translucent organs) renders nothing on Mesa's multisampled offscreen window.
            view.render_window().SetMultiSamples(0)
        self.server.controller.on_server_bind.add(self._bind)

        state = self.state
        state.update({
            "symptom_text": "", "patient_age": "", "patient_sex": "", "busy": False, "progress": 0, "progress_message": "", "error_message": "",
            "ct_path": "", "seg_path": "", "label_scheme": "totalsegmentator", "case_label": "", "orientation": "Axial",
            "results": [], "selected": 0, "has_findings": False, "scored_count": 0,
            "can_load": self.data_root is not None, "data_root": shown_path(self.data_root),
        })
        state.change("orientation")(self._on_orientation)
        state.change("selected")(self._on_selected)
        self._build_ui()
        self.show_case()

    # ------------------------------------------------------------------ http
    def _bind(self, wslink_server) -> None:
        """Put the access rules in front of every request and add the download route (before the server starts)."""
        app = wslink_server.app
        www = (wslink_server.config.get("static") or {}).get("/")
        if www and (Path(www) / "index.html").is_file():
            self.guard.index_file = Path(www) / "index.html"
        app.middlewares.append(self.guard.middleware())
        app.router.add_get(f"/{FILES_URL}/{{name:.+}}", self._download)

    async def _download(self, request):
        from aiohttp import web

        path = self._downloads.get(request.match_info["name"])
        if path is None or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Disposition": f'attachment; filename="{path.name}"',
                                               "Cache-Control": "no-store"})

    def _forget_typing(self) -> None:
        """Another browser session took the page: it does not see what the previous one typed."""
        with self.state:
            self.state.symptom_text = ""
            self.state.patient_age = ""
            self.state.patient_sex = ""
            self.state.error_message = ""

    def allowed_path(self, text) -> Path:
        """The real path of a file the page may load (:func:`~MedSORALib.web.access.loadable_path`)."""
        return loadable_path(text, self.data_root, self._written)

    def _read_allowed(self, ct_path, seg_path, label_scheme, cancel=None):
        ct = self.allowed_path(ct_path)
        seg = self.allowed_path(seg_path) if str(seg_path or "").strip() else None
        case, _ = self.session.read_case(ct, seg, label_scheme, log=_log, cancel=cancel)
        return case, Path(str(ct_path).strip()).name or ct.name

    # ------------------------------------------------------------------ scene
    def _render_blocked(self) -> ExitStack:
        stack = ExitStack()
        for view in self.slicer_app.view_manager.get_views():
            stack.enter_context(view.render_blocked())
        return stack

    def _clear_results(self) -> None:
        scene = self.slicer_app.scene
        for outputs in self._outputs:
            for node in (outputs.segmentation_node, outputs.table_node, outputs.chart_node, outputs.passages_node):
                if node is not None and node.GetScene() is scene:
                    if node is outputs.chart_node:
                        for index in range(node.GetNumberOfPlotSeriesNodes()):
                            series = node.GetNthPlotSeriesNode(index)
                            if series is not None:
                                scene.RemoveNode(series)
                    scene.RemoveNode(node)
            hierarchy = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
            if hierarchy is not None and outputs.folder_item:
                hierarchy.RemoveItem(outputs.folder_item, True, True)
        self._outputs = []

    def show_case(self) -> None:
        """Put the session's CT and organ outlines in the scene (replacing any earlier case)."""
        case = self.session.case
        scene = self.slicer_app.scene
        with self._render_blocked():
            self._clear_results()
            for node in (self._organs_node, self._volume_node):
                if node is not None:
                    scene.RemoveNode(node)
            self._volume_node = volume_node_from_volume(case.volume, self.session.case_name or "CT", scene=scene)
            # The organs before scoring: outlines in the slice view only, in the catalogue colours.
            self._organs_node = segmentation_node_from_masks(case.masks, self._volume_node, "Organs", scene=scene)
            display = self._organs_node.GetDisplayNode()
            display.SetVisibility3D(False)
            display.SetOpacity2DFill(0.0)
            self.slicer_app.display_manager.show_volume_in_slice_background(self._volume_node)
            self.slicer_app.display_manager.reset_views()
        self._schedule_render()
        with self.state:
            self.state.case_label = (f"{self.session.case_name}: {len(case.masks)} organs, "
                                     f"{' x '.join(str(n) for n in case.volume.shape)} voxels")
            self.state.ct_path = shown_path(case.inputs["volume"]["path"])
            self.state.seg_path = shown_path((case.inputs.get("segmentation") or {}).get("path"))
            self.state.label_scheme = (case.inputs.get("segmentation") or {}).get("label_scheme") or "totalsegmentator"
            self.state.results = []
            self.state.selected = 0

    def show_results(self, scored: list) -> None:
        """Add each symptom's outputs to the scene and show the selected one."""
        masks = self.session.case.masks
        with self._render_blocked():
            self._clear_results()
            for item in scored:
                outputs = add_symptom_outputs(item.result, masks, self._volume_node, show_3d=True,
                                              scene=self.slicer_app.scene)
                self._outputs.append(outputs)
            if self._organs_node is not None:
                self._organs_node.GetDisplayNode().SetVisibility(False)
            self._select_outputs(0)
            for view in self.slicer_app.view_manager.get_threed_views():
                view.reset_view()
                camera_node = view.get_camera_node()
                if camera_node is not None:
                    camera = camera_node.GetCamera()
                    camera.Azimuth(CAMERA_AZIMUTH)
                    camera.Elevation(CAMERA_ELEVATION)
                    camera.OrthogonalizeViewUp()
                    camera_node.ResetClippingRange()
        self._schedule_render()
        self.scored = scored
        base = self.session.output_dir
        results = []
        for item in scored:
            for path in item.files.values():
                self._downloads[path.relative_to(base).as_posix()] = path
                self._written.add(os.path.realpath(path))
            result = item.result
            rows = result_rows(result)
            results.append({
                "symptom": result.symptom, "in_domain": bool(result.in_domain),
                "ood_score": round(float(result.ood_score), 3), "rows": rows,
                "passages": result_passages(result),
                "seg_url": f"{FILES_URL}/{item.files['segmentation'].relative_to(base).as_posix()}",
                "json_url": f"{FILES_URL}/{item.files['json'].relative_to(base).as_posix()}",
                "seg_name": item.files["segmentation"].name, "json_name": item.files["json"].name,
                **differential_view.result_fields(result, self.session.case),
            })
        with self.state:
            self.state.results = results
            self.state.selected = 0
            self.state.has_findings = any(row["findings"] for r in results for row in r["rows"])
            self.state.scored_count = self.state.scored_count + 1

    def _select_outputs(self, index: int) -> None:
        for n, outputs in enumerate(self._outputs):
            outputs.segmentation_node.GetDisplayNode().SetVisibility(n == index)

    def _schedule_render(self) -> None:
        for view in self.slicer_app.view_manager.get_views():
            view.schedule_render()

    def _on_selected(self, selected, **_):
        if self._outputs:
            index = min(max(int(selected or 0), 0), len(self._outputs) - 1)
            self._select_outputs(index)
            self._schedule_render()

    def _on_orientation(self, orientation, **_):
        if orientation in ORIENTATIONS:
            for view in self.slicer_app.view_manager.get_slice_views():
                view.set_orientation(orientation)
                view.fit_view_to_content()
            self._schedule_render()

    # ------------------------------------------------------------------ jobs
    def _progress_callback(self):
        loop = asyncio.get_running_loop()

        def report(fraction, message):
            def update():
                with self.state:
                    self.state.progress = int(round(100 * min(max(float(fraction), 0.0), 1.0)))
                    self.state.progress_message = str(message)
            loop.call_soon_threadsafe(update)
        return report

    async def _job(self, label: str, function, *args):
        """Run ``function(*args, cancel)`` in a thread; its result, or None on error or when cancelled meanwhile.

        ``cancel`` is the job's :class:`~MedSORALib.web.jobs.CancelToken`, which :meth:`cancel` sets.
        """
        self._job_number += 1
        number = self._job_number
        token = self._cancel = CancelToken()
        with self.state:
            self.state.busy = True
            self.state.error_message = ""
            self.state.progress = 0
            self.state.progress_message = label
        try:
            value = await run_in_thread(function, *args, token)
        except JobCancelled:
            _log(f"{label.lower()} stopped: cancelled")
            return None
        except MedSORAError as error:
            if number == self._job_number:
                with self.state:
                    self.state.error_message = str(error)
                    self.state.progress_message = ""
            return None
        except Exception as error:  # shown on the page; the server keeps running
            _log(f"{label} failed: {type(error).__name__}: {error}")
            if number == self._job_number:
                with self.state:
                    self.state.error_message = f"{label} failed: {type(error).__name__}: {error}"
                    self.state.progress_message = ""
            return None
        finally:
            if number == self._job_number:
                with self.state:
                    self.state.busy = False
        if number != self._job_number:
            _log(f"{label.lower()} finished after it was cancelled; its result is dropped")
            return None
        return value

    def cancel(self) -> None:
        """Stop the running job: the page is free at once; the thread stops at its next step, and a result
        that still comes (a step that is one library call) is dropped."""
        if not self.state.busy:
            return
        self._cancel.cancel()
        self._job_number += 1
        with self.state:
            self.state.busy = False
            self.state.progress = 0
            self.state.progress_message = "Cancelled"

    async def score(self, text: str, age=None, sex=None) -> None:
        """Score the symptoms of the box (one per non-empty line) for the patient's age and sex (empty: unknown,
        the DICOM header's when the CT has one) and show the results."""
        from ..patient import Patient

        symptoms = [line.strip() for line in str(text or "").splitlines() if line.strip()]
        if not symptoms:
            with self.state:
                self.state.error_message = "Enter a symptom (one per line)."
            return
        try:
            patient = Patient.parse(age, sex, "page")
        except MedSORAError as error:
            with self.state:
                self.state.error_message = str(error)
            return
        scored = await self._job("Scoring", self.session.score, symptoms, self._progress_callback(), patient)
        if scored:
            self.show_results(scored)
            with self.state:
                self.state.progress_message = f"Scored {len(scored)} symptom(s)"

    async def load(self, ct_path: str, seg_path: str, label_scheme: str) -> None:
        """Load a CT and its segmentation from paths on the server's disk (under the data root)."""
        scheme = label_scheme if label_scheme in LABEL_SCHEMES else None
        loaded = await self._job("Loading", self._read_allowed, ct_path, seg_path or None, scheme)
        if loaded is not None:
            self.session.use_case(*loaded)
            self.show_case()
            header = self.session.header_patient()
            with self.state:
                self.state.progress_message = f"Loaded {self.session.case_name}"
                # The new CT's header, else unknown: a previous patient's age and sex do not carry over.
                self.state.patient_age = "" if header.age is None else f"{header.age:g}"
                self.state.patient_sex = header.sex or ""

    def on_score(self):
        if not self.state.busy:
            asyncio.ensure_future(self.score(self.state.symptom_text, self.state.patient_age, self.state.patient_sex))

    def on_load(self):
        if not self.state.busy:
            asyncio.ensure_future(self.load(self.state.ct_path, self.state.seg_path, self.state.label_scheme))

    def on_cancel(self):
        self.cancel()

    def _build_ui(self) -> None:
        from .layout import build_ui

        build_ui(self)

def serve(session: WebSession, *, host: str = "127.0.0.1", port: int = 8080, lifetime: float | None = None,
          scored: list | None = None, data_root=None, guard: AccessGuard | None = None) -> int:
    """Start the page on ``host:port`` and block until the server stops (after ``lifetime`` seconds if given).

    The URL printed (``serving http://HOST:PORT/?token=...``) carries the access token.
    """
    guard = guard or AccessGuard(host)
    app = MedSORAWebApp(session, guard=guard, data_root=data_root)
    if scored:
        app.show_results(scored)
        with app.state:
            app.state.symptom_text = "\n".join(item.result.symptom for item in scored)

    async def announce(**_):
        guard.port = app.server.port
        _log(f"serving {guard.url()} (pid {os.getpid()})")
        if lifetime is not None:
            await asyncio.sleep(lifetime)
            _log(f"lifetime of {lifetime:g} s reached; stopping")
            await app.server.stop()

    app.server.controller.on_server_ready.add_task(announce)
    # The server reads its own command-line options from sys.argv; medsora's are not for it.
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        app.server.start(host=host, port=port, open_browser=False, show_connection_info=False, timeout=0)
    except OSError as error:  # the port was taken between the check and the start
        raise InputFileError(f"--host {host} --port {port}: cannot listen there "
                             f"({error.strerror or error})") from None
    finally:
        sys.argv = argv
    return 0
