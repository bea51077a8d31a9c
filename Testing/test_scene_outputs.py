"""Scene out (MedSORALib/scene/result_nodes.py): results as nodes, with known numbers and with the real models.

Runs on a real MRML scene from PyPI ``slicer-core``, without the application.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from slicer_scene import (SEG, ct_masks, ct_node, ct_volume, ijk_to_ras_of, known_scorer,  # noqa: F401
                          organ_node, scene, slicer, vtk)
from conftest import EXAMPLE_VOXELS as EXPECTED_VOXELS
from MedSORALib import organs, result_format, session as scoring_session
from MedSORALib.colors import relevance_color
from MedSORALib.scene import inputs as scene_in
from MedSORALib.scene import nodes
from MedSORALib.scene import result_nodes as scene_out
from MedSORALib.scene import run as scene_run
from MedSORALib.scoring import OrganScore, SymptomResult


# ------------------------------------------------------------------------------------------
# nodes out (known numbers)
# ------------------------------------------------------------------------------------------

def _check_output_segmentation(seg_node, result, ct_node, masks):
    """Segments, names, colours, terminology, tags and geometry of one output segmentation."""
    segmentation = seg_node.GetSegmentation()
    scores = {s.key: s for s in result.organs}
    assert segmentation.GetNumberOfSegments() == len(masks)
    assert seg_node.GetName() == scene_out.output_name(result.symptom)
    assert seg_node.GetAttribute(result_format.SYMPTOM_ATTRIBUTE) == result.symptom
    assert seg_node.GetAttribute(result_format.IN_DOMAIN_ATTRIBUTE) == ("true" if result.in_domain else "false")

    # reference geometry equal to the input CT
    geometry = seg_node.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert geometry is ct_node
    for key in masks:
        segment = segmentation.GetSegment(key)
        assert segment is not None, key
        organ = organs.ORGANS[key]
        assert segment.GetName() == organ.display_name[0].upper() + organ.display_name[1:]
        np.testing.assert_allclose(segment.GetColor(), relevance_color(scores[key].relevance), atol=1e-6)
        assert nodes.segment_terminology(segment) == organ.terminology_entry()
        assert organs.organ_key_from_terminology(nodes.segment_terminology(segment)) == key
        expected_tags = result_format.segment_tags(result)[key]
        assert {tag: nodes.segment_tag(segment, tag) for tag in expected_tags} == expected_tags
        assert expected_tags[result_format.STRUCTURE_TAG] == key
        assert float(expected_tags[result_format.RELEVANCE_TAG]) == pytest.approx(scores[key].relevance, abs=1e-6)
        assert float(expected_tags[result_format.TEXT_PRIOR_TAG]) == pytest.approx(scores[key].text_prior, abs=1e-6)
        assert float(expected_tags[result_format.IMAGE_SCORE_TAG]) == pytest.approx(scores[key].image_score, abs=1e-6)
        image = slicer.vtkOrientedImageData()
        assert slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            seg_node, key, image, False)
        matrix = vtk.vtkMatrix4x4()
        image.GetImageToWorldMatrix(matrix)
        np.testing.assert_allclose([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)],
                                   ijk_to_ras_of(ct_node), atol=1e-6)
    back = scene_in.organ_masks_from_segmentation(seg_node, ct_node)
    assert sorted(back) == sorted(masks)
    for key in masks:
        np.testing.assert_array_equal(back[key], masks[key])


def _check_table(table_node, result):
    table = table_node.GetTable()
    assert table_node.GetNumberOfColumns() == len(scene_out.TABLE_COLUMNS)
    assert [table.GetColumn(c).GetName() for c in range(table.GetNumberOfColumns())] == list(scene_out.TABLE_COLUMNS)
    assert table_node.GetNumberOfRows() == len(result.organs)
    for row, score in enumerate(result.organs):
        assert table.GetValueByName(row, "Organ").ToString() == result_format.segment_name(score.key)
        assert table.GetValueByName(row, "Structure").ToString() == score.key
        assert table.GetValueByName(row, "Relevance").ToDouble() == pytest.approx(score.relevance, abs=1e-9)
        assert table.GetValueByName(row, "Text prior").ToDouble() == pytest.approx(score.text_prior, abs=1e-9)
        if score.image_score is None:
            assert np.isnan(table.GetValueByName(row, "Image score").ToDouble())
        else:
            assert table.GetValueByName(row, "Image score").ToDouble() == pytest.approx(score.image_score, abs=1e-9)
        assert table.GetValueByName(row, "Volume (ml)").ToDouble() == pytest.approx(score.volume_ml, rel=1e-9)
        m = score.measurements
        for column, field in (("Length (mm)", "length_mm"), ("Max diameter (mm)", "max_diameter_mm"),
                              ("Mean HU", "mean_hu")):
            value = table.GetValueByName(row, column).ToDouble()
            assert value == pytest.approx(m[field]) if m.get(field) is not None else np.isnan(value)
        assert table.GetValueByName(row, "Finding boost").ToDouble() == pytest.approx(score.finding_boost)
        assert table.GetValueByName(row, "Partially imaged").ToString() == (
            ("yes" if m["partially_imaged"] else "no") if m else "")
        assert table.GetValueByName(row, "Findings").ToString() == "; ".join(
            f["text"] for f in score.findings if f["abnormal"])
    if result.contrast_phase:
        assert table_node.GetAttribute(result_format.CONTRAST_PHASE_TAG).startswith(result.contrast_phase["phase"])
    relevances = [table.GetValueByName(r, "Relevance").ToDouble() for r in range(table_node.GetNumberOfRows())]
    assert relevances == sorted(relevances, reverse=True)


def test_mrml_outputs_with_known_scores(scene, ct_node, organ_node, ct_masks):
    calls = []
    outputs = scene_run.run_symptom_scoring(ct_node, organ_node, "Pain in the right upper\nquadrant after fatty meals",
                                       scorer=known_scorer(calls), threshold=0.5)
    assert len(outputs) == 1 and len(calls) == 1
    assert calls[0]["symptoms"] == ["Pain in the right upper quadrant after fatty meals"]
    assert calls[0]["keys"] == sorted(EXPECTED_VOXELS) and calls[0]["shape"] == (122, 101, 30)
    out = outputs[0]
    result = out.result
    masks = {k: ct_masks[k] for k in EXPECTED_VOXELS}
    _check_output_segmentation(out.segmentation_node, result, ct_node, masks)
    _check_table(out.table_node, result)
    table = out.table_node.GetTable()
    assert table.GetValueByName(0, "Findings").ToString() == "length 120 mm; test upper reference 100 mm"
    assert table.GetValueByName(0, "Length (mm)").ToDouble() == 120.0
    assert out.table_node.GetAttribute(result_format.CONTRAST_PHASE_TAG) == "non-contrast (0.90)"
    # liver (12 voxels * 27 mm^3 per ml ...): volume = voxels * 0.027 ml on the 3 mm grid
    liver_row = [r for r in range(out.table_node.GetNumberOfRows())
                 if out.table_node.GetTable().GetValueByName(r, "Structure").ToString() == "liver"][0]
    assert out.table_node.GetTable().GetValueByName(liver_row, "Volume (ml)").ToDouble() == pytest.approx(
        38634 * 0.027, rel=1e-4)

    # chart: one bar series over the table's relevance column, labelled by organ
    assert out.chart_node.IsA("vtkMRMLPlotChartNode")
    series = out.chart_node.GetNthPlotSeriesNode(0)
    assert series.GetTableNode() is out.table_node
    assert series.GetPlotType() == slicer.vtkMRMLPlotSeriesNode.PlotTypeBar
    assert series.GetYColumnName() == "Relevance" and series.GetLabelColumnName() == "Organ"

    # passages and grouping next to the CT
    text = out.passages_node.GetText()
    assert text.startswith("== Spleen ==\n[liver-001] (score 0.80)\nThe liver lies in the right upper quadrant.")
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    for node in (out.segmentation_node, out.table_node, out.chart_node, out.passages_node):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == out.folder_item
    assert sh.GetItemName(out.folder_item) == out.segmentation_node.GetName()

    # display threshold 0.5: organs below are hidden, opacity follows relevance
    display = out.segmentation_node.GetDisplayNode()
    for score in result.organs:
        assert display.GetSegmentVisibility(score.key) == (score.relevance >= 0.5)
        assert display.GetSegmentOpacity3D(score.key) == pytest.approx(0.15 + 0.85 * score.relevance, abs=1e-6)
    shown = scene_out.apply_relevance_display(out.segmentation_node, threshold=0.0, opacity_by_relevance=False)
    assert all(shown.values()) and len(shown) == 12
    assert all(display.GetSegmentOpacity3D(k) == 1.0 for k in shown)


def test_mrml_second_symptom_creates_second_node(scene, ct_node, organ_node):
    first = scene_run.run_symptom_scoring(ct_node, organ_node, "yellow skin and dark urine", scorer=known_scorer())[0]
    second = scene_run.run_symptom_scoring(ct_node, organ_node, "blood in urine and flank pain", scorer=known_scorer())[0]
    assert first.segmentation_node is not second.segmentation_node
    segmentations = [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
                     for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    outputs = sorted(n.GetName() for n in segmentations if n.GetName().startswith(scene_out.OUTPUT_PREFIX))
    assert outputs == ["MedSORA: blood in urine and flank pain", "MedSORA: yellow skin and dark urine"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 2
    # the input segmentation is untouched
    assert organ_node.GetSegmentation().GetNumberOfSegments() == 12
    assert nodes.segment_tag(organ_node.GetSegmentation().GetSegment("liver"), result_format.RELEVANCE_TAG) is None


def test_mrml_several_symptoms_one_per_line(scene, ct_node, organ_node):
    symptoms = scoring_session.split_symptoms("epigastric pain radiating to the back\nblood in the urine", one_per_line=True)
    outputs = scene_run.run_symptom_scoring(ct_node, organ_node, symptoms, scorer=known_scorer())
    assert [o.symptom for o in outputs] == symptoms
    assert [o.in_domain for o in outputs] == [True, False]
    rel = [scene_out.segment_relevances(o.segmentation_node)["liver"] for o in outputs]
    assert rel[0] - rel[1] == pytest.approx(0.1, abs=1e-6)


def _result_with_every_tag() -> SymptomResult:
    """A result whose organs carry every kind of tag: measurements (a vessel's too), an abnormal finding whose
    text holds characters a .seg.nrrd tag cannot store, an image score that was not computed, a contrast phase."""
    liver_measured = {"volume_ml": 1043.118, "length_mm": 187.5, "max_diameter_mm": 201.25, "mean_hu": 52.4,
                      "partially_imaged": True}
    vessel_measured = {"volume_ml": 24.327, "length_mm": 96.0, "max_diameter_mm": 14.5, "mean_hu": 38.0,
                       "perpendicular_diameter_mm": 11.25, "partially_imaged": False}
    findings = [{"key": "hepatomegaly", "abnormal": True, "value": 187.5, "unit": "mm", "reference": "test",
                 "text": "craniocaudal length 187.5 mm | reference: up to 160 mm"},
                {"key": "liver_hu", "abnormal": False, "value": 52.4, "unit": "HU", "reference": "test",
                 "text": "mean 52.4 HU; range 40-70 HU"}]
    scores = [
        OrganScore("liver", "liver", 0.8123456789, 0.7021, -0.03123449, 38634, 1043.118, finding_boost=0.05123449,
                   why="abnormal finding", measurements=liver_measured, findings=findings),
        OrganScore("portal_vein_and_splenic_vein", "portal vein and splenic vein", 0.41, 0.4, 0.125, 901, 24.327,
                   measurements=vessel_measured),
        OrganScore("kidney_right", "right kidney", 0.25, 0.3, float("nan"), 3947, 106.569),
    ]
    return SymptomResult(symptom="yellow skin and a swollen belly", in_domain=True, ood_score=0.05, laterality=None,
                         organs=scores, models={"text": "test"},
                         passages={"liver": [{"id": "liver-007", "text": "Jaundice with an enlarged liver.",
                                              "source": "test", "score": 0.61}]},
                         contrast_phase={"phase": "portal venous", "confidence": 0.873})


def test_file_and_node_of_one_result_carry_the_same_segment_names_and_tags(scene, ct_node, ct_volume, ct_masks,
                                                                           tmp_path):
    """The .seg.nrrd of medsora score and the scene's segmentation of the same result: same names, same tags."""
    import slicerio

    from MedSORALib.result_files import write_result

    def segments_of(path):
        return {s["id"]: s for s in slicerio.read_segmentation(str(path), skip_voxels=True)["segments"]}

    result = _result_with_every_tag()
    masks = {score.key: ct_masks[score.key] for score in result.organs}
    written = write_result(tmp_path / "case", result, ct_volume, masks)
    from_file = segments_of(written["segmentation"])
    out = scene_out.add_symptom_outputs(result, masks, ct_node)
    segmentation = out.segmentation_node.GetSegmentation()
    assert sorted(from_file) == sorted(segmentation.GetSegmentIDs()) == sorted(masks)
    for key, segment in from_file.items():
        in_scene = segmentation.GetSegment(key)
        assert in_scene.GetName() == segment["name"]
        assert {tag: nodes.segment_tag(in_scene, tag) for tag in segment["tags"]} == segment["tags"]
    # Saved by Slicer's own writer, the node holds no name or tag that the file lacks.
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "saved_from_scene.seg.nrrd"))
    assert storage.WriteData(out.segmentation_node)
    saved = segments_of(tmp_path / "saved_from_scene.seg.nrrd")
    assert ({k: (s["name"], s["tags"]) for k, s in saved.items()}
            == {k: (s["name"], s["tags"]) for k, s in from_file.items()})

    # The strings themselves: capitalised names, 6 decimals, "" for a score not computed, sanitised findings.
    assert {k: s["name"] for k, s in from_file.items()} == {
        "liver": "Liver", "portal_vein_and_splenic_vein": "Portal vein and splenic vein",
        "kidney_right": "Right kidney"}
    assert from_file["liver"]["tags"] == {
        "MedSORA.Structure": "liver", "MedSORA.Relevance": "0.812346", "MedSORA.TextPrior": "0.702100",
        "MedSORA.ImageScore": "-0.031234", "MedSORA.FindingBoost": "0.051234", "MedSORA.VolumeMl": "1043.118",
        "MedSORA.LengthMm": "187.5", "MedSORA.MaxDiameterMm": "201.25", "MedSORA.MeanHU": "52.4",
        "MedSORA.PartiallyImaged": "true",
        "MedSORA.Findings": "craniocaudal length 187.5 mm / reference up to 160 mm",
        "MedSORA.ContrastPhase": "portal venous (0.87)"}
    vessel = from_file["portal_vein_and_splenic_vein"]["tags"]
    assert vessel["MedSORA.PerpendicularDiameterMm"] == "11.25" and vessel["MedSORA.PartiallyImaged"] == "false"
    assert vessel["MedSORA.Findings"] == "none"
    kidney = from_file["kidney_right"]["tags"]
    assert kidney["MedSORA.ImageScore"] == "" and "MedSORA.VolumeMl" not in kidney
    # A score read back from a tag is the JSON report's number.
    report = json.loads(written["json"].read_text(encoding="utf-8"))
    for organ in report["organs"]:
        tags = from_file[organ["name"]]["tags"]
        assert float(tags["MedSORA.Relevance"]) == organ["relevance"]
        assert float(tags["MedSORA.TextPrior"]) == organ["text_prior"]
        assert float(tags["MedSORA.FindingBoost"]) == organ["finding_boost"]
    # The table names organs as the segments do.
    table = out.table_node.GetTable()
    assert [table.GetValueByName(r, "Organ").ToString() for r in range(table.GetNumberOfRows())] == [
        "Liver", "Portal vein and splenic vein", "Right kidney"]


