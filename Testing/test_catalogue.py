"""The cited disease catalogue: schema, sources, lexicon coverage, counts and spot checks of content."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from MedSORALib.differential import catalogue as cat
from MedSORALib.organs import STRUCTURES

REPO = Path(__file__).resolve().parent.parent
SCHEMA_PAGE = REPO / "docs" / "differential_schema.md"


def _schema_base_ids() -> list[str]:
    """The base finding ids the schema page lists (used while findings/base.yaml is not on this branch)."""
    text = SCHEMA_PAGE.read_text(encoding="utf-8")
    section = text[text.index("### Base finding ids"):text.index("### Findings computed")]
    return sorted(set(re.findall(r"`([a-z][a-z0-9_]*)`", section)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The shipped data; without base.yaml, a copy with a base lexicon made from the schema page's ids."""
    if (cat.DATA_DIR / "findings" / "base.yaml").is_file():
        return cat.DATA_DIR
    root = tmp_path_factory.mktemp("differential")
    shutil.copytree(cat.DATA_DIR, root, dirs_exist_ok=True)
    base = [{"id": i, "label": i.replace("_", " "), "kind": "symptom", "patterns": [i.replace("_", " ")]}
            for i in _schema_base_ids() if i not in cat.COMPUTED_FINDINGS]
    (root / "findings" / "base.yaml").write_text(yaml.safe_dump({"findings": base}), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def catalogue(data_dir) -> cat.Catalogue:
    return cat.load_catalogue(data_dir)


def test_catalogue_loads_and_has_at_least_200_rows(catalogue):
    assert len(catalogue.diseases) >= 200
    assert len({d.id for d in catalogue.diseases}) == len(catalogue.diseases)


def test_every_row_has_a_source_with_an_author_or_body_and_a_year(catalogue):
    for d in catalogue.diseases:
        assert re.search(r"\b(19|20)\d\d\b", d.source), d.id
        # an author ("Jones MW") or a body ("European Association ...", "American College ...", "WHO")
        assert re.search(r"[A-Z][a-zA-Z'\-]+ [A-Z]{1,3}\b|Association|College|Society|Institute|Organization|"
                         r"Group|KDIGO|Committee|Faculty", d.source), d.id
        for w in d.findings + d.against:
            if w.lr_source:
                assert re.search(r"\b(19|20)\d\d\b", w.lr_source), (d.id, w.id)


def test_every_finding_a_row_names_is_in_the_merged_lexicon(catalogue):
    used = {w.id for d in catalogue.diseases for w in d.findings + d.against}
    assert used <= set(catalogue.findings)
    # and the parts' own findings are all used by some row (no dead entries)
    parts = [p for p in (cat.DATA_DIR / "findings").glob("*.yaml") if p.name != "base.yaml"]
    own = {f["id"] for p in parts for f in yaml.safe_load(p.read_text(encoding="utf-8"))["findings"]}
    assert own - used == set()


def test_own_findings_do_not_redefine_base_ids():
    base_ids = set(_schema_base_ids())
    parts = [p for p in (cat.DATA_DIR / "findings").glob("*.yaml") if p.name != "base.yaml"]
    own = [f["id"] for p in parts for f in yaml.safe_load(p.read_text(encoding="utf-8"))["findings"]]
    assert len(own) == len(set(own))
    assert not set(own) & base_ids
    assert not set(own) & set(cat.COMPUTED_FINDINGS)


def test_every_pattern_compiles_and_matches_its_own_kind_of_text(catalogue):
    for f in catalogue.findings.values():
        for p in f.patterns:
            re.compile(p, re.IGNORECASE)
    examples = {
        "painless_jaundice": "He noticed painless jaundice over two weeks",
        "pain_migrating_to_rlq": "pain started around the umbilicus and moved to the right iliac fossa",
        "vomiting_then_chest_pain": "severe chest pain after forceful vomiting",
        "left_shoulder_pain": "pain radiating to the left shoulder tip",
        "hot_showers_relieve": "relieved by hot showers",
        "dysphagia_solids_and_liquids": "dysphagia to both solids and liquids",
        "progressive_dysphagia": "progressive dysphagia",
        "ivc_filter_history": "an IVC filter was placed in 2015",
        "writhing_restless": "he cannot lie still",
        "charcot_triad": "Charcot's triad",
        "food_fear": "fear of eating",
        "high_riding_testis": "high-riding testis",
        "clay_coloured_and_dark_urine": "pale stools and dark urine",
        "ketones_positive": "urine ketones 3+",
        "moon_face": "moon face and buffalo hump",
        "b_symptoms": "B symptoms",
        "bilateral_dvt": "recurrent bilat DVT",
        "right_shoulder_pain": "epigastric pain radiating to R scapula",
        "left_sided_fullness": "LUQ dragging discomfort",
    }
    for fid, text in examples.items():
        assert catalogue.findings[fid].regex.search(text), (fid, text)
        # the reader matches patterns against the lower-cased text without a case flag
        assert re.search("|".join(f"(?:{p})" for p in catalogue.findings[fid].patterns), text.lower()), fid
    assert not catalogue.findings["painless_jaundice"].regex.search("jaundice with severe pain")


def _reads(catalogue, fid: str, text: str) -> bool:
    """Whether a finding's patterns match a text as the reader matches them (lower case, word edges)."""
    body = "|".join(f"(?:{p})" for p in catalogue.findings[fid].patterns)
    return re.search(rf"(?<![\w])(?:{body})(?![\w])", text.lower()) is not None


@pytest.mark.parametrize("fid, text", [
    ("paroxysmal_attacks", "known paroxysmal AF"),
    ("seizures", "previously fit and well"),
    ("known_cad", "gastric bypass surgery in 2019"),
    ("polydipsia", "drinking a lot of alcohol"),
    ("kussmaul_breathing", "rapid breathing"),
    ("psychosocial_stress", "ST depression in V5"),
    ("burning_skin_pain", "burning pain in the upper abdomen"),
    ("oral_thrush", "vaginal thrush"),
    ("hypoglycaemia", "the pain is better after eating"),
    ("pain_radiating_to_arm_or_jaw", "pain on moving the arm"),
    ("olive_mass", "cooks with olive oil"),
    ("pallor", "stools have turned pale"),
    ("variceal_history", "pain in the finger tips"),
    ("metabolic_acidosis", "urine pH 7.0"),
    ("lymphadenopathy", "a lump in the groin"),
    ("painless_jaundice", "jaundice with severe pain"),
])
def test_patterns_do_not_read_common_look_alikes(catalogue, fid, text):
    assert not _reads(catalogue, fid, text)


@pytest.mark.parametrize("fid, text", [
    ("paroxysmal_attacks", "paroxysms of headache and palpitations"),
    ("hypoglycaemia", "spells of sweating that settle when she eats"),
    ("metabolic_acidosis", "pH 7.12, bicarbonate 8"),
    ("late_pregnancy", "30 weeks pregnant"),
    ("left_shoulder_pain", "pain at the tip of his left shoulder"),
    ("ivc_filter_history", "they put a little wire basket in my big vein"),
    ("moon_face", "my face has gone round and red"),
    ("mononucleosis_history", "student with glandular fever"),
    ("food_fear", "she is afraid to eat"),
    ("constant_pain", "constant right upper quadrant pain"),
])
def test_patterns_read_lay_and_clinical_wording(catalogue, fid, text):
    assert _reads(catalogue, fid, text)


def test_each_structure_has_at_least_five_diseases(catalogue):
    for key in STRUCTURES:
        assert len(catalogue.for_structure(key)) >= 5, key
    weak = ("portal_vein_and_splenic_vein", "inferior_vena_cava", "adrenal_gland_left", "spleen")
    for key in weak:
        main = [d for d in catalogue.diseases if d.organs and key in d.structures[:2]]
        assert len(main) >= 8, key


def test_outside_rows_and_regions(catalogue):
    outside = catalogue.outside_rows()
    assert len(outside) >= 60
    assert {d.region for d in outside} == {"abdominal", "non_abdominal"}
    assert sum(d.region == "non_abdominal" for d in outside) >= 20
    for d in outside:
        assert d.organs == () and d.outside in cat.OUTSIDE


def test_each_row_has_ct_signs_and_at_least_three_findings(catalogue):
    for d in catalogue.diseases:
        assert d.look_for, d.id
        assert len(d.findings) >= 3, d.id
        assert 0 < d.prior < 1
        assert all(0 <= w.freq <= 1 and w.lr > 1 for w in d.findings), d.id
        assert all(w.lr < 1 for w in d.against), d.id


def test_generic_findings_carry_small_weights(catalogue):
    generic = {"abdominal_pain", "nausea", "fatigue", "malaise"}
    for d in catalogue.diseases:
        for w in d.findings:
            if w.id in generic:
                assert w.lr <= 2, (d.id, w.id)


def _lr(catalogue, disease, finding):
    w = catalogue.by_id[disease].weight(finding)
    assert w is not None, (disease, finding)
    return w.lr


def test_spot_checks_of_content(catalogue):
    assert _lr(catalogue, "acute_pancreatitis", "lipase_3x_uln") > 3
    assert _lr(catalogue, "acute_pancreatitis", "pain_worse_lying_relieved_leaning_forward") > 3
    assert _lr(catalogue, "biliary_colic", "pain_after_fatty_meal") > 3
    assert _lr(catalogue, "pheochromocytoma", "hypertension_paroxysmal") > 5
    assert _lr(catalogue, "pheochromocytoma", "catecholamines_raised") > 10
    assert _lr(catalogue, "traumatic_splenic_rupture", "left_shoulder_pain") > 3
    assert _lr(catalogue, "ivc_thrombosis", "bilateral_leg_swelling") > 3
    assert _lr(catalogue, "ivc_thrombosis", "abdominal_wall_veins") > 3
    assert _lr(catalogue, "aortic_dissection_type_b", "tearing_pain") > 3
    assert _lr(catalogue, "aortic_dissection_type_a", "pulse_deficit") > 3
    assert _lr(catalogue, "food_bolus_obstruction", "food_impaction") > 5
    assert _lr(catalogue, "acute_appendicitis", "appendicectomy_history") < 0.2
    w = catalogue.by_id["acute_cholecystitis"].weight("murphy_sign")
    assert w.lr_source and "Trowbridge" in w.lr_source
    assert catalogue.by_id["ectopic_pregnancy"].sex == "female"
    assert catalogue.by_id["testicular_torsion"].outside == "testis"
    assert catalogue.by_id["testicular_torsion"].region == "non_abdominal"  # the scrotum lies outside the abdomen
    assert catalogue.by_id["budd_chiari_syndrome"].organs[:2] == ("liver", "inferior_vena_cava")
    assert catalogue.by_id["renal_colic"].structures == ("kidney_left", "kidney_right")
    # a specific finding outweighs a generic one in the same row
    assert _lr(catalogue, "acute_pancreatitis", "lipase_3x_uln") > 5 * _lr(catalogue, "acute_pancreatitis", "nausea")


def test_negated_finding_lr_follows_the_schema_formula(catalogue):
    w = catalogue.by_id["acute_pancreatitis"].weight("lipase_3x_uln")
    expected = (1 - w.freq) / (1 - w.freq / w.lr)
    assert w.lr_negative == pytest.approx(expected)
    assert w.lr_negative < 0.3


def test_load_catalogue_is_cached(data_dir):
    assert cat.load_catalogue(data_dir) is cat.load_catalogue(data_dir)


def _write(root: Path, findings: list, diseases: list) -> Path:
    (root / "findings").mkdir(parents=True, exist_ok=True)
    (root / "diseases").mkdir(parents=True, exist_ok=True)
    (root / "findings" / "a.yaml").write_text(yaml.safe_dump({"findings": findings}), encoding="utf-8")
    (root / "diseases" / "x.yaml").write_text(yaml.safe_dump({"diseases": diseases}), encoding="utf-8")
    return root


GOOD_FINDING = {"id": "ruq_pain", "label": "RUQ pain", "kind": "symptom", "patterns": ["ruq pain"]}
GOOD_ROW = {"id": "acute_cholecystitis", "name": "Acute cholecystitis", "organs": ["gallbladder"],
            "frequency": "common", "findings": [{"id": "ruq_pain", "freq": 0.9, "lr": 2.5}],
            "look_for": ["gallstones"],
            "source": "Yokoe M, et al. Tokyo Guidelines 2018. J Hepatobiliary Pancreat Sci, 2018"}


def test_sex_mostly_keeps_the_sex_and_is_not_strict(tmp_path):
    rows = [{**GOOD_ROW, "sex": "mostly female"}, {**GOOD_ROW, "id": "other", "sex": "male"}, {**GOOD_ROW, "id": "x"}]
    c = cat.build_catalogue(_write(tmp_path, [GOOD_FINDING], rows))
    assert [(d.sex, d.sex_strict) for d in c.diseases] == [("female", False), ("male", True), (None, True)]


def test_rows_both_sexes_get_are_not_strict_and_one_sex_rows_are(catalogue):
    rows = {d.id: d for d in catalogue.diseases}
    for did in ("acute_coronary_syndrome", "migraine", "thyrotoxicosis", "bladder_cancer", "irritable_bowel_syndrome"):
        assert rows[did].sex is not None and not rows[did].sex_strict, did
    for did in ("ectopic_pregnancy", "testicular_torsion", "ovarian_torsion", "acute_prostatitis"):
        assert rows[did].sex is not None and rows[did].sex_strict, did


def test_a_valid_minimal_folder_loads(tmp_path):
    c = cat.build_catalogue(_write(tmp_path, [GOOD_FINDING], [GOOD_ROW]))
    assert [d.id for d in c.diseases] == ["acute_cholecystitis"]
    assert c.findings["ruq_pain"].patterns == ("ruq pain",)
    assert c.findings["lipase_3x_uln"].computed


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"organs": ["gall"]}, "unknown structure key 'gall'"),
    ({"organs": [], "outside": "elbow"}, "unknown OUTSIDE key 'elbow'"),
    ({"source": ""}, "missing source"),
    ({"source": "Someone"}, "names no year"),
    ({"findings": [{"id": "ruq_pain", "freq": 1.5, "lr": 2}]}, "freq 1.5 outside 0-1"),
    ({"findings": [{"id": "ruq_pain", "freq": 0.5, "lr": 1.0}]}, "must be > 1 in findings"),
    ({"against": [{"id": "ruq_pain", "lr": 1.2}]}, "must be < 1 in against"),
    ({"findings": [{"id": "no_such", "freq": 0.5, "lr": 2}]}, "'no_such': finding id not in the lexicon"),
    ({"look_for": []}, "missing look_for"),
    ({"organs": ["liver"], "outside": "colon"}, "exactly one"),
    ({"frequency": "often"}, "frequency 'often'"),
    ({"sex": "mostly women"}, "sex 'mostly women' must be female, male, mostly female, mostly male or null"),
])
def test_each_problem_gets_one_clear_message(tmp_path, change, message):
    row = {**GOOD_ROW, **change}
    with pytest.raises(cat.CatalogueError) as err:
        cat.build_catalogue(_write(tmp_path, [GOOD_FINDING], [row]))
    assert len(err.value.problems) == 1, err.value.problems
    assert message in err.value.problems[0]


