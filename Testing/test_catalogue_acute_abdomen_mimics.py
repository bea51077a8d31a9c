"""Conditions that present as an acute abdomen but lie outside it: their distinguishing (non-abdominal) features take
them first when the text states them. Texts are written for these tests."""
from __future__ import annotations

import pytest

from MedSORALib.differential.differential import differential


@pytest.mark.parametrize("text,row,scope", [
    ("19-year-old with type 1 diabetes, two days of vomiting and belly pain, breathing deep and fast, ketones 5.8, "
     "pH 7.12, glucose 28", "diabetic_ketoacidosis", "non-abdominal"),
    ("man of 61, epigastric discomfort and nausea for an hour, sweaty and grey, ST elevation in II, III and aVF, "
     "troponin raised", "acute_coronary_syndrome", "non-abdominal"),
    ("boy of 9 with high fever, cough and right upper abdominal pain, crackles at the right base, sats 91%",
     "lower_lobe_pneumonia", "non-abdominal"),
    ("woman of 70, burning pain in a band around the left side of the trunk for three days, then a blistering rash "
     "in the same strip", "herpes_zoster", "non-abdominal"),
    ("woman of 26, attacks of severe abdominal pain with vomiting, constipation, weak arms, urine turning dark red "
     "on standing, sodium 124", "acute_porphyria", "non-abdominal"),
    ("man of 22 with sickle cell disease, severe pain in the abdomen, back and both legs, Hb 6.9",
     "sickle_cell_crisis", "non-abdominal"),
    ("painter of 45 renovating an old house, colicky abdominal pain, constipation, blue line on the gums, anaemia "
     "with basophilic stippling", "lead_poisoning", "non-abdominal"),
    ("boy of 7, purple raised spots over the buttocks and legs, swollen ankles, colicky tummy pain, blood in the "
     "urine", "iga_vasculitis", "non-abdominal"),
    ("teenager of 15, an hour of agonising ache in the right scrotum spreading to the groin and retching; that "
     "testicle sits higher and lies horizontally", "testicular_torsion", "non-abdominal"),
    # adrenal crisis is a disease of a modelled structure: it stays in scope and names the adrenal glands
    ("woman of 45 on long-term prednisolone stopped abruptly, vomiting, abdominal pain, BP 78/40, sodium 126, "
     "potassium 5.9", "adrenal_crisis_addison", "modelled"),
])
def test_the_distinguishing_feature_takes_the_mimic_first(text, row, scope):
    result = differential(text)
    assert result.diagnoses[0].disease.id == row
    assert result.diagnoses[0].probability > 0.5
    assert result.scope == scope


@pytest.mark.parametrize("text,not_row", [
    # the same abdominal words without the distinguishing feature do not name the mimic
    ("woman of 26, severe abdominal pain with vomiting and constipation", "acute_porphyria"),
    ("boy of 7 with colicky tummy pain and blood in the urine", "iga_vasculitis"),
    ("man of 61, epigastric discomfort and nausea after a fatty meal", "acute_coronary_syndrome"),
])
def test_without_the_feature_the_mimic_does_not_lead(text, not_row):
    result = differential(text)
    assert result.diagnoses[0].disease.id != not_row
    assert next(d.probability for d in result.diagnoses if d.disease.id == not_row) < 0.2


def test_a_widow_spider_bite_explains_a_rigid_abdomen():
    result = differential("man of 40 bitten on the hand by a black widow spider in his garage; an hour later cramping "
                          "pain in the belly and back, the abdomen board-like but not tender, sweating, BP 170/100")
    assert result.diagnoses[0].disease.id == "latrodectism"
    assert result.scope == "non-abdominal" and result.outside == "poisoning"
    # without the bite a board-like abdomen stays a surgical abdomen
    without = differential("man of 40, an hour of pain in the belly, the abdomen board-like, sweating")
    assert without.diagnoses[0].disease.id != "latrodectism"
    assert without.scope == "modelled"


def test_recurrent_midline_pain_attacks_with_photophobia_in_a_child_are_abdominal_migraine():
    result = differential("boy of 10, every month or so an attack of severe pain around the belly button for a few "
                          "hours with vomiting; he looks pale and cannot stand the light; his father has migraine; "
                          "well in between")
    assert result.diagnoses[0].disease.id in ("abdominal_migraine", "migraine")
    assert result.scope == "non-abdominal"
    adult = differential("man of 45 with recurrent attacks of pain around the belly button and vomiting")
    assert next(d.probability for d in adult.diagnoses if d.disease.id == "abdominal_migraine") < 0.05
