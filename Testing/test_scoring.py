"""Scoring the real example CT: score_volume, medsora score/batch, the Slicer batch script, DICOM in and out."""
import csv
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_CT, EXAMPLE_DICOM, EXAMPLE_SEG, EXAMPLE_VOXELS, snapshot
from MedSORALib import organs, result_format
from MedSORALib.cli import main
from MedSORALib.result_files import relevance_color
from MedSORALib.scoring import fuse, load_models, score_volume
from MedSORALib.segmentation_io import read_seg_nrrd
from MedSORALib.segmentation_io import read_organ_masks
from MedSORALib.volume_io import Volume, read_volume, write_volume

REPO = Path(__file__).resolve().parents[1]
JAUNDICE = "painless jaundice with pale stools and weight loss"


@pytest.fixture(scope="module")
def models():
    return load_models()


def _score(tmp_path, *extra, volume=EXAMPLE_CT, segmentation=EXAMPLE_SEG, scheme="totalsegmentator"):
    argv = ["score", "--volume", str(volume), "--output", str(tmp_path / "out" / "case"), "--quiet", *extra]
    if segmentation is not None:
        argv += ["--segmentation", str(segmentation)]
    if scheme is not None:
        argv += ["--label-scheme", scheme]
    return main(argv)


def test_fusion_formula_by_hand():
    t = np.array([[0.8, 0.6, 0.1]])
    s = np.array([[0.2, 0.4, 0.4]])
    r = fuse(t, s, image_weight=0.25)
    # a = exp((s - 0.4) / 0.1) = [e^-2, 1, 1]
    expected = t * (0.75 + 0.25 * np.array([np.exp(-2.0), 1.0, 1.0]))
    np.testing.assert_allclose(r, expected, rtol=1e-12)
    np.testing.assert_allclose(fuse(t, s, image_weight=0.0), t)
    assert np.all(fuse(t, s) <= t + 1e-12)


def test_score_volume_on_the_real_ct(example_volume, example_masks, models):
    calls = []
    original = models.image_model.encode_organs

    def counting(crops, *args, **kwargs):
        calls.append(sorted(crops))
        return original(crops, *args, **kwargs)

    symptoms = [JAUNDICE, "knee joint pain", "blood in my pee"]
    models.image_model.encode_organs = counting
    try:
        results = score_volume(example_volume, example_masks, symptoms, models=models)
        assert calls == []  # image weight 0 (the default): the image model does no work
        fused = score_volume(example_volume, example_masks, symptoms, models=models, image_weight=0.25)
    finally:
        del models.image_model.encode_organs
    assert len(calls) == 1 and calls[0] == sorted(example_masks)  # organs encoded once for three symptoms
    jaundice, knee, urine = results
    assert [o.key for o in jaundice.organs] != [] and len(jaundice.organs) == len(example_masks)
    relevances = [o.relevance for o in jaundice.organs]
    assert relevances == sorted(relevances, reverse=True)
    assert all(0.0 <= o.relevance <= 1.0 and o.image_score is None for o in jaundice.organs)
    for plain, with_image in zip(results, fused):
        assert all(-1.0 <= o.image_score <= 1.0 for o in with_image.organs)
        prior = {o.key: o.text_prior for o in plain.organs}
        assert {o.key: o.text_prior for o in with_image.organs} == pytest.approx(prior, abs=1e-9)
        # the image term lowers an organ by at most the weight, and never raises it above its text prior
        by_key = {o.key: o for o in with_image.organs}
        for organ in plain.organs:
            lowered = organ.relevance - organ.finding_boost - (by_key[organ.key].relevance
                                                                - by_key[organ.key].finding_boost)
            assert -1e-9 <= lowered <= 0.25 * organ.text_prior + 1e-9
    assert jaundice.in_domain and not knee.in_domain
    top3 = {o.key for o in jaundice.organs[:3]}
    assert len(top3 & {"pancreas", "gallbladder", "liver"}) >= 2, top3
    assert max(o.relevance for o in knee.organs) < jaundice.top.relevance / 2
    assert urine.top.key in {"kidney_right", "kidney_left"}
    for o in jaundice.organs:
        assert o.voxels == EXAMPLE_VOXELS[o.key]
        assert o.volume_ml == pytest.approx(EXAMPLE_VOXELS[o.key] * 27 / 1000)
    assert set(jaundice.passages) == {o.key for o in jaundice.organs[:3]}
    assert all(1 <= len(p) <= 2 and p[0]["source"] for p in jaundice.passages.values())


def _centroid(volume: Volume, mask):
    return volume.index_to_ras(np.argwhere(mask).mean(axis=0))


