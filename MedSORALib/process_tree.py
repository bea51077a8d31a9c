"""Start a child process so that it can be ended with everything it started, and end it so.

Inside 3D Slicer, ``PythonSlicer`` is a launcher: it sets up the environment and
starts the real Python interpreter as its own child. Killing the process that
``QProcess`` started therefore kills only the launcher and leaves the worker
computing, holding memory and the GPU. This module closes that gap without
psutil:

- POSIX: :func:`group_leader_command` wraps a ``python -m MODULE ...`` command so
  that the interpreter that finally runs it first becomes the leader of a new
  session and process group (``os.setsid``), then replaces itself with the
  module (``exec``: same pid). Everything it starts stays in that group. On
  Linux it also asks to be killed when its parent (the launcher) dies
  (``PR_SET_PDEATHSIG``).
- :func:`kill_tree` takes a snapshot of the processes below a root pid (``/proc``
  on Linux, ``ps`` elsewhere), kills the process groups led by any of them and
  then each of them, the root last. On Windows it runs ``taskkill /T /F``, which
  ends the root and every process below it.

Plain Python, no Slicer import: the module panel and the tests use it alike.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

#: The module run by :func:`group_leader_command` (``python -m MedSORALib.process_tree MODULE ARGS``).
LAUNCH_MODULE = "MedSORALib.process_tree"


def group_leader_command(command: list[str]) -> list[str]:
    """``[python, "-m", MODULE, *args]`` run as the leader of its own process group (POSIX).

    The result is ``[python, "-m", "MedSORALib.process_tree", MODULE, *args]``; see
    :func:`main`. On Windows the command is returned unchanged (no process
    groups; :func:`kill_tree` walks the tree there).
    """
    if os.name != "posix":
        return list(command)
    if len(command) < 3 or command[1] != "-m":
        raise ValueError(f"expected [python, '-m', module, ...], got {command!r}")
    return [command[0], "-m", LAUNCH_MODULE, *command[2:]]


def _die_with_parent() -> None:
    """Linux: receive SIGKILL when the parent process ends (kept across exec)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # no prctl: kill_tree still finds the group
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m MedSORALib.process_tree MODULE ARGS...``: new session, then ``python -m MODULE ARGS`` (exec)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        print("usage: python -m MedSORALib.process_tree MODULE [ARGS...]", file=sys.stderr)
        return 2
    parent = os.getppid()
    if os.name == "posix":
        if os.getpgrp() != os.getpid():
            os.setsid()
        _die_with_parent()
        if os.getppid() != parent:  # the parent ended before the request took effect
            return 1
        os.execv(sys.executable, [sys.executable, "-m", *argv])
    import runpy  # Windows: run the module in this process

    sys.argv = [argv[0], *argv[1:]]
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    return 0


# ------------------------------------------------------------------------------------------
# the process table
# ------------------------------------------------------------------------------------------

def _table_proc() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process, from /proc (Linux)."""
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        # "pid (command) state ppid pgrp ...": the command may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] == "Z":  # a zombie holds no resources and cannot be killed
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return table


def _table_ps() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process, from ``ps`` (macOS, BSD)."""
    out = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid=", "-o", "pgid=", "-o", "stat="],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and not (len(parts) > 3 and parts[3].startswith("Z")):
            table[int(parts[0])] = (int(parts[1]), int(parts[2]))
    return table


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of the live processes (POSIX)."""
    return _table_proc() if os.path.isdir("/proc/self") and os.path.exists("/proc/self/stat") else _table_ps()


def descendants(root: int, table: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """Pids below ``root`` (children first, then theirs), from a snapshot of the process table."""
    table = process_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, frontier = [], [root]
    while frontier:
        nxt = []
        for pid in frontier:
            for child in children.get(pid, ()):
                if child not in found and child != root:
                    found.append(child)
                    nxt.append(child)
        frontier = nxt
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as ended)."""
    if os.name != "posix":
        out = subprocess.run(["tasklist", "/FI", f"PID eq {pid}", "/NH"], capture_output=True, text=True,
                             timeout=30).stdout
        return str(pid) in out.split()
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2:].split()[0] != "Z"
    except OSError:
        if os.path.isdir("/proc/self"):
            return False
    return pid in process_table()


def _kill_windows(root: int) -> None:
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    subprocess.run(["taskkill", "/PID", str(root), "/T", "/F"], capture_output=True, timeout=30,
                   creationflags=flags)


def kill_tree(root: int, include_root: bool = True, wait: float = 2.0) -> list[int]:
    """Kill ``root``, its descendants and their process groups; returns the pids signalled.

    The tree is read once, before anything is killed (a killed launcher's
    children would be adopted by init and no longer be found under it). The
    root is killed first, so that a launcher that reports its child's end
    cannot exit on its own in between (it ends by SIGKILL, always). Each
    process group led by one of the pids is killed as a whole, which also
    reaches processes started after the snapshot and orphans adopted by init;
    the caller's own group is never signalled. Waits up to ``wait`` seconds for
    the processes to end.
    """
    if os.name != "posix":
        _kill_windows(root)
        return [root]
    table = process_table()
    below = descendants(root, table)
    tree = below + ([root] if include_root else [])
    own_group = os.getpgrp()
    groups = {table[pid][1] for pid in tree if pid in table and table[pid][1] == pid and pid != own_group}
    if include_root:
        try:
            os.kill(root, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for pid in below:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(alive(pid) for pid in below):
        time.sleep(0.01)
    return tree


if __name__ == "__main__":
    sys.exit(main())
