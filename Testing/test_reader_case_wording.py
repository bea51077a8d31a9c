"""The clinical reader on the wording of case reports, exam stems, teaching-file histories and patient stories
(issue 24, item 2): each family of wording is read as its finding, with its status, and its negation holds.

The clauses are the team's own, written for these tests; none is taken from a dev or evaluation text.
"""
from __future__ import annotations

import pytest

from MedSORALib.differential.reader import read


def findings(text: str, **kw) -> dict:
    return {f.id: f.status for f in read(text, **kw).findings}


def value(text: str, finding: str) -> float | None:
    for f in read(text).findings:
        if f.id == finding:
            return f.value
    return None


# -- radiation and onset ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["sharp upper abdominal pain irradiating to the back",
                                  "epigastric ache with irradiation to her back",
                                  "pain in the left upper quadrant, irradiating towards his back"])
def test_irradiation_to_the_back(text):
    assert findings(text).get("pain_radiating_to_back") == "present"


def test_irradiation_denied():
    assert findings("the pain does not irradiate to the back").get("pain_radiating_to_back") == "negated"


@pytest.mark.parametrize("text", ["a 3 h onset of severe central abdominal pain",
                                  "acute onset of left flank pain this morning",
                                  "abrupt-onset tearing pain between the shoulder blades",
                                  "sudden onset of severe right lower abdominal pain",
                                  "sudden-onset, severe, generalised abdominal pain",
                                  "lower back pain of sudden onset while lifting",
                                  "the pain began abruptly an hour before arrival"])
def test_onset_written_as_acute_or_as_a_time(text):
    assert findings(text).get("sudden_onset_pain") == "present"


@pytest.mark.parametrize("text", ["a 3-month history of dull abdominal pain", "acute pancreatitis in 2019",
                                  "gradual onset of epigastric pain over a week"])
def test_acute_or_a_duration_alone_is_not_a_sudden_onset(text):
    assert "sudden_onset_pain" not in findings(text)


# -- tenderness and pain named by region --------------------------------------------------------------------------
@pytest.mark.parametrize("text, finding", [
    ("there was tenderness in the left hypochondrium", "luq_pain"),
    ("she was tender in the right iliac fossa", "rlq_pain"),
    ("marked right upper quadrant tenderness on palpation", "ruq_pain"),
    ("midepigastric tenderness without guarding", "epigastric_pain"),
    ("aching in both flanks for a week", "flank_pain"),
    ("tender over both loins", "flank_pain"),
    ("pain in the right sacroiliac region for four days", "back_pain"),
    ("lumbosacral pain worse on walking", "back_pain"),
    ("an ache across her lower back", "back_pain"),
    ("loin pain on the left", "flank_pain"),
])
def test_region_tenderness_gives_the_region_finding(text, finding):
    assert findings(text).get(finding) == "present"


def test_region_tenderness_negated():
    got = findings("no tenderness in the right iliac fossa")
    assert got.get("rlq_pain") == "negated"


def test_hyphenated_region_is_read():
    got = findings("presented with left-upper-quadrant pain and nausea")
    assert got.get("luq_pain") == "present" and got.get("nausea") == "present"


# -- a new disease against an old one ------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["he had been diagnosed with diabetes three weeks earlier",
                                  "diagnosed with type 2 diabetes 2 months ago by her doctor",
                                  "recently diagnosed with diabetes and started on metformin",
                                  "she was newly diagnosed with type 2 diabetes"])
def test_recently_diagnosed_diabetes_is_new_onset_diabetes(text):
    got = findings(text)
    assert got.get("new_onset_diabetes") == "present"
    assert got.get("diabetes") == "present"


@pytest.mark.parametrize("text", ["she was diagnosed with diabetes in 2009",
                                  "diagnosed with diabetes twelve years ago"])
def test_diabetes_diagnosed_long_ago_is_history_not_new(text):
    got = findings(text)
    assert got.get("diabetes") == "history"
    assert "new_onset_diabetes" not in got