def test_mrml_long_symptom_name_is_cut_but_attribute_keeps_it():
    text = "a " * 80 + "very long description"
    name = scene_out.output_name(text)
    assert name.startswith(scene_out.OUTPUT_PREFIX) and len(name) == len(scene_out.OUTPUT_PREFIX) + scene_out.NAME_SYMPTOM_CHARS
    assert name.endswith("\u2026")


def test_mrml_relevance_colors_match_the_shared_map():
    from matplotlib import colormaps

    values = np.linspace(0, 1, 17)
    colors = np.array([relevance_color(v) for v in values])
    # At its 17 stops the map is matplotlib's plasma itself (an independent table).
    np.testing.assert_allclose(colors, [colormaps["plasma"](v)[:3] for v in values], atol=1e-6)
    assert colors.shape == (17, 3) and colors.min() >= 0 and colors.max() <= 1
    # plasma: relevance 0 is dark blue, 1 bright yellow; luminance rises so the strongest organ stands out
    luminance = colors @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(luminance) > 0)
    assert relevance_color(-1) == relevance_color(0) and relevance_color(2) == relevance_color(1)

    # the map needs no matplotlib (Slicer does not ship it) and stays within 0.02 of matplotlib's plasma
    fine = np.linspace(0, 1, 101)
    reference = np.array([colormaps["plasma"](v)[:3] for v in fine])
    interpolated = np.array([relevance_color(v) for v in fine])
    assert np.abs(interpolated - reference).max() < 0.02


