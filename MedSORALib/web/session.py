"""What one ``medsora serve`` process holds: a CT, its organs, the models and the scored results.

Nothing here touches the MRML scene or the web page, so the methods can run in a
worker thread while the server keeps answering the page. Reading the case and
scoring go through the command line's own functions
(:func:`MedSORALib.cases.load_case`, :func:`MedSORALib.scoring.load_models`,
:func:`~MedSORALib.scoring.encode_volume`, :func:`~MedSORALib.scoring.score_encoded`,
:func:`MedSORALib.outputs.write_result`), so a symptom scored in the browser gives
the table and files ``medsora score`` gives for the same CT.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from ..errors import InputFileError

Progress = Callable[[float, str], None]

#: Columns of the results table (``findings`` only appears when a result carries findings).
TABLE_FIELDS = ("organ", "relevance", "text_prior", "image_score", "volume_ml")


@dataclass
class ScoredSymptom:
    """One symptom's result and the files written for it (kind -> path)."""

    result: object
    files: dict


def _organ_name(score) -> str:
    name = str(score.display_name)
    return name[:1].upper() + name[1:]


def _findings_text(score) -> str:
    findings = getattr(score, "findings", None)
    if findings is None and isinstance(score, dict):
        findings = score.get("findings")
    if not findings:
        return ""
    if isinstance(findings, str):
        return findings
    if isinstance(findings, dict):
        return "; ".join(f"{k}: {v}" for k, v in findings.items())
    # Findings of MedSORALib.findings: the abnormal ones, each as its measurement-and-range sentence.
    return "; ".join(str(item.get("text", item.get("key", ""))) if isinstance(item, dict) else str(item)
                     for item in findings if not isinstance(item, dict) or item.get("abnormal"))


def css_color(rgb) -> str:
    """``#rrggbb`` of an RGB colour in 0..1."""
    return "#" + "".join(f"{min(max(int(round(float(c) * 255)), 0), 255):02x}" for c in rgb)


def result_rows(result) -> list[dict]:
    """The table rows of a result, highest relevance first (numbers rounded for display).

    ``color`` is the organ's relevance colour, the colour of its segment in the views.
    """
    from ..colors import relevance_color

    rows = []
    for score in result.organs:
        rows.append({
            "key": score.key,
            "organ": _organ_name(score),
            "color": css_color(relevance_color(score.relevance)),
            "relevance": round(float(score.relevance), 3),
            "text_prior": round(float(score.text_prior), 3),
            "image_score": round(float(score.image_score), 3),
            "volume_ml": round(float(score.volume_ml), 1),
            "findings": _findings_text(score),
        })
    return rows


def result_passages(result) -> list[dict]:
    """Supporting passages grouped by organ: ``[{organ, items: [{id, text, source, score}]}]``."""
    names = {score.key: _organ_name(score) for score in result.organs}
    groups = []
    for key, items in (getattr(result, "passages", None) or {}).items():
        if items:
            groups.append({"organ": names.get(key, str(key)),
                           "items": [{"id": str(p.get("id", "")), "text": str(p.get("text", "")),
                                      "source": str(p.get("source", "")),
                                      "score": round(float(p.get("score", 0.0)), 3)} for p in items]})
    return groups


class WebSession:
    """The case and results of one server.

    Args:
        output_dir: folder the result files are written to (served for download).
        device: torch device of the models.
    """

    def __init__(self, output_dir: str | Path, device: str = "cpu"):
        self.output_dir = Path(output_dir)
        self.device = device
        self.case = None
        self.case_name = ""
        self._encoded = None
        self._runs = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ inputs
    def load(self, volume_path, segmentation_path=None, label_scheme=None, log: Callable[[str], None] = print):
        """Read a CT and its organ segmentation from the server's disk (replaces the current case)."""
        from ..cases import load_case

        volume_path = Path(str(volume_path).strip()).expanduser()
        if not str(volume_path) or not volume_path.exists():
            raise InputFileError(f"{volume_path}: no such CT file or folder")
        if segmentation_path is not None and str(segmentation_path).strip():
            segmentation_path = Path(str(segmentation_path).strip()).expanduser()
            if not segmentation_path.exists():
                raise InputFileError(f"{segmentation_path}: no such segmentation file")
        else:
            segmentation_path = None
        case = load_case(volume_path, segmentation_path, label_scheme or None, self.device, log=log)
        with self._lock:
            self.case = case
            self.case_name = volume_path.name
            self._encoded = None
        return case

    # ------------------------------------------------------------------ models
    def models(self):
        """The scoring models, loaded on first use and kept for the life of the process."""
        from ..scoring import load_models

        return load_models(device=self.device)

    # ------------------------------------------------------------------ scoring
    def score(self, symptoms: Sequence[str] | str, progress: Progress | None = None) -> list[ScoredSymptom]:
        """Score symptoms on the current case and write each result's ``.seg.nrrd`` and ``.json``.

        The organs of a case are encoded once; later symptoms reuse the encoding.
        """
        from ..outputs import output_prefixes, write_result
        from ..scoring import check_symptoms, encode_volume, score_encoded

        texts = check_symptoms(symptoms)
        if self.case is None:
            raise InputFileError("no CT is loaded")
        report = progress or (lambda fraction, message: None)

        def scoring_step(fraction, message):  # encoding and scoring fill 0..0.9, writing the rest
            report(0.9 * float(fraction), message)

        report(0.02, "loading models")
        models = self.models()
        with self._lock:
            case, encoded = self.case, self._encoded
        if encoded is None:
            encoded = encode_volume(case.volume, case.masks, models, scoring_step)
            with self._lock:
                if self.case is case:
                    self._encoded = encoded
        else:
            scoring_step(0.4, "organs already encoded")
        results = score_encoded(encoded, texts, models, progress=scoring_step)
        report(0.95, "writing files")
        with self._lock:
            self._runs += 1
            run = self._runs
        prefixes = output_prefixes(self.output_dir / f"run{run}" / "medsora", len(results))
        scored = [ScoredSymptom(result, write_result(prefix, result, case.volume, case.masks, inputs=case.inputs))
                  for result, prefix in zip(results, prefixes)]
        report(1.0, "done")
        return scored