def test_a_disease_dated_in_a_past_year_is_history():
    assert findings("a history of acute pancreatitis in 2016").get("pancreatitis_history") == "history"


@pytest.mark.parametrize("text", ["she has vomited four times in the past 6 hours",
                                  "two episodes of vomiting in the past day"])
def test_in_the_past_with_a_span_of_time_is_the_presentation(text):
    assert findings(text).get("vomiting") == "present"


def test_in_the_past_alone_is_history():
    assert findings("she had gallstones in the past").get("gallstones_history") == "history"


def test_several_days_history_is_the_presentation():
    got = findings("four days' history of upper abdominal discomfort and nausea")
    assert got.get("nausea") == "present"


# -- words of case reports ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, finding", [
    ("non-bloody emesis since the morning", "vomiting"),
    ("hematochezia for two days", "haematochezia"),
    ("he passed bright red blood per rectum", "haematochezia"),
    ("a syncopal spell at home", "syncope"),
    ("progressive lassitude over a month", "fatigue"),
    ("marked asthenia and poor appetite", "fatigue"),
    ("generalised weakness for three weeks", "fatigue"),
    ("the patient was tremulous and sweaty", "tremor"),
    ("a pulsatile abdominal mass above the umbilicus", "pulsatile_mass"),
    ('a pulsating "mass" in the epigastrium', "pulsatile_mass"),
    ("she felt a sense of heaviness in the abdomen", "bloating"),
    ("discomfort with swallowing solids for a month", "dysphagia"),
    ("oedema of both lower extremities", "bilateral_leg_swelling"),
    ("bilateral, pitting lower limb oedema", "bilateral_leg_swelling"),
    ("tea-coloured urine", "dark_urine"),
    ("urine the colour of cola", "dark_urine"),
])
def test_case_report_words(text, finding):
    assert findings(text).get(finding) == "present"


@pytest.mark.parametrize("text, finding", [
    ("no pulsatile mass was felt", "pulsatile_mass"),
    ("denies syncope or palpitations", "syncope"),
    ("no hematochezia", "haematochezia"),
    ("no oedema of both legs", "bilateral_leg_swelling"),
])
def test_case_report_words_negated(text, finding):
    assert findings(text).get(finding) == "negated"


@pytest.mark.parametrize("text", ["non-bloody, non-bilious vomiting after dinner",
                                  "nonbilious emesis twice"])
def test_non_bilious_vomiting_alone_is_not_projectile(text):
    got = findings(text)
    assert got.get("vomiting") == "present" and "projectile_vomiting" not in got


@pytest.mark.parametrize("text", ["fell off a ladder onto his left side", "knocked off his bicycle by a van",
                                  "a skiing injury to the left chest", "fell out of bed in the night"])
def test_falls_and_sports_injuries_are_trauma(text):
    assert findings(text).get("trauma") == "present"


def test_no_trauma():
    assert findings("no history of a fall or other trauma").get("trauma") == "negated"


# -- circulation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["haemodynamically unstable on arrival", "unstable vital signs in the ambulance",
                                  "hemodynamic instability requiring fluids"])
def test_instability_is_shock(text):
    assert findings(text).get("shock") == "present"


@pytest.mark.parametrize("text", ["BP 78/44 on arrival", "blood pressure of 85/50 mmHg",
                                  "a blood pressure reading of 70/40 mm of Hg"])
def test_low_blood_pressure_as_a_number_is_hypotension(text):
    assert findings(text).get("hypotension") == "present"


# -- jaundice in lay words -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["my eyes went yellow last week", "the whites of her eyes had a yellowish tinge",
                                  "he was turning a strange shade of yellow", "my skin looked sort of orange-yellow"])
def test_lay_jaundice(text):
    assert findings(text).get("jaundice") == "present"


@pytest.mark.parametrize("text", ["coughing up yellow phlegm", "yellow crusts on the skin rash",
                                  "a yellow watery diarrhoea"])
