"""Shared fixtures: the bundled real CT (TotalSegmentator example, see NOTICE)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "Data"
EXAMPLE_CT = DATA / "example_ct_sm.nii.gz"
EXAMPLE_SEG = DATA / "example_ct_sm_seg.nii.gz"
EXAMPLE_CT_FULL = DATA / "example_ct.nii.gz"
EXAMPLE_DICOM = DATA / "example_ct_dicom"

#: Voxel counts of the 12 structures present in example_ct_sm_seg (TotalSegmentator v2 labels).
EXAMPLE_VOXELS = {
    "spleen": 9452, "kidney_right": 3947, "kidney_left": 3676, "gallbladder": 1333, "liver": 38634,
    "stomach": 4675, "pancreas": 644, "adrenal_gland_right": 152, "adrenal_gland_left": 184,
    "aorta": 997, "inferior_vena_cava": 1368, "portal_vein_and_splenic_vein": 901,
}

# Keep the embedding cache of the tests out of the user's home folder.
os.environ.setdefault("MEDSORA_CACHE_DIR", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "medsora"))


@pytest.fixture(scope="session")
def example_volume():
    from MedSORALib.volume_io import read_volume

    return read_volume(EXAMPLE_CT)


@pytest.fixture(scope="session")
def example_masks(example_volume):
    from MedSORALib.segmentation_io import read_organ_masks

    return read_organ_masks(EXAMPLE_SEG, example_volume, label_scheme="totalsegmentator")


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """File name -> (size, mtime_ns) of every file under ``folder`` (to prove nothing was written or changed)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}
