"""Wording families of plain (lay) and case-report text that the reader reads as a clinician does, each with near
misses that must not read: pain over the whole belly, pain in a named part of the belly or under the ribs, pain
that woke the patient or came "sudden, severe", neither wind nor stool passed, an organ felt under a costal margin,
a tan no sun explains, blood "when I was sick", the shakes with a fever, a spleen "removed", "haven't got" as a
denial, and a relative who tells the story rather than has the disease."""
from __future__ import annotations

import pytest

from MedSORALib.differential.reader import read


def _status(text: str) -> dict[str, str]:
    return {f.id: f.status for f in read(text).findings}


@pytest.mark.parametrize("text, finding", [
    # pain over the whole belly
    ("He has had pain across his whole abdomen since the morning.", "diffuse_abdominal_pain"),
    ("On examination the entire abdomen was tender.", "diffuse_abdominal_pain"),
    ("The ache spread over her entire belly within an hour.", "diffuse_abdominal_pain"),
    ("There is pain everywhere in my tummy.", "diffuse_abdominal_pain"),
    ("Abdomen soft but tender throughout.", "diffuse_abdominal_pain"),
    ("She was tender all over the abdomen.", "diffuse_abdominal_pain"),
    # pain in a named part of the belly, among other places, or under the ribs
    ("Two days of cramping in the lower and middle abdomen.", "abdominal_pain"),
    ("Aching pain in the lower abdomen since Sunday.", "abdominal_pain"),
    ("Deep pain in her back, hips and abdomen.", "abdominal_pain"),
    ("A burning under my ribs after supper.", "abdominal_pain"),
    ("The ache sits low in the middle of his belly.", "abdominal_pain"),
    # onset: woken by severe pain, a list of adjectives after "sudden"
    ("At three in the morning she was woken by excruciating pain.", "sudden_onset_pain"),
    ("I shot up out of bed with a terrible stabbing pain.", "sudden_onset_pain"),
    ("He describes a sudden, tearing, severe pain.", "sudden_onset_pain"),
    ("All of a sudden I had the most awful pain.", "sudden_onset_pain"),
    # neither wind nor stool
    ("He has passed neither flatus nor stool since Friday.", "obstipation"),
    ("She had passed no stool or flatus for two days.", "obstipation"),
    # an organ felt under a costal margin
    ("A firm organ was felt three fingers below the left costal margin.", "splenomegaly"),
    ("Smooth edges were palpable under both costal margins.", "splenomegaly"),
    ("Smooth edges were palpable under both costal margins.", "hepatomegaly"),
    ("A pulsatile edge was palpable beneath the right costal margin.", "hepatomegaly"),
    # a tan no holiday explains
    ("People ask me where I got my tan.", "hyperpigmentation"),
    # blood when vomiting, in plain words
    ("There were streaks of blood after she was sick.", "haematemesis"),
    # the shakes with a fever are rigors
    ("A fever and the shakes since last night.", "rigors"),
    ("He has the shakes with a high temperature.", "rigors"),
])
def test_family_reads_as_the_finding(text, finding):
    assert _status(text).get(finding) == "present"


@pytest.mark.parametrize("text, finding", [
    ("The pain was in his whole leg.", "diffuse_abdominal_pain"),
    ("She had pain in the right lower abdomen.", "diffuse_abdominal_pain"),
    ("Pain in his lower back.", "abdominal_pain"),
    ("Aching in her back, hips and knees.", "abdominal_pain"),
    ("He woke up with a headache.", "sudden_onset_pain"),
    ("She woke with mild pain in the morning.", "sudden_onset_pain"),
    ("He passed both wind and stool this morning.", "obstipation"),
    ("A firm mass was felt under the left costal margin.", "splenomegaly"),   # a mass is not an organ
    ("She got a tan on holiday in Spain.", "hyperpigmentation"),
    ("I saw blood in my urine when I was sick with flu.", "haematemesis"),
    ("I get the shakes in the morning until I have a drink.", "rigors"),
    ("He had the shakes after stopping drinking.", "rigors"),
    ("The nurse removed the spleen dressing.", "splenectomy_history"),
    ("I woke up in the night with terrible pain.", "frequency"),   # woken by pain, not to pass water
])
def test_near_misses_do_not_read(text, finding):
    assert _status(text).get(finding) != "present"


