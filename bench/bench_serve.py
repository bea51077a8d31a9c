#!/usr/bin/env python
"""Benchmarks of ``medsora serve`` (medians over repeats), driven by Debian's headless chromium.

    python bench/bench_serve.py [--repeats 3] [--output bench/results_serve.json] [--screenshot FILE]

Each repeat starts a fresh ``medsora serve`` on the bundled example CT (127.0.0.1, a port the system picks)
and measures:
  startup_s            process start -> the server's "serving http://..." line (reads the CT and organs,
                       loads the models, builds the scene)
  first_view_s         process start -> the page shows the first streamed slice view and 3D view images
  page_to_view_s       page requested -> those images shown (the page's own share)
  score_click_s        Score clicked -> the results table shows the symptom (organs already loaded)
  rss_ready_mb         server resident memory once the page is shown
  rss_peak_mb          server peak resident memory (VmHWM) after scoring in the page
The floor, measured in the same run: ``medsora score`` on the same CT and symptom in a fresh process
(reads the CT, loads the models, scores, writes), so startup_s / floor says what serving adds.
With --screenshot, the last repeat's page after scoring is saved as a PNG (the screenshot of the README and docs/browser.md).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CT = REPO / "Testing" / "Data" / "example_ct_sm.nii.gz"
SEG = REPO / "Testing" / "Data" / "example_ct_sm_seg.nii.gz"
SYMPTOM = "painless jaundice with pale stools"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWS_SHOWN_JS = """() => {
  const imgs = Array.from(document.querySelectorAll('#views img.image-display-area'));
  return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field} for pid {pid}")


def floor_seconds(tmp: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "MedSORALib", "score", "--volume", str(CT), "--segmentation", str(SEG),
                    "--label-scheme", "totalsegmentator", "--symptom", SYMPTOM, "--output", str(tmp / "floor"),
                    "--quiet"], check=True, capture_output=True, env=_env(), cwd=REPO)
    return time.perf_counter() - start


def one_run(browser, tmp: Path, screenshot: Path | None) -> dict:
    log_path = tmp / "serve.log"
    with open(log_path, "w", encoding="utf-8") as log:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "MedSORALib", "serve", "--port", "0", "--lifetime", "600",
                                    "--output-dir", str(tmp / "files")],
                                   stdout=log, stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
        try:
            url = None
            while url is None:
                match = re.search(r"serving (http://127\.0\.0\.1:\d+/\?token=[A-Za-z0-9_-]+)",
                                  log_path.read_text(encoding="utf-8"))
                if match:
                    url = match.group(1)
                elif process.poll() is not None or time.perf_counter() - start > 600:
                    raise RuntimeError(log_path.read_text(encoding="utf-8")[-2000:])
                else:
                    time.sleep(0.05)
            startup = time.perf_counter() - start
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(600_000)
            requested = time.perf_counter()
            page.goto(url)
            page.wait_for_function(VIEWS_SHOWN_JS, polling=50)
            shown = time.perf_counter()
            rss_ready = _status_mb(process.pid, "VmRSS")
            page.fill("#symptom-box", SYMPTOM)
            clicked = time.perf_counter()
            page.click("#score-button")
            page.wait_for_function(
                "(t) => { const e = document.querySelector('#results-symptom');"
                " return e && e.textContent.trim() === t; }",
                arg=SYMPTOM, polling=50)
            scored = time.perf_counter()
            rss_peak = _status_mb(process.pid, "VmHWM")
            if screenshot is not None:
                time.sleep(3)  # let the 3D view's final (full quality) image arrive
                page.screenshot(path=str(screenshot))
            page.close()
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
    return {"startup_s": startup, "first_view_s": shown - start, "page_to_view_s": shown - requested,
            "score_click_s": scored - clicked, "rss_ready_mb": rss_ready, "rss_peak_mb": rss_peak}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(REPO / "bench" / "results_serve.json"))
    parser.add_argument("--screenshot", help="save the last repeat's page after scoring as this PNG")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    runs, floors = [], []
    with tempfile.TemporaryDirectory(prefix="medsora-bench-serve-") as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            for n in range(args.repeats):
                floors.append(floor_seconds(Path(tmp)))
                run_dir = Path(tmp) / f"run{n}"
                run_dir.mkdir()
                last = n == args.repeats - 1
                runs.append(one_run(browser, run_dir, Path(args.screenshot) if args.screenshot and last else None))
                print(f"run {n + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items())
                      + f", floor_s {floors[-1]:.2f}", flush=True)
        finally:
            browser.close()
    medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    medians["floor_cli_score_s"] = statistics.median(floors)
    medians["startup_over_floor"] = medians["startup_s"] / medians["floor_cli_score_s"]
    report = {"repeats": args.repeats, "symptom": SYMPTOM, "ct": CT.name, "cpu_count": os.cpu_count(),
              "medians": {k: round(v, 3) for k, v in medians.items()}, "runs": runs, "floor_runs_s": floors}
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for key, value in report["medians"].items():
        print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
