"""The differential where a person sees it: the Slicer panel's logic (on slicer-core with the stand-ins of
``slicer_scene.py``) and the ``serve`` page (its state fields, its trigger, and the page in a headless browser).

Choosing a diagnosis centres the slice views on its main organ's focus point
(``MedSORALib/focus.py``): inside the organ, on its largest axial cross-section.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import sys

import numpy as np
import pytest

from slicer_scene import (application_stand_ins, ct_masks, ct_node, ct_volume, load_module_file,  # noqa: F401
                          scene, slicer)
from MedSORALib import result_format
from MedSORALib.diagnoses import SHOWN_DIAGNOSES, DiagnosisEntry
from MedSORALib.focus import axial_axis, focus_index, organ_focus
from MedSORALib.scene import diagnosis_view
from MedSORALib.scene import result_nodes as scene_out

CHOLECYSTITIS = "constant right upper quadrant pain since last night's dinner, fever 38.4, Murphy's sign"
APPENDIX_TEXT = ("periumbilical pain migrating to the right iliac fossa with anorexia, fever and tenderness at "
                 "McBurney's point")
KNEE_TEXT = "swollen painful knee after a fall while skiing"
APPENDICITIS = DiagnosisEntry("Acute appendicitis", [], 0.6, ["right iliac fossa pain"], [],
                              ["dilated appendix over 6 mm", "periappendiceal fat stranding"], "a textbook",
                              "acute_appendicitis", "appendix")


# ------------------------------------------------------------------------------------------
# the focus point
# ------------------------------------------------------------------------------------------

def test_focus_is_inside_the_organ_on_its_largest_axial_cross_section():
    mask = np.zeros((20, 20, 10), dtype=bool)
    mask[2:18, 2:5, 3] = True      # an L on slice 3 (48 + 36 voxels), its centroid outside the L
    mask[2:5, 5:17, 3] = True
    mask[5:9, 5:9, 6] = True       # a smaller square on slice 6
    i, j, k = focus_index(mask)
    assert k == 3 and mask[i, j, k]
    points = np.argwhere(mask[:, :, 3])
    centroid = points.mean(axis=0)
    assert not mask[int(round(centroid[0])), int(round(centroid[1])), 3]  # the centroid itself is outside
    distances = ((points - centroid) ** 2).sum(axis=1)
    assert ((i - centroid[0]) ** 2 + (j - centroid[1]) ** 2) == pytest.approx(distances.min())
    assert focus_index(np.zeros((3, 3, 3), dtype=bool)) is None


def test_the_axial_axis_follows_the_grid_orientation():
    affine = np.diag([-0.8, -0.8, 2.5, 1.0])
    assert axial_axis(affine) == 2
    coronal = np.array([[1.0, 0, 0, 10], [0, 0, -3.0, 20], [0, 2.0, 0, 30], [0, 0, 0, 1]])  # j runs head-wards
    assert axial_axis(coronal) == 1
    mask = np.zeros((6, 8, 5), dtype=bool)
    mask[1:4, 5, 1:4] = True  # 9 voxels on j = 5
    mask[2, 2, 2] = True
    point = organ_focus(mask, coronal)
    assert point == pytest.approx(coronal[:3, :3] @ np.array([2, 5, 2]) + coronal[:3, 3])


# ------------------------------------------------------------------------------------------
# the Slicer panel's logic on a real scored result
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scored(ct_volume, ct_masks):
    from MedSORALib.scoring import load_models, prepare_case, score_case

    case = prepare_case(ct_volume, ct_masks)
    (result,) = score_case(case, [CHOLECYSTITIS], load_models(), with_passages=False)
    return case, result


@pytest.fixture()
def module_file(monkeypatch, scene):
    for name, module in application_stand_ins().items():
        monkeypatch.setitem(sys.modules, name, module)
    return load_module_file()


def _slice_nodes(scene):
    nodes = []
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        node = slicer.vtkMRMLSliceNode()
        node.SetName(name)
        node.SetLayoutName(name)
        node.SetSingletonTag(name)
        node.SetOrientation(orientation)
        scene.AddNode(node)
        nodes.append(node)
    return nodes


def _centre(node) -> np.ndarray:
    matrix = node.GetSliceToRAS()
    return np.array([matrix.GetElement(r, 3) for r in range(3)])


def test_panel_shows_five_diagnoses_and_centres_the_slices_on_the_chosen_organ(module_file, scene, ct_node,
                                                                              ct_volume, ct_masks, scored):
    _, result = scored
    outputs = scene_out.add_symptom_outputs(result, ct_masks, ct_node, scene=scene)
    seg = outputs.segmentation_node
    assert seg.GetAttribute(result_format.SCOPE_ATTRIBUTE) == "modelled"
    assert json.loads(seg.GetAttribute(result_format.DIFFERENTIAL_ATTRIBUTE)) == [
        d.to_dict() for d in result.differential[:SHOWN_DIAGNOSES]]

    logic = module_file.MedSORALogic()
    rows = logic.differentialRows(seg)
    assert len(rows) == SHOWN_DIAGNOSES == 5
    assert [r["diagnosis"] for r in rows] == [d.diagnosis for d in result.differential[:5]]
    assert "cholecystitis" in rows[0]["diagnosis"].lower() and rows[0]["organ"] == "gallbladder"
    assert any("pericholecystic fluid" in sign for sign in rows[0]["look_for"])

    red, yellow, green = _slice_nodes(scene)
    before = [_centre(n) for n in (red, yellow, green)]
    assert logic.showDiagnosis(seg, 0) == "gallbladder"
    expected = organ_focus(ct_masks["gallbladder"], ct_volume.affine)
    for node, old in zip((red, yellow, green), before):
        assert _centre(node) == pytest.approx(expected, abs=1e-3)
        assert not np.allclose(_centre(node), old)
    # the point is inside the gallbladder, on its largest axial cross-section (the CT's k axis is axial)
    i, j, k = np.rint(ct_volume.ras_to_index(expected)).astype(int)
    gallbladder = ct_masks["gallbladder"]
    assert gallbladder[i, j, k] and gallbladder[:, :, k].sum() == gallbladder.sum(axis=(0, 1)).max()
    assert logic.showDiagnosis(seg, 7) is None  # past the shown diagnoses: nothing moves
    assert _centre(red) == pytest.approx(expected, abs=1e-3)


def test_panel_leaves_the_views_for_a_diagnosis_outside_the_ct(module_file, scene, ct_node, ct_masks, scored):
    _, result = scored
    outside = dataclasses.replace(result, differential=[APPENDICITIS] + result.differential, scope="abdominal-other",
                                  outside="appendix", in_domain=False)
    seg = scene_out.add_symptom_outputs(outside, ct_masks, ct_node, scene=scene).segmentation_node
    assert seg.GetAttribute(result_format.OUTSIDE_ATTRIBUTE) == "appendix"
    (red, *_) = _slice_nodes(scene)
    before = _centre(red)
    logic = module_file.MedSORALogic()
    rows = logic.differentialRows(seg)
    assert rows[0]["organ"] is None and rows[0]["where"] == "appendix"
    assert logic.showDiagnosis(seg, 0) is None
    assert _centre(red) == pytest.approx(before)
    assert logic.showDiagnosis(seg, 1) == "gallbladder"  # the next one lies in the CT
    seg.SetAttribute(result_format.DIFFERENTIAL_ATTRIBUTE, "{not json")
    assert logic.differentialRows(seg) == [] and diagnosis_view.differential_of(None) == []


# ------------------------------------------------------------------------------------------
# the serve page: state fields and the trigger (no browser), then the page in a browser
# ------------------------------------------------------------------------------------------

class _State(dict):
    def __getattr__(self, name):
        return self[name]

    def __setattr__(self, name, value):
        self[name] = value

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_page_fields_and_choosing_a_diagnosis_move_the_slices(scene, ct_volume, ct_masks, scored):
    from types import SimpleNamespace

    from MedSORALib.web import differential_view

    case, result = scored
    fields = differential_view.result_fields(result, case)
    rows = fields["differential"]
    assert len(rows) == 5 and fields["scope_text"].startswith("Scope: the 13 abdominal structures")
    expected = organ_focus(ct_masks["gallbladder"], ct_volume.affine)
    assert rows[0]["organ_name"] == "gallbladder" and rows[0]["focus"] == pytest.approx(expected, abs=0.01)
    json.dumps(fields)  # page state must be JSON

    rendered = []
    views = [SimpleNamespace(schedule_render=lambda: rendered.append(1))]
    app = SimpleNamespace(state=_State(results=[fields], selected=0),
                          slicer_app=SimpleNamespace(scene=scene,
                                                     view_manager=SimpleNamespace(get_slice_views=lambda: views)))
    red, _, _ = _slice_nodes(scene)
    differential_view.choose(app, 0)
    assert _centre(red) == pytest.approx(rows[0]["focus"], abs=1e-3) and rendered == [1]
    assert app.state.chosen_diagnosis == 0 and "centred on the gallbladder" in app.state.differential_focus
    differential_view.choose(app, 99)  # no such diagnosis: nothing changes
    assert app.state.chosen_diagnosis == 0


SLICE_IMAGE_JS = """() => {
  const img = document.querySelector('#views .layout-grid-item:has(.slice-slider-gutter) img.image-display-area');
  if (!img || !img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  canvas.getContext('2d').drawImage(img, 0, 0);
  return canvas.toDataURL('image/png');
}"""


@pytest.mark.skipif(importlib.util.find_spec("trame_slicer") is None or importlib.util.find_spec("playwright") is None,
                    reason="the web extra or playwright is not installed")
def test_page_shows_five_diagnoses_with_a_checklist_and_moves_the_slice(tmp_path, ct_volume, ct_masks):
    from test_serve import RENDER_TIMEOUT_S, SCORE_TIMEOUT_S, Server, open_page, wait_for
    from playwright.sync_api import sync_playwright

    from test_serve import CHROMIUM, CHROMIUM_FLAGS

    server = Server(tmp_path, "--symptom", CHOLECYSTITIS)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            try:
                page = open_page(browser, server.url)
                page.wait_for_selector("#differential .diagnosis", timeout=SCORE_TIMEOUT_S * 1000)
                names = [t.strip() for t in page.locator("#differential .diagnosis-name").all_inner_texts()]
                assert len(names) == 5 and "cholecystitis" in names[0].lower() and names[0].startswith("1. ")
                first = page.locator("#differential .diagnosis").first
                signs = [t.strip() for t in first.locator(".look-for").all_inner_texts()]
                assert any("gallstones" in s for s in signs) and any("pericholecystic" in s for s in signs)
                boxes = first.locator(".look-for-check")
                assert boxes.count() == len(signs)
                boxes.nth(0).check()  # the checklist is the reader's own: ticking is kept in the page
                assert boxes.nth(0).is_checked() and not boxes.nth(1).is_checked()
                assert "Murphy" in first.locator(".diagnosis-read").inner_text()

                def slice_image():
                    return page.evaluate(SLICE_IMAGE_JS)

                def settled_image():  # the same image twice, a second apart: the view has stopped changing
                    first_read = slice_image()
                    page.wait_for_timeout(1000)
                    return first_read if first_read is not None and first_read == slice_image() else None

                before = wait_for(settled_image, RENDER_TIMEOUT_S, "the slice view's image to settle")
                first.locator(".diagnosis-show").click()
                page.wait_for_selector("#differential-focus", timeout=RENDER_TIMEOUT_S * 1000)
                text = page.inner_text("#differential-focus")
                assert "centred on the gallbladder" in text
                expected = organ_focus(ct_masks["gallbladder"], ct_volume.affine)
                shown = [float(v) for v in re.findall(r"[RAS] (-?\d+\.\d)", text)]
                assert shown == pytest.approx(expected, abs=0.06)
                wait_for(lambda: True if slice_image() not in (None, before) else None, RENDER_TIMEOUT_S,
                         "the slice view to move to the gallbladder")

                # an abdominal presentation outside the 13 structures: no out-of-domain warning, the scope says
                # where, and its first diagnosis cannot be shown on this CT; a non-abdominal one is warned about
                for symptom, warned in ((APPENDIX_TEXT, False), (KNEE_TEXT, True)):
                    page.fill("#symptom-box", symptom)
                    page.click("#score-button")
                    page.wait_for_function(
                        "(text) => { const e = document.querySelector('#results-symptom');"
                        " return e && e.textContent.trim() === text; }", arg=symptom,
                        timeout=SCORE_TIMEOUT_S * 1000)
                    assert page.locator("#ood-warning").count() == (1 if warned else 0), symptom
                    # the earlier choice is forgotten (the page may draw the new results a moment before it drops
                    # the old focus line: state arrives in more than one message)
                    page.wait_for_selector("#differential-focus", state="detached", timeout=SCORE_TIMEOUT_S * 1000)
                    if not warned:
                        assert "outside the 13 structures (appendix)" in page.inner_text("#differential-scope")
                        assert "appendicitis" in page.locator("#differential .diagnosis-name").first.inner_text()
                        assert page.locator("#differential .diagnosis-show").first.is_disabled()
            finally:
                browser.close()
    finally:
        assert server.stop() is not None
