"""Reader fixes of this round, on clauses written for these tests: a denied risk factor ends at its clause's verb,
urine results denied in prose, rib fractures written as a predicate, NSAIDs by brand, and a rising symmetric
weakness after an infection."""
import pytest

from MedSORALib.differential.reader import read


def _status(text, finding):
    return read(text).status_of(finding)


# -- a negation of a noun phrase ends at the verb of its clause ------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("an elderly woman taking no anticoagulant has abrupt severe central abdominal pain",
     {"anticoagulant_use": "negated", "sudden_onset_pain": "present"}),
    ("he is on no blood thinners and is now vomiting bile",
     {"anticoagulant_use": "negated", "vomiting": "present"}),
    ("a smoker with no known aspirin use has had black tarry stools since Sunday",
     {"nsaid_use": "negated", "melaena": "present"}),
    # the verb right after the negation is the negation's own verb: what follows stays denied
    ("she has not had any vomiting", {"vomiting": "negated"}),
    ("I don't really have any diarrhoea", {"diarrhoea": "negated"}),
    ("no one at home has had jaundice", {"jaundice": "negated"}),
    # "off" denies what it is off, not what the clause adds
    ("off his food and vomiting since Friday", {"anorexia": "present", "vomiting": "present"}),
    ("off apixaban with fresh blood per rectum", {"anticoagulant_use": "negated", "haematochezia": "present"}),
    # the negation of a history ends at the verb of presentation
    ("a woman with no relevant past history presented to the clinic with burning epigastric pain",
     {"epigastric_pain": "present"}),
    # a verb of denial after a span denies what follows it, not the span; nor does a denial across a contrast
    ("she had dark urine and denied any itching", {"dark_urine": "present", "pruritus": "negated"}),
    ("reports nausea but denied vomiting", {"nausea": "present", "vomiting": "negated"}),
    ("Murphy's sign was clearly negative", {"murphy_sign": "negated"}),
    ("rebound tenderness was denied by the patient", {"rebound_tenderness": "negated"}),
    # the past ends where the patient is brought to care; "referred for" doubts only a test or an operation
    ("a woman with a history of asthma was admitted to the ward with right upper quadrant pain",
     {"atopy": "history", "ruq_pain": "present"}),
    ("she was referred for vomiting after every meal", {"vomiting": "present"}),
    ("referred for a laparoscopic cholecystectomy", {"cholecystectomy_history": "uncertain"}),
    ("a history of peripheral vascular disease and smokes ten a day", {"smoking": "present"}),
    # a denial inside the matched words is not drinking; "no alcohol" itself denies it
    ("he drinks no alcohol at all", {"alcohol_use": "negated"}),
    ("she drinks two glasses of wine most nights", {"alcohol_use": "present"}),
])
def test_negation_ends_at_the_clause_verb(text, expected):
    r = read(text)
    for finding, status in expected.items():
        assert r.status_of(finding) == status, (finding, r.to_dict())


# -- urine results denied in prose ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "her urine showed no blood",
    "urine dip: no blood",
    "dipstick - nil blood",
    "the urinalysis was negative for blood/nitrites",
    "urine dipstick showed no blood or protein",
])
def test_urine_blood_denied(text):
    assert _status(text, "microscopic_haematuria") == "negated"


@pytest.mark.parametrize("text, finding", [
    ("urinalysis negative for blood/nitrites", "nitrites_positive"),
    ("urine dip: no nitrites, no leucocytes", "nitrites_positive"),
    ("urine dip: no nitrites, no leucocytes", "pyuria"),
])
def test_other_urine_flags_denied(text, finding):
    assert _status(text, finding) == "negated"


@pytest.mark.parametrize("text", ["urine dipstick positive for blood", "dipstick: blood ++",
                                  "the urine dipstick showed blood"])
def test_urine_blood_still_read_when_present(text):
    assert _status(text, "microscopic_haematuria") == "present"


def test_slash_joins_two_lab_names():
    assert _status("ALT/AST both raised", "transaminases_raised") == "present"


# -- rib fractures ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["two of his left ribs are fractured", "the 11th rib was broken in the fall",
                                  "fractured right 11th rib", "fractured 10th and 11th ribs"])
def test_rib_fracture_as_predicate(text):
    assert _status(text, "rib_fracture") == "present"


def test_rib_fracture_denied():
    assert _status("no ribs are fractured on the film", "rib_fracture") == "negated"