def test_cli_outputs_sit_on_the_organs_and_agree(tmp_path, example_volume, example_masks):
    before = snapshot(REPO / "Testing" / "Data")
    assert _score(tmp_path, "--symptom", JAUNDICE, "--preview") == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["case.json", "case.png", "case.seg.nrrd"]
    report = json.loads((out / "case.json").read_text())
    seg = read_seg_nrrd(out / "case.seg.nrrd")
    np.testing.assert_allclose(seg["affine"], example_volume.affine, atol=1e-6)
    by_id = {s["id"]: s for s in seg["segments"]}
    assert set(by_id) == {o["name"] for o in report["organs"]}
    for organ in report["organs"]:
        segment = by_id[organ["name"]]
        assert segment["name"] == result_format.segment_name(organ["name"])
        assert float(segment["tags"]["MedSORA.Relevance"]) == pytest.approx(organ["relevance"], abs=1e-6)
        np.testing.assert_allclose(segment["color"], relevance_color(organ["relevance"]), atol=1e-5)
        assert segment["terminology"]["type"] == list(organs.ORGANS[organ["name"]].snomed_type)
        mask = seg["voxels"] == segment["labelValue"]
        assert int(mask.sum()) == organ["voxels"] == EXAMPLE_VOXELS[organ["name"]]
        shift = np.linalg.norm(_centroid(example_volume, mask) - _centroid(example_volume, example_masks[organ["name"]]))
        assert shift < 1e-6
    assert report["symptom"] == JAUNDICE and report["in_domain"] is True
    assert report["inputs"]["volume"]["sha256"] and report["files"]["segmentation"] == "case.seg.nrrd"
    assert report["models"]["text"] and report["models"]["image"]
    from PIL import Image

    assert Image.open(out / "case.png").size[0] > 800
    assert snapshot(REPO / "Testing" / "Data") == before  # inputs untouched


def test_output_reads_in_slicer_mrml_with_relevance_tags(tmp_path):
    slicer = pytest.importorskip("slicer")
    import vtk

    assert _score(tmp_path, "--symptom", "burning pain in the upper belly after meals") == 0
    report = json.loads((tmp_path / "out" / "case.json").read_text())
    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(tmp_path / "out" / "case.seg.nrrd"))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(report["organs"])
    for organ in report["organs"]:
        segment = segmentation.GetSegment(organ["name"])
        assert segment.GetName() == result_format.segment_name(organ["name"])
        np.testing.assert_allclose(segment.GetColor(), relevance_color(organ["relevance"]), atol=1e-5)
        value = vtk.reference("")
        assert segment.GetTag("MedSORA.Relevance", value)
        assert float(str(value)) == pytest.approx(organ["relevance"], abs=1e-6)
        entry = vtk.reference("")
        assert segment.GetTag("TerminologyEntry", entry)
        assert organs.organ_key_from_terminology(str(entry)) == organ["name"]


