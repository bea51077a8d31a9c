"""The differential: likelihood-ratio scoring, removed organs, negated findings, scope, fusion with the text
model and the fields of ``medsora rank``."""
from __future__ import annotations

import json
import math

import pytest

from MedSORALib.differential.differential import (
    ABDOMINAL_OTHER, MODELLED, NON_ABDOMINAL, Differential, differential, load_differential)
from MedSORALib.differential.fusion import fuse, gate, reason
from MedSORALib.differential.reader import read
from MedSORALib.organs import STRUCTURES

CHOLECYSTITIS = "constant right upper quadrant pain since last night's dinner, fever 38.4, Murphy's sign"
REMOVED_GB = "right upper quadrant pain after fatty meals; gallbladder removed five years ago"
APPENDICITIS = ("pain began around the belly button and moved to the right lower quadrant, off her food, "
                "temperature 37.9, rebound tenderness at McBurney's point")


def _weights_available() -> bool:
    try:
        from MedSORALib.text.reasoning import resolve_setting_dir

        resolve_setting_dir(None, "full11")
        return True
    except Exception:
        return False


shipped = pytest.mark.skipif(not _weights_available(), reason="shipped text weights absent")


def test_cholecystitis_example_ranks_acute_cholecystitis_first():
    result = differential(CHOLECYSTITIS)
    top = result.top
    assert "cholecystitis" in top.disease.name.lower()
    assert top.structures == ("gallbladder",)
    assert {"ruq_pain", "fever", "murphy_sign"} <= {f.id for f in top.supporting}
    look_for = " ".join(top.disease.look_for).lower()
    assert "gallstone" in look_for and "wall thickening" in look_for and "pericholecystic" in look_for
    assert max(result.organ_relevance, key=result.organ_relevance.get) == "gallbladder"
    assert top.probability > 3 * result.diagnoses[1].probability


def test_removed_gallbladder_gets_zero_and_its_diseases_are_dropped():
    result = differential(REMOVED_GB)
    assert result.removed == ("gallbladder",)
    assert result.organ_relevance["gallbladder"] == 0.0
    assert all("gallbladder" not in d.structures for d in result.diagnoses)
    assert max(result.organ_relevance, key=result.organ_relevance.get) != "gallbladder"


def test_probabilities_are_a_distribution_with_a_none_of_these_mass():
    result = differential(CHOLECYSTITIS)
    total = sum(d.probability for d in result.diagnoses) + result.none_probability
    assert total == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 <= v <= 1.0 for v in result.organ_relevance.values())
    assert set(result.organ_relevance) == set(STRUCTURES)


def test_non_specific_text_gives_a_flat_ranking():
    vague = differential("abdominal pain and feeling unwell")
    specific = differential(CHOLECYSTITIS)
    assert vague.top.probability < 0.05
    assert vague.none_probability > 2 * specific.none_probability
    assert vague.top.probability < specific.top.probability / 10
    assert max(vague.organ_relevance.values()) < max(specific.organ_relevance.values())


def test_negated_finding_does_not_count_for_and_counts_against():
    base = differential("right upper quadrant pain")
    present = differential("right upper quadrant pain, Murphy's sign positive")
    negated = differential("right upper quadrant pain, Murphy's sign negative")

    def p(result):
        return next(d.probability for d in result.diagnoses if d.disease.id == "acute_cholecystitis")

    assert p(present) > p(base) > p(negated)
    chole = next(d for d in negated.diagnoses if d.disease.id == "acute_cholecystitis")
    assert "murphy_sign" not in {f.id for f in chole.supporting}
    assert "murphy_sign" in {f.id for f in chole.against}


def test_negative_lr_follows_the_schema_formula():
    scorer = load_differential()
    disease = scorer.catalogue.by_id["acute_cholecystitis"]
    w = disease.weight("murphy_sign")
    assert w.lr_negative == pytest.approx((1 - w.freq) / (1 - w.freq / w.lr))
    base = scorer.score(read("right upper quadrant pain"))
    neg = scorer.score(read("right upper quadrant pain, no Murphy's sign"))
    b = next(d for d in base.diagnoses if d.disease.id == "acute_cholecystitis").log_score
    n = next(d for d in neg.diagnoses if d.disease.id == "acute_cholecystitis").log_score
    assert n - b == pytest.approx(scorer.temperature * math.log(w.lr_negative), rel=1e-6)