def test_lexicon_problems_are_reported(tmp_path):
    bad = [GOOD_FINDING,
           {"id": "ruq_pain", "label": "RUQ pain", "kind": "sign", "patterns": ["right upper quadrant"]},
           {"id": "broken", "label": "x", "kind": "symptom", "patterns": ["(unclosed"]},
           {"id": "odd", "label": "x", "kind": "feeling", "patterns": ["x"]},
           {"id": "shouty", "label": "x", "kind": "symptom", "patterns": ["\\bHIV\\b"]},
           {"id": "escaped", "label": "x", "kind": "symptom", "patterns": ["\\d+\\S*"]}]
    with pytest.raises(cat.CatalogueError) as err:
        cat.build_catalogue(_write(tmp_path, bad, [GOOD_ROW]))
    text = "\n".join(err.value.problems)
    assert "kinds disagree" in text and "invalid regex '(unclosed'" in text and "kind 'feeling'" in text
    assert "has upper-case letters" in text and "escaped" not in text
    assert len(err.value.problems) == 4


def test_a_finding_in_two_parts_is_merged(tmp_path):
    root = _write(tmp_path, [GOOD_FINDING], [GOOD_ROW])
    (root / "findings" / "b.yaml").write_text(yaml.safe_dump({"findings": [
        {"id": "ruq_pain", "label": "RUQ pain", "kind": "symptom", "patterns": ["right upper quadrant"]}]}))
    f = cat.build_catalogue(root).findings["ruq_pain"]
    assert f.patterns == ("ruq pain", "right upper quadrant") and f.parts == ("a.yaml", "b.yaml")
    assert f.regex.search("pain in the right upper quadrant")