# ------------------------------------------------------------------------------------------
# the real scoring entry (the same score_volume the command line calls)
# ------------------------------------------------------------------------------------------

REAL_SYMPTOMS = ["Pain in the right upper abdomen after fatty meals, with nausea",
                 "Blood in the urine and pain in the left flank"]


@pytest.fixture(scope="module")
def real_run(ct_volume, ct_masks):
    """One scene scored with the shipped models, and the same inputs scored from files as the CLI does
    (image weight 0.25, so that the image scores are computed and compared too)."""
    import torch

    from MedSORALib.scoring import score_volume

    torch.set_num_threads(1)
    previous = getattr(slicer, "mrmlScene", None)
    scene = slicer.vtkMRMLScene()
    slicer.mrmlScene = scene
    try:
        ct_node = scene_out.volume_node_from_volume(ct_volume, "example_ct_sm", scene)
        organ_node = scene_out.organ_segmentation_from_labelmap_file(str(SEG), ct_node, "totalsegmentator", "organs")
        started = time.perf_counter()
        outputs = scene_run.run_symptom_scoring(ct_node, organ_node, REAL_SYMPTOMS,
                                           settings=scoring_session.ScoringSettings(device="cpu", image_weight=0.25),
                                           show_3d=True)
        seconds = time.perf_counter() - started
        file_results = score_volume(ct_volume, {k: m for k, m in ct_masks.items() if m.any()}, REAL_SYMPTOMS,
                                    device="cpu", image_weight=0.25)
        yield SimpleNamespace(scene=scene, ct_node=ct_node, organ_node=organ_node, outputs=outputs,
                              file_results=file_results, seconds=seconds)
    finally:
        scene.Clear(1)
        slicer.mrmlScene = previous


