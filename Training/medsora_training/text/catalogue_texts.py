"""Training texts generated from the disease catalogue (``MedSORALib/resources/differential``).

Each disease row of the 13 modelled structures becomes varied presentations in three registers of real text:

* ``case``: a case-report or exam-stem opening: age and sex, the complaint with its duration, examination signs,
  vital signs and laboratory values written as numbers with units (drawn inside the range that the reader's
  ``labs.yaml`` turns into the finding), risk factors, pertinent negatives and an unrelated past history;
* ``short``: a terse teaching-file history ("62F, LUQ pain, fever, Hb 8.1");
* ``lay``: a first-person story in everyday words (only findings that a patient would tell).

Findings are sampled by their ``freq`` (how typical); every text carries at least one specific finding (the row's
largest likelihood ratios) and, where the row has them, some generic ones. Pertinent negatives are the row's
``against`` findings or findings of other rows that this row does not name, written negated. No text names an
organ or a diagnosis: phrases with organ words are rewritten or left out, and every text is checked against
:data:`ORGAN_WORDS` before it is kept.

A finding is said in the hand-written wordings of this module or, for a share of the texts (``variety``), in a
wording sampled from its own lexicon patterns (:func:`pattern_wordings`: the case, requisition and lay wordings the
clinical reader recognises, so one finding appears in many surface forms). A share of the texts is thin (``vague``:
the specific finding and at most one more) and a share carries an unrelated past history (``history``) in every
register.

Non-specific texts (only generic findings: "abdominal pain and fever") get a spread label: the classes whose
catalogue rows best explain those findings (sum over a class's rows of prior x product of the findings'
frequencies; at least three classes), written once per class of the spread with that class as the source organ and
the others as secondary organs, so that the trained target is flat over them rather than one confident organ.

Rows with ``outside`` (structures MedSORA does not model) are written too, with ``organ: null`` and their
``outside`` key: the text training keeps only rows whose organ is a class, so they are not learned from as
organs; they are in the file for the independence check and for later use as out-of-scope examples.

Everything is drawn from one seeded ``random.Random``: the same catalogue and seed give the same file.
The program is ``Training/generate_catalogue_texts.py``.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from dataclasses import dataclass

try:  # the regular-expression parser (public as sre_parse before Python 3.11)
    import re._constants as _sre_c
    import re._parser as _sre
except ImportError:  # pragma: no cover
    import sre_constants as _sre_c
    import sre_parse as _sre

from MedSORALib.organs import FULL_CLASSES

#: Words that name a modelled organ (or its adjective); a generated text must contain none of them.
#: The real evaluation texts have organ and diagnosis words removed, so the model must learn from the rest.
ORGAN_WORDS = re.compile(
    r"\b(spleen|splen\w*|kidneys?|renal|nephr\w*|gall ?bladders?|chol[ae]\w*|o?esophag\w*|liver|hepat\w*|"
    r"stomach|gastr\w*|aortas?|aortic|vena|cava|caval|ivc|portal|pancrea\w*|adrenals?|aaa)\b",
    re.IGNORECASE,
)

#: Paired reasoning classes whose texts name a side.
PAIRED = {"kidney", "adrenal_gland"}

#: Classes for which the issue asks for more texts (weak in the independent evaluation): a multiplier of the
#: texts per class.
BOOST = {"portal_vein_and_splenic_vein": 1.67, "inferior_vena_cava": 1.67, "adrenal_gland": 1.67, "spleen": 1.67}

REGISTERS = ("case", "short", "lay")

#: Long words of diagnosis names that are ordinary clinical words too; any other word of eight letters or more
#: of a row's name ("gallstones", "pheochromocytoma", "pylephlebitis") must not appear in its texts.
COMMON_NAME_WORDS = frozenset({
    "abdominal", "bleeding", "syndrome", "infection", "obstruction", "thrombosis", "acquired", "secondary",
    "injection", "traumatic", "spontaneous", "ingestion", "infarction", "perforation", "isolated", "inflammatory",
    "mesenteric", "mononucleosis", "deficiency", "incidental", "bacterial", "malignant", "ischaemia", "haematoma",
    "aneurysm", "carcinoma", "metastases", "varicose", "haemorrhage", "symptomatic", "idiopathic", "hypertension",
    "alcoholic", "pregnancy", "including", "multiple", "disorder"})


def name_words(disease) -> set[str]:
    """Words of a row's diagnosis name that its texts must not contain (see :data:`COMMON_NAME_WORDS`)."""
    return {w for w in re.findall(r"[a-z]+", disease.name.lower()) if len(w) > 7} - COMMON_NAME_WORDS


def _names_it(text: str, words: set[str]) -> bool:
    return any(re.search(rf"\b{w}\b", text.lower()) for w in words)

# ----------------------------------------------------------------------------------------- phrasing tables
#: Clinical wording where the lexicon label names an organ, is clumsy in running text, or has a natural variant.
CLINICAL = {
    "hepatomegaly": ["a firm edge palpable four fingers below the right costal margin", "a smooth edge felt well below the right ribs"],
    "splenomegaly": ["a mass palpable below the left costal margin", "a firm mass in the left upper abdomen that moves with breathing"],
    "courvoisier_sign": ["a palpable non-tender mass under the right ribs"],
    "charcot_triad": ["fever, yellow skin and right upper quadrant pain"],
    "hepatitis_b_or_c": ["chronic HBV infection", "chronic HCV infection"],
    "bariatric_surgery_history": ["previous weight-loss surgery"],
    "aortic_graft_history": ["a previous aneurysm repair with a graft"],
    "ivc_filter_history": ["a retrievable filter placed after a clot"],
    "easy_bruising_thin_skin": ["thin skin that bruises easily"],
    "left_shoulder_pain": ["pain at the tip of the left shoulder", "left shoulder tip pain"],
    "unilateral_leg_swelling": ["one swollen painful calf", "a swollen tender left leg"],
    "asterixis": ["a flapping tremor"],
    "recent_endoscopy": ["a recent endoscopy", "an ERCP last week"],
    "melaena": ["black tarry stools", "melaena"],
    "fever": ["fever", "fevers"],
    "abdominal_pain": ["abdominal pain", "pain in the abdomen"],
    "jaundice": ["jaundice", "yellowing of the skin and eyes"],
    "weight_loss": ["weight loss", "unintentional weight loss"],
    "b_symptoms": ["fevers, drenching sweats and weight loss"],
    "family_history": [],          # "of the disease" would need its name
    "incidental_finding": ["an abnormality found by chance on imaging"],
    "gastrectomy_history": [],
    "pancreatitis_history": [],
    "sepsis": ["signs of sepsis"],
    "iron_deficiency": ["a microcytic anaemia with low ferritin"],
    "pain_after_meals": ["post-prandial pain", "pain brought on by eating"],
}

