"""Hostile but realistic inputs: one line ``medsora: error: ...``, exit 2, nothing written, inputs unchanged.

One test per kind of bad input (NaN voxels, a NaN affine, 100 mm voxels, a gzip bomb under a memory
limit, a .seg.nrrd layer out of range, the CT given as its own segmentation, a wrong label scheme,
outputs under /proc or /sys or onto an input, a zero pixdim, over-long symptoms in ``rank --file``,
a folder without DICOM files).
"""
from __future__ import annotations

import gzip
import hashlib
import shutil
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG
from MedSORALib.cli import main
from MedSORALib.errors import VolumeError

REPO = Path(__file__).resolve().parents[1]
JAUNDICE = "painless jaundice with pale stools and weight loss"


def _digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (input bytes must stay the same)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def inputs(tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(EXAMPLE_CT, folder / "ct.nii.gz")
    shutil.copy(EXAMPLE_SEG, folder / "seg.nii.gz")
    return folder


def _expect_error(capsys, argv, message, inputs: Path, out: Path):
    """Run the CLI; assert exit 2, one error line containing ``message``, no file under ``out``, inputs unchanged."""
    before = _digest(inputs)
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert len(err) == 1 and err[0].startswith("medsora: error: ") and message in err[0], err
    written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
    assert written == []
    assert _digest(inputs) == before
    return err[0]


def _score_argv(volume, out, segmentation=None, scheme="totalsegmentator", *extra):
    argv = ["score", "--volume", str(volume), "--output", str(out / "case"), "--symptom", JAUNDICE, "--quiet"]
    if segmentation is not None:
        argv += ["--segmentation", str(segmentation)]
    if scheme is not None:
        argv += ["--label-scheme", scheme]
    return argv + list(extra)


def _ct():
    image = nib.load(str(EXAMPLE_CT))
    return np.asarray(image.dataobj), image.affine


def test_nan_and_inf_voxels_are_refused_with_their_count(tmp_path, inputs, capsys):
    array, affine = _ct()
    bad = array.astype(np.float32)
    bad[10, 10, 5] = np.nan
    bad[20:23, 30, 7] = np.nan
    bad[40, 40, 9] = np.inf
    bad[41, 40, 9] = -np.inf
    nib.save(nib.Nifti1Image(bad, affine), str(inputs / "nan.nii.gz"))
    line = _expect_error(capsys, _score_argv(inputs / "nan.nii.gz", tmp_path / "out", inputs / "seg.nii.gz"),
                         "6 of 369,660 voxels are NaN or infinite", inputs, tmp_path / "out")
    assert "nan.nii.gz" in line


def test_a_rescale_slope_that_overflows_float32_is_refused(tmp_path, inputs, capsys):
    array, affine = _ct()
    nib.save(nib.Nifti1Image(array.astype(np.int16), affine), str(tmp_path / "plain.nii.gz"))
    # scl_slope (offset 112) = 1e37, scl_inter = 0: finite in float64, HU x 1e37 overflows float32.
    _patch_nifti(tmp_path / "plain.nii.gz", inputs / "slope.nii.gz", {112: struct.pack("<ff", 1e37, 0.0)})
    assert nib.load(str(inputs / "slope.nii.gz")).dataobj.slope == pytest.approx(1e37, rel=1e-6)
    expected = int(np.count_nonzero(np.abs(array.astype(np.float64) * 1e37) > np.finfo(np.float32).max))
    assert expected > 1000
    _expect_error(capsys, _score_argv(inputs / "slope.nii.gz", tmp_path / "out", inputs / "seg.nii.gz"),
                  f"{expected:,} of 369,660 voxels are NaN or infinite", inputs, tmp_path / "out")


def _patch_nifti(source: Path, target: Path, patches: dict[int, bytes]) -> None:
    raw = bytearray(gzip.decompress(source.read_bytes()))
    for offset, data in patches.items():
        raw[offset:offset + len(data)] = data
    target.write_bytes(gzip.compress(bytes(raw)))


def test_nan_in_the_affine_is_refused(tmp_path, inputs, capsys):
    # srow_x (offset 280) holds the first row of the sform, which nibabel uses (sform_code 2).
    _patch_nifti(EXAMPLE_CT, inputs / "nan_affine.nii.gz", {280: struct.pack("<f", float("nan"))})
    assert not np.all(np.isfinite(nib.load(str(inputs / "nan_affine.nii.gz")).affine))
    _expect_error(capsys, _score_argv(inputs / "nan_affine.nii.gz", tmp_path / "out", inputs / "seg.nii.gz"),
                  "voxel-to-world matrix holds NaN", inputs, tmp_path / "out")


def test_zero_pixdim_is_refused_when_the_affine_depends_on_it(tmp_path, inputs, capsys):
    array, affine = _ct()
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(None, code=0)  # the affine comes from the qform: pixdim gives the voxel size
    nib.save(image, str(tmp_path / "qform.nii.gz"))
    _patch_nifti(tmp_path / "qform.nii.gz", inputs / "zero_pixdim.nii.gz", {76 + 12: struct.pack("<f", 0.0)})
    _expect_error(capsys, _score_argv(inputs / "zero_pixdim.nii.gz", tmp_path / "out", inputs / "seg.nii.gz"),
                  "voxel size (pixdim) of 3 x 3 x 0 mm", inputs, tmp_path / "out")


def test_100_mm_voxels_are_refused_before_resampling(tmp_path, inputs, capsys):
    array, affine = _ct()
    big = affine.copy()
    big[:3, :3] *= 100 / 3
    nib.save(nib.Nifti1Image(array, big), str(inputs / "coarse.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(nib.load(str(EXAMPLE_SEG)).dataobj), big), str(inputs / "coarse_seg.nii.gz"))
    _expect_error(capsys, _score_argv(inputs / "coarse.nii.gz", tmp_path / "out", inputs / "coarse_seg.nii.gz"),
                  "implausible voxel spacing 100 x 100 x 100 mm", inputs, tmp_path / "out")


def test_organ_crop_refuses_an_implausible_size_before_monai(example_volume, example_masks, monkeypatch):
    import monai.transforms

    from MedSORALib.image.crops import CropConfig, organ_crop

    def never(*args, **kwargs):
        raise AssertionError("MONAI Spacing must not be reached")

    monkeypatch.setattr(monai.transforms, "Spacing", never)
    affine = example_volume.affine.copy()
    affine[:3, :3] *= 100 / 3  # 100 mm voxels: the liver's box would be resampled to 1.5 mm
    with pytest.raises(VolumeError, match="implausible crop size"):
        organ_crop(example_volume.array, affine, example_masks["liver"], CropConfig())


def _main_under_memory_limit(argv: list[str], headroom: int = 400 << 20) -> subprocess.CompletedProcess:
    """``medsora argv`` in a child process whose address space may grow by ``headroom`` bytes (RLIMIT_AS)."""
    script = textwrap.dedent(f"""
        import resource, sys
        from MedSORALib import cli, segmentation_io, validation, volume_io  # import first: the limit is on what follows
        import nibabel, nrrd, slicerio, SimpleITK
        with open("/proc/self/status") as handle:
            size = next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (size + {headroom}, resource.getrlimit(resource.RLIMIT_AS)[1]))
        sys.exit(cli.main({[str(a) for a in argv]!r}))
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)


def _expect_error_line(done: subprocess.CompletedProcess, *messages: str) -> str:
    err = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(err) == 1 and err[0].startswith("medsora: error: ") and all(m in err[0] for m in messages), err
    return err[0]


def test_a_gzip_bomb_is_refused_before_decompressing_under_a_memory_limit(tmp_path):
    # 512^3 int16 voxels of zeros: 256 MB of data in a file of about 0.3 MB. Reading it needs
    # 256 MB plus a 512 MB float32 copy; the child process may use 400 MB more than it holds.
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    bomb = inputs / "bomb.nii.gz"
    header = nib.Nifti1Header()
    header.set_data_shape((512, 512, 512))
    header.set_data_dtype(np.int16)
    header.set_sform(np.diag([0.8, 0.8, 0.8, 1.0]), code=1)
    header["vox_offset"] = 352
    zeros = bytes(1 << 24)
    with gzip.open(bomb, "wb", compresslevel=1) as handle:
        handle.write(header.binaryblock + b"\0" * 4)
        for _ in range(16):
            handle.write(zeros)
    assert bomb.stat().st_size < 2_000_000
    shutil.copy(EXAMPLE_SEG, inputs / "seg.nii.gz")
    before = _digest(inputs)
    done = _main_under_memory_limit(_score_argv(bomb, tmp_path / "out", inputs / "seg.nii.gz"))
    assert "of memory" in _expect_error_line(done, "512 x 512 x 512 voxels")
    assert not (tmp_path / "out").exists() or not any(p.is_file() for p in (tmp_path / "out").rglob("*"))
    assert _digest(inputs) == before


def _seg_nrrd_over_zeros(path: Path, good: Path, sizes: str | None = None, megabytes: int = 512) -> Path:
    """The header of the .seg.nrrd ``good`` (its ``sizes`` line replaced when given) over gzipped zeros."""
    raw = good.read_bytes()
    head = raw[: raw.index(b"\n\n") + 2].decode("latin-1")
    if sizes is not None:
        head = "\n".join(f"sizes: {sizes}" if line.startswith("sizes:") else line for line in head.split("\n"))
    zeros = bytes(1 << 20)
    with open(path, "wb") as handle:
        handle.write(head.encode("latin-1"))
        with gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=9) as packed:
            for _ in range(megabytes):
                packed.write(zeros)
    return path


@pytest.mark.parametrize("declared, message", [
    ("1024 1024 512", "1024 x 1024 x 512 voxels needs about"),  # the header announces what the payload holds
    (None, "inflate to more than the 369,660 bytes the header declares"),  # the CT's 122 x 101 x 30, a 512 MB payload
])
def test_a_gzip_bomb_in_a_seg_nrrd_is_refused_before_inflating(tmp_path, inputs, example_volume, example_masks,
                                                               declared, message):
    from MedSORALib.segmentation_io import write_seg_nrrd

    good = write_seg_nrrd(tmp_path / "good.seg.nrrd", example_masks, example_volume)
    bomb = _seg_nrrd_over_zeros(inputs / "bomb.seg.nrrd", good, declared)
    assert bomb.stat().st_size < 1_000_000
    before = _digest(inputs)
    done = _main_under_memory_limit(_score_argv(inputs / "ct.nii.gz", tmp_path / "out", bomb, None))
    _expect_error_line(done, "bomb.seg.nrrd: ", message)
    assert not (tmp_path / "out").exists()
    assert _digest(inputs) == before


def test_seg_nrrd_payload_is_counted_as_a_stream_when_its_inflation_may_not_fit(tmp_path, example_volume,
                                                                               example_masks, monkeypatch):
    from MedSORALib import segmentation_io, validation
    from MedSORALib.segmentation_io import read_organ_masks

    good = segmentation_io.write_seg_nrrd(tmp_path / "good.seg.nrrd", example_masks, example_volume)
    lying = _seg_nrrd_over_zeros(tmp_path / "lying.seg.nrrd", good, megabytes=64)
    streamed = []
    original = segmentation_io._inflated_blocks

    def counted(*args, **kwargs):
        for size in original(*args, **kwargs):
            streamed.append(size)
            yield size

    monkeypatch.setattr(segmentation_io, "_inflated_blocks", counted)
    # Memory for the declared voxels (15 bytes each: 5.5 MB) but not for the largest inflation of the payload.
    monkeypatch.setattr(validation, "available_memory", lambda: 20 << 20)
    masks = read_organ_masks(good, example_volume)
    assert sum(streamed) == 122 * 101 * 30  # the good file inflates to exactly what its header declares
    assert {k: int(np.count_nonzero(m)) for k, m in masks.items()} == \
        {k: int(np.count_nonzero(example_masks[k])) for k in masks}
    streamed.clear()
    with pytest.raises(VolumeError, match="inflate to more than the 369,660 bytes"):
        read_organ_masks(lying, example_volume)
    assert 369_660 < sum(streamed) <= 16 << 20  # stopped at the first block past the declared size, not at 64 MB
    # With memory for the largest inflation, nothing is inflated ahead of the reader.
    monkeypatch.setattr(validation, "available_memory", lambda: 64 << 30)
    streamed.clear()
    read_organ_masks(good, example_volume)
    assert streamed == []


def test_seg_nrrd_layer_out_of_range_is_refused(tmp_path, inputs, capsys, example_volume, example_masks):
    import slicerio

    from MedSORALib.segmentation_io import write_seg_nrrd

    write_seg_nrrd(tmp_path / "good.seg.nrrd", {k: example_masks[k] for k in ("liver", "spleen")}, example_volume)
    seg = slicerio.read_segmentation(str(tmp_path / "good.seg.nrrd"))
    seg["segments"][1]["layer"] = 3  # the file has one layer
    slicerio.write_segmentation(str(inputs / "layers.seg.nrrd"), seg)
    _expect_error(capsys, _score_argv(inputs / "ct.nii.gz", tmp_path / "out", inputs / "layers.seg.nrrd", None),
                  "is in layer 3, but the file has 1 layer(s)", inputs, tmp_path / "out")


def test_the_ct_given_as_segmentation_is_not_a_label_map(tmp_path, inputs, capsys):
    _expect_error(capsys, _score_argv(inputs / "ct.nii.gz", tmp_path / "out", inputs / "ct.nii.gz"),
                  "not a label map (it holds negative values", inputs, tmp_path / "out")
    # The same CT shifted to non-negative values: thousands of distinct values.
    array, affine = _ct()
    nib.save(nib.Nifti1Image((array.astype(np.int32) + 1100).astype(np.uint16), affine),
             str(inputs / "ct_unsigned.nii.gz"))
    _expect_error(capsys, _score_argv(inputs / "ct.nii.gz", tmp_path / "out", inputs / "ct_unsigned.nii.gz"),
                  "distinct values; is it the CT itself?", inputs, tmp_path / "out")


def test_a_wrong_label_scheme_warns_about_implausible_organ_volumes(tmp_path, inputs, capsys):
    # TotalSegmentator labels read as BTCV: TotalSegmentator's liver (5) becomes BTCV's esophagus (5),
    # its lung lobes (10-13) the portal vein, pancreas and adrenal glands.
    status = main(_score_argv(inputs / "ct.nii.gz", tmp_path / "wrong", inputs / "seg.nii.gz", "btcv",
                              "--no-passages"))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 0
    warnings = [line for line in err if line.startswith("medsora: warning: ")]
    assert len(warnings) == 1, err
    assert "implausible organ volumes" in warnings[0] and "--label-scheme btcv" in warnings[0]
    assert "esophagus 1043 ml (above 200)" in warnings[0]
    # The right scheme: no warning.
    assert main(_score_argv(inputs / "ct.nii.gz", tmp_path / "right", inputs / "seg.nii.gz", "totalsegmentator",
                            "--no-passages")) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_dicom_label_map_has_plausible_volumes():
    from conftest import EXAMPLE_DICOM
    from MedSORALib.validation import implausible_organ_volumes
    from MedSORALib.segmentation_io import read_organ_masks
    from MedSORALib.volume_io import read_volume

    ct = read_volume(EXAMPLE_DICOM)
    masks = read_organ_masks(REPO / "Testing" / "Data" / "example_ct_dicom_seg.nii.gz", ct, "totalsegmentator")
    assert implausible_organ_volumes(masks, ct.voxel_volume_ml) == []
    wrong = read_organ_masks(REPO / "Testing" / "Data" / "example_ct_dicom_seg.nii.gz", ct, "btcv")
    assert any(item == "esophagus 699 ml (above 200)" for item in implausible_organ_volumes(wrong, ct.voxel_volume_ml))


@pytest.mark.parametrize("place", ["/proc", "/sys"])
def test_output_under_proc_or_sys_is_refused_up_front(inputs, capsys, place, monkeypatch):
    import MedSORALib.volume_io as volume_io

    def never(*args, **kwargs):
        raise AssertionError("the CT must not be read before the output location is checked")

    monkeypatch.setattr(volume_io, "read_volume", never)
    before = _digest(inputs)
    status = main(["score", "--volume", str(inputs / "ct.nii.gz"), "--segmentation", str(inputs / "seg.nii.gz"),
                   "--label-scheme", "totalsegmentator", "--symptom", JAUNDICE, "--output",
                   f"{place}/medsora_out/case", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("medsora: error: --output ")
    assert "kernel file system" in err[0]
    assert not Path(place, "medsora_out").exists()
    assert _digest(inputs) == before


def test_an_output_that_would_replace_an_input_is_refused(tmp_path, inputs, capsys, example_volume, example_masks):
    from MedSORALib.segmentation_io import write_seg_nrrd

    write_seg_nrrd(inputs / "organs.seg.nrrd", example_masks, example_volume)
    before = _digest(inputs)
    status = main(["score", "--volume", str(inputs / "ct.nii.gz"), "--segmentation", str(inputs / "organs.seg.nrrd"),
                   "--symptom", JAUNDICE, "--output", str(inputs / "organs"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "would replace the input" in err[0], err
    assert _digest(inputs) == before
    # A symptoms file named like an output of several symptoms is protected as well.
    (inputs / "case_2.json").write_text(f"{JAUNDICE}\nknee joint pain\n")
    before = _digest(inputs)
    status = main(["score", "--volume", str(inputs / "ct.nii.gz"), "--segmentation", str(inputs / "seg.nii.gz"),
                   "--label-scheme", "totalsegmentator", "--symptoms-file", str(inputs / "case_2.json"),
                   "--output", str(inputs / "case"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "case_2.json" in err[0] and "would replace" in err[0], err
    assert _digest(inputs) == before


def test_rank_file_has_the_2000_character_limit_of_score(tmp_path, capsys):
    symptoms = tmp_path / "symptoms.txt"
    symptoms.write_text("pale stools and dark urine\n" + "pain " * 400 + "x\n")
    before = symptoms.read_bytes()
    status = main(["rank", "--file", str(symptoms)])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert status == 2 and captured.out == ""
    assert len(err) == 1 and "symptom 2 of" in err[0] and "2,001 characters long; the limit is 2,000" in err[0], err
    assert len(err[0]) < 300  # the text itself is not echoed
    assert symptoms.read_bytes() == before
    status = main(["rank", "a" * 2001])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and "the limit is 2,000" in err[0]


def test_a_folder_without_dicom_files_gives_one_line(tmp_path, capsys):
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "notes.txt").write_text("no images here\n")
    argv = _score_argv(folder, tmp_path / "out", EXAMPLE_SEG)
    _expect_error(capsys, argv, "folder holds no DICOM image series", folder, tmp_path / "out")
    # ITK prints its warnings from C++ straight to the process's stderr: check a child process.
    done = subprocess.run([sys.executable, "-m", "MedSORALib", *argv], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"medsora: error: {folder}: folder holds no DICOM image series"]


# -- paths that are not regular files: refused at once, before anything opens them ----------------

def _run_cli(argv, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """The CLI in a child process; a read that blocks (a FIFO) fails the test by its timeout."""
    return subprocess.run([sys.executable, "-m", "MedSORALib", *argv], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, **kwargs)


def test_a_fifo_as_ct_or_segmentation_is_refused_at_once(tmp_path, inputs, capsys):
    import os

    fifo = tmp_path / "ct.nii.gz"
    os.mkfifo(fifo)
    message = "is a named pipe (FIFO), not a regular file"
    _expect_error(capsys, _score_argv(fifo, tmp_path / "out", inputs / "seg.nii.gz"), message, inputs,
                  tmp_path / "out")
    _expect_error(capsys, _score_argv(inputs / "ct.nii.gz", tmp_path / "out", fifo), message, inputs,
                  tmp_path / "out")
    # Standard input as a path (/proc/self/fd/0 is a pipe here): refused, and the pipe is not read.
    done = _run_cli(_score_argv("/proc/self/fd/0", tmp_path / "out", inputs / "seg.nii.gz"), input="x" * 10)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"medsora: error: /proc/self/fd/0: {message}; "
                                                "give an image file or a DICOM folder"]
    assert not (tmp_path / "out").exists()


def test_a_dicom_folder_holding_a_fifo_is_refused(tmp_path, capsys):
    import os

    from conftest import EXAMPLE_DICOM

    series = tmp_path / "series"
    shutil.copytree(EXAMPLE_DICOM, series)
    os.mkfifo(series / "zz_slice.dcm")
    argv = _score_argv(series, tmp_path / "out", REPO / "Testing" / "Data" / "example_ct_dicom_seg.nii.gz")
    _expect_error(capsys, argv, "holds 'zz_slice.dcm', which is a named pipe (FIFO), not a regular file", series,
                  tmp_path / "out")


def test_the_root_folder_as_ct_is_refused_without_walking_it(tmp_path, capsys, monkeypatch):
    from pathlib import Path as _Path

    def no_walk(self, *args, **kwargs):
        raise AssertionError(f"walked {self}")

    monkeypatch.setattr(_Path, "rglob", no_walk)
    status = main(_score_argv("/", tmp_path / "out", EXAMPLE_SEG))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and err == ["medsora: error: /: folder holds no DICOM image series"], err
    assert not (tmp_path / "out").exists()


def test_an_output_inside_the_input_dicom_folder_is_refused_up_front(tmp_path, capsys):
    from conftest import EXAMPLE_DICOM

    series = tmp_path / "series"
    shutil.copytree(EXAMPLE_DICOM, series)
    argv = ["score", "--volume", str(series), "--segmentation",
            str(REPO / "Testing" / "Data" / "example_ct_dicom_seg.nii.gz"), "--label-scheme", "totalsegmentator",
            "--symptom", JAUNDICE, "--quiet", "--output", str(series / "results" / "case")]
    _expect_error(capsys, argv, f"would be written inside the input folder {series}", series, tmp_path / "nowhere")
    assert not (series / "results").exists()


def test_a_symptom_that_is_not_utf8_gives_one_line(tmp_path, inputs):
    out = tmp_path / "out"
    bad = b"pain \xff under the ribs"
    argv = [b"score", b"--volume", bytes(inputs / "ct.nii.gz"), b"--segmentation", bytes(inputs / "seg.nii.gz"),
            b"--label-scheme", b"totalsegmentator", b"--symptom", bad, b"--output", bytes(out / "case"), b"--quiet"]
    for command, message in ((argv, "symptom 1 is not UTF-8 text"), ([b"rank", bad], "the symptom text is not UTF-8")):
        done = subprocess.run([sys.executable.encode(), b"-m", b"MedSORALib", *command], capture_output=True,
                              cwd=REPO, timeout=300)
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()
        assert done.returncode == 2 and len(err) == 1, err
        assert err[0].startswith("medsora: error: ") and message in err[0], err
        assert done.stdout == b""
    assert not out.exists()
    symptoms = tmp_path / "symptoms.txt"
    symptoms.write_bytes(b"dark urine\n" + bad + b"\n")
    done = _run_cli(["rank", "--file", str(symptoms)], timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [f"medsora: error: symptom file {symptoms} is not UTF-8 text"]
