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
    """A ``medsora serve`` child process; its URL (with the access token) is read from its own log line."""

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
            match = re.search(r"serving (http://127\.0\.0\.1:(\d+)/\?token=([A-Za-z0-9_-]{40,}))",
                              self.log_path.read_text(encoding="utf-8"))
            if match:
                self.port, self.token = int(match.group(2)), match.group(3)
                self.origin = f"http://127.0.0.1:{self.port}"
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


def http_status(url: str, headers: dict | None = None) -> int:
    """Status of a GET without following redirects (urllib, so no browser cookie is sent)."""
    import urllib.error

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def websocket_status(port: int, origin: str | None, cookie: str | None = None, host: str | None = None) -> int:
    """The HTTP status a websocket handshake to the server's ``/ws`` gets (101: opened)."""
    import socket

    lines = [f"GET /ws HTTP/1.1", f"Host: {host or f'127.0.0.1:{port}'}", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if origin:
        lines.append(f"Origin: {origin}")
    if cookie:
        lines.append(f"Cookie: {cookie}")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
        connection.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = connection.recv(4096).decode("latin-1")
    return int(head.split()[1])


class OtherSite:
    """A second web server on another port of 127.0.0.1: the page of some other site open in the same browser."""

    def __init__(self, pages: dict[str, str]):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = pages.get(self.path.split("?")[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


#: The other site's page: it tries to read the server's page and state and to act on the scene.
ATTACK_PAGE = """<!doctype html><html><body><script>
window.report = {ws: 'pending', messages: [], fetch: 'pending', fetchNoCors: 'pending'};
const target = 'TARGET';
const ws = new WebSocket(target.replace('http', 'ws') + '/ws');
ws.onopen = () => {
  report.ws = 'open';
  ws.send(JSON.stringify({wslink: '1.0', id: 'system:c0:0', method: 'wslink.hello',
                          args: [{secret: 'wslink-secret'}], kwargs: {}}));
  ws.send(JSON.stringify({wslink: '1.0', id: 'rpc:c0:1', method: 'trame.state.update',
                          args: [[{key: 'symptom_text', value: 'FORGED'}]], kwargs: {}}));
};
ws.onmessage = (event) => report.messages.push(String(event.data).slice(0, 200));
ws.onerror = () => { report.ws = 'error'; };
ws.onclose = (event) => { report.closed = event.code; };
fetch(target + '/index.html', {credentials: 'include'})
  .then(r => r.text()).then(t => { report.fetch = 'read ' + t.length; })
  .catch(() => { report.fetch = 'blocked'; });
fetch(target + '/index.html', {credentials: 'include', mode: 'no-cors'})
  .then(r => { report.fetchNoCors = 'opaque ' + r.type; })
  .catch(() => { report.fetchNoCors = 'blocked'; });
</script></body></html>"""


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
    server = Server(tmp_path, "--data-root", str(EXAMPLE_CT.parent))
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

        # Loading a case from the server's disk: a missing file under the data root and an existing file
        # outside it get the same message; the CT with the .seg.nrrd the server just wrote loads as the new
        # case and clears the results and the 3D view.
        messages = []
        for path in (EXAMPLE_CT.parent / "missing.nii.gz", ROOT / "pyproject.toml"):
            page.fill("#ct-path", str(path))
            page.click("#load-button")
            # wait for this path's message, not the one the previous path left on the page
            page.wait_for_function("(name) => { const e = document.querySelector('#error-message');"
                                   " return e !== null && e.innerText.includes(name); }", arg=path.name)
            messages.append(page.inner_text("#error-message").replace(str(path), "PATH"))
        assert messages[0] == messages[1] and "cannot be loaded" in messages[0]
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

        # The download links serve the same report and a Slicer segmentation of the scored organs, to the
        # browser holding the token's cookie only; a file the server did not write is not served.
        base = server.origin + "/"
        json_href = page.get_attribute("#download-json", "href")
        report = json.loads(page.request.get(base + json_href).body())
        assert report["symptom"] == SYMPTOM_OPTION
        assert [o["name"] for o in report["organs"]] == [o["name"] for o in expected["organs"]]
        seg = page.request.get(base + page.get_attribute("#download-seg", "href")).body()
        header = seg.split(b"\n\n", 1)[0].decode("latin-1")
        assert header.startswith("NRRD")
        names = re.findall(r"Segment\d+_Name:=(.*)", header)
        assert sorted(n.strip().lower() for n in names) == sorted(o["display_name"].lower()
                                                                  for o in expected["organs"])
        assert http_status(base + json_href) == 403  # no token, no cookie
        planted = tmp_path / "files" / "run1" / "planted.json"
        planted.write_text("{}")
        assert page.request.get(base + json_href.rsplit("/", 1)[0] + "/planted.json").status == 404
        assert page.request.get(base + json_href).status == 200
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
    assert re.search(r"serving http://127\.0\.0\.1:\d+/\?token=", text)
    assert "lifetime of 3 s reached; stopping" in text


@needs_web
def test_only_its_owner_reaches_the_server(tmp_path, browser):
    server = Server(tmp_path, "--symptom", SYMPTOM_OPTION)
    other = None
    try:
        # Without the token, or naming another host (DNS rebinding), nothing is served.
        assert http_status(server.origin + "/") == 403
        assert http_status(server.origin + "/index.html") == 403
        assert http_status(server.url, {"Host": f"rebind.example:{server.port}"}) == 403
        assert http_status(server.url, {"Host": f"localhost:{server.port}"}) == 302  # control: own name, token
        assert websocket_status(server.port, server.origin) == 403  # no token
        cookie = f"medsora-token-{server.port}={server.token}"
        assert websocket_status(server.port, "http://127.0.0.1:1", cookie) == 403  # foreign origin

        # The owner opens the printed URL in Chromium and gets the page with the scored symptom.
        owner = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = owner.new_page()
        page.set_default_timeout(START_TIMEOUT_S * 1000)
        page.goto(server.url)
        page.wait_for_selector("#results-table .organ")
        assert page.input_value("#symptom-box") == SYMPTOM_OPTION
        page.fill("#symptom-box", "typed by the owner")

        # A page of another origin, open in the same browser (so the token's cookie exists there), gets
        # neither the page nor a websocket, so neither state nor actions.
        other = OtherSite({"/attack.html": ATTACK_PAGE.replace("TARGET", server.origin)})
        attacker = owner.new_page()
        attacker.goto(other.origin + "/attack.html")
        attacker.wait_for_function("() => report.ws !== 'pending' && report.fetch !== 'pending' "
                                   "&& report.fetchNoCors !== 'pending'", timeout=60_000)
        report = attacker.evaluate("() => report")
        assert report["ws"] == "error" and report["messages"] == [], report
        assert report["fetch"] == "blocked", report
        time.sleep(2)
        assert page.input_value("#symptom-box") == "typed by the owner"  # nothing forged reached the owner

        # Another browser (its own cookies) opening the printed URL sees "in use", and its websocket is refused.
        second = browser.new_context()
        intruder = second.new_page()
        response = intruder.goto(server.url)
        assert response.status == 409 and intruder.locator("#in-use").count() == 1
        assert page.input_value("#symptom-box") == "typed by the owner"
        assert websocket_status(server.port, server.origin, cookie) == 409
        # When the owner closes the page, the other browser may take over, and sees none of the owner's typing.
        owner.close()
        time.sleep(1)
        page2 = second.new_page()
        page2.set_default_timeout(START_TIMEOUT_S * 1000)
        page2.goto(server.url)
        page2.wait_for_selector("#score-button")
        assert page2.input_value("#symptom-box") == ""
        second.close()
    finally:
        if other is not None:
            other.close()
        assert server.stop() is not None


@needs_web
def test_a_second_tab_of_the_same_browser_sees_in_use(tmp_path, browser):
    server = Server(tmp_path)
    try:
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        first = context.new_page()
        first.set_default_timeout(START_TIMEOUT_S * 1000)
        first.goto(server.url)
        first.wait_for_selector("#score-button")
        first.fill("#symptom-box", "epigastric pain, first tab")

        # A second tab of the same browser (same cookies) opening the printed URL: the first tab keeps the
        # scene, the second is covered by the "in use" notice and holds none of the app.
        second = context.new_page()
        second.set_default_timeout(60_000)
        second.goto(server.url)
        second.wait_for_selector("#in-use")
        assert "another tab or window of this browser" in second.inner_text("#in-use-reason")
        assert second.locator("#symptom-box").count() == 0 and second.locator("#app").count() == 0
        first.fill("#symptom-box", "right flank pain, first tab")
        first.click("#orientation button:has-text('Coronal')")
        time.sleep(3)
        assert "first tab" not in second.content() and "pain" not in second.content()
        assert second.locator("#in-use").count() == 1 and second.locator("#symptom-box").count() == 0
        assert first.input_value("#symptom-box") == "right flank pain, first tab"  # the first still works

        # Control: a reload of the first tab is not a second tab; it keeps the scene and what was typed.
        first.reload()
        first.wait_for_selector("#score-button")
        assert first.locator("#in-use").count() == 0
        first.wait_for_function("() => document.querySelector('#symptom-box').value === "
                                "'right flank pain, first tab'")

        # Once the first tab is closed, the second may take over (Reload); it starts with an empty box.
        first.close()
        time.sleep(1)
        second.click("#in-use-reload")
        second.wait_for_selector("#score-button", timeout=START_TIMEOUT_S * 1000)
        assert second.locator("#in-use").count() == 0
        assert second.input_value("#symptom-box") == ""
        context.close()
    finally:
        assert server.stop() is not None


@needs_web
def test_a_load_can_be_cancelled_and_pipes_are_refused_at_once(tmp_path, browser):
    import shutil

    import nibabel as nib

    data = tmp_path / "data"
    data.mkdir()
    # A slow load without a slow disk: an uncompressed CT followed by 128 GiB of holes (a sparse file, no disk
    # space), which the reader skips and the input checksum must read through (a minute or more of hashing
    # at 1 to 3 GB/s).
    slow = data / "slow_ct.nii"
    nib.save(nib.load(str(EXAMPLE_CT)), str(slow))
    os.truncate(slow, slow.stat().st_size + (128 << 30))
    shutil.copy(EXAMPLE_CT, data / "second_ct.nii.gz")
    shutil.copy(EXAMPLE_SEG, data / "other_seg.nii.gz")
    os.mkfifo(data / "blocked.nii.gz")
    server = Server(tmp_path, "--data-root", str(data))
    try:
        page = open_page(browser, server.url)
        label = page.inner_text("#case-label")
        assert label.startswith("example_ct_sm.nii.gz: 12 organs")
        page.fill("#ct-path", str(data / "blocked.nii.gz"))
        started = time.monotonic()
        page.click("#load-button")
        page.wait_for_selector("#error-message", timeout=30_000)
        assert time.monotonic() - started < 30
        assert "cannot be loaded" in page.inner_text("#error-message")

        # A load cancelled while it runs leaves the page free at once and the case unchanged.
        page.fill("#ct-path", str(slow))
        page.fill("#seg-path", str(data / "other_seg.nii.gz"))
        page.click("#load-button")
        page.click("#cancel-button", timeout=30_000)
        cancelled = time.monotonic()
        page.wait_for_function("() => document.querySelector('#progress-message').textContent.trim() === "
                               "'Cancelled'", timeout=30_000)
        assert page.is_enabled("#symptom-box") and page.is_enabled("#load-button")
        assert page.inner_text("#case-label") == label

        # A new load starts at once; the cancelled one stops reading within seconds (its checksum alone would
        # take 45 s at 3 GB/s), and the new one lands, never the cancelled one.
        page.fill("#ct-path", str(data / "second_ct.nii.gz"))
        page.click("#load-button")
        wait_for(lambda: True if "loading stopped: cancelled" in server.log_path.read_text() else None,
                 30, "the cancelled load to stop")
        assert time.monotonic() - cancelled < 30
        page.wait_for_function("() => document.querySelector('#progress-message').textContent.trim() === "
                               "'Loaded second_ct.nii.gz'", timeout=SCORE_TIMEOUT_S * 1000)
        assert page.inner_text("#case-label").startswith("second_ct.nii.gz: 12 organs")
        time.sleep(2)
        assert page.inner_text("#case-label").startswith("second_ct.nii.gz: 12 organs")
        log = server.log_path.read_text()
        assert log.count("loading stopped: cancelled") == 1 and "finished after it was cancelled" not in log
    finally:
        assert server.stop() is not None


def _serve_error(argv: list[str], timeout: int = 120) -> list[str]:
    done = subprocess.run([sys.executable, "-m", "MedSORALib", "serve", *argv], capture_output=True, text=True,
                          env=_env(), cwd=ROOT, timeout=timeout)
    assert done.returncode == 2, done.stderr[-2000:]
    return done.stderr.strip().splitlines()


def test_serve_options_give_one_line(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert _serve_error(["--port", str(port), "--lifetime", "5"]) == [
            f"medsora: error: --port {port}: already in use on 127.0.0.1; choose another port "
            "(--port 0 picks a free one)"]
    err = _serve_error(["--host", "no-such-host.invalid", "--port", "0", "--lifetime", "5"])
    assert len(err) == 1 and err[0].startswith("medsora: error: --host no-such-host.invalid: not an address")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = _serve_error(["--output-dir", str(blocker / "out"), "--port", "0", "--lifetime", "5"])
    assert len(err) == 1 and "is a file, not a folder" in err[0]
    err = _serve_error(["--output-dir", "/proc/medsora-out", "--port", "0", "--lifetime", "5"])
    assert len(err) == 1 and "kernel file system" in err[0]
    os.mkfifo(tmp_path / "ct.nii.gz")
    assert _serve_error(["--volume", str(tmp_path / "ct.nii.gz"), "--segmentation", str(EXAMPLE_SEG),
                         "--port", "0", "--lifetime", "5"]) == [
        f"medsora: error: {tmp_path / 'ct.nii.gz'}: is a named pipe (FIFO), not a regular file; "
        "give an image file or a DICOM folder"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "file"]


def test_a_non_loopback_host_is_named_in_a_warning():
    from MedSORALib.commands.serve import reach_warning

    assert reach_warning("127.0.0.1") is None and reach_warning("localhost") is None
    assert reach_warning("::1") is None
    warning = reach_warning("0.0.0.0")
    assert warning.startswith("warning: --host 0.0.0.0 listens on every network interface of this machine")
    assert "--data-root" in warning
