"""Checks on inputs and output locations, run before any heavy work or any write.

Each check raises a :class:`~MedSORALib.errors.MedSORAError` subclass whose
message is one line (the command line prints ``medsora: error: <message>`` and
exits with status 2), except :func:`implausible_organ_volumes`, which only
returns warnings (a scan may show pathology; the user decides).

- image geometry: a finite, non-singular voxel-to-world matrix, voxel sizes of
  a CT (``MIN_SPACING_MM`` .. ``MAX_SPACING_MM``) and a field of view of a body
  (at most ``MAX_EXTENT_MM`` along any axis);
- memory: the voxels a header announces must fit in the memory this process
  may still use (RAM, ``RLIMIT_AS``, the cgroup limit), checked before the
  voxels are decompressed, so a small compressed file cannot exhaust memory;
  a compressed payload must not inflate to more than its header declares;
- voxel values: no NaN or infinite voxel (also after a header's rescale slope);
- label maps: whole, non-negative numbers with at most ``MAX_LABELS`` values
  (a CT given as a segmentation has negative HU and thousands of values);
- organ volumes: warnings when a structure is far larger (or, when it lies
  wholly inside the scan, far smaller) than any adult organ, the sign of a
  wrong ``--label-scheme``;
- input paths: a file read must be a regular file, or a folder holding a DICOM
  series (regular files, at least one with the DICOM preamble); a named pipe,
  socket or device (``/proc/self/fd/0``) is refused before it is opened, since
  reading it may block for ever, and a folder that is not a DICOM series (``/``)
  is refused without walking below it;
- outputs: the output folder must be writable (probed with a temporary file,
  since ``os.access`` says yes to root everywhere) and not on a kernel file
  system (``/proc``, ``/sys``), and no output may replace an input file.
"""
from __future__ import annotations

import os
import resource
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from .errors import InputFileError, SegmentationError, VolumeError

#: Longest symptom text accepted, in characters.
MAX_SYMPTOM_CHARS = 2000
#: Smallest and largest voxel size (mm) accepted for a CT.
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 25.0
#: Largest field of view (mm) along any axis of a CT or label map.
MAX_EXTENT_MM = 4000.0
#: Largest number of voxels read at all (about 4 G voxels, e.g. 1024 x 1024 x 4096).
MAX_VOXELS = 1 << 32
#: Largest number of distinct label values in a label map.
MAX_LABELS = 1000
#: Share of the available memory a read may take.
MEMORY_SHARE = 0.9
#: Most bytes one compressed byte of deflate (gzip) data can inflate to (a long run of one value).
DEFLATE_MAX_RATIO = 1032

#: Plausible adult volumes in ml per structure: (smallest for an organ wholly inside the scan, largest).
ORGAN_VOLUME_ML = {
    "spleen": (15.0, 4000.0),
    "kidney_right": (20.0, 1500.0),
    "kidney_left": (20.0, 1500.0),
    "gallbladder": (None, 400.0),
    "esophagus": (None, 200.0),
    "liver": (300.0, 7000.0),
    "stomach": (None, 4000.0),
    "aorta": (None, 800.0),
    "inferior_vena_cava": (None, 500.0),
    "portal_vein_and_splenic_vein": (None, 250.0),
    "pancreas": (None, 400.0),
    "adrenal_gland_right": (None, 60.0),
    "adrenal_gland_left": (None, 60.0),
}

#: File systems no output may go to (kernel interfaces, not storage).
KERNEL_FILE_SYSTEMS = {"proc", "sysfs", "cgroup", "cgroup2", "devtmpfs", "devpts", "debugfs", "tracefs",
                       "securityfs", "configfs", "pstore", "bpf", "mqueue", "fusectl", "binfmt_misc",
                       "efivarfs", "hugetlbfs", "autofs", "rpc_pipefs", "nsfs"}


def _gib(n: float) -> str:
    return f"{n / (1 << 30):.1f} GB"


