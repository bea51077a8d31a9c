"""Clinical abbreviations spelled out before a symptom text is embedded.

Requisition indications are terse ("RUQ pain, r/o chole", "AAA surveillance", "elevated LFTs");
the sentence encoder has seen few of these abbreviations. :func:`expand` appends the long form
after each known abbreviation ("RUQ pain" -> "RUQ (right upper quadrant) pain"), so the text keeps
its original words (the laterality rule and the knowledge channel still see them) and gains the
words the encoder knows. Matching is on whole words, case-insensitive for the entries below,
except the case-sensitive ones (short words that are also English words).
"""

from __future__ import annotations

import re

#: abbreviation (lower case) -> long form
ABBREVIATIONS: dict[str, str] = {
    "ruq": "right upper quadrant", "luq": "left upper quadrant", "rlq": "right lower quadrant",
    "llq": "left lower quadrant", "rif": "right iliac fossa", "lif": "left iliac fossa",
    "aaa": "abdominal aortic aneurysm", "evar": "endovascular aortic aneurysm repair",
    "lfts": "liver function tests", "lft": "liver function test", "alt": "alanine aminotransferase",
    "ast": "aspartate aminotransferase", "alp": "alkaline phosphatase", "ggt": "gamma-glutamyl transferase",
    "afp": "alpha-fetoprotein", "hcc": "hepatocellular carcinoma", "nafld": "fatty liver disease",
    "masld": "fatty liver disease", "nash": "fatty liver inflammation", "cld": "chronic liver disease",
    "hbv": "hepatitis B", "hcv": "hepatitis C", "hbsag": "hepatitis B surface antigen",
    "cbd": "common bile duct", "gb": "gallbladder", "mrcp": "bile duct imaging", "ercp": "bile duct endoscopy",
    "lap chole": "laparoscopic gallbladder removal", "chole": "gallbladder",
    "ap": "acute pancreatitis", "ipmn": "pancreatic cystic tumour", "ca 19-9": "pancreatic tumour marker",
    "aki": "acute kidney injury", "ckd": "chronic kidney disease", "rcc": "renal cell carcinoma",
    "adpkd": "polycystic kidney disease", "ctkub": "CT of kidneys, ureters and bladder",
    "kub": "kidneys, ureters and bladder", "uti": "urinary tract infection", "cva": "costovertebral angle",
    "ras": "renal artery stenosis", "pud": "peptic ulcer disease", "ugib": "upper gastrointestinal bleed",
    "ugi": "upper gastrointestinal", "ogd": "upper endoscopy", "egd": "upper endoscopy",
    "goo": "gastric outlet obstruction", "gist": "gastrointestinal stromal tumour",
    "gord": "gastro-oesophageal reflux disease", "gerd": "gastroesophageal reflux disease",
    "ivc": "inferior vena cava", "pvt": "portal vein thrombosis", "tips": "portosystemic shunt",
    "tipss": "portosystemic shunt", "dvt": "deep vein thrombosis", "rhf": "right heart failure",
    "htn": "hypertension", "arr": "aldosterone renin ratio", "acth": "adrenocorticotropic hormone",
    "pheo": "phaeochromocytoma", "phaeo": "phaeochromocytoma", "men2": "multiple endocrine neoplasia type 2",
    "etoh": "alcohol", "ivdu": "injecting drug use", "nsaid": "anti-inflammatory painkiller",
    "nsaids": "anti-inflammatory painkillers", "wcc": "white cell count", "wbc": "white blood cells",
    "hb": "haemoglobin", "plt": "platelets", "mvc": "motor vehicle collision", "cml": "chronic myeloid leukaemia",
    "ebv": "Epstein-Barr virus", "r/o": "rule out", "h/o": "history of", "s/p": "status post",
    "c/o": "complaining of", "abx": "antibiotics", "pt": "patient", "pts": "patients", "hx": "history",
    "sob": "short of breath", "n/v": "nausea and vomiting", "wt": "weight", "ca": "cancer",
}
_CASE_SENSITIVE = {"AP", "CA", "GB"}
_INSENSITIVE = {k: v for k, v in ABBREVIATIONS.items() if k.upper() not in _CASE_SENSITIVE}
_SENSITIVE = {k.upper(): v for k, v in ABBREVIATIONS.items() if k.upper() in _CASE_SENSITIVE}


def _pattern(keys, flags) -> re.Pattern:
    body = "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True))
    return re.compile(r"(?<![\w/])(" + body + r")(?![\w/])", flags)


_P_INSENSITIVE = _pattern(_INSENSITIVE, re.IGNORECASE)
_P_SENSITIVE = _pattern(_SENSITIVE, 0)


def expand(text: str) -> str:
    """``text`` with the long form in parentheses after each known abbreviation (unchanged otherwise)."""
    text = _P_INSENSITIVE.sub(lambda m: f"{m.group(1)} ({_INSENSITIVE[m.group(1).lower()]})", text)
    return _P_SENSITIVE.sub(lambda m: f"{m.group(1)} ({_SENSITIVE[m.group(1)]})", text)
