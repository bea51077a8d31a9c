""".ci/run cannot pass by accident: no tests collected, fewer passes than the floor, a must-run test skipped."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CI = REPO / ".ci"

DEMO_TESTS = """
import pytest

def test_one():
    assert 1 + 1 == 2

def test_two():
    assert "a".upper() == "A"

@pytest.mark.parametrize("n", [1, 2])
def test_param(n):
    assert n > 0

def test_skipped():
    pytest.skip("needs something absent")
"""


def _env() -> dict:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)  # never write into the report of the pytest running this file
    return env


def _ci_copy(tmp_path: Path, test_command: str, floor: int, must_run: str = "", apt: str = "") -> Path:
    """A project folder with this repository's .ci scripts, a README whose test command is ``test_command``."""
    root = tmp_path / "project"
    (root / ".ci").mkdir(parents=True)
    for name in ("run", "check_tests.py"):
        shutil.copy2(CI / name, root / ".ci" / name)
    (root / ".ci" / "test_floor").write_text(f"# fewest passing tests\n{floor}\n")
    (root / ".ci" / "must_run.txt").write_text(must_run)
    (root / ".ci" / "apt-packages.txt").write_text(apt)
    (root / "tests").mkdir()
    (root / "tests" / "test_demo.py").write_text(DEMO_TESTS)
    (root / "README.md").write_text(
        "# demo\n\n## Quick start\n\n```bash\necho setup\n```\n\nTests:\n\n```bash\n"
        f"{test_command}\n```\n\n## Other\n\n```bash\nexit 3\n```\n")
    return root


def _run_ci(root: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(root / ".ci" / "run")], capture_output=True, text=True,
                          env={**_env(), **env}, cwd=root)


PYTEST = f"{sys.executable} -m pytest tests -q -p no:cacheprovider"


def test_the_repository_keeps_a_floor_and_a_must_run_list():
    sys.path.insert(0, str(CI))
    try:
        import check_tests
    finally:
        sys.path.remove(str(CI))
    assert check_tests.read_floor(CI / "test_floor") >= 200
    patterns = check_tests.read_patterns(CI / "must_run.txt")
    assert "Testing/test_scene_*.py::*" in patterns
    assert "Testing/test_scoring.py::test_score_volume_on_the_real_ct" in patterns
    # Every pattern names tests that exist in this checkout.
    for pattern in patterns:
        module = pattern.split("::")[0]
        assert list(REPO.glob(module)), pattern


