"""Severe hypertension with acute organ damage (the hypertensive emergency row) against the adrenal rows, and occult
blood in the stool (guaiac, FOBT, FIT) in the rows whose sources name it. Texts are written for these tests."""
from __future__ import annotations

import pytest

from MedSORALib.differential.catalogue import load_catalogue
from MedSORALib.differential.differential import differential
from MedSORALib.differential.reader import read


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def _p(result, disease_id: str) -> float:
    return next((d.probability for d in result.diagnoses if d.disease.id == disease_id), 0.0)


def _present(text: str) -> set[str]:
    return {f.id for f in read(text).findings if f.status == "present"}


# ------------------------------------------------------------------ hypertensive emergency

def test_hypertensive_emergency_row_is_non_abdominal_and_cited(catalogue):
    row = catalogue.by_id["hypertensive_emergency"]
    assert row.outside == "heart" and not row.organs
    assert "van den Born" in row.source and "Williams" in row.source
    weights = {w.id: w.lr for w in row.findings}
    # the organ damage carries the row more than the pressure alone: fundal haemorrhages outweigh the reading
    assert weights["retinal_haemorrhages"] > 3 * weights["hypertension_severe"]
    against = {w.id: w.lr for w in row.against}
    for finding in ("paroxysmal_attacks", "sweating_episodes", "adrenal_mass"):
        assert against[finding] <= 0.5


@pytest.mark.parametrize("text,finding", [
    ("on fundoscopy there were flame haemorrhages and soft exudates in both eyes", "retinal_haemorrhages"),
    ("grade 4 hypertensive retinopathy", "retinal_haemorrhages"),
    ("he had run out of his blood pressure pills two weeks earlier", "antihypertensive_nonadherence"),
    ("a 3 cm left adrenal nodule seen on an earlier scan", "adrenal_mass"),
    ("dialysis-dependent for five years", "chronic_kidney_disease"),
])
def test_new_findings_are_read(text, finding):
    assert finding in _present(text)


@pytest.mark.parametrize("text", [
    "the patient had adrenal insufficiency treated with hydrocortisone",
    "no retinopathy on fundoscopy",
])
def test_new_findings_are_not_read_from_look_alikes(text):
    assert not {"adrenal_mass", "retinal_haemorrhages"} & _present(text)


@pytest.mark.parametrize("text", [
    # malignant hypertension: visual loss with fundal haemorrhages and kidney injury
    "lorry driver aged 47, two days of a band-like headache, retching and blurred sight; pressure 242/138; "
    "fundi with flame-shaped bleeds and cotton wool patches; creatinine 295",
    # encephalopathy after stopping treatment
    "known hypertensive who ran out of his tablets, brought in drowsy and disorientated with a bad headache, "
    "BP 228/134",
])
def test_severe_hypertension_with_organ_damage_is_a_hypertensive_emergency(text):
    result = differential(text)
    assert result.diagnoses[0].disease.id == "hypertensive_emergency"
    assert result.diagnoses[0].probability > 0.5
    assert result.scope == "non-abdominal"


def test_paroxysmal_triad_stays_a_phaeochromocytoma():
    # headache, sweating and palpitations in spells with a very high reading: the adrenal row, not the emergency
    result = differential("spells of thumping heartbeat, pouring sweat and a splitting headache that pass within "
                          "twenty minutes; BP 236/124 during one of them")
    assert result.diagnoses[0].disease.id == "pheochromocytoma"
    assert _p(result, "pheochromocytoma") > 5 * _p(result, "hypertensive_emergency")
    assert max(result.organ_relevance, key=result.organ_relevance.get).startswith("adrenal_gland")


def test_raised_metanephrines_keep_a_crisis_on_the_adrenal():
    result = differential("headache and vomiting, BP 232/128, plasma normetanephrine four times the upper limit")
    assert result.diagnoses[0].disease.id == "pheochromocytoma"
    assert _p(result, "hypertensive_emergency") < 0.05


def test_a_named_adrenal_mass_keeps_the_adrenal_first():
    text = "woman of 58 with a right adrenal mass, headache and pressure of 226/122"
    result = differential(text)
    assert result.diagnoses[0].disease.organs == ("adrenal_gland",)
    assert max(result.organ_relevance, key=result.organ_relevance.get) == "adrenal_gland_right"
    without = differential("woman of 58, headache and pressure of 226/122")
    assert _p(result, "hypertensive_emergency") < _p(without, "hypertensive_emergency") / 3


def test_hypokalaemic_hypertension_stays_with_aldosteronism():
    result = differential("man of 44 with high blood pressure on three drugs, potassium 2.8, weak legs")
    assert result.diagnoses[0].disease.id == "primary_aldosteronism"
    assert _p(result, "hypertensive_emergency") < _p(result, "primary_aldosteronism")


def test_tearing_back_pain_with_severe_hypertension_stays_aortic():
    result = differential("abrupt ripping pain through to the back between the shoulder blades, BP 204/112")
    assert result.diagnoses[0].disease.id in ("aortic_dissection_type_a", "aortic_dissection_type_b")
    assert _p(result, "hypertensive_emergency") < 0.05


# ------------------------------------------------------------------ occult blood in the stool

@pytest.mark.parametrize("row", ["left_colorectal_cancer", "right_colon_cancer", "rectal_cancer", "gastric_cancer",
                                 "peptic_ulcer_disease", "gist_gastric", "angiodysplasia", "ulcerative_colitis",
                                 "crohn_disease"])
def test_occult_blood_is_weighted_where_the_sources_name_it(catalogue, row):
    weights = {w.id: w for w in catalogue.by_id[row].findings}
    assert "occult_blood" in weights and weights["occult_blood"].lr > 1


def test_faecal_immunochemical_test_weight_is_the_published_one(catalogue):
    w = {x.id: x for x in catalogue.by_id["right_colon_cancer"].findings}["occult_blood"]
    assert "D'Souza" in w.lr_source
    assert w.lr == pytest.approx(0.91 / (1 - 0.835), rel=0.05)
    # the colon rows count it more than the upper gastrointestinal rows: FIT detects colonic blood best
    assert w.lr > {x.id: x.lr for x in catalogue.by_id["gastric_cancer"].findings}["occult_blood"]


def test_positive_fit_with_iron_deficiency_in_an_older_man_points_to_the_right_colon():
    with_fit = differential("man of 71, tired and pale, iron-deficient, faecal immunochemical test positive")
    without = differential("man of 71, tired and pale, iron-deficient")
    top = with_fit.diagnoses[0].disease
    assert top.outside == "colon"
    assert _p(with_fit, "right_colon_cancer") > 1.5 * _p(without, "right_colon_cancer")


def test_haematemesis_with_a_positive_guaiac_stays_upper_gastrointestinal():
    result = differential("woman of 66 on naproxen, gnawing epigastric ache, vomited blood once, guaiac-positive "
                          "stool, haemoglobin 8.9")
    top = result.diagnoses[0].disease
    assert top.organs and top.organs[0] == "stomach"
    for colonic in ("angiodysplasia", "right_colon_cancer", "left_colorectal_cancer"):
        assert _p(result, colonic) < 0.1


def test_angiodysplasia_for_painless_occult_bleeding_with_aortic_stenosis():
    result = differential("82-year-old with an ejection systolic murmur of aortic stenosis and recurrent iron "
                          "deficiency anaemia needing transfusion; stool positive for occult blood; no pain, "
                          "weight steady")
    assert "angiodysplasia" in [d.disease.id for d in result.diagnoses[:3]]
