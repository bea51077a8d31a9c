"""Organ masks in and out: reading them from a label map or a ``.seg.nrrd`` onto the CT grid, and
writing Slicer ``.seg.nrrd`` files (through slicerio).

Reading (:func:`read_organ_masks`): a label map in one of the schemes of :mod:`MedSORALib.organs`
(``label_scheme`` is required: BTCV's 5 is the esophagus, TotalSegmentator's 5 is the liver) or a
Slicer ``.seg.nrrd`` (segments matched by name, id or SNOMED terminology). Masks on another grid
are resampled with nearest neighbour onto the CT grid when the grids overlap.

The writer takes boolean organ masks on a reference :class:`~MedSORALib.volume_io.Volume`
grid and store them with the reference geometry, so that the output overlays
the input CT in Slicer or any viewer. Each segment carries:

- id = the organ key (``kidney_right``), name = its segment name (``Right kidney``,
  :func:`~MedSORALib.result_format.segment_name`);
- a colour (the catalog's, or one given per organ, e.g. a relevance colour);
- the SNOMED CT terminology of the catalog (``TerminologyEntry`` tag);
- any extra tags given per organ (MedSORA stores ``MedSORA.Relevance`` there).

Writes are atomic: a temporary file in the target folder is renamed onto the
target only once complete.
"""
from __future__ import annotations

import bz2
import os
import re
import zlib
from pathlib import Path
from typing import Iterator, Mapping

import numpy as np

from . import organs, validation
from .errors import InputFileError, MedSORAError, SegmentationError, VolumeError
from .files import atomic_target
from .masks import LabelMasks
from .result_format import segment_name
from .volume_io import LPS_TO_RAS, Grid, Volume, check_readable, grids_overlap, read_image_array, resample_nearest

Color = tuple[float, float, float]


def _check_masks(masks: Mapping[str, np.ndarray], reference: Volume) -> list[str]:
    keys = organs.structures_present(masks)
    unknown = sorted(set(masks) - set(keys))
    if unknown:
        raise SegmentationError(f"unknown organ keys: {', '.join(unknown)}")
    if not keys:
        raise SegmentationError("no organ mask to write")
    for key in keys:
        # A label map's masks share its shape (asking for one computes it).
        shape = masks.shape if isinstance(masks, LabelMasks) else tuple(masks[key].shape)
        if tuple(shape) != reference.shape:
            raise SegmentationError(f"mask {key} has shape {tuple(shape)}, the reference volume {reference.shape}")
    return keys


def _label_layers(masks: Mapping[str, np.ndarray], keys: list[str], shape, order: str):
    """(uint8 label layers, organ keys of each layer): each organ goes to the first layer it does not
    overlap (one layer in the usual case) with its BTCV label value; one mask is held at a time."""
    layers: list[np.ndarray] = []
    members: list[list[str]] = []
    for key in keys:
        mask = np.asarray(masks[key], dtype=bool, order=order)
        index = next((i for i, layer in enumerate(layers) if not layer[mask].any()), None)
        if index is None:
            layers.append(np.zeros(shape, dtype=np.uint8, order=order))
            members.append([])
            index = len(layers) - 1
        layers[index][mask] = organs.ORGANS[key].btcv_label
        members[index].append(key)
    return layers, members