#: Everyday words for the findings a patient tells; findings without an entry stay out of lay stories.
LAY = {
    "abdominal_pain": ["tummy pain", "a pain in my belly", "stomach ache"],
    "diffuse_abdominal_pain": ["pain all over my belly"],
    "epigastric_pain": ["a burning pain just under my breastbone", "pain at the top of my belly"],
    "ruq_pain": ["pain under my right ribs", "a pain in the upper right side of my belly"],
    "luq_pain": ["pain under my left ribs", "an ache in the upper left side of my belly"],
    "rlq_pain": ["pain low down on the right side of my belly"],
    "llq_pain": ["pain low down on the left side of my belly"],
    "periumbilical_pain": ["pain around my belly button"],
    "flank_pain": ["a pain in my side at the back"],
    "back_pain": ["back pain", "an ache in my back"],
    "pain_radiating_to_back": ["pain that goes right through to my back"],
    "pain_radiating_to_groin": ["pain that shoots down into my groin"],
    "loin_to_groin_pain": ["waves of pain from my back down to my groin"],
    "chest_pain": ["pain in my chest"],
    "retrosternal_pain": ["a pain behind my breastbone"],
    "tearing_pain": ["a ripping pain"],
    "interscapular_pain": ["pain between my shoulder blades"],
    "sudden_onset_pain": ["pain that came on all of a sudden"],
    "colicky_pain": ["pain that comes and goes in waves"],
    "pain_after_fatty_meal": ["pain after greasy food"],
    "pain_after_meals": ["pain after I eat"],
    "pain_relieved_by_food": ["pain that gets better when I eat"],
    "pain_worse_lying_relieved_leaning_forward": ["pain that eases when I lean forward"],
    "left_shoulder_pain": ["a strange pain at the tip of my left shoulder"],
    "right_shoulder_pain": ["pain going up to my right shoulder blade"],
    "nausea": ["feeling sick", "nausea"],
    "vomiting": ["throwing up", "being sick"],
    "haematemesis": ["vomiting blood"],
    "coffee_ground_vomiting": ["sick that looks like coffee grounds"],
    "melaena": ["black sticky poo"],
    "haematochezia": ["blood in my poo"],
    "dysphagia": ["food sticking when I swallow"],
    "progressive_dysphagia": ["swallowing getting harder, first bread and now even drinks"],
    "odynophagia": ["pain when I swallow"],
    "regurgitation": ["food coming back up"],
    "heartburn": ["heartburn"],
    "early_satiety": ["feeling full after a few bites"],
    "bloating": ["bloating"],
    "abdominal_distension": ["my belly swelling up"],
    "diarrhoea": ["diarrhoea", "runny poo"],
    "constipation": ["constipation"],
    "anorexia": ["no appetite"],
    "weight_loss": ["losing weight without trying"],
    "steatorrhoea": ["greasy poo that floats and is hard to flush"],
    "pale_stools": ["pale poo"],
    "dark_urine": ["wee as dark as tea"],
    "clay_coloured_and_dark_urine": ["pale poo and very dark wee"],
    "jaundice": ["yellow eyes", "my skin going yellow"],
    "painless_jaundice": ["going yellow without any pain"],
    "pruritus": ["itching all over"],
    "fever": ["a fever", "a high temperature"],
    "rigors": ["shaking chills"],
    "fatigue": ["feeling exhausted", "tiredness"],
    "night_sweats": ["soaking the sheets at night"],
    "malaise": ["feeling generally unwell"],
    "syncope": ["passing out"],
    "confusion": ["being muddled"],
    "palpitations": ["my heart racing"],
    "headache": ["headaches"],
    "sweating_episodes": ["sudden sweats"],
    "dyspnoea": ["getting short of breath"],
    "cough": ["a cough"],
    "haematuria": ["blood in my wee"],
    "painless_haematuria": ["blood in my wee but no pain"],
    "dysuria": ["burning when I wee"],
    "frequency": ["weeing all the time"],
    "oliguria": ["hardly passing any wee"],
    "polyuria": ["passing lots of wee"],
    "polydipsia": ["being thirsty all the time"],
    "foamy_urine": ["frothy wee"],
    "leg_swelling": ["swollen legs"],
    "bilateral_leg_swelling": ["both legs swelling up"],
    "unilateral_leg_swelling": ["one leg swollen and sore"],
    "muscle_weakness": ["weak muscles"],
    "weight_gain": ["putting on weight"],
    "hyperpigmentation": ["my skin getting darker"],
    "salt_craving": ["craving salt"],
    "easy_bruising": ["bruising easily"],
    "hypertension_paroxysmal": ["spells where my blood pressure shoots up"],
    "paroxysmal_attacks": ["attacks that come out of nowhere"],
    "anxiety": ["a feeling that something terrible is happening"],
    "moon_face": ["my face getting round"],
    "striae": ["purple stretch marks"],
    "tremor": ["shaking hands"],
    "alcohol_use": ["I drink most days"],
    "heavy_alcohol_use": ["I drink a lot, most days"],
    "smoking": ["I smoke"],
    "obesity": ["I'm overweight"],
    "diabetes": ["I have diabetes"],
    "trauma": ["I had a fall"],
    "contact_sport": ["I took a hard knock playing rugby"],
    "recent_viral_illness": ["I had a bad virus recently"],
    "sore_throat": ["a sore throat"],
    "oral_contraceptive_use": ["I'm on the pill"],
    "pregnancy": ["I'm pregnant"],
    "anticoagulant_use": ["I take blood thinners"],
    "nsaid_use": ["I take ibuprofen a lot"],
    "iv_drug_use": ["I inject drugs"],
    "travel": ["I came back from abroad recently"],
    "long_travel": ["I had a long flight"],
    "immobility": ["I've been stuck in bed"],
    "gallstones_history": ["I've been told I have gallstones"],
    "cirrhosis_history": ["I've been told I have cirrhosis"],
    "atrial_fibrillation": ["I have an irregular heartbeat"],
    "hypertension_history": ["I have high blood pressure"],
    "malignancy_history": ["I had cancer before"],
    "sickle_cell": ["I have sickle cell"],
    "claudication": ["my calves cramping when I walk"],
    "abdominal_wall_veins": ["big veins showing on my belly"],
    "palpable_mass": ["a lump in my belly"],
    "pulsatile_mass": ["a lump in my belly that throbs"],
    "flushing": ["hot flushes"],
    "hiccups": ["hiccups that won't stop"],
    "food_impaction": ["a bit of meat stuck in my throat"],
    "hoarseness": ["a hoarse voice"],
    "vomiting_then_chest_pain": ["awful chest pain after being sick hard"],
    "haematemesis_after_retching": ["blood in my sick after retching"],
}