def test_yellow_things_that_are_not_jaundice(text):
    assert "jaundice" not in findings(text)


# -- negation of lists ----------------------------------------------------------------------------------------------
def test_denial_list_closed_by_and():
    got = findings("She denies dysuria, fever, and vaginal bleeding and has no other complaints.")
    assert got.get("dysuria") == "negated" and got.get("fever") == "negated"
    assert got.get("vaginal_bleeding") == "negated"


def test_denial_list_without_a_closer():
    got = findings("Denied fever, chest pain, shortness of breath, nausea, back pain.")
    assert all(got.get(f) == "negated" for f in ("fever", "chest_pain", "dyspnoea", "nausea", "back_pain"))


def test_denial_list_stops_at_a_turn():
    got = findings("denies fever, but has vomiting, and diarrhoea")
    assert got.get("fever") == "negated"
    assert got.get("vomiting") == "present" and got.get("diarrhoea") == "present"


def test_no_list_stops_at_a_verb():
    got = findings("no fever, she has nausea and vomiting")
    assert got.get("fever") == "negated" and got.get("nausea") == "present"


@pytest.mark.parametrize("text", ["The patient did not report polyuria or thirst.",
                                  "He does not describe any haematemesis."])
def test_did_not_report_denies(text):
    got = findings(text)
    assert "present" not in got.values() and got


def test_a_long_closing_item_keeps_the_negation():
    got = findings("no previous history of diabetes, hypertension, or any family history of bowel cancer")
    assert got.get("diabetes") == "negated" and got.get("hypertension") == "negated"


def test_not_subsiding_after_a_drug_does_not_deny_the_drug():
    got = findings("epigastric pain not settling after ibuprofen")
    assert got.get("epigastric_pain") == "present" and got.get("nsaid_use") == "present"


def test_a_placeholder_word_does_not_break_the_clause():
    got = findings("No [organ] murmur was heard.")
    assert got.get("heart_murmur") == "negated"


# -- laboratory values and vital signs ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, finding, expected", [
    ("C-reactive protein (CRP) 240 mg/L", "crp_raised", 240.0),
    ("aspartate transaminase (AST) of 310 IU/L", "transaminases_raised", 310.0),
    ("Pulse, 124", "tachycardia", 124.0),
    ("WBC 17.5 x10³/µL", "leukocytosis", 17.5),
])
def test_values_after_an_abbreviation_or_comma(text, finding, expected):
    assert value(text, finding) == pytest.approx(expected)
    assert findings(text)[finding] == "present"


@pytest.mark.parametrize("text", ["a fever of 101.3 degrees Fahrenheit", "temperature 38.6 degrees Celsius"])
def test_temperature_units_in_words(text):
    assert findings(text).get("fever") == "present"


def test_temperature_in_fahrenheit_words_normal():
    assert findings("temperature 98.4 degrees Fahrenheit").get("fever") == "negated"


def test_white_cells_per_microlitre_are_converted():
    got = findings("a WBC of 7400/uL")
    assert got.get("leukocytosis") == "negated"
    assert value("a WBC of 7400/uL", "leukocytosis") == pytest.approx(7.4)


def test_a_value_shown_does_not_count_as_a_positive_wording():
    got = findings("the full blood count showed a WBC of 6900/uL")
    assert got.get("leukocytosis") != "present"


def test_a_dipstick_grade_is_not_a_concentration():
    got = findings("urinalysis: glucose 3+, ketones 2+")
    assert "hypoglycaemia" not in got


@pytest.mark.parametrize("text", ["glycated haemoglobin 9.8%", "HbA1c 8.1 %", "haemoglobin A1c of 7.4%"])
def test_hba1c_is_not_haemoglobin_and_reads_diabetes(text):
    got = findings(text)
    assert "anaemia" not in got
    assert got.get("diabetes") == "present"