def test_generic_findings_count_less_than_specific_ones():
    scorer = load_differential()
    assert scorer.generic_weight < 1.0
    many_generic = differential("nausea, vomiting, fever, tiredness, feeling unwell, loss of appetite")
    one_specific = differential("painless jaundice with pale stools and dark urine, weight loss")
    assert many_generic.top.probability < one_specific.top.probability


def test_age_and_sex_adjust_the_prior():
    man = differential("34-year-old man with sudden lower abdominal pain and a positive pregnancy test")
    woman = differential("34-year-old woman with sudden lower abdominal pain and a positive pregnancy test")
    female_only = [d for d in woman.diagnoses if d.disease.sex == "female"]
    assert female_only
    p_w = {d.disease.id: d.probability for d in woman.diagnoses}
    p_m = {d.disease.id: d.probability for d in man.diagnoses}
    d = female_only[0].disease.id
    assert p_m[d] < p_w[d] * 0.1


def test_a_row_both_sexes_get_costs_the_other_sex_less_than_a_one_sex_row():
    from MedSORALib.differential import differential as module

    text = "{} aged 58 with crushing central chest pain spreading to the left arm, sweating and a swollen scrotum"
    man, woman = ({d.disease.id: d.log_score for d in differential(text.format(who)).diagnoses}
                  for who in ("A man", "A woman"))
    # same findings, so the log scores differ only by the sex factor of the prior
    assert man["acute_coronary_syndrome"] - woman["acute_coronary_syndrome"] == pytest.approx(
        -math.log(module.MOSTLY_OTHER_SEX_FACTOR))
    assert man["testicular_torsion"] - woman["testicular_torsion"] == pytest.approx(
        -math.log(module.WRONG_SEX_FACTOR))
    assert module.WRONG_SEX_FACTOR < module.MOSTLY_OTHER_SEX_FACTOR < 1.0


def test_paired_organ_takes_the_side_of_the_text():
    result = differential("left flank pain radiating to the groin, microscopic haematuria, writhing in pain")
    assert result.organ_relevance["kidney_left"] > 3 * result.organ_relevance["kidney_right"]
    assert max(result.organ_relevance, key=result.organ_relevance.get) == "kidney_left"


def test_scope_non_abdominal_and_appendicitis():
    knee = differential("knee pain after a fall playing football")
    assert knee.scope == NON_ABDOMINAL
    appendix = differential(APPENDICITIS)
    assert appendix.scope == ABDOMINAL_OTHER and appendix.outside == "appendix"
    assert differential(CHOLECYSTITIS).scope == MODELLED


def test_gate_is_zero_below_low_and_alpha_above_high():
    assert gate(0.0, 0.6, 0.2, 0.5) == 0.0
    assert gate(0.9, 0.6, 0.2, 0.5) == pytest.approx(0.6)
    assert 0.0 < gate(0.35, 0.6, 0.2, 0.5) < 0.6


def test_fusion_keeps_the_model_when_unsure_and_zeroes_removed_organs():
    model = {k: 0.1 for k in STRUCTURES}
    model["gallbladder"] = 0.9
    vague = differential("abdominal pain and feeling unwell")
    fused, a, _scope, _out = fuse(model, vague, True, alpha=0.6, low=0.5, high=0.8)
    assert a == 0.0 and fused == model
    removed = differential(REMOVED_GB)
    fused, _a, _scope, _out = fuse(model, removed, True)
    assert fused["gallbladder"] == 0.0
    assert max(fused, key=fused.get) != "gallbladder"


def test_differential_of_one_text_is_fast_enough_to_call_per_text():
    import time

    scorer = load_differential()
    reading = read(CHOLECYSTITIS)
    start = time.perf_counter()
    for _ in range(5):
        scorer.score(reading)
    # a loose sanity bound only; the figure is measured by bench/bench_differential.py
    assert (time.perf_counter() - start) / 5 < 1.0


