"""A symptom's files appear together or not at all: fsync, rename after all are written, JSON last, stale temps."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from MedSORALib import files
from MedSORALib import result_files as outputs
from MedSORALib.organs import ORGANS
from MedSORALib.scoring import OrganScore, SymptomResult

REPO = Path(__file__).resolve().parents[1]


def _result(masks) -> SymptomResult:
    """A scored symptom with fixed numbers (no model needed to test the writers)."""
    scores = [OrganScore(key=k, display_name=ORGANS[k].display_name, relevance=1.0 - n / len(masks),
                         text_prior=0.5, image_score=0.1, voxels=int(m.sum()), volume_ml=float(m.sum()) * 0.027)
              for n, (k, m) in enumerate(masks.items())]
    return SymptomResult(symptom="pale stools", in_domain=True, ood_score=0.9, laterality=None, organs=scores)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_the_set_is_renamed_after_every_file_is_synced_json_last(tmp_path, example_volume, example_masks,
                                                                  monkeypatch):
    events = []
    real_sync, real_replace = files._fsync_file, os.replace

    def sync(path):
        events.append(("fsync", Path(path).name))
        real_sync(path)

    def replace(src, dst):
        if not any(kind == "replace" for kind, _ in events):
            # Before the first rename every file of the set is complete under a temporary name.
            present = _names(tmp_path / "out")
            assert len(present) == 3 and all(files.temp_name_info(n) for n in present), present
        events.append(("replace", Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(files, "_fsync_file", sync)
    monkeypatch.setattr(os, "replace", replace)
    written = outputs.write_result(tmp_path / "out" / "case", _result(example_masks), example_volume, example_masks,
                                   preview=True)
    assert {k: p.name for k, p in written.items()} == {
        "segmentation": "case.seg.nrrd", "preview": "case.png", "json": "case.json"}
    renames = [name for kind, name in events if kind == "replace"]
    assert renames == ["case.seg.nrrd", "case.png", "case.json"]  # the JSON, the completion marker, last
    synced = [files.temp_name_info(name)["final"] for kind, name in events if kind == "fsync"]
    assert sorted(synced) == sorted(renames)
    first_rename = next(i for i, (kind, _) in enumerate(events) if kind == "replace")
    assert all(kind == "fsync" for kind, _ in events[:first_rename]) and len(events[:first_rename]) == 3
    assert _names(tmp_path / "out") == ["case.json", "case.png", "case.seg.nrrd"]
    mode = (tmp_path / "out" / "case.json").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


@pytest.mark.parametrize("failing", ["write_best_preview", "write_dicom_seg"])
def test_a_failure_after_the_first_file_leaves_nothing_and_keeps_the_previous_set(
        tmp_path, example_volume, example_masks, monkeypatch, failing):
    result = _result(example_masks)
    outputs.write_result(tmp_path / "out" / "case", result, example_volume, example_masks, preview=True)
    before = {name: (tmp_path / "out" / name).read_bytes() for name in _names(tmp_path / "out")}
    calls = []

    def broken(path, *args, **kwargs):
        calls.append(sorted(_names(tmp_path / "out")))
        raise RuntimeError("disk went away")

    monkeypatch.setattr(outputs, failing, broken)
    changed = _result({k: example_masks[k] for k in list(example_masks)[:3]})
    with pytest.raises(RuntimeError, match="disk went away"):
        outputs.write_result(tmp_path / "out" / "case", changed, example_volume, example_masks, preview=True,
                             dicom_series=tmp_path if failing == "write_dicom_seg" else None)
    # The segmentation had been written (under a temporary name) when the writer failed.
    assert len(calls) == 1 and any(files.temp_name_info(n) and n.endswith(".case.seg.nrrd") for n in calls[0])
    assert _names(tmp_path / "out") == sorted(before)
    assert {name: (tmp_path / "out" / name).read_bytes() for name in before} == before
    # With no previous set, nothing at all is left.
    with pytest.raises(RuntimeError, match="disk went away"):
        outputs.write_result(tmp_path / "fresh" / "case", changed, example_volume, example_masks, preview=True,
                             dicom_series=tmp_path if failing == "write_dicom_seg" else None)
    assert _names(tmp_path / "fresh") == []


def _host() -> str:
    return files._host()


def test_sigkill_before_the_renames_leaves_no_set_and_the_next_run_removes_stale_temps(
        tmp_path, example_volume, example_masks):
    from conftest import EXAMPLE_CT, EXAMPLE_SEG

    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO / "Testing")!r})
        from MedSORALib import result_files as outputs
        from MedSORALib.segmentation_io import read_organ_masks
        from MedSORALib.volume_io import read_volume
        from test_output_sets import _result

        volume = read_volume({str(EXAMPLE_CT)!r})
        masks = read_organ_masks({str(EXAMPLE_SEG)!r}, volume, "totalsegmentator")
        kill_at = int(sys.argv[1])
        count = 0
        real = os.replace

        def replace(src, dst):
            global count
            count += 1
            if count == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            real(src, dst)

        os.replace = replace
        outputs.write_result({str(out / "case")!r}, _result(masks), volume, masks, preview=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script, "1"], capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr
    left = _names(out)
    assert len(left) == 3 and all(files.temp_name_info(n) for n in left), left  # no file under a final name
    assert {files.temp_name_info(n)["final"] for n in left} == {"case.seg.nrrd", "case.png", "case.json"}
    # Killed between two renames: the segmentation is there, its JSON (the completion marker) is not.
    done = subprocess.run([sys.executable, "-c", script, "2"], capture_output=True, text=True, cwd=REPO, env=env)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "case.seg.nrrd" in _names(out) and "case.json" not in _names(out)
    assert not set(left) & set(_names(out))  # the second run removed the first one's stale temps

    # Other files next to them: a temp of a live writer (this process), an unrelated dot file, a user file
    # named like ours but not in our pattern, and a temp of a live process older than a day.
    live = out / f".medsora-tmp.{_host()}.{os.getpid()}.abc123.other.json"
    old = out / f".medsora-tmp.{_host()}.1.zz9.old.json"
    keep = [live, out / ".medsora-tmp-notes.txt", out / "medsora-tmp.x.1.a.b"]
    for path in [*keep, old]:
        path.write_text("x")
    os.utime(old, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    stale = [n for n in _names(out) if files.temp_name_info(n) and n not in (live.name, old.name)]
    assert {files.temp_name_info(n)["final"] for n in stale} == {"case.png", "case.json"}  # not renamed yet

    files._CLEANED.discard(os.path.realpath(out))
    outputs.write_result(out / "case", _result(example_masks), example_volume, example_masks, preview=True)
    assert _names(out) == sorted(["case.json", "case.png", "case.seg.nrrd", *(p.name for p in keep)])


def test_only_our_stale_pattern_is_recognised(tmp_path):
    assert files.temp_name_info(f".medsora-tmp.{_host()}.123.a_b9.case.seg.nrrd") == {
        "host": _host(), "pid": 123, "final": "case.seg.nrrd"}
    for name in ("case.seg.nrrd", ".case-abc.seg.nrrd", ".medsora-tmp.h.notapid.a.x", "medsora-tmp.h.1.a.x"):
        assert files.temp_name_info(name) is None
    other_host = tmp_path / ".medsora-tmp.some-other-host.1.abc.case.json"
    other_host.write_text("x")
    assert not files.is_stale(other_host)  # another machine's writer may still be running
    os.utime(other_host, (time.time() - 2 * 86400,) * 2)
    assert files.is_stale(other_host)
    assert socket.gethostname()  # the host part comes from it
