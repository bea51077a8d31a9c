"""The client side of the worker: start ``medsora worker``, send requests, turn its output into events.

:class:`WorkerProtocol` does no I/O (bytes out, bytes in), so the Slicer panel
drives it from ``qt.QProcess`` signals; :class:`WorkerClient` drives it with
:mod:`subprocess` (scripts, tests, benchmarks). Requests are built with
:func:`MedSORALib.worker.protocol.request_fields`.
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..errors import MedSORAError
from ..scoring import Progress
from .protocol import EVENTS, encode_event

#: The folder that holds the ``MedSORALib`` package (put on the worker's ``PYTHONPATH``).
LIBRARY_PARENT = str(Path(__file__).resolve().parents[2])


class WorkerError(MedSORAError):
    """The scoring worker reported an error, or stopped while a request was pending."""


def worker_command(python: str | None = None) -> list[str]:
    """Command line that starts a worker: ``python -m MedSORALib worker``.

    Args:
        python: interpreter (default: ``PythonSlicer`` when on the ``PATH``, as
            inside Slicer, else this interpreter).
    """
    if python is None:
        python = shutil.which("PythonSlicer") or sys.executable
    return [python, "-m", "MedSORALib", "worker"]


def worker_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for the worker: this ``MedSORALib`` first on ``PYTHONPATH``, unbuffered output."""
    env = dict(os.environ if base is None else base)
    paths = [LIBRARY_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != LIBRARY_PARENT]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class WorkerProtocol:
    """Requests out, events in, for one worker process (the caller does the I/O).

    :meth:`request` registers a pending request and returns the line to write
    to the worker's stdin. :meth:`feed` takes bytes read from its stdout and
    returns the complete events (dicts with ``id`` and ``event``); a line that is
    not a JSON event becomes an ``error`` event of the pending request.
    :meth:`exited` turns the end of the process into an ``error`` event for each
    request still pending, unless :meth:`cancel` was called first.
    """

    next_id: int = 1
    pending: list[int] = field(default_factory=list)
    cancelled: bool = False
    _buffer: bytes = b""

    def request(self, fields: Mapping[str, Any]) -> tuple[int, bytes]:
        """``(id, line)`` for a scoring request with the given fields (volume, segmentation, ...)."""
        request_id = self.next_id
        self.next_id += 1
        self.pending.append(request_id)
        return request_id, self.encode({"id": request_id, **dict(fields)})

    def shutdown(self) -> bytes:
        """The line asking the worker to exit."""
        request_id = self.next_id
        self.next_id += 1
        return self.encode({"id": request_id, "cmd": "shutdown"})

    @staticmethod
    def encode(message: Mapping[str, Any]) -> bytes:
        return encode_event(message).encode("ascii")

    def feed(self, data: bytes) -> list[dict]:
        self._buffer += data
        events = []
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.strip():
                events.append(self._event(line))
        return events

    def _event(self, line: bytes) -> dict:
        try:
            event = json.loads(line.decode("utf-8"))
            if not isinstance(event, dict) or event.get("event") not in EVENTS:
                raise ValueError("not an event")
        except ValueError:
            shown = line.decode("utf-8", "replace")[:200]
            return {"id": self.pending[0] if self.pending else None, "event": "error",
                    "message": f"The scoring worker wrote an unexpected line: {shown!r}"}
        if event["event"] in ("result", "error") and event.get("id") in self.pending:
            self.pending.remove(event["id"])
        return event

    def cancel(self) -> None:
        """Mark the pending requests as cancelled (the caller then kills the process)."""
        self.cancelled = True

    def exited(self, exit_code: int | None) -> list[dict]:
        """Error events for the requests left pending when the worker process ended."""
        events = []
        if not self.cancelled:
            how = f"exit code {exit_code}" if exit_code is not None and exit_code >= 0 else (
                f"signal {-exit_code}" if exit_code is not None else "crashed")
            for request_id in self.pending:
                events.append({"id": request_id, "event": "error",
                               "message": f"The scoring worker stopped unexpectedly ({how})."})
        self.pending.clear()
        return events


