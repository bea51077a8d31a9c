"""The case and scoring behind ``medsora serve`` (:mod:`MedSORALib.web.session`), without a browser."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG, EXAMPLE_VOXELS, snapshot

SYMPTOMS = ["painless jaundice with pale stools", "blood in my urine and pain in my left flank"]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    from MedSORALib.web.session import WebSession

    session = WebSession(tmp_path_factory.mktemp("served"))
    session.load(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", log=lambda message: None)
    return session


def test_scores_equal_score_volume_and_files_are_written(session, example_volume, example_masks):
    from MedSORALib.scoring import score_volume

    progress = []
    scored = session.score(SYMPTOMS, progress=lambda fraction, message: progress.append(fraction))
    reference = score_volume(example_volume, example_masks, SYMPTOMS, models=session.models())
    assert [s.result.symptom for s in scored] == SYMPTOMS
    for item, expected in zip(scored, reference):
        assert [o.key for o in item.result.organs] == [o.key for o in expected.organs]
        assert [o.relevance for o in item.result.organs] == pytest.approx([o.relevance for o in expected.organs],
                                                                          abs=1e-6)
        assert {o.key: o.voxels for o in item.result.organs} == EXAMPLE_VOXELS
        report = json.loads(item.files["json"].read_text(encoding="utf-8"))
        assert [o["name"] for o in report["organs"]] == [o.key for o in expected.organs]
        assert report["inputs"]["segmentation"]["label_scheme"] == "totalsegmentator"
        assert item.files["segmentation"].read_bytes().startswith(b"NRRD")
    assert [p.name for p in sorted((session.output_dir / "run1").iterdir())] == [
        "medsora_1.json", "medsora_1.seg.nrrd", "medsora_2.json", "medsora_2.seg.nrrd"]
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_a_case_is_measured_once_and_not_encoded_at_image_weight_0(session):
    case = session.case
    assert case is not None and not case.encoded
    scored = session.score(SYMPTOMS[:1])
    assert session.case is case and not case.encoded
    assert scored[0].files["json"].parent.name == "run2"
    session.load(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", log=lambda message: None)
    assert session.case is case  # the same content: taken from the scoring session, not read again


def test_table_rows_and_passages_follow_the_result(session):
    from MedSORALib.web.session import result_passages, result_rows

    result = session.score(SYMPTOMS[:1])[0].result
    rows = result_rows(result)
    assert [r["key"] for r in rows] == [o.key for o in result.organs]
    assert rows[0]["organ"] == result.organs[0].display_name[:1].upper() + result.organs[0].display_name[1:]
    assert [r["relevance"] for r in rows] == [round(o.relevance, 3) for o in result.organs]
    assert [r["volume_ml"] for r in rows] == [round(o.volume_ml, 1) for o in result.organs]
    # The findings column holds each organ's abnormal findings (measurement and reference range), else nothing.
    for row, organ in zip(rows, result.organs):
        abnormal = [f["text"] for f in organ.findings if f["abnormal"]]
        assert row["findings"] == "; ".join(abnormal)
    assert any(row["findings"] for row in rows) and not all(row["findings"] for row in rows)
    groups = result_passages(result)
    assert result.in_domain and len(groups) == len([k for k, v in result.passages.items() if v]) > 0
    assert groups[0]["organ"] == rows[0]["organ"]
    assert [p["id"] for p in groups[0]["items"]] == [p["id"] for p in result.passages[result.organs[0].key]]


def test_bad_paths_keep_the_current_case(session, tmp_path):
    from MedSORALib.errors import InputFileError, MedSORAError

    case = session.case
    before = snapshot(EXAMPLE_CT.parent)
    with pytest.raises(InputFileError, match="no such CT"):
        session.load(tmp_path / "missing.nii.gz")
    with pytest.raises(InputFileError, match="no such segmentation"):
        session.load(EXAMPLE_CT, tmp_path / "missing_seg.nii.gz", "totalsegmentator")
    with pytest.raises(MedSORAError):
        session.load(EXAMPLE_CT, EXAMPLE_SEG, None)  # a label map needs its label scheme
    assert session.case is case
    assert snapshot(EXAMPLE_CT.parent) == before
    with pytest.raises(MedSORAError):
        session.score(["   "])


# -- who may reach the server and what the page may load (MedSORALib.web.access, no browser) -----------

def test_host_origin_and_token_rules():
    from MedSORALib.web.access import AccessGuard, machine_names

    guard = AccessGuard("127.0.0.1", token="t0k3n")
    guard.port = 8123
    for host in ("127.0.0.1:8123", "localhost:8123", "[::1]:8123", "LOCALHOST:8123", "localhost",
                 f"{sorted(machine_names())[0]}:8123"):
        assert guard.host_allowed(host), host
    for host in ("evil.example:8123", "127.0.0.1:8124", "127.0.0.1.nip.io:8123", "", None, "127.0.0.1:x",
                 "0.0.0.0:8123"):
        assert not guard.host_allowed(host), host
    assert guard.origin_allowed("http://127.0.0.1:8123", "127.0.0.1:8123")
    for origin in ("http://127.0.0.1:9999", "http://localhost:8123", "null", "", None, "https://127.0.0.1:8123"):
        assert not guard.origin_allowed(origin, "127.0.0.1:8123"), origin
    assert guard.token_matches("t0k3n") and not guard.token_matches("t0k3") and not guard.token_matches(None)
    assert guard.url() == "http://127.0.0.1:8123/?token=t0k3n"
    assert len(AccessGuard("127.0.0.1").token) >= 43  # 32 random bytes, URL-safe base64
    assert AccessGuard("127.0.0.1").token != AccessGuard("127.0.0.1").token


def test_one_owner_at_a_time():
    import asyncio

    from MedSORALib.web.access import AccessGuard

    async def scenario():
        guard = AccessGuard("127.0.0.1")
        first, second = object(), object()
        assert await guard.acquire(first, "s1", grace_s=0.1)
        assert guard.owner_session() == "s1"
        assert not await guard.acquire(second, "s2", grace_s=0.2)  # refused while the first is open
        # A reload: the old connection closes while the new one waits; the new one gets the scene.
        asyncio.get_running_loop().call_later(0.1, guard.release, first)
        assert await guard.acquire(second, "s1", grace_s=2.0)
        guard.release(first)  # a stale release changes nothing
        assert guard.owned and guard.owner_session() == "s1"
        guard.release(second)
        assert not guard.owned
        # Another browser session taking the page over is announced (the app clears what was typed);
        # the first owner and the same session coming back are not.
        seen = []
        guard.on_new_session = lambda: seen.append(guard.owner_session())
        third = object()
        assert await guard.acquire(third, "s1", grace_s=0.1)
        guard.release(third)
        assert await guard.acquire(third, "s2", grace_s=0.1)
        assert seen == ["s2"]
        fresh = AccessGuard("127.0.0.1")
        fresh.on_new_session = lambda: seen.append("first")
        assert await fresh.acquire(object(), "s9", grace_s=0.1) and seen == ["s2"]

    asyncio.run(scenario())


def test_tabs_of_one_browser_are_told_apart():
    import asyncio

    from MedSORALib.web.access import AccessGuard

    async def scenario():
        guard = AccessGuard("127.0.0.1")
        seen = []
        guard.on_new_session = lambda: seen.append(guard.owner_session())
        first = object()
        assert await guard.acquire(first, "s1", grace_s=0.1, tab="tabA")
        # A second tab of the same browser session is refused while the first is open.
        assert not await guard.acquire(object(), "s1", grace_s=0.2, tab="tabB")
        guard.release(first)
        # The same tab back (a reload) keeps what was typed; another tab taking over clears it; a page
        # without a tab id (no sessionStorage) is judged by its browser session only.
        assert await guard.acquire(first, "s1", grace_s=0.1, tab="tabA")
        guard.release(first)
        assert seen == []
        assert await guard.acquire(first, "s1", grace_s=0.1, tab="tabB")
        guard.release(first)
        assert seen == ["s1"]
        assert await guard.acquire(first, "s1", grace_s=0.1, tab=None)
        guard.release(first)
        assert seen == ["s1"]

    asyncio.run(scenario())


def test_each_app_page_carries_its_own_id(tmp_path):
    import re

    from MedSORALib.web.access import IN_USE_CLOSE_CODE, IN_USE_REASONS, PAGES_KEPT, AccessGuard

    index = tmp_path / "index.html"
    index.write_text('<!doctype html><html><head><meta charset="UTF-8" />'
                     '<script src="vue.global.js"></script></head><body><div id="app"></div></body></html>')
    guard = AccessGuard("127.0.0.1")
    guard.index_file = index
    pages = [guard.app_page("s1"), guard.app_page("s1")]
    ids = [re.search(r'const page = "([A-Za-z0-9_-]+)";', page).group(1) for page in pages]
    assert ids[0] != ids[1] and all(len(i) >= 20 for i in ids)
    assert [guard.page_session(i) for i in ids] == ["s1", "s1"]
    assert guard.page_session("not-served") is None and guard.page_session(None) is None
    page = pages[0]
    # The script comes before trame's scripts (it must wrap WebSocket before the client opens one) and
    # carries the close code and the reasons; nothing of the template is left unfilled.
    assert page.index("const page") < page.index('src="vue.global.js"')
    assert f"event.code !== {IN_USE_CLOSE_CODE}" in page
    assert IN_USE_REASONS["same-browser"] in page
    assert not re.search(r"PAGE_ID|PAGE_PARAMETER|TAB_PARAMETER|IN_USE_CLOSE_CODE|REASONS", page)
    assert all(len(key.encode()) <= 123 for key in IN_USE_REASONS)  # a websocket close reason's limit
    for _ in range(PAGES_KEPT):
        guard.app_page("s2")
    assert guard.page_session(ids[0]) is None  # the oldest ids are forgotten


def test_loadable_paths_give_one_message_for_every_refusal(tmp_path):
    import os
    import shutil

    from MedSORALib.errors import InputFileError
    from MedSORALib.web.access import NO_DATA_ROOT, REFUSED_PATH, loadable_path

    root = tmp_path / "data"
    root.mkdir()
    shutil.copy(EXAMPLE_CT, root / "ct.nii.gz")
    os.mkfifo(root / "pipe.nii.gz")
    (root / "notes").mkdir()
    (root / "notes" / "a.txt").write_text("x")
    outside = tmp_path / "outside.nii.gz"
    shutil.copy(EXAMPLE_CT, outside)
    (root / "link.nii.gz").symlink_to(outside)
    real_root = os.path.realpath(root)
    assert loadable_path(root / "ct.nii.gz", real_root) == Path(real_root) / "ct.nii.gz"
    refused = {
        "missing under the root": root / "missing.nii.gz",
        "existing outside": outside,
        "missing outside": tmp_path / "missing.nii.gz",
        "a FIFO": root / "pipe.nii.gz",
        "a link leading out": root / "link.nii.gz",
        "dot-dot out": root / ".." / "outside.nii.gz",
        "a folder that is not a series": root / "notes",
        "a system file": Path("/etc/shadow"),
    }
    for what, path in refused.items():
        with pytest.raises(InputFileError) as caught:
            loadable_path(path, real_root)
        assert str(caught.value) == f"{path}: {REFUSED_PATH}", what
    # A file this server wrote may be loaded back from outside the root; nothing loads without a root.
    assert loadable_path(outside, real_root, {os.path.realpath(outside)}) == Path(os.path.realpath(outside))
    with pytest.raises(InputFileError, match="loading from the server's disk is off"):
        loadable_path(root / "ct.nii.gz", None)
    assert "off" in NO_DATA_ROOT


def test_a_cancelled_read_does_not_replace_the_case(session):
    case = session.case
    loaded, name = session.read_case(EXAMPLE_CT, EXAMPLE_SEG, "totalsegmentator", log=lambda message: None)
    assert session.case is case and name == EXAMPLE_CT.name  # reading alone does not change the case
    session.use_case(loaded, name)
    assert session.case is loaded and session.case_name == EXAMPLE_CT.name


class CountingToken:
    """A cancel token that counts its checks and cancels itself at check number ``cancel_at`` (None: never)."""

    def __new__(cls, cancel_at=None):
        from MedSORALib.web.jobs import CancelToken

        class Counting(CancelToken):
            def check(self):
                self.checks += 1
                if self.checks == cancel_at:
                    self.cancel()
                super().check()

        token = Counting()
        token.checks = 0
        return token


def test_the_checksum_can_be_stopped_between_blocks(tmp_path):
    import hashlib

    from MedSORALib.files import file_sha256
    from MedSORALib.web.jobs import JobCancelled

    data = tmp_path / "data.bin"
    data.write_bytes(bytes(range(256)) * 20_000)  # 5,120,000 bytes: 4 whole MiB blocks and a partial one
    expected = hashlib.sha256(data.read_bytes()).hexdigest()
    token = CountingToken()
    assert file_sha256(data) == expected == file_sha256(data, check=token.check)
    assert token.checks == 5 + 1  # one check before each block read, the last read finding the end
    stopped = CountingToken(cancel_at=3)
    with pytest.raises(JobCancelled):
        file_sha256(data, check=stopped.check)
    assert stopped.checks == 3


def test_a_cancelled_read_stops_at_its_next_step(session, tmp_path):
    import os

    import nibabel as nib

    from MedSORALib.web.jobs import JobCancelled

    # An uncompressed CT followed by 256 MiB of holes (sparse: no disk space): 257 checksum blocks to read.
    slow = tmp_path / "slow_ct.nii"
    nib.save(nib.load(str(EXAMPLE_CT)), str(slow))
    os.truncate(slow, slow.stat().st_size + (256 << 20))
    case, name = session.case, session.case_name
    # Control: not cancelled, the read checks the flag at every MiB and at every step, and gives a case.
    token = CountingToken()
    loaded, loaded_name = session.read_case(slow, EXAMPLE_SEG, "totalsegmentator", log=lambda m: None,
                                            cancel=token)
    assert loaded_name == "slow_ct.nii" and len(loaded.masks) == 12
    assert token.checks >= 257 + 2 + 2
    # Cancelled at its 5th check, in the middle of the checksum: it stops there, the rest is never read.
    token = CountingToken(cancel_at=5)
    with pytest.raises(JobCancelled):
        session.read_case(slow, EXAMPLE_SEG, "totalsegmentator", log=lambda m: None, cancel=token)
    assert token.checks == 5
    assert session.case is case and session.case_name == name


def test_a_cancelled_scoring_writes_nothing(session):
    from MedSORALib.web.jobs import JobCancelled

    before = sorted(p.relative_to(session.output_dir) for p in session.output_dir.rglob("*"))
    # Control: not cancelled, scoring reports its steps through the checked callback and writes its files.
    token = CountingToken()
    scored = session.score(SYMPTOMS[:1], cancel=token)
    assert token.checks >= 3 and scored[0].files["json"].is_file()
    written = sorted(p.relative_to(session.output_dir) for p in session.output_dir.rglob("*"))
    assert len(written) > len(before)
    # Cancelled at its first step: nothing more is written.
    with pytest.raises(JobCancelled):
        session.score(SYMPTOMS[:1], cancel=CountingToken(cancel_at=1))
    assert sorted(p.relative_to(session.output_dir) for p in session.output_dir.rglob("*")) == written


def test_a_cancelled_job_releases_what_it_read():
    import asyncio
    import threading
    import weakref

    import numpy as np

    from MedSORALib.web.jobs import CancelToken, JobCancelled, run_in_thread

    started, alive = threading.Event(), []

    def job(token):
        volume = np.ones((64, 64, 64), dtype=np.float32)  # what a read holds when it is cancelled
        alive.append(weakref.ref(volume))
        started.set()
        while True:
            token.check()
            threading.Event().wait(0.01)

    async def scenario():
        token = CancelToken()
        future = run_in_thread(job, token)
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        assert alive[0]() is not None
        token.cancel()
        with pytest.raises(JobCancelled):
            await asyncio.wait_for(future, timeout=10)
        # The job's frames (its CT) are gone with the thread: the exception does not hold them.
        return alive[0]() is None

    assert asyncio.run(scenario())


def test_bound_to_every_interface_the_machines_addresses_name_it():
    import socket

    from MedSORALib.web.access import AccessGuard

    guard = AccessGuard("0.0.0.0", token="t")
    guard.port = 8123
    assert guard.url() == f"http://{socket.gethostname()}:8123/?token=t"
    local = [a for a in {i[4][0] for i in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}]
    for address in local + ["127.0.0.1"]:
        assert guard.host_allowed(f"{address}:8123"), address
    for host in ("198.51.100.77:8123", "203.0.113.7:8123", "0.0.0.0:8123", "evil.example:8123"):
        assert not guard.host_allowed(host), host  # addresses of no interface here (documentation ranges)
    narrow = AccessGuard("127.0.0.1", token="t")
    narrow.port = 8123
    assert not any(narrow.host_allowed(f"{a}:8123") for a in local if not a.startswith("127."))


def test_age_and_sex_from_the_page_choose_the_reference_ranges(session, example_volume, example_masks):
    from MedSORALib.patient import Patient
    from MedSORALib.scoring import score_volume

    def aorta_rows(item):
        report = json.loads(item.files["json"].read_text(encoding="utf-8"))
        (aorta,) = [o for o in report["organs"] if o["name"] == "aorta"]
        return report, {f["key"]: f for f in aorta["findings"]}

    (woman,) = session.score(SYMPTOMS[:1], patient=Patient.parse("64", "female", "page"))
    (man,) = session.score(SYMPTOMS[:1], patient=Patient.parse("064Y", "M", "page"))
    (unknown,) = session.score(SYMPTOMS[:1])
    (report_f, rows_f), (report_m, rows_m), (report_u, rows_u) = map(aorta_rows, (woman, man, unknown))
    assert report_f["patient"] == {"age": 64.0, "sex": "F", "source": "page"}
    assert report_m["patient"] == {"age": 64.0, "sex": "M", "source": "page"}
    assert report_u["patient"] == {"age": None, "sex": None, "source": None}
    # The sex-specific aortic row (Rogers 2013) exists only for a known sex, with the women's lower threshold.
    key = "abdominal_aortic_aneurysm_for_sex"
    assert key not in rows_u and rows_f[key]["threshold"] < rows_m[key]["threshold"]
    assert rows_f[key]["value"] == rows_m[key]["value"]  # the same measurement, judged against two ranges
    # The page's result is the one of the library for the same patient (measured once, judged again).
    (expected,) = score_volume(example_volume, example_masks, SYMPTOMS[:1], models=session.models(),
                               patient=Patient(64.0, "F", "page"))
    assert woman.result.patient == expected.patient
    assert [o.key for o in woman.result.organs] == [o.key for o in expected.organs]
    assert [o.relevance for o in woman.result.organs] == pytest.approx([o.relevance for o in expected.organs],
                                                                      abs=1e-6)
    assert [(o.key, o.findings) for o in woman.result.organs] == [(o.key, o.findings) for o in expected.organs]
    # The loaded case itself is unchanged: unknown patient, adult ranges.
    assert session.case.evidence["patient"]["sex"] is None
