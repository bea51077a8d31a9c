"""The reader on plain words for common findings: a side word or an adverb inside "the left leg has suddenly
become swollen", food "hard to get down", "felt sick", a heart "racing", a belly "swelling", sugar "falling low",
and a denial that ends at its clause's verb ("on no regular medicines calls an ambulance for abdominal pain")."""
from __future__ import annotations

import pytest

from MedSORALib.differential.reader import read


def _status(text: str) -> dict[str, str]:
    return {f.id: f.status for f in read(text).findings}


@pytest.mark.parametrize("text, finding", [
    ("Her right leg has suddenly become swollen and sore.", "unilateral_leg_swelling"),
    ("A swollen right calf and a swollen left leg.", "unilateral_leg_swelling"),
    ("His left leg is visibly bigger than the right.", "unilateral_leg_swelling"),
    ("Since the flight her left leg had become swollen.", "leg_swelling"),
    ("Bread and meat have been hard to get down for weeks.", "dysphagia"),
    ("It is difficult to get solids down now.", "dysphagia"),
    ("She felt sick all evening.", "nausea"),
    ("My heart was racing and I was sweating.", "palpitations"),
    ("The pain sat right in the centre of my upper tummy.", "epigastric_pain"),
    ("He drinks heavily at weekends.", "heavy_alcohol_use"),
    ("Two weeks of a swelling belly and poor appetite.", "abdominal_distension"),
    ("Her blood sugar keeps dropping low between meals.", "hypoglycaemia"),
    ("Chest pain for a day, beginning an hour after violent retching.", "vomiting_then_chest_pain"),
    ("Her skin has gone much darker since the spring.", "hyperpigmentation"),
    ("He feels constantly full and has lost weight.", "early_satiety"),
    ("She sat with her fist pressed against her breastbone.", "chest_pain"),
    ("Colicky pain from the right flank into the groin.", "pain_radiating_to_groin"),
    ("An ache in the back running down into his right groin.", "pain_radiating_to_groin"),
    ("Retrosternal burning after large meals.", "heartburn"),
    ("A burning feeling behind the breastbone at night.", "heartburn"),
    ("Unequal arm blood pressures on arrival.", "pulse_deficit"),
    ("The blood pressure differed by 30 mmHg between the arms.", "pulse_deficit"),
    ("It stings when he passes water.", "dysuria"),
    ("The veins over her tummy stand out.", "abdominal_wall_veins"),
    ("His feet and belly have swollen up.", "leg_swelling"),
    ("She drinks far too much at weekends.", "heavy_alcohol_use"),
    ("Fever with the shivers since last night.", "rigors"),
    ("His potassium keeps coming back low.", "potassium_low"),
    ("Her blood pressure stays high despite four tablets.", "resistant_hypertension"),
    ("He retched for an hour; he has vomited twice since and now has chest pain.", "vomiting_then_chest_pain"),
])
def test_plain_words_read_as_the_finding(text, finding):
    assert _status(text).get(finding) == "present"


@pytest.mark.parametrize("text, finding", [
    ("She cannot keep food down.", "dysphagia"),         # that is vomiting
    ("I felt sick of waiting in the queue.", "nausea"),
    ("Both legs are fine; no calf swelling.", "unilateral_leg_swelling"),
    ("Her skin was not darker than usual.", "hyperpigmentation"),
    ("He ran to the groin clinic.", "pain_radiating_to_groin"),
    ("She drinks a lot of water in the heat.", "heavy_alcohol_use"),
    ("He has been drinking litres of water every day.", "heavy_alcohol_use"),
    ("His potassium was not low.", "potassium_low"),
    ("He ate and drank too much at the wedding.", "heavy_alcohol_use"),   # a binge, not a habit
    ("No vomiting; now chest pain since noon.", "vomiting_then_chest_pain"),
])
def test_near_misses_are_not_read_as_present(text, finding):
    assert _status(text).get(finding) != "present"


def test_a_denial_ends_at_its_clauses_verb():
    """"on no regular medicines calls an ambulance for abdominal pain": the pain is the presentation; what follows
    "no" up to the verb (the medicines) stays denied."""
    assert _status("A man on no regular medicines calls an ambulance for abdominal pain.")["abdominal_pain"] == \
        "present"
    assert _status("She had no fever, went to her doctor with back pain.") == {"fever": "negated",
                                                                              "back_pain": "present"}
    assert _status("He has no difficulty getting food down.").get("dysphagia") == "negated"


def test_swallowing_said_to_be_hard():
    assert _status("Swallowing has become difficult over two months.").get("dysphagia") == "present"
    assert _status("Swallowing was not difficult.").get("dysphagia") != "present"


def test_a_sided_shoulder_radiation_is_a_shoulder_radiation():
    """"radiating to R scapula" reads the right shoulder's finding and the sideless radiation with it, as "radiating
    to the right shoulder" does; a denied one is denied on both."""
    for text in ("Epigastric pain radiating to R scapula.", "Pain radiating to the right shoulder."):
        status = _status(text)
        assert status["right_shoulder_pain"] == status["pain_radiating_to_shoulder"] == "present"
    status = _status("No pain in the left shoulder tip.")
    assert status["left_shoulder_pain"] == status["pain_radiating_to_shoulder"] == "negated"


def test_a_new_mother_with_both_legs_swollen_is_a_caval_thrombosis_first():
    """The weeks after delivery are the time of highest venous thrombosis risk (Pomp 2008): with both legs swollen
    the caval thrombosis leads; breathlessness lying flat makes it the heart's (peripartum cardiomyopathy)."""
    from MedSORALib.differential.differential import differential

    legs = differential("Post-partum woman, both legs swollen")
    assert legs.top.disease.id == "ivc_thrombosis" and legs.scope == "modelled"
    heart = differential("two weeks after giving birth she is breathless lying flat and her legs are swollen")
    assert heart.top.disease.id == "peripartum_cardiomyopathy"


def test_an_amount_over_a_time_is_not_a_date_to_come():
    """"in three months" after a weight lost is the time it took; after an operation it is a plan."""
    assert _status("Weight down 6 kg in three months.")["weight_loss"] == "present"
    assert _status("She has lost 10 lb in two months.")["weight_loss"] == "present"
    assert _status("Cholecystectomy in six weeks.")["cholecystectomy_history"] == "uncertain"


@pytest.mark.parametrize("text, removed", [
    ("They took out his gallbladder in 2010.", ("gallbladder",)),
    ("Keyhole surgery to remove her gallbladder last year.", ("gallbladder",)),
    ("The surgeon removed her left kidney.", ("kidney_left",)),
    ("An operation to remove his spleen after a crash.", ("spleen",)),
    ("They took her stomach out for cancer.", ("stomach",)),
    ("They removed the gallbladder stones at endoscopy.", ()),
])
def test_a_removal_said_verb_first_removes_the_organ(text, removed):
    assert read(text).removed == removed
