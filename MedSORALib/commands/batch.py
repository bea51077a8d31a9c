"""``medsora batch``: score many (CT, segmentation, symptom) rows from a CSV manifest."""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

from ..errors import InputFileError, MedSORAError
from .score import add_model_arguments, check_output_prefix

DESCRIPTION = """\
Score many CTs and symptoms listed in a CSV manifest.

The manifest has a header row with the columns
  volume, segmentation, label_scheme, symptom
(paths relative to the manifest's folder; label_scheme may be empty for a
.seg.nrrd). Each row writes DIR/<row>_<volume name>.seg.nrrd/.json (and .png
with --preview). Rows sharing a CT and segmentation reuse its encoding. A
failing row is reported and the others go on; DIR/summary.csv lists every
row with its status, top organ and files. Exit status 1 when any row failed."""

REQUIRED = ("volume", "segmentation", "label_scheme", "symptom")
SUMMARY_FIELDS = ("row", "volume", "segmentation", "symptom", "status", "error", "in_domain", "top_organ",
                  "top_relevance", "json", "segmentation_out")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("batch", help="score the rows of a CSV manifest (volume, segmentation, "
                                   "label_scheme, symptom)", description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", metavar="MANIFEST.csv", help="CSV with volume, segmentation, label_scheme, symptom")
    parser.add_argument("--output-dir", required=True, metavar="DIR", help="folder for the outputs and summary.csv")
    parser.add_argument("--preview", action="store_true", help="also write a PNG preview per row")
    parser.add_argument("--no-passages", action="store_true", help="skip the supporting knowledge passages")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_arguments(parser)
    return parser


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of the manifest with paths resolved against its folder."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such manifest file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [f.strip().lower() for f in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in fields]
            if missing:
                raise InputFileError(f"{path}: manifest lacks the column(s) {', '.join(missing)} "
                                     f"(needs {', '.join(REQUIRED)})")
            rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path}: not a readable CSV manifest ({type(exc).__name__})") from exc
    if not rows:
        raise InputFileError(f"{path}: the manifest has no rows")
    base = path.parent
    for row in rows:
        for column in ("volume", "segmentation"):
            if row[column] and not Path(row[column]).is_absolute():
                row[column] = str(base / row[column])
    return rows


def _slug(text: str) -> str:
    name = Path(text).name
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40] or "volume"


def run(args) -> int:
    from tqdm import tqdm

    from ..outputs import write_json, write_result
    from ..scoring import IMAGE_WEIGHT, encode_volume, score_encoded
    from .score import load_case, models_from_args

    rows = read_manifest(args.manifest)
    out_dir = Path(args.output_dir)
    check_output_prefix(out_dir / "summary")
    out_dir.mkdir(parents=True, exist_ok=True)
    models = models_from_args(args)
    image_weight = IMAGE_WEIGHT if args.image_weight is None else args.image_weight
    cache_key, cache = None, None
    summary = []
    failures = 0
    bar = tqdm(rows, desc="medsora batch", unit="row", disable=args.no_progress, file=sys.stderr)
    for number, row in enumerate(bar, 1):
        record = {"row": number, "volume": row["volume"], "segmentation": row["segmentation"],
                  "symptom": row["symptom"], "status": "ok", "error": ""}
        try:
            key = (row["volume"], row["segmentation"], row["label_scheme"] or None)
            if key != cache_key:
                cache_key, cache = None, None
                case = load_case(row["volume"], row["segmentation"] or None, row["label_scheme"] or None,
                                 args.device, log=lambda m: bar.write(f"row {number}: {m}"))
                cache = (case, encode_volume(case.volume, case.masks, models))
                cache_key = key
            case, encoded = cache
            result = score_encoded(encoded, [row["symptom"]], models, image_weight=image_weight,
                                   with_passages=not args.no_passages)[0]
            prefix = out_dir / f"{number:04d}_{_slug(row['volume'])}"
            files = write_result(prefix, result, case.volume, case.masks, inputs=case.inputs, preview=args.preview)
            record.update(in_domain=result.in_domain, top_organ=result.top.key,
                          top_relevance=f"{result.top.relevance:.4f}", json=files["json"].name,
                          segmentation_out=files["segmentation"].name)
        except MedSORAError as exc:
            failures += 1
            record.update(status="failed", error=str(exc))
            bar.write(f"medsora batch: row {number} failed: {exc}")
        summary.append(record)
    with_fields = [{f: r.get(f, "") for f in SUMMARY_FIELDS} for r in summary]
    from ..files import atomic_target

    with atomic_target(out_dir / "summary.csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=SUMMARY_FIELDS)
            writer.writeheader()
            writer.writerows(with_fields)
    write_json(out_dir / "summary.json", {"rows": len(rows), "failed": failures, "results": with_fields})
    print(f"medsora batch: {len(rows) - failures} of {len(rows)} rows scored; summary in {out_dir / 'summary.csv'}")
    return 1 if failures else 0
