"""MedSORALib.process_tree: a worker started behind a launcher, as PythonSlicer starts it, ends with all it started.

The launcher stand-in is a script that runs the real interpreter as its child and waits for it, as Slicer's
``PythonSlicer`` does; killing only the launcher (what ``QProcess.kill()`` does) leaves that child running.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from MedSORALib import process_tree

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX; Windows uses taskkill /T")

#: A worker stand-in: a child, and a grandchild whose parent exits at once (adopted by init, so outside the
#: launcher's tree, but in the worker's process group); prints the pids, then waits.
PAYLOAD = r'''
import json, os, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
spawner = subprocess.Popen([sys.executable, "-c",
                            "import subprocess; print(subprocess.Popen(['sleep', '300']).pid, flush=True)"],
                           stdout=subprocess.PIPE, text=True)
orphan = int(spawner.stdout.readline())
spawner.wait()
print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "pgid": os.getpgrp(), "child": child.pid,
                  "orphan": orphan}), flush=True)
time.sleep(300)
'''


def write_launcher(folder: Path, name: str = "PythonSlicer") -> Path:
    """An executable launcher stand-in: runs this interpreter with its arguments as a child and waits."""
    folder.mkdir(parents=True, exist_ok=True)
    launcher = folder / name
    launcher.write_text(f"#!{sys.executable}\n"
                        "# Stand-in for Slicer's PythonSlicer launcher: the real interpreter runs as its child.\n"
                        "import subprocess, sys\n"
                        f"sys.exit(subprocess.call([{sys.executable!r}, *sys.argv[1:]]))\n", encoding="utf-8")
    launcher.chmod(0o755)
    return launcher


def _start(tmp_path, command):
    (tmp_path / "tree_payload.py").write_text(PAYLOAD, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]))
    launcher = subprocess.Popen([str(write_launcher(tmp_path / "bin")), *command], stdout=subprocess.PIPE,
                                text=True, env=env)
    info = json.loads(launcher.stdout.readline())
    return launcher, info


def _wait_dead(pids, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(process_tree.alive(p) for p in pids):
        time.sleep(0.02)
    return [p for p in pids if process_tree.alive(p)]


def _cleanup(pids):
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_killing_only_the_launcher_leaves_the_worker_running(tmp_path):
    """The control: what QProcess.kill() does to a worker behind PythonSlicer."""
    launcher, info = _start(tmp_path, ["-m", "tree_payload"])
    pids = [info["pid"], info["child"], info["orphan"]]
    try:
        assert info["ppid"] == launcher.pid  # the worker is the launcher's child, not ours
        launcher.kill()
        launcher.wait(10)
        time.sleep(0.3)
        assert all(process_tree.alive(pid) for pid in pids)
    finally:
        _cleanup(pids)


def test_kill_tree_ends_the_launcher_the_worker_and_everything_it_started(tmp_path):
    command = process_tree.group_leader_command([sys.executable, "-m", "tree_payload"])[1:]
    launcher, info = _start(tmp_path, command)
    pids = [info["pid"], info["child"], info["orphan"]]
    try:
        assert info["ppid"] == launcher.pid
        assert info["pgid"] == info["pid"] != os.getpgrp()  # the worker leads its own group
        below = process_tree.descendants(launcher.pid)
        assert info["pid"] in below and info["child"] in below
        assert info["orphan"] not in below  # adopted by init: only its process group still reaches it
        started = time.monotonic()
        signalled = process_tree.kill_tree(launcher.pid)
        assert launcher.wait(10) == -9 and signalled[-1] == launcher.pid
        assert _wait_dead(pids) == []
        assert time.monotonic() - started < 3.0
        assert process_tree.alive(os.getpid())  # the caller's own group was left alone
    finally:
        _cleanup(pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_group_leader_dies_with_its_launcher_on_linux(tmp_path):
    command = process_tree.group_leader_command([sys.executable, "-m", "tree_payload"])[1:]
    launcher, info = _start(tmp_path, command)
    try:
        launcher.kill()
        launcher.wait(10)
        assert _wait_dead([info["pid"]]) == []
    finally:
        _cleanup([info["pid"], info["child"], info["orphan"]])


def test_group_leader_command_and_its_exit_status(tmp_path):
    assert process_tree.group_leader_command(["/x/PythonSlicer", "-m", "MedSORALib", "worker"]) == [
        "/x/PythonSlicer", "-m", "MedSORALib.process_tree", "MedSORALib", "worker"]
    with pytest.raises(ValueError):
        process_tree.group_leader_command(["python", "script.py"])
    # the wrapped module runs with its arguments and its exit status, in the leader's pid
    (tmp_path / "exits.py").write_text("import os, sys\nprint(os.getpid() == os.getpgrp(), sys.argv[1:])\n"
                                       "sys.exit(7)\n", encoding="utf-8")
    done = subprocess.run(process_tree.group_leader_command([sys.executable, "-m", "exits", "a", "b c"]),
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)])))
    assert done.returncode == 7 and done.stdout.strip() == "True ['a', 'b c']"
    no_module = subprocess.run([sys.executable, "-m", "MedSORALib.process_tree"], capture_output=True, text=True,
                               timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert no_module.returncode == 2 and "usage" in no_module.stderr


def test_windows_kills_the_tree_with_taskkill(monkeypatch):
    calls = []
    monkeypatch.setattr(process_tree.os, "name", "nt")
    monkeypatch.setattr(process_tree.subprocess, "run", lambda args, **kwargs: calls.append(args))
    assert process_tree.group_leader_command(["python.exe", "-m", "MedSORALib", "worker"]) == [
        "python.exe", "-m", "MedSORALib", "worker"]
    assert process_tree.kill_tree(4242) == [4242]
    assert calls == [["taskkill", "/PID", "4242", "/T", "/F"]]


def test_descendants_follow_parent_links_of_a_table():
    table = {10: (1, 10), 11: (10, 10), 12: (11, 12), 13: (12, 12), 20: (1, 20), 21: (20, 20)}
    assert process_tree.descendants(10, table) == [11, 12, 13]
    assert process_tree.descendants(20, table) == [21]
    assert process_tree.descendants(13, table) == []
