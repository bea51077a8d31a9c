"""Age and sex in the wordings of case reports and teaching files: ages without "old" or "year", number words,
"-genarian" nouns, sex from "F 62", pronouns and organs of one sex; durations and measures are not ages."""
import pytest

from MedSORALib.differential.demographics import read_age, read_sex
from MedSORALib.differential.reader import read


@pytest.mark.parametrize("text, age, sex", [
    ("a 27-year female with left-sided pain", 27, "female"),
    ("a 48 year male with a swollen leg", 48, "male"),
    ("a 71 man with back pain", 71, "male"),
    ("a 59 woman, breathless", 59, "female"),
    ("38M, vomiting since the morning", 38, "male"),
    ("F 66, jaundice for two weeks", 66, "female"),
    ("male, 52: haematuria", 52, "male"),
    ("aged 81, she fell at home", 81, "female"),
    ("aged eighty-two and frail", 82, None),
    ("a lady in her sixties with flank pain", 65, "female"),
    ("a septuagenarian smoker with a pulsatile mass", 75, None),
    ("an octogenarian with confusion", 85, None),
    ("a sixty-four-year-old man", 64, "male"),
    ("a forty year old woman", 40, "female"),
    ("a 45-year white male", 45, "male"),
    ("a 9-year boy with fever", 9, "male"),
    ("sex: F, age 33, pelvic pain", 33, "female"),
])
def test_age_and_sex_without_old_or_year(text, age, sex):
    r = read(text)
    assert r.age == pytest.approx(age)
    assert r.sex == sex


@pytest.mark.parametrize("text", [
    "a 2-year history of epigastric pain",
    "male, 3 days of fever",
    "female 52 kg, pale",
    "M 4 cm mass in the flank",
    "pain for 6 years in a man",
    "hb 8 g/dl",
])
def test_durations_and_measures_are_not_ages(text):
    assert read_age(text.lower()) is None


@pytest.mark.parametrize("text, sex", [
    ("the gentleman reports black stools", "male"),
    ("an elderly lady with vomiting", "female"),
    ("a primigravida at 34 weeks with headache", "female"),
    ("came in with pain; he says it began after lunch", "male"),
    ("pain since dinner and she feels sick", "female"),
    ("denies vaginal bleeding; pain in the lower abdomen", "female"),
    ("scrotal swelling and loin pain", "male"),
    ("LMP six weeks ago, cramping pain", "female"),
    ("his mother had ovarian cancer", "male"),  # the pronoun wins over a relative's organ
    ("epigastric pain after meals", None),
])
def test_sex_from_nouns_pronouns_and_organs_of_one_sex(text, sex):
    assert read_sex(text.lower()) == sex