def test_normal_hba1c_does_not_deny_known_diabetes():
    got = findings("type 2 diabetes, well controlled, HbA1c 6.0%")
    assert got.get("diabetes") == "present"


@pytest.mark.parametrize("text, sex, status", [("haematocrit 29%", None, "present"),
                                               ("Hct 0.33", "male", "present"),
                                               ("haematocrit 44%", "female", "negated")])
def test_haematocrit(text, sex, status):
    assert findings(text, sex=sex).get("anaemia") == status


def test_elevations_of_a_list_of_analytes():
    got = findings("tests showed elevations of the white cell count, creatinine and the CRP")
    assert got.get("leukocytosis") == "present" and got.get("creatinine_raised") == "present"
    assert got.get("crp_raised") == "present"


# -- chronic complaints, relatives, falls in a value ----------------------------------------------------------------
@pytest.mark.parametrize("text, finding", [("a 6-year history of a dull ache under the right ribs", "ruq_pain"),
                                           ("a 15-year history of type 2 diabetes", "diabetes"),
                                           ("presented with a history of lower back pain for 3 days", "back_pain")])
def test_a_history_measured_to_now_is_present(text, finding):
    assert findings(text).get(finding) == "present"


def test_family_history_heading_governs_its_list():
    got = findings("Family history: one sister with type 1 diabetes; an older brother with bowel cancer.")
    assert got.get("diabetes") == "family" and got.get("malignancy_history") == "family"


@pytest.mark.parametrize("text", ["haemoglobin has fallen from 11.2 to 7.9 g/dL", "Hb dropping from 120 to 84 g/L"])
def test_a_falling_value_is_read_at_its_end(text):
    got = findings(text)
    assert got.get("anaemia") == "present" and "trauma" not in got


@pytest.mark.parametrize("text, finding", [("vomiting of blood and melaena", "haematemesis"),
                                           ("two bouts of bloody vomiting", "haematemesis"),
                                           ("progressive darkening of the skin and gums", "hyperpigmentation"),
                                           ("pain just left of the umbilicus", "periumbilical_pain"),
                                           ("tender to the right of the navel", "periumbilical_pain"),
                                           ("midback pain after the vomiting", "back_pain")])
def test_more_case_report_words(text, finding):
    assert findings(text).get(finding) == "present"


def test_a_placeholder_ends_its_sentence():
    got = findings("No history of alcohol use or [diagnosis]. Tests showed a raised lipase.")
    assert got.get("alcohol_use") == "negated" and got.get("lipase_raised") == "present"


def test_a_mass_beside_the_umbilicus_is_not_pain():
    assert "periumbilical_pain" not in findings("a firm mass extending to the right of the umbilicus")


@pytest.mark.parametrize("text, finding", [("returned to the UK two weeks ago from Pakistan", "travel"),
                                           ("crepitus over her neck on palpation", "subcutaneous_emphysema"),
                                           ("she tires easily climbing stairs", "fatigue")])
def test_travel_crepitus_and_tiring(text, finding):
    assert findings(text).get(finding) == "present"



@pytest.mark.parametrize("text, finding, status", [("heart rate in the 130s", "tachycardia", "present"),
                                                   ("blood pressure in the 70s/40s", "hypotension", "present"),
                                                   ("pulse in the 70s", "tachycardia", "negated")])
def test_vital_signs_written_as_decades(text, finding, status):
    assert findings(text).get(finding) == status


@pytest.mark.parametrize("text, finding", [("melanotic stools for two days", "melaena"),
                                           ("a distended, tympanic abdomen", "abdominal_distension"),
                                           ("the abdomen was tense and distended", "abdominal_distension")])
def test_melanotic_stools_and_distension(text, finding):
    assert findings(text).get(finding) == "present"


def test_a_long_or_item_closes_a_no_list():
    got = findings("There was no melaena, fever, headache, or any history of recent travel abroad.")
    assert got.get("melaena") == "negated" and got.get("headache") == "negated"
    assert got.get("travel") == "negated"


