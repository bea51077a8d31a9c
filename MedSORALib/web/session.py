"""What one ``medsora serve`` process holds: a CT, its organs, the models and the scored results.

Nothing here touches the MRML scene or the web page, so the methods can run in a
worker thread while the server keeps answering the page. Reading the case,
scoring and writing go through a :class:`MedSORALib.session.ScoringSession`, as
``medsora score`` does, so a symptom scored in the browser gives the table and
files ``medsora score`` gives for the same CT.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputFileError
from ..result_format import DISPLAY_DECIMALS, findings_text, passage_groups, segment_name
from ..scoring import SymptomResult, check_symptoms

Progress = Callable[[float, str], None]

#: Columns of the results table (``findings`` only appears when a result carries findings).
TABLE_FIELDS = ("organ", "relevance", "text_prior", "image_score", "volume_ml")


@dataclass
class ScoredSymptom:
    """One symptom's result and the files written for it (kind -> path)."""

    result: SymptomResult
    files: dict


def css_color(rgb) -> str:
    """``#rrggbb`` of an RGB colour in 0..1."""
    return "#" + "".join(f"{min(max(int(round(float(c) * 255)), 0), 255):02x}" for c in rgb)


def result_rows(result: SymptomResult) -> list[dict]:
    """The table rows of a result, highest relevance first (numbers rounded for display).

    ``organ`` is the segment name, ``color`` the organ's relevance colour (the
    colour of its segment in the views), ``findings`` its abnormal findings.
    """
    from ..colors import relevance_color

    rows = []
    for score in result.organs:
        rows.append({
            "key": score.key,
            "organ": segment_name(score.key),
            "color": css_color(relevance_color(score.relevance)),
            "relevance": round(score.relevance, DISPLAY_DECIMALS),
            "text_prior": round(score.text_prior, DISPLAY_DECIMALS),
            "image_score": None if score.image_score is None else round(score.image_score, DISPLAY_DECIMALS),
            "volume_ml": round(score.volume_ml, 1),
            "findings": findings_text(score),
        })
    return rows


def result_passages(result: SymptomResult) -> list[dict]:
    """Supporting passages grouped by organ: ``[{organ, items: [{id, text, source, score}]}]``."""
    return [{"organ": name,
             "items": [{"id": p["id"], "text": p["text"], "source": p["source"],
                        "score": round(p["score"], DISPLAY_DECIMALS)} for p in items]}
            for name, items in passage_groups(result)]


