"""The patient's age and sex, which choose the reference ranges (:mod:`MedSORALib.findings`).

They come from the command line (``--age``, ``--sex``), a batch manifest's
``age`` and ``sex`` columns, or the DICOM header of the CT (``PatientAge``,
else the years between ``PatientBirthDate`` and ``StudyDate``; ``PatientSex``);
what the user gives wins over the header. Nothing else of the header is read.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .errors import PatientError


@dataclass(frozen=True)
class Patient:
    """What the ranges need to know of the patient: age in years and sex (``"F"``, ``"M"``), None when unknown.

    ``source`` says where they came from ("DICOM header", "command line", "manifest").
    """

    age: float | None = None
    sex: str | None = None
    source: str = ""

    @classmethod
    def parse(cls, age=None, sex=None, source: str = "") -> "Patient":
        """From text: age in years ("64", "64.5") or a DICOM age string ("064Y", "018M", "010W", "005D");
        sex "F"/"M" (any case, or female/male/woman/man); "O", "U" or empty: unknown.

        Raises :class:`~MedSORALib.errors.PatientError` on anything else.
        """
        age, sex = parse_age(age, source), parse_sex(sex, source)
        return cls(age=age, sex=sex, source=source if age is not None or sex is not None else "")

    def merged(self, other: "Patient") -> "Patient":
        """This patient with the unknown fields taken from ``other`` (the command line wins over the header);
        ``source`` names those that gave a field."""
        age = self.age if self.age is not None else other.age
        sex = self.sex if self.sex is not None else other.sex
        sources = []
        if self.age is not None or self.sex is not None:
            sources.append(self.source)
        if (self.age is None and other.age is not None) or (self.sex is None and other.sex is not None):
            sources.append(other.source)
        return Patient(age, sex, " and ".join(dict.fromkeys(s for s in sources if s)))

    def to_dict(self) -> dict:
        return {"age": self.age, "sex": self.sex, "source": self.source or None}


_DICOM_AGE = re.compile(r"^(\d{1,3})([DWMY])$")
_AGE_UNIT_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def parse_age(value, source: str = "") -> float | None:
    """Age in years from a number or text (:meth:`Patient.parse`); None when empty."""
    where = f" ({source})" if source else ""
    if value is None:
        return None
    text = str(value).strip().upper()
    if not text:
        return None
    match = _DICOM_AGE.match(text)
    try:
        years = int(match.group(1)) * _AGE_UNIT_YEARS[match.group(2)] if match else float(text)
    except ValueError:
        raise PatientError(f"age {value!r}{where} is not an age in years (e.g. 64) or a DICOM age (e.g. 064Y)")
    if not 0.0 <= years <= 130.0 or math.isnan(years):
        raise PatientError(f"age {value!r}{where} is outside 0-130 years")
    return round(float(years), 2)


def parse_sex(value, source: str = "") -> str | None:
    """``"F"``, ``"M"`` or None (unknown) from text (:meth:`Patient.parse`)."""
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in ("", "o", "u", "other", "unknown"):
        return None
    for sex, words in (("F", ("f", "female", "woman")), ("M", ("m", "male", "man"))):
        if text in words:
            return sex
    where = f" ({source})" if source else ""
    raise PatientError(f"sex {value!r}{where} is not F, M, O or empty")


def _dicom_date(text) -> date | None:
    text = str(text or "").strip()
    if not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def patient_from_dicom(folder: str | Path) -> Patient:
    """Age and sex from the header of the first readable image of a DICOM series folder (module doc).

    Unreadable or unusual header values give an unknown age or sex, never an error: the header is not
    the user's input.
    """
    import pydicom

    for file in sorted(p for p in Path(folder).iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(str(file), stop_before_pixels=True)
        except Exception:
            continue
        if "PatientAge" not in ds and "PatientSex" not in ds and "PatientBirthDate" not in ds:
            continue
        try:
            age = parse_age(ds.get("PatientAge"))
        except PatientError:
            age = None
        if age is None:
            born, seen = _dicom_date(ds.get("PatientBirthDate")), _dicom_date(ds.get("StudyDate"))
            if born and seen and seen >= born:
                age = round((seen - born).days / 365.25, 2)
        try:
            sex = parse_sex(ds.get("PatientSex"))
        except PatientError:
            sex = None
        return Patient(age, sex, "DICOM header" if age is not None or sex is not None else "")
    return Patient()