def test_mrml_real_scoring_writes_consistent_nodes(real_run, ct_masks):
    outputs = real_run.outputs
    assert [o.symptom for o in outputs] == REAL_SYMPTOMS
    assert len({id(o.segmentation_node) for o in outputs}) == 2  # one node per symptom
    masks = {k: ct_masks[k] for k in EXPECTED_VOXELS}
    for out in outputs:
        result = out.result
        assert [s.key for s in result.organs] != [] and len(result.organs) == 12
        for score in result.organs:
            assert 0.0 <= score.relevance <= 1.0 and 0.0 <= score.text_prior <= 1.0
            assert -1.0 <= score.image_score <= 1.0
            assert score.voxels == EXPECTED_VOXELS[score.key]
        _check_output_segmentation(out.segmentation_node, result, real_run.ct_node, masks)
        _check_table(out.table_node, result)
        # closed surfaces were built for the 3D view
        assert out.segmentation_node.GetSegmentation().ContainsRepresentation(
            slicer.vtkSegmentationConverter.GetClosedSurfaceRepresentationName())
        if result.in_domain:
            assert out.passages_node.GetText().startswith("== ")


def test_mrml_real_scoring_equals_the_command_line_path(real_run):
    """Scene arrays (K, J, I) converted to (I, J, K) give the same numbers as the files read by volume_io."""
    for out, expected in zip(real_run.outputs, real_run.file_results):
        got = {s.key: s for s in out.result.organs}
        assert out.result.in_domain == expected.in_domain
        for score in expected.organs:
            assert got[score.key].relevance == pytest.approx(score.relevance, abs=1e-5)
            assert got[score.key].image_score == pytest.approx(score.image_score, abs=1e-5)
            assert got[score.key].text_prior == pytest.approx(score.text_prior, abs=1e-6)
        assert [s.key for s in out.result.organs] == [s.key for s in expected.organs]


