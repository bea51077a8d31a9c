"""Jobs of the ``medsora serve`` page: a blocking function run in a thread, awaited on the event loop."""
from __future__ import annotations

import asyncio
import threading


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
            loop.call_soon_threadsafe(settle, error, None)
        else:
            loop.call_soon_threadsafe(settle, None, value)

    threading.Thread(target=work, name="medsora-web-job", daemon=True).start()
    return future
