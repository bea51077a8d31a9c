"""Reading and writing CT volumes in one geometric convention.

Convention (used everywhere in MedSORA):

- ``Volume.array`` is indexed ``[i, j, k]`` (column, row, slice), the voxel
  index order of NIfTI/nibabel and of Slicer's IJK; it holds float32 Hounsfield
  units exactly as stored (rescale slope/intercept applied, no clipping).
- ``Volume.affine`` is the 4x4 matrix from voxel index ``(i, j, k, 1)`` to
  physical **RAS** coordinates in millimetres (+x = patient's Right, +y =
  Anterior, +z = Superior: the convention of NIfTI and 3D Slicer).
  Files stored in LPS (NRRD, MHA, DICOM) are converted by negating x and y.

Supported inputs: NIfTI (``.nii``, ``.nii.gz``), NRRD/NHDR, MetaImage
(``.mha``/``.mhd``) and a folder holding one DICOM series (the largest series
is taken when there are several).

A :class:`Grid` is the geometry alone (shape and affine), for code that places
things on the CT's grid without its voxels. Organ masks are read by
:mod:`MedSORALib.segmentation_io`, which resamples them onto the CT grid with
:func:`resample_nearest`.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from . import validation
from .errors import InputFileError, VolumeError
from .files import atomic_target

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
_NIFTI_SUFFIXES = (".nii", ".nii.gz")


class _GridGeometry:
    """Voxel geometry from ``shape`` (i, j, k) and ``affine`` (4x4, voxel index -> RAS mm)."""

    shape: tuple[int, int, int]
    affine: np.ndarray

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size along i, j, k in mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of voxel (0, 0, 0)."""
        return self.affine[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the unit RAS directions of the i, j, k axes."""
        return self.affine[:3, :3] / self.spacing

    @property
    def voxel_volume_ml(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])) / 1000.0)

    def index_to_ras(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices ``(..., 3)`` to RAS mm ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=np.float64)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def ras_to_index(self, ras: np.ndarray) -> np.ndarray:
        """Map RAS mm ``(..., 3)`` to continuous voxel indices ``(..., 3)``."""
        inv = np.linalg.inv(self.affine)
        ras = np.asarray(ras, dtype=np.float64)
        return ras @ inv[:3, :3].T + inv[:3, 3]

    def same_grid(self, other: "_GridGeometry", atol: float = 1e-3) -> bool:
        return tuple(self.shape) == tuple(other.shape) and np.allclose(self.affine, other.affine, atol=atol)


@dataclass(frozen=True, eq=False)
class Grid(_GridGeometry):
    """A voxel grid without voxels.

    Attributes:
        shape: number of voxels along i, j, k.
        affine: 4x4 float64, voxel index -> RAS millimetres.
    """

    shape: tuple[int, int, int]
    affine: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=np.float64))


@dataclass
class Volume(_GridGeometry):
    """A 3D image on a grid.

    Attributes:
        array: voxel values indexed ``[i, j, k]``; float32 HU for CT volumes.
        affine: 4x4 float64, voxel index -> RAS millimetres.
        source: file the volume was read from (informational).
    """

    array: np.ndarray
    affine: np.ndarray
    source: str | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def grid(self) -> Grid:
        return Grid(self.shape, self.affine)


# -- reading images -----------------------------------------------------------------------------

def check_readable(path: Path) -> None:
    """An :class:`InputFileError` when ``path`` is absent, cannot be read, or is not a regular file or a DICOM folder.

    Pipes, sockets and devices are refused before they are opened (reading one may block for ever).
    """
    validation.check_input_path(path)
    if path.name.lower().endswith(".dcm") and path.is_file():
        validation.check_dicom_folder(path.parent)  # a slice stands for its whole series folder


def _squeeze_to_3d(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim == 2 or (array.ndim == 3 and min(array.shape) == 1 and array.shape[2] == 1):
        raise VolumeError(f"{path}: is a 2D image; MedSORA needs a 3D CT volume")
    if array.ndim != 3:
        raise VolumeError(f"{path}: has {array.ndim} dimensions {tuple(array.shape)}; MedSORA needs a 3D CT volume")
    return array


def _nifti_raw_header(path: Path):
    """The NIfTI header as stored (nibabel's loader silently replaces a zero pixdim with 1)."""
    import gzip
    import io
    import struct

    import nibabel as nib

    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        raw = handle.read(540)
    if len(raw) < 348:
        return None  # not NIfTI: nib.load reports it
    size_le, size_be = struct.unpack("<i", raw[:4])[0], struct.unpack(">i", raw[:4])[0]
    header_class = {348: nib.Nifti1Header, 540: nib.Nifti2Header}.get(
        size_le if size_le in (348, 540) else size_be)
    if header_class is None:
        return None
    try:
        return header_class.from_fileobj(io.BytesIO(raw), check=False)
    except Exception:  # a damaged header: nib.load reports it
        return None


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib
    from nibabel.imageglobals import LoggingOutputSuppressor

    try:
        header = _nifti_raw_header(path)
    except (OSError, EOFError, ValueError) as exc:
        raise InputFileError(f"{path}: not a readable NIfTI image ({type(exc).__name__})") from exc
    if header is not None and int(header["sform_code"]) == 0:
        # Without an sform the affine comes from pixdim (qform or the fallback): a zero or
        # non-finite voxel size there has no meaning, and nibabel would read it as 1 mm.
        pixdim = np.asarray(header["pixdim"][1:4], dtype=np.float64)
        if not np.all(np.isfinite(pixdim)) or np.any(pixdim == 0):
            shown = " x ".join(f"{p:g}" for p in pixdim)
            raise VolumeError(f"{path}: the NIfTI header gives a voxel size (pixdim) of {shown} mm; "
                              "a zero or undefined voxel size makes every volume wrong")
    try:
        with LoggingOutputSuppressor():
            image = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for bad files
        raise InputFileError(f"{path}: not a readable NIfTI image ({type(exc).__name__})") from exc
    affine = np.asarray(image.affine, dtype=np.float64)
    validation.check_affine(affine, path)
    proxy = image.dataobj
    scaled = getattr(proxy, "slope", 1.0) != 1.0 or getattr(proxy, "inter", 0.0) != 0.0
    # The raw voxels, a float64 copy when a rescale slope applies, then the float32 volume.
    itemsize = np.dtype(image.get_data_dtype()).itemsize
    validation.check_memory(image.shape, itemsize + (8 if scaled else 0) + 4, path)
    try:
        with LoggingOutputSuppressor():
            array = np.asanyarray(proxy)
    except MemoryError:
        raise
    except Exception as exc:
        raise InputFileError(f"{path}: not a readable NIfTI image ({type(exc).__name__})") from exc
    return array, affine


def _itk_to_array_affine(image) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    if image.GetDimension() not in (2, 3, 4):
        raise VolumeError(f"image has {image.GetDimension()} dimensions; MedSORA needs a 3D CT volume")
    array = sitk.GetArrayViewFromImage(image)
    array = np.array(array).transpose(tuple(reversed(range(array.ndim))))  # (k, j, i) -> (i, j, k)
    dim = image.GetDimension()
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(dim, dim)[:3, :3]
    spacing = np.asarray(image.GetSpacing(), dtype=np.float64)[:3]
    origin = np.asarray(image.GetOrigin(), dtype=np.float64)[:3]
    if dim == 2:
        return array, np.eye(4)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing
    lps[:3, 3] = origin
    return array, LPS_TO_RAS @ lps


def _itk_itemsize(pixel_id: int) -> int:
    import SimpleITK as sitk

    return int(sitk.GetArrayViewFromImage(sitk.Image([1, 1], pixel_id)).dtype.itemsize)


@contextlib.contextmanager
def _itk_quiet():
    """Keep ITK's multi-line warnings (e.g. "No Series were found") off stderr: errors are reported as one line."""
    import SimpleITK as sitk

    shown = sitk.ProcessObject_GetGlobalWarningDisplay()
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject_SetGlobalWarningDisplay(shown)


def _read_itk_file(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        with _itk_quiet():
            reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputFileError(f"{path}: not a readable image") from exc
    if reader.GetNumberOfComponents() != 1:
        raise VolumeError(f"{path}: has {reader.GetNumberOfComponents()} components per voxel; "
                          "MedSORA needs a scalar CT volume")
    # ITK's buffer, the numpy copy, then the float32 volume.
    validation.check_memory(reader.GetSize(), 2 * _itk_itemsize(reader.GetPixelID()) + 4, path)
    try:
        with _itk_quiet():
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputFileError(f"{path}: not a readable image") from exc
    return _itk_to_array_affine(image)


def _read_dicom_folder(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    with _itk_quiet():
        series = reader.GetGDCMSeriesIDs(str(path)) or ()
    if not series:
        raise InputFileError(f"{path}: folder holds no DICOM image series")
    with _itk_quiet():
        files = max((reader.GetGDCMSeriesFileNames(str(path), sid) for sid in series), key=len)
    if len(files) < 2:
        raise VolumeError(f"{path}: the DICOM series has a single slice; MedSORA needs a 3D CT volume")
    first = sitk.ImageFileReader()
    first.SetFileName(files[0])
    try:
        with _itk_quiet():
            first.ReadImageInformation()
    except RuntimeError as exc:
        raise InputFileError(f"{path}: DICOM series cannot be read") from exc
    size = list(first.GetSize()[:2]) + [len(files)]
    validation.check_memory(size, 2 * _itk_itemsize(first.GetPixelID()) * first.GetNumberOfComponents() + 4, path)
    reader.SetFileNames(files)
    try:
        with _itk_quiet():
            image = reader.Execute()
    except RuntimeError as exc:
        raise InputFileError(f"{path}: DICOM series cannot be read") from exc
    return _itk_to_array_affine(image)


def _read_raw(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Array (i, j, k) in the file's own type and its RAS affine."""
    check_readable(path)
    try:
        return _read_raw_unchecked(path)
    except MemoryError:
        raise VolumeError(f"{path}: not enough memory to read this image") from None


def _read_raw_unchecked(path: Path) -> tuple[np.ndarray, np.ndarray]:
    name = path.name.lower()
    if path.is_dir():
        return _read_dicom_folder(path)
    if name.endswith(_NIFTI_SUFFIXES):
        return _read_nifti(path)
    if name.endswith(_ITK_SUFFIXES):
        return _read_itk_file(path)
    if name.endswith(".dcm"):
        return _read_dicom_folder(path.parent)
    # Unknown extension: let SimpleITK sniff the content.
    return _read_itk_file(path)


def read_image_array(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """A 3D image as stored: the array ``[i, j, k]`` in the file's own type and its RAS affine.

    For label maps, whose values must not pass through float32; :func:`read_volume` checks and
    converts a CT. Raises InputFileError (missing, unreadable) or VolumeError (not 3D, too large).
    """
    path = Path(path)
    array, affine = _read_raw(path)
    return _squeeze_to_3d(array, path), affine


def read_volume(path: str | os.PathLike) -> Volume:
    """Read a CT volume.

    Args:
        path: a NIfTI, NRRD/NHDR or MHA/MHD file, or a DICOM series folder.

    Returns:
        :class:`Volume` with float32 HU indexed ``[i, j, k]`` and a RAS affine.

    Raises:
        InputFileError: missing, unreadable, or not an image.
        VolumeError: not 3D (2D or 4D), a NaN or infinite voxel, constant, a non-finite or
            singular voxel-to-world matrix, an implausible voxel spacing or field of view, or
            more voxels than the memory available holds (checked before decompressing).
    """
    path = Path(path)
    array, affine = _read_raw(path)
    array = _squeeze_to_3d(array, path)
    if not np.issubdtype(array.dtype, np.number):
        raise VolumeError(f"{path}: voxels are not numbers ({array.dtype})")
    validation.check_geometry(affine, array.shape, path)
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            array = np.asarray(array, dtype=np.float32)
    except MemoryError:
        raise VolumeError(f"{path}: not enough memory to read this image") from None
    validation.check_finite(array, path)
    low, high = float(array.min()), float(array.max())
    if low == high:
        raise VolumeError(f"{path}: every voxel has the same value ({low:g}); not a CT image")
    return Volume(array=array, affine=affine, source=str(path))


def closest_canonical(volume: Volume, arrays: Mapping[str, np.ndarray] | None = None):
    """The volume (and arrays on its grid) with voxel axes permuted and flipped to the closest of R, A, S.

    Whatever the storage order of the file, index i then grows towards the
    patient's right, j towards anterior and k towards superior. Voxel values and
    physical positions are unchanged (the affine is adjusted); no resampling.

    Returns:
        (volume, arrays): arrays is a dict with the same keys (views, not copies).
    """
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation

    ornt = io_orientation(volume.affine)
    affine = volume.affine @ inv_ornt_aff(ornt, volume.shape)
    moved = Volume(array=apply_orientation(volume.array, ornt), affine=affine, source=volume.source)
    return moved, {k: apply_orientation(np.asarray(a), ornt) for k, a in (arrays or {}).items()}


# -- resampling onto a grid -------------------------------------------------------------------

def grids_overlap(src_affine: np.ndarray, src_shape, reference: Grid | Volume) -> bool:
    """Whether the physical boxes of two grids intersect."""
    src = Grid(src_shape, src_affine)
    src_corners = src.index_to_ras(np.array([[x, y, z] for x in (-0.5, src_shape[0] - 0.5)
                                             for y in (-0.5, src_shape[1] - 0.5)
                                             for z in (-0.5, src_shape[2] - 0.5)]))
    in_ref = reference.ras_to_index(src_corners)
    lo, hi = in_ref.min(axis=0), in_ref.max(axis=0)
    ref_hi = np.asarray(reference.shape) - 0.5
    return bool(np.all(hi > -0.5) and np.all(lo < ref_hi))


def resample_nearest(source: np.ndarray, source_affine: np.ndarray, reference: Grid | Volume, fill=0) -> np.ndarray:
    """Resample ``source`` (any dtype, ``[i, j, k]``) onto the reference grid with nearest neighbour.

    Voxels of the reference outside the source get ``fill``. Axis-aligned grid
    pairs (permutations, flips, different spacing) are resampled by separable
    indexing; oblique ones slice by slice.
    """
    ref_shape = reference.shape
    mapping = np.linalg.inv(source_affine) @ reference.affine  # reference index -> source index
    lin = mapping[:3, :3]
    out = np.full(ref_shape, fill, dtype=source.dtype)
    nonzero = np.abs(lin) > 1e-6
    if np.all(nonzero.sum(axis=0) == 1) and np.all(nonzero.sum(axis=1) == 1):
        # Each source axis depends on one reference axis: index arrays per axis.
        index_arrays = [None, None, None]
        valid = [None, None, None]
        for src_axis in range(3):
            ref_axis = int(np.flatnonzero(nonzero[src_axis])[0])
            coords = lin[src_axis, ref_axis] * np.arange(ref_shape[ref_axis]) + mapping[src_axis, 3]
            idx = np.floor(coords + 0.5).astype(np.int64)
            ok = (idx >= 0) & (idx < source.shape[src_axis])
            index_arrays[src_axis] = (ref_axis, np.clip(idx, 0, source.shape[src_axis] - 1))
            valid[src_axis] = (ref_axis, ok)
        # Build the source-axis-ordered view, then transpose to reference order.
        order = [index_arrays[a][0] for a in range(3)]  # reference axis for each source axis
        sampled = source[np.ix_(index_arrays[0][1], index_arrays[1][1], index_arrays[2][1])]
        sampled = np.transpose(sampled, np.argsort(order))
        mask = np.ones(ref_shape, dtype=bool)
        for ref_axis, ok in (valid[0], valid[1], valid[2]):
            shape = [1, 1, 1]
            shape[ref_axis] = ref_shape[ref_axis]
            mask &= ok.reshape(shape)
        out[mask] = sampled[mask]
        return out
    ii, jj = np.meshgrid(np.arange(ref_shape[0]), np.arange(ref_shape[1]), indexing="ij")
    for k in range(ref_shape[2]):
        pts = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).reshape(-1, 3).astype(np.float64)
        src = np.floor(pts @ lin.T + mapping[:3, 3] + 0.5).astype(np.int64)
        ok = np.all((src >= 0) & (src < np.asarray(source.shape)), axis=1)
        plane = np.full(pts.shape[0], fill, dtype=source.dtype)
        plane[ok] = source[src[ok, 0], src[ok, 1], src[ok, 2]]
        out[:, :, k] = plane.reshape(ref_shape[0], ref_shape[1])
    return out


# -- writing ------------------------------------------------------------------------------------

def write_volume(path: str | os.PathLike, volume: Volume, dtype=None) -> Path:
    """Write a volume as NIfTI (by nibabel) or NRRD/MHA (by SimpleITK, LPS on disk), atomically.

    Args:
        path: output file; the format follows the extension.
        volume: the image; its RAS affine is stored (converted to LPS for ITK formats).
        dtype: numpy dtype to store (default: the array's).
    """
    path = Path(path)
    array = np.asarray(volume.array if dtype is None else volume.array.astype(dtype))
    with atomic_target(path) as tmp:
        if path.name.lower().endswith(_NIFTI_SUFFIXES):
            import nibabel as nib

            image = nib.Nifti1Image(array, volume.affine)
            image.set_qform(volume.affine, code=1)
            image.set_sform(volume.affine, code=1)
            nib.save(image, str(tmp))
        else:
            import SimpleITK as sitk

            image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
            lps = LPS_TO_RAS @ volume.affine
            spacing = np.linalg.norm(lps[:3, :3], axis=0)
            image.SetSpacing(tuple(float(s) for s in spacing))
            image.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
            image.SetDirection(tuple(float(d) for d in (lps[:3, :3] / spacing).ravel()))
            sitk.WriteImage(image, str(tmp), True)
    return path
