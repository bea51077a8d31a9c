"""Reading a case to score: the CT, its organ masks (a segmentation file or TotalSegmentator) and
the checksums of the inputs. Shared by ``medsora score``, ``medsora batch`` and the Slicer script."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import SegmentationError
from .files import file_sha256
from .organs import STRUCTURES, normalize_scheme


def totalsegmentator_available() -> bool:
    return shutil.which("TotalSegmentator") is not None


def run_totalsegmentator(volume_path: Path, volume, device: str, log=print) -> dict:
    """Segment the 13 structures with TotalSegmentator (``--fast`` on CPU); returns masks on the CT grid."""
    from .segmentation_io import read_organ_masks
    from .volume_io import write_volume

    log("no --segmentation given: running TotalSegmentator for the 13 structures"
        + (" (--fast on CPU)" if device == "cpu" else ""))
    with tempfile.TemporaryDirectory(prefix="medsora-ts-") as tmp:
        source = Path(tmp) / "ct.nii.gz"
        write_volume(source, volume)
        target = Path(tmp) / "organs.nii.gz"
        command = ["TotalSegmentator", "-i", str(source), "-o", str(target), "--ml", "--roi_subset", *STRUCTURES]
        if device == "cpu":
            command += ["--fast", "--device", "cpu"]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0 or not target.exists():
            last = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise SegmentationError(f"TotalSegmentator failed on {volume_path}: {last[0]}")
        return read_organ_masks(target, volume, "totalsegmentator")


@dataclass
class LoadedCase:
    """A CT ready to score.

    Attributes:
        volume: the CT (:class:`~MedSORALib.volume_io.Volume`).
        masks: structure key -> boolean mask on the CT grid.
        inputs: paths, SHA-256 and geometry of the input files, for the result JSON.
        dicom_series: the DICOM folder when the CT was read from one, else None.
    """

    volume: object
    masks: dict
    inputs: dict
    dicom_series: Path | None


def print_warning(message: str) -> None:
    """A ``medsora: warning: ...`` line on standard error (shown even with --quiet)."""
    print(f"medsora: warning: {message}", file=sys.stderr, flush=True)


def load_case(volume_path, segmentation_path=None, label_scheme=None, device="cpu", log=print,
              warn=print_warning, checksums=None) -> LoadedCase:
    """Read a CT and its organ masks (or segment it with TotalSegmentator), with input checksums.

    Organ volumes no adult organ has (the sign of a wrong label scheme) are reported through ``warn``.
    ``checksums`` (``{"volume": sha256, "segmentation": sha256}``) are SHA-256 the caller has just
    computed of these files; they are recorded as given instead of reading the files a second time.
    """
    from .validation import implausible_organ_volumes
    from .segmentation_io import read_organ_masks
    from .volume_io import read_volume

    known = checksums or {}
    volume_path = Path(volume_path)
    if label_scheme is not None:
        label_scheme = normalize_scheme(label_scheme)
    volume = read_volume(volume_path)
    inputs = {"volume": {"path": str(volume_path), "sha256": known.get("volume") or file_sha256(volume_path),
                         "shape": list(volume.shape), "spacing_mm": [round(float(s), 4) for s in volume.spacing]}}
    if segmentation_path:
        segmentation_path = Path(segmentation_path)
        masks = read_organ_masks(segmentation_path, volume, label_scheme)
        inputs["segmentation"] = {"path": str(segmentation_path),
                                  "sha256": known.get("segmentation") or file_sha256(segmentation_path),
                                  "label_scheme": label_scheme}
    elif totalsegmentator_available():
        masks = run_totalsegmentator(volume_path, volume, device, log=log)
        inputs["segmentation"] = {"path": None, "source": "TotalSegmentator", "label_scheme": "totalsegmentator"}
    else:
        raise SegmentationError(
            "no organ segmentation: give --segmentation (a label map with --label-scheme, or a .seg.nrrd), "
            "or install TotalSegmentator (pip install TotalSegmentator) to segment the CT automatically")
    odd = implausible_organ_volumes(masks, volume.voxel_volume_ml)
    if odd:
        scheme = inputs["segmentation"].get("label_scheme")
        hint = f"is --label-scheme {scheme} the scheme of this label map?" if scheme else "check the segmentation"
        warn(f"implausible organ volumes: {'; '.join(odd)}; {hint}")
    dicom_series = volume_path if volume_path.is_dir() else None
    return LoadedCase(volume=volume, masks=masks, inputs=inputs, dicom_series=dicom_series)