#: Short forms of the teaching-file register.
SHORT = {
    "ruq_pain": ["RUQ pain"], "luq_pain": ["LUQ pain"], "rlq_pain": ["RLQ pain"], "llq_pain": ["LLQ pain"],
    "epigastric_pain": ["epigastric pain", "epig pain"], "abdominal_pain": ["abdo pain", "abd pain"],
    "diffuse_abdominal_pain": ["diffuse abdo pain"], "flank_pain": ["flank pain"], "back_pain": ["back pain"],
    "nausea": ["nausea"], "vomiting": ["vomiting", "emesis"], "fever": ["febrile", "fever"], "jaundice": ["jaundiced"],
    "weight_loss": ["wt loss"], "hypotension": ["hypotensive"], "tachycardia": ["tachycardic"],
    "haematemesis": ["haematemesis"], "melaena": ["melaena"], "haematuria": ["haematuria"], "dysphagia": ["dysphagia"],
    "fatigue": ["fatigue"], "anorexia": ["anorexia"], "syncope": ["syncope"], "dyspnoea": ["SOB"],
    "heavy_alcohol_use": ["EtOH excess"], "alcohol_use": ["EtOH"], "smoking": ["smoker"], "iv_drug_use": ["IVDU"],
    "diabetes": ["T2DM"], "hypertension_history": ["HTN"], "atrial_fibrillation": ["AF"], "ascites": ["ascites"],
    "costovertebral_angle_tenderness": ["CVA tenderness"], "leg_swelling": ["leg oedema"],
    "bilateral_leg_swelling": ["bilat leg oedema"], "night_sweats": ["night sweats"], "trauma": ["trauma"],
    "hypertension": ["hypertensive"], "palpitations": ["palpitations"], "headache": ["headache"],
    "oral_contraceptive_use": ["on OCP"], "anticoagulant_use": ["on anticoagulation"], "malignancy_history": ["h/o malignancy"],
    "cirrhosis_history": ["known cirrhosis"], "pulsatile_mass": ["pulsatile abdo mass"], "palpable_mass": ["palpable abdo mass"],
}

#: Laboratory and vital-sign findings written as numbers: (names, unit, low, high, decimals). The ranges lie
#: inside the region that ``MedSORALib/resources/differential/labs.yaml`` reads as the finding (its normal
#: ranges and rules, with their sources there); a test reads every generated value back with the reader.
NUMBERS = {
    "lipase_raised": (["lipase"], "U/L", 90, 170, 0),
    "lipase_3x_uln": (["lipase"], "U/L", 220, 3000, 0),
    "amylase_raised": (["amylase"], "U/L", 130, 280, 0),
    "amylase_3x_uln": (["amylase"], "U/L", 350, 2500, 0),
    "bilirubin_raised": (["bilirubin", "total bilirubin"], "umol/L", 32, 180, 0),
    "alp_raised": (["ALP", "alkaline phosphatase"], "U/L", 190, 900, 0),
    "ggt_raised": (["GGT"], "U/L", 95, 700, 0),
    "transaminases_raised": (["ALT", "AST"], "U/L", 75, 350, 0),
    "transaminases_very_high": (["ALT", "AST"], "U/L", 650, 4000, 0),
    "albumin_low": (["albumin"], "g/L", 19, 31, 0),
    "inr_raised": (["INR"], "", 1.5, 3.2, 1),
    "ammonia_raised": (["ammonia"], "umol/L", 75, 180, 0),
    "afp_raised": (["AFP", "alpha-fetoprotein"], "ng/mL", 60, 4000, 0),
    "ferritin_raised": (["ferritin"], "ug/L", 650, 3000, 0),
    "ldh_raised": (["LDH"], "U/L", 380, 1400, 0),
    "anaemia": (["Hb", "haemoglobin"], "g/dL", 6.8, 10.8, 1),
    "leukocytosis": (["WBC", "white cell count", "WCC"], "x10^9/L", 13.5, 24, 1),
    "thrombocytopenia": (["platelets"], "x10^9/L", 30, 115, 0),
    "thrombocytosis": (["platelets"], "x10^9/L", 540, 1100, 0),
    "eosinophilia": (["eosinophils"], "x10^9/L", 0.9, 3.0, 1),
    "creatinine_raised": (["creatinine"], "umol/L", 160, 480, 0),
    "urea_raised": (["urea"], "mmol/L", 10.5, 30, 1),
    "potassium_low": (["potassium", "K"], "mmol/L", 2.4, 3.1, 1),
    "potassium_high": (["potassium", "K"], "mmol/L", 5.9, 7.2, 1),
    "sodium_low": (["sodium", "Na"], "mmol/L", 118, 131, 0),
    "glucose_high": (["glucose"], "mmol/L", 14, 32, 1),
    "calcium_high": (["calcium"], "mmol/L", 2.85, 3.4, 2),
    "crp_raised": (["CRP"], "mg/L", 45, 320, 0),
    "lactate_raised": (["lactate"], "mmol/L", 2.9, 8.5, 1),
    "troponin_raised": (["troponin"], "ng/L", 60, 2000, 0),
    "d_dimer_raised": (["D-dimer"], "ng/mL", 900, 6000, 0),
    "ca19_9_raised": (["CA 19-9"], "U/mL", 120, 2500, 0),
    "cea_raised": (["CEA"], "ng/mL", 9, 80, 1),
}

#: Vital signs as numbers (designed values inside the reader's rules: fever from 38.0 C, tachycardia above 100,
#: hypotension below 90 systolic, hypertension from 140/90, severe from 180/110, tachypnoea above 20, hypoxia below 92 %).
def _vital(finding: str, rng: random.Random) -> str | None:
    if finding == "fever":
        return rng.choice([f"temperature {rng.uniform(38.2, 39.8):.1f} C", f"T {rng.uniform(38.2, 39.8):.1f} C",
                           f"temperature {rng.uniform(100.9, 103.5):.1f} F"])
    if finding == "tachycardia":
        return rng.choice(["pulse", "HR", "heart rate"]) + f" {rng.randint(108, 138)}"
    if finding == "hypotension":
        return f"BP {rng.randint(68, 86)}/{rng.randint(38, 54)}"
    if finding == "hypertension_severe":
        return f"BP {rng.randint(190, 228)}/{rng.randint(112, 130)}"
    if finding == "hypertension":
        return f"BP {rng.randint(152, 176)}/{rng.randint(94, 106)}"
    if finding == "tachypnoea":
        return f"RR {rng.randint(24, 34)}"
    if finding == "hypoxia":
        return f"SpO2 {rng.randint(82, 90)}% on air"
    return None


#: Qualitative laboratory wordings (no number in the reader's table).
QUALITATIVE = {
    "cortisol_raised": ["late-night salivary cortisol raised", "24-hour urinary cortisol raised"],
    "bilirubin_conjugated_raised": ["raised conjugated bilirubin", "conjugated bilirubin raised"],
    "catecholamines_raised": ["plasma metanephrines four times the upper limit", "raised urinary metanephrines"],
    "aldosterone_renin_ratio_raised": ["raised aldosterone-to-renin ratio"],
    "microscopic_haematuria": ["urine dipstick blood 2+", "dipstick positive for blood"],
    "pyuria": ["urine leukocytes positive", "pyuria"],
    "nitrites_positive": ["urine nitrite positive"],
    "proteinuria": ["protein 3+ on dipstick"],
    "hcg_positive": ["positive pregnancy test"],
}

