"""The catalogue's non-abdominal breadth: rows written from a systems list (diseases/neuro_tox_endocrine.yaml,
diseases/skin_msk_ent_eye.yaml), their findings (findings/non_abdominal.yaml), and the differential on held-out
texts (Testing/data/non_abdominal_catalogue_texts.jsonl): non-abdominal presentations that carry abdominal words
are called non-abdominal on their specific findings, abdominal presentations stay with the 13 structures, and
abdominal words alone never make a text non-abdominal."""
from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from MedSORALib.differential import catalogue as cat
from MedSORALib.differential.context import NEGATED, PRESENT
from MedSORALib.differential.differential import MODELLED, NON_ABDOMINAL, differential
from MedSORALib.differential.reader import read

REPO = Path(__file__).resolve().parent.parent
TEXTS = REPO / "Testing" / "data" / "non_abdominal_catalogue_texts.jsonl"
NEW_PARTS = ("neuro_tox_endocrine.yaml", "skin_msk_ent_eye.yaml")
#: Findings that abdominal disease shares with these presentations: weak evidence in every new row.
ABDOMINAL_WORDS = ("nausea", "vomiting", "abdominal_pain", "diffuse_abdominal_pain", "colicky_pain", "diarrhoea",
                   "constipation", "bloating", "anorexia")


@pytest.fixture(scope="module")
def catalogue():
    return cat.load_catalogue()


@pytest.fixture(scope="module")
def new_rows(catalogue):
    return [d for d in catalogue.diseases if d.part in NEW_PARTS]


