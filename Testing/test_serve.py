"""``medsora serve`` in a real headless browser (Debian's chromium driven by playwright).

Each browser test starts its own server on the example CT, on 127.0.0.1 and a port
the system picks, with a bounded ``--lifetime``, and stops it by its process id.
The expected organs come from ``medsora score`` run on the same CT and symptom.

These tests need the ``web`` extra, ``playwright`` and ``/usr/bin/chromium``
(``.ci/apt-packages.txt``); ``pip install -e ".[dev]"`` installs the Python side.
They are skipped only where the web extra itself is not installed; the bad-input test always runs.
"""
from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
#: Bounds on waiting (generous for a loaded 2-core machine; a hang still ends).
START_TIMEOUT_S = 300
SCORE_TIMEOUT_S = 300
RENDER_TIMEOUT_S = 120
SERVER_LIFETIME_S = 900

SYMPTOM_CLICKED = "painless jaundice with pale stools"
SYMPTOM_OPTION = "vomiting blood after heavy drinking"

needs_web = pytest.mark.skipif(importlib.util.find_spec("trame_slicer") is None,
                               reason='the web extra is not installed (pip install -e ".[dev]" installs it)')

# The 3D view's streamed image, read back through a canvas (same-origin blob, so readable).
THREED_IMAGE_JS = """() => {
  const img = document.querySelector('#views .layout-grid-item:not(:has(.slice-slider-gutter)) img.image-display-area');
  if (!img || !img.complete || !img.naturalWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  canvas.getContext('2d').drawImage(img, 0, 0);
  return canvas.toDataURL('image/png');
}"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def cli_result(tmp_path: Path, symptom: str) -> dict:
    """``medsora score`` on the example CT for one symptom: its JSON report."""
    prefix = tmp_path / "cli" / "result"
    done = subprocess.run(
        [sys.executable, "-m", "MedSORALib", "score", "--volume", str(EXAMPLE_CT), "--segmentation", str(EXAMPLE_SEG),
         "--label-scheme", "totalsegmentator", "--symptom", symptom, "--output", str(prefix), "--quiet"],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=SCORE_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return json.loads(prefix.with_name("result.json").read_text(encoding="utf-8"))


class Server:
    """A ``medsora serve`` child process; its URL is read from its own log line."""

    def __init__(self, tmp_path: Path, *extra: str):
        self.log_path = tmp_path / "serve.log"
        self.log = open(self.log_path, "w", encoding="utf-8")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "MedSORALib", "serve", "--host", "127.0.0.1", "--port", "0",
             "--lifetime", str(SERVER_LIFETIME_S), "--output-dir", str(tmp_path / "files"), *extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
        self.url = self._wait_for_url()

    def _wait_for_url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            match = re.search(r"serving (http://127\.0\.0\.1:\d+/)", self.log_path.read_text(encoding="utf-8"))
            if match:
                return match.group(1)
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        self.stop()
        pytest.fail(f"medsora serve did not start:\n{self.log_path.read_text(encoding='utf-8')[-3000:]}")

    def stop(self) -> int | None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=60)
        self.log.close()
        return self.process.returncode


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).is_file(), f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/apt-packages.txt)"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(START_TIMEOUT_S * 1000)
    page.goto(url)
    page.wait_for_selector("#score-button")
    return page


def table_organs(page) -> list[str]:
    return [cell.strip() for cell in page.locator("#results-table .organ").all_inner_texts()]


def threed_image(page) -> np.ndarray | None:
    from PIL import Image

    url = page.evaluate(THREED_IMAGE_JS)
    if not url:
        return None
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def hue_and_chroma(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV hue in degrees and chroma (max - min, 0..255) of RGB pixels.

    Hue does not change when a colour is scaled (diffuse shading), has white
    added (specular) or is blended with grey (a translucent surface over the
    grey background), so a lit organ keeps the hue of its segment colour.
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    high, low = rgb.max(axis=-1), rgb.min(axis=-1)
    chroma = high - low
    safe = np.where(chroma == 0, 1.0, chroma)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(high == r, ((g - b) / safe) % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    return hue * 60.0, chroma


def hue_distance(a, b):
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0)


def relevance_hue_counts(image: np.ndarray, relevances: list[float]) -> tuple[int, int, int]:
    """(coloured pixels, those within 15 degrees of some organ's relevance colour, those of the top organ's)."""
    from MedSORALib.colors import relevance_color

    hue, chroma = hue_and_chroma(image)
    coloured = chroma > 40
    hues = [hue_and_chroma(np.array(relevance_color(r)) * 255.0)[0] for r in relevances]
    near_any = np.zeros_like(coloured)
    for h in hues:
        near_any |= hue_distance(hue, h) <= 15.0
    near_top = hue_distance(hue, hues[0]) <= 12.0
    return int(coloured.sum()), int((coloured & near_any).sum()), int((coloured & near_top).sum())


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value is not None:
            return value
        time.sleep(interval_s)
    pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")


@needs_web
def test_score_in_the_browser(tmp_path, browser):
    expected = cli_result(tmp_path, SYMPTOM_CLICKED)
    server = Server(tmp_path)
    try:
        page = open_page(browser, server.url)
        # Control: before scoring the 3D view shows no organ (grey background only).
        before = wait_for(lambda: threed_image(page), RENDER_TIMEOUT_S, "the 3D view's first image")
        assert relevance_hue_counts(before, [0.5])[0] < 50
        assert table_organs(page) == []

        page.fill("#symptom-box", SYMPTOM_CLICKED)
        page.click("#score-button")
        page.wait_for_function(
            "(text) => { const e = document.querySelector('#results-symptom');"
            " return e && e.textContent.trim() === text; }",
            arg=SYMPTOM_CLICKED, timeout=SCORE_TIMEOUT_S * 1000)
        organs = table_organs(page)
        assert [o.lower() for o in organs] == [o["display_name"].lower() for o in expected["organs"]]
        first_row = page.locator("#results-table tbody tr").first.locator("td").all_inner_texts()
        assert float(first_row[1]) == pytest.approx(expected["organs"][0]["relevance"], abs=1e-3)
        assert float(first_row[4]) == pytest.approx(expected["organs"][0]["volume_ml"], abs=0.1)

        relevances = [o["relevance"] for o in expected["organs"]]

        def coloured_view():
            image = threed_image(page)
            if image is None:
                return None
            counts = relevance_hue_counts(image, relevances)
            return counts if counts[0] >= 1000 and counts[2] >= 100 else None

        coloured, near_any, near_top = wait_for(coloured_view, RENDER_TIMEOUT_S, "relevance colours in the 3D view")
        # The organs are drawn in the relevance colour map, not in their catalogue colours.
        assert near_any >= 0.9 * coloured
        assert page.locator("#ood-warning").count() == 0
        assert page.locator("#passages").count() == 1

        # Loading a case from the server's disk: a missing file is reported on the page; the CT with the
        # .seg.nrrd the server just wrote loads as the new case and clears the results and the 3D view.
        page.fill("#ct-path", str(tmp_path / "missing.nii.gz"))
        page.click("#load-button")
        page.wait_for_selector("#error-message")
        assert "no such CT file" in page.inner_text("#error-message")
        seg_file = next((tmp_path / "files").rglob("*.seg.nrrd"))
        page.fill("#ct-path", str(EXAMPLE_CT))
        page.fill("#seg-path", str(seg_file))
        page.click("#load-button")
        page.wait_for_function(
            "() => document.querySelector('#progress-message').textContent.trim() === 'Loaded example_ct_sm.nii.gz'",
            timeout=SCORE_TIMEOUT_S * 1000)
        assert page.locator("#error-message").count() == 0
        assert table_organs(page) == []
        assert page.inner_text("#case-label").startswith("example_ct_sm.nii.gz: 12 organs")
        wait_for(lambda: True if relevance_hue_counts(threed_image(page), [0.5])[0] < 50 else None,
                 RENDER_TIMEOUT_S, "the 3D view to clear")
    finally:
        assert server.stop() is not None


@needs_web
def test_symptom_option_opens_scored(tmp_path, browser):
    expected = cli_result(tmp_path, SYMPTOM_OPTION)
    server = Server(tmp_path, "--symptom", SYMPTOM_OPTION)
    try:
        page = open_page(browser, server.url)
        page.wait_for_selector("#results-table .organ")
        organs = table_organs(page)
        assert organs[0].lower() == expected["organs"][0]["display_name"].lower()
        assert page.input_value("#symptom-box") == SYMPTOM_OPTION

        # The download links serve the same report and a Slicer segmentation of the scored organs.
        base = server.url
        report = json.loads(urllib.request.urlopen(base + page.get_attribute("#download-json", "href"),
                                                   timeout=60).read())
        assert report["symptom"] == SYMPTOM_OPTION
        assert [o["name"] for o in report["organs"]] == [o["name"] for o in expected["organs"]]
        seg = urllib.request.urlopen(base + page.get_attribute("#download-seg", "href"), timeout=60).read()
        header = seg.split(b"\n\n", 1)[0].decode("latin-1")
        assert header.startswith("NRRD")
        names = re.findall(r"Segment\d+_Name:=(.*)", header)
        assert sorted(n.strip().lower() for n in names) == sorted(o["display_name"].lower()
                                                                  for o in expected["organs"])
    finally:
        assert server.stop() is not None


def test_serve_rejects_a_missing_ct(tmp_path):
    done = subprocess.run([sys.executable, "-m", "MedSORALib", "serve", "--volume", str(tmp_path / "none.nii.gz"),
                           "--lifetime", "5"], capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120)
    assert done.returncode == 2
    missing = tmp_path / "none.nii.gz"
    assert done.stderr.strip().splitlines() == [f"medsora: error: {missing}: no such CT file or folder"]
    assert list(tmp_path.iterdir()) == []


@needs_web
def test_serve_stops_after_its_lifetime(tmp_path):
    log = tmp_path / "serve.log"
    with open(log, "w", encoding="utf-8") as handle:
        process = subprocess.Popen([sys.executable, "-m", "MedSORALib", "serve", "--port", "0", "--lifetime", "3",
                                    "--output-dir", str(tmp_path / "files")],
                                   stdout=handle, stderr=subprocess.STDOUT, env=_env(), cwd=ROOT)
        try:
            code = process.wait(timeout=START_TIMEOUT_S)
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=60)
    text = log.read_text(encoding="utf-8")
    assert code == 0, text[-3000:]
    assert re.search(r"serving http://127\.0\.0\.1:\d+/", text)
    assert "lifetime of 3 s reached; stopping" in text
