"""Jobs of the ``medsora serve`` page: a blocking function run in a thread, awaited on the event loop, and
cancelled by a flag the function checks between its steps.

Python cannot stop a thread from outside, so a job stops itself: the functions the page runs
(:meth:`MedSORALib.web.session.WebSession.read_case`, the scoring) call :meth:`CancelToken.check`
between the blocks of the input checksum (one per MiB read), before and after reading the CT and its
segmentation, before measuring, and at every step scoring reports. Once the page cancels, the next
check raises :class:`JobCancelled`: the thread ends, its partial results are dropped with its frames,
and a new job can start at once. A step that is one library call (decompressing an image, a DICOM
series read, measuring the organs) finishes that call before the check that ends it.
"""
from __future__ import annotations

import asyncio
import threading


class JobCancelled(Exception):
    """Raised inside a job's thread at the first check after the page cancelled it."""


class CancelToken:
    """A job's cancel flag: set by the page (event-loop thread), checked by the job (its own thread)."""

    def __init__(self):
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` when the job was cancelled; return at once otherwise."""
        if self._event.is_set():
            raise JobCancelled()

    def progress(self, report=None):
        """A ``progress(fraction, message)`` callback that checks the flag, then calls ``report``."""
        def checked(fraction, message):
            self.check()
            if report is not None:
                report(fraction, message)
        return checked


def run_in_thread(function, *args):
    """Run ``function(*args)`` in a daemon thread; returns an awaitable of its result.

    A daemon thread, unlike an executor's, does not keep the process alive when
    the server stops (``--lifetime``) during a long job.
    """
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(error, value):
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(value)

    def work():
        try:
            value = function(*args)
        except BaseException as error:  # handed to the awaiting coroutine
            if isinstance(error, JobCancelled):
                # Its traceback's frames hold what the job had read (a CT): released with the thread.
                error.__traceback__ = None
            loop.call_soon_threadsafe(settle, error, None)
        else:
            loop.call_soon_threadsafe(settle, None, value)

    threading.Thread(target=work, name="medsora-web-job", daemon=True).start()
    return future