@pytest.fixture(scope="module")
def rows():
    return [json.loads(line) for line in TEXTS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def results(rows):
    return {r["id"]: differential(r["text"]) for r in rows}


def test_new_rows_are_non_abdominal_cited_and_cover_the_systems(catalogue, new_rows):
    assert len(new_rows) >= 45
    for d in new_rows:
        assert d.organs == () and d.region == "non_abdominal", d.id
        assert re.search(r"\b(19|20)\d\d\b", d.source), d.id
        assert d.against, d.id  # what argues against it is part of a clinician's row
        assert len(d.findings) >= 3 and d.look_for, d.id
    systems = Counter(d.outside for d in new_rows)
    # neurology, nerve and muscle, poisoning, metabolic and thyroid, environment, heart, ENT, eye, skin, infection,
    # trunk wall, mind, scrotum, lung, pregnancy
    assert {"brain", "nerve_muscle", "poisoning", "metabolic", "thyroid", "environment", "heart", "ear_nose_throat",
            "eye", "skin", "infection", "musculoskeletal", "psychiatric", "testis", "lung", "pregnancy"} <= set(systems)
    assert systems["brain"] >= 6 and systems["poisoning"] >= 8


def test_scrotum_and_the_new_outside_keys_are_non_abdominal(catalogue):
    for key in ("testis", "nerve_muscle", "poisoning", "infection", "environment", "pregnancy"):
        assert cat.OUTSIDE[key] == "non_abdominal", key
    assert catalogue.by_id["testicular_torsion"].region == "non_abdominal"
    # the abdominal structures MedSORA does not model stay abdominal
    for key in ("appendix", "colon", "ovary", "bladder", "prostate", "uterus"):
        assert cat.OUTSIDE[key] == "abdominal", key


def test_abdominal_words_are_weak_and_specific_findings_decide(catalogue, new_rows):
    for d in new_rows:
        weak = [w for w in d.findings if w.id in ABDOMINAL_WORDS]
        assert all(w.lr <= 1.5 for w in weak), (d.id, [(w.id, w.lr) for w in weak])
        specific = [w.lr for w in d.findings if not catalogue.findings[w.id].generic and w.id not in ABDOMINAL_WORDS]
        # one strong finding, or a syndrome of three moderately specific ones (bronchiolitis)
        assert max(specific) >= 5 or sum(lr >= 3 for lr in specific) >= 3, d.id
        assert max(specific) >= 3 * max([w.lr for w in weak] + [1.0]), d.id


def test_new_findings_are_used_and_carry_lay_wording(catalogue):
    own = yaml.safe_load((cat.DATA_DIR / "findings" / "non_abdominal.yaml").read_text(encoding="utf-8"))["findings"]
    assert len(own) >= 60
    used = {w.id for d in catalogue.diseases for w in d.findings + d.against}
    assert {f["id"] for f in own} <= used
    with_hpo = [f for f in own if f.get("hpo")]
    assert len(with_hpo) >= 30
    hpo_terms = json.loads((cat.DATA_DIR / "hpo_terms.json").read_text(encoding="utf-8"))["terms"]
    # the shipped HPO wordings were rebuilt for these ids (python -m MedSORALib.differential.hpo_terms)
    assert sum(1 for f in with_hpo if any(h in hpo_terms for h in f["hpo"])) >= 25


@pytest.mark.parametrize("text, finding", [
    ("pinpoint pupils and barely breathing", "pinpoint_pupils"),
    ("he can't stop yawning", "yawning_piloerection"),
    ("she has the shakes since she quit drinking", "alcohol_stopped"),
    ("double vision since yesterday", "diplopia"),
    ("neck stiffness and fever", "neck_stiffness"),
    ("a band of pain around the right side of his chest", "dermatomal_band_pain"),
    ("her periods stopped six months ago", "amenorrhoea"),
    ("the room keeps spinning", "vertigo"),
    ("everything looks yellow", "yellow_green_vision"),
    ("halos around lights and a painful red eye", "halos_around_lights"),
    ("a barking cough like a seal", "barking_cough"),
    ("can't open his mouth fully", "trismus"),
    ("muffled hot-potato voice", "muffled_voice_tripod"),
    ("pulling at his left ear", "ear_pain"),
    ("ringing in her ears after the tablets", "tinnitus"),
    ("the whole family has headaches", "household_cluster"),
    ("lost her sense of smell", "smell_taste_loss"),
    ("a rough rash like sandpaper", "sandpaper_rash"),
    ("BMI 14.8", "low_bmi_emaciation"),
    ("terrified of gaining weight", "weight_control_behaviour"),
    ("pulse 38", "bradycardia"),
    ("core temperature 41.5", "very_high_temperature"),
    ("irregularly irregular pulse at 150", "irregular_pulse"),
])
def test_lay_and_clinical_wording_is_read(text, finding):
    reading = read(text)
    assert reading.status_of(finding) == PRESENT, [(f.id, f.status) for f in reading.findings]


@pytest.mark.parametrize("text, finding", [
    ("headache but no neck stiffness", "neck_stiffness"),
    ("denies double vision", "diplopia"),
    ("no tinnitus", "tinnitus"),
    ("without photophobia", "photophobia"),
])
def test_negated_findings_are_read_as_negated(text, finding):
    assert read(text).status_of(finding) == NEGATED


@pytest.mark.parametrize("fid, text", [
    ("alcohol_stopped", "no alcohol use"),
    ("insulin_or_sulfonylurea", "insulin of 18 with glucose 2.1"),
    ("cola_urine_ck", "dark brown urine and pale stools"),
    ("cola_urine_ck", "tea-coloured urine"),
    ("weight_control_behaviour", "binge drinking at weekends"),
    ("muscle_spasms_rigidity", "rigidity of the abdominal wall"),
    ("dermatomal_band_pain", "band-like upper abdominal pain going to the back"),
    ("bradycardia", "heart rate 140"),
    ("irregular_pulse", "new abdominal pain"),
    ("mucocutaneous_changes", "dry lips and mouth"),
])
def test_patterns_do_not_read_abdominal_look_alikes(catalogue, fid, text):
    body = "|".join(f"(?:{p})" for p in catalogue.findings[fid].patterns)
    assert re.search(rf"(?<![\w])(?:{body})(?![\w])", text.lower()) is None


def test_held_out_texts_cover_the_new_rows(catalogue, rows):
    non = [r for r in rows if r["expect"] == "non-abdominal"]
    ctrl = [r for r in rows if r["expect"] == "modelled"]
    assert len(non) >= 40 and len(ctrl) >= 20
    new_ids = {d.id for d in catalogue.diseases if d.part in NEW_PARTS}
    covered = {r["row"] for r in non} & new_ids
    assert len(covered) >= 40
    assert all(r["row"] in catalogue.by_id for r in non)
    assert len({r["system"] for r in non}) >= 10


def test_non_abdominal_texts_get_a_non_abdominal_top_diagnosis(rows, results):
    non = [r for r in rows if r["expect"] == "non-abdominal"]
    top_region = [results[r["id"]].top.disease.region for r in non]
    scope = [results[r["id"]].scope for r in non]
    top_row = [results[r["id"]].top.disease.id == r["row"] for r in non]
    assert sum(t == "non_abdominal" for t in top_region) >= 0.9 * len(non)
    assert sum(s == NON_ABDOMINAL for s in scope) >= 0.9 * len(non)
    assert sum(top_row) >= 0.8 * len(non)


def test_abdominal_controls_stay_modelled(rows, results):
    ctrl = [r for r in rows if r["expect"] == "modelled"]
    assert all(results[r["id"]].scope == MODELLED for r in ctrl), [
        (r["id"], results[r["id"]].top.disease.id) for r in ctrl if results[r["id"]].scope != MODELLED]
    hit = [r["organ"] in results[r["id"]].top.structures for r in ctrl]
    assert sum(hit) >= 0.9 * len(ctrl)


@pytest.mark.parametrize("text", [
    "nausea, vomiting and crampy abdominal pain since last night",
    "upset stomach and diarrhoea for two days",
    "abdominal pain and fever",
    "feels sick and has tummy cramps",
])
def test_abdominal_words_alone_never_name_a_non_abdominal_row(catalogue, text):
    result = differential(text)
    assert result.scope != NON_ABDOMINAL
    assert result.top is None or result.top.disease.part not in NEW_PARTS or result.top.probability < 0.2


def test_held_out_texts_are_not_close_to_any_training_or_calibration_text(rows):
    spec = importlib.util.spec_from_file_location("dev_overlap", REPO / "Training" / "dev_overlap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    references = module.reference_texts()
    for path in sorted((REPO / "Training" / "data" / "ood_candidates").glob("*.jsonl")):
        references += [(path.name, json.loads(line)["text"]) for line in path.read_text(encoding="utf-8").splitlines()
                       if line.strip()]
    assert module.violations(rows, references) == []


def test_new_rows_take_little_prior_mass_from_abdominal_diagnoses(catalogue, new_rows):
    from MedSORALib.differential.differential import PRIOR_POWER

    new = sum(d.prior ** PRIOR_POWER for d in new_rows)
    rest = sum(d.prior ** PRIOR_POWER for d in catalogue.diseases if d.part not in NEW_PARTS)
    # a text none of them explains keeps almost all its mass on the diagnoses it had before
    assert new < 0.15 * rest