def test_reoriented_nrrd_and_regridded_labels_give_the_same_relevances(tmp_path, example_volume):
    import nibabel as nib

    # CT: axes permuted and flipped, stored as NRRD (LPS on disk).
    array = np.transpose(example_volume.array, (1, 2, 0))[::-1].astype(np.int16)
    new_to_old = np.array([[0, 0, 1, 0], [-1, 0, 0, array.shape[0] - 1], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    write_volume(tmp_path / "ct_reoriented.nrrd", Volume(np.ascontiguousarray(array), example_volume.affine @ new_to_old))
    # Labels: on a 1 x 1 x 3 mm grid (each CT voxel split in 3 x 3 in-plane), so nearest sampling is exact.
    labels = np.asarray(nib.load(str(EXAMPLE_SEG)).dataobj)
    fine = np.repeat(np.repeat(labels, 3, axis=0), 3, axis=1)
    affine = example_volume.affine.copy()
    affine[:3, 0] /= 3
    affine[:3, 1] /= 3
    affine[:3, 3] -= affine[:3, 0] + affine[:3, 1]  # fine voxel (1, 1) is the centre of CT voxel (0, 0)
    nib.save(nib.Nifti1Image(fine, affine), str(tmp_path / "labels_fine.nii.gz"))

    assert _score(tmp_path, "--symptom", JAUNDICE) == 0
    reference = json.loads((tmp_path / "out" / "case.json").read_text())
    other = tmp_path / "other"
    assert main(["score", "--volume", str(tmp_path / "ct_reoriented.nrrd"), "--segmentation",
                 str(tmp_path / "labels_fine.nii.gz"), "--label-scheme", "totalsegmentator", "--symptom", JAUNDICE,
                 "--output", str(other / "case"), "--quiet"]) == 0
    moved = json.loads((other / "case.json").read_text())
    expected = {o["name"]: o for o in reference["organs"]}
    got = {o["name"]: o for o in moved["organs"]}
    assert set(got) == set(expected)
    for key in expected:
        assert got[key]["voxels"] == expected[key]["voxels"]
        assert got[key]["relevance"] == pytest.approx(expected[key]["relevance"], abs=1e-3)
        assert got[key]["image_score"] == pytest.approx(expected[key]["image_score"], abs=1e-3)


def test_several_symptoms_give_one_output_set_each(tmp_path):
    symptoms = tmp_path / "symptoms.txt"
    symptoms.write_text(f"# one per line\n{JAUNDICE}\n\nvomiting blood after heavy drinking\nknee joint pain\n")
    assert _score(tmp_path, "--symptoms-file", str(symptoms)) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(f"case_{n}.{ext}" for n in (1, 2, 3) for ext in ("json", "seg.nrrd"))
    reports = [json.loads((tmp_path / "out" / f"case_{n}.json").read_text()) for n in (1, 2, 3)]
    assert [r["symptom"] for r in reports] == [JAUNDICE, "vomiting blood after heavy drinking", "knee joint pain"]
    assert [r["in_domain"] for r in reports] == [True, True, False]


def test_batch_reports_a_failing_row_and_goes_on(tmp_path):
    manifest = tmp_path / "manifest.csv"
    data = REPO / "Testing" / "Data"
    # A file that is not an image fails its row when read (a missing one refuses the batch before any row runs).
    (tmp_path / "not_a_ct.nii.gz").write_bytes(b"not an image")
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["volume", "segmentation", "label_scheme", "symptom"])
        writer.writerow([data / "example_ct_sm.nii.gz", data / "example_ct_sm_seg.nii.gz", "totalsegmentator", JAUNDICE])
        writer.writerow(["not_a_ct.nii.gz", data / "example_ct_sm_seg.nii.gz", "totalsegmentator", JAUNDICE])
        writer.writerow([data / "example_ct_sm.nii.gz", data / "example_ct_sm_seg.nii.gz", "totalsegmentator",
                         "blood in my urine and pain in my left flank"])
    status = main(["batch", str(manifest), "--output-dir", str(tmp_path / "batch"), "--no-progress", "--workers", "0"])
    assert status == 1
    rows = list(csv.DictReader(open(tmp_path / "batch" / "summary.csv")))
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert "not_a_ct.nii.gz: not a readable NIfTI image" in rows[1]["error"]
    assert rows[2]["top_organ"] == "kidney_left"
    assert (tmp_path / "batch" / rows[0]["json"]).is_file() and (tmp_path / "batch" / rows[2]["segmentation_out"]).is_file()
    assert not any("0002_" in p.name for p in (tmp_path / "batch").iterdir())


@pytest.fixture(scope="module")
def dicom_labels(tmp_path_factory):
    """A BTCV label map on the DICOM series' grid: liver and spleen drawn as boxes from the CT's own values."""
    folder = tmp_path_factory.mktemp("dicom_labels")
    ct = read_volume(EXAMPLE_DICOM)
    labels = np.zeros(ct.shape, np.uint8)
    labels[120:260, 150:330, 3:17] = organs.ORGANS["liver"].btcv_label
    labels[300:400, 200:300, 5:15] = organs.ORGANS["spleen"].btcv_label
    write_volume(folder / "labels.nii.gz", Volume(labels, ct.affine))
    return ct, folder / "labels.nii.gz", labels


def test_dicom_input_and_dicom_seg_output(tmp_path, dicom_labels):
    import pydicom

    ct, label_path, labels = dicom_labels
    assert _score(tmp_path, "--symptom", "yellow skin and itching", "--dicom-seg", volume=EXAMPLE_DICOM,
                  segmentation=label_path, scheme="btcv") == 0
    seg = pydicom.dcmread(str(tmp_path / "out" / "case_seg.dcm"))
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 2
    source = pydicom.dcmread(str(next(EXAMPLE_DICOM.iterdir())))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    import highdicom as hd

    parsed = hd.seg.segread(str(tmp_path / "out" / "case_seg.dcm"))
    labels_by_segment = {}
    for number in (1, 2):
        description = parsed.get_segment_description(number)
        key = "liver" if description.segmented_property_type.value == "10200004" else "spleen"
        labels_by_segment[number] = key
    # Voxel counts in the DICOM SEG equal those of the masks.
    pixels = parsed.pixel_array
    for number, key in labels_by_segment.items():
        expected = int((labels == organs.ORGANS[key].btcv_label).sum())
        frames = [i for i, item in enumerate(parsed.PerFrameFunctionalGroupsSequence)
                  if item.SegmentIdentificationSequence[0].ReferencedSegmentNumber == number]
        assert int(pixels[frames].astype(bool).sum()) == expected
    report = json.loads((tmp_path / "out" / "case.json").read_text())
    assert {o["name"] for o in report["organs"]} == {"liver", "spleen"}


def _run_cli_subprocess(*argv, env=None):
    return subprocess.run([sys.executable, "-m", "MedSORALib", *argv], capture_output=True, text=True,
                          cwd=REPO, env=env)


@pytest.mark.parametrize("case,message", [
    ("missing_volume", "no such file"),
    ("empty_symptom", "empty"),
    ("empty_symptoms_file", "holds no symptom"),
    ("disjoint_segmentation", "does not overlap"),
    ("no_label_scheme", "needs its label scheme"),
    ("dicom_seg_from_nifti", "DICOM series folder"),
    ("output_is_folder", "is a folder"),
    ("two_d_volume", "2D image"),
])
def test_bad_input_gets_one_line_and_writes_nothing(tmp_path, case, message, capsys):
    import nibabel as nib

    extra, volume, segmentation, scheme = ["--symptom", JAUNDICE], EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    if case == "missing_volume":
        volume = inputs / "nothing.nii.gz"
    elif case == "empty_symptom":
        extra = ["--symptom", "   "]
    elif case == "empty_symptoms_file":
        (inputs / "s.txt").write_text("\n# nothing\n\n")
        extra = ["--symptoms-file", str(inputs / "s.txt")]
    elif case == "disjoint_segmentation":
        image = nib.load(str(EXAMPLE_SEG))
        far = image.affine.copy()
        far[:3, 3] += 900
        nib.save(nib.Nifti1Image(np.asarray(image.dataobj), far), str(inputs / "far.nii.gz"))
        segmentation = inputs / "far.nii.gz"
    elif case == "no_label_scheme":
        scheme = None
    elif case == "dicom_seg_from_nifti":
        extra += ["--dicom-seg"]
    elif case == "output_is_folder":
        (tmp_path / "out" / "case").mkdir(parents=True)
    elif case == "two_d_volume":
        write_volume(inputs / "flat.nrrd", Volume(np.random.rand(20, 20, 1).astype(np.float32), np.eye(4)))
        volume = inputs / "flat.nrrd"
    before_inputs = snapshot(inputs)
    before_data = snapshot(REPO / "Testing" / "Data")
    status = _score(tmp_path, *extra, volume=volume, segmentation=segmentation, scheme=scheme)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and err[0].startswith("medsora: error:") and message in err[0], err
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()] if (tmp_path / "out").exists() else []
    assert written == []
    assert snapshot(inputs) == before_inputs and snapshot(REPO / "Testing" / "Data") == before_data


