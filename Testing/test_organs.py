"""The organ catalog: labels, classes, terminology and name look-ups."""
import pytest

from MedSORALib import organs
from MedSORALib.errors import LabelSchemeError


def test_thirteen_structures_keyed_by_totalsegmentator_names():
    assert organs.STRUCTURES == (
        "spleen", "kidney_right", "kidney_left", "gallbladder", "esophagus", "liver", "stomach", "aorta",
        "inferior_vena_cava", "portal_vein_and_splenic_vein", "pancreas", "adrenal_gland_right",
        "adrenal_gland_left")
    assert [organs.ORGANS[k].btcv_label for k in organs.STRUCTURES] == list(range(1, 14))


@pytest.mark.parametrize("scheme,expected", [
    ("totalsegmentator", {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "liver",
                          6: "stomach", 7: "pancreas", 8: "adrenal_gland_right", 9: "adrenal_gland_left",
                          15: "esophagus", 52: "aorta", 63: "inferior_vena_cava",
                          64: "portal_vein_and_splenic_vein"}),
    ("btcv", {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "esophagus", 6: "liver",
              7: "stomach", 8: "aorta", 9: "inferior_vena_cava", 10: "portal_vein_and_splenic_vein",
              11: "pancreas", 12: "adrenal_gland_right", 13: "adrenal_gland_left"}),
    ("amos", {1: "spleen", 2: "kidney_right", 3: "kidney_left", 4: "gallbladder", 5: "esophagus", 6: "liver",
              7: "stomach", 8: "aorta", 9: "inferior_vena_cava", 10: "pancreas", 11: "adrenal_gland_right",
              12: "adrenal_gland_left"}),
])
def test_label_tables(scheme, expected):
    assert organs.label_table(scheme) == expected
    for value, key in expected.items():
        assert organs.organ_key(value, scheme=scheme) == key


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(LabelSchemeError, match="unknown label scheme 'decathlon'"):
        organs.label_table("decathlon")


def test_reasoning_classes_map_to_structures():
    assert len(organs.PAPER_CLASSES) == 7 and len(organs.FULL_CLASSES) == 11
    assert organs.FULL_CLASSES[:7] == organs.PAPER_CLASSES
    assert organs.class_structures("kidney") == ("kidney_right", "kidney_left")
    assert organs.class_structures("adrenal_gland") == ("adrenal_gland_right", "adrenal_gland_left")
    covered = [s for c in organs.FULL_CLASSES for s in organs.class_structures(c)]
    assert sorted(covered) == sorted(organs.STRUCTURES)


@pytest.mark.parametrize("name,key", [
    ("Right kidney", "kidney_right"), ("kidney_left", "kidney_left"), ("IVC", "inferior_vena_cava"),
    ("Gall bladder", "gallbladder"), ("oesophagus", "esophagus"), ("portal vein", "portal_vein_and_splenic_vein"),
    ("left adrenal gland", "adrenal_gland_left"), ("postcava", "inferior_vena_cava"), ("lung_upper_lobe_left", None),
])
def test_foreign_names(name, key):
    assert organs.organ_key(name) == key


def test_terminology_entries_round_trip_to_keys():
    for key, organ in organs.ORGANS.items():
        entry = organ.terminology_entry()
        assert entry.split("~")[1] == "SCT^123037004^Anatomical Structure"
        assert organs.organ_key_from_terminology(entry) == key
        assert organs.organ_key_from_terminology(organ.terminology()) == key
    assert organs.ORGANS["kidney_left"].terminology()["typeModifier"] == ["SCT", "7771000", "Left"]
    assert organs.ORGANS["kidney_right"].side == "right" and organs.ORGANS["liver"].side is None
    # The modifier may also come as an anatomic region modifier.
    alt = {"type": ["SCT", "23451007", "Adrenal gland"], "anatomicRegionModifier": ["SCT", "24028007", "Right"]}
    assert organs.organ_key_from_terminology(alt) == "adrenal_gland_right"
    assert organs.organ_key_from_terminology({"type": ["SCT", "39607008", "Lung"]}) is None


def test_colours_are_rgb_fractions():
    for organ in organs.ORGANS.values():
        assert len(organ.color) == 3 and all(0.0 <= c <= 1.0 for c in organ.color)
