"""``medsora batch``: score the (CT, segmentation, symptom) rows of a CSV manifest, on Dask or in this process."""
from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import socket
import sys
import uuid
from pathlib import Path

from ..errors import InputFileError
from ..session import check_output_prefix, output_files
from .score import add_model_arguments, settings_from_args

DESCRIPTION = """\
Score many CTs and symptoms listed in a CSV manifest.

The manifest has a header row with the columns
  volume, segmentation, label_scheme, symptom
(paths relative to the manifest's folder; label_scheme may be empty for a
.seg.nrrd), and optionally age and sex (the patient's, for the reference
ranges; empty: the DICOM header's, else unknown). Each row writes
DIR/<row>_<volume name>.seg.nrrd and .json (and .png with --preview,
_seg.dcm and _sr.dcm with --dicom-sr). The rows of one CT are scored together
on one worker: its organs are read and measured once.

The rows run on Dask: --workers N starts a local cluster of N worker
processes (default: one per core, at most one per CT); --scheduler uses an
existing cluster (tcp://host:port or a scheduler file), whose workers must see
the same paths and have the same medsora installed. A manifest with a single
CT, --workers 0, or a run inside 3D Slicer score in this process instead.

Every row ends in DIR/summary.csv (and summary.parquet with pyarrow, and
summary.json): status ok, skipped (done by an earlier run with the same inputs
and models) or failed with a one-line reason, top organ, files, elapsed
seconds and worker. A re-run skips the rows already done (--force redoes
them). One batch at a time may write to a folder.

Exit status: 0 all rows ok or skipped, 1 some row failed, 2 bad manifest or
options, or the folder is in use."""

EPILOG = """\
examples:
  medsora batch cohort.csv --output-dir out/cohort --workers 8
  medsora batch cohort.csv --output-dir out/cohort --scheduler tcp://10.0.0.5:8786
  medsora batch cohort.csv --output-dir out/cohort --scheduler ~/scheduler.json --no-progress"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("batch", help="score the rows of a CSV manifest (volume, segmentation, "
                                   "label_scheme, symptom), on Dask or in this process", description=DESCRIPTION,
                                   epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", metavar="MANIFEST.csv", help="CSV with volume, segmentation, label_scheme, symptom")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the outputs and summary.csv")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, metavar="N",
                       help="local Dask cluster of N worker processes, 1 thread each (default: one per core, at "
                            "most one per CT); 0: score in this process")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="an existing Dask cluster: scheduler address (tcp://host:8786) or scheduler file")
    parser.add_argument("--force", action="store_true", help="redo rows whose outputs are up to date")
    parser.add_argument("--retries", type=int, default=None, metavar="K",
                        help="local cluster: re-run a CT's task on another worker at most K times when its worker "
                             "dies (default: 3)")
    parser.add_argument("--dashboard-address", default=DEFAULT_DASHBOARD, metavar="[HOST]:PORT",
                        help=f"local cluster: where the Dask dashboard listens (default {DEFAULT_DASHBOARD}, this "
                             "machine only; :PORT listens on every interface; port 0 picks a free one)")
    parser.add_argument("--preview", action="store_true", help="also write a PNG preview per row")
    parser.add_argument("--dicom-sr", action="store_true",
                        help="also write a DICOM SEG and a DICOM SR (TID 1500) of the measurements and findings per "
                             "row (every volume must be a DICOM series folder)")
    parser.add_argument("--no-passages", action="store_true", help="skip the supporting knowledge passages")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar or progress lines")
    add_model_arguments(parser)
    return parser


#: The Dask dashboard of a local cluster listens on this machine only unless asked otherwise.
DEFAULT_DASHBOARD = "127.0.0.1:8787"
_SCHEDULER_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ws|wss|ucx|inproc)://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+)"
                                r"(?::\d{1,5})?$")


def check_dashboard_address(value: str) -> str:
    """``[HOST]:PORT`` with a port 0..65535 and a host that resolves (empty: every interface)."""
    host, sep, port = str(value).strip().rpartition(":")
    usage = f"--dashboard-address {value}: give [HOST]:PORT, such as {DEFAULT_DASHBOARD} (port 0 picks a free one)"
    if not sep or not port.isdigit() or int(port) > 65535:
        raise InputFileError(usage)
    host = host.strip("[]")
    if host:
        try:
            socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError):
            raise InputFileError(f"--dashboard-address {value}: the host {host} does not resolve") from None
    return value


def check_scheduler(value: str) -> str:
    """A Dask scheduler address (``tcp://host:8786``) or scheduler file (JSON with an ``address``)."""
    import json

    from ..validation import check_input_path

    if os.path.exists(value):
        if os.path.isdir(value):
            raise InputFileError(f"--scheduler {value}: a folder, not a scheduler file")
        path = check_input_path(value, "scheduler file")
        try:
            with open(path, "rb") as handle:
                data = json.loads(handle.read(1 << 20).decode("utf-8"))
        except (ValueError, OSError):
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("address"), str):
            raise InputFileError(f"--scheduler {value}: not a Dask scheduler file (a JSON file with an "
                                 "\"address\", as dask scheduler --scheduler-file writes)")
        return value
    if not _SCHEDULER_ADDRESS.match(value.strip()):
        raise InputFileError(f"--scheduler {value}: neither a scheduler address (tcp://host:8786) nor an "
                             "existing scheduler file")
    return value


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def inside_slicer() -> bool:
    """Whether this runs in the 3D Slicer application (``Slicer --python-script``)."""
    return getattr(sys.modules.get("slicer"), "app", None) is not None