def test_an_organ_under_the_costal_margin_is_not_pain_there():
    """The costal margin named as the landmark of a palpable organ is the organ's, not a pain in that quadrant;
    pain there in its own words still reads."""
    status = _status("An enlarged organ was palpable below the left costal margin.")
    assert status.get("splenomegaly") == "present" and "luq_pain" not in status
    status = _status("A smooth edge was felt below the right costal margin.")
    assert status.get("hepatomegaly") == "present" and "ruq_pain" not in status
    assert _status("Pain below the left costal margin.").get("luq_pain") == "present"


def test_waking_at_night_to_pass_water_is_still_frequency():
    assert _status("I get up four times a night to pee.").get("frequency") == "present"
    assert _status("She is up in the night to go to the toilet.").get("frequency") == "present"


def test_have_not_got_is_a_denial():
    assert _status("I haven't got a temperature.").get("fever") == "negated"
    assert _status("She's not got any diarrhoea.").get("diarrhoea") == "negated"
    assert _status("He has not got any vomiting but has pain in his side.") == {"vomiting": "negated",
                                                                             "flank_pain": "present"}
    assert _status("I've got a temperature.").get("fever") == "present"


def test_a_relative_who_tells_the_story_is_not_family_history():
    """"his mother says he has been vomiting": the mother reports, the son is ill; "her mother has diabetes" is
    still a relative's disease."""
    status = _status("Her mother says she has been off her food and vomiting.")
    assert status.get("anorexia") == "present" and status.get("vomiting") == "present"
    assert "family_history" not in status
    assert _status("His father noticed that he had turned yellow.").get("jaundice") == "present"
    assert _status("Her mother has diabetes.").get("diabetes") == "family"
    assert _status("His father had bowel cancer.").get("family_history") == "present"


def test_a_removed_spleen_in_plain_words():
    assert _status("They removed my spleen after the accident.").get("splenectomy_history") in ("present",
                                                                                              "history")
    assert _status("The surgeons took his spleen out.").get("splenectomy_history") in ("present", "history")


@pytest.mark.parametrize("text, finding", [
    # the upper belly in the patient's own possessive
    ("A burning pain in my upper belly after meals.", "epigastric_pain"),
    # vomiting, appetite and weight in plain words
    ("He could not keep any fluids down overnight.", "vomiting"),
    ("She has barely eaten for four days.", "anorexia"),
    ("He had lost a substantial amount of weight since the spring.", "weight_loss"),
    # stool, heart, fainting and swallowing
    ("Her motions were the colour of putty.", "pale_stools"),
    ("My heart kept hammering at night.", "palpitations"),
    ("He lost consciousness for a minute at the bus stop.", "syncope"),
    ("Swallowing had become really painful.", "odynophagia"),
    ("Bread and meat would not go down.", "dysphagia"),
    # a leg that has become swollen, with the adverb inside the phrase
    ("Her ankles had rapidly become swollen.", "leg_swelling"),
    ("His right calf had progressively swollen.", "leg_swelling"),
    # meals and the pain
    ("The pain comes on whenever she eats fried food.", "pain_after_fatty_meal"),
    ("Food makes the pain better.", "pain_relieved_by_food"),
    ("His side hurts on the left.", "flank_pain"),
])
def test_more_plain_wordings_read(text, finding):
    assert _status(text).get(finding) == "present"


@pytest.mark.parametrize("text, finding", [
    ("I can keep food down now.", "vomiting"),
    ("She has eaten less fried food since her diet.", "pain_after_fatty_meal"),
    ("He ate a lot of fried food at the party.", "pain_after_fatty_meal"),
    ("He has never lost consciousness.", "syncope"),
    ("The side effects are mild.", "flank_pain"),
    ("The colour of her urine is normal.", "pale_stools"),
    ("Sudden breathlessness and pleuritic chest pain.", "sudden_onset_pain"),   # sudden is the breathlessness
])
def test_more_near_misses_do_not_read(text, finding):
    assert _status(text).get(finding) != "present"