DISTRACTORS = [
    "hypothyroidism on levothyroxine", "well-controlled asthma", "osteoarthritis of both knees", "gout", "migraine",
    "a knee replacement six years ago", "depression treated with sertraline", "glaucoma", "psoriasis",
    "a wrist fracture last winter", "cataract surgery", "eczema", "hay fever", "carpal tunnel release",
    "mild hearing loss", "a frozen shoulder", "varicose veins", "a tonsillectomy as a child", "restless legs",
    "high cholesterol on a statin", "an appendicectomy as a teenager", "a caesarean section",
    "an inguinal hernia repair",
    "a hysterectomy for fibroids", "haemorrhoids", "benign prostatic enlargement", "sleep apnoea", "a squint",
    "chronic lower back pain", "an anxiety disorder", "atopic dermatitis", "a previous deep cut to the hand",
]
#: The same kind of unrelated history in the teaching-file register and in a patient's words.
DISTRACTORS_SHORT = ["PMH asthma", "hx gout", "PMH hypothyroid", "bg OA knees", "PMH depression", "known migraine",
                     "h/o TKR", "PMH eczema", "hx appendicectomy", "PMH high cholesterol", "prev C-section",
                     "h/o hernia repair", "PMH glaucoma", "known BPH", "PMH anxiety"]
DISTRACTORS_LAY = ["I have asthma", "I've got arthritis in my knees", "I'm on tablets for my thyroid",
                   "I get migraines", "I have eczema", "I take a statin for cholesterol",
                   "I had my appendix out years ago",
                   "I've had two C-sections", "I suffer with my nerves", "I have gout", "I get hay fever",
                   "I had a hernia fixed a while back", "I've had a bad back for years"]
DURATIONS = ["two days", "three days", "a week", "ten days", "three weeks", "a month", "six weeks", "several months",
             "12 hours", "six hours", "since yesterday evening", "since early today"]
NEGATE_CASE = ["No {x}.", "There is no {x}.", "{He} denies {x}.", "No history of {x}.", "{He} has had no {x}."]
NEGATE_SHORT = ["no {x}", "nil {x}", "denies {x}"]

#: Findings commonly written as pertinent negatives ("no fever", "denies dysuria").
NEGATABLE = ["fever", "vomiting", "jaundice", "diarrhoea", "dysuria", "haematuria", "chest_pain", "back_pain",
             "weight_loss", "melaena", "haematemesis", "cough", "dyspnoea", "rigors", "vaginal_bleeding", "nausea",
             "pruritus", "leg_swelling", "trauma", "dysphagia", "constipation", "headache", "palpitations",
             "night_sweats", "syncope", "haematochezia", "guarding", "rebound_tenderness", "palpable_mass",
             "dark_urine", "pale_stools", "splenomegaly", "hepatomegaly", "ascites"]

#: A finding left out when a stronger finding of the same measurement is in the text (one value per analyte).
SUPERSEDED = {
    "lipase_raised": {"lipase_3x_uln"}, "amylase_raised": {"amylase_3x_uln"},
    "transaminases_raised": {"transaminases_very_high"}, "bilirubin_raised": {"bilirubin_conjugated_raised"},
    "hypertension": {"hypertension_severe"}, "jaundice": {"painless_jaundice"}, "dysphagia": {"progressive_dysphagia"},
    "haematuria": {"painless_haematuria"}, "leg_swelling": {"bilateral_leg_swelling", "unilateral_leg_swelling"},
}

GENERIC_POOL = ["abdominal_pain", "diffuse_abdominal_pain", "fever", "nausea", "vomiting", "fatigue", "malaise",
                "anorexia", "weight_loss", "bloating", "diarrhoea", "crp_raised", "leukocytosis"]


@dataclass
class Options:
    """How many texts.

    Attributes:
        per_class: texts per reasoning class (main organ of the rows), shared evenly between the class's rows, so
            that a class with many catalogue rows (the liver) does not outweigh one with few (the gallbladder);
            times :data:`BOOST` for the classes the issue names weakest.
        min_per_row: at least this many texts per modelled row.
        per_outside_row: texts per row of a structure MedSORA does not model.
        generic_texts: generic-only texts (each written once per class of its spread label).
        variety: share of findings said in a wording sampled from the lexicon's patterns rather than the hand
            tables (:class:`Phraser`); 0 = the tables alone (the generator of the first ablation).
        vague: share of thin presentations (the row's specific finding and at most one more).
        history: share of texts with an unrelated past history (:data:`DISTRACTORS` and its short and lay forms).
        boost: apply :data:`BOOST` (False: every class the same share).
        registers: the registers written (a subset of :data:`REGISTERS`; the outside rows keep all three).
        seed: the seed of every draw.
        held_out: False (default): every text is in the ``train`` split. The text training calibrates the
            relevance (Platt scaling) and the out-of-domain detector on the ``val`` split; templated texts there
            have near-copies among the training texts, so the detector's neighbour feature would look more
            certain than on real text and its threshold would rise (measured: Training/catalogue_ablation.py).
            True: 80/10/10 train/val/test by a hash of row and index.
    """

    per_class: int = 180
    min_per_row: int = 4
    per_outside_row: int = 3
    generic_texts: int = 320
    variety: float = 0.5
    vague: float = 0.2
    history: float = 0.5
    boost: bool = True
    registers: tuple[str, ...] = REGISTERS
    seed: int = 0
    held_out: bool = False


