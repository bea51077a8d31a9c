"""MedSORA/Scripts/score.py and batch.py run as ``Slicer --no-main-window --python-script`` runs them.

Slicer executes the script in its ``__main__`` and ends only when the script raises ``SystemExit`` (it then
exits with that status); any other exception is printed and leaves a windowless Slicer running. The harness
below does the same with plain Python and reports which of the two happened, so each test checks that the
script ends, with which status, and what it printed. Packages can be blocked (a Slicer without MedSORA's
packages) and code can run first (to make reading the CT fail in a way no input causes).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG, snapshot

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "MedSORA" / "Scripts"

_SLICER_PYTHON_SCRIPT = r"""
import json, runpy, sys
script, args, blocked, preamble = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
for name in blocked:
    sys.modules[name] = None
exec(preamble)
sys.argv = [script, *args]
try:
    runpy.run_path(script, run_name="__main__")
except SystemExit as stop:
    print("SLICER-EXITS", json.dumps(stop.code), file=sys.stderr)
except BaseException as error:
    print("SLICER-KEEPS-RUNNING", type(error).__name__, file=sys.stderr)
else:
    print("SLICER-KEEPS-RUNNING (no sys.exit)", file=sys.stderr)
"""


def run_in_slicer(script: str, args: list[str], blocked=(), preamble: str = "", cwd=None):
    """(exit status or None when Slicer would keep running, the script's stderr lines, stdout)."""
    done = subprocess.run([sys.executable, "-c", _SLICER_PYTHON_SCRIPT, str(SCRIPTS / script), json.dumps(args),
                           json.dumps(list(blocked)), preamble], capture_output=True, text=True, timeout=600,
                          cwd=str(cwd or ROOT), env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore"))
    lines = done.stderr.splitlines()
    assert lines, done
    last = lines[-1]
    code = json.loads(last.split(" ", 1)[1]) if last.startswith("SLICER-EXITS") else None
    assert code is not None, done.stderr[-3000:]
    return code, lines[:-1], done.stdout


def _score_args(tmp_path, **changes):
    args = {"--volume": str(EXAMPLE_CT), "--segmentation": str(EXAMPLE_SEG), "--label-scheme": "totalsegmentator",
            "--symptom": "painless jaundice with pale stools", "--output": str(tmp_path / "out" / "p1"),
            "--device": "cpu"}
    args.update(changes)
    return [item for key, value in args.items() if value is not None for item in (key, value)]


def test_score_script_success_exits_0_with_the_outputs(tmp_path):
    code, errors, stdout = run_in_slicer("score.py", _score_args(tmp_path))
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p1.json", "p1.seg.nrrd"]
    report = json.loads((tmp_path / "out" / "p1.json").read_text(encoding="utf-8"))
    assert report["symptom"] == "painless jaundice with pale stools"
    assert {organ["name"] for organ in report["organs"]} >= {"liver", "pancreas", "gallbladder"}


def test_score_script_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path):
    code, errors, _ = run_in_slicer("score.py", _score_args(tmp_path, **{"--volume": str(tmp_path / "none.nii")}))
    assert code == 2
    assert len(errors) == 1 and errors[0].startswith("score.py: error: ") and "none.nii" in errors[0]
    assert not (tmp_path / "out").exists() or snapshot(tmp_path / "out") == {}


def test_score_script_usage_error_and_help_exit(tmp_path):
    code, errors, _ = run_in_slicer("score.py", ["--volume", str(EXAMPLE_CT)])
    assert code == 2 and errors[-1].startswith("score.py: error: the following arguments are required")
    code, errors, stdout = run_in_slicer("score.py", ["--help"])
    assert code == 0 and "--symptom" in stdout and errors == []


def test_score_script_without_torch_exits_3_with_one_line(tmp_path):
    """A Slicer without MedSORA's packages: the ImportError ends the script (not Slicer's event loop)."""
    code, errors, _ = run_in_slicer("score.py", _score_args(tmp_path), blocked=["torch"])
    assert code == 3
    assert [e for e in errors if e.startswith("score.py:")] == errors[-1:], errors  # progress lines, then one error
    assert errors[-1].startswith("score.py: error: ModuleNotFoundError: ") and "torch" in errors[-1]
    assert "requirements.txt" in errors[-1]
    assert not (tmp_path / "out").exists() or snapshot(tmp_path / "out") == {}


@pytest.mark.parametrize("raised, code, line", [
    ("ZeroDivisionError('division by zero')", 3, "score.py: error: ZeroDivisionError: division by zero"),
    ("RuntimeError('CUDA error: out of memory\\nCUDA kernel errors might be reported later')", 3,
     "score.py: error: RuntimeError: CUDA error: out of memory CUDA kernel errors might be reported later"),
    ("KeyboardInterrupt()", 130, "score.py: interrupted"),
])
def test_score_script_any_other_exception_exits_with_one_line(tmp_path, raised, code, line):
    preamble = ("import sys; sys.path.insert(0, %r)\n"  # reading the CT fails in a way no input causes
                "import MedSORALib.volume_io as volume_io\n"
                "def broken(*args, **kwargs):\n"
                "    raise %s\n"
                "volume_io.read_volume = broken\n") % (str(ROOT), raised)
    status, errors, _ = run_in_slicer("score.py", _score_args(tmp_path), preamble=preamble)
    assert status == code
    assert errors[-1] == line and len([e for e in errors if e.startswith("score.py:")]) == 1
    assert not (tmp_path / "out").exists() or snapshot(tmp_path / "out") == {}


def test_batch_script_exit_statuses(tmp_path):
    # bad input: a manifest that does not exist
    code, errors, _ = run_in_slicer("batch.py", [str(tmp_path / "none.csv"), "--output-dir", str(tmp_path / "o")])
    assert code == 2 and len(errors) == 1 and errors[0].startswith("batch.py: error: ")
    # a missing package
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("volume,segmentation,label_scheme,symptom\n"
                        f"{EXAMPLE_CT},{EXAMPLE_SEG},totalsegmentator,painless jaundice\n", encoding="utf-8")
    code, errors, _ = run_in_slicer("batch.py", [str(manifest), "--output-dir", str(tmp_path / "o"),
                                                 "--workers", "0", "--no-progress"], blocked=["torch"])
    assert code == 3 and errors[-1].startswith("batch.py: error: ModuleNotFoundError: ")
    # a bug
    preamble = ("import sys; sys.path.insert(0, %r)\nimport MedSORALib.commands.batch as batch\n"
                "def broken(args):\n    raise AttributeError('no such thing')\nbatch.run = broken\n") % str(ROOT)
    code, errors, _ = run_in_slicer("batch.py", [str(manifest), "--output-dir", str(tmp_path / "o")],
                                    preamble=preamble)
    assert code == 3 and errors == ["batch.py: error: AttributeError: no such thing"]
