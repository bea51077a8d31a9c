"""The batch summary: ``summary.csv`` (safe to open in a spreadsheet), ``summary.parquet`` and ``summary.json``.

Each file is written to a temporary name and renamed when complete. In the
CSV, a text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return gets a leading apostrophe, so that a spreadsheet shows it as
text instead of evaluating it as a formula (a symptom such as
``=HYPERLINK(...)`` stays inert); this is the OWASP advice against CSV
injection. The same holds after a separator inside a cell (``,``, ``;``,
tab or ``|``, spaces allowed between): a spreadsheet that imports the file
with another separator (``;`` in many locales) splits ``pain;=HYPERLINK(...)``
into two cells, so the ``=`` gets its apostrophe too (``pain;'=HYPERLINK``).
The Parquet and JSON files keep the values as they are, typed.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..files import atomic_target, atomic_write_text

FIELDS = ("row", "volume", "segmentation", "label_scheme", "symptom", "status", "error", "in_domain", "top_organ",
          "top_relevance", "scope", "top_diagnosis", "files", "json", "segmentation_out", "elapsed_s", "worker")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: Characters a spreadsheet may split a line at when it guesses the separator.
SEPARATORS = (",", ";", "\t", "|")
#: The summary files, by kind, in the output folder.
SUMMARY_NAMES = {"csv": "summary.csv", "parquet": "summary.parquet", "json": "summary.json"}


def report_fields(report_path: str | Path) -> dict:
    """``scope`` and ``top_diagnosis`` (the first diagnosis of the differential) of a row's result JSON;
    empty (None) when the report cannot be read or has no differential."""
    try:
        report = json.loads(Path(report_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"scope": None, "top_diagnosis": None}
    differential = report.get("differential") or [] if isinstance(report, dict) else []
    first = differential[0] if differential and isinstance(differential[0], dict) else {}
    return {"scope": report.get("scope") if isinstance(report, dict) else None,
            "top_diagnosis": first.get("diagnosis")}


def escape_cell(value) -> str:
    """A CSV cell: text that a spreadsheet would read as a formula is prefixed with an apostrophe."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        value = "; ".join(str(v) for v in value)
    text = str(value)
    if not isinstance(value, str):
        return text
    return defuse(text)


def defuse(text: str) -> str:
    """``text`` with an apostrophe before every formula character that starts it or follows a separator."""
    out = []
    fresh = True  # at the start of the text, or after a separator and any spaces
    for char in text:
        if fresh and char in FORMULA_STARTS:
            out.append("'")
        out.append(char)
        fresh = char in SEPARATORS or (fresh and char == " ")
    return "".join(out)


def normalized(records: list[dict]) -> list[dict]:
    """Records with every summary field (missing ones empty), sorted by row."""
    return [{f: r.get(f) for f in FIELDS} for r in sorted(records, key=lambda r: r["row"])]


def write_summary(out_dir: str | Path, records: list[dict], extra: dict | None = None) -> dict[str, Path]:
    """Write the summary files of a batch; returns kind -> path (``parquet`` only when pyarrow is installed)."""
    out_dir = Path(out_dir)
    rows = normalized(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow([escape_cell(row[f]) for f in FIELDS])
    paths = {"csv": atomic_write_text(out_dir / SUMMARY_NAMES["csv"], buffer.getvalue())}
    parquet = _write_parquet(out_dir / SUMMARY_NAMES["parquet"], rows)
    if parquet is not None:
        paths["parquet"] = parquet
    counts = {status: sum(r["status"] == status for r in rows) for status in ("ok", "skipped", "failed")}
    payload = {"rows": len(rows), **counts, **(extra or {}), "results": rows}
    paths["json"] = atomic_write_text(out_dir / SUMMARY_NAMES["json"], json.dumps(payload, indent=1, ensure_ascii=False)
                                      + "\n")
    return paths


def _write_parquet(path: Path, rows: list[dict]) -> Path | None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    schema = pa.schema([
        ("row", pa.int64()), ("volume", pa.string()), ("segmentation", pa.string()), ("label_scheme", pa.string()),
        ("symptom", pa.string()), ("status", pa.string()), ("error", pa.string()), ("in_domain", pa.bool_()),
        ("top_organ", pa.string()), ("top_relevance", pa.float64()), ("scope", pa.string()),
        ("top_diagnosis", pa.string()), ("files", pa.list_(pa.string())),
        ("json", pa.string()), ("segmentation_out", pa.string()), ("elapsed_s", pa.float64()),
        ("worker", pa.string()),
    ])
    table = pa.Table.from_pylist([{**r, "files": list(r["files"] or [])} for r in rows], schema=schema)
    with atomic_target(path) as tmp:
        pq.write_table(table, tmp)
    return path