# -- geometry -----------------------------------------------------------------------------------

def check_affine(affine: np.ndarray, path) -> None:
    """A finite, non-singular voxel-to-world matrix."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise VolumeError(f"{path}: the voxel-to-world matrix holds NaN or infinite values")
    if np.linalg.matrix_rank(affine[:3, :3]) < 3:
        raise VolumeError(f"{path}: the voxel-to-world matrix is singular")


def check_geometry(affine: np.ndarray, shape, path) -> None:
    """:func:`check_affine`, plus voxel sizes and a field of view a CT can have."""
    check_affine(affine, path)
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    shown = " x ".join(f"{s:g}" for s in spacing)
    if np.any(spacing < MIN_SPACING_MM) or np.any(spacing > MAX_SPACING_MM):
        raise VolumeError(f"{path}: implausible voxel spacing {shown} mm for a CT "
                          f"(expected {MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm)")
    extent = spacing * np.asarray(shape[:3], dtype=np.float64)
    if np.any(extent > MAX_EXTENT_MM):
        raise VolumeError(f"{path}: implausible field of view "
                          f"{' x '.join(f'{e:.0f}' for e in extent)} mm (voxel spacing {shown} mm)")


def check_crop_size(shape_out, path="organ crop") -> None:
    """The voxel count of a resampled organ crop must stay that of a body part (before MONAI ``Spacing``)."""
    voxels = float(np.prod(np.asarray(shape_out, dtype=np.float64)))
    if voxels > 1 << 27:  # 134 M voxels: a 512 x 512 x 512 crop
        raise VolumeError(f"{path}: implausible crop size {' x '.join(str(int(s)) for s in shape_out)} voxels; "
                          "check the voxel spacing of the CT")


# -- memory -------------------------------------------------------------------------------------

def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes this process may still allocate (the smallest of RAM, address-space and cgroup headroom)."""
    candidates = [_meminfo_available(), _cgroup_headroom()]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = _proc_status_kib("VmSize")
        candidates.append(soft - (used or 0) * 1024)
    known = [c for c in candidates if c is not None]
    return max(0, min(known)) if known else None


def check_memory(shape, bytes_per_voxel: float, path) -> None:
    """Refuse to read ``shape`` voxels when ``bytes_per_voxel`` each (all copies made) will not fit in memory."""
    voxels = float(np.prod(np.asarray(shape, dtype=np.float64)))
    dims = " x ".join(str(int(s)) for s in shape)
    if voxels > MAX_VOXELS:
        raise VolumeError(f"{path}: the header announces {dims} voxels, more than MedSORA reads "
                          f"({MAX_VOXELS:,} at most)")
    needed = voxels * bytes_per_voxel
    available = available_memory()
    if available is not None and needed > MEMORY_SHARE * available:
        raise VolumeError(f"{path}: reading its {dims} voxels needs about {_gib(needed)} of memory; "
                          f"only {_gib(available)} is available")


def check_inflated_size(blocks: Iterable[int], declared: int, path) -> None:
    """Refuse a compressed payload that inflates to more than the ``declared`` bytes of its header.

    ``blocks`` gives the sizes of the inflated blocks as they come (nothing is kept), so the check
    stops at the first block past the declared size.
    """
    total = 0
    for size in blocks:
        total += size
        if total > declared:
            raise VolumeError(f"{path}: the compressed voxels inflate to more than the {declared:,} bytes "
                              "the header declares (a decompression bomb or a damaged file)")


# -- voxel values -------------------------------------------------------------------------------

def check_finite(array: np.ndarray, path) -> None:
    """No NaN or infinite voxel (raises naming how many there are)."""
    finite = np.isfinite(array)
    if finite.all():
        return
    bad = int(finite.size - np.count_nonzero(finite))
    if bad == finite.size:
        raise VolumeError(f"{path}: every voxel is NaN or infinite")
    raise VolumeError(f"{path}: {bad:,} of {finite.size:,} voxels are NaN or infinite "
                      "(a corrupt file or a rescale slope that overflows)")


