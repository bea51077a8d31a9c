"""Files written for a scored symptom: segmentation, JSON report, preview and DICOM SEG.

For an output prefix ``PREFIX``:

- ``PREFIX.seg.nrrd``: one segment per organ present, id = organ key, name =
  segment name ("Right kidney"), colour = :func:`relevance_color` of its
  relevance, SNOMED CT terminology, the tags of
  :func:`~MedSORALib.result_format.segment_tags` (``MedSORA.Structure``,
  ``MedSORA.Relevance`` as text with 6 decimals, ``MedSORA.TextPrior``,
  ``MedSORA.ImageScore``, ``MedSORA.FindingBoost``, the organ's measurements
  (``MedSORA.VolumeMl``, ``MedSORA.LengthMm``, ``MedSORA.MaxDiameterMm``,
  ``MedSORA.MeanHU``, ``MedSORA.PartiallyImaged``, for vessels
  ``MedSORA.PerpendicularDiameterMm``), its abnormal findings
  (``MedSORA.Findings``, "none" when none) and ``MedSORA.ContrastPhase``), the
  same tags and names the Slicer nodes of :mod:`MedSORALib.scene.result_nodes`
  carry; geometry of the input CT.
- ``PREFIX.json``: the :class:`~MedSORALib.scoring.SymptomResult` (symptom,
  in_domain, contrast_phase, organs sorted by relevance with their
  measurements and findings, passages, models) plus the inputs and
  their SHA-256 and the names of the files written.
- ``PREFIX.png`` (``preview=True``): Slicer's views rendered offscreen
  (:mod:`MedSORALib.scene.render`) when they can be, else three orthogonal slices
  through the most relevant organ with the relevance overlay
  (:mod:`MedSORALib.preview`); both with a bar chart of the organs and the
  contrast phase and abnormal findings below.
- ``PREFIX_seg.dcm`` (``dicom_seg=True``, DICOM series input): a DICOM
  Segmentation referencing the source series (highdicom).
- ``PREFIX_sr.dcm`` (``dicom_sr=True``, DICOM series input, with the SEG): a
  TID 1500 Measurement Report referencing the series and the SEG's segments
  (:mod:`MedSORALib.dicom_sr`).

Every file is written to a temporary name; the set of a symptom is renamed
together once all its files are written, the JSON last (a completion marker).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Mapping

import numpy as np

from . import __version__, organs
from .colors import RELEVANCE_COLORMAP, relevance_color
from .errors import InputFileError
from .files import atomic_set, atomic_target, atomic_write_text
from .masks import restrict
from .preview import write_preview
from .result_format import segment_name, segment_tags
from .scoring import SymptomResult
from .segmentation_io import write_seg_nrrd
from .volume_io import Volume


def output_prefixes(prefix: str | Path, count: int) -> list[Path]:
    """``PREFIX`` for one symptom, ``PREFIX_1`` ... ``PREFIX_N`` for several."""
    prefix = Path(prefix)
    if count == 1:
        return [prefix]
    return [prefix.with_name(f"{prefix.name}_{n}") for n in range(1, count + 1)]


def write_json(path: Path, payload: dict) -> Path:
    return atomic_write_text(path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")


def write_result(prefix: str | Path, result: SymptomResult, volume: Volume, masks: Mapping[str, np.ndarray],
                 **options) -> dict[str, Path]:
    """Write the files of one scored symptom as one set (see :func:`write_result_files` for the options).

    The files appear together or not at all: each is written under a temporary
    name, and all are renamed once every one is written, ``PREFIX.json`` last
    (its presence marks a complete set).
    """
    with atomic_set():
        return write_result_files(prefix, result, volume, masks, **options)


def write_result_files(
    prefix: str | Path,
    result: SymptomResult,
    volume: Volume,
    masks: Mapping[str, np.ndarray],
    *,
    inputs: Mapping[str, dict] | None = None,
    preview: bool = False,
    dicom_series: str | Path | None = None,
    dicom_sr: bool = False,
) -> dict[str, Path]:
    """Write the files of one scored symptom (module doc); returns kind -> path.

    Args:
        prefix: output prefix (folders are created).
        result: the scored symptom.
        volume, masks: the CT and its organ masks (only scored organs are written).
        inputs: description of the input files for the JSON (path, sha256, ...).
        preview: also write the PNG preview.
        dicom_series: the source DICOM folder, to write a DICOM SEG referencing it.
        dicom_sr: with ``dicom_series``, also write the DICOM SR of the measurements and findings.
    """
    prefix = Path(prefix)
    files: dict[str, Path] = {}
    scored = restrict(masks, [o.key for o in result.organs])
    colors = {o.key: relevance_color(o.relevance) for o in result.organs}
    files["segmentation"] = write_seg_nrrd(prefix.with_name(prefix.name + ".seg.nrrd"), scored, volume,
                                           segment_tags=segment_tags(result), colors=colors)
    if preview:
        files["preview"] = write_best_preview(prefix.with_name(prefix.name + ".png"), result, volume, scored)
    if dicom_series is not None:
        built: dict = {}
        files["dicom_seg"] = write_dicom_seg(prefix.with_name(prefix.name + "_seg.dcm"), result, volume, scored,
                                             dicom_series, built=built)
        if dicom_sr:
            from .dicom_sr import write_dicom_sr

            files["dicom_sr"] = write_dicom_sr(prefix.with_name(prefix.name + "_sr.dcm"), result, built["datasets"],
                                               built["seg"])
    payload = result.to_dict()
    payload["relevance_colormap"] = RELEVANCE_COLORMAP
    payload["inputs"] = dict(inputs or {})
    payload["files"] = {kind: path.name for kind, path in files.items()}
    files["json"] = write_json(prefix.with_name(prefix.name + ".json"), payload)
    return files


def write_best_preview(path: Path, result: SymptomResult, volume: Volume, masks: Mapping[str, np.ndarray]) -> Path:
    """``PREFIX.png``: Slicer's 3D and slice views rendered offscreen when slicer-core and an offscreen OpenGL are
    installed (:mod:`MedSORALib.scene.render`), else the matplotlib figure of :func:`write_preview`."""
    from .scene.render import rendering_available

    if rendering_available():
        from .scene.render import write_rendered_preview

        try:
            return write_rendered_preview(path, result, volume, masks)
        except Exception as error:  # a broken OpenGL stack: the 2D figure shows the same numbers
            print(f"medsora: the 3D preview could not be rendered ({type(error).__name__}: {error}); "
                  "writing the 2D one", file=sys.stderr)
    return write_preview(path, result, volume, masks)


def write_dicom_seg(
    path: Path, result: SymptomResult, volume: Volume, masks: Mapping[str, np.ndarray], dicom_series: str | Path,
    built: dict | None = None,
) -> Path:
    """Write :func:`build_dicom_seg` to ``path``; ``built``, when given, receives the ``seg`` and the series'
    ``datasets`` (for the SR that references them)."""
    seg, datasets = build_dicom_seg(result, volume, masks, dicom_series)
    if built is not None:
        built.update(seg=seg, datasets=datasets)
    with atomic_target(path) as tmp:
        seg.save_as(str(tmp))
    return path


def build_dicom_seg(result: SymptomResult, volume: Volume, masks: Mapping[str, np.ndarray],
                    dicom_series: str | Path):
    """A DICOM Segmentation (binary, one segment per organ, in ``result.organs`` order) referencing the
    source CT series, and the series' datasets (read once, for the SR).

    The masks are on the grid of ``volume``, which was read from ``dicom_series``:
    each source slice is matched to the volume slice at its position.
    """
    import highdicom as hd
    import pydicom

    folder = Path(dicom_series)
    datasets = []
    for file in sorted(p for p in folder.iterdir() if p.is_file()):
        try:
            ds = pydicom.dcmread(str(file))
        except Exception:
            continue
        if "PixelData" in ds and hasattr(ds, "ImagePositionPatient"):
            # Anonymised series sometimes blank the SOP identifiers kept in the file meta: restore them
            # in memory (the files themselves are never modified) so the SEG can reference the images.
            meta = getattr(ds, "file_meta", None)
            if not ds.get("SOPClassUID") and meta is not None and meta.get("MediaStorageSOPClassUID"):
                ds.SOPClassUID = meta.MediaStorageSOPClassUID
            if not ds.get("SOPInstanceUID") and meta is not None and meta.get("MediaStorageSOPInstanceUID"):
                ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            datasets.append(ds)
    if len(datasets) < 2:
        raise InputFileError(f"{folder}: --dicom-seg needs the CT as a DICOM series folder")
    # Slice index of each source image in the volume (RAS: negate x and y of the LPS position).
    indices = []
    for ds in datasets:
        ras = np.array(ds.ImagePositionPatient, dtype=float) * np.array([-1, -1, 1])
        indices.append(int(round(volume.ras_to_index(ras)[2])))
    order = np.argsort(indices)
    datasets = [datasets[i] for i in order]
    indices = [indices[i] for i in order]
    keys = [o.key for o in result.organs]
    frames = np.zeros((len(datasets), int(datasets[0].Rows), int(datasets[0].Columns), len(keys)), dtype=bool)
    for f, k in enumerate(indices):
        if not 0 <= k < volume.shape[2]:
            continue
        for s, key in enumerate(keys):
            frames[f, :, :, s] = masks[key][:, :, k].T  # rows = j, columns = i
    descriptions = []
    for number, o in enumerate(result.organs, 1):
        organ = organs.ORGANS[o.key]
        code = hd.sr.CodedConcept(value=organ.snomed_type[1], scheme_designator="SCT", meaning=organ.snomed_type[2])
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=f"{segment_name(o.key)} (relevance {o.relevance:.2f})"[:64],
            segmented_property_category=hd.sr.CodedConcept(
                value=organs.CATEGORY_ANATOMICAL_STRUCTURE[1], scheme_designator="SCT",
                meaning=organs.CATEGORY_ANATOMICAL_STRUCTURE[2]),
            segmented_property_type=code,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            tracking_uid=hd.UID(),
            tracking_id=f"MedSORA {o.key}",
        ))
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="MedSORA",
        manufacturer_model_name="MedSORA",
        software_versions=__version__,
        device_serial_number="0",
        series_description=f"MedSORA: {result.symptom}"[:64],
    )
    return seg, datasets
