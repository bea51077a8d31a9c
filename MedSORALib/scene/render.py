"""Pictures of a result drawn by Slicer's own views, offscreen, without the application.

PyPI ``slicer-core`` ships the MRML displayable managers that draw Slicer's
slice and 3D views. Here they render into offscreen VTK windows with software
OpenGL: EGL by default (``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``, set
unless the caller chose another window class; OSMesa's
``vtkOSOpenGLRenderWindow`` works too). The scene is built with
:mod:`MedSORALib.scene.result_nodes` exactly as the panel builds it, so the pictures
show the nodes a user would see: the CT with the relevance-coloured organs in an
axial slice view, and their surfaces in a 3D view, opacity following relevance.

:func:`render_result` returns both images (numpy RGB); :func:`write_rendered_preview`
writes a panel-sized composite (3D view, axial slice, organs ranked by
relevance) as ``medsora score --preview`` does when rendering is possible.
"""
from __future__ import annotations

import ctypes.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

#: Abdominal window of the CT in the slice view (HU).
CT_WINDOW, CT_LEVEL = 400.0, 40.0


def rendering_available() -> bool:
    """True when ``slicer-core``'s displayable managers and an offscreen OpenGL (EGL or OSMesa) library are here."""
    try:
        import slicer
    except ImportError:
        return False
    if not hasattr(slicer, "vtkMRMLSliceViewDisplayableManagerFactory"):
        return False
    window = os.environ.get("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    library = {"vtkEGLRenderWindow": "EGL", "vtkOSOpenGLRenderWindow": "OSMesa"}.get(window)
    return library is None or ctypes.util.find_library(library) is not None


@dataclass
class Renders:
    """Images of one result: ``axial`` and ``three_d`` as uint8 arrays ``(rows, columns, 3)``, top row first."""

    axial: np.ndarray
    three_d: np.ndarray
    axial_slice_ras: float


def _window(size: tuple[int, int]):
    import vtk

    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    interactor = vtk.vtkRenderWindowInteractor()
    interactor.SetRenderWindow(window)
    return window, renderer, interactor


def _manager_group(factory_class, names, application_logic, renderer):
    import slicer

    factory = factory_class.GetInstance()
    factory.SetMRMLApplicationLogic(application_logic)
    for name in names:
        if not factory.IsDisplayableManagerRegistered(name):
            factory.RegisterDisplayableManager(name)
    group = slicer.vtkMRMLDisplayableManagerGroup()
    group.Initialize(factory, renderer)
    return group


def _capture(window) -> np.ndarray:
    import vtk
    from vtk.util import numpy_support

    window.Render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.SetInputBufferTypeToRGB()
    grab.ReadFrontBufferOff()
    grab.Update()
    image = grab.GetOutput()
    columns, rows, _ = image.GetDimensions()
    pixels = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(rows, columns, 3)
    return np.ascontiguousarray(pixels[::-1])  # VTK's first row is the bottom one


def _grey_color_node(scene):
    import slicer

    node = scene.GetFirstNodeByName("MedSORA grey")
    if node is None:
        node = slicer.vtkMRMLColorTableNode()
        node.SetName("MedSORA grey")
        node.SetTypeToGrey()
        scene.AddNode(node)
    return node


def render_scene(ct_node, segmentation_node, slice_ras: float, size: tuple[int, int] = (560, 560)) -> Renders:
    """Render the CT with a segmentation in an axial slice view at ``slice_ras`` (mm, S) and the segments in 3D.

    The 3D camera looks at the segments from the front (anterior), head up.
    """
    import slicer
    import vtk

    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    scene = ct_node.GetScene()
    application = slicer.vtkMRMLApplicationLogic()
    application.SetMRMLScene(scene)
    slice_logics = vtk.vtkCollection()
    application.SetSliceLogics(slice_logics)

    display = ct_node.GetDisplayNode()
    display.SetAndObserveColorNodeID(_grey_color_node(scene).GetID())
    display.SetAutoWindowLevel(0)
    display.SetWindowLevel(CT_WINDOW, CT_LEVEL)

    # axial slice view: the slice logic blends the CT, the segmentation displayable manager draws the organs
    window, renderer, interactor = _window(size)
    renderer.GetActiveCamera().ParallelProjectionOn()
    group = _manager_group(slicer.vtkMRMLSliceViewDisplayableManagerFactory,
                           ("vtkMRMLSegmentationsDisplayableManager2D",), application, renderer)
    logic = slicer.vtkMRMLSliceLogic()
    logic.SetMRMLApplicationLogic(application)
    logic.SetMRMLScene(scene)
    slice_logics.AddItem(logic)
    slice_node = logic.AddSliceNode("Red")
    slice_node.SetOrientation("Axial")
    group.SetMRMLDisplayableNode(slice_node)
    logic.GetSliceCompositeNode().SetBackgroundVolumeID(ct_node.GetID())
    logic.ResizeSliceNode(*size)
    logic.FitSliceToBackground()
    logic.SetSliceOffset(float(slice_ras))
    mapper = vtk.vtkImageMapper()
    mapper.SetColorWindow(255)
    mapper.SetColorLevel(127.5)
    mapper.SetInputConnection(logic.GetImageDataConnection())
    actor = vtk.vtkActor2D()
    actor.SetMapper(mapper)
    actor.GetProperty().SetDisplayLocationToBackground()
    renderer.AddViewProp(actor)
    axial = _capture(window)

    # 3D view: closed surfaces of the segments
    window3, renderer3, interactor3 = _window(size)
    group3 = _manager_group(slicer.vtkMRMLThreeDViewDisplayableManagerFactory,
                            ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                             "vtkMRMLSegmentationsDisplayableManager3D"), application, renderer3)
    view = scene.AddNewNodeByClass("vtkMRMLViewNode", "MedSORA 3D")
    view.SetBoxVisible(False)
    view.SetAxisLabelsVisible(False)
    view.SetBackgroundColor(0.76, 0.76, 0.91)  # Slicer's default 3D background gradient
    view.SetBackgroundColor2(0.45, 0.47, 0.75)
    group3.SetMRMLDisplayableNode(view)
    segmentation_node.CreateClosedSurfaceRepresentation()
    bounds_list = [0.0] * 6
    segmentation_node.GetRASBounds(bounds_list)
    bounds = np.array(bounds_list)
    centre = (bounds[0::2] + bounds[1::2]) / 2
    extent = float(np.max(bounds[1::2] - bounds[0::2]))
    camera = renderer3.GetActiveCamera()
    camera.SetFocalPoint(*centre)
    camera.SetPosition(centre[0], centre[1] + 3.0 * extent, centre[2])
    camera.SetViewUp(0, 0, 1)
    renderer3.ResetCamera(bounds_list)
    camera.Zoom(1.25)
    three_d = _capture(window3)
    for item in (group, group3):
        item.SetMRMLDisplayableNode(None)
    return Renders(axial=axial, three_d=three_d, axial_slice_ras=float(slice_ras))


