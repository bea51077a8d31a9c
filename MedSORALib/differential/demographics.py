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

# Relatives name the patient's sex only as "mother / father of ..." ("her husband" counts through "her"; "my
# husband" says nothing certain of the writer, "his mother had cancer" nothing of the patient).
_FEMALE_STRONG = re.compile(
    r"(?<![\w.])(?:woman|women|female|lady|girl|mother of|mrs|ms|miss|g\d\s*p\d|"
    r"\d{1,3}\s*-?\s*(?:f|yof|yowf|w)|\d{1,3}\s*(?:yo|y/o|y\.o\.?|yrs?)\s*f|\d{1,3}\s*/\s*f|f\s*/\s*\d{1,3}|"
    r"pregnant|postpartum|post-?menopausal|primigravida|multiparous|nulliparous)(?![\w])")
_MALE_STRONG = re.compile(
    r"(?<![\w.])(?:man|men|male|gentleman|gent|boy|father of|mr|\d{1,3}\s*-?\s*(?:m|yom|yowm)|"
    r"\d{1,3}\s*(?:yo|y/o|y\.o\.?|yrs?)\s*m|\d{1,3}\s*/\s*m|m\s*/\s*\d{1,3})(?![\w])")
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


def read_sex(norm: str) -> str | None:
    """``"female"`` / ``"male"`` stated in a normalised text (nouns first, then pronouns), else ``None``."""
    norm = _without_temperatures(norm)
    f, m = len(_FEMALE_STRONG.findall(norm)), len(_MALE_STRONG.findall(norm))
    if f != m:
        return "female" if f > m else "male"
    f, m = len(_FEMALE_WEAK.findall(norm)), len(_MALE_WEAK.findall(norm))
    if f != m and max(f, m) >= 1:
        return "female" if f > m else "male"
    return None