def planned_outputs(out_dir: Path, rows, preview: bool, dicom_sr: bool = False) -> list[Path]:
    """Every file a batch into ``out_dir`` may write or remove: each row's files and record, the summaries,
    the lock, and what is left in the staging folder (removed at the start)."""
    from ..batch import STATE_DIR
    from ..batch.lock import BatchLock
    from ..batch.summary import SUMMARY_NAMES
    from ..batch.rows import record_path

    files = [path for row in rows for path in output_files(out_dir / row.name, 1, preview, dicom_sr=dicom_sr)]
    files += [out_dir / name for name in SUMMARY_NAMES.values()]
    files += [record_path(out_dir, row) for row in rows]
    files.append(BatchLock(out_dir).path)
    return files + sorted((out_dir / STATE_DIR / "staging").rglob("*"))


def run(args) -> int:
    from ..batch import STATE_DIR
    from ..batch.lock import BatchLock
    from ..batch.manifest import check_rows, group_rows, read_manifest
    from ..batch.runner import DEFAULT_ALLOWED_FAILURES, Mode, ProgressReporter, model_version, run_groups
    from ..batch.summary import write_summary
    from ..batch.rows import BatchOptions, failed
    from ..validation import check_outputs_spare_inputs

    rows = read_manifest(args.manifest)
    if args.scheduler is not None:
        check_scheduler(args.scheduler)
    check_dashboard_address(args.dashboard_address)
    check_rows(rows, args.manifest)
    if args.workers is not None and args.workers < 0:
        raise InputFileError(f"--workers {args.workers}: give 0 (this process) or a positive number")
    if args.retries is not None and args.retries < 0:
        raise InputFileError(f"--retries {args.retries}: give 0 or a positive number")
    settings = settings_from_args(args)
    out_dir = Path(args.output_dir).resolve()
    check_output_prefix(out_dir / "summary")
    if args.dicom_sr:
        flat = sorted({r.volume for r in rows if not Path(r.volume).is_dir()})
        if flat:
            raise InputFileError(f"--dicom-sr needs every volume as a DICOM series folder; not one: {flat[0]}")
    check_outputs_spare_inputs(planned_outputs(out_dir, rows, args.preview, args.dicom_sr),
                               [args.manifest, *(r.volume for r in rows), *(r.segmentation for r in rows)],
                               option="--output-dir", hint="choose another --output-dir")
    groups = group_rows(rows)

    cores = available_cores()
    if args.scheduler is not None:
        mode = Mode(scheduler=args.scheduler)
    elif args.workers == 0 or (args.workers is None and len(groups) == 1) or inside_slicer():
        mode = Mode(workers=0)
    else:
        mode = Mode(workers=args.workers if args.workers is not None else min(cores, len(groups)))
    mode.allowed_failures = DEFAULT_ALLOWED_FAILURES if args.retries is None else args.retries
    if (mode.scheduler is not None or mode.workers) and importlib.util.find_spec("distributed") is None:
        raise InputFileError("running on Dask needs the distributed package (pip install distributed); "
                             "--workers 0 scores in this process without it")
    mode.dashboard_address = args.dashboard_address

    options = BatchOptions(
        output_dir=str(out_dir), run_id=uuid.uuid4().hex[:12], model_version="", force=args.force,
        scoring=settings, dicom_sr=args.dicom_sr,
        torch_threads=1 if mode.scheduler is None and mode.workers else None)
    from dataclasses import replace

    options = replace(options, model_version=model_version(options))

    out_dir.mkdir(parents=True, exist_ok=True)
    progress = ProgressReporter(len(rows), enabled=not args.no_progress)
    with BatchLock(out_dir):
        # Files a killed worker was writing never reached their final names; drop them.
        shutil.rmtree(out_dir / STATE_DIR / "staging", ignore_errors=True)
        progress.say(f"{len(rows)} rows over {len(groups)} CTs into {out_dir}")
        records: list[dict] = []

        def report(done: list[dict]) -> None:
            records.extend(done)
            progress(done)

        try:
            progress.watch(out_dir, [row.number for row in rows])  # rows counted as they are scored
            run_groups(groups, options, mode, report, progress.say)
        except KeyboardInterrupt:
            seen = {r["row"] for r in records}
            records.extend(failed(row, "interrupted before it was scored") for row in rows if row.number not in seen)
            write_summary(out_dir, records, {"run_id": options.run_id, "model_version": options.model_version})
            raise
        finally:
            progress.close()
        written = write_summary(out_dir, records, {"run_id": options.run_id,
                                                   "model_version": options.model_version})
    counts = {s: sum(r["status"] == s for r in records) for s in ("ok", "skipped", "failed")}
    print(f"medsora batch: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed of {len(rows)} "
          f"rows; summary in {written['csv']}")
    return 1 if counts["failed"] else 0