def test_summary_command_prints_counts(capsys):
    assert cat.main(["--summary"]) == 0
    out = capsys.readouterr().out
    assert "| portal_vein_and_splenic_vein |" in out and "outside" in out
    rows = re.search(r"rows: (\d+)", out)
    assert rows and int(rows.group(1)) >= 200


def test_summary_command_rejects_bad_data(tmp_path, capsys):
    root = _write(tmp_path, [GOOD_FINDING], [{**GOOD_ROW, "source": ""}])
    assert cat.main(["--data", str(root)]) == 2
    assert capsys.readouterr().err.startswith("medsora: error: ")


def test_finding_ids_of_a_labs_file_are_collected_from_rules_and_qualitative_words():
    labs = {"analytes": [
        {"id": "lipase", "rules": [{"above": 60, "findings": ["lipase_raised"]},
                                   {"above": 60, "x": 3, "findings": ["lipase_3x_uln"]}],
         "qualitative": {"high": ["lipase_raised"], "low": []}},
        {"id": "renin", "qualitative": {"low": ["renin_low"]}, "source": "Some One. A title, 2020"}]}
    assert cat._lab_finding_ids(labs) == {"lipase_raised", "lipase_3x_uln", "renin_low"}


def test_a_lab_finding_known_only_to_labs_yaml_joins_the_lexicon(tmp_path):
    root = _write(tmp_path, [GOOD_FINDING], [{**GOOD_ROW, "findings": [
        {"id": "ruq_pain", "freq": 0.9, "lr": 2.5}, {"id": "renin_low", "freq": 0.9, "lr": 5}]}])
    labs = {"analytes": [{"id": "renin", "qualitative": {"low": ["renin_low"]}}]}
    (root / "labs.yaml").write_text(yaml.safe_dump(labs), encoding="utf-8")
    c = cat.build_catalogue(root)
    assert c.findings["renin_low"].computed and c.findings["renin_low"].kind == "lab"