# -- NSAIDs and aspirin by brand and generic name --------------------------------------------------------------------
@pytest.mark.parametrize("text", ["has been taking Nurofen for a sore knee", "two Aleve a day for her back",
                                  "uses Voltaren gel", "an Excedrin habit for migraines", "on Ecotrin 81 mg",
                                  "regular meloxicam", "ketorolac injections last week", "Motrin as needed"])
def test_nsaid_brands(text):
    assert _status(text, "nsaid_use") == "present"


def test_nsaid_brand_denied():
    assert _status("she takes no Advil or other painkillers", "nsaid_use") == "negated"


# -- a rising symmetric weakness -------------------------------------------------------------------------------------
def test_guillain_barre_like_clause():
    r = read("progressive ascending leg weakness with pins and needles in the toes and absent ankle jerks, "
             "ten days after a bout of diarrhoea")
    assert r.status_of("ascending_weakness") == "present"
    assert r.status_of("areflexia") == "present"
    assert r.status_of("muscle_weakness") == "present"
    assert r.status_of("recent_viral_illness") == "present"
    assert r.status_of("sciatica") is None  # both legs weak is not one leg's root pain


@pytest.mark.parametrize("text", ["numbness creeping up from his feet over three days",
                                  "weakness of both legs that has moved up to the arms"])
def test_ascending_wordings(text):
    assert _status(text, "ascending_weakness") == "present"


@pytest.mark.parametrize("text", ["weakness climbing stairs", "right leg weakness after a disc prolapse"])
def test_not_ascending(text):
    assert _status(text, "ascending_weakness") is None


def test_one_leg_weakness_still_reads_as_root_pain():
    assert _status("left leg weakness and numbness below the knee", "sciatica") == "present"


# -- wording families of examinations and courses --------------------------------------------------------------------
@pytest.mark.parametrize("text", ["on examination the left flank was tender", "right flank tenderness",
                                  "a tender left loin", "exquisite tenderness over the right renal angle",
                                  "costovertebral angle tenderness on the left", "positive CVA tenderness"])
def test_loin_and_flank_tenderness_is_the_renal_angle_sign(text):
    assert _status(text, "costovertebral_angle_tenderness") == "present"


def test_flank_tenderness_denied():
    assert _status("no flank tenderness", "costovertebral_angle_tenderness") == "negated"


@pytest.mark.parametrize("text, finding", [
    ("dull ache in the left lumbar region", "flank_pain"),
    ("pain in the right lumbar fossa for a day", "flank_pain"),
    ("chronic lumbar pain after lifting", "back_pain"),
])
def test_lumbar_regions(text, finding):
    assert _status(text, finding) == "present"


def test_plain_lumbar_pain_is_not_the_flank():
    assert _status("chronic lumbar pain after lifting", "flank_pain") is None


@pytest.mark.parametrize("text", ["she has put on 9 kg since the summer", "a rise in body weight",
                                  "his weight has gone up by a stone", "weight increase of 6 kg over a year"])
def test_weight_gain_wordings(text):
    assert _status(text, "weight_gain") == "present"


@pytest.mark.parametrize("text", ["bloating that has been getting gradually worse over the past 3 years",
                                  "upper abdominal discomfort persisting for six months",
                                  "tiredness worsening over several months"])
def test_long_courses(text):
    assert _status(text, "symptoms_for_months") == "present"


def test_long_history_before_a_long_description_of_the_pain():
    text = "a 5-month history of slowly worsening dull left-sided abdominal and flank pain"
    assert _status(text, "symptoms_for_months") == "present"


def test_short_course_is_not_months():
    assert _status("pain getting worse over the last 2 days", "symptoms_for_months") is None


# -- pain that moves from the navel to the right lower quadrant ------------------------------------------------
@pytest.mark.parametrize("text", ["central pain that moved to the right iliac fossa overnight",
                                  "pain that shifted from the navel to the RLQ",
                                  "periumbilical pain which migrated to the right lower quadrant"])
def test_pain_migrating_to_the_right_lower_quadrant(text):
    r = read(text)
    assert r.status_of("pain_migrating_to_rlq") == "present"
    assert r.status_of("travel") is None


def test_migration_of_a_person_is_still_travel():
    assert _status("she migrated from Bangladesh last spring", "travel") is not None


@pytest.mark.parametrize("text, finding", [
    ("redness and swelling: swelling of the right hemiscrotum since the morning", "scrotal_swelling"),
    ("right abdomen pain for a week", "abdominal_pain"),
    ("chills and body aches for two days", "myalgia"),
])
def test_more_everyday_wordings(text, finding):
    assert _status(text, finding) == "present"