def test_doubtful_own_denial_and_childhood_operations():
    """"I don't think I've had a temperature" denies the fever; an operation "when I was twelve" is the past."""
    assert _status("I don't think I've had a temperature.").get("fever") == "negated"
    assert _status("I had my appendix out when I was twelve.").get("appendicectomy_history") == "history"
    assert _status("She had her womb removed when she was 40.").get("hysterectomy_history") == "history"
    # the presentation after it is still present
    status = _status("I had my gallbladder out when I was 30 and now I have pain under my ribs.")
    assert status.get("cholecystectomy_history") == "history" and status.get("abdominal_pain") == "present"


def test_a_tender_organ_edge_is_also_tenderness_there():
    status = _status("A tender, smooth, pulsating edge below the right ribs.")
    assert status.get("hepatomegaly") == "present" and status.get("ruq_pain") == "present"


@pytest.mark.parametrize("text, finding", [
    ("Her guts have been killing her all day.", "abdominal_pain"),
    ("It burns behind my breastbone as I swallow.", "odynophagia"),
    ("His kidneys are aching.", "flank_pain"),
    ("I'm up to wee all night.", "frequency"),
    ("He was coughing up flecks of blood.", "haemoptysis"),
    ("She has come out yellow.", "jaundice"),
    ("He keeps bringing up sour stuff.", "regurgitation"),
    ("She takes injections that thin her blood.", "anticoagulant_use"),
    ("Her uterus and both ovaries were removed.", "hysterectomy_history"),
    ("He has two pints of lager after work.", "alcohol_use"),
    ("They have just come back from backpacking.", "travel"),
    ("I feel absolutely rotten.", "malaise"),
])
def test_lay_wordings_of_the_symptom_review(text, finding):
    assert _status(text).get(finding) in ("present", "history")


@pytest.mark.parametrize("text, finding", [
    ("A glass of water eases it.", "alcohol_use"),
    ("He came back from the shops.", "travel"),
    ("I came back from holiday in Cornwall.", "travel"),   # a holiday is not foreign travel
    ("My kidneys are fine.", "flank_pain"),
    ("I felt terrible pain in my side.", "malaise"),       # the pain, not feeling unwell
    ("I feel awful about bothering you.", "malaise"),
    ("My belly is not swollen.", "abdominal_distension"),
])
def test_symptom_review_near_misses(text, finding):
    assert _status(text).get(finding) != "present"


def test_denials_of_smoking_and_of_drinking_are_kept_apart():
    """A teetotaller may smoke and a non-smoker drink: each denial denies its own habit only."""
    status = _status("She doesn't smoke but drinks a bottle of wine a night.")
    assert status["smoking"] == "negated" and status["heavy_alcohol_use"] == "present"
    status = _status("He denies drinking and smokes ten a day.")
    assert status["alcohol_use"] == "negated" and status["smoking"] == "present"
    assert _status("He is teetotal.").get("smoking") is None
    assert _status("No alcohol or tobacco.") == {"alcohol_use": "negated", "smoking": "negated"}
    # no drink for some days is a recent stop, not a denial of drinking
    assert _status("He has had no alcohol since Monday.").get("alcohol_use") != "negated"


def test_a_belly_said_not_to_be_swollen_is_denied():
    assert _status("Her belly is not swollen and she has not vomited.") == {"abdominal_distension": "negated",
                                                                         "vomiting": "negated"}
    assert _status("My tummy hasn't got any bigger.").get("abdominal_distension") == "negated"


@pytest.mark.parametrize("text, present", [
    ("7 lb lost since Christmas.", True),
    ("He is 5 kg lighter than in the spring.", True),
    ("She has gone down two dress sizes.", True),
    ("Weight down by 4 kg.", True),
    ("The 5 kg bag he lost at the airport.", False),
    ("He has put on 5 kg.", False),
])
def test_weight_lost_with_the_number_first(text, present):
    assert (_status(text).get("weight_loss") == "present") is present