def _stable(*parts) -> float:
    """A number in [0, 1) from a hash of ``parts`` (the split of a text does not depend on the order of rows)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return int(digest[:8], 16) / 2**32


def _split(held_out: bool, *parts) -> str:
    if not held_out:
        return "train"
    u = _stable(*parts)
    return "train" if u < 0.8 else "val" if u < 0.9 else "test"


def _strip(label: str) -> str:
    return re.sub(r"\s*\([^)]*\)", "", label).strip()


#: Pronouns and everyday words that mark a wording as the patient's own (first person, lay anatomy).
FIRST_PERSON = re.compile(r"\b(i|i'm|i've|my|me|myself|mine|you|your)\b", re.IGNORECASE)
LAY_WORDS = re.compile(r"\b(belly|tummy|poo|poos|wee|pee|throwing up|being sick|puking|tired all the time)\b",
                       re.IGNORECASE)
#: Words a sampled wording may not start or end with (a fragment of a longer clause, not a finding on its own).
_EDGE_WORDS = frozenset({"a", "an", "the", "of", "to", "with", "and", "or", "in", "on", "at", "by", "for", "his",
                         "her", "my", "is", "was", "are", "were", "has", "had", "have", "that", "as", "like", "from",
                         "when", "than", "no", "not", "into", "up", "so", "it", "its", "be", "been", "very"})
_PAIN_WORDS = re.compile(r"pain|ache|aching|hurt|tender|discomfort|colic|cramp|sore|burning|agony", re.IGNORECASE)
_PLACE_WORDS = re.compile(r"quadrant|costal|hypochondri|flank|loin|side|ribs?\b|epigastri|umbilic|groin|back|"
                          r"abdomen|belly|tummy|chest|shoulder|breastbone|sternum|iliac|pelvi|suprapubic",
                          re.IGNORECASE)
_PREPOSITIONS = ("under ", "below ", "beneath ", "in ", "at ", "around ", "across ", "behind ", "over ", "after ",
                 "on ", "into ", "through ", "between ", "down ")


#: A lay wording that can follow "I've had" (a noun phrase), unlike a clause ("gone down notches on my belt").
_NOUN_START = re.compile(r"(a|an|some|my|pain|ache|aching|burning|cramps?|swelling|swollen|bloating|blood|black|"
                         r"pale|dark|yellow|itch\w*|lumps?|no |loss|trouble|difficulty|tummy|belly|stomach)\b",
                         re.IGNORECASE)


class _Unsayable(Exception):
    """A pattern element that has no literal wording (a word wildcard, a negated class)."""


def _sample_parsed(items, rng: random.Random, prefer) -> str:
    """One string matched by a parsed regular expression (a subset: literals, alternatives, optional parts)."""
    out = []
    for op, arg in items:
        if op is _sre_c.LITERAL:
            out.append(chr(arg))
        elif op is _sre_c.IN:
            chars = [chr(v) for o, v in arg if o is _sre_c.LITERAL]
            chars += [chr(v[0]) for o, v in arg if o is _sre_c.RANGE]
            if not chars or any(o in (_sre_c.NEGATE, _sre_c.CATEGORY) for o, _ in arg):
                raise _Unsayable
            out.append(rng.choice(chars))
        elif op is _sre_c.ANY:
            out.append("'")  # "can.?t", "don.?t"
        elif op is _sre_c.AT or op in (_sre_c.ASSERT, _sre_c.ASSERT_NOT):
            continue
        elif op is _sre_c.SUBPATTERN:
            out.append(_sample_parsed(arg[-1], rng, prefer))
        elif op is _sre_c.BRANCH:
            alternatives = prefer(list(arg[1]))
            rng.shuffle(alternatives)
            for alt in alternatives:
                try:
                    out.append(_sample_parsed(alt, rng, prefer))
                    break
                except _Unsayable:
                    continue
            else:
                raise _Unsayable
        elif op in (_sre_c.MAX_REPEAT, _sre_c.MIN_REPEAT):
            low, high, sub = arg
            if low == 0 and len(sub) == 1 and sub[0] == (_sre_c.LITERAL, ord(" ")):
                out.append(" ")  # an optional space between words ("five ?cm") is written
                continue
            if low == 0 and out and out[-1][-1:].isalpha():
                try:  # a word ending that cannot be written ("bronz\\w*"): not a whole word
                    _sample_parsed(sub, random.Random(0), prefer)
                except _Unsayable:
                    raise _Unsayable from None
            count = low if low > 0 or rng.random() < 0.5 else 1
            count = min(count + (rng.random() < 0.2 and count < high), high, 2)
            try:
                out.append("".join(_sample_parsed(sub, rng, prefer) for _ in range(count)))
            except _Unsayable:
                if low > 0:
                    raise
        else:
            raise _Unsayable
    return "".join(out)


def _pronoun_preference(register: str, sex: str | None):
    """Alternatives kept for a register: a patient says "my", a report "his" / "her" (by sex)."""
    def literal(alt):
        if all(op is _sre_c.LITERAL for op, _ in alt):
            return "".join(chr(v) for _, v in alt).strip()
        return None

    def prefer(alternatives):
        words = [literal(a) for a in alternatives]
        if register == "lay":
            own = [a for a, w in zip(alternatives, words) if w in ("my", "i", "me")]
            return own or alternatives
        other = {"male": ("her", "she"), "female": ("his", "he")}.get(sex or "", ())
        kept = [a for a, w in zip(alternatives, words) if w not in ("my", "i", "me", "you", "your") + other]
        return kept or alternatives
    return prefer


def pattern_wordings(finding, register: str, sex: str | None = None, tries: int = 4) -> list[str]:
    """Wordings of a finding sampled from its lexicon patterns, for a register (seeded by the finding's id).

    A wording is kept when the finding's own patterns match it, it names no organ, it is at least two words and
    does not begin or end on a function word (a fragment of a clause). A pain finding's wording that holds no pain
    word gets one ("right upper quadrant" -> "right upper quadrant pain"). Lay wordings are those in the patient's
    words (first person or everyday anatomy); the other registers take the rest."""
    if not finding.patterns or finding.removes or finding.regex is None:
        return []
    rng = random.Random(f"wording|{finding.id}|{register}|{sex}")
    prefer = _pronoun_preference(register, sex)
    out = []
    for pattern in finding.patterns:
        try:
            parsed = _sre.parse(pattern)
        except re.error:  # pragma: no cover - the catalogue validates its patterns
            continue
        for _ in range(tries):
            try:
                words = re.sub(r"\s+", " ", _sample_parsed(list(parsed), rng, prefer)).strip(" ,-")
            except _Unsayable:
                break
            tokens = words.lower().split()
            if (len(tokens) < 2 or len(words) < 8 or tokens[0] in _EDGE_WORDS or tokens[-1] in _EDGE_WORDS
                    or re.search(r"\d", words) or ORGAN_WORDS.search(words)):
                continue
            if re.search(r"\bpain\b", finding.label, re.IGNORECASE) and not _PAIN_WORDS.search(words):
                if not _PLACE_WORDS.search(words):
                    continue  # a trigger or a quality without the pain itself
                words = f"pain {words}" if words.lower().startswith(_PREPOSITIONS) else f"{words} pain"
            if not finding.regex.search(words):
                continue
            if finding.side is None and re.search(r"\b(left|right)\b", words, re.IGNORECASE):
                continue  # a side-less finding: the text's side is put by _side_words, never a random one
            lay = bool(FIRST_PERSON.search(words) or LAY_WORDS.search(words))
            if register == "lay" and not lay:
                continue
            if register != "lay" and FIRST_PERSON.search(words):
                continue
            words = re.sub(r"\bi\b", "I", words) if register == "lay" else words
            if words not in out:
                out.append(words)
    return out


class Phraser:
    """Words for a finding in a register (``None`` when the register has none).

    Each register draws from the team's hand-written tables (:data:`CLINICAL`, :data:`SHORT`, :data:`LAY`) and,
    with probability ``variety``, from wordings sampled from the finding's lexicon patterns
    (:func:`pattern_wordings`): the lexicon holds the case-report, requisition and lay wordings the clinical reader
    recognises, so the texts say one finding in many ways. ``variety=0`` gives the tables alone."""

    def __init__(self, lexicon, variety: float = 0.0):
        self.lexicon = lexicon
        self.variety = variety
        self._wordings: dict[tuple, list[str]] = {}

    def wordings(self, fid: str, register: str) -> list[str]:
        if not self.variety:
            return []
        key = (fid, register)
        if key not in self._wordings:
            finding = self.lexicon.get(fid)
            self._wordings[key] = pattern_wordings(finding, register) if finding is not None else []
        return self._wordings[key]

    def _varied(self, fid: str, register: str, rng: random.Random) -> str | None:
        options = self.wordings(fid, register)
        return rng.choice(options) if options and rng.random() < self.variety else None

    def can_say(self, fid: str, register: str) -> bool:
        """Whether the register has any wording for the finding (decided without drawing)."""
        if register == "lay":
            return fid in LAY or bool(self.wordings(fid, "lay"))
        finding = self.lexicon.get(fid)
        clinical = (bool(CLINICAL[fid]) if fid in CLINICAL else
                    finding is not None and not finding.removes and
                    (not ORGAN_WORDS.search(finding.label) or bool(self.wordings(fid, "case"))))
        numeric = self.number(fid, random.Random(0)) is not None
        if register == "short":
            return fid in SHORT or numeric or clinical
        return clinical or numeric

    def clinical(self, fid: str, rng: random.Random) -> str | None:
        if fid in CLINICAL:
            options = CLINICAL[fid]
            if not options:
                return None
            return self._varied(fid, "case", rng) or rng.choice(options)
        finding = self.lexicon.get(fid)
        if finding is None or finding.removes:
            return None
        varied = self._varied(fid, "case", rng)
        if varied:
            return varied
        label = finding.label if rng.random() < 0.4 else _strip(finding.label)
        if ORGAN_WORDS.search(label):
            options = self.wordings(fid, "case")
            return rng.choice(options) if options else None
        return label

    def short(self, fid: str, rng: random.Random) -> str | None:
        if fid in SHORT and rng.random() < 0.8 - 0.3 * self.variety:
            return rng.choice(SHORT[fid])
        number = self.number(fid, rng)
        if number:
            return number
        words = self.clinical(fid, rng)
        if words is None and fid in SHORT:
            return rng.choice(SHORT[fid])
        return _strip(words) if words else None

    def lay(self, fid: str, rng: random.Random) -> str | None:
        varied = self._varied(fid, "lay", rng)
        if varied or fid not in LAY:
            return varied or (rng.choice(self.wordings(fid, "lay")) if self.wordings(fid, "lay") else None)
        return rng.choice(LAY[fid])

    def number(self, fid: str, rng: random.Random) -> str | None:
        vital = _vital(fid, rng)
        if vital:
            return vital
        if fid in NUMBERS:
            names, unit, low, high, decimals = NUMBERS[fid]
            # log-uniform: raised values spread over orders of magnitude
            value = math.exp(rng.uniform(math.log(low), math.log(high)))
            text = f"{value:.{decimals}f}" if decimals else f"{round(value)}"
            return f"{rng.choice(names)} {text}" + (f" {unit}" if unit else "")
        if fid in QUALITATIVE:
            return rng.choice(QUALITATIVE[fid])
        return None


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _side_words(finding, side: str, words: str) -> str:
    """Put the row's side on a side-less pain or sign of a paired organ ("flank pain" -> "left flank pain")."""
    if finding.id in ("flank_pain", "costovertebral_angle_tenderness", "back_pain", "loin_to_groin_pain",
                      "palpable_mass", "pain_radiating_to_groin"):
        return f"{side} {words}" if not words.lower().startswith(("left", "right")) else words
    return words


class Generator:
    """Texts from catalogue rows (see the module docstring)."""

    def __init__(self, catalogue, options: Options | None = None):
        self.catalogue = catalogue
        self.options = options or Options()
        self.phraser = Phraser(catalogue.findings, self.options.variety)
        self.plain = Phraser(catalogue.findings)
        self.all_findings = sorted({w.id for d in catalogue.diseases for w in d.findings})

    # -- sampling ---------------------------------------------------------------------------------
    def _generic(self, fid: str, lr: float) -> bool:
        finding = self.catalogue.findings.get(fid)
        return bool(finding is not None and finding.generic) or lr <= 1.5

    def sample_findings(self, disease, rng: random.Random, register: str, side: str | None,
                        vague: bool = False) -> list:
        """Findings of one presentation: drawn by freq, at least one specific, some generic, none unsayable.

        ``vague``: a thin presentation, the specific finding and at most one more (real histories often hold
        no more than that)."""
        def sayable(w):
            finding = self.catalogue.findings[w.id]
            if finding.removes or finding.kind == "demographic":
                return False
            if side and finding.side and finding.side != side:
                return False
            return self.phraser.can_say(w.id, register)

        banned = name_words(disease)
        pool = [w for w in disease.findings if sayable(w) and not _names_it(self.catalogue.findings[w.id].label, banned)]
        if not pool:
            return []
        specific = sorted((w for w in pool if not self._generic(w.id, w.lr)), key=lambda w: -w.lr)
        if not specific and any(not self._generic(w.id, w.lr) for w in disease.findings):
            return []  # this register cannot say what sets the row apart: the caller writes another register
        chosen = [w for w in pool if rng.random() < (w.freq or 0.3)]
        if specific and not any(w in specific[: max(3, len(specific) // 2)] for w in chosen):
            top = specific[: max(3, len(specific) // 2)]
            pick = rng.choices(top, weights=[(w.freq or 0.3) * math.log(w.lr + 1) for w in top])[0]
            chosen.append(pick)
        generic = [w for w in pool if self._generic(w.id, w.lr)]
        if generic and not any(w in generic for w in chosen) and rng.random() < 0.8:
            chosen.append(rng.choice(generic))
        ids = {w.id for w in chosen}
        chosen = [w for w in chosen if not (SUPERSEDED.get(w.id) and SUPERSEDED[w.id] & ids)]
        limit = {"case": rng.randint(3, 7), "short": rng.randint(3, 5), "lay": rng.randint(2, 4)}[register]
        if vague:
            limit = rng.randint(1, 2)
        if len(chosen) > limit:  # keep the most specific one, then by chance
            keep = [w for w in specific if w in chosen][:1]
            rest = [w for w in chosen if w not in keep]
            rng.shuffle(rest)
            chosen = keep + rest[: limit - len(keep)]
        rng.shuffle(chosen)
        return chosen

    def negatives(self, disease, rng: random.Random, register: str) -> list[str]:
        named = {w.id for w in disease.findings}
        candidates = [w.id for w in disease.against if w.id in NEGATABLE]
        rng.shuffle(candidates)
        candidates += [f for f in rng.sample(NEGATABLE, 8) if f not in named]
        out = []
        for fid in candidates:
            finding = self.catalogue.findings[fid]
            if finding.kind not in ("symptom", "sign") or finding.removes:
                continue
            # the hand tables only: a sampled wording is often a clause ("cannot catch her breath"), not a
            # noun phrase that "no ..." can negate
            words = self.plain.lay(fid, rng) if register == "lay" else self.plain.clinical(fid, rng)
            words = re.sub(r"^(a|an) ", "", words) if words else words
            if words and (register != "lay" or not words.startswith(("I ", "I'", "my ", "being ", "feeling "))):
                out.append(_strip(words))
            if len(out) >= rng.randint(1, 2):
                break
        return out

    # -- writing ---------------------------------------------------------------------------------
    @staticmethod
    def demographics(disease, rng: random.Random) -> tuple[int, str]:
        low, high = disease.age or (18, 85)
        age = rng.randint(max(low, 1), max(min(high, 95), max(low, 1)))
        sex = disease.sex or rng.choice(["female", "male"])
        return age, sex

    def write_case(self, disease, findings, rng, age, sex, side) -> str:
        he = "He" if sex == "male" else "She"
        person = rng.choice(["man", "gentleman"] if sex == "male" else ["woman", "lady"])
        if age < 16:
            person = "boy" if sex == "male" else "girl"
        complaints, exam, numbers, background = [], [], [], []
        for w in findings:
            finding = self.catalogue.findings[w.id]
            number = self.phraser.number(w.id, rng)
            if number and (finding.kind in ("lab", "vital") or w.id in NUMBERS):
                numbers.append(number)
                continue
            words = self.phraser.clinical(w.id, rng) or number
            if not words:
                continue
            words = _side_words(finding, side, words) if side else words
            if finding.kind in ("risk", "history"):
                background.append(words)
            elif finding.kind == "sign":
                exam.append(words)
            else:
                complaints.append(words)
        if not complaints:
            complaints, exam = exam[:1] or ["feeling unwell"], exam[1:]
        duration = rng.choice(DURATIONS)
        lead = _join(complaints[:3])
        openings = [
            f"A {age}-year-old {person} presents with {lead}{' ' if duration.startswith('since') else ' for '}{duration}.",
            f"A {age}-year-old {person} is seen in the emergency department with {lead}.",
            f"{age}-year-old {person} with {duration} of {lead}.",
            f"This {age}-year-old {person} reports {lead}, present {'' if duration.startswith('since') else 'for '}{duration}.",
            f"A {age} y/o {'male' if sex == 'male' else 'female'} complains of {lead}.",
            f"{he} is {age} and has had {lead}{' ' if duration.startswith('since') else ' for '}{duration}.",
        ]
        parts = [re.sub(r"\bA (8\d|11|18)\b", r"An \1", rng.choice(openings))]
        if complaints[3:]:
            parts.append(f"{he} also describes {_join(complaints[3:])}.")
        if background:
            parts.append(rng.choice([f"Background of {_join(background)}.", f"{he} has a history of {_join(background)}.",
                                     f"Risk factors: {', '.join(background)}."]))
        if rng.random() < self.options.history:
            parts.append(rng.choice(["Past history includes ", "Other history: ", "Also known to have "])
                         + _join(rng.sample(DISTRACTORS, rng.randint(1, 2))) + ".")
        if exam:
            parts.append(rng.choice(["On examination there is ", "Examination shows ", "Exam: "]) + _join(exam) + ".")
        if numbers:
            parts.append(rng.choice(["Bloods: ", "Investigations: ", "Results: ", ""]) + ", ".join(numbers) + ".")
        for neg in self.negatives(disease, rng, "case"):
            parts.append(rng.choice(NEGATE_CASE).format(x=neg, He=he))
        text = " ".join(p[0].upper() + p[1:] for p in parts if p)
        return text

    def write_short(self, disease, findings, rng, age, sex, side) -> str:
        letter = "M" if sex == "male" else "F"
        head = rng.choice([f"{age}{letter}", f"{age} {letter}", f"{age}yo {letter}", f"{letter}, {age}"])
        items = []
        for w in findings:
            words = self.phraser.short(w.id, rng)
            if words:
                items.append(_side_words(self.catalogue.findings[w.id], side, words) if side else words)
        negs = self.negatives(disease, rng, "short")
        if negs and rng.random() < 0.5:
            items.append(rng.choice(NEGATE_SHORT).format(x=negs[0]))
        if rng.random() < self.options.history:
            items.insert(rng.randint(0, len(items)), rng.choice(DISTRACTORS_SHORT))
        return ", ".join([head] + items)

    def write_lay(self, disease, findings, rng, age, sex, side) -> str:
        symptoms, facts = [], []
        for w in findings:
            words = self.phraser.lay(w.id, rng)
            if not words:
                continue
            if side and w.id in ("flank_pain", "back_pain"):
                words = words.replace("my side", f"my {side} side").replace("my back", f"the {side} side of my back")
            if words.startswith(("I ", "I'm", "I've")):
                facts.append(words)
            elif w.id not in LAY and not _NOUN_START.match(words):
                facts.append(words[0].upper() + words[1:])  # a sampled clause stands as its own sentence
            else:
                symptoms.append(words)
        if not symptoms:
            symptoms = ["feeling unwell"]
        duration = rng.choice(DURATIONS)
        opening = rng.choice([
            f"I'm {age} and I've had {_join(symptoms[:3])}{' ' if duration.startswith('since') else ' for '}{duration}.",
            f"{'S' + duration[1:] if duration.startswith('since') else 'For ' + duration} I've had {_join(symptoms[:3])}.",
            f"I've been getting {_join(symptoms[:3])}{' ' if duration.startswith('since') else ' for '}{duration} and I'm worried.",
            f"Can anyone help? I've had {_join(symptoms[:3])} {'' if duration.startswith('since') else 'for '}{duration}.",
        ])
        parts = [opening]
        if symptoms[3:]:
            parts.append(f"There's also {_join(symptoms[3:])}.")
        parts += [f + "." for f in facts]
        if rng.random() < self.options.history:
            parts.insert(rng.randint(1, len(parts)), rng.choice(["", "Not sure if it matters but ", "Also, "])
                         + rng.choice(DISTRACTORS_LAY) + ".")
        negs = self.negatives(disease, rng, "lay")
        if negs:
            parts.append(f"No {negs[0]} though.")
        return " ".join(p[0].upper() + p[1:] for p in parts)

    # -- rows -------------------------------------------------------------------------------------
    def disease_rows(self, disease, count: int) -> list[dict]:
        rows = []
        organs = list(disease.organs)
        banned = name_words(disease)
        for i in range(count):
            rng = random.Random(f"{self.options.seed}|{disease.id}|{i}")
            register = REGISTERS[i % 3] if i < 9 else rng.choices(REGISTERS, weights=[0.45, 0.35, 0.2])[0]
            if register not in self.options.registers and organs:  # the same draws, another register
                register = self.options.registers[i % len(self.options.registers)]
            side = rng.choice(["left", "right"]) if PAIRED & set(organs) and rng.random() < 0.7 else None
            vague = rng.random() < self.options.vague
            findings = self.sample_findings(disease, rng, register, side, vague)
            if not findings and register != "case":
                register = "case"
                findings = self.sample_findings(disease, rng, register, side, vague)
            if not findings:
                continue
            age, sex = self.demographics(disease, rng)
            writer = {"case": self.write_case, "short": self.write_short, "lay": self.write_lay}[register]
            text = writer(disease, findings, rng, age, sex, side)
            if ORGAN_WORDS.search(text) or _names_it(text, banned):
                continue
            stated_side = side if side and re.search(rf"\b{side}\b", text, re.IGNORECASE) else None
            rows.append({
                "id": f"cat-{disease.id}-{i:03d}",
                "text": text,
                "organ": organs[0] if organs else None,
                "organs": organs,
                "outside": disease.outside,
                "disease": disease.id,
                "register": register,
                "findings": [w.id for w in findings],
                "laterality": stated_side,
                "vague": vague,
                "chunk_ids": [f"catalogue:{disease.id}"],
                "backend": "catalogue-generator",
                "split": _split(self.options.held_out, self.options.seed, disease.id, i),
            })
        return rows

    def spread(self, finding_ids: list[str]) -> list[str]:
        """Classes that best explain a set of generic findings (prior x product of frequencies), best first: those
        within 0.35 of the best score, at least three and at most six."""
        score = {c: 0.0 for c in FULL_CLASSES}
        for d in self.catalogue.diseases:
            if not d.organs:
                continue
            weights = {w.id: (w.freq or 0.3) for w in d.findings}
            value = d.prior * math.prod(weights.get(f, 0.02) for f in finding_ids)
            for organ in d.organs:
                if organ in score:
                    score[organ] += value / len(d.organs)
        best = max(score.values())
        ranked = sorted(score, key=lambda c: -score[c])
        # the classes within 0.35 of the best, and never fewer than three: a text of generic findings alone is
        # not evidence for one class ("tiredness" is typical of liver rows, and of many others) (designed)
        return ranked[: min(6, max(3, sum(score[c] >= 0.35 * best for c in score)))]

    def generic_rows(self) -> list[dict]:
        rows = []
        for i in range(self.options.generic_texts):
            rng = random.Random(f"{self.options.seed}|generic|{i}")
            ids = rng.sample(GENERIC_POOL, rng.randint(1, 3))
            if "abdominal_pain" in ids and "diffuse_abdominal_pain" in ids:
                ids.remove("diffuse_abdominal_pain")
            register = rng.choice(REGISTERS)
            if register not in self.options.registers:
                register = self.options.registers[i % len(self.options.registers)]
            age, sex = rng.randint(20, 85), rng.choice(["female", "male"])
            duration = rng.choice(DURATIONS)
            history = rng.random() < self.options.history
            if register == "lay":
                words = [w for w in (self.phraser.lay(f, rng) for f in ids) if w]
                if not words:
                    continue
                text = rng.choice([f"I've had {_join(words)} for {duration}.",
                                   f"{_join(words)[0].upper() + _join(words)[1:]}, what could it be?",
                                   f"I'm {age} and for {duration} I've had {_join(words)}.",
                                   f"Been having {_join(words)} on and off for {duration}, should I be worried?"])
                text = text.replace("for since", "since")
                if history:
                    text += " " + rng.choice(DISTRACTORS_LAY) + "."
            elif register == "short":
                words = [w for w in (self.phraser.short(f, rng) for f in ids) if w]
                if history:
                    words.insert(rng.randint(0, len(words)), rng.choice(DISTRACTORS_SHORT))
                head = rng.choice([f"{age}{'M' if sex == 'male' else 'F'}", f"{age}yo {'M' if sex == 'male' else 'F'}"])
                text = ", ".join([head] + words)
            else:
                words = [self.phraser.number(f, rng) if f in NUMBERS or (f == "fever" and rng.random() < 0.4)
                         else self.phraser.clinical(f, rng) for f in ids]
                person = "man" if sex == "male" else "woman"
                text = (f"{'An' if str(age).startswith('8') else 'A'} {age}-year-old {person} with "
                        f"{_join([w for w in words if w])} {'' if duration.startswith('since') else 'for '}{duration}.")
                if history:
                    text += " " + rng.choice(["Past history includes ", "Other history: ", "Known to have "]) + \
                        rng.choice(DISTRACTORS) + "."
            if ORGAN_WORDS.search(text):
                continue
            classes = self.spread(ids)
            split = _split(self.options.held_out, self.options.seed, "generic", i)
            for k, organ in enumerate(classes):  # one row per class of the spread: a flat target over them
                rows.append({
                    "id": f"cat-generic-{i:03d}-{k}",
                    "text": text,
                    "organ": organ,
                    "organs": [organ] + [c for c in classes if c != organ],
                    "outside": None,
                    "disease": None,
                    "register": register,
                    "findings": ids,
                    "laterality": None,
                    "chunk_ids": [f"catalogue:generic-{i}"],
                    "backend": "catalogue-generator",
                    "split": split,
                    "spread": True,
                })
        return rows

    def texts_per_row(self) -> dict[str, int]:
        """Texts per modelled row: the class's share (:attr:`Options.per_class` x boost) over its rows."""
        rows_of: dict[str, int] = {}
        for d in self.catalogue.diseases:
            if d.organs:
                rows_of[d.organs[0]] = rows_of.get(d.organs[0], 0) + 1
        out = {}
        for d in self.catalogue.diseases:
            if d.organs:
                target = self.options.per_class * (BOOST.get(d.organs[0], 1.0) if self.options.boost else 1.0)
                out[d.id] = max(self.options.min_per_row, math.ceil(target / rows_of[d.organs[0]]))
        return out

    def rows(self) -> list[dict]:
        out = []
        counts = self.texts_per_row()
        for disease in self.catalogue.diseases:
            if disease.organs:
                out += self.disease_rows(disease, counts[disease.id])
            else:
                out += self.disease_rows(disease, self.options.per_outside_row)
        out += self.generic_rows()
        seen, unique = set(), []
        for row in out:  # one text per wording within a disease (generic spreads keep their rows)
            key = (row["disease"], re.sub(r"\W+", " ", row["text"].lower()).strip(), row["organ"])
            if key not in seen:
                seen.add(key)
                unique.append(row)
        return unique
