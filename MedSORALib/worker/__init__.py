"""``medsora worker``: a scoring process that keeps the models loaded and speaks JSON lines.

The 3D Slicer panel starts one on its first Apply (``PythonSlicer -m MedSORALib
worker``) and keeps it, so that torch, the models and a CT's opened case live
outside Slicer's process: the application stays responsive, Cancel kills the
process at once, and a crash in torch ends the worker, not Slicer.

- :mod:`.protocol`: the request schema and the events (the one description of
  the protocol is docs/worker.md);
- :mod:`.server`: the process, answering each request through a
  :class:`MedSORALib.session.ScoringSession`;
- :mod:`.client`: starting a worker and talking to it (:class:`WorkerClient`,
  and :class:`WorkerProtocol` for callers that do their own I/O).
"""
from .client import LIBRARY_PARENT, WorkerClient, WorkerError, WorkerProtocol, worker_command, worker_environment
from .protocol import EVENTS, RequestError, parse_request, request_fields

__all__ = ["EVENTS", "LIBRARY_PARENT", "RequestError", "WorkerClient", "WorkerError", "WorkerProtocol",
           "parse_request", "request_fields", "worker_command", "worker_environment"]