def test_mrml_real_scoring_ranks_organs_for_clear_symptoms(real_run):
    gallbladder_pain, haematuria = (out.result for out in real_run.outputs)
    top3 = [s.key for s in gallbladder_pain.organs[:3]]
    assert {"gallbladder", "liver"} & set(top3), top3
    assert haematuria.organs[0].key in ("kidney_left", "kidney_right"), haematuria.organs[0].key
    relevance = haematuria.relevance()
    assert relevance["kidney_left"] > relevance["kidney_right"]  # laterality: "left flank"



def test_scene_output_terminology_uses_the_dicom_master_list_tag_on_every_slicer_version(scene, ct_node, ct_masks):
    """Segments carry the TerminologyEntry tag (no vtkSegment.SetTerminology, which needs Slicer 5.10)."""
    keys = ("inferior_vena_cava", "adrenal_gland_left", "kidney_right")
    node = scene_out.segmentation_node_from_masks({k: ct_masks[k] for k in keys}, ct_node, "organs", scene=scene)
    for key in keys:
        segment = node.GetSegmentation().GetSegment(key)
        entry = nodes.segment_tag(segment, "TerminologyEntry")
        assert entry is not None
        fields = entry.split("~")
        assert fields[0] == "Segmentation category and type - DICOM master list"
        assert fields[1] == "SCT^123037004^Anatomical Structure"
        assert fields[2].split("^")[1] == organs.ORGANS[key].snomed_type[1]
        assert organs.organ_key_from_terminology(entry) == key
    # Slicer's adrenal gland colour (249, 186, 150) for the catalog colour of both sides
    np.testing.assert_allclose(node.GetSegmentation().GetSegment("adrenal_gland_left").GetColor(),
                               np.array([249, 186, 150]) / 255, atol=1e-6)
    # the scene code never calls the 5.10-only terminology methods
    scene_dir = Path(scene_out.__file__).parent
    for source in scene_dir.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert ".SetTerminology(" not in text and ".GetTerminology(" not in text, source.name