def write_seg_nrrd(
    path: str | os.PathLike,
    masks: Mapping[str, np.ndarray],
    reference: Volume,
    segment_tags: Mapping[str, Mapping[str, str]] | None = None,
    colors: Mapping[str, Color] | None = None,
    names: Mapping[str, str] | None = None,
) -> Path:
    """Write a Slicer segmentation file.

    Args:
        path: output ``.seg.nrrd``.
        masks: organ key -> boolean mask ``[i, j, k]`` on the reference grid.
        reference: the CT the masks belong to (its geometry is written).
        segment_tags: organ key -> extra segment tags (str -> str).
        colors: organ key -> RGB in 0..1, overriding the catalog colour.
        names: organ key -> segment name, overriding :func:`~MedSORALib.result_format.segment_name`.

    Returns:
        The written path. Overlapping masks go to separate layers.
    """
    import slicerio

    keys = _check_masks(masks, reference)
    # Work in the masks' own memory order: mixing Fortran-order masks (as nibabel reads them) with
    # C-order buffers makes every elementwise step strided and several times slower on large CTs.
    first = masks.labels if isinstance(masks, LabelMasks) else np.asarray(masks[keys[0]])
    order = "F" if first.flags.f_contiguous and not first.flags.c_contiguous else "C"
    label_layers, layers = _label_layers(masks, keys, reference.shape, order)
    voxels = label_layers[0] if len(label_layers) == 1 else np.array(label_layers, order=order)
    label_of = {key: organs.ORGANS[key].btcv_label for key in keys}
    segments = []
    for key in keys:
        organ = organs.ORGANS[key]
        layer_index = next(i for i, members in enumerate(layers) if key in members)
        tags = {str(k): str(v) for k, v in (segment_tags or {}).get(key, {}).items()}
        for forbidden in ("|", "\n"):
            if any(forbidden in v for v in tags.values()):
                raise SegmentationError(f"segment tag of {key} contains {forbidden!r}, which .seg.nrrd cannot store")
        color = tuple(float(c) for c in (colors or {}).get(key, organ.color))
        segment = {
            "id": key,
            "name": (names or {}).get(key, segment_name(key)),
            "nameAutoGenerated": False,
            "color": [round(c, 6) for c in color],
            "colorAutoGenerated": False,
            "labelValue": label_of[key],
            "layer": layer_index,
            "terminology": organ.terminology(),
            "status": "completed",
        }
        if tags:
            segment["tags"] = tags
        segments.append(segment)
    segmentation = {
        "voxels": voxels,
        "ijkToLPS": LPS_TO_RAS @ reference.affine,
        "encoding": "gzip",
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        "referenceImageExtentOffset": [0, 0, 0],
        "segments": segments,
    }
    with atomic_target(path) as tmp:
        slicerio.write_segmentation(str(tmp), segmentation, compression_level=1)
    return Path(path)


def _nrrd_itemsize(kind: str) -> int:
    """Bytes per value of a NRRD ``type`` (``unsigned char``, ``int16``, ``double``...); 4 when not named."""
    kind = str(kind).lower()
    for words, size in ((("long", "64", "double"), 8), (("short", "16"), 2), (("char", "8"), 1)):
        if any(word in kind for word in words):
            return size
    return 4


def _inflated_blocks(handle, encoding: str, block: int = 1 << 24) -> Iterator[int]:
    """Sizes of the blocks a compressed payload inflates to, as they come; nothing is kept."""
    if encoding in ("gzip", "gz"):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            while chunk and not inflater.eof:
                yield len(inflater.decompress(chunk, block))
                chunk = inflater.unconsumed_tail
            if inflater.eof:
                return
    else:
        inflater = bz2.BZ2Decompressor()
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            yield len(inflater.decompress(chunk, block))
            while not inflater.eof and not inflater.needs_input:
                yield len(inflater.decompress(b"", block))
            if inflater.eof:
                return


def check_seg_nrrd_size(path: str | os.PathLike) -> None:
    """Refuse a ``.seg.nrrd`` whose voxels would not fit in memory, before any of them is decompressed.

    pynrrd (under slicerio) inflates the whole compressed payload before it compares it with the
    header's sizes, so two things are checked from the header on:

    - the voxels the header declares, with :func:`~MedSORALib.validation.check_memory` as for any image
      (the inflated buffer, pynrrd's copy of it and one boolean mask per organ segment);
    - that the payload inflates to no more than the header declares. Deflate inflates at most
      ``DEFLATE_MAX_RATIO`` times; when even that much would not fit in memory, the payload is inflated
      once as a stream, counting bytes and keeping none, and refused as soon as it passes the declared size.
    """
    import nrrd
    from nrrd.errors import NRRDError

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header = nrrd.read_header(handle)
            start = handle.tell()
            sizes = [int(s) for s in header["sizes"]]
            encoding = str(header.get("encoding", "raw")).lower()
            if header.get("datafile", header.get("data file")) is not None:
                raise InputFileError(f"{path}: the .seg.nrrd header points to a separate data file; "
                                     "a .seg.nrrd keeps its voxels in the file")
            itemsize = _nrrd_itemsize(header.get("type", ""))
            layers = sizes[0] if len(sizes) == 4 else 1
            segments = sum(1 for key in header if re.fullmatch(r"Segment\d+_ID", str(key)))
            # The inflated buffer and pynrrd's copy of it, then one boolean mask per organ segment and voxel.
            per_voxel = 2 * itemsize + min(segments, len(organs.STRUCTURES)) / max(layers, 1)
            validation.check_memory(sizes, per_voxel, path)
            if encoding not in ("gzip", "gz", "bzip2", "bz2") or int(header.get("lineskip",
                                                                              header.get("line skip", 0))):
                return
            declared = int(np.prod(sizes, dtype=np.int64)) * itemsize + max(
                int(header.get("byteskip", header.get("byte skip", 0))), 0)
            available = validation.available_memory()
            most = (path.stat().st_size - start) * validation.DEFLATE_MAX_RATIO
            if encoding in ("gzip", "gz") and (available is None
                                              or 2 * most <= validation.MEMORY_SHARE * available):
                return  # even the largest inflation of this payload fits
            validation.check_inflated_size(_inflated_blocks(handle, encoding), declared, path)
    except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError, NRRDError) as exc:
        raise InputFileError(f"{path}: not a readable .seg.nrrd segmentation ({type(exc).__name__})") from exc


