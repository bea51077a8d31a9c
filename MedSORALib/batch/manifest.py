"""The batch manifest: a CSV of (volume, segmentation, label_scheme, symptom) rows, grouped by CT.

Optional columns ``age`` (years, or a DICOM age such as 064Y) and ``sex`` (F, M,
O or empty) choose the reference ranges of the findings; empty: the DICOM
header's, else unknown (:mod:`MedSORALib.patient`).
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError, MedSORAError, PatientError
from ..patient import Patient

REQUIRED = ("volume", "segmentation", "label_scheme", "symptom")
#: Columns a manifest may add: the patient's age and sex.
OPTIONAL = ("age", "sex")


@dataclass(frozen=True)
class Row:
    """One manifest row: ``number`` counts from 1 in file order; ``name`` is its output prefix (no folder)."""

    number: int
    volume: str
    segmentation: str
    label_scheme: str
    symptom: str
    age: str = ""
    sex: str = ""

    @property
    def name(self) -> str:
        return f"{self.number:04d}_{slug(self.volume)}"

    @property
    def case_key(self) -> tuple[str, ...]:
        return (self.volume, self.segmentation, self.label_scheme, self.age, self.sex)


@dataclass
class CaseGroup:
    """The rows of one (CT, segmentation, label scheme): read and encoded once, on one worker."""

    index: int
    rows: list[Row] = field(default_factory=list)

    @property
    def volume(self) -> str:
        return self.rows[0].volume

    @property
    def segmentation(self) -> str:
        return self.rows[0].segmentation

    @property
    def label_scheme(self) -> str:
        return self.rows[0].label_scheme

    @property
    def patient(self):
        """The rows' age and sex (:class:`~MedSORALib.patient.Patient`; checked by :func:`read_manifest`)."""
        from ..patient import Patient

        return Patient.parse(self.rows[0].age, self.rows[0].sex, "manifest")


def read_manifest(path: str | Path) -> list[Row]:
    """Rows of the manifest with relative paths resolved against its folder (made absolute)."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such manifest file")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [(f or "").strip().lower() for f in (reader.fieldnames or [])]
            missing = [c for c in REQUIRED if c not in fields]
            if missing:
                raise InputFileError(f"{path}: manifest lacks the column(s) {', '.join(missing)} "
                                     f"(needs {', '.join(REQUIRED)})")
            raw = [{(k or "").strip().lower(): (v or "").strip() if isinstance(v, str) else ""
                    for k, v in row.items()} for row in reader]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputFileError(f"{path}: not a readable CSV manifest ({type(exc).__name__})") from exc
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from exc
    if not raw:
        raise InputFileError(f"{path}: the manifest has no rows")
    base = path.parent.resolve()
    rows = []
    for number, values in enumerate(raw, 1):
        paths = {}
        for column in ("volume", "segmentation"):
            value = values.get(column, "")
            paths[column] = str(Path(value) if Path(value).is_absolute() else base / value) if value else ""
        row = Row(number=number, volume=paths["volume"], segmentation=paths["segmentation"],
                  label_scheme=values.get("label_scheme", ""), symptom=values.get("symptom", ""),
                  age=values.get("age", ""), sex=values.get("sex", ""))
        try:
            Patient.parse(row.age, row.sex)
        except PatientError as exc:
            raise InputFileError(f"{path}: row {number}: {exc}") from exc
        rows.append(row)
    return rows


def group_rows(rows: list[Row]) -> list[CaseGroup]:
    """Rows grouped by (volume, segmentation, label scheme, age, sex), groups in order of their first row."""
    groups: dict[tuple, CaseGroup] = {}
    for row in rows:
        group = groups.get(row.case_key)
        if group is None:
            group = groups[row.case_key] = CaseGroup(index=len(groups))
        group.rows.append(row)
    return list(groups.values())


def slug(text: str) -> str:
    """A file-name-safe short name of a volume path (its extension removed)."""
    name = Path(text).name
    for suffix in (".nii.gz", ".seg.nrrd", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:40].lstrip(".") or "volume"


def check_rows(rows: list[Row], manifest: str | Path) -> None:
    """Every row's symptom, label scheme and input paths, checked before any row runs (one line for the first bad one).

    Symptoms: not empty, at most 2,000 characters, UTF-8. Paths: a readable regular file or a DICOM
    series folder (:func:`MedSORALib.validation.check_input_path`); a folder that is not a series
    (``/``) is refused without walking below it. Each distinct path is checked once. What only
    reading a file reveals (not an image, a bad segment layer) fails its rows one by one later.
    """
    from ..organs import normalize_scheme
    from ..scoring import check_symptoms
    from ..validation import check_input_path

    checked: set[tuple[str, str]] = set()
    for row in rows:
        try:
            try:
                check_symptoms([row.symptom])
            except MedSORAError as exc:
                raise type(exc)(str(exc).replace("symptom 1 ", "the symptom ", 1)) from None
            if row.label_scheme:
                normalize_scheme(row.label_scheme)
            if not row.volume:
                raise InputFileError("no volume given")
            for path, what in ((row.volume, "CT file or folder"), (row.segmentation, "segmentation file")):
                if path and (path, what) not in checked:
                    check_input_path(path, what)
                    checked.add((path, what))
        except MedSORAError as exc:
            raise type(exc)(f"{manifest}: row {row.number}: {exc}") from None
