"""Training data for the image side: CT cases with organ masks, and symptom texts.

Case sources (each yields :class:`Case` objects; nothing is read until ``Case.load()``):

- :func:`btcv_cases`: the BTCV layout, ``imagesTr/``, ``labelsTr/`` and ``dataset_0.json``
  (MONAI's decathlon-style list; without it, images and labels are paired by name).
- :func:`totalsegmentator_cases`: the TotalSegmentator dataset layout, ``<case>/ct.nii.gz`` and
  ``<case>/segmentations/<organ>.nii.gz`` (organ files named by structure key).
- :func:`labelmap_cases`: generic (image, label map, scheme) pairs.
- :func:`phantom_cases`: synthetic abdominal phantoms (:mod:`MedSORALib.image.phantom`).

:func:`split_by_patient` splits cases so that no patient is in two splits.
:func:`load_symptom_texts` reads the symptom text dataset of the knowledge side.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from MedSORALib.errors import InputFileError, MedSORAError
from MedSORALib.files import read_jsonl
from MedSORALib.organs import STRUCTURES, organ_key

from . import REPO

NIFTI_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")


@dataclass
class Case:
    """One CT with organ masks.

    Attributes:
        case_id: unique name of the case.
        patient_id: patient the case belongs to (cases of one patient stay in one split).
        loader: callable returning ``(Volume, {structure key: bool mask (I, J, K)})``.
        source: where the case comes from (``"btcv"``, ``"totalsegmentator"``, ``"labelmap"``, ``"phantom"``).
    """

    case_id: str
    patient_id: str
    loader: Callable[[], tuple]
    source: str = ""
    meta: dict = field(default_factory=dict)

    def load(self):
        """(Volume, masks) of the case."""
        return self.loader()


def _strip_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _labelmap_loader(image: Path, label: Path, scheme: str):
    def load():
        from MedSORALib.segmentation_io import read_organ_masks
        from MedSORALib.volume_io import read_volume

        volume = read_volume(image)
        return volume, read_organ_masks(label, reference=volume, label_scheme=scheme)

    return load


def labelmap_cases(pairs: Iterable[Sequence], scheme: str, source: str = "labelmap") -> list[Case]:
    """Cases from (image path, label map path[, patient id]) tuples whose labels use ``scheme``."""
    cases = []
    for pair in pairs:
        image, label = Path(pair[0]), Path(pair[1])
        for p in (image, label):
            if not p.exists():
                raise InputFileError(f"{p} does not exist")
        case_id = _strip_suffix(image.name)
        patient = str(pair[2]) if len(pair) > 2 else case_id
        cases.append(Case(case_id, patient, _labelmap_loader(image, label, scheme), source))
    return cases


def btcv_cases(root: str | Path, section: str | None = None) -> list[Case]:
    """Cases of a BTCV folder.

    Args:
        root: folder with ``imagesTr/``, ``labelsTr/`` and optionally ``dataset_0.json``.
        section: with ``dataset_0.json``, the list to read (``"training"``, ``"validation"``);
            ``None`` reads both.

    BTCV images are named ``img0001.nii.gz`` and labels ``label0001.nii.gz``; the number is the patient.
    """
    root = Path(root)
    listing = root / "dataset_0.json"
    pairs: list[tuple[Path, Path, str]] = []
    if listing.is_file():
        data = json.loads(listing.read_text())
        sections = [section] if section else [s for s in ("training", "validation") if s in data]
        for sec in sections:
            for entry in data.get(sec, []):
                image, label = root / entry["image"], root / entry["label"]
                pairs.append((image, label, _btcv_patient(image.name)))
    else:
        images, labels = root / "imagesTr", root / "labelsTr"
        if not images.is_dir() or not labels.is_dir():
            raise InputFileError(f"{root} has neither dataset_0.json nor imagesTr/ and labelsTr/")
        by_number = {_btcv_patient(p.name): p for p in labels.iterdir() if _strip_suffix(p.name) != p.name}
        for image in sorted(images.iterdir()):
            if _strip_suffix(image.name) == image.name:
                continue
            number = _btcv_patient(image.name)
            if number in by_number:
                pairs.append((image, by_number[number], number))
    if not pairs:
        raise InputFileError(f"no image/label pairs found in {root}")
    return labelmap_cases(pairs, "btcv", source="btcv")


def _btcv_patient(name: str) -> str:
    digits = re.findall(r"\d+", _strip_suffix(name))
    return digits[-1].lstrip("0") or "0" if digits else _strip_suffix(name)


def totalsegmentator_cases(root: str | Path) -> list[Case]:
    """Cases of a TotalSegmentator dataset folder (``<case>/ct.nii.gz``, ``<case>/segmentations/<organ>.nii.gz``).

    Only the 13 abdominal structures are read; a case needs ``ct.nii.gz`` and a ``segmentations`` folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileError(f"{root} is not a folder")
    cases = []
    for case_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        ct = case_dir / "ct.nii.gz"
        seg_dir = case_dir / "segmentations"
        if not ct.is_file() or not seg_dir.is_dir():
            continue
        cases.append(Case(case_dir.name, case_dir.name, _totalseg_loader(ct, seg_dir), "totalsegmentator"))
    if not cases:
        raise InputFileError(f"no <case>/ct.nii.gz with <case>/segmentations/ in {root}")
    return cases