class WebSession:
    """The case and results of one server.

    Args:
        output_dir: folder the result files are written to (served for download).
        device: torch device of the models.
    """

    def __init__(self, output_dir: str | Path, device: str = "cpu"):
        from ..session import ScoringSession, ScoringSettings

        self.output_dir = Path(output_dir)
        self.device = device
        self.scoring = ScoringSession(ScoringSettings(device=device))
        self.case = None
        self.case_name = ""
        self._runs = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ inputs
    def load(self, volume_path, segmentation_path=None, label_scheme=None, log: Callable[[str], None] = print):
        """Read a CT and its organ segmentation from the server's disk (replaces the current case)."""
        case, name = self.read_case(volume_path, segmentation_path, label_scheme, log=log)
        self.use_case(case, name)
        return case

    def read_case(self, volume_path, segmentation_path=None, label_scheme=None,
                  log: Callable[[str], None] = print, cancel=None):
        """``(case, name)`` read from the server's disk, without making it the current case.

        The page reads in a worker thread and calls :meth:`use_case` only when the load was not
        cancelled meanwhile. ``cancel`` (a :class:`~MedSORALib.web.jobs.CancelToken`) stops the read
        at its next step: every MiB of the input checksums (computed here, so that they can be
        stopped, and handed to the scoring session), before and after reading, before measuring;
        :class:`~MedSORALib.web.jobs.JobCancelled` is raised and nothing is kept.
        """
        from ..files import file_sha256
        volume_path = Path(str(volume_path).strip()).expanduser()
        if not str(volume_path) or not volume_path.exists():
            raise InputFileError(f"{volume_path}: no such CT file or folder")
        if segmentation_path is not None and str(segmentation_path).strip():
            segmentation_path = Path(str(segmentation_path).strip()).expanduser()
            if not segmentation_path.exists():
                raise InputFileError(f"{segmentation_path}: no such segmentation file")
        else:
            segmentation_path = None
        check = cancel.check if cancel is not None else None
        sums = {}
        for kind, path in (("volume", volume_path), ("segmentation", segmentation_path)):
            if path is not None:
                try:
                    sums[kind] = file_sha256(path, check=check)
                except OSError:  # not readable: reading the case says why, in one line
                    pass

        def checked_log(message):
            if check is not None:
                check()
            log(message)

        case = self.scoring.open(volume_path, segmentation_path, label_scheme or None, log=checked_log,
                                 checksums=sums, progress=cancel.progress() if cancel is not None else None)
        if check is not None:
            check()
        return case, volume_path.name

    def use_case(self, case, name: str) -> None:
        """Make ``case`` (from :meth:`read_case`) the current case."""
        with self._lock:
            self.case = case
            self.case_name = name

    # ------------------------------------------------------------------ models
    def models(self):
        """The scoring models, loaded on first use and kept for the life of the process."""
        self.scoring.load()
        return self.scoring.models

    # ------------------------------------------------------------------ scoring
    def header_patient(self, case=None):
        """Age and sex of the DICOM header of the current (or given) case's series; unknown for other files."""
        from ..patient import Patient, patient_from_dicom

        case = self.case if case is None else case
        if case is None or case.dicom_series is None:
            return Patient()
        try:
            return patient_from_dicom(case.dicom_series)
        except OSError:
            return Patient()

    def case_for(self, case, patient=None):
        """``case`` with its findings judged against the ranges for ``patient`` (:class:`~MedSORALib.patient.Patient`
        from the page; the DICOM header completes it).

        The measurements are kept: only the reference ranges depend on age and sex. The copy shares the
        case's image features.
        """
        from ..findings import evaluate_findings
        from ..patient import Patient

        patient = (patient or Patient()).merged(self.header_patient(case))
        if patient.to_dict() == case.evidence.get("patient", Patient().to_dict()):
            return case
        evidence = case.evidence
        findings = evaluate_findings(evidence["measurements"], evidence["contrast_phase"], patient)
        return dataclasses.replace(case, evidence={**evidence, "findings": findings, "patient": patient.to_dict()})

    def score(self, symptoms: Sequence[str] | str, progress: Progress | None = None,
              patient=None, cancel=None) -> list[ScoredSymptom]:
        """Score symptoms on the current case and write each result's ``.seg.nrrd`` and ``.json``.

        A case is measured once when loaded (and its organs encoded once, with an image weight above 0);
        later symptoms reuse it. ``patient`` (age and sex, :class:`~MedSORALib.patient.Patient`; the DICOM
        header completes it) chooses the reference ranges of the findings. ``cancel``
        (a :class:`~MedSORALib.web.jobs.CancelToken`) stops scoring at its next reported step, before the files
        are written.
        """
        texts = check_symptoms(symptoms)
        with self._lock:
            case = self.case
        if case is None:
            raise InputFileError("no CT is loaded")
        case = self.case_for(case, patient)
        report = progress or (lambda fraction, message: None)
        if cancel is not None:  # stops at the next step scoring reports (before any file is written)
            report = cancel.progress(report)
        results = self.scoring.score(case, texts, progress=lambda fraction, message: report(0.9 * fraction, message))
        report(0.95, "writing files")
        with self._lock:
            self._runs += 1
            run = self._runs
        written = self.scoring.write(case, results, self.output_dir / f"run{run}" / "medsora")
        report(1.0, "done")
        return [ScoredSymptom(result, files) for result, files in zip(results, written)]