def check_label_map(labels: np.ndarray, path, values: list[int] | None = None) -> None:
    """Whole non-negative values, at most ``MAX_LABELS`` of them: otherwise it is an image, not a label map."""
    if labels.size and np.issubdtype(labels.dtype, np.signedinteger) and int(labels.min()) < 0:
        raise SegmentationError(f"{path}: not a label map (it holds negative values, down to {int(labels.min())}; "
                                "is it the CT itself?)")
    if values is not None and len(values) > MAX_LABELS:
        raise SegmentationError(f"{path}: not a label map ({len(values):,} distinct values; "
                                "is it the CT itself?)")


# -- organ volumes ------------------------------------------------------------------------------

def _touches_border(mask: np.ndarray) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())


def implausible_organ_volumes(masks: Mapping[str, np.ndarray], voxel_volume_ml: float) -> list[str]:
    """Structures whose volume no adult organ has, as ``"name 1234 ml"`` strings (empty when all are plausible).

    An organ above its largest plausible volume is reported; one below its smallest only when it lies
    wholly inside the scan (an organ cut by the field of view may be small).
    """
    from .organs import ORGANS

    odd = []
    for key, mask in masks.items():
        low, high = ORGAN_VOLUME_ML.get(key, (None, None))
        ml = float(np.count_nonzero(mask)) * voxel_volume_ml
        name = ORGANS[key].display_name if key in ORGANS else key
        if high is not None and ml > high:
            odd.append(f"{name} {ml:.0f} ml (above {high:.0f})")
        elif low is not None and ml < low and not _touches_border(mask):
            odd.append(f"{name} {ml:.0f} ml (below {low:.0f})")
    return odd


# -- input paths --------------------------------------------------------------------------------

#: Most entries a DICOM series folder may hold (a long series has a few thousand slices).
MAX_FOLDER_ENTRIES = 100_000
#: Regular files of a folder sniffed for the DICOM preamble before it is called "no DICOM series".
DICOM_SNIFF_FILES = 64


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "not a regular file"


