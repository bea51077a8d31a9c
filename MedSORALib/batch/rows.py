"""A CT's rows of a batch: skip the rows already done, score the others, record each.

:func:`process_group` is the unit of work, in this process or as one Dask task.
It scores through the process's :class:`MedSORALib.session.ScoringSession`
(:func:`MedSORALib.session.shared_session`): the models are loaded once per
process, and a CT's organs are read and measured once for all its rows.
For every row it returns a plain dict (a summary record) and never raises for
a row's sake: any exception while reading, encoding, scoring or writing marks
that row (or, for reading and encoding, the CT's remaining rows) ``failed``
with a one-line reason, and the other rows go on.

A finished row leaves, in this order:

1. its files written complete into ``DIR/.medsora-batch/staging/`` and moved
   onto their final names (``os.replace``), the JSON report last, so a killed
   worker never leaves a partial file under a final name;
2. its record ``DIR/.medsora-batch/rows/<row>.json``, written atomically: the
   row's manifest values, the SHA-256 of its inputs, the model version and the
   names of its files.

A row is skipped (its record reused) when its record matches the manifest
row, the current SHA-256 of its inputs and the model version, and all its
files exist. A row that is redone has its record removed before its new files
replace the old ones, so a crash in between leaves it to be redone.
"""
from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError, MedSORAError
from ..session import ScoringSession, ScoringSettings, shared_session
from . import STATE_DIR
from .manifest import CaseGroup, Row
from .summary import report_fields

RECORD_FORMAT = "medsora-batch-row/1"
#: Longest failure reason kept in the summary, in characters.
MAX_REASON = 400


@dataclass(frozen=True)
class BatchOptions:
    """What every task needs to know: where to write and how to score (picklable).

    The scoring options are :attr:`scoring` (:class:`~MedSORALib.session.ScoringSettings`, the defaults of
    every front door); the properties below read them.
    """

    output_dir: str
    run_id: str
    model_version: str
    force: bool = False
    scoring: ScoringSettings = field(default_factory=ScoringSettings)
    #: also write the DICOM SEG and SR of each row (DICOM series volumes)
    dicom_sr: bool = False
    #: torch threads per worker process (None: leave torch's setting).
    torch_threads: int | None = None

    device = property(lambda self: self.scoring.device)
    setting = property(lambda self: self.scoring.setting)
    text_weights = property(lambda self: self.scoring.text_weights)
    image_weights = property(lambda self: self.scoring.image_weights)
    text_encoder = property(lambda self: self.scoring.text_encoder)
    image_weight = property(lambda self: self.scoring.image_weight)
    passages = property(lambda self: self.scoring.passages)
    preview = property(lambda self: self.scoring.preview)


def state_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / STATE_DIR


def record_path(output_dir: str | os.PathLike, row: Row) -> Path:
    return state_dir(output_dir) / "rows" / f"{row.number:06d}.json"


def read_record(output_dir: str | os.PathLike, row: Row) -> dict | None:
    path = record_path(output_dir, row)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("format") == RECORD_FORMAT else None


def one_line(exc: BaseException) -> str:
    """The reason of a failed row: the package's own message, or the exception's type and first line."""
    text = str(exc).strip()
    if not isinstance(exc, MedSORAError):
        text = f"unexpected {type(exc).__name__}" + (f": {text}" if text else "")
    text = " ".join(text.split()) or type(exc).__name__
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def worker_name() -> str:
    """The Dask worker's address inside a task, else this host and process."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"{socket.gethostname()}:{os.getpid()}"


def base_record(row: Row) -> dict:
    patient = {k: v for k, v in (("age", row.age), ("sex", row.sex)) if v}  # only when the manifest gives them
    return {"row": row.number, "volume": row.volume, "segmentation": row.segmentation,
            "label_scheme": row.label_scheme, "symptom": row.symptom, **patient}


def failed(row: Row, reason: str, elapsed: float = 0.0, worker: str = "") -> dict:
    return {**base_record(row), "status": "failed", "error": reason, "elapsed_s": round(elapsed, 3),
            "worker": worker}


def input_hashes(group: CaseGroup) -> dict | None:
    """Current SHA-256 of the group's CT and segmentation, or None when one cannot be read."""
    from ..files import file_sha256

    try:
        return {"volume": file_sha256(group.volume),
                "segmentation": file_sha256(group.segmentation) if group.segmentation else None}
    except OSError:
        return None


def up_to_date(record: dict | None, row: Row, hashes: dict | None, options: BatchOptions) -> bool:
    """Whether ``record`` says ``row`` was done with these inputs and models and all its files still exist."""
    if record is None or hashes is None:
        return False
    if options.force and record.get("run_id") != options.run_id:
        return False
    if any(record.get(k) != v for k, v in base_record(row).items()):
        return False
    if record.get("inputs_sha256") != hashes or record.get("model_version") != options.model_version:
        return False
    out = Path(options.output_dir)
    files = record.get("files") or []
    if options.dicom_sr and not any(str(name).endswith("_sr.dcm") for name in files):
        return False
    return bool(files) and all((out / name).is_file() for name in files)


