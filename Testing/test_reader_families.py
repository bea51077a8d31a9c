"""Wording families of case reports and teaching files, in clauses written for these tests: occult blood,
lists after "history of", coordinated places of pain, masses by region, lab values in prose."""
import pytest

from MedSORALib.differential.reader import read


def _status(text, finding):
    return read(text).status_of(finding)


@pytest.mark.parametrize("text, status", [
    ("stool guaiac positive on rectal examination", "present"),
    ("FOBT positive at screening two weeks ago", "present"),
    ("a positive faecal immunochemical test", "present"),
    ("heme-positive brown stool", "present"),
    ("occult blood in the stool on two samples", "present"),
    ("the FIT came back positive", "present"),
    ("a negative FOBT last month", "negated"),
    ("guaiac-negative stool", "negated"),
    ("no occult blood in the stool", "negated"),
    ("fit and well until this week", None),
    ("FIT test was negative", "negated"),
])
def test_occult_blood(text, status):
    assert _status(text, "occult_blood") == status


def test_occult_blood_is_not_also_visible_blood():
    r = read("occult blood in the stool, no visible bleeding")
    assert r.status_of("occult_blood") == "present"
    assert r.status_of("haematochezia") != "present"


# -- a list after "history of" is all history; the presentation after it is not ---------------------------------
@pytest.mark.parametrize("text, expected", [
    ("A 61-year-old woman with a history of diabetes, anxiety, and asthma presented with vomiting.",
     {"diabetes": "history", "anxiety": "history", "atopy": "history", "vomiting": "present"}),
    ("Past medical history of heart failure, anxiety and gallstones; now epigastric pain.",
     {"anxiety": "history", "gallstones_history": "history", "epigastric_pain": "present"}),
    ("He has a family history of diabetes, osteoporosis and bowel cancer.",
     {"osteoporosis": "family", "malignancy_history": "family"}),
    # the items of the presentation end the past: a recent time, "today", a verb
    ("a history of gallstones, fever and vomiting for 3 days",
     {"gallstones_history": "history", "fever": "present", "vomiting": "present"}),
    ("a history of peptic ulcer, epigastric pain and melaena today",
     {"epigastric_pain": "present", "melaena": "present"}),
    ("a history of heavy drinking, smokes 20 a day, and has vomiting",
     {"smoking": "present", "vomiting": "present"}),
    ("history of hypertension, presenting with fever and rigors", {"fever": "present", "rigors": "present"}),
    # a denied history denies its whole list
    ("she denies a history of alcohol abuse, drug use, and smoking",
     {"alcohol_use": "negated", "smoking": "negated"}),
])
def test_history_lists(text, expected):
    r = read(text)
    for finding, status in expected.items():
        assert r.status_of(finding) == status, (finding, r.to_dict())


# -- places of pain joined before one noun -----------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("she denies any chest or back pain", {"chest_pain": "negated", "back_pain": "negated"}),
    ("sudden retrosternal and upper abdominal pain", {"retrosternal_pain": "present", "epigastric_pain": "present"}),
    ("chest, back and abdominal pain since noon",
     {"chest_pain": "present", "back_pain": "present", "abdominal_pain": "present"}),
    ("no flank or suprapubic tenderness", {"flank_pain": "negated", "suprapubic_pain": "negated"}),
    ("centrally-located abdominal and back pain", {"periumbilical_pain": "present", "back_pain": "present"}),
])
def test_coordinated_places_of_pain(text, expected):
    r = read(text)
    for finding, status in expected.items():
        assert r.status_of(finding) == status, (finding, r.to_dict())


def test_one_place_with_its_noun_reads_once():
    r = read("right flank pain and fever")
    assert [f.id for f in r.present()] == ["flank_pain", "fever"]


# -- a mass felt on palpation is a mass; one seen on CT is not palpable ----------------------------------------
@pytest.mark.parametrize("text", [
    "a large firm mass in the epigastrium",
    "a lump on deep palpation of the left flank",
    "a mass at palpation",
])
def test_mass_on_palpation(text):
    assert read(text).status_of("palpable_mass") == "present"