def test_custom_constants_change_the_posterior():
    from MedSORALib.differential.catalogue import load_catalogue

    flat = Differential(load_catalogue(), temperature=0.3)
    sharp = Differential(load_catalogue(), temperature=1.0)
    r = read(CHOLECYSTITIS)
    assert sharp.score(r).top.probability > flat.score(r).top.probability


# -- with the shipped text model -------------------------------------------------------------------------------
@shipped
def test_reason_removed_organ_never_first_with_the_model():
    from MedSORALib.text.reasoning import TextReasoner

    reasoner = TextReasoner.load()
    out = reason([REMOVED_GB, "she had her gallbladder out last year; now pain under the right ribs after eating"],
                 reasoner)
    for r in out:
        assert r.structure_relevance["gallbladder"] == 0.0
        assert r.ranked_structures()[0][0] != "gallbladder"
        assert r.prediction.structure_relevance["gallbladder"] > 0.0  # the model alone would not know


def test_removed_organ_ranks_last_even_when_everything_is_zero():
    from MedSORALib.differential.fusion import Reasoned

    result = differential("splenectomy in 2010")
    assert result.removed == ("spleen",)
    flat = Reasoned("splenectomy in 2010", None, result, dict.fromkeys(STRUCTURES, 0.0), 0.0, MODELLED, None, True)
    ranked = [k for k, _ in flat.ranked_structures()]
    assert ranked[-1] == "spleen" and ranked[0] != "spleen"


@shipped
def test_text_reasoner_reason_hook_with_patient_age_and_sex():
    from MedSORALib.text.reasoning import TextReasoner

    reasoner = TextReasoner.load()
    text = "sudden one-sided lower abdominal pain with a positive pregnancy test"
    woman, man = reasoner.reason([text, text], age=[28, 28], sex=["female", "male"])
    assert woman.differential.reading.sex == "female" and woman.differential.reading.age == 28
    female_only = {d.disease.id for d in woman.differential.diagnoses if d.disease.sex == "female"}
    p_w = sum(d.probability for d in woman.differential.diagnoses if d.disease.id in female_only)
    p_m = sum(d.probability for d in man.differential.diagnoses if d.disease.id in female_only)
    assert female_only and p_m < p_w / 10


@shipped
def test_reason_scope_and_in_domain():
    from MedSORALib.text.reasoning import TextReasoner

    reasoner = TextReasoner.load()
    chole, knee, appendix = reason([CHOLECYSTITIS, "knee pain after a fall playing football", APPENDICITIS], reasoner)
    assert chole.scope == MODELLED and chole.in_domain
    assert chole.ranked_structures()[0][0] == "gallbladder"
    assert knee.scope == NON_ABDOMINAL and not knee.in_domain
    assert appendix.scope == ABDOMINAL_OTHER and appendix.outside == "appendix" and not appendix.in_domain