def test_a_part_against_all_list_reaches_every_row_that_does_not_name_the_finding(tmp_path):
    findings = [GOOD_FINDING, {"id": "headache", "label": "headache", "kind": "symptom", "patterns": ["headache"]}]
    rows = [GOOD_ROW,
            {**GOOD_ROW, "id": "migraine", "name": "Migraine", "organs": [], "outside": "brain",
             "findings": [{"id": "headache", "freq": 0.9, "lr": 3}]},
            {**GOOD_ROW, "id": "other", "name": "Other", "findings": [{"id": "headache", "freq": 0.5, "lr": 2}],
             "against": [{"id": "ruq_pain", "lr": 0.9}]}]
    root = _write(tmp_path, findings, [])
    (root / "diseases" / "x.yaml").write_text(yaml.safe_dump(
        {"against_all": [{"id": "ruq_pain", "lr": 0.5}], "diseases": rows}), encoding="utf-8")
    c = cat.build_catalogue(root)
    by = c.by_id
    # a row naming the finding among its findings or its own against list keeps its own weight
    assert by["acute_cholecystitis"].weight("ruq_pain").lr == 2.5
    assert by["other"].weight("ruq_pain").lr == 0.9
    assert by["migraine"].weight("ruq_pain").lr == 0.5 and by["migraine"].against[-1].id == "ruq_pain"