class WorkerClient:
    """A ``medsora worker`` child process driven through :mod:`subprocess` (scripts, tests, benchmarks).

    The process starts on the first request and is kept for the next ones (the
    models stay loaded in it). A reader thread turns its stdout into events; its
    stderr (logs, warnings) goes to ``stderr`` (default: inherited).

    Example::

        with WorkerClient() as worker:
            event = worker.run(request_fields("ct.nii.gz", "seg.nii.gz", ["jaundice"], "out/p1",
                                              label_scheme="totalsegmentator"))
            event["files"]
    """

    def __init__(self, command: Sequence[str] | None = None, env: Mapping[str, str] | None = None, stderr=None):
        self.command = list(command or worker_command())
        self.env = dict(env) if env is not None else worker_environment()
        self.stderr = stderr
        self.process: subprocess.Popen | None = None
        self.protocol = WorkerProtocol()
        self._events: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self.protocol = WorkerProtocol()
        self._events = queue.Queue()
        self.process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.stderr, env=self.env, bufsize=0)
        self._reader = threading.Thread(target=self._read, args=(self.process, self.protocol, self._events),
                                        name="medsora-worker-reader", daemon=True)
        self._reader.start()

    @staticmethod
    def _read(process: subprocess.Popen, protocol: WorkerProtocol, events: queue.Queue) -> None:
        descriptor = process.stdout.fileno()
        while True:
            data = os.read(descriptor, 65536)  # returns what is there, b"" at end of output
            if not data:
                break
            for event in protocol.feed(data):
                events.put(event)
        for event in protocol.exited(process.wait()):
            events.put(event)
        events.put(None)  # the process has ended

    def submit(self, fields: Mapping[str, Any]) -> int:
        """Send a scoring request (starting the worker if needed); returns its id."""
        self.start()
        request_id, line = self.protocol.request(fields)
        self.process.stdin.write(line)
        self.process.stdin.flush()
        return request_id

    def next_event(self, timeout: float | None = None) -> dict | None:
        """The next event, or ``None`` when the process has ended (raises ``queue.Empty`` on timeout)."""
        return self._events.get(timeout=timeout)

    def wait_for(self, request_id: int, progress: Progress | None = None,
                 on_event: Callable[[dict], None] | None = None) -> dict:
        """Block until the request's ``result`` event and return it; raise :class:`WorkerError` on ``error``."""
        while True:
            event = self.next_event()
            if event is None:
                raise WorkerError("The scoring worker ended without answering.")
            if on_event is not None:
                on_event(event)
            if event.get("id") != request_id:
                continue
            if event["event"] == "progress" and progress is not None:
                progress(float(event.get("fraction", 0.0)), str(event.get("message", "")))
            elif event["event"] == "result":
                return event
            elif event["event"] == "error":
                raise WorkerError(str(event.get("message", "The scoring worker failed.")))

    def run(self, fields: Mapping[str, Any], progress: Progress | None = None) -> dict:
        """Submit a request and wait for its result event."""
        return self.wait_for(self.submit(fields), progress)

    def cancel(self, timeout: float = 5.0) -> int | None:
        """Kill the worker (the models go with it); returns its exit status."""
        if self.process is None:
            return None
        self.protocol.cancel()
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait(timeout)
        self._close_pipes()
        return code

    def shutdown(self, timeout: float = 30.0) -> int | None:
        """Ask the worker to exit after its current request; kill it if it does not within ``timeout`` s."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            try:
                self.process.stdin.write(self.protocol.shutdown())
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pipes()
        return self.process.returncode

    def _close_pipes(self) -> None:
        if self._reader is not None:
            self._reader.join(5.0)
        for pipe in (self.process.stdin, self.process.stdout):
            try:
                pipe.close()
            except (OSError, ValueError):
                pass

    def __enter__(self) -> "WorkerClient":
        return self

    def __exit__(self, *exc) -> None:
        if self.running:
            self.shutdown()
