"""Organ measurements, contrast phase, findings against reference ranges, and findings in the relevance."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import DATA, EXAMPLE_CT, EXAMPLE_DICOM, EXAMPLE_SEG
from MedSORALib import findings as F
from MedSORALib.finding_boost import FINDING_BOOST, MIN_TEXT_PRIOR, apply_findings, finding_boost, image_evidence
from MedSORALib.image.phantom import AAA_DIAMETER_MM, ABNORMALITIES, DILATED_AORTA_MM, make_phantom
from MedSORALib.measurements import SIZE_KEYS
from MedSORALib.organ_measures import measure_organs
from MedSORALib.segmentation_io import masks_from_labelmap, read_organ_masks
from MedSORALib.vessels import hiatus_level
from MedSORALib.volume_io import Volume, read_volume

EXAMPLE_DICOM_SEG = DATA / "example_ct_dicom_seg.nii.gz"
TEARING = "tearing pain between the shoulder blades"

#: The abnormal finding each phantom must show.
EXPECTED = {
    "splenomegaly": {"splenomegaly_volume", "splenomegaly_length"},
    "aaa": {"abdominal_aortic_aneurysm"},
    "fatty_liver": {"steatosis_attenuation", "steatosis_liver_minus_spleen"},
    "atrophic_kidney": {"small_kidney_left", "kidney_asymmetry"},
    "distended_gallbladder": {"gallbladder_distension"},
    "thick_adrenal": {"adrenal_thickening_left"},
    "dilated_aorta": {"abdominal_aortic_aneurysm", "thoracic_aortic_dilatation"},
}


def _phantom(abnormality=None, contrast=False, **kwargs):
    volume, labels = make_phantom(0, variation=0.0, contrast=contrast, abnormality=abnormality, **kwargs)
    return volume, masks_from_labelmap(labels, "totalsegmentator")


@pytest.fixture(scope="module")
def phantom_evidence():
    out = {}
    for abnormality in (None, *ABNORMALITIES):
        volume, masks = _phantom(abnormality)
        out[abnormality] = (volume, masks, image_evidence(volume, masks))
    return out


def _abnormal_keys(evidence) -> set[str]:
    return {f["key"] for organ in evidence["findings"].values() for f in organ["findings"] if f["abnormal"]}


def _reorient(volume: Volume, masks: dict, perm=(2, 0, 1), flips=(0, 1)):
    """The same image with its index axes flipped and permuted (the affine follows, so the world is unchanged)."""
    def move(array):
        return np.ascontiguousarray(np.flip(array, flips).transpose(perm))

    shape = np.array(volume.shape)
    # old index o from new index n: o[perm[p]] = n[p], then undo the flips.
    to_old = np.zeros((4, 4))
    to_old[3, 3] = 1.0
    for p, axis in enumerate(perm):
        to_old[axis, p] = 1.0
    flip = np.eye(4)
    for axis in flips:
        flip[axis, axis] = -1.0
        flip[axis, 3] = shape[axis] - 1
    affine = volume.affine @ flip @ to_old
    return Volume(move(volume.array), affine), {k: move(m) for k, m in masks.items()}


def _assert_same(a: dict, b: dict, size_tol: float, hu_tol: float, vessel_tol: float):
    assert set(a) == set(b)
    for organ in a:
        for key in ("volume_ml", "length_mm", "width_mm", "depth_mm", "max_axial_diameter_mm", "max_diameter_mm",
                    "thickness_mm"):
            assert b[organ][key] == pytest.approx(a[organ][key], rel=size_tol, abs=size_tol), (organ, key)
        for key in ("mean_hu", "median_hu", "sd_hu"):
            assert b[organ][key] == pytest.approx(a[organ][key], abs=hu_tol), (organ, key)
        assert b[organ]["partially_imaged"] == a[organ]["partially_imaged"]
        assert sorted(b[organ]["touches"]) == sorted(a[organ]["touches"])
        for key in a[organ]:
            if key.endswith("perpendicular_diameter_mm"):
                assert b[organ][key] == pytest.approx(a[organ][key], abs=vessel_tol), (organ, key)


# -- measurements ----------------------------------------------------------------------------------

def test_real_ct_measurements_are_plausible_and_partial_organs_are_marked(example_volume, example_masks):
    m = measure_organs(example_volume, example_masks)
    # 30 slices of 3 mm: organs crossing the first or last slice are partially imaged.
    for key in ("liver", "spleen", "stomach", "aorta", "inferior_vena_cava", "kidney_right", "kidney_left"):
        assert m[key]["partially_imaged"], key
    for key in ("gallbladder", "pancreas", "adrenal_gland_right", "adrenal_gland_left", "portal_vein_and_splenic_vein"):
        assert not m[key]["partially_imaged"], key
    assert m["liver"]["touches"] == ["caudal", "cranial"] and m["kidney_right"]["touches"] == ["caudal"]
    assert m["liver"]["length_mm"] == pytest.approx(90.0)  # 30 slices x 3 mm
    assert m["spleen"]["volume_ml"] == pytest.approx(9452 * 0.027, rel=1e-6)
    # Complete organs in adult ranges: gallbladder 15-100 ml, adrenal limbs a few mm, aorta 15-30 mm.
    assert 15 < m["gallbladder"]["volume_ml"] < 100
    assert 2 < m["adrenal_gland_left"]["thickness_mm"] < 10 and 2 < m["adrenal_gland_right"]["thickness_mm"] < 10
    assert 15 < m["aorta"]["perpendicular_diameter_mm"] < 30
    assert 5 < m["portal_vein_and_splenic_vein"]["portal_median_perpendicular_diameter_mm"] < 14
    # Unenhanced HU: blood 30-60, liver above spleen.
    assert 30 < m["aorta"]["median_hu"] < 60 and m["liver"]["median_hu"] > m["spleen"]["median_hu"]
    assert m["liver"]["hu_eroded"] and m["liver"]["hu_voxels"] < m["liver"]["voxels"]
    lr = m["kidney_right"]["left_right"]
    assert lr["volume_ml_difference"] == pytest.approx(m["kidney_right"]["volume_ml"] - m["kidney_left"]["volume_ml"],
                                                      abs=0.01)


def test_measurements_do_not_depend_on_index_order(example_volume, example_masks):
    a = measure_organs(example_volume, example_masks)
    volume, masks = _reorient(example_volume, example_masks)
    assert volume.shape == (30, 122, 101)
    np.testing.assert_allclose(volume.index_to_ras([[0, 0, 0]]), example_volume.index_to_ras([[121, 100, 0]]))
    b = measure_organs(volume, masks)
    _assert_same(a, b, size_tol=1e-6, hu_tol=1e-6, vessel_tol=1.0)


def test_measurements_agree_on_a_subdivided_grid(example_volume, example_masks):
    """Each 3 mm voxel split into 1.5 mm voxels: the same voxel union, so the same sizes."""
    def fine(array):
        return array.repeat(2, 0).repeat(2, 1).repeat(2, 2)

    affine = example_volume.affine.copy()
    affine[:3, :3] /= 2.0
    affine[:3, 3] -= (example_volume.affine[:3, :3] @ np.full(3, 0.25))
    volume = Volume(fine(example_volume.array), affine)
    keys = ("gallbladder", "adrenal_gland_left", "kidney_left", "aorta")
    masks = {k: fine(example_masks[k]) for k in keys}
    a = measure_organs(example_volume, {k: example_masks[k] for k in keys})
    b = measure_organs(volume, masks)
    for organ in keys:
        for key in ("volume_ml", "length_mm", "width_mm", "depth_mm", "max_axial_diameter_mm", "max_diameter_mm"):
            assert b[organ][key] == pytest.approx(a[organ][key], rel=1e-6), (organ, key)
        assert b[organ]["thickness_mm"] == pytest.approx(a[organ]["thickness_mm"], abs=1.6)
    assert b["aorta"]["perpendicular_diameter_mm"] == pytest.approx(a["aorta"]["perpendicular_diameter_mm"], abs=2.0)


def test_aneurysm_measured_alike_on_other_orientations_and_spacings(phantom_evidence):
    volume, masks, evidence = phantom_evidence["aaa"]
    reference = evidence["measurements"]["aorta"]["abdominal_perpendicular_diameter_mm"]
    lps_volume, lps_labels = make_phantom(0, variation=0.0, contrast=False, abnormality="aaa", orientation="LPS")
    lps = measure_organs(lps_volume, masks_from_labelmap(lps_labels, "totalsegmentator"))
    assert lps["aorta"]["abdominal_perpendicular_diameter_mm"] == pytest.approx(reference, abs=1.0)
    assert lps["aorta"]["volume_ml"] == pytest.approx(evidence["measurements"]["aorta"]["volume_ml"], rel=0.01)
    # Another grid: 2.5 x 2.5 x 2 mm voxels over the same field of view.
    fine_volume, fine_labels = make_phantom(0, variation=0.0, contrast=False, abnormality="aaa",
                                            shape=(154, 134, 108), spacing=(2.5, 2.5, 2.0))
    fine = measure_organs(fine_volume, masks_from_labelmap(fine_labels, "totalsegmentator"))
    assert fine["aorta"]["abdominal_perpendicular_diameter_mm"] == pytest.approx(reference, abs=3.0)
    for organ in ("spleen", "liver", "kidney_right"):
        coarse = evidence["measurements"][organ]
        assert fine[organ]["volume_ml"] == pytest.approx(coarse["volume_ml"], rel=0.05)
        assert fine[organ]["length_mm"] == pytest.approx(coarse["length_mm"], abs=3.0)


def test_aneurysm_diameter_matches_an_independent_measurement(phantom_evidence):
    volume, masks, evidence = phantom_evidence["aaa"]
    aorta = evidence["measurements"]["aorta"]
    # Independent: the aorta of the phantom runs along z, so its axial sections are perpendicular to it;
    # the largest area-equivalent diameter of an axial section below the hiatus.
    level = hiatus_level(volume, masks)
    z = volume.index_to_ras(np.array([[0, 0, k] for k in range(volume.shape[2])]))[:, 2]
    areas = masks["aorta"].sum(axis=(0, 1)) * volume.spacing[0] * volume.spacing[1]
    independent = float(np.max(2.0 * np.sqrt(areas[z <= level] / np.pi)))
    assert abs(aorta["abdominal_perpendicular_diameter_mm"] - independent) < 5.0
    assert abs(aorta["abdominal_perpendicular_diameter_mm"] - AAA_DIAMETER_MM) < 5.0
    # Where it lies: at the aneurysm, about 55 mm below the reference point, in the abdominal aorta.
    assert aorta["abdominal_diameter_ras"][2] < level - 30
    normal = phantom_evidence[None][2]["measurements"]["aorta"]
    assert normal["abdominal_perpendicular_diameter_mm"] < 25.0


# -- partial imaging ----------------------------------------------------------------------------------

def test_partially_imaged_organ_gives_no_size_finding(phantom_evidence):
    volume, masks, evidence = phantom_evidence["splenomegaly"]
    spleen = np.argwhere(masks["spleen"])
    # Cut the scan in the middle of the spleen: keep the slices below its centre.
    keep = int(spleen[:, 2].mean())
    affine = volume.affine.copy()
    cut = Volume(volume.array[:, :, :keep].copy(), affine)
    cut_masks = {k: m[:, :, :keep].copy() for k, m in masks.items()}
    cut_evidence = image_evidence(cut, cut_masks)
    spleen_m = cut_evidence["measurements"]["spleen"]
    assert spleen_m["partially_imaged"] and spleen_m["touches"] == ["cranial"]
    keys = {f["key"] for f in cut_evidence["findings"]["spleen"]["findings"]}
    assert not keys & EXPECTED["splenomegaly"]
    reasons = {n["key"]: n["reason"] for n in cut_evidence["findings"]["spleen"]["not_assessed"]}
    assert set(reasons) == EXPECTED["splenomegaly"] and all("partially imaged" in r for r in reasons.values())
    assert all(k in spleen_m for k in SIZE_KEYS if k != "principal_lengths_mm")
    # A vessel crossing the cut keeps its calibre finding: the aneurysm phantom cut through the aneurysm.
    volume, masks, full = phantom_evidence["aaa"]
    widest = np.array(full["measurements"]["aorta"]["abdominal_diameter_ras"])
    centre_k = int(np.rint(volume.ras_to_index(widest)[2]))
    cut = Volume(volume.array[:, :, centre_k - 3:].copy(), volume.affine @ _shift(centre_k - 3))
    cut_evidence = image_evidence(cut, {k: m[:, :, centre_k - 3:].copy() for k, m in masks.items()})
    assert cut_evidence["measurements"]["aorta"]["touches"] == ["caudal"]
    assert "abdominal_aortic_aneurysm" in _abnormal_keys(cut_evidence)


def _shift(k: int) -> np.ndarray:
    shift = np.eye(4)
    shift[2, 3] = k
    return shift


# -- contrast phase ----------------------------------------------------------------------------------------

def test_real_example_ct_is_non_contrast(example_volume, example_masks):
    phase = F.contrast_phase(measure_organs(example_volume, example_masks))
    assert phase["phase"] == "non-contrast" and phase["confidence"] > 0.9
    assert phase["hu_used"]["aorta_median_hu"] < 60 and phase["hu_used"]["kidney_median_hu"] < 60


def test_dicom_series_is_contrast_enhanced():
    volume = read_volume(EXAMPLE_DICOM)
    masks = read_organ_masks(EXAMPLE_DICOM_SEG, volume, "totalsegmentator")
    evidence = image_evidence(volume, masks)
    phase = evidence["contrast_phase"]
    assert phase["phase"] == "portal venous" and phase["confidence"] > 0.6
    assert phase["probabilities"]["non-contrast"] < 0.05 and phase["hu_used"]["aorta_median_hu"] > 120
    # Liver attenuation needs an unenhanced scan: not assessed here.
    reasons = {n["key"]: n["reason"] for n in evidence["findings"]["liver"]["not_assessed"]}
    assert "unenhanced" in reasons["steatosis_attenuation"]
    assert not any(f["key"].startswith("steatosis") for f in evidence["findings"]["liver"]["findings"])


def test_phase_of_phantoms_and_fatty_liver_only_reported_unenhanced(phantom_evidence):
    assert phantom_evidence[None][2]["contrast_phase"]["phase"] == "non-contrast"
    volume, masks = _phantom("fatty_liver", contrast=True)
    evidence = image_evidence(volume, masks)
    assert evidence["contrast_phase"]["phase"] in ("portal venous", "arterial")
    assert not any(f["key"].startswith("steatosis") for f in evidence["findings"]["liver"]["findings"])


def test_phase_rule_on_textbook_values():
    def phase(aorta, portal, kidney):
        return F.contrast_phase({"aorta": {"median_hu": aorta}, "portal_vein_and_splenic_vein": {"median_hu": portal},
                                 "kidney_right": {"median_hu": kidney}})["phase"]

    assert phase(45, 40, 32) == "non-contrast"
    assert phase(320, 110, 150) == "arterial"
    assert phase(170, 165, 180) == "portal venous"
    assert phase(115, 110, 140) == "delayed"
    assert F.contrast_phase({"liver": {"median_hu": 50}})["phase"] == "unknown"


# -- findings ----------------------------------------------------------------------------------------------

def test_normal_phantom_has_no_abnormal_finding(phantom_evidence):
    evidence = phantom_evidence[None][2]
    assert _abnormal_keys(evidence) == set()
    assessed = {f["key"] for organ in evidence["findings"].values() for f in organ["findings"]}
    # Every row was assessed on the whole phantom, but those that exist only for a known sex (unknown here).
    sex_only = {row.key for row in F.REFERENCE_RANGES if row.threshold is None}
    assert sex_only == {"abdominal_aortic_aneurysm_for_sex", "thoracic_aortic_aneurysm_for_sex"}
    assert assessed == {row.key for row in F.REFERENCE_RANGES} - sex_only
    reasons = {n["key"]: n["reason"] for n in evidence["findings"]["aorta"]["not_assessed"]}
    assert set(reasons) == sex_only and all(r.startswith("sex unknown") for r in reasons.values())


@pytest.mark.parametrize("abnormality", sorted(ABNORMALITIES))
def test_each_abnormality_is_detected_on_its_phantom(phantom_evidence, abnormality):
    evidence = phantom_evidence[abnormality][2]
    found = _abnormal_keys(evidence)
    assert EXPECTED[abnormality] <= found
    others = set().union(*(v for k, v in EXPECTED.items() if k != abnormality)) - EXPECTED[abnormality]
    assert not found & others
    finding = next(f for organ in evidence["findings"].values() for f in organ["findings"]
                   if f["key"] in EXPECTED[abnormality])
    # A finding states the measurement and the range with its source, never a diagnosis.
    assert F._format(finding["value"], finding["unit"]) in finding["text"]
    assert finding["reference"]["source"] and finding["reference"]["population"] and finding["reference"]["basis"]


def test_fatty_liver_value_and_reference():
    volume, masks = _phantom("fatty_liver")
    evidence = image_evidence(volume, masks)
    liver = {f["key"]: f for f in evidence["findings"]["liver"]["findings"]}
    assert liver["steatosis_attenuation"]["value"] == pytest.approx(15.0, abs=3.0)
    assert liver["steatosis_liver_minus_spleen"]["value"] < -10


def test_reference_table_rows_are_complete():
    keys = [row.key for row in F.REFERENCE_RANGES]
    assert len(keys) == len(set(keys))
    covered = {"splenomegaly_volume", "hepatomegaly", "steatosis_attenuation", "steatosis_liver_minus_spleen",
               "abdominal_aortic_aneurysm", "thoracic_aortic_aneurysm", "dilated_portal_vein", "dilated_ivc",
               "small_kidney_left", "large_kidney_right", "kidney_asymmetry", "gallbladder_distension",
               "adrenal_thickening_left", "pancreatic_atrophy"}
    assert covered <= set(keys)
    for row in F.REFERENCE_RANGES:
        assert row.comparison in (">", ">=", "<", "<=") and row.unit and row.kind in ("size", "calibre", "attenuation")
        assert len(row.source) > 30 and any(str(y) in row.source for y in range(1970, 2030))
    aaa = next(r for r in F.REFERENCE_RANGES if r.key == "abdominal_aortic_aneurysm")
    assert aaa.abnormal(30.0) and not aaa.abnormal(29.9)
    dilatation = next(r for r in F.REFERENCE_RANGES if r.key == "abdominal_aortic_dilatation")
    assert dilatation.abnormal(27.0) and not dilatation.abnormal(45.0) and not dilatation.abnormal(24.0)


# -- sides, sections and the patient ---------------------------------------------------------------------

def test_kidney_asymmetry_sits_on_the_smaller_kidney(phantom_evidence):
    evidence = phantom_evidence["atrophic_kidney"][2]
    left = {f["key"]: f for f in evidence["findings"]["kidney_left"]["findings"]}
    right = {f["key"] for f in evidence["findings"]["kidney_right"]["findings"]}
    assert left["kidney_asymmetry"]["abnormal"] and "kidney_asymmetry" not in right
    m = evidence["measurements"]
    assert m["kidney_left"]["max_diameter_mm"] < m["kidney_right"]["max_diameter_mm"] - 20
    assert left["kidney_asymmetry"]["value"] == pytest.approx(
        m["kidney_right"]["max_diameter_mm"] - m["kidney_left"]["max_diameter_mm"], abs=0.01)
    assert left["kidney_asymmetry"]["text"].startswith("left kidney") and "shorter than the right" in \
        left["kidney_asymmetry"]["text"]
    # Mirrored: the right kidney small, the finding on the right.
    swapped = {"kidney_right": m["kidney_left"], "kidney_left": m["kidney_right"]}
    found = F.evaluate_findings(swapped)
    assert [f["key"] for f in found["kidney_right"]["findings"] if f["abnormal"]] == ["small_kidney_right",
                                                                                      "kidney_asymmetry"]
    assert not any(f["key"] == "kidney_asymmetry" for f in found["kidney_left"]["findings"])


@pytest.fixture(scope="module")
def aorta_only():
    """Only the aorta is segmented: dilated (38 x 34 mm) and normal (20 mm)."""
    out = {}
    for abnormality in ("dilated_aorta", None):
        volume, masks = _phantom(abnormality)
        out[abnormality] = (volume, {"aorta": masks["aorta"]})
    return out


def test_aorta_only_dilated_case_is_assessed_with_an_uncertain_section(aorta_only):
    volume, masks = aorta_only["dilated_aorta"]
    evidence = image_evidence(volume, masks)
    aorta = evidence["measurements"]["aorta"]
    assert aorta["section_landmark"] is None and aorta["hiatus_z_mm"] is None
    assert "abdominal_major_axis_diameter_mm" not in aorta and "thoracic_major_axis_diameter_mm" not in aorta
    # Both axes of the 38 x 34 mm section, within a voxel (3 mm).
    assert aorta["uncertain_major_axis_diameter_mm"] == pytest.approx(DILATED_AORTA_MM[0], abs=3.0)
    assert aorta["uncertain_median_perpendicular_diameter_mm"] == pytest.approx(DILATED_AORTA_MM[1], abs=3.0)
    found = {f["key"]: f for f in evidence["findings"]["aorta"]["findings"]}
    aneurysm = found["abdominal_aortic_aneurysm"]
    assert aneurysm["abnormal"] and aneurysm["section_uncertain"]
    assert aneurysm["value"] == aorta["uncertain_major_axis_diameter_mm"]
    assert "section uncertain" in aneurysm["text"] and f"{aneurysm['value']:.1f} mm" in aneurysm["text"]
    reasons = {n["key"]: n["reason"] for n in evidence["findings"]["aorta"]["not_assessed"]}
    assert "section uncertain" in reasons["thoracic_aortic_aneurysm"]
    # The same aorta with the adrenal glands present: sections placed, no uncertain cut.
    volume_full, masks_full = _phantom("dilated_aorta")
    placed = image_evidence(volume_full, {k: masks_full[k] for k in ("aorta", "adrenal_gland_right",
                                                                       "adrenal_gland_left")})
    m = placed["measurements"]["aorta"]
    assert m["section_landmark"] == "top of the adrenal glands" and "uncertain_major_axis_diameter_mm" not in m
    assert {"abdominal_aortic_aneurysm", "thoracic_aortic_dilatation"} <= {
        f["key"] for f in placed["findings"]["aorta"]["findings"] if f["abnormal"]}


def test_aortic_sections_from_bounding_landmarks():
    from MedSORALib.vessels import aortic_sections, section_of

    # No adrenal gland or kidney: above the liver dome thoracic, below the pancreas abdominal, uncertain between.
    levels = aortic_sections({"liver": (-60.0, 80.0), "pancreas": (-40.0, 0.0)})
    assert levels["hiatus_z"] is None and levels["thoracic_above_z"] == 80.0 and levels["abdominal_below_z"] == -40.0
    assert [section_of(z, levels) for z in (100.0, 20.0, -50.0)] == ["thoracic", "uncertain", "abdominal"]
    assert aortic_sections({}, arch_z=120.0)["thoracic_above_z"] == 120.0
    assert aortic_sections({})["landmark"] is None and section_of(0.0, aortic_sections({})) == "uncertain"
    assert aortic_sections({"kidney_left": (-90.0, 10.0), "liver": (-60.0, 80.0)})["hiatus_z"] == 10.0
    # The premise of the uncertain rule: the abdominal thresholds are the stricter, for every sex.
    from MedSORALib.reference_ranges import stricter_section_holds

    assert stricter_section_holds()


def test_aortic_hiatus_from_the_vertebrae_of_a_totalsegmentator_label_map():
    from MedSORALib.masks import LabelMasks
    from MedSORALib.vessels import aortic_sections, section_of, vertebra_extents

    # 2 mm slices along z from z = 0; a column of vertebrae (T11 on top ... L2 below), each 26 mm with its
    # processes, and an aorta in front of them over the whole scan.
    volume = Volume(np.zeros((20, 20, 100), dtype=np.float32), np.diag([2.0, 2.0, 2.0, 1.0]))
    labels = np.zeros(volume.shape, dtype=np.int16)
    labels[8:12, 12:16, :] = 52  # aorta (TotalSegmentator)
    for value, (k0, k1) in {30: (10, 23), 31: (23, 36), 32: (36, 49), 33: (49, 62)}.items():  # L2, L1, T12, T11
        labels[8:12, 2:8, k0:k1] = value
    masks = LabelMasks(labels, {"aorta": (52,)})
    found = vertebra_extents(volume, masks)
    assert set(found) == {"T11", "T12", "L1", "L2"} and found["T12"] == (72.0, 96.0)
    levels = aortic_sections({"adrenal_gland_left": (70.0, 140.0)}, vertebrae=found)
    # The T12/L1 disc (between the centres 84 and 58 mm) wins over the adrenal glands.
    assert levels["hiatus_z"] == pytest.approx(71.0) and "vertebra" in levels["landmark"]
    assert section_of(80.0, levels) == "thoracic" and section_of(60.0, levels) == "abdominal"
    # Only bounds without L1: above the centre of T11 thoracic, below that of L2 abdominal.
    bounds = aortic_sections({}, vertebrae={k: v for k, v in found.items() if k in ("T11", "L2")})
    assert bounds["thoracic_above_z"] == pytest.approx(110.0) and bounds["abdominal_below_z"] == pytest.approx(32.0)
    # A vertebra cut by the scan gives no level; nor does a label map of another scheme (BTCV's aorta is 8).
    assert "T11" not in vertebra_extents(Volume(volume.array[:, :, :55], volume.affine),
                                         LabelMasks(labels[:, :, :55], {"aorta": (52,)}))
    assert vertebra_extents(volume, LabelMasks(np.where(labels == 52, 8, labels), {"aorta": (8,)})) == {}
    # Measured end to end: the aorta's sections follow the vertebrae.
    aorta = measure_organs(volume, masks)["aorta"]
    assert aorta["hiatus_z_mm"] == pytest.approx(71.0) and "uncertain_major_axis_diameter_mm" not in aorta


def test_aortic_arch_is_found_on_a_curved_aorta():
    from MedSORALib.vessels import vessel_profile

    # An arch: ascending limb in front (y = +40), descending behind (y = -40), joined over the top (z = 100-120).
    volume = Volume(np.zeros((40, 60, 80), dtype=np.float32), np.diag([3.0, 3.0, 3.0, 1.0]))
    ras = volume.index_to_ras(np.argwhere(np.ones(volume.shape, dtype=bool))).reshape(*volume.shape, 3)
    x, y, z = ras[..., 0] - 60, ras[..., 1] - 90, ras[..., 2]
    limbs = ((x ** 2 + (y - 40) ** 2 <= 12 ** 2) & (z >= 120) & (z <= 200)) | \
            ((x ** 2 + (y + 40) ** 2 <= 12 ** 2) & (z >= 20) & (z <= 200))
    top = (np.abs(np.hypot(y, z - 200) - 40) <= 12) & (np.abs(x) <= 12) & (z >= 200)
    info = {}
    vessel_profile(volume, limbs | top, info=info)
    assert info["arch_z"] is not None and 115 <= info["arch_z"] <= 135


def test_ranges_for_the_patients_sex_and_age():
    measurements = {"aorta": {"abdominal_major_axis_diameter_mm": 27.0, "thoracic_major_axis_diameter_mm": 36.0,
                              "section_landmark": "top of the kidneys"},
                    "pancreas": {"volume_ml": 30.0, "partially_imaged": False}}

    def found(patient):
        out = F.evaluate_findings(measurements, patient=patient)
        return {f["key"]: f for organ in out.values() for f in organ["findings"]}

    woman, man, unknown = found(F.Patient(50, "F")), found(F.Patient(50, "M")), found(F.Patient())
    # 27 mm: above 1.5 x 16.7 mm (women, Rogers 2013), below 1.5 x 19.3 mm (men).
    assert woman["abdominal_aortic_aneurysm_for_sex"]["abnormal"] and woman[
        "abdominal_aortic_aneurysm_for_sex"]["threshold"] == pytest.approx(25.05)
    assert not man["abdominal_aortic_aneurysm_for_sex"]["abnormal"]
    assert man["abdominal_aortic_aneurysm_for_sex"]["threshold"] == pytest.approx(28.95)
    assert "Rogers" in woman["abdominal_aortic_aneurysm_for_sex"]["reference"]["source"]
    assert woman["thoracic_aortic_aneurysm_for_sex"]["abnormal"] and not man["thoracic_aortic_aneurysm_for_sex"][
        "abnormal"]  # 36 mm against 34.7 (women) and 38.7 (men)
    assert "abdominal_aortic_aneurysm_for_sex" not in unknown
    # The absolute rows apply to everyone, and say the range is the adult one when the sex is unknown.
    assert not unknown["abdominal_aortic_aneurysm"]["abnormal"] and unknown["abdominal_aortic_dilatation"]["abnormal"]
    # Pancreas 30 ml: below Kipp's adult mean - 2 SD (34.5 ml), above Saisho's for ages 20-60 (20.8 ml).
    assert unknown["pancreatic_atrophy"]["abnormal"] and "age unknown: adult range" in unknown[
        "pancreatic_atrophy"]["text"]
    assert unknown["pancreatic_atrophy"]["z"] == pytest.approx((30.0 - 77.9) / 21.7, abs=0.01)
    assert not woman["pancreatic_atrophy"]["abnormal"] and woman["pancreatic_atrophy"]["threshold"] == 20.8
    assert woman["pancreatic_atrophy"]["z"] == pytest.approx((30.0 - 72.4) / 25.8, abs=0.01)
    assert "Saisho" in woman["pancreatic_atrophy"]["reference"]["source"]
    old = found(F.Patient(75, "F"))["pancreatic_atrophy"]
    assert old["abnormal"] and old["threshold"] == 34.5 and "no range for this patient's group" in old["text"]


def test_patient_parsing():
    assert F.Patient.parse("064Y", "F", "DICOM header") == F.Patient(64.0, "F", "DICOM header")
    assert F.Patient.parse("018M", "m").age == 1.5 and F.Patient.parse("018M", "m").sex == "M"
    assert F.Patient.parse("", "O") == F.Patient() and F.Patient.parse(None, "female").sex == "F"
    assert F.Patient.parse(None, None, "command line") == F.Patient()  # nothing given: no source either
    assert F.Patient.parse(" 71.5 ", "") .age == 71.5
    for age, sex in (("old", None), ("-3", None), ("200", None), (None, "X")):
        with pytest.raises(F.PatientError):
            F.Patient.parse(age, sex)
    merged = F.Patient(None, "F", "command line").merged(F.Patient(64.0, "M", "DICOM header"))
    assert merged == F.Patient(64.0, "F", "command line and DICOM header")


def test_right_adrenal_threshold_from_its_own_figures():
    rows = {r.key: r for r in F.REFERENCE_RANGES}
    for key in ("adrenal_thickening_right", "adrenal_thickening_left", "pancreatic_atrophy"):
        row = rows[key]
        sign = 1 if row.comparison in (">", ">=") else -1
        assert row.threshold == pytest.approx(row.mean + sign * 2 * row.sd, abs=0.051), key
        assert f"{row.mean} +/- {row.sd}" in row.reference_text, key
    for variant in rows["pancreatic_atrophy"].variants:
        assert variant.threshold == pytest.approx(variant.mean - 2 * variant.sd, abs=0.051)


# -- findings in the relevance ------------------------------------------------------------------------

def test_finding_boost_rule():
    finding = [{"text": "abdominal aortic diameter 45 mm; aneurysm at 30 mm or more"}]
    boost, why = finding_boost(0.4, 0.6, 0.0, finding)
    assert boost == pytest.approx(FINDING_BOOST * 0.6 * 0.6) and "raised" in why
    # Weighted by the in-domain probability: a likely out-of-domain symptom gets a fraction, a sure one nothing.
    assert finding_boost(0.4, 0.6, 0.8, finding)[0] == pytest.approx(FINDING_BOOST * 0.6 * 0.6 * 0.2)
    assert finding_boost(0.4, 0.6, 1.0, finding)[0] == 0.0
    assert finding_boost(0.05, MIN_TEXT_PRIOR / 2, 0.0, finding)[0] == 0.0  # the symptom does not point here
    assert finding_boost(0.4, 0.6, 0.0, [])[0] == 0.0
    # Bounded: never above 0.3 x (1 - r), so never above 1.
    for r in (0.0, 0.5, 0.99):
        assert r + finding_boost(r, 1.0, 0.0, finding)[0] <= min(1.0, r + FINDING_BOOST * (1 - r)) + 1e-12
    relevance, boosts, reasons = apply_findings(np.array([0.99, 0.2]), np.array([1.0, 0.02]), ["aorta", "liver"],
                                                0.0, {"aorta": {"findings": [{"abnormal": True, **finding[0]}]},
                                                       "liver": {"findings": [{"abnormal": True, **finding[0]}]}})
    assert relevance[0] <= 1.0 and boosts[0] == pytest.approx(0.3 * 0.01) and boosts[1] == 0.0
    assert "below" in reasons[1]


@pytest.fixture(scope="module")
def models():
    from MedSORALib.scoring import load_models

    return load_models()


def test_aorta_only_dilated_case_raises_tearing_pain_relevance(aorta_only, models):
    from MedSORALib.scoring import score_volume

    results = {}
    for abnormality, (volume, masks) in aorta_only.items():
        results[abnormality] = score_volume(volume, masks, [TEARING], models=models, with_passages=False)[0]
    dilated, normal = results["dilated_aorta"].organs[0], results[None].organs[0]
    assert dilated.key == normal.key == "aorta"
    assert dilated.relevance > normal.relevance and normal.finding_boost == 0.0
    assert dilated.text_prior == pytest.approx(normal.text_prior)
    aneurysm = next(f for f in dilated.findings if f["key"] == "abdominal_aortic_aneurysm")
    assert aneurysm["abnormal"] and aneurysm["value"] > 35.0 and "section uncertain" in dilated.why


def test_kidney_symptom_lifts_the_small_kidney_not_the_healthy_one(phantom_evidence, models):
    from MedSORALib.scoring import score_volume

    volume, masks, _ = phantom_evidence["atrophic_kidney"]
    result = score_volume(volume, masks, "blood in the urine with dull flank pain", models=models,
                          with_passages=False)[0]
    kidneys = {o.key: o for o in result.organs if o.key.startswith("kidney")}
    assert kidneys["kidney_left"].finding_boost > 0.0 and kidneys["kidney_right"].finding_boost == 0.0
    assert "shorter than the right" in kidneys["kidney_left"].why


def test_dilated_aorta_raises_tearing_pain_relevance(phantom_evidence, models):
    from MedSORALib.scoring import score_volume

    results = {}
    for abnormality in (None, "aaa"):
        volume, masks, _ = phantom_evidence[abnormality]
        results[abnormality] = score_volume(volume, masks, [TEARING, "I have a sore throat and a runny nose"],
                                            models=models, with_passages=False)
    normal = {o.key: o for o in results[None][0].organs}["aorta"]
    dilated = {o.key: o for o in results["aaa"][0].organs}["aorta"]
    assert dilated.relevance > normal.relevance
    assert dilated.finding_boost > 0.0 and normal.finding_boost == 0.0
    assert any(f["key"] == "abdominal_aortic_aneurysm" and f["abnormal"] for f in dilated.findings)
    assert "raised the relevance" in dilated.why
    # A non-abdominal symptom: the finding raises nothing.
    ood = results["aaa"][1]
    assert not ood.in_domain and all(o.finding_boost == 0.0 for o in ood.organs)
    # The boost is bounded and follows the documented rule.
    assert dilated.finding_boost == pytest.approx(
        FINDING_BOOST * dilated.text_prior * (1 - (dilated.relevance - dilated.finding_boost))
        * (1 - results["aaa"][0].ood_score), rel=1e-9)
    assert results["aaa"][0].contrast_phase["phase"] == "non-contrast"


def test_cli_json_and_segment_tags_carry_measurements_and_findings(tmp_path):
    from MedSORALib.cli import main
    from MedSORALib.segmentation_io import read_seg_nrrd

    out = tmp_path / "case"
    assert main(["score", "--volume", str(EXAMPLE_CT), "--segmentation", str(EXAMPLE_SEG), "--label-scheme",
                 "totalsegmentator", "--symptom", TEARING, "--output", str(out), "--quiet", "--no-passages",
                 "--preview"]) == 0
    report = json.loads(Path(str(out) + ".json").read_text())
    assert report["contrast_phase"]["phase"] == "non-contrast"
    by_name = {o["name"]: o for o in report["organs"]}
    assert by_name["liver"]["measurements"]["partially_imaged"] is True
    assert by_name["gallbladder"]["measurements"]["volume_ml"] == pytest.approx(1333 * 0.027, rel=1e-3)
    for organ in report["organs"]:
        for finding in organ["findings"]:
            assert set(finding) >= {"key", "abnormal", "value", "unit", "reference"}
    assert any(n["key"] == "hepatomegaly" for n in by_name["liver"]["findings_not_assessed"])
    seg = read_seg_nrrd(Path(str(out) + ".seg.nrrd"))
    tags = {s["id"]: s["tags"] for s in seg["segments"]}
    assert tags["liver"]["MedSORA.PartiallyImaged"] == "true"
    assert tags["gallbladder"]["MedSORA.ContrastPhase"].startswith("non-contrast")
    assert float(tags["spleen"]["MedSORA.VolumeMl"]) == pytest.approx(by_name["spleen"]["measurements"]["volume_ml"])
    abnormal = [f["text"] for f in by_name["pancreas"]["findings"] if f["abnormal"]]
    assert (tags["pancreas"]["MedSORA.Findings"] == "none") == (not abnormal)