def test_brought_by_a_relative_with_complaints_is_the_patient():
    got = findings("brought in by her brother with complaints of vomiting and fever")
    assert got.get("vomiting") == "present" and got.get("fever") == "present"


def test_a_history_of_hours_duration_is_the_presentation():
    got = findings("admitted with a history of colicky abdominal pain and vomiting of 8 hours' duration")
    assert got.get("vomiting") == "present" and got.get("colicky_pain") == "present"


def test_a_mass_in_the_flank_is_not_flank_pain():
    got = findings("a firm mass in the left flank")
    assert got.get("palpable_mass") == "present" and "flank_pain" not in got
    assert findings("pain in the left flank").get("flank_pain") == "present"


@pytest.mark.parametrize("text", ["she admitted swallowing 40 tablets of paracetamol",
                                  "took 24 acetaminophen pills after an argument"])
def test_a_large_number_of_paracetamol_tablets_is_an_overdose(text):
    assert findings(text).get("paracetamol_overdose") == "present"


def test_two_paracetamol_tablets_are_no_overdose():
    assert "paracetamol_overdose" not in findings("took 2 paracetamol tablets for the headache")


@pytest.mark.parametrize("text, finding", [("she tried an antihistamine for the itch", "anticholinergic_drug"),
                                           ("she has dry skin on her hands", "dry_skin_coarse_hair")])
def test_ordinary_remedies_and_dry_skin_are_not_toxidrome_or_thyroid_signs(text, finding):
    assert finding not in findings(text)


def test_dry_coarse_hair_is_still_read():
    assert findings("dry, coarse hair and slow reflexes").get("dry_skin_coarse_hair") == "present"


def test_past_histories_plural_is_history():
    assert findings("Past histories notable for hypertension.").get("hypertension_history") == "history"


def test_a_value_in_brackets_after_the_name():
    got = findings("lipase (1520 U/L; normal 7-60 U/L)")
    assert got.get("lipase_3x_uln") == "present"


@pytest.mark.parametrize("text, finding, absent", [("platelets 45 x 10^9/L", "thrombocytopenia", "thrombocytosis"),
                                                   ("WBC 3.2 x 109/L", "leukopenia", "leukocytosis")])
def test_a_count_times_ten_to_the_ninth_is_not_a_multiple_of_normal(text, finding, absent):
    got = findings(text)
    assert got.get(finding) == "present" and absent not in got


@pytest.mark.parametrize("text, status", [("left leg pain, redness and swelling", "present"),
                                          ("lower limb numbness and oedema", "present"),
                                          ("no calf pain or swelling", "negated")])
def test_a_limb_with_a_list_ending_in_swelling(text, status):
    assert findings(text).get("leg_swelling") == status


@pytest.mark.parametrize("text, status", [("MAP 54 mmHg despite fluids", "present"),
                                          ("mean arterial pressure of 60", "present"),
                                          ("MAP 88", "negated")])
def test_mean_arterial_pressure(text, status):
    assert findings(text).get("hypotension") == status


@pytest.mark.parametrize("text, finding, status", [("abd pain since last night", "abdominal_pain", "present"),
                                                   ("BRBPR twice today", "haematochezia", "present"),
                                                   ("s/p lap CCY in 2018", "cholecystectomy_history", "history"),
                                                   ("h/o EtOH abuse", "heavy_alcohol_use", "history"),
                                                   ("TTP in epigastrium", "epigastric_pain", "present")])
def test_chart_abbreviations(text, finding, status):
    assert findings(text).get(finding) == status


def test_ccy_removes_the_gallbladder():
    assert "gallbladder" in read("RUQ pain, s/p CCY").removed


def test_insulin_units_are_not_alcohol_units():
    got = findings("on NPH insulin, 30 units in the morning")
    assert "heavy_alcohol_use" not in got
    assert findings("drinks 50 units a week").get("heavy_alcohol_use") == "present"
