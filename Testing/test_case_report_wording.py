"""Wording of published case reports (our own sentences)."""
from __future__ import annotations

import pytest

from MedSORALib.differential.context import PRESENT
from MedSORALib.differential.differential import differential
from MedSORALib.differential.reader import read

from differential_helpers import present as _present


@pytest.mark.parametrize("text", [
    "Ten days of fever and aching after visiting Nigeria for a wedding.",
    "She has had loose stools since a trip to rural Cambodia.",
    "He stayed with his cousins in Ghana over the summer and now has a fever.",
    "Fever and chills after a three-week vacation in Peru.",
])
def test_travel_to_a_named_region_is_read(text):
    assert "travel" in _present(text)


@pytest.mark.parametrize("text", [
    "Fever after visiting his GP for a cough.",
    "After visiting the toilet she felt faint.",
    "He lives in a flat with his daughter.",
])
def test_visits_that_are_no_travel_are_not_read(text):
    assert "travel" not in _present(text)


def test_bloody_slime_vomited_is_haematemesis_but_bloody_diarrhoea_is_not():
    assert "haematemesis" in _present('An old man with a stent graft is vomiting "bloody slime" this morning.')
    assert "haematemesis" in _present("She vomited blood-streaked mucus twice overnight.")
    assert "haematemesis" not in _present("Vomiting and bloody diarrhoea since the barbecue.")


def test_dry_heaves_and_phlegmasia():
    assert "unproductive_retching" in _present("Severe upper abdominal pain with repeated dry heaves.")
    assert "unilateral_leg_swelling" in _present("A swollen, dusky blue left leg: phlegmasia cerulea dolens.")


def test_travel_moves_a_fever_with_jaundice_toward_travel_diseases():
    """The travel finding is weighted: the same presentation after a trip ranks travel-linked diagnoses higher."""
    home = differential("Fever, vomiting and yellow eyes for four days in a 30-year-old man.")
    away = differential("Fever, vomiting and yellow eyes for four days in a 30-year-old man after visiting India.")
    travel_rows = {d.disease.name for d in away.diagnoses if any(w.id == "travel" for w in d.disease.findings)}
    assert travel_rows
    share = lambda res: sum(d.probability for d in res.diagnoses if d.disease.name in travel_rows)  # noqa: E731
    assert share(away) > share(home) + 0.05


def _status(text):
    return {f.id: f.status for f in read(text).findings}


def test_medical_history_significant_for_and_years_prior_are_the_past():
    from MedSORALib.differential.context import HISTORY

    old = _status("Her medical history was significant for a car crash 3 years prior with three rib fractures; today "
                  "she has sudden upper abdominal pain.")
    assert old["trauma"] == HISTORY and old["rib_fracture"] == HISTORY
    assert old["epigastric_pain"] == PRESENT and old["sudden_onset_pain"] == PRESENT
    assert _status("He fell off a ladder 2 years prior and broke a rib.")["trauma"] == HISTORY
    assert _status("He fell off a ladder 2 days prior to admission.")["trauma"] == PRESENT
    listed = _status("His medical history is notable for diabetes and gallstones; he now has fever.")
    assert listed["gallstones_history"] == HISTORY and listed["fever"] == PRESENT


def test_a_drug_for_diabetes_is_no_hypoglycaemia():
    assert _status("He takes metformin, an oral hypoglycaemic drug, for ten years.").get("hypoglycaemia") is None
    assert _status("She is on oral hypoglycaemics and gliclazide.")["diabetes"] == PRESENT
    assert "hypoglycaemia" not in _status("on oral hypoglycaemics")
    assert _status("Recurrent hypoglycaemic episodes relieved by eating.")["hypoglycaemia"] == PRESENT


def test_pain_that_moves_to_the_back_radiates_there():
    assert "pain_radiating_to_back" in _present("Upper abdominal pain that now and then moves round to her back.")
    assert "pain_radiating_to_back" not in _present("She moved her back awkwardly while lifting.")


def test_st_t_changes_are_the_ecg_not_a_temperature():
    found = _status("Upper abdominal pain; the ECG has ST-T elevation in the anterior leads.")
    assert found.get("ecg_ischaemia") == PRESENT and "fever" not in found
    assert _status("Obs: T 38.6, HR 112.")["fever"] == PRESENT
    assert "fever" not in _status("T elevated on the chart")


def test_a_lowered_consciousness_and_sky_high_inflammatory_markers():
    assert _status("A boy with belly pain and a mild disturbance of consciousness.")["confusion"] == PRESENT
    assert _status("She arrived with a reduced level of consciousness.")["confusion"] == PRESENT
    assert _status("Alert, no impairment of consciousness.").get("confusion") != PRESENT
    assert _status("Inflammatory markers were sky high.")["crp_raised"] == PRESENT


def test_an_organ_edge_felt_below_the_ribs_ill_housemates_and_a_recent_flu_like_illness():
    assert _status("On examination the tip was felt three fingerbreadths below the left costal margin.")[
        "splenomegaly"] == PRESENT
    assert _status("An edge is palpable 4 cm below the right costal margin.")["hepatomegaly"] == PRESENT
    assert "splenomegaly" not in _status("Tender just below the left costal margin.")
    assert _status("Two of his housemates have had the same vomiting.")["sick_contacts"] == PRESENT
    assert "recent_viral_illness" in _status("She had a flu-like illness the week before and now has left shoulder pain.")


def test_more_case_report_wordings():
    assert _status("Severe pain in the upper abdomen since lunch.")["epigastric_pain"] == PRESENT
    assert _status("A heavy-set 45-year-old man.")["obesity"] == PRESENT
    assert _status("She has taken the combined pill for six years.")["oral_contraceptive_use"] == PRESENT
    assert _status("No bowel movement for three days and bloating.")["constipation"] == PRESENT
    assert _status("He has an aching right testicle.")["testicular_pain"] == PRESENT
    assert _status("The boy has not been immunised.")["unvaccinated"] == PRESENT
    assert "unvaccinated" not in _status("She had not been vaccinated against COVID-19.")


# -- a time that opens its sentence governs the sentence ------------------------------------------
@pytest.mark.parametrize("text, past, now", [
    ("Ten years ago, jaundice after a viral illness. Now weight loss and pale stools.",
     {"jaundice"}, {"weight_loss", "pale_stools"}),
    ("As a child, recurrent jaundice; now itching and dark urine.", {"jaundice"}, {"pruritus", "dark_urine"}),
    ("Two years ago, vomiting blood, treated with banding, now black stools for 2 days.",
     {"haematemesis"}, {"melaena"}),
    ("In 2015, jaundice and vomiting, then black stools this week.", {"jaundice", "vomiting"}, {"melaena"}),
])
def test_opening_time_makes_its_sentence_history(text, past, now):
    status = {f.id: f.status for f in read(text).findings}
    assert {k for k in past if status.get(k) == "history"} == past, status
    assert {k for k in now if status.get(k) == PRESENT} == now, status


def test_a_time_inside_a_clause_still_governs_its_segment_only():
    # the time is not alone in its segment: the comma ends its scope as before
    status = {f.id: f.status for f in read("jaundice ten years ago, now vomiting blood").findings}
    assert status == {"jaundice": "history", "haematemesis": PRESENT}
    # a time that opens a sentence but says nothing past it governs nothing of the next sentence
    status = {f.id: f.status for f in read("Five years ago, nothing of note. Now jaundice.").findings}
    assert status == {"jaundice": PRESENT}