def test_without_segmentation_the_error_says_how_to_give_masks(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no TotalSegmentator on PATH
    status = _score(tmp_path, "--symptom", JAUNDICE, segmentation=None, scheme=None)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "--segmentation" in err[0] and "TotalSegmentator" in err[0]


def test_totalsegmentator_is_run_when_installed(tmp_path, capsys, monkeypatch):
    # A stand-in TotalSegmentator executable that writes the example label map where asked (-o).
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "TotalSegmentator"
    tool.write_text(f"""#!{sys.executable}
import shutil, sys
args = sys.argv[1:]
assert "--roi_subset" in args and "--ml" in args and "--fast" in args
shutil.copy({str(EXAMPLE_SEG)!r}, args[args.index("-o") + 1])
""")
    tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert main(["score", "--volume", str(EXAMPLE_CT), "--symptom", JAUNDICE, "--output",
                 str(tmp_path / "out" / "case")]) == 0
    assert "running TotalSegmentator" in capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "case.json").read_text())
    assert {o["name"]: o["voxels"] for o in report["organs"]} == EXAMPLE_VOXELS
    assert report["inputs"]["segmentation"]["source"] == "TotalSegmentator"


def test_slicer_batch_script_runs_with_plain_python(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "MedSORA" / "Scripts" / "score.py"), "--volume", str(EXAMPLE_CT),
         "--segmentation", str(EXAMPLE_SEG), "--label-scheme", "totalsegmentator", "--symptom", JAUNDICE,
         "--output", str(tmp_path / "script" / "case"), "--quiet", "--no-passages"],
        capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert _score(tmp_path, "--symptom", JAUNDICE, "--no-passages") == 0
    a = json.loads((tmp_path / "script" / "case.json").read_text())
    b = json.loads((tmp_path / "out" / "case.json").read_text())
    assert [(o["name"], o["relevance"]) for o in a["organs"]] == [(o["name"], o["relevance"]) for o in b["organs"]]
    bad = subprocess.run([sys.executable, str(REPO / "MedSORA" / "Scripts" / "score.py"), "--volume", "nope.nii.gz",
                          "--segmentation", str(EXAMPLE_SEG), "--label-scheme", "totalsegmentator",
                          "--symptom", JAUNDICE, "--output", str(tmp_path / "bad" / "case")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no such file" in bad.stderr