def has_dicom_preamble(path: str | os.PathLike) -> bool:
    """Whether a regular file starts with the 128-byte preamble and ``DICM`` of a DICOM Part 10 file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def check_dicom_folder(path: str | os.PathLike) -> list[Path]:
    """The regular files of a DICOM series folder (not below it, as ITK's series reader reads it).

    Refused at once: an entry that is a pipe, socket or device (ITK would block reading it), more
    than ``MAX_FOLDER_ENTRIES`` entries, and a folder none of whose first ``DICOM_SNIFF_FILES``
    regular files is a DICOM file (``/``, a home folder: nothing below them is walked).
    """
    path = Path(path)
    files: list[Path] = []
    try:
        with os.scandir(path) as entries:
            for count, entry in enumerate(entries, 1):
                if count > MAX_FOLDER_ENTRIES:
                    raise InputFileError(f"{path}: more than {MAX_FOLDER_ENTRIES:,} entries; "
                                         "not a DICOM series folder")
                try:
                    mode = entry.stat(follow_symlinks=True).st_mode
                except OSError:
                    continue  # a dangling link is not a slice
                if stat.S_ISDIR(mode):
                    continue
                if not stat.S_ISREG(mode):
                    raise InputFileError(f"{path}: holds {entry.name!r}, which is {_kind(mode)}, "
                                         "not a regular file; a DICOM folder holds image files only")
                files.append(Path(entry.path))
    except PermissionError:
        raise InputFileError(f"{path}: not readable (permission denied)") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot list the folder ({exc.strerror or exc})") from None
    files.sort()
    if not any(has_dicom_preamble(f) for f in files[:DICOM_SNIFF_FILES]):
        raise InputFileError(f"{path}: folder holds no DICOM image series")
    return files


def check_input_path(path: str | os.PathLike, what: str = "file or folder") -> Path:
    """An input MedSORA may open: a readable regular file, or a DICOM series folder (:func:`check_dicom_folder`).

    Nothing is opened before the kind of the path is known, so a FIFO cannot block the check.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InputFileError(f"{path}: no such {what}") from None
    except PermissionError:
        raise InputFileError(f"{path}: not readable (permission denied)") from None
    except OSError as exc:
        raise InputFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        check_dicom_folder(path)
        return path
    if not stat.S_ISREG(mode):
        raise InputFileError(f"{path}: is {_kind(mode)}, not a regular file; give an image file or a DICOM folder")
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{path}: not readable (permission denied)")
    return path


# -- outputs ------------------------------------------------------------------------------------

def _mount_type(path: Path) -> str | None:
    """File-system type of the mount holding ``path`` (from /proc/self/mounts), or None."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    target = str(path)
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, parts[2]
    return kind


def check_output_folder(target: str | os.PathLike, option: str = "--output") -> Path:
    """The folder outputs for ``target`` go to must be creatable and writable; returns its nearest existing part.

    Root passes ``os.access`` everywhere, so the nearest existing folder is
    probed by creating and removing a temporary file there, and kernel file
    systems (/proc, /sys, ...) are refused outright.
    """
    target = Path(os.path.abspath(target))
    existing = next((p for p in [target, *target.parents] if p.exists()), Path("/"))
    if not existing.is_dir():
        raise InputFileError(f"{option} {target}: {existing} is a file, not a folder")
    kind = _mount_type(existing.resolve())
    if kind in KERNEL_FILE_SYSTEMS:
        raise InputFileError(f"{option} {target}: {existing} is on the kernel file system {kind}, not storage")
    try:
        fd, probe = tempfile.mkstemp(prefix=".medsora-probe-", dir=existing)
    except OSError as exc:
        raise InputFileError(f"{option} {target}: cannot write in {existing} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)
    return existing


def _file_keys(path: Path) -> list:
    """What identifies a file: its real path, and its device and inode when it exists (hard links too)."""
    keys: list = [os.path.realpath(path)]
    try:
        info = path.stat()
        keys.append((info.st_dev, info.st_ino))
    except OSError:
        pass
    return keys


def check_outputs_spare_inputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike | None],
                               option: str = "--output", hint: str = "choose another prefix") -> None:
    """No output file may be an input file, nor lie inside an input folder (e.g. a DICOM series).

    A folder input is looked at, not walked: it must be a DICOM series folder (:func:`check_dicom_folder`),
    its direct files are indexed (ITK's series reader reads no deeper) and any output below it is
    refused, whether it exists yet or not. Inputs are indexed
    once, so a batch's thousands of outputs and inputs are compared in linear time.
    """
    sources: dict = {}
    folders: list[Path] = []
    for item in dict.fromkeys(Path(i) for i in inputs if i):
        files: list[Path] = []
        if item.is_dir():
            # Only a DICOM series folder is an input folder; any other is refused here, as reading it would.
            files = check_dicom_folder(item)
            folders.append(item)
        for source in [*files, item]:
            for key in _file_keys(source):
                sources.setdefault(key, source)
    real_folders = [(folder, os.path.realpath(folder)) for folder in folders]
    for out in outputs:
        out = Path(out)
        source = next((sources[k] for k in _file_keys(out) if k in sources), None)
        if source is not None:
            raise InputFileError(f"{option}: the output {out} would replace the input {source}; {hint}")
        if real_folders:
            real = os.path.realpath(out)
            for folder, real_folder in real_folders:
                if real.startswith(real_folder.rstrip("/") + "/"):
                    raise InputFileError(f"{option}: the output {out} would be written inside the input folder "
                                         f"{folder}; {hint}")
