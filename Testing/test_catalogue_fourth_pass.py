"""Fourth catalogue pass: textbook features and priors that decided between neighbouring rows.

- acute cholecystitis felt in the epigastrium and through to the back, with a positive Murphy's sign, against the
  pancreatitis rows (a lipase over three times the limit still makes it pancreatitis);
- pyogenic liver abscess in a child (no adult-only age bound; anaemia and a raised ESR);
- an iliofemoral clot (phlegmasia) in a young man points to a caval anomaly;
- blood in the stool with a left upper quadrant mass points to the stomach rather than a myeloproliferative spleen;
- amoebic liver abscess felt in the epigastrium after travel.

Every text here is written for these tests.
"""
from __future__ import annotations

import pytest

from MedSORALib.differential.catalogue import load_catalogue
from MedSORALib.differential.differential import differential
from differential_helpers import present as _present
from differential_helpers import probability as _p
from differential_helpers import top_organ as _top_organ


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()



# -- cholecystitis against pancreatitis ---------------------------------------------------------------------------

GALLBLADDER_TEXT = ("Obese woman aged 47 with ten hours of constant epigastric pain that bores through to her back; "
                    "temperature 38.3; Murphy's sign is positive.")


def test_murphy_sign_argues_against_the_pancreatitis_rows(catalogue):
    for row in ("acute_pancreatitis", "gallstone_pancreatitis"):
        against = {w.id: w.lr for w in catalogue.by_id[row].against}
        assert against.get("murphy_sign", 1.0) < 1.0, row
    weights = {w.id: w.lr for w in catalogue.by_id["acute_cholecystitis"].findings}
    assert weights["epigastric_pain"] > 1.0 and weights["pain_radiating_to_back"] > 1.0
    # the pancreatitis rows keep the larger weights for these two pains
    for row in ("acute_pancreatitis", "gallstone_pancreatitis"):
        pw = {w.id: w.lr for w in catalogue.by_id[row].findings}
        assert pw["epigastric_pain"] > weights["epigastric_pain"]
        assert pw["pain_radiating_to_back"] > weights["pain_radiating_to_back"]


def test_epigastric_pain_to_the_back_with_murphy_sign_is_cholecystitis():
    result = differential(GALLBLADDER_TEXT)
    assert result.diagnoses[0].disease.id == "acute_cholecystitis"
    assert _p(result, "acute_cholecystitis") > _p(result, "acute_pancreatitis")
    assert _p(result, "acute_cholecystitis") > _p(result, "gallstone_pancreatitis")
    assert _top_organ(result) == "gallbladder"


def test_same_pain_with_a_lipase_three_times_the_limit_stays_pancreatitis():
    result = differential(GALLBLADDER_TEXT + " Serum lipase 1450 U/L (reference up to 60).")
    assert result.diagnoses[0].disease.id in ("acute_pancreatitis", "gallstone_pancreatitis")
    assert _top_organ(result) == "pancreas"


def test_epigastric_pain_to_the_back_without_murphy_sign_is_not_cholecystitis_first():
    result = differential("Man of 52, heavy drinker, with a day of epigastric pain boring through to his back and "
                          "repeated vomiting.")
    assert result.diagnoses[0].disease.id != "acute_cholecystitis"
    assert _top_organ(result) == "pancreas"


# -- pyogenic liver abscess in a child ----------------------------------------------------------------------------

CHILD_ABSCESS = ("Boy of 5 with a week of spiking fevers, right upper quadrant pain and refusing food; white count "
                 "21, haemoglobin 9.1, ESR 88, bilirubin normal.")


def test_pyogenic_liver_abscess_has_no_adult_only_age_bound(catalogue):
    row = catalogue.by_id["pyogenic_liver_abscess"]
    assert row.age is None or row.age[0] <= 1
    weights = {w.id: w.lr for w in row.findings}
    assert weights["anaemia"] > 1.0 and weights["esr_raised"] > 1.0