def test_scene_outputs_sit_under_the_study_of_the_ct(scene, ct_node, organ_node):
    """CT in a folder under patient > study: the result folder goes under the study, not the CT's folder."""
    sh = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1")
    study = sh.CreateStudyItem(patient, "CT abdomen")
    series_folder = sh.CreateFolderItem(study, "series")
    ct_item = sh.GetItemByDataNode(ct_node) or sh.CreateItem(series_folder, ct_node)
    sh.SetItemParent(ct_item, series_folder)
    out = scene_run.run_symptom_scoring(ct_node, organ_node, "jaundice", scorer=known_scorer())[0]
    assert sh.GetItemParent(out.folder_item) == study
    assert sh.GetItemParent(sh.GetItemByDataNode(out.segmentation_node)) == out.folder_item
    # the segmentation references the CT it was computed on
    assert out.segmentation_node.GetNodeReference(
        slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole()) is ct_node
    # without a study the folder sits beside the CT
    other_ct = scene_out.volume_node_from_volume(scene_in.volume_from_node(ct_node), "loose CT", scene)
    loose = scene_out.add_symptom_outputs(out.result, scene_in.organ_masks_from_segmentation(organ_node, ct_node),
                                          other_ct)
    other_item = sh.GetItemByDataNode(other_ct)
    expected = sh.GetItemParent(other_item) if other_item else sh.GetSceneItemID()
    assert sh.GetItemParent(loose.folder_item) == (expected or sh.GetSceneItemID())


def test_outputs_from_the_worker_files_use_the_ct_grid_without_its_voxels(scene, ct_node, ct_volume, ct_masks,
                                                                          tmp_path, monkeypatch):
    """add_outputs_from_files places the written masks on the CT from its shape and affine alone."""
    from MedSORALib.result_files import write_result

    grid = scene_in.grid_from_node(ct_node)
    assert grid.shape == ct_volume.shape == (122, 101, 30)
    np.testing.assert_allclose(grid.affine, ct_volume.affine, atol=1e-6)
    assert grid.same_grid(scene_in.volume_from_node(ct_node)) and not hasattr(grid, "array")

    result = _result_with_every_tag()
    masks = {score.key: ct_masks[score.key] for score in result.organs}
    written = write_result(tmp_path / "case", result, ct_volume, masks)

    def no_voxel_copy(node):
        raise AssertionError("the CT's voxels were copied to place the masks")

    monkeypatch.setattr(scene_in, "volume_from_node", no_voxel_copy)
    monkeypatch.setattr(scene_in, "_voxel_array_kji", no_voxel_copy)
    (created,) = scene_out.add_outputs_from_files(
        [{"files": {"json": str(written["json"]), "segmentation": str(written["segmentation"])}}], ct_node)
    back = scene_in.organ_masks_from_segmentation(created.segmentation_node, ct_node)
    assert sorted(back) == sorted(masks)
    for key, mask in masks.items():
        np.testing.assert_array_equal(back[key], mask)
    assert scene_out.segment_relevances(created.segmentation_node)["liver"] == pytest.approx(0.812346, abs=1e-6)