def read_seg_nrrd(path: str | os.PathLike) -> dict:
    """Read a ``.seg.nrrd`` back as slicerio's dict, with ``affine`` (RAS) added.

    Its size is checked first (:func:`check_seg_nrrd_size`).
    """
    import slicerio

    check_seg_nrrd_size(path)
    seg = slicerio.read_segmentation(str(path))
    seg["affine"] = LPS_TO_RAS @ np.asarray(seg["ijkToLPS"], dtype=np.float64)
    return seg


# -- reading organ masks onto the CT grid -------------------------------------------------------

def masks_from_labelmap(labels: np.ndarray, scheme: str) -> dict[str, np.ndarray]:
    """Split a label map into boolean masks of the catalog's structures.

    Labels of other structures (lungs, bones, colon...) are ignored; structures
    with no voxel are left out.
    """
    table = organs.label_table(scheme)
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        labels = np.rint(labels).astype(np.int32)
    masks = {}
    for value, key in table.items():
        mask = labels == value
        if mask.any():
            masks[key] = mask
    return {k: masks[k] for k in organs.structures_present(masks)}


def _label_values(labels: np.ndarray) -> list[int]:
    """Sorted non-zero label values present in an integer label map."""
    flat = labels.reshape(-1, order="A")
    if flat.size and flat.min() >= 0 and flat.max() < 1 << 16:
        # bincount works on an int64 copy of its input: count in slices so the copy stays small.
        counts = np.zeros(int(flat.max()) + 1, dtype=np.int64)
        for start in range(0, flat.size, 1 << 22):
            counts += np.bincount(flat[start:start + (1 << 22)], minlength=counts.size)
        return [int(v) for v in np.flatnonzero(counts) if v != 0]
    values = np.unique(flat)
    return [int(v) for v in values if v != 0]


def _labels_on_reference(labels: np.ndarray, affine: np.ndarray, reference: Grid | Volume | None,
                         path: Path) -> np.ndarray:
    if reference is None:
        return labels
    if Grid(labels.shape, affine).same_grid(reference):
        return labels
    if not grids_overlap(affine, labels.shape, reference):
        raise SegmentationError(f"{path}: the segmentation does not overlap the CT volume (disjoint grids)")
    return resample_nearest(labels, affine, reference)


def _segments_from_seg_nrrd(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray, list[str]]:
    """Masks of known organs in a Slicer .seg.nrrd, its RAS affine and the names it holds."""
    try:
        seg = read_seg_nrrd(path)
    except MedSORAError:
        raise
    except MemoryError:
        raise VolumeError(f"{path}: not enough memory to read this segmentation") from None
    except Exception as exc:
        raise InputFileError(f"{path}: not a readable .seg.nrrd segmentation ({type(exc).__name__})") from exc
    affine = seg["affine"]
    validation.check_affine(affine, path)
    voxels = np.asarray(seg["voxels"])
    if voxels.ndim not in (3, 4):
        raise SegmentationError(f"{path}: the segmentation has {voxels.ndim} dimensions; expected 3D layers")
    layers = voxels.shape[0] if voxels.ndim == 4 else 1
    masks: dict[str, np.ndarray] = {}
    names = []
    for segment in seg.get("segments", []):
        name = segment.get("name", "")
        names.append(name)
        key = (organs.organ_key_from_terminology(segment.get("terminology"))
               or organs.organ_key(name) or organs.organ_key(segment.get("id", "")))
        if key is None:
            continue
        try:
            index, value = int(segment.get("layer", 0)), int(segment.get("labelValue", 1))
        except (TypeError, ValueError):
            raise SegmentationError(f"{path}: segment {name!r} has a layer or label value that is not a whole "
                                    "number") from None
        if not 0 <= index < layers:
            raise SegmentationError(f"{path}: segment {name!r} is in layer {index}, but the file has "
                                    f"{layers} layer(s)")
        layer = voxels[index] if voxels.ndim == 4 else voxels
        mask = layer == value
        masks[key] = masks[key] | mask if key in masks else mask
    return masks, affine, names


