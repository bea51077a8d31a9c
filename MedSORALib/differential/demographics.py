"""Age and sex stated in a clinical text ("55M", "a 34-year-old woman", "F/62", "aged 70", "in her forties")."""
from __future__ import annotations

import re

_DECADES = {"teens": 15, "twenties": 25, "thirties": 35, "forties": 45, "fifties": 55, "sixties": 65,
            "seventies": 75, "eighties": 85, "nineties": 95}
_AGE_PATTERNS = (
    re.compile(r"(?<![\w.])(\d{1,3})\s*(?:-|\s)?\s*(?:years?|yrs?|yr|y)\s*(?:-|\s)?\s*(?:old|of age)\b"),
    re.compile(r"(?<![\w.])(\d{1,3})\s*(?:yo|y/o|y\.o\.?|yrs?|yoa)(?![\w])"),
    re.compile(r"(?<![\w.])(\d{1,3})\s*-?\s*(?:m|f|male|female|man|woman|w|yom|yof|yowm|yowf)(?![\w])"),
    re.compile(r"(?<![\w])(?:m|f|male|female)\s*/\s*(\d{1,3})(?![\w.])"),
    re.compile(r"(?<![\w])(?:aged?|age:?)\s+(\d{1,3})(?![\w.])"),
    re.compile(r"(?<![\w])(\d{1,3})\s*(?:year|yr)\s*(?:-|\s)?\s*old"),
    re.compile(r"(?<![\w.])(\d{1,3})\s*/\s*(?:m|f)(?![\w])"),
    re.compile(r"(?<![\w])(?:man|woman|lady|gentleman|gent|male|female|patient|boy|girl) of (\d{1,3})(?![\w.])"),
    # "I'm 32 and pregnant", "I am 58", not "I'm 32 weeks pregnant"
    re.compile(r"(?<![\w])(?:i am|i'm|im) (?:a |an )?(\d{1,3})(?=\s*(?:$|[,.;!]|and\b|with\b|but\b|so\b|years?\b|yo\b|"
               r"y/o\b|-year))"),
)
_MONTHS = re.compile(r"(?<![\w.])(\d{1,2})\s*(?:-|\s)?\s*(?:months?|mo|weeks?|days?)\s*(?:-|\s)?\s*old\b")
_DECADE = re.compile(r"\b(?:in|during) (?:his|her|their|my) (?:early |mid |late |mid-)?(" + "|".join(_DECADES) + r")\b")
_DECADE_NUM = re.compile(r"\b(?:in|during) (?:his|her|their|my) (?:early |mid |late |mid-)?([2-9])0s\b")
_CHILD = re.compile(r"\b(?:newborn|neonate|infant|baby|toddler)\b")
# "septuagenarian": the middle of the decade (designed, as for "in her seventies")
_GENARIAN = {"quadragenarian": 45, "quinquagenarian": 55, "sexagenarian": 65, "septuagenarian": 75,
             "octogenarian": 85, "nonagenarian": 95, "centenarian": 100}
_GENARIAN_RE = re.compile(r"\b(" + "|".join(_GENARIAN) + r")s?\b")
# A person word right after an age without "old" ("a 20-year female", "a 63 man", "50 years male") or a sex
# word right before one ("F 62", "male, 45"); not a duration ("a 2-year history", "male 2 days").
_PERSON = (r"(?:male|female|man|woman|men|women|boy|girl|lady|gentleman|gent|patient|child|infant|person|"
           r"(?:white|black|asian|hispanic|caucasian|african(?: american)?|indian|chinese) (?:male|female|man|woman|"
           r"lady|gentleman|boy|girl|patient))")
_AGE_PERSON = re.compile(r"(?<![\w.])(\d{1,3})\s*(?:-|\s)?\s*(?:years?|yrs?|yr|y)\s*(?:-|\s)?\s*" + _PERSON +
                         r"(?![\w])")
_SEX_AGE = re.compile(r"(?<![\w])(?:m|f|male|female|sex:? ?[mf])\s*[,:]?\s+(?:aged?:? ?)?(\d{1,3})(?![\w.]|\s*(?:-|\s)?\s*"
                      r"(?:%|days?|weeks?|wks?|months?|mo|hours?|hrs?|h|mins?|cm|mm|kg|g|lbs?|mg|ml|units?|times|"
                      r"episodes|x|/))")
_NUMBER_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
                 "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
                 "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}
# "a sixty-five-year-old", "seventy two year old", "aged seventy"
_WORD_AGE = re.compile(r"(?<![\w])(?:(" + "|".join(_TENS) + r")(?:[- ](" + "|".join(list(_NUMBER_WORDS)[:9]) +
                       r"))?|(" + "|".join(_NUMBER_WORDS) + r"))(?:\s*-?\s*(?:years?|yrs?)\s*-?\s*(?:old|of age)"
                       r"(?![\w])|(?=\s*-?\s*(?:years?|yrs?)\s*-?\s*" + _PERSON + r"(?![\w])))")
_WORD_AGED = re.compile(r"(?<![\w])aged (" + "|".join(_TENS) + r")(?:[- ](" + "|".join(list(_NUMBER_WORDS)[:9]) +
                        r"))?(?![\w])")