def test_ci_passes_when_enough_tests_pass_and_must_run_tests_ran(tmp_path):
    root = _ci_copy(tmp_path, PYTEST, floor=4, must_run="tests/test_demo.py::test_param*\n")
    done = _run_ci(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ci: 4 passed (floor 4), 1 skipped, 1 must-run pattern(s) satisfied" in done.stdout
    assert "SKIPPED" in done.stdout  # -rs lists the reasons of skips


def test_ci_fails_when_no_tests_are_collected(tmp_path):
    root = _ci_copy(tmp_path, f"{PYTEST} -k nothing_matches_this", floor=0)
    done = _run_ci(root)
    assert done.returncode == 1
    assert "pytest collected no tests (exit 5)" in done.stderr


def test_ci_fails_below_the_floor(tmp_path):
    root = _ci_copy(tmp_path, PYTEST, floor=5)
    done = _run_ci(root)
    assert done.returncode == 1
    assert "ci: 4 tests passed, fewer than the floor of 5" in done.stderr


def test_ci_fails_when_a_must_run_test_is_skipped_or_absent(tmp_path):
    root = _ci_copy(tmp_path, PYTEST, floor=1, must_run="# comment\ntests/test_demo.py::test_skipped\n"
                    "tests/test_gone.py::*\n")
    done = _run_ci(root)
    assert done.returncode == 1
    assert "must-run test tests/test_demo.py::test_skipped was skipped" in done.stderr
    assert "must-run tests tests/test_gone.py::*: none ran" in done.stderr


def test_ci_fails_when_the_command_runs_no_tests_or_fails(tmp_path):
    done = _run_ci(_ci_copy(tmp_path / "a", "echo nothing to test", floor=0))
    assert done.returncode == 1 and "wrote no pytest report" in done.stderr
    done = _run_ci(_ci_copy(tmp_path / "b", f"{PYTEST} && exit 7", floor=0))
    assert done.returncode == 7


def _fake_apt(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "apt.log"
    tool = tmp_path / "fake-apt-get"
    tool.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    tool.chmod(0o755)
    return tool, log


def test_ci_installs_the_listed_debian_packages_first(tmp_path):
    tool, log = _fake_apt(tmp_path)
    apt = "# browsers for the screenshot tests\nchromium  # headless\n\nfonts-dejavu-core\n"
    root = _ci_copy(tmp_path, f"test -s {log} && {PYTEST}", floor=4, apt=apt)
    done = _run_ci(root, CI_APT_GET=str(tool))
    assert done.returncode == 0, done.stdout + done.stderr
    assert log.read_text().splitlines() == ["update", "install -y --no-install-recommends chromium fonts-dejavu-core"]


def test_ci_installs_nothing_for_an_empty_list(tmp_path):
    tool, log = _fake_apt(tmp_path)
    root = _ci_copy(tmp_path, PYTEST, floor=4, apt="# nothing yet\n\n")
    done = _run_ci(root, CI_APT_GET=str(tool))
    assert done.returncode == 0, done.stdout + done.stderr
    assert not log.exists()


def test_a_failing_apt_get_fails_ci(tmp_path):
    tool = tmp_path / "broken-apt-get"
    tool.write_text("#!/bin/sh\nexit 100\n")
    tool.chmod(0o755)
    root = _ci_copy(tmp_path, PYTEST, floor=0, apt="chromium\n")
    done = _run_ci(root, CI_APT_GET=str(tool))
    assert done.returncode == 1 and "apt-get update failed" in done.stderr


@pytest.mark.parametrize("body,message", [("", "holds no whole number"), ("many\n", "holds no whole number")])
def test_a_missing_or_broken_floor_fails(tmp_path, body, message):
    root = _ci_copy(tmp_path, PYTEST, floor=0)
    (root / ".ci" / "test_floor").write_text(body)
    done = _run_ci(root)
    assert done.returncode == 1 and message in done.stderr


DEMO_CLASS_TESTS = """
import pytest

class TestGroup:
    def test_in_class(self):
        assert [1, 2][-1] == 2

    @pytest.mark.parametrize("n", [3])
    def test_param_in_class(self, n):
        assert n == 3

    def test_skipped_in_class(self):
        pytest.skip("needs something absent")
"""


def test_a_test_in_a_class_is_matched_by_the_pattern_of_its_file(tmp_path):
    root = _ci_copy(tmp_path, PYTEST, floor=6, must_run="tests/test_group.py::*\n")
    (root / "tests" / "test_group.py").write_text(DEMO_CLASS_TESTS)
    done = _run_ci(root)
    # the skipped test sits in a class: its id is the file's, so the file's pattern catches it
    assert done.returncode == 1
    assert "must-run test tests/test_group.py::TestGroup::test_skipped_in_class was skipped" in done.stderr
    assert "none ran" not in done.stderr

    (root / "tests" / "test_group.py").write_text(DEMO_CLASS_TESTS.split("    def test_skipped_in_class")[0])
    root_must = root / ".ci" / "must_run.txt"
    root_must.write_text("tests/test_group.py::*\ntests/test_group.py::TestGroup::test_param_in_class[[]3]\n")
    done = _run_ci(root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ci: 6 passed (floor 6), 1 skipped, 2 must-run pattern(s) satisfied" in done.stdout


def _check_tests():
    sys.path.insert(0, str(CI))
    try:
        import check_tests
    finally:
        sys.path.remove(str(CI))
    return check_tests


@pytest.mark.parametrize("classname,name,file,expected", [
    ("Testing.test_x", "test_y", "Testing/test_x.py", "Testing/test_x.py::test_y"),
    ("Testing.test_x.TestC", "test_y[2]", "Testing/test_x.py", "Testing/test_x.py::TestC::test_y[2]"),
    ("Testing.test_x.TestC.TestInner", "test_y", "Testing/test_x.py", "Testing/test_x.py::TestC::TestInner::test_y"),
    ("ci.Testing.test_x.TestC", "test_y", "Testing/test_x.py", "Testing/test_x.py::TestC::test_y"),  # --junit-prefix
    # reports without the file attribute (xunit2): classes start at the first Test* part
    ("Testing.test_x.TestC", "test_y", None, "Testing/test_x.py::TestC::test_y"),
    ("Testing.test_x", "test_y", None, "Testing/test_x.py::test_y"),
])
def test_node_ids_from_the_junit_testcase(classname, name, file, expected):
    assert _check_tests().node_id(classname, name, file) == expected
