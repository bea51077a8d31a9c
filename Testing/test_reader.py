"""The clinical reader: negation and its scope, uncertainty, history and removed organs, laboratory values with
units, vital signs, age and sex, and its precision and recall on the hand-annotated clauses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from MedSORALib.differential.reader import read

REPO = Path(__file__).resolve().parents[1]


def status(text: str, finding: str, **kw) -> str | None:
    return read(text, **kw).status_of(finding)


# -- negation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, finding, expected", [
    ("no fever", "fever", "negated"),
    ("fever", "fever", "present"),
    ("denies chest pain or vomiting", "chest_pain", "negated"),
    ("denies chest pain or vomiting", "vomiting", "negated"),
    ("jaundiced but without itching", "pruritus", "negated"),
    ("jaundiced but without itching", "jaundice", "present"),
    ("negative for haematuria", "haematuria", "negated"),
    ("Murphy's sign negative", "murphy_sign", "negated"),
    ("she is not vomiting", "vomiting", "negated"),
    ("No fever, rigors or night sweats.", "night_sweats", "negated"),
    ("No fever, rigors or night sweats.", "rigors", "negated"),
    ("afebrile and anicteric", "fever", "negated"),
    ("afebrile and anicteric", "jaundice", "negated"),
    ("non-tender abdomen", "abdominal_pain", "negated"),
    ("non-bloody diarrhoea", "bloody_diarrhoea", "negated"),
    ("non-bloody diarrhoea", "diarrhoea", "present"),
])
def test_negation(text, finding, expected):
    assert status(text, finding) == expected


def test_negation_stops_at_a_new_clause():
    r = read("Nausea, no vomiting, pain in the right upper quadrant")
    assert r.status_of("nausea") == "present"
    assert r.status_of("vomiting") == "negated"
    assert r.status_of("ruq_pain") == "present"
    r = read("No fever but severe epigastric pain radiating to the back")
    assert r.status_of("fever") == "negated"
    assert r.status_of("epigastric_pain") == "present" and r.status_of("pain_radiating_to_back") == "present"


# -- uncertainty and history ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, finding", [
    ("possible Murphy's sign", "murphy_sign"),
    ("RUQ pain, ?jaundice", "jaundice"),
    ("rule out haematuria", "haematuria"),
    ("query palpable mass", "palpable_mass"),
])
def test_uncertainty(text, finding):
    assert status(text, finding) == "uncertain"


@pytest.mark.parametrize("text, finding", [
    ("history of gallstones", "gallstones_history"),
    ("h/o haematemesis", "haematemesis"),
    ("status post splenectomy", "splenectomy_history"),
    ("jaundice as a child", "jaundice"),
    ("pancreatitis five years ago with vomiting", "vomiting"),
])
def test_history(text, finding):
    assert status(text, finding) == "history"


@pytest.mark.parametrize("text, removed", [
    ("right upper quadrant pain after fatty meals; gallbladder removed five years ago", ("gallbladder",)),
    ("she had her gallbladder out in 2015", ("gallbladder",)),
    ("s/p lap chole, now epigastric pain", ("gallbladder",)),
    ("post-splenectomy, fever and rigors", ("spleen",)),
    ("left nephrectomy for a tumour in 2010, now right flank pain", ("kidney_left",)),
    ("total gastrectomy for cancer", ("stomach",)),
    ("gallbladder in situ, no previous surgery", ()),
    ("no cholecystectomy", ()),
    ("?cholecystectomy", ()),
])
def test_removed_structures(text, removed):
    assert read(text).removed == removed


def test_family_history_is_not_the_patient():
    r = read("her mother had pancreatic cancer; she has epigastric pain")
    assert r.status_of("malignancy_history") == "family"
    assert r.status_of("epigastric_pain") == "present"


# -- laboratory values and vital signs ------------------------------------------------------------------------
def _value(text, finding, **kw):
    for f in read(text, **kw).findings:
        if f.id == finding:
            return f.status, f.value
    return None


def test_bilirubin_and_creatinine_units_convert():
    status_, value = _value("bilirubin 3.2 mg/dL", "bilirubin_raised")
    assert status_ == "present" and value == pytest.approx(3.2 * 17.1, rel=1e-3)
    assert _value("bilirubin 15 umol/L", "bilirubin_raised")[0] == "negated"
    assert _value("bilirubin 0.8 mg/dL", "bilirubin_raised") == ("negated", pytest.approx(13.68, rel=1e-3))
    status_, value = _value("creatinine 2.1 mg/dL", "creatinine_raised")
    assert status_ == "present" and value == pytest.approx(185.64, rel=1e-3)
    assert _value("creatinine 84 umol/L", "creatinine_raised")[0] == "negated"


def test_lipase_against_three_times_the_upper_limit():
    r = read("lipase 1450 U/L")
    assert r.status_of("lipase_3x_uln") == "present" and r.status_of("lipase_raised") == "present"
    r = read("lipase 90 U/L")
    assert r.status_of("lipase_raised") == "present" and r.status_of("lipase_3x_uln") == "negated"
    assert read("lipase more than 3 times the upper limit of normal").status_of("lipase_3x_uln") == "present"
    assert read("lipase 35").status_of("lipase_raised") == "negated"


def test_haemoglobin_by_sex_and_unit():
    assert read("Hb 7.9 g/dL").status_of("anaemia") == "present"
    assert read("Hb 79 g/L").status_of("anaemia") == "present"
    assert read("haemoglobin 12.5", sex="male").status_of("anaemia") == "present"
    assert read("haemoglobin 12.5", sex="female").status_of("anaemia") == "negated"


@pytest.mark.parametrize("text, finding, expected", [
    ("T 38.4", "fever", "present"),
    ("temp 101.2F", "fever", "present"),
    ("temperature 37.2 C", "fever", "negated"),
    ("BP 84/50", "hypotension", "present"),
    ("BP 128/76", "hypotension", "negated"),
    ("BP 190/115", "hypertension_severe", "present"),
    ("HR 118", "tachycardia", "present"),
    ("pulse 72", "tachycardia", "negated"),
    ("RR 28", "tachypnoea", "present"),
    ("sats 88% on air", "hypoxia", "present"),
    ("WCC 18.2", "leukocytosis", "present"),
    ("platelets 95 x10^9/L", "thrombocytopenia", "present"),
    ("K 2.9", "potassium_low", "present"),
    ("Na 128", "sodium_low", "present"),
    ("ALT 1450 U/L", "transaminases_very_high", "present"),
    ("ALT 120 U/L", "transaminases_very_high", "negated"),
])
def test_vitals_and_values(text, finding, expected):
    assert status(text, finding) == expected


@pytest.mark.parametrize("text, finding, expected", [
    ("raised lipase", "lipase_raised", "present"),
    ("elevated ALP", "alp_raised", "present"),
    ("ALP and GGT elevated", "ggt_raised", "present"),
    ("positive hCG", "hcg_positive", "present"),
    ("pregnancy test negative", "hcg_positive", "negated"),
    ("urine metanephrines elevated", "catecholamines_raised", "present"),
    ("normal LFTs", "transaminases_raised", "negated"),
    ("lipase not raised", "lipase_raised", "negated"),
])
def test_qualitative_laboratory_wordings(text, finding, expected):
    assert status(text, finding) == expected


def test_numbers_that_are_not_values_are_not_read():
    r = read("A 45-year-old with 3 days of pain, 2 episodes of vomiting")
    assert not [f for f in r.findings if f.source == "lab"]


# -- age and sex ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, age, sex", [
    ("55M with RUQ pain", 55, "male"),
    ("a 34-year-old woman with pelvic pain", 34, "female"),
    ("F/62 flank pain", 62, "female"),
    ("aged 70, he reports dark urine", 70, "male"),
    ("a lady in her forties", 45, "female"),
    ("72 yo gentleman", 72, "male"),
    ("epigastric pain", None, None),
])
def test_age_and_sex(text, age, sex):
    r = read(text)
    assert r.age == (None if age is None else pytest.approx(age))
    assert r.sex == sex


def test_caller_age_and_sex_take_precedence():
    r = read("55M with RUQ pain", age=30, sex="female")
    assert r.age == 30 and r.sex == "female"


# -- a handful of findings, not fifty --------------------------------------------------------------------------
def test_a_case_report_reads_a_handful_of_findings():
    text = ("A 47-year-old woman presents with two days of constant pain under the right ribs that began after a "
            "takeaway meal. She has vomited twice. Temperature 38.3 C, pulse 104, BP 132/84. Murphy's sign is "
            "positive. She denies jaundice, dark urine or pale stools. WCC 15.1, bilirubin 18 umol/L, ALP 110 U/L.")
    r = read(text)
    present = {f.id for f in r.present()}
    assert {"ruq_pain", "vomiting", "fever", "tachycardia", "murphy_sign", "leukocytosis"} <= present
    assert {"jaundice", "dark_urine", "pale_stools", "bilirubin_raised", "alp_raised"} <= {
        f.id for f in r.by_status("negated")}
    assert len(present) <= 10
    assert r.age == 47 and r.sex == "female"


# -- precision and recall on the hand-annotated clauses -------------------------------------------------------
def _clauses(name):
    path = REPO / "Testing" / "data" / name
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("name, floors", [
    # the development set: the lexicon was corrected on its errors, so its floors are high
    ("reader_clauses.jsonl", {"precision": 0.95, "recall": 0.95, "status_accuracy": 0.95}),
    # written after the lexicon was fixed and scored without correcting the lexicon on it (docs/reasoning.md)
    ("reader_clauses_heldout.jsonl", {"precision": 0.93, "recall": 0.80, "status_accuracy": 0.92}),
])
def test_reader_precision_and_recall_floor(name, floors):
    from MedSORALib.differential.evaluate_reader import evaluate_clauses

    rows = _clauses(name)
    report = evaluate_clauses(rows)
    for key, floor in floors.items():
        assert report[key] >= floor, (key, report[key])


def test_clause_sets_are_large_and_distinct():
    dev, heldout = _clauses("reader_clauses.jsonl"), _clauses("reader_clauses_heldout.jsonl")
    assert len(dev) + len(heldout) >= 150 and len(dev) >= 150
    assert not {r["text"].lower() for r in dev} & {r["text"].lower() for r in heldout}
    registers = {r["register"] for r in dev}
    assert {"requisition", "case", "exam", "lay", "triage"} <= registers


def test_clauses_are_not_training_or_dev_texts():
    corpus = []
    for rel in ("MedSORALib/resources/dataset/symptom_texts.jsonl", "MedSORALib/resources/dataset/register_texts.jsonl",
                "Training/data/external_dev.jsonl"):
        path = REPO / rel
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            corpus += [json.loads(line).get("text", "").lower() for line in lines if line.strip()]
    joined = "\n".join(corpus)
    for row in _clauses("reader_clauses.jsonl") + _clauses("reader_clauses_heldout.jsonl"):
        text = row["text"].lower()
        if len(text) >= 30:
            assert text not in joined, row["id"]


# -- HPO wordings ----------------------------------------------------------------------------------------------
def test_hpo_wordings_are_read_and_belong_to_lexicon_findings():
    from MedSORALib.differential.catalogue import load_catalogue
    from MedSORALib.differential.reader import HPO_TERMS_FILE

    terms = json.loads(HPO_TERMS_FILE.read_text(encoding="utf-8"))["terms"]
    named = {h for f in load_catalogue().findings.values() for h in f.hpo}
    assert terms and set(terms) <= named
    r = read("nocturnal hyperhidrosis, increased spleen size, no costiveness")
    assert r.status_of("night_sweats") == "present" and r.status_of("splenomegaly") == "present"
    assert r.status_of("constipation") == "negated"
    assert {f.source for f in r.findings} == {"hpo"}


def test_base_lexicon_hpo_ids_name_the_finding():
    """Each HPO id of the base lexicon is a term whose name shares a word with the finding (a wrong id fails)."""
    import yaml

    from MedSORALib.knowledge.obo import read_obo
    from MedSORALib.knowledge.sources import hpo_obo_path

    ontology = read_obo(hpo_obo_path())
    base = yaml.safe_load((REPO / "MedSORALib/resources/differential/findings/base.yaml").read_text(encoding="utf-8"))
    allowed = {"anorexia": "appetite", "rigors": "chills", "pale_stools": "acholic", "leg_swelling": "edema",
               "palpable_mass": "mass", "dyspnoea": "dyspnea", "tachypnoea": "tachypnea",
               "haematemesis": "hematemesis", "melaena": "melena", "haematochezia": "hematochezia",
               "diarrhoea": "diarrhea", "steatorrhoea": "steatorrhea", "haemoptysis": "hemoptysis",
               "haematuria": "hematuria", "abdominal_distension": "distention"}
    for f in base["findings"]:
        for hpo_id in f.get("hpo") or []:
            name = ontology.terms[hpo_id].name.lower()
            word = allowed.get(f["id"], f["id"].split("_")[0])
            assert word in name, (f["id"], hpo_id, name)


# -- the embedding fallback -------------------------------------------------------------------------------------
def test_embedding_fallback_reads_only_unmatched_asserted_clauses():
    from MedSORALib.differential.reader import load_reader
    from MedSORALib.text.encoder import TextEncoder

    reader, encoder = load_reader(), TextEncoder(cache_dir=False)
    plain = reader.read("lumpy swelling above the testis")
    assert plain.findings == []
    r = reader.read("lumpy swelling above the testis", encoder=encoder)
    assert [(f.id, f.status, f.source) for f in r.findings] == [("testicular_lump", "present", "embedding")]
    # a negated clause is never given to the fallback, and a clause the lexicon reads is left as it is
    assert reader.read("no lumpy swelling above the testis", encoder=encoder).findings == []
    r = reader.read("no tenderness at the costovertebral angle", encoder=encoder)
    assert [(f.id, f.status, f.source) for f in r.findings] == [
        ("costovertebral_angle_tenderness", "negated", "lexicon")]
    # below the threshold nothing is added ("a silvery look" is nearest pale stools, 0.66 < 0.8)
    assert reader.read("the stools have a silvery look", encoder=encoder).findings == []


# -- the clause sets written for issue 24 (lay; case, exam and short histories), each split in two before any change
@pytest.mark.parametrize("name, floors", [
    ("reader_clauses_lay.jsonl", {"precision": 0.95, "recall": 0.95, "status_accuracy": 0.95}),
    # held out: scored, never corrected on (docs/reasoning.md gives the first and current figures)
    ("reader_clauses_lay_heldout.jsonl", {"precision": 0.90, "recall": 0.65, "status_accuracy": 0.90}),
    # case reports, exam stems and short teaching-file histories, written for issue 24 the same way
    ("reader_clauses_case.jsonl", {"precision": 0.95, "recall": 0.95, "status_accuracy": 0.95}),
    ("reader_clauses_case_heldout.jsonl", {"precision": 0.93, "recall": 0.90, "status_accuracy": 0.90}),
    # a second held-out set of lay and case-report clauses, written before the wording-family pass and never
    # corrected on (docs/reasoning.md: 0.917 / 0.703 at its first run)
    ("reader_clauses_lay2.jsonl", {"precision": 0.89, "recall": 0.69, "status_accuracy": 0.93}),
])
def test_issue24_reader_precision_and_recall_floor(name, floors):
    from MedSORALib.differential.evaluate_reader import evaluate_clauses

    report = evaluate_clauses(_clauses(name))
    assert report["clauses"] >= 20
    for key, floor in floors.items():
        assert report[key] >= floor, (key, report[key])


def test_issue24_clause_sets_are_distinct_and_not_training_text():
    tune, check = _clauses("reader_clauses_lay.jsonl"), _clauses("reader_clauses_lay_heldout.jsonl")
    assert len(tune) + len(check) >= 60 and {r["register"] for r in tune + check} == {"lay"}
    case = _clauses("reader_clauses_case.jsonl") + _clauses("reader_clauses_case_heldout.jsonl")
    assert len(case) >= 60
    others = _clauses("reader_clauses.jsonl") + _clauses("reader_clauses_heldout.jsonl")
    lay2 = _clauses("reader_clauses_lay2.jsonl")
    assert len(lay2) >= 60 and {r["register"] for r in lay2} == {"lay", "case"}
    texts = [r["text"].lower() for r in tune + check + case + lay2]
    assert len(set(texts)) == len(texts)
    assert not set(texts) & {r["text"].lower() for r in others}
    corpus = []
    for rel in ("MedSORALib/resources/dataset/symptom_texts.jsonl", "MedSORALib/resources/dataset/register_texts.jsonl",
                "MedSORALib/resources/dataset/catalogue_texts.jsonl", "Training/data/external_dev.jsonl",
                "Training/data/dev_presentations.jsonl", "Training/data/dev_short_histories.jsonl",
                "Training/data/dev_non_abdominal.jsonl"):
        path = REPO / rel
        if path.is_file():
            corpus += [json.loads(line).get("text", "").lower()
                       for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(corpus) > 1000
    joined = "\n".join(corpus)
    for text in texts:
        assert len(text) < 30 or text not in joined, text


def test_jaundice_with_pain_denied_elsewhere_is_painless_jaundice():
    """Read across clauses as a clinician does; control: pain present, or pain never mentioned, derives nothing."""
    from MedSORALib.differential.reader import read

    both = read("Jaundice for four weeks with dark urine. He denies any abdominal pain or fever.")
    derived = [f for f in both.findings if f.id == "painless_jaundice"]
    assert len(derived) == 1 and derived[0].status == "present" and derived[0].source == "derived"
    assert derived[0].text.lower() == "jaundice"
    assert not any(f.id == "painless_jaundice" for f in read("jaundice and right upper quadrant pain; no fever").findings)
    assert not any(f.id == "painless_jaundice" for f in read("jaundice for four weeks with dark urine").findings)


@pytest.mark.parametrize("text, age, sex, finding, value", [
    ("89F, confusion and fever", 89, "female", None, None),          # an 89-year-old woman, not 31.7 C
    ("T 101.5F, RUQ pain", None, None, "fever", 38.6),                # a temperature, not a woman
    ("temp 99F", None, None, None, None),
    ("febrile to 102 F, 34M", 34, "male", "fever", 38.9),
    ("found at 89 °F in the snow", None, None, "hypothermia", 31.7),  # with a degree sign it is a temperature
])
def test_age_and_sex_tokens_are_not_temperatures_and_back(text, age, sex, finding, value):
    from MedSORALib.differential.reader import read

    r = read(text)
    assert r.age == age and r.sex == sex
    temps = [f for f in r.findings if f.id in ("fever", "hypothermia") and f.value is not None]
    if finding is None:
        assert not any(f.id == "hypothermia" and f.status == "present" for f in temps)
    else:
        assert [f.id for f in temps if f.status == "present"] == [finding]
        assert temps[0].value == pytest.approx(value, abs=0.05)


def test_neck_rigidity_clamminess_and_the_shakes_are_not_abdominal_signs():
    from MedSORALib.differential.reader import read

    ids = lambda t: {f.id for f in read(t).findings if f.status == "present"}  # noqa: E731
    assert "rigid_abdomen" not in ids("neck rigidity and photophobia")
    assert "rigid_abdomen" not in ids("nuchal rigidity")
    assert "rigid_abdomen" in ids("abdomen rigid and tender")
    assert "shock" not in ids("sweaty and clammy") and "shock" in ids("pale, clammy and confused")
    assert "rigors" not in ids("I get the shakes in the morning") and "rigors" in ids("shakes and shivers")


@pytest.mark.parametrize("text, present, absent", [
    ("non-specific exertional dyspnea with reduced effort tolerance", {"dyspnoea"}, {"exertional_chest_pain"}),
    ("I started urinating blood", {"haematuria"}, set()),
    ("a lump on the right abdomen", {"palpable_mass"}, set()),
    ("right hypochondralgia and fever", {"ruq_pain", "fever"}, {"luq_pain"}),
    ("chest pain on exertion", {"exertional_chest_pain"}, set()),
])
def test_case_report_wordings(text, present, absent):
    from MedSORALib.differential.reader import read

    ids = {f.id for f in read(text).findings if f.status == "present"}
    assert present <= ids and not (absent & ids), ids