# Relatives name the patient's sex only as "mother / father of ..." ("her husband" counts through "her"; "my
# husband" says nothing certain of the writer, "his mother had cancer" nothing of the patient).
_FEMALE_STRONG = re.compile(
    r"(?<![\w.])(?:woman|women|female|lady|girl|mother of|mrs|ms|miss|g\d\s*p\d|"
    r"\d{1,3}\s*-?\s*(?:f|yof|yowf|w)|\d{1,3}\s*(?:yo|y/o|y\.o\.?|yrs?)\s*f|\d{1,3}\s*/\s*f|f\s*/\s*\d{1,3}|"
    r"pregnant|postpartum|post-?menopausal|primigravida|multigravida|primipara|multipara|grand multipara|"
    r"multiparous|nulliparous|primiparous|gravida \d|housewife|wife of|daughter of|sister of|nun)(?![\w])")
_MALE_STRONG = re.compile(
    r"(?<![\w.])(?:man|men|male|gentleman|gent|boy|father of|mr|\d{1,3}\s*-?\s*(?:m|yom|yowm)|"
    r"\d{1,3}\s*(?:yo|y/o|y\.o\.?|yrs?)\s*m|\d{1,3}\s*/\s*m|m\s*/\s*\d{1,3})(?![\w])")
_SEX_WORD_F = re.compile(r"(?<![\w])(?:sex|gender)\s*[:=]?\s*f(?:emale)?(?![\w])")
_SEX_WORD_M = re.compile(r"(?<![\w])(?:sex|gender)\s*[:=]?\s*m(?:ale)?(?![\w])")
_FEMALE_WEAK = re.compile(r"(?<![\w])(?:she|her|hers|herself)(?![\w])")
_MALE_WEAK = re.compile(r"(?<![\w])(?:he|him|his|himself)(?![\w])")


# A temperature in Fahrenheit ("T 101.5F", "temp 99F", "febrile to 102 F") is not an age and a sex.
_TEMPERATURE = re.compile(r"(?<![\w])(?:temp(?:erature)?|t|tmax|febrile(?: to| at)?|fever(?: of| to)?)\s*:?\s*"
                          r"\d{2,3}(?:\.\d+)?\s*(?:°|º|deg(?:rees?)?)?\s*[fc](?![\w])|\d{2,3}\.\d+\s*(?:°|º)?\s*f(?![\w])")


def _without_temperatures(norm: str) -> str:
    return _TEMPERATURE.sub(lambda m: " " * len(m.group(0)), norm)


def read_age(norm: str) -> float | None:
    """Age in years stated in a normalised text, else ``None``."""
    norm = _without_temperatures(norm)
    for regex in _AGE_PATTERNS:
        for m in regex.finditer(norm):
            value = int(m.group(1))
            if 0 < value <= 110:
                return float(value)
    for regex in (_AGE_PERSON, _SEX_AGE):
        for m in regex.finditer(norm):
            value = int(m.group(1))
            if 0 < value <= 110:
                return float(value)
    m = _WORD_AGE.search(norm) or _WORD_AGED.search(norm)
    if m:
        if m.group(1):
            return float(_TENS[m.group(1)] + (_NUMBER_WORDS[m.group(2)] if m.group(2) else 0))
        return float(_NUMBER_WORDS[m.group(3)])
    m = _GENARIAN_RE.search(norm)
    if m:
        return float(_GENARIAN[m.group(1)])
    m = _MONTHS.search(norm)
    if m:
        return 0.5
    m = _DECADE.search(norm)
    if m:
        return float(_DECADES[m.group(1)])
    m = _DECADE_NUM.search(norm)
    if m:
        return float(int(m.group(1)) * 10 + 5)
    if _CHILD.search(norm):
        return 1.0
    return None


# Organs and events of one sex, read only where no noun or pronoun says the sex ("scrotal pain", "denies
# vaginal bleeding", "LMP 2 weeks ago"): even a denied one tells the patient's sex; a relative's does not count
# ("his mother had ovarian cancer" is decided by "his" first).
_FEMALE_BODY = re.compile(r"(?<![\w])(?:vagina\w*|uter(?:us|ine)|ovar(?:y|ies|ian)|menstrua\w*|menses|menarche|"
                          r"menopaus\w*|lmp|gravid\w*|parity|obstetric\w*|breast[- ]?feed\w*|cervical smear|"
                          r"endometrio\w+)(?![\w])")
_MALE_BODY = re.compile(r"(?<![\w])(?:scrot\w+|testic\w+|testes|testis|prostat\w+|penile|penis|erectile)(?![\w])")


def read_sex(norm: str) -> str | None:
    """``"female"`` / ``"male"`` stated in a normalised text (nouns first, then pronouns, then organs of one
    sex), else ``None``."""
    norm = _without_temperatures(norm)
    f, m = len(_FEMALE_STRONG.findall(norm)), len(_MALE_STRONG.findall(norm))
    for hit in _SEX_AGE.finditer(norm):  # "F 62", "male, 45"
        if hit.group(0).startswith(("f", "sex: f", "sex:f", "sex f")):
            f += 1
        elif hit.group(0).startswith(("m", "sex: m", "sex:m", "sex m")):
            m += 1
    f += len(_SEX_WORD_F.findall(norm))
    m += len(_SEX_WORD_M.findall(norm))
    if f != m:
        return "female" if f > m else "male"
    f, m = len(_FEMALE_WEAK.findall(norm)), len(_MALE_WEAK.findall(norm))
    if f != m and max(f, m) >= 1:
        return "female" if f > m else "male"
    f, m = len(_FEMALE_BODY.findall(norm)), len(_MALE_BODY.findall(norm))
    if f != m:
        return "female" if f > m else "male"
    return None