def render_result(result, volume, masks: Mapping[str, np.ndarray], size: tuple[int, int] = (560, 560),
                  threshold: float = 0.0) -> Renders:
    """Build a fresh scene for one scored symptom (as the panel does) and render it (see :func:`render_scene`).

    The axial slice passes through the centre of the most relevant organ.
    """
    import slicer

    from .result_nodes import add_symptom_outputs, volume_node_from_volume

    scene = slicer.vtkMRMLScene()
    try:
        ct_node = volume_node_from_volume(volume, "CT", scene)
        outputs = add_symptom_outputs(result, {o.key: masks[o.key] for o in result.organs}, ct_node,
                                      threshold=threshold, show_3d=True, scene=scene)
        centre_ijk = np.argwhere(masks[result.organs[0].key]).mean(axis=0)
        slice_ras = float((np.asarray(volume.affine) @ np.r_[centre_ijk, 1.0])[2])
        return render_scene(ct_node, outputs.segmentation_node, slice_ras, size)
    finally:
        scene.Clear(1)


def composite_figure(result, renders: Renders, title: str | None = None):
    """A panel-sized matplotlib figure: the 3D view, the axial slice and the organs ranked by relevance."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(12.0, 4.6), dpi=100)
    grid = figure.add_gridspec(1, 3, width_ratios=[1, 1, 0.95], wspace=0.05)
    for column, (image, caption) in enumerate(((renders.three_d, "3D view (anterior), opacity by relevance"),
                                               (renders.axial, "axial slice through the most relevant organ"))):
        axis = figure.add_subplot(grid[0, column])
        axis.imshow(image)
        axis.set_title(caption, fontsize=9)
        axis.axis("off")
    from ..preview import draw_findings_caption, draw_relevance_bars, preview_title

    axis = figure.add_subplot(grid[0, 2])
    draw_relevance_bars(axis, result)
    axis.yaxis.tick_right()
    figure.suptitle(title if title is not None else preview_title(result), fontsize=10)
    # The contrast phase and abnormal findings at the foot, as in the 2D preview.
    figure.subplots_adjust(left=0.01, right=0.84, top=0.88, bottom=0.1 + draw_findings_caption(figure, result))
    return figure


def write_rendered_preview(path: str | os.PathLike, result, volume, masks: Mapping[str, np.ndarray]) -> Path:
    """Write the composite of :func:`composite_figure` for one result as a PNG (atomically)."""
    import matplotlib.pyplot as plt

    from ..files import atomic_target

    figure = composite_figure(result, render_result(result, volume, masks))
    with atomic_target(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return Path(path)