@shipped
def test_rank_json_has_differential_scope_and_why(capsys):
    from MedSORALib.cli import main

    assert main(["rank", "--json", CHOLECYSTITIS]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["scope"] == "modelled" and obj["outside"] is None and obj["in_domain"] is True
    top = obj["differential"][0]
    assert set(top) >= {"diagnosis", "organs", "probability", "supporting", "against", "look_for", "source"}
    assert "cholecystitis" in top["diagnosis"].lower() and top["organs"] == ["gallbladder"]
    assert "Murphy's sign" in top["supporting"]
    assert any("pericholecystic" in s for s in top["look_for"])
    probs = [d["probability"] for d in obj["differential"]]
    assert probs == sorted(probs, reverse=True)
    first = obj["organs"][0]
    assert first["name"] == "gallbladder" and any("cholecystitis" in w.lower() for w in first["why"])
    assert {"murphy_sign", "fever", "ruq_pain"} <= {f["id"] for f in obj["findings"]}


@shipped
def test_rank_table_shows_diagnoses_and_look_for(capsys):
    from MedSORALib.cli import main

    assert main(["rank", REMOVED_GB]) == 0
    out = capsys.readouterr().out
    assert "removed: gallbladder" in out and "look for:" in out
    table = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(table) == 13 and "gallbladder" not in table[0]


@shipped
def test_rank_file_streams_chunks_with_progress(tmp_path, capsys, monkeypatch):
    from MedSORALib.cli import main
    from MedSORALib.commands import rank

    monkeypatch.setattr(rank, "CHUNK", 4)
    texts = [CHOLECYSTITIS, REMOVED_GB, "knee pain after a fall playing football", APPENDICITIS,
             "vomiting blood after retching", "left flank pain radiating to the groin", "dark urine and itching",
             "pulsating lump in the belly", "tearing pain between the shoulder blades"]
    path = tmp_path / "symptoms.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert main(["rank", "--file", str(path)]) == 0
    captured = capsys.readouterr()
    objs = [json.loads(line) for line in captured.out.splitlines()]
    assert [o["symptom"] for o in objs] == texts
    assert all({"differential", "scope", "outside"} <= set(o) for o in objs)
    assert objs[2]["scope"] == "non-abdominal" and objs[3]["outside"] == "appendix"
    assert objs[1]["organs"][0]["name"] != "gallbladder"
    assert "9/9 texts" in captured.err


@shipped
def test_a_non_specific_text_gets_a_flat_ranking_in_the_models_order():
    """Only generic findings ("abdominal pain and fever") and no diagnosis standing out: the relevances are drawn
    toward their mean (order kept); a specific text keeps its confident top organ."""
    from MedSORALib.differential.fusion import NON_SPECIFIC_SPREAD, flatten
    from MedSORALib.text.reasoning import TextReasoner

    reasoner = TextReasoner.load()
    texts = ["abdominal pain and fever", "tummy ache", CHOLECYSTITIS]
    vague, lay, chole = reason(texts, reasoner)
    for r in (vague, lay):
        assert r.non_specific
        model = r.prediction.structure_relevance
        ranked = [k for k, _ in r.ranked_structures()]
        assert ranked == sorted(STRUCTURES, key=lambda k: (-model[k], STRUCTURES.index(k)))
        values = list(r.structure_relevance.values())
        model_spread = max(model.values()) - min(model.values())
        assert max(values) - min(values) == pytest.approx(NON_SPECIFIC_SPREAD * model_spread, abs=1e-6)
        assert max(values) < 0.4
    assert max(vague.prediction.structure_relevance.values()) > 0.6  # the model alone is confident
    assert not chole.non_specific
    assert chole.ranked_structures()[0][0] == "gallbladder" and chole.ranked_structures()[0][1] > 0.5
    assert flatten({"a": 0.8, "b": 0.0, "c": 0.2}) == pytest.approx({"a": 0.575, "b": 0.0, "c": 0.425})


def test_a_negated_or_historical_finding_does_not_make_a_text_specific():
    from MedSORALib.differential.fusion import non_specific

    assert non_specific(differential("abdominal pain and fever, no jaundice"))
    assert not non_specific(differential("abdominal pain with fever and jaundice and Murphy's sign"))


def test_a_past_disease_is_context_not_the_presentation():
    """"A history of gallstones has sudden chest pain and sweating": the gallstones alone do not make a gallstone
    disease the best diagnosis; chest pain and sweating bring the heart and the aorta forward. Control: the same
    history with right upper quadrant pain after a fatty meal keeps a gallstone disease first."""
    from MedSORALib.differential import differential as D

    chest = differential("a 60-year-old with a history of gallstones has sudden chest pain and sweating")
    top = [d.disease.id for d in chest.diagnoses[:2]]
    assert not any("chol" in d or "biliary" in d or "gallstone" in d for d in top), top
    assert {"acute_coronary_syndrome"} & {d.disease.id for d in chest.diagnoses[:3]}
    colic = differential("a 60-year-old with a history of gallstones has right upper quadrant pain after a fatty meal")
    assert colic.top.structures == ("gallbladder",)
    # without the discount the history alone would lead (the rule is what moves it)
    scorer = load_differential()
    old = D.CONTEXT_ALONE_WEIGHT
    try:
        D.CONTEXT_ALONE_WEIGHT = 1.0
        undiscounted = scorer.score(read("a 60-year-old with a history of gallstones has sudden chest pain and sweating"))
    finally:
        D.CONTEXT_ALONE_WEIGHT = old
    assert undiscounted.top.structures == ("gallbladder",)


def test_the_differential_weighs_less_where_its_diagnoses_lie_outside_the_13():
    """The fusion weight is scaled by the probability the differential puts on diagnoses in the 13 structures."""
    from MedSORALib.differential.fusion import ALPHA, MODELLED_MASS_FULL, modelled_mass

    model = dict.fromkeys(STRUCTURES, 0.1) | {"adrenal_gland_right": 0.9}
    chest = differential("crushing central chest pain going to the left arm on exertion, sweating, troponin raised")
    assert chest.top.disease.organs == () and modelled_mass(chest) < MODELLED_MASS_FULL
    fused, a, _scope, _outside = fuse(model, chest, True)
    assert a == pytest.approx(ALPHA * modelled_mass(chest) / MODELLED_MASS_FULL)
    assert max(fused, key=fused.get) == "adrenal_gland_right"
    chole = differential(CHOLECYSTITIS)
    assert modelled_mass(chole) >= MODELLED_MASS_FULL
    assert fuse(model, chole, True)[1] == pytest.approx(ALPHA)


def test_a_negated_body_site_does_not_make_a_text_non_abdominal():
    assert differential("tired and itchy, no yellow eyes").scope == MODELLED
    assert differential("tired and itchy eyes").scope == NON_ABDOMINAL


def test_an_abdominal_finding_keeps_a_text_naming_other_body_sites_in_scope():
    """Jaundice read from "the whites of my eyes looked yellow" is the liver's, though the text names the skin and
    the eyes; without it the same text is non-abdominal."""
    from MedSORALib.differential.catalogue import load_catalogue
    from MedSORALib.differential.differential import ABDOMINAL_FINDINGS

    assert ABDOMINAL_FINDINGS <= set(load_catalogue().findings)
    itch = "For three weeks my skin has itched all over and keeps me from sleep; last week my wife said"
    yellow = differential(f"{itch} the whites of my eyes looked yellow.")
    assert "jaundice" in {f.id for f in yellow.reading.present()}
    assert yellow.top.probability < 0.2 and yellow.scope == MODELLED
    red = differential(f"{itch} my eyes looked red.")
    assert red.top.probability < 0.2 and red.scope == NON_ABDOMINAL
    assert differential("My knees ache and my urine has turned the colour of tea.").scope == MODELLED


def test_a_sign_of_the_abdomen_keeps_a_text_in_scope_against_the_models_out_of_domain_call():
    """Where the differential is not confident, the model's out-of-domain decision gives the scope, unless the text
    reads a sign of the abdomen (jaundice, melaena...); an abdominal pain site alone does not overrule it (the
    epigastric pain of a heart attack)."""
    model = dict.fromkeys(STRUCTURES, 0.2)
    yellow = differential("tired for a month, and now my eyes have gone yellow")
    assert yellow.top.probability < 0.5 and "jaundice" in {f.id for f in yellow.reading.present()}
    assert fuse(model, yellow, False)[2] == MODELLED
    tired = differential("tired for a month, and now my eyes have gone red")
    assert tired.top.probability < 0.5 and fuse(model, tired, False)[2] == NON_ABDOMINAL
    pit = differential("an ache in the pit of my stomach since this morning")
    assert pit.top.probability < 0.5 and "epigastric_pain" in {f.id for f in pit.reading.present()}
    assert fuse(model, pit, False)[2] == NON_ABDOMINAL and fuse(model, pit, True)[2] == MODELLED


def test_dizziness_is_no_non_abdominal_body_site():
    """Weakness with dizziness on standing names no body site: the site rule leaves it to the model; a text about
    a knee and an ankle is non-abdominal."""
    weak = differential("weeks of weakness and exhaustion, dizzy whenever he stands, too tired to eat")
    assert weak.top.probability < 0.2 and weak.scope == MODELLED
    assert differential("a swollen knee and a sore ankle for a week").scope == NON_ABDOMINAL


def test_an_injury_read_as_now_is_the_presentation_not_background():
    """Trauma read as happening now counts fully (an old injury stays context), without making other context
    findings count fully."""
    from MedSORALib.differential import differential as module

    now = differential("25M, fell off his mountain bike an hour ago, abdominal pain")
    old = differential("25M, abdominal pain; fell off his mountain bike five years ago")
    assert {f.id: f.status for f in now.reading.findings}["trauma"] == "present"
    assert {f.id: f.status for f in old.reading.findings}["trauma"] == "history"
    injuries = lambda res: sum(d.probability for d in res.diagnoses if "trauma" in d.disease.name.lower()  # noqa: E731
                               or "injury" in d.disease.name.lower())
    assert injuries(now) > 0.5 > 0.2 > injuries(old)
    scorer = module.Differential(module.load_differential().catalogue)
    saved = module.EVENT_FINDINGS
    try:
        module.EVENT_FINDINGS = frozenset()
        assert injuries(scorer.score(now.reading)) < 0.2
    finally:
        module.EVENT_FINDINGS = saved


def test_a_supported_leading_diagnosis_in_the_13_overrules_the_models_out_of_domain_call():
    from MedSORALib.differential.fusion import OVERRULE_CONFIDENCE, OVERRULE_MODELLED_MASS, modelled_mass

    model = dict.fromkeys(STRUCTURES, 0.2)
    stone = differential("sudden colicky right loin pain going to the groin, rolling about, blood on dipstick")
    assert stone.top.disease.organs and stone.top.probability >= OVERRULE_CONFIDENCE
    assert modelled_mass(stone) >= OVERRULE_MODELLED_MASS
    assert fuse(model, stone, False)[2] == MODELLED
    knee = differential("a hot swollen right knee after a football match")
    assert fuse(model, knee, False)[2] == NON_ABDOMINAL


def test_a_specific_finding_for_a_modelled_diagnosis_outweighs_the_body_site_rule():
    """Food hard to get down with a cough at night names a body site outside the abdomen only: the differential's
    site rule calls it non-abdominal, but where the text model calls it in domain the best diagnosis in the
    oesophagus, weak but carried by a specific finding (SITE_RULE_YIELDS), keeps it in scope; a model that calls
    it out of domain still decides; with a cough and chest pain the best diagnosis lies in the lung and the site
    rule holds."""
    from MedSORALib.differential.fusion import SITE_RULE_YIELDS

    model = dict.fromkeys(STRUCTURES, 0.2)
    swallow = differential("for three months bread and meat have been hard to get down, and she wakes at night "
                           "coughing")
    assert swallow.scope == NON_ABDOMINAL and SITE_RULE_YIELDS <= swallow.top.probability < 0.5
    assert "esophagus" in swallow.top.disease.organs
    assert fuse(model, swallow, True, ood_score=0.3)[2] == MODELLED
    assert fuse(model, swallow, False, ood_score=0.9)[2] == NON_ABDOMINAL
    cough = differential("a dry cough and an ache in the chest for a week")
    assert not cough.top.disease.organs and cough.scope == NON_ABDOMINAL
    assert fuse(model, cough, True, ood_score=0.3)[2] == NON_ABDOMINAL


def test_a_row_whose_main_organ_is_removed_leads_with_the_next_structure():
    """A bile duct stone after cholecystectomy names the liver as well: with the gallbladder gone the liver
    takes the row's full probability (the main organ's share), not the half a further organ gets."""
    r = differential("gallbladder removed five years ago; now recurrent jaundice and itching")
    assert "gallbladder" in r.removed and r.top.disease.id == "choledocholithiasis"
    assert r.top.main == {"liver"}
    assert r.organ_relevance["gallbladder"] == 0.0
    assert r.organ_relevance["liver"] >= r.top.probability
