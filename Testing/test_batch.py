"""``medsora batch`` on Dask distributed: a 12-row manifest over three CTs, resuming, a killed worker, the lock,
and the single-process path (unexpected exceptions, spreadsheet-safe summary, --force)."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from distributed.diagnostics.plugin import WorkerPlugin

from conftest import DATA, EXAMPLE_CT, EXAMPLE_DICOM, EXAMPLE_SEG, EXAMPLE_VOXELS, snapshot
from MedSORALib.batch.lock import BatchLock, BatchLockedError
from MedSORALib.batch.summary import escape_cell, report_fields, write_summary
from MedSORALib.cli import main
from MedSORALib.volume_io import Volume, read_volume, write_volume

REPO = Path(__file__).resolve().parents[1]
DICOM_SEG = DATA / "example_ct_dicom_seg.nii.gz"
#: Organs in the DICOM series' label map (TotalSegmentator labels; kidneys, gallbladder, left adrenal lie outside).
DICOM_ORGANS = {"spleen", "liver", "stomach", "pancreas", "adrenal_gland_right", "aorta", "inferior_vena_cava",
                "portal_vein_and_splenic_vein"}
JAUNDICE = "painless jaundice with pale stools and weight loss"
LEFT_FLANK = "blood in my urine and pain in my left flank"
SYMPTOMS_A = [JAUNDICE, LEFT_FLANK, "vomiting blood after heavy drinking", "pain under the right ribs after fatty meals"]
SYMPTOMS_B = [JAUNDICE, LEFT_FLANK, "burning pain in the upper belly after meals"]
SYMPTOMS_C = ["vomiting blood after heavy drinking", JAUNDICE, "left upper quadrant pain after minor trauma"]
#: Rows of the 12-row manifest that must fail: a .seg.nrrd with an out-of-range layer index (found only when read;
#: an empty symptom refuses the whole batch before any row runs, see test_rows_are_checked_before_any_row_runs).
BAD_ROWS = {5}


def _reoriented_copy(folder: Path) -> tuple[Path, Path]:
    """The example CT and its labels with axes permuted and flipped: CT as NRRD (LPS on disk), labels as NIfTI."""
    import nibabel as nib

    ct = read_volume(EXAMPLE_CT)
    labels = np.asarray(nib.load(str(EXAMPLE_SEG)).dataobj)
    new_to_old = np.array([[0, 0, 1, 0], [-1, 0, 0, ct.shape[1] - 1], [0, 1, 0, 0], [0, 0, 0, 1]], float)

    def move(a):
        return np.ascontiguousarray(np.transpose(a, (1, 2, 0))[::-1])

    write_volume(folder / "ct_reoriented.nrrd", Volume(move(ct.array).astype(np.int16), ct.affine @ new_to_old))
    write_volume(folder / "labels_reoriented.nii.gz", Volume(move(labels).astype(np.uint8), ct.affine @ new_to_old))
    return folder / "ct_reoriented.nrrd", folder / "labels_reoriented.nii.gz"


def _bad_layer_seg(folder: Path) -> Path:
    """A two-layer .seg.nrrd of the example CT whose first segment names layer 5 (out of range)."""
    import nrrd

    from MedSORALib.segmentation_io import write_seg_nrrd
    from MedSORALib.segmentation_io import read_organ_masks

    ct = read_volume(EXAMPLE_CT)
    masks = read_organ_masks(EXAMPLE_SEG, ct, "totalsegmentator")
    write_seg_nrrd(folder / "one_layer.seg.nrrd", masks, ct)
    data, header = nrrd.read(str(folder / "one_layer.seg.nrrd"))
    assert data.ndim == 3 and header["Segment0_Layer"] == "0"
    layers = np.stack([data, data])
    header.update({"dimension": 4, "sizes": np.array(layers.shape), "kinds": ["list", "domain", "domain", "domain"],
                   "space directions": np.vstack([np.full(3, np.nan), header["space directions"]]),
                   "Segment0_Layer": "5"})
    nrrd.write(str(folder / "bad_layer.seg.nrrd"), layers, header)
    return folder / "bad_layer.seg.nrrd"


def _write_manifest(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["volume", "segmentation", "label_scheme", "symptom"])
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """The 12-row manifest over three CTs (example, re-oriented copy, DICOM series) with row 5 bad."""
    folder = tmp_path_factory.mktemp("cohort")
    ct_b, seg_b = _reoriented_copy(folder)
    bad_seg = _bad_layer_seg(folder)
    a = (EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator")
    b = ("ct_reoriented.nrrd", "labels_reoriented.nii.gz", "totalsegmentator")  # relative to the manifest
    c = (EXAMPLE_DICOM, DICOM_SEG, "totalsegmentator")
    rows = [(*a, SYMPTOMS_A[0]), (*b, SYMPTOMS_B[0]), (*c, SYMPTOMS_C[0]), (*a, SYMPTOMS_A[1]),
            (EXAMPLE_CT, bad_seg, "", JAUNDICE),  # row 5: IndexError inside the .seg.nrrd reader
            (*b, SYMPTOMS_B[1]), (*a, SYMPTOMS_A[2]), (*c, SYMPTOMS_C[1]), (*b, SYMPTOMS_B[2]), (*a, SYMPTOMS_A[3]),
            (*c, SYMPTOMS_C[2]), (*c, "pain in the left upper belly")]
    manifest = _write_manifest(folder / "cohort.csv", rows)
    return {"folder": folder, "manifest": manifest, "rows": rows, "ct_b": ct_b, "seg_b": seg_b}


def _summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _check_cohort_outputs(out: Path, rows: list[dict], cohort) -> None:
    """Every row once; 11 ok with complete files, the bad row failed; nothing half-written left behind."""
    assert [int(r["row"]) for r in rows] == list(range(1, 13))
    assert {int(r["row"]) for r in rows if r["status"] == "failed"} == BAD_ROWS
    assert all(r["status"] in ("ok", "skipped") for r in rows if int(r["row"]) not in BAD_ROWS)
    assert all(r["error"] for r in rows if r["status"] == "failed")
    expected = {"summary.csv", "summary.json", "summary.parquet", ".medsora-batch"}
    for row in rows:
        if row["status"] == "failed":
            assert row["json"] == "" and not list(out.glob(f"{int(row['row']):04d}_*"))
            continue
        expected |= set(row["files"].split("; "))
        report = json.loads((out / row["json"]).read_text())
        assert report["symptom"] == " ".join(row["symptom"].split())
        assert report["organs"][0]["name"] == row["top_organ"]
        assert report["organs"][0]["relevance"] == pytest.approx(float(row["top_relevance"]), abs=1e-4)
        assert row["scope"] == report["scope"] != ""
        assert row["top_diagnosis"] == (report["differential"][0]["diagnosis"] if report["differential"] else "")
        voxels = {o["name"]: o["voxels"] for o in report["organs"]}
        if row["volume"].endswith("example_ct_dicom"):
            assert set(voxels) == DICOM_ORGANS
        else:  # the example CT and its re-oriented copy hold the same organs, voxel for voxel
            assert voxels == EXAMPLE_VOXELS
    assert {p.name for p in out.iterdir()} == expected
    assert not any((out / ".medsora-batch" / "staging").glob("*"))
    assert not (out / ".medsora-batch" / "lock").exists()
    by_row = {int(r["row"]): r for r in rows}
    # The re-oriented copy scores like the original; the left flank points to the left kidney on both.
    for row_a, row_b in ((1, 2), (4, 6)):
        assert by_row[row_a]["top_organ"] == by_row[row_b]["top_organ"]
        assert float(by_row[row_a]["top_relevance"]) == pytest.approx(float(by_row[row_b]["top_relevance"]),
                                                                      abs=1e-3)
    assert by_row[4]["top_organ"] == by_row[6]["top_organ"] == "kidney_left"


@pytest.fixture(scope="module")
def first_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "batch"
    argv = ["batch", str(cohort["manifest"]), "--output-dir", str(out), "--workers", "2", "--dashboard-address", "127.0.0.1:0",
            "--no-passages", "--no-progress"]
    status = main(argv)
    return out, status, argv


def test_two_workers_score_eleven_rows_and_fail_one(first_run, cohort):
    import pyarrow.parquet as pq

    out, status, _ = first_run
    assert status == 1
    rows = _summary(out)
    assert [r["status"] for r in rows].count("ok") == 11
    _check_cohort_outputs(out, rows, cohort)
    assert all(r["worker"].startswith("tcp://") for r in rows if r["status"] == "ok")
    assert all(float(r["elapsed_s"]) > 0 for r in rows if r["status"] == "ok")
    table = pq.read_table(out / "summary.parquet").to_pylist()
    assert [(t["row"], t["status"], t["top_organ"] or "") for t in table] == \
        [(int(r["row"]), r["status"], r["top_organ"]) for r in rows]
    assert [(t["scope"] or "", t["top_diagnosis"] or "") for t in table] == \
        [(r["scope"], r["top_diagnosis"]) for r in rows]
    assert any(r["top_diagnosis"] for r in rows)  # the jaundice rows have a differential
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows"], summary["ok"], summary["failed"], summary["skipped"]) == (12, 11, 1, 0)


def test_rerun_skips_the_eleven_rows_done(first_run, cohort, capsys):
    out, _, argv = first_run
    done = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name[:4].isdigit()}
    assert len(done) == 22
    capsys.readouterr()
    assert main(argv) == 1
    printed = capsys.readouterr()
    assert "dashboard http://127.0.0.1:" in printed.err  # this machine only
    assert "0 ok, 11 skipped, 1 failed of 12 rows" in printed.out
    rows = _summary(out)
    assert [r["status"] for r in rows].count("skipped") == 11
    _check_cohort_outputs(out, rows, cohort)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.name[:4].isdigit()} == done


class HangOnce(WorkerPlugin):
    """Worker plugin: the first worker to reach the given row writes its pid to a file and waits to be killed."""

    name = "medsora-test-hang-once"

    def __init__(self, flag: str, row: int):
        self.flag, self.row = flag, row

    def setup(self, worker):
        import MedSORALib.batch.rows as work

        original, flag, target = work._score_row, self.flag, self.row

        def score_row(row, *args, **kwargs):
            if row.number == target and not os.path.exists(flag):
                note = f"{flag}.{os.getpid()}"
                with open(note, "w") as handle:
                    json.dump({"pid": os.getpid(), "address": worker.address}, handle)
                try:
                    os.link(note, flag)  # appears complete, once
                except FileExistsError:
                    pass
                else:
                    time.sleep(900)
            return original(row, *args, **kwargs)

        work._score_row = score_row


def test_killed_worker_and_a_concurrent_batch(cohort, tmp_path, capsys):
    import cloudpickle
    from distributed import Client, LocalCluster

    # The workers need not import this test module: the plugin travels by value.
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    request_cleanup = cloudpickle.unregister_pickle_by_value
    out = tmp_path / "batch"
    flag = tmp_path / "hanging.json"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=40) as cluster, Client(cluster) as client:
        register = getattr(client, "register_plugin", None) or client.register_worker_plugin
        register(HangOnce(str(flag), 4))  # row 4: the second row of the example CT
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        batch = subprocess.Popen(
            [sys.executable, "-m", "MedSORALib", "batch", str(cohort["manifest"]), "--output-dir", str(out),
             "--scheduler", cluster.scheduler_address, "--no-passages", "--no-progress"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            deadline = time.monotonic() + 600
            while not flag.exists():
                assert batch.poll() is None, batch.communicate()
                assert time.monotonic() < deadline, "no worker reached row 4"
                time.sleep(0.2)
            hung = json.loads(flag.read_text())
            # While the first batch holds the folder, a second one is refused and writes nothing there.
            capsys.readouterr()
            assert main(["batch", str(cohort["manifest"]), "--output-dir", str(out), "--workers", "0"]) == 2
            error = capsys.readouterr().err
            assert error.count("\n") == 1 and "another medsora batch is writing to" in error
            assert f"pid {batch.pid}" in error
            os.kill(hung["pid"], signal.SIGKILL)
            stdout, stderr = batch.communicate(timeout=600)
        finally:
            if batch.poll() is None:
                batch.kill()
            request_cleanup(sys.modules[__name__])
    assert batch.returncode == 1, stderr
    assert "11 ok, 0 skipped, 1 failed of 12 rows" in stdout
    rows = _summary(out)
    _check_cohort_outputs(out, rows, cohort)
    records = {n: json.loads((out / ".medsora-batch" / "rows" / f"{n:06d}.json").read_text())
               for n in range(1, 13) if n not in BAD_ROWS}
    # Row 1 was finished by the killed worker before it hung and was not redone; row 4 was done elsewhere.
    assert records[1]["pid"] == hung["pid"] and rows[0]["worker"] == hung["address"]
    assert records[4]["pid"] != hung["pid"]
    assert len({r["run_id"] for r in records.values()}) == 1


def _one_row(tmp_path, symptom=JAUNDICE, ct=EXAMPLE_CT, seg=EXAMPLE_SEG):
    return _write_manifest(tmp_path / "one.csv", [(ct, seg, "totalsegmentator", symptom)])


def test_a_second_batch_is_refused_and_a_stale_lock_is_taken_over(tmp_path, capsys):
    out = tmp_path / "batch"
    manifest = _one_row(tmp_path)
    with BatchLock(out):
        with pytest.raises(BatchLockedError, match="another medsora batch is writing to"):
            BatchLock(out).acquire()
        capsys.readouterr()
        assert main(["batch", str(manifest), "--output-dir", str(out), "--no-passages"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("medsora: error: another medsora batch") and err.count("\n") == 1
        assert not (out / "summary.csv").exists()
    # A lock file left by a process that no longer exists does not block the folder.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = out / ".medsora-batch" / "lock"
    lock.write_text(json.dumps({"host": os.uname().nodename, "pid": int(dead.stdout), "started": time.time()}))
    assert main(["batch", str(manifest), "--output-dir", str(out), "--no-passages", "--no-progress"]) == 0
    assert _summary(out)[0]["status"] == "ok" and not lock.exists()


def test_bad_manifest_exits_2_and_writes_nothing(tmp_path, capsys):
    manifest = tmp_path / "m.csv"
    manifest.write_text("volume,symptom\nct.nii.gz,pain\n")
    assert main(["batch", str(manifest), "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medsora: error: ") and "lacks the column(s) segmentation, label_scheme" in err
    assert not (tmp_path / "out").exists()
    assert main(["batch", str(_one_row(tmp_path)), "--output-dir", str(tmp_path / "out"), "--workers", "-1"]) == 2
    assert not (tmp_path / "out").exists()


def test_an_output_that_would_replace_an_input_is_refused_before_any_work(tmp_path, capsys, monkeypatch,
                                                                         example_volume, example_masks):
    import shutil

    import MedSORALib.batch.runner as runner
    from MedSORALib.segmentation_io import write_seg_nrrd

    def never(*args, **kwargs):
        raise AssertionError("no model may be fingerprinted before the outputs are checked")

    monkeypatch.setattr(runner, "model_version", never)
    folder = tmp_path / "cohort"
    folder.mkdir()
    shutil.copy(EXAMPLE_CT, folder / "ct.nii.gz")
    # Row 1 of ct.nii.gz writes 0001_ct.seg.nrrd: here that name is the row's own segmentation.
    write_seg_nrrd(folder / "0001_ct.seg.nrrd", example_masks, example_volume)
    own_seg = _write_manifest(folder / "cohort.csv", [("ct.nii.gz", "0001_ct.seg.nrrd", "", JAUNDICE)])
    # A manifest named like the summary, in the output folder (given through a link to it).
    summary = _write_manifest(folder / "summary.csv", [(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", JAUNDICE)])
    (tmp_path / "link").symlink_to(folder, target_is_directory=True)
    for manifest, out, replaced in ((own_seg, folder, folder / "0001_ct.seg.nrrd"),
                                    (summary, tmp_path / "link", folder / "summary.csv")):
        before = snapshot(folder)
        assert main(["batch", str(manifest), "--output-dir", str(out), "--workers", "0", "--no-passages"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("medsora: error: --output-dir: the output "), err
        assert err[0].endswith(f"would replace the input {replaced}; choose another --output-dir")
        assert snapshot(folder) == before  # nothing written, no input changed (bytes and mtimes)
    with pytest.raises(AssertionError, match="no model may be fingerprinted"):  # another folder passes the check
        main(["batch", str(own_seg), "--output-dir", str(tmp_path / "out"), "--workers", "0", "--no-passages"])


def test_each_input_is_hashed_once_and_its_checksum_recorded(tmp_path, monkeypatch):
    import hashlib
    from collections import Counter

    import MedSORALib.cases as cases
    import MedSORALib.files as files

    hashed = Counter()
    original = files.file_sha256

    def counted(path):
        hashed[Path(path)] += 1
        return original(path)

    monkeypatch.setattr(files, "file_sha256", counted)
    monkeypatch.setattr(cases, "file_sha256", counted)
    out = tmp_path / "out"
    assert main(["batch", str(_one_row(tmp_path)), "--output-dir", str(out), "--workers", "0", "--no-passages",
                 "--no-progress"]) == 0
    assert (hashed[EXAMPLE_CT], hashed[EXAMPLE_SEG]) == (1, 1)
    expected = {"volume": hashlib.sha256(EXAMPLE_CT.read_bytes()).hexdigest(),
                "segmentation": hashlib.sha256(EXAMPLE_SEG.read_bytes()).hexdigest()}
    record = json.loads((out / ".medsora-batch" / "rows" / "000001.json").read_text())
    assert record["inputs_sha256"] == expected
    report = json.loads((out / record["json"]).read_text())
    assert {k: report["inputs"][k]["sha256"] for k in expected} == expected


def test_unexpected_exception_in_a_row_fails_only_that_row(tmp_path, monkeypatch):
    import MedSORALib.batch.rows as work

    original = work._score_row

    def flaky(row, *args, **kwargs):
        if row.number == 2:
            raise RuntimeError("disk quota exceeded\nsecond line")
        return original(row, *args, **kwargs)

    monkeypatch.setattr(work, "_score_row", flaky)
    manifest = _write_manifest(tmp_path / "m.csv", [(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", s)
                                                     for s in (JAUNDICE, LEFT_FLANK, "vomiting blood")])
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--output-dir", str(out), "--no-passages", "--no-progress"]) == 1
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[1]["error"] == "unexpected RuntimeError: disk quota exceeded second line"
    assert rows[0]["worker"] and not list(out.glob("0002_*"))
    assert not (out / ".medsora-batch" / "rows" / "000002.json").exists()


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_escape_cell_defuses_formulas(start):
    assert escape_cell(f"{start}HYPERLINK(\"http://example.org\")") == f"'{start}HYPERLINK(\"http://example.org\")"


def test_escape_cell_keeps_plain_values():
    assert [escape_cell(v) for v in ("liver", 0.5, 3, True, None, ["a.json", "a.seg.nrrd"], "a=b")] == \
        ["liver", "0.5", "3", "true", "", "a.json; a.seg.nrrd", "a=b"]


def test_report_fields_are_escaped_in_summary_csv(tmp_path):
    report = tmp_path / "0001_x.json"
    report.write_text(json.dumps({"scope": "modelled", "differential": [{"diagnosis": "=cmd|' /C calc'!A0"}]}))
    record = {"row": 1, "symptom": "pain", "status": "ok", **report_fields(report)}
    assert record["scope"] == "modelled" and record["top_diagnosis"] == "=cmd|' /C calc'!A0"
    assert report_fields(tmp_path / "missing.json") == {"scope": None, "top_diagnosis": None}
    write_summary(tmp_path, [record])
    rows = _summary(tmp_path)
    assert (rows[0]["scope"], rows[0]["top_diagnosis"]) == ("modelled", "'=cmd|' /C calc'!A0")
    assert json.loads((tmp_path / "summary.json").read_text())["results"][0]["top_diagnosis"] == "=cmd|' /C calc'!A0"


def test_formula_symptom_is_inert_in_summary_csv(tmp_path):
    import pyarrow.parquet as pq

    symptom = '=HYPERLINK("http://example.org","jaundice")'
    out = tmp_path / "out"
    assert main(["batch", str(_one_row(tmp_path, symptom)), "--output-dir", str(out), "--no-passages",
                 "--no-progress"]) == 0
    rows = _summary(out)
    assert rows[0]["symptom"] == "'" + symptom and rows[0]["status"] == "ok"
    assert pq.read_table(out / "summary.parquet").to_pylist()[0]["symptom"] == symptom
    assert json.loads((out / "summary.json").read_text())["results"][0]["symptom"] == symptom


def test_changed_input_or_force_redoes_a_row(tmp_path):
    import shutil

    seg = tmp_path / "seg.nii.gz"
    shutil.copy(EXAMPLE_SEG, seg)
    manifest = _one_row(tmp_path, LEFT_FLANK, seg=seg)
    out = tmp_path / "out"
    argv = ["batch", str(manifest), "--output-dir", str(out), "--no-passages", "--no-progress"]
    assert main(argv) == 0
    report = out / _summary(out)[0]["json"]
    stamp = report.stat().st_mtime_ns
    assert main(argv) == 0 and _summary(out)[0]["status"] == "skipped" and report.stat().st_mtime_ns == stamp
    assert main([*argv, "--force"]) == 0 and _summary(out)[0]["status"] == "ok"
    stamp = report.stat().st_mtime_ns
    # A segmentation whose content changed (the left kidney removed) is scored again.
    import nibabel as nib

    image = nib.load(str(seg))
    labels = np.asarray(image.dataobj).copy()
    labels[labels == 3] = 0
    nib.save(nib.Nifti1Image(labels, image.affine), str(seg))
    assert main(argv) == 0
    row = _summary(out)[0]
    assert row["status"] == "ok" and report.stat().st_mtime_ns != stamp
    assert "kidney_left" not in {o["name"] for o in json.loads(report.read_text())["organs"]}


def test_slicer_batch_script_runs_in_one_process_with_plain_python(tmp_path):
    manifest = _write_manifest(tmp_path / "m.csv", [(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", s)
                                                     for s in (JAUNDICE, LEFT_FLANK)])
    script = REPO / "MedSORA" / "Scripts" / "batch.py"
    done = subprocess.run([sys.executable, str(script), str(manifest), "--output-dir", str(tmp_path / "out"),
                           "--no-passages", "--no-progress"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = _summary(tmp_path / "out")
    assert [(r["status"], r["top_organ"]) for r in rows][1] == ("ok", "kidney_left")
    assert len({r["worker"] for r in rows}) == 1 and not rows[0]["worker"].startswith("tcp://")
    bad = subprocess.run([sys.executable, str(script), str(tmp_path / "nope.csv"), "--output-dir",
                          str(tmp_path / "bad")], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "no such manifest file" in bad.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("cell, expected", [
    ("pain;=HYPERLINK(\"http://example.org\")", "pain;'=HYPERLINK(\"http://example.org\")"),
    ("pain; =1+1", "pain; '=1+1"), ("a,+1", "a,'+1"), ("a\t@SUM(1)", "a\t'@SUM(1)"), ("a|-1", "a|'-1"),
    ("=1;=2", "'=1;'=2"), ("a=b;c", "a=b;c"), ("x - y", "x - y")])
def test_escape_cell_defuses_formulas_after_a_separator(cell, expected):
    assert escape_cell(cell) == expected


def test_rows_are_checked_before_any_row_runs(tmp_path, capsys, monkeypatch):
    import MedSORALib.batch.runner as runner

    def never(*args, **kwargs):
        raise AssertionError("nothing may run or be walked before the rows are checked")

    monkeypatch.setattr(runner, "model_version", never)
    monkeypatch.setattr(Path, "rglob", never)
    monkeypatch.setattr(os, "walk", never)
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    good = (EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", JAUNDICE)
    cases = {
        "empty": ((EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", "   "), "row 2: the symptom is empty"),
        "long": ((EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", "pain " * 401),
                 "row 2: the symptom is 2004 characters long; the limit is 2000"),
        "root": (("/", EXAMPLE_SEG, "totalsegmentator", JAUNDICE), "row 2: /: folder holds no DICOM image series"),
        "fifo": ((fifo, EXAMPLE_SEG, "totalsegmentator", JAUNDICE),
                 f"row 2: {fifo}: is a named pipe (FIFO), not a regular file"),
        "missing": ((tmp_path / "none.nii.gz", EXAMPLE_SEG, "totalsegmentator", JAUNDICE),
                    f"row 2: {tmp_path / 'none.nii.gz'}: no such CT file or folder"),
        "scheme": ((EXAMPLE_CT, EXAMPLE_SEG, "nonsense", JAUNDICE), "row 2: unknown label scheme 'nonsense'"),
    }
    for name, (row, message) in cases.items():
        manifest = _write_manifest(tmp_path / f"{name}.csv", [good, row])
        out = tmp_path / f"out_{name}"
        assert main(["batch", str(manifest), "--output-dir", str(out), "--workers", "0"]) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"medsora: error: {manifest}: ") and message in err[0], err
        assert not out.exists()


def test_dashboard_and_scheduler_options_give_one_line_before_anything_is_created(tmp_path, capsys):
    from MedSORALib.cli import build_parser

    manifest = _one_row(tmp_path)
    out = tmp_path / "out"
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text('{"type": "Scheduler"}')
    for extra, message in (
            (["--workers", "2", "--dashboard-address", "not-an-address"],
             "--dashboard-address not-an-address: give [HOST]:PORT"),
            (["--workers", "2", "--dashboard-address", "no-such-host.invalid:8787"],
             "the host no-such-host.invalid does not resolve"),
            (["--scheduler", "/etc/passwd"], "--scheduler /etc/passwd: not a Dask scheduler file"),
            (["--scheduler", str(scheduler_file)], "not a Dask scheduler file"),
            (["--scheduler", "tcp://host name:8786"], "neither a scheduler address"),
            (["--scheduler", str(tmp_path)], "a folder, not a scheduler file")):
        assert main(["batch", str(manifest), "--output-dir", str(out), *extra]) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("medsora: error: ") and message in err[0], err
        assert not out.exists()
    args = build_parser().parse_args(["batch", str(manifest), "--output-dir", str(out)])
    assert args.dashboard_address == "127.0.0.1:8787"


def test_the_dashboard_listens_on_the_loopback_address_by_default(tmp_path):
    import socket

    from MedSORALib.batch.runner import Mode, _client

    mode = Mode(workers=1)
    assert mode.dashboard_address.startswith("127.0.0.1:")
    mode.dashboard_address = mode.dashboard_address.rsplit(":", 1)[0] + ":0"  # the default host, a free port
    client, cluster = _client(mode, lambda message: None)
    try:
        link = client.dashboard_link
        assert link.startswith("http://127.0.0.1:"), link
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")  # the scheduler too
        port = int(link.split(":")[2].split("/")[0])
        outside = [a for a in {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
                   if not a.startswith("127.")]
        for address in outside:  # the machine's other addresses do not reach it
            with socket.socket() as probe:
                probe.settimeout(5)
                assert probe.connect_ex((address, port)) != 0, address
    finally:
        client.close()
        cluster.close()


def test_an_output_dir_inside_an_input_dicom_folder_is_refused_up_front(tmp_path, capsys):
    import shutil

    series = tmp_path / "series"
    shutil.copytree(EXAMPLE_DICOM, series)
    manifest = _write_manifest(tmp_path / "m.csv", [(series, DICOM_SEG, "totalsegmentator", JAUNDICE)])
    before = snapshot(series)
    assert main(["batch", str(manifest), "--output-dir", str(series / "out"), "--workers", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"would be written inside the input folder {series}" in err[0], err
    assert snapshot(series) == before and not (series / "out").exists()


def test_progress_counts_rows_inside_a_ct_group(tmp_path, monkeypatch):
    import io

    import MedSORALib.batch.rows as work
    from MedSORALib.batch.manifest import group_rows, read_manifest
    from MedSORALib.batch.runner import Mode, ProgressReporter, run_groups
    from MedSORALib.batch.rows import BatchOptions
    from MedSORALib.session import ScoringSettings

    original = work._score_row

    def slow(row, *args, **kwargs):
        time.sleep(0.6)
        return original(row, *args, **kwargs)

    monkeypatch.setattr(work, "_score_row", slow)
    symptoms = [JAUNDICE, LEFT_FLANK, "vomiting blood", "pain under the right ribs", "pale stools"]
    manifest = _write_manifest(tmp_path / "m.csv", [(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", s)
                                                     for s in symptoms])
    rows = read_manifest(manifest)
    out = tmp_path / "out"
    out.mkdir()
    stream = io.StringIO()
    progress = ProgressReporter(len(rows), stream=stream, interval=0.0)
    progress.watch(out, [r.number for r in rows], poll_s=0.1)
    options = BatchOptions(output_dir=str(out), run_id="r1", model_version="v",
                           scoring=ScoringSettings(passages=False))
    try:
        run_groups(group_rows(rows), options, Mode(workers=0), progress, progress.say)
    finally:
        progress.close()
    counts = [int(m) for m in re.findall(r"medsora batch: (\d+)/5 rows", stream.getvalue())]
    # One CT group: rows are counted as they are scored, before the group reports at its end.
    assert any(0 < c < 5 for c in counts), stream.getvalue()
    assert counts == sorted(counts) and counts[-1] == 5