def test_a_bad_against_all_entry_is_reported_once(tmp_path):
    root = _write(tmp_path, [GOOD_FINDING], [])
    (root / "diseases" / "x.yaml").write_text(yaml.safe_dump(
        {"against_all": [{"id": "no_such", "lr": 0.5}, {"id": "ruq_pain", "lr": 2}],
         "diseases": [GOOD_ROW, {**GOOD_ROW, "id": "b"}]}), encoding="utf-8")
    with pytest.raises(cat.CatalogueError) as err:
        cat.build_catalogue(root)
    assert len(err.value.problems) == 2, err.value.problems
    assert all("against_all" in p for p in err.value.problems)


def test_an_unknown_top_level_key_of_a_disease_part_is_reported(tmp_path):
    root = _write(tmp_path, [GOOD_FINDING], [])
    (root / "diseases" / "x.yaml").write_text(yaml.safe_dump({"diseases": [GOOD_ROW], "extras": []}), encoding="utf-8")
    with pytest.raises(cat.CatalogueError) as err:
        cat.build_catalogue(root)
    assert "expected one top-level key 'diseases'" in err.value.problems[0]


def test_scope_command_counts_the_differential_scope_of_text_files(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    rows = [{"text": "constant right upper quadrant pain after a fatty dinner, fever 38.4, Murphy's sign",
             "expect": "modelled"},
            {"text": "the worst headache of her life came on suddenly, with a stiff neck and vomiting",
             "expect": "non-abdominal"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    from MedSORALib.differential.evaluate import main as evaluate_main

    assert evaluate_main(["--scope", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| t.jsonl | 1 | modelled | 1 | 1 | 0 | 0 |" in out
    assert "| t.jsonl | 1 | non-abdominal | 1 | 0 | 0 | 1 |" in out
    assert evaluate_main(["--scope", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.startswith("medsora: error: ")