def _totalseg_loader(ct: Path, seg_dir: Path):
    def load():
        import nibabel as nib

        from MedSORALib.volume_io import read_volume, resample_nearest

        volume = read_volume(ct)
        masks = {}
        for path in sorted(seg_dir.iterdir()):
            key = organ_key(_strip_suffix(path.name))
            if key is None:
                continue
            # Masks are read with nibabel directly: an empty organ file is a valid (all-zero) mask.
            image = nib.load(str(path))
            mask = np.asarray(image.dataobj) > 0
            if not mask.any():
                continue
            if mask.shape != volume.shape or not np.allclose(image.affine, volume.affine, atol=1e-3):
                mask = resample_nearest(mask.astype(np.uint8), image.affine, volume) > 0
            masks[key] = mask
        ordered = {k: masks[k] for k in STRUCTURES if k in masks}
        return volume, ordered

    return load


def phantom_cases(n: int, seed: int = 0, **phantom_kwargs) -> list[Case]:
    """``n`` synthetic phantom cases (each its own "patient"), seeds ``seed .. seed + n - 1``."""
    cases = []
    for i in range(n):
        s = seed + i

        def load(s=s):
            from MedSORALib.image.phantom import make_phantom
            from MedSORALib.segmentation_io import masks_from_labelmap

            volume, labels = make_phantom(s, label_scheme="totalsegmentator", **phantom_kwargs)
            return volume, masks_from_labelmap(labels, "totalsegmentator")

        cases.append(Case(f"phantom-{s:05d}", f"phantom-{s:05d}", load, "phantom", {"seed": s}))
    return cases


def split_by_patient(cases: Sequence[Case], fractions: Sequence[float] = (0.8, 0.1, 0.1),
                     names: Sequence[str] = ("train", "val", "test"), seed: int = 0) -> dict[str, list[Case]]:
    """Split cases by patient: a patient's cases all go to one split.

    Patients are ordered by a seeded hash of their id (stable when cases are added) and cut by ``fractions``.
    """
    if len(fractions) != len(names) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError("fractions must sum to 1 and match the split names")
    patients = sorted({c.patient_id for c in cases},
                      key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    bounds = np.cumsum([0.0] + list(fractions)) * len(patients)
    assignment = {}
    for i, name in enumerate(names):
        for p in patients[int(round(bounds[i])):int(round(bounds[i + 1]))]:
            assignment[p] = name
    out: dict[str, list[Case]] = {name: [] for name in names}
    for c in cases:
        out[assignment[c.patient_id]].append(c)
    return out


# ----- symptom texts ---------------------------------------------------------------------------------------
def load_symptom_texts(split: str, path: str | Path | None = None) -> tuple[list[dict], str]:
    """Symptom texts of one split, and where they came from.

    Sources: an explicit JSONL ``path`` (rows with a ``split`` field, or split here 70/10/20 by
    source passage with ``split_by_passage`` when none has one), otherwise the shipped dataset
    (``MedSORALib.knowledge.symptom_texts.load_dataset``). A source that cannot be read, or holds no text of
    ``split``, raises: training never switches silently to other texts with another split.

    Returns:
        (rows, source) where rows have at least ``text``, ``organ`` (class key) and ``organs`` (class keys).

    Raises:
        InputFileError: the file is missing or unreadable, or the split is empty.
    """
    if path is not None:
        path = Path(path)
        try:
            rows = read_jsonl(path)
        except (InputFileError, OSError, UnicodeDecodeError) as exc:
            raise InputFileError(f"symptom texts {path}: cannot be read ({exc})") from exc
        picked, source = _pick_split(rows, split), str(path)
    else:
        from MedSORALib.knowledge.symptom_texts import DATASET_PATH, load_dataset

        try:
            picked = [_normalise_row(r) for r in load_dataset(split)]
        except (FileNotFoundError, MedSORAError) as exc:
            raise InputFileError(
                f"the shipped symptom dataset {DATASET_PATH} cannot be used ({exc}); build it with "
                "'medsora dataset build --config Training/configs/dataset_shipped.yaml' or set texts.dataset"
            ) from exc
        source = "MedSORALib.knowledge.symptom_texts"
    if not picked:
        raise InputFileError(f"symptom texts {path or 'of the shipped dataset'}: the {split} split holds no text")
    return picked, source


def _normalise_row(row: dict) -> dict:
    row = dict(row)
    row.setdefault("organs", [row["organ"]])
    return row


def _pick_split(rows: list[dict], split: str) -> list[dict]:
    rows = [_normalise_row(r) for r in rows]
    if not all("split" in r for r in rows):
        from MedSORALib.knowledge.symptom_texts import DEFAULT_RATIOS, split_by_passage

        split_by_passage(rows, DEFAULT_RATIOS, seed=0)
    return [r for r in rows if r["split"] == split]