def test_febrile_child_with_right_upper_quadrant_pain_and_anaemia_is_a_liver_abscess():
    result = differential(CHILD_ABSCESS)
    assert result.diagnoses[0].disease.id == "pyogenic_liver_abscess"
    assert _p(result, "pyogenic_liver_abscess") > 2 * _p(result, "acute_cholecystitis")
    assert _top_organ(result) == "liver"


# -- iliofemoral clot in a young man ------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "a painful blue leg, phlegmasia cerulea dolens",
    "duplex showed an iliofemoral deep vein thrombosis",
    "the thrombus extends into the common iliac vein",
    "left iliac vein thrombosis on the scan",
])
def test_iliofemoral_clot_is_read(text):
    assert "iliofemoral_dvt" in _present(text)


def test_calf_clot_is_not_read_as_iliofemoral():
    assert "iliofemoral_dvt" not in _present("tender swollen right calf after a long flight")


def test_young_man_with_phlegmasia_and_no_provoking_factor_points_to_a_caval_anomaly():
    result = differential("Previously fit 23-year-old man with four days of a painful, swollen, dusky blue left "
                          "leg, phlegmasia cerulea dolens.")
    assert result.diagnoses[0].disease.id == "ivc_anomaly_young_dvt"
    assert _p(result, "ivc_anomaly_young_dvt") > 3 * _p(result, "pulmonary_embolism")
    assert _top_organ(result) == "inferior_vena_cava"


def test_calf_clot_in_an_older_woman_does_not_lead_to_a_caval_anomaly():
    result = differential("Woman of 74 with a swollen tender right calf five days after a knee replacement.")
    assert result.diagnoses[0].disease.id != "ivc_anomaly_young_dvt"


# -- gastric tumour bleeding against a big spleen ------------------------------------------------------------------

LUQ_MASS = ("A 63-year-old woman has felt full in the left upper abdomen for months with early satiety and "
            "tiredness; a firm mass is felt under the left costal margin; haemoglobin 7.8.")


def test_melaena_argues_against_the_myeloproliferative_spleen(catalogue):
    against = {w.id: w.lr for w in catalogue.by_id["haematological_splenomegaly"].against}
    assert against["melaena"] < 1.0 and against["haematemesis"] < 1.0 and against["iron_deficiency"] < 1.0
    gist = {w.id: w.lr for w in catalogue.by_id["gist_gastric"].findings}
    assert gist["iron_deficiency"] > 1.0


def test_left_upper_mass_with_iron_deficiency_points_to_the_stomach():
    result = differential(LUQ_MASS + " Ferritin is low: an iron-deficiency anaemia.")
    rel = result.organ_relevance
    assert rel["stomach"] > rel["spleen"]


def test_left_upper_mass_with_black_stools_points_to_the_stomach():
    result = differential(LUQ_MASS + " Last week her stools turned black and tarry.")
    rel = result.organ_relevance
    assert rel["stomach"] > rel["spleen"]
    stomach_rows = _p(result, "gist_gastric") + _p(result, "gastric_cancer")
    assert stomach_rows > _p(result, "haematological_splenomegaly")


def test_left_upper_mass_without_bleeding_stays_with_the_spleen():
    result = differential(LUQ_MASS)
    rel = result.organ_relevance
    assert rel["spleen"] > rel["stomach"]


# -- amoebic liver abscess after travel ---------------------------------------------------------------------------

def test_amoebic_abscess_can_present_with_epigastric_pain(catalogue):
    weights = {w.id: w.lr for w in catalogue.by_id["amoebic_liver_abscess"].findings}
    assert weights["epigastric_pain"] > 1.0


def test_traveller_with_fever_and_epigastric_pain_is_an_amoebic_abscess_first():
    result = differential("A 28-year-old man who recently travelled to Pakistan has had fever and epigastric pain "
                          "for a week.")
    assert result.diagnoses[0].disease.id == "amoebic_liver_abscess"
    assert _top_organ(result) == "liver"