def read_organ_masks(
    path: str | os.PathLike,
    reference: Grid | Volume | None = None,
    label_scheme: str | None = None,
) -> dict[str, np.ndarray]:
    """Read organ masks and put them on the CT grid.

    Args:
        path: a label map (NIfTI, NRRD, MHA, DICOM folder) or a Slicer ``.seg.nrrd``.
        reference: the CT, or its :class:`~MedSORALib.volume_io.Grid` (only the geometry is used);
            masks on another grid are resampled (nearest) onto it. ``None`` keeps the file's grid.
        label_scheme: ``"btcv"``, ``"totalsegmentator"`` or ``"amos"``; required
            for label maps, ignored for ``.seg.nrrd`` (matched by names and
            terminology).

    Returns:
        structure key -> boolean mask ``[i, j, k]``, catalog order, empty
        structures left out (a :class:`~MedSORALib.masks.LabelMasks` for a label map).

    Raises:
        InputFileError, LabelSchemeError, SegmentationError (no known organ,
        disjoint from the CT, no organ voxel inside the CT).
    """
    path = Path(path)
    check_readable(path)
    if path.name.lower().endswith(".seg.nrrd"):
        masks, affine, names = _segments_from_seg_nrrd(path)
        if not masks:
            shown = ", ".join(repr(n) for n in names[:6]) or "none"
            raise SegmentationError(f"{path}: no segment is a known organ (segments: {shown})")
        shape = next(iter(masks.values())).shape
        if reference is not None and not Grid(shape, affine).same_grid(reference):
            if not grids_overlap(affine, shape, reference):
                raise SegmentationError(f"{path}: the segmentation does not overlap the CT volume (disjoint grids)")
            masks = {k: resample_nearest(m, affine, reference) for k, m in masks.items()}
        masks = {k: m for k, m in masks.items() if m.any()}
    else:
        if label_scheme is None:
            raise SegmentationError(
                f"{path}: a label map needs its label scheme (--label-scheme btcv, totalsegmentator or amos)")
        scheme = organs.normalize_scheme(label_scheme)
        labels, affine = read_image_array(path)
        if not np.issubdtype(labels.dtype, np.integer):
            if not np.all(np.isfinite(labels)) or not np.allclose(labels, np.rint(labels)):
                raise SegmentationError(f"{path}: not a label map (voxel values are not whole numbers)")
            labels = np.rint(labels).astype(np.int32)
        validation.check_affine(affine, path)
        validation.check_label_map(labels, path)
        values = _label_values(labels)
        validation.check_label_map(labels, path, values)
        if not set(values) & set(organs.label_table(scheme)):
            found = ", ".join(str(v) for v in values[:12]) or "none"
            raise SegmentationError(
                f"{path}: no known organ label for scheme {scheme} (labels found: {found})")
        on_grid = _labels_on_reference(labels, affine, reference, path)
        present = values if on_grid is labels else _label_values(on_grid)
        # One label map instead of 13 boolean arrays (1 GB on a 512 x 512 x 300 CT); masks come on access.
        masks = LabelMasks.from_label_table(on_grid, organs.label_table(scheme), present)
    if not masks:
        raise SegmentationError(f"{path}: no organ voxel falls inside the CT volume")
    # Keep the memory order of the file (nibabel gives Fortran order): a C-order copy of each mask of a
    # 512 x 512 x 300 CT would cost about a second per organ and buys nothing downstream.
    if isinstance(masks, LabelMasks):
        return masks
    return {k: np.asarray(masks[k], dtype=bool) for k in organs.structures_present(masks)}