def test_mass_seen_on_imaging_is_not_palpable():
    assert read("a large mass in the epigastrium on CT").status_of("palpable_mass") is None


# -- lab values in prose and urine microscopy counts -------------------------------------------------------------
@pytest.mark.parametrize("text, finding, value", [
    ("her haemoglobin fell to 7.4 g/dL overnight", "anaemia", 7.4),
    ("hb dropping to 8.2 after the second bleed", "anaemia", 8.2),
    ("creatinine rose to 310 umol/L", "creatinine_raised", 310),
    ("hemoglobin = 7", "anaemia", 7),
])
def test_lab_values_in_prose(text, finding, value):
    f = next(f for f in read(text).findings if f.id == finding)
    assert f.status == "present" and f.value == pytest.approx(value)


@pytest.mark.parametrize("text, expected", [
    ("urinalysis: 25 RBC/hpf and 40 WBC/hpf", {"microscopic_haematuria": "present", "pyuria": "present"}),
    ("urine microscopy showed >500 red blood cells", {"microscopic_haematuria": "present"}),
    ("0-2 RBC/hpf, 1-3 WBC/hpf", {"microscopic_haematuria": None, "pyuria": None}),
])
def test_urine_microscopy_counts(text, expected):
    r = read(text)
    for finding, status in expected.items():
        assert r.status_of(finding) == status, (finding, r.to_dict())


# -- other wordings: appetite, food stuck, a gastric band; and what generic words must not fire ----------------
@pytest.mark.parametrize("text, finding, status", [
    ("her appetite had diminished over a month", "anorexia", "present"),
    ("poor oral intake for 3 days", "anorexia", "present"),
    ("a piece of chicken got stuck in his chest at dinner", "food_impaction", "present"),
    ("status post laparoscopic gastric banding", "bariatric_surgery_history", "history"),
    ("multiple episodes of non-bloody vomiting", "recurrent_episodes", None),
    ("several episodes of watery diarrhoea", "recurrent_episodes", None),
    ("recurrent episodes of the same pain over a year", "recurrent_episodes", "present"),
    ("history of hyperlipidaemia on a statin", "triglycerides_high", None),
    ("triglycerides 14 mmol/L", "triglycerides_high", "present"),
])
def test_other_wordings_and_precision(text, finding, status):
    assert read(text).status_of(finding) == status


@pytest.mark.parametrize("text, expected", [
    ("a moderate consumption of alcohol at weekends", {"alcohol_use": "present", "heavy_alcohol_use": None}),
    ("alcohol 6 units/week", {"alcohol_use": "present", "heavy_alcohol_use": None}),
    ("alcohol 40 units/week", {"heavy_alcohol_use": "present"}),
    ("a glass of wine a day with dinner", {"alcohol_use": "present", "heavy_alcohol_use": None}),
    ("about 8 oz of spirits per day", {"heavy_alcohol_use": "present"}),
    ("drinks socially", {"alcohol_use": "present", "heavy_alcohol_use": None}),
    ("he experienced a similar episode two months earlier", {"recurrent_episodes": "present"}),
    ("he had a similar attack years ago", {"recurrent_episodes": "history"}),
])
def test_alcohol_quantities_and_earlier_episodes(text, expected):
    r = read(text)
    for finding, status in expected.items():
        assert r.status_of(finding) == status, (finding, r.to_dict())


def test_back_pain_on_both_sides():
    assert read("a dull pain on both sides of the lower back for a week").status_of("back_pain") == "present"


@pytest.mark.parametrize("text, expected", [
    ("an older man presented with a history of abdominal pain and fainting",
     {"abdominal_pain": "present", "syncope": "present"}),
    ("she presented to the clinic with a history of vomiting", {"vomiting": "present"}),
    ("admitted with a history of black stools", {"melaena": "present"}),
    # a history named before the presentation stays the past
    ("a man with a history of gallstones presented with fever", {"gallstones_history": "history", "fever": "present"}),
])
def test_presented_with_a_history_of_is_the_presentation(text, expected):
    r = read(text)
    for finding, status in expected.items():
        assert r.status_of(finding) == status, (finding, r.to_dict())