def reused(record: dict, options: BatchOptions) -> dict:
    """The summary record of a row taken from its record file (done earlier, or earlier in this run)."""
    keys = ("row", "volume", "segmentation", "label_scheme", "symptom", "in_domain", "top_organ", "top_relevance",
            "files", "json", "segmentation_out", "elapsed_s", "worker")
    status = "ok" if record.get("run_id") == options.run_id else "skipped"
    report = Path(options.output_dir) / str(record.get("json") or "")
    return {**{k: record.get(k) for k in keys}, **report_fields(report), "status": status, "error": ""}


_THREADS_SET = False


def session_for(options: BatchOptions) -> ScoringSession:
    """The scoring session of this process, its models loaded (once per process, reused by every task)."""
    global _THREADS_SET

    if options.torch_threads and not _THREADS_SET:
        import torch

        torch.set_num_threads(int(options.torch_threads))
        _THREADS_SET = True
    session = shared_session(options.scoring)
    session.load()
    return session


def process_group(group: CaseGroup, options: BatchOptions) -> list[dict]:
    """Skip, score or fail every row of one CT; returns one summary record per row, in row order."""
    out = Path(options.output_dir)
    worker = worker_name()
    hashes = input_hashes(group)
    results: dict[int, dict] = {}
    todo = []
    for row in group.rows:
        record = read_record(out, row)
        if up_to_date(record, row, hashes, options):
            results[row.number] = reused(record, options)
        else:
            todo.append(row)
    if todo:
        started = time.perf_counter()
        try:
            session = session_for(options)  # models once per process; not counted in the rows' time
            started = time.perf_counter()
            case = _open(group, session, options, hashes)
        except Exception as exc:  # every failure ends in the summary, not only the package's own
            reason = one_line(exc)
            elapsed = time.perf_counter() - started
            for row in todo:
                results[row.number] = failed(row, reason, elapsed if row is todo[0] else 0.0, worker)
        else:
            setup = time.perf_counter() - started
            for n, row in enumerate(todo):
                t0 = time.perf_counter()
                extra = setup if n == 0 else 0.0  # the CT's reading and encoding count in its first row
                try:
                    results[row.number] = _score_row(row, case, session, options, worker, t0 - extra)
                except Exception as exc:
                    _discard_record(out, row)
                    results[row.number] = failed(row, one_line(exc), time.perf_counter() - t0 + extra, worker)
    return [results[row.number] for row in group.rows]


def _open(group: CaseGroup, session: ScoringSession, options: BatchOptions, hashes: dict | None = None):
    """The group's CT and masks, read and measured (its files' SHA-256 taken from ``hashes`` when given)."""
    if not group.volume:
        raise InputFileError("the row gives no volume")
    from ..patient import patient_from_dicom

    patient = group.patient
    if Path(group.volume).is_dir():
        patient = patient.merged(patient_from_dicom(group.volume))
    case = session.open(group.volume, group.segmentation or None, group.label_scheme or None,
                        checksums={k: v for k, v in (hashes or {}).items() if v}, patient=patient)
    if options.dicom_sr and case.dicom_series is None:
        raise InputFileError("--dicom-sr needs the CT as a DICOM series folder")
    return case


def _score_row(row: Row, case, session: ScoringSession, options: BatchOptions, worker: str, started: float) -> dict:
    """Score one row on its CT's case, move its files into place and write its record."""
    from ..files import atomic_write_text

    out = Path(options.output_dir)
    (result,) = session.score(case, [row.symptom])
    staging_root = state_dir(out) / "staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{row.number:06d}-", dir=staging_root))
    try:
        (files,) = session.write(case, [result], staging / row.name, dicom_sr=options.dicom_sr)
        _discard_record(out, row)
        for path in files.values():  # the JSON report comes last
            os.replace(path, out / path.name)
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    summary = {**base_record(row), "status": "ok", "error": "", "in_domain": bool(result.in_domain),
               "top_organ": result.top.key, "top_relevance": round(float(result.top.relevance), 4),
               "files": [p.name for p in files.values()], "json": files["json"].name,
               "segmentation_out": files["segmentation"].name,
               "elapsed_s": round(time.perf_counter() - started, 3), "worker": worker}
    summary.update(report_fields(out / files["json"].name))
    record = {"format": RECORD_FORMAT, **summary, "pid": os.getpid(), "run_id": options.run_id,
              "model_version": options.model_version,
              "inputs_sha256": {"volume": case.inputs["volume"]["sha256"],
                                "segmentation": case.inputs.get("segmentation", {}).get("sha256")},
              "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_text(record_path(out, row), json.dumps(record, indent=1) + "\n")
    return summary


def _discard_record(out: Path, row: Row) -> None:
    try:
        record_path(out, row).unlink()
    except FileNotFoundError:
        pass
