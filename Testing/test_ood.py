"""Out-of-domain decision on held-out texts, the word channel, the development sets (and the retired external set), laterality.

Every rate here is recomputed through the text model on texts that are not stored in the
detector's neighbour banks (checked by cosine), never read back from a configuration file.
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from MedSORALib.organs import FULL_CLASSES
from MedSORALib.text.laterality import detect_laterality
from MedSORALib.text.ood import heldout_rates, load_ood_texts, outside_banks
from MedSORALib.text.ood_lexicon import (
    CATEGORIES,
    LexicalEvidence,
    apply_lexical_evidence,
    calibrate_lexicon,
    load_lexicon,
    names_abdominal_organ,
    vocabulary_weights,
)
from MedSORALib.text.reasoning import TextReasoner, default_weights_dir

REPO = Path(__file__).resolve().parent.parent
DEV_PATH = REPO / "Training" / "data" / "external_dev.jsonl"


def _dev_rows():
    return [json.loads(line) for line in DEV_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]


# -- the retired external-style development set (kept for comparison; Training/data/EXTERNAL_DEV.md) ----------
def test_retired_external_dev_set_counts_labels_and_disclosed_overlap():
    rows = _dev_rows()
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["text"].lower() for r in rows}) == len(rows)
    abdominal = [r for r in rows if r["abdominal"]]
    other = [r for r in rows if not r["abdominal"]]
    assert len(abdominal) >= 220 and len(other) >= 45
    assert all(r["organs"] and set(r["organs"]) <= set(FULL_CLASSES) for r in abdominal)
    assert all(len(set(r["organs"])) == len(r["organs"]) for r in abdominal)
    assert all(r["organs"] == [] for r in other)
    primary = Counter(r["organs"][0] for r in abdominal)
    assert set(primary) == set(FULL_CLASSES) and min(primary.values()) >= 12
    assert {r["register"] for r in rows} == {"case", "exam", "lay", "requisition"}
    assert {r["register"] for r in other} == {"case", "exam", "lay", "requisition"}
    assert sum(len(r["organs"]) > 1 for r in abdominal) >= 20
    assert {r["laterality"] for r in rows} == {"left", "right", None}
    # Texts stored verbatim in a training file, register texts included: the two EXTERNAL_DEV.md discloses
    # (the current dev sets must have none: Testing/test_dev_sets.py checks them against every source).
    from MedSORALib.files import read_jsonl, resource_path

    import re

    def words(text):  # the same words in the same order, case and punctuation aside
        return " ".join(re.findall(r"[a-z0-9]+", text.lower()))

    seen = set()
    for name in ("symptom_texts.jsonl", "register_texts.jsonl", "team_observations.jsonl"):
        seen |= {words(r["text"]) for r in read_jsonl(resource_path("dataset", name))}
    for name in ("non_abdominal", "abdominal_queries"):
        seen |= {words(r["text"]) for r in load_ood_texts(name)}
    verbatim = [r["text"] for r in rows if words(r["text"]) in seen]
    assert len(verbatim) == 2, verbatim
    assert "2 share all their words" in " ".join((REPO / "Training" / "data" / "EXTERNAL_DEV.md").read_text().split())


def test_external_dev_laterality_labels_are_detected():
    rows = _dev_rows()
    wrong = [(r["text"], r["laterality"], detect_laterality(r["text"])) for r in rows
             if detect_laterality(r["text"]) != r["laterality"]]
    assert wrong == []
    paired = [r for r in rows if r["organs"][:1] in (["kidney"], ["adrenal_gland"])]
    for register in ("case", "exam", "lay", "requisition"):
        assert {r["laterality"] for r in paired if r["register"] == register} >= {"left", "right"} or register == "case"


# -- laterality ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, side",
    [
        ("R loin pain", "right"),
        ("L flank pain, r/o obstructing stone", "left"),
        ("LLQ pain radiating to groin", "left"),
        ("RLQ pain with blood on dipstick", "right"),
        ("LUQ tenderness after a fall", "left"),
        ("RUQ pain after fatty meals", "right"),
        ("pain that left me unable to sleep", None),
        ("the flank pain left him doubled over all night", None),
        ("right in the middle of my back, a deep ache", None),
        ("it hurts right at the base of my spine", None),
        ("pain on my right side that left me unable to sleep", "right"),
        ("Renal colic, R side", "right"),
        ("s/p L nephrectomy, surveillance", "left"),
        ("Adrenal incidentaloma 2.5 cm L, washout study", "left"),
        ("lt kidney stone", "left"),
        ("Rt. loin pain", "right"),
        ("R/O stone", None),
        ("2 L of ascitic fluid drained", None),
        ("L5 radiculopathy", None),
        ("Sudden R arm weakness", None),
        ("Hearing loss L ear", None),
        ("WBC 140 with a left shift, LUQ mass", "left"),
        ("hard node above the left clavicle", None),
        ("has left flank pain", "left"),
        ("we were told he had only months left. He then had pain under the ribs", None),
        ("nothing left to bring up after hours of retching", None),
        ("3 days left flank pain", "left"),
        ("two weeks left-sided loin pain", "left"),
        ("time left before surgery was short; right loin pain", "right"),
        ("pain on the right under my ribs", "right"),
        ("R and L flank pain", None),
    ],
)
def test_detect_laterality_abbreviations_and_non_spatial_words(text, side):
    assert detect_laterality(text) == side


# -- the word channel ------------------------------------------------------------------------------
def test_vocabulary_weights_from_the_ontologies():
    weights = vocabulary_weights()
    assert weights["renal"][0] > 4 and weights["renal"][1] > 100
    assert weights["urin"][0] > 4
    assert weights["knee"][0] < -1 and weights["knee"][1] == 0 and weights["knee"][2] > 10
    assert weights["eye"][0] < -2
    assert len(weights) > 2000


def test_names_abdominal_organ():
    for text in ("splenomegaly", "enlarged spleen", "pancreatitis", "gallbladder attack", "AAA surveillance",
                 "elevated LFTs", "s/p hepatectomy", "?IVC thrombus", "portal vein thrombosis", "varices",
                 "?Phaeochromocytoma", "s/p sleeve gastrectomy", "renal colic"):
        assert names_abdominal_organ(text), text
    for text in ("knee effusion", "r/o PE, pleuritic CP", "h/o migraine, worse headache", "toothache"):
        assert not names_abdominal_organ(text), text


def _toy_weights():
    # token: (weight, abdominal terms, non-abdominal terms)
    return {"urin": (5.0, 200, 0), "bloat": (2.5, 3, 0), "vomit": (1.5, 7, 3), "knee": (-2.0, 0, 35),
            "eye": (-3.5, 0, 120), "pain": (-0.5, 3, 40), "renal": (6.0, 230, 0)}


def test_calibrate_lexicon_respects_firing_rates_and_orders_likelihood_ratios():
    abdominal = ["blood in the urine", "bloating after meals", "belly pain and vomiting", "urine is dark",
                 "pain in the flank", "vomiting and bloating", "yellow skin and dark urine", "feeling unwell"] * 3
    non_abdominal = ["knee pain", "eye pain", "red eye", "knee swelling", "vomiting with a red eye",
                     "sore knee after running", "itchy eye", "headache", "toothache", "a cough",
                     "bloated and a sore knee"] * 3
    lex = calibrate_lexicon(_toy_weights(), abdominal, non_abdominal, named_rate=0.0, weak_rate=0.05, site_rate=0.05)
    # "bloat" (3 abdominal terms) occurs in a non-abdominal text, so exclusive tokens need 4+ terms.
    assert lex.exclusive == {"urin", "renal"} and lex.calibration["exclusive_min_terms"] == 200
    # "vomit" (1.5) and "bloat" (2.5) each fire on 1/11 > 5 % of the non-abdominal texts; "urin" (5.0) on none.
    assert lex.in_threshold == pytest.approx(5.0)
    # "pain" (-0.5) is in 3/8 abdominal texts, too many; "knee" (-2.0) and "eye" (-3.5) in none.
    assert lex.out_threshold == pytest.approx(2.0)
    assert "skin" not in lex.body_sites and {"knee", "eye"} <= lex.body_sites  # "skin": 1/8 > 5 % abdominal texts
    assert lex.evidence("sore knee")["category"] == "non_abdominal"
    assert lex.evidence("pain in the belly")["category"] == "abdominal"
    assert lex.evidence("dark urine")["named"] and lex.evidence("headache")["category"] == "neither"
    assert lex.log_lr["abdominal"] > 0 > lex.log_lr["non_abdominal"]
    again = LexicalEvidence.from_json(json.loads(json.dumps(lex.to_json())))
    assert again.log_lr == pytest.approx(lex.log_lr) and again.exclusive == lex.exclusive
    p = np.array([0.05, 0.05, 0.6, 0.6])
    out = apply_lexical_evidence(["dark urine", "a sore knee", "a sore knee", "pain in the belly"], p, 0.4, lex)
    assert out[0] >= 0.4  # named evidence reaches the threshold
    assert out[1] < p[1] and out[2] < p[2] and out[3] > p[3]
    assert out[2] == pytest.approx(1 / (1 + np.exp(-(np.log(0.6 / 0.4) + lex.log_lr["non_abdominal"]))))


def test_lexicon_builder_writes_a_calibrated_lexicon(tmp_path):
    out = tmp_path / "lexicon.json"
    result = subprocess.run([sys.executable, "Training/build_ood_lexicon.py", "--output", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    lex = LexicalEvidence.from_json(data)
    cal = data["calibration"]
    assert cal["n_non_abdominal"] == len(load_ood_texts("non_abdominal", split="calibration"))
    assert cal["named_share_non_abdominal"] <= 0.01
    assert set(cal["categories_abdominal"]) == set(CATEGORIES)
    assert lex.log_lr["abdominal"] > 1 and lex.log_lr["non_abdominal"] < -1
    shipped = load_lexicon()
    assert shipped is not None and set(shipped.log_lr) == set(CATEGORIES)


# -- held-out rates of the shipped text model ------------------------------------------------------
shipped = pytest.mark.skipif(
    not (default_weights_dir() / "full11" / "model.safetensors").is_file(), reason="text weights not trained"
)


@pytest.fixture(scope="module")
def full11():
    return TextReasoner.load(setting="full11")


def _held_out(reasoner, texts, allowed=0.02):
    """The texts outside the detector's neighbour banks; at most ``allowed`` of them may coincide with a
    stored text (the product model trains on terse terms, which a short query can repeat)."""
    keep = outside_banks(reasoner, texts)
    assert len(texts) - sum(keep) <= max(1, int(allowed * len(texts))), [t for t, k in zip(texts, keep) if not k]
    return [t for t, k in zip(texts, keep) if k]


@shipped
def test_heldout_ood_rates_on_the_dev_sets(full11):
    def rows(name):
        path = REPO / "Training" / "data" / f"dev_{name}.jsonl"
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    modelled = [r["text"] for r in rows("presentations") + rows("short_histories") if r["scope"] == "modelled"]
    other = [r["text"] for r in rows("non_abdominal")]
    # Every dev text is held out from the detector's banks (none may coincide with a stored text).
    assert _held_out(full11, modelled, allowed=0.0) == modelled and _held_out(full11, other, allowed=0.0) == other
    report = heldout_rates(full11, modelled, other)
    assert report["n_in_domain"] == len(modelled) >= 400 and report["n_out_of_domain"] == len(other) >= 80
    # Regression floors under today's figures (kept 0.951, caught 0.506: the logistic detector alone, the word
    # channel off since Training/refit_ood.py; with it the figures were 0.939 and 0.395). The non-abdominal dev
    # texts mention abdominal words on purpose and half of them still pass as abdominal; issue 24 wants at least
    # 0.90 caught and 0.94 kept on real text.
    assert report["kept_abdominal"] >= 0.93
    assert report["flagged_non_abdominal"] >= 0.47


@shipped
def test_word_channel_is_off_and_off_catches_more_on_the_check_half(full11):
    """The shipped full11 decides with the logistic detector alone (chosen on the tune half of the dev sets,
    docs/evaluation.md "Non-abdominal presentations"); on the check half (odd line positions), never used for that
    choice, turning the word channel back on catches fewer non-abdominal presentations and keeps no more abdominal
    ones."""
    def rows(name):
        path = REPO / "Training" / "data" / f"dev_{name}.jsonl"
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return [json.loads(line) for i, line in enumerate(lines) if i % 2 == 1]

    assert full11.word_channel is False
    modelled = [r["text"] for r in rows("presentations") + rows("short_histories") if r["scope"] == "modelled"]
    other = [r["text"] for r in rows("non_abdominal")]
    off = heldout_rates(full11, modelled, other)
    full11.word_channel = True
    try:
        on = heldout_rates(full11, modelled, other)
    finally:
        full11.word_channel = False
    # check half today: off kept 0.951 caught 0.425; on kept 0.936 caught 0.350
    assert off["kept_abdominal"] >= 0.93 and off["flagged_non_abdominal"] >= 0.40
    assert off["flagged_non_abdominal"] > on["flagged_non_abdominal"]
    assert off["kept_abdominal"] >= on["kept_abdominal"]


@shipped
def test_heldout_ood_rates_on_the_resource_test_rows(full11):
    queries = _held_out(full11, [r["text"] for r in load_ood_texts("abdominal_queries", split="test")], allowed=0.1)
    other = _held_out(full11, [r["text"] for r in load_ood_texts("non_abdominal", split="test")])
    report = heldout_rates(full11, queries, other)
    assert report["kept_abdominal"] >= 0.9 and report["flagged_non_abdominal"] >= 0.9


@shipped
def test_terse_terms_and_organ_names_stay_in_domain(full11):
    # The product model trains on such terms, so these may be stored texts: they must simply work.
    seen = ["splenomegaly", "enlarged spleen", "pancreatitis", "gallbladder attack", "hydronephrosis",
            "AAA surveillance", "elevated LFTs", "RUQ pain", "varices", "renal mass", "?phaeochromocytoma",
            "IVC filter check", "portal vein thrombosis", "dysphagia"]
    # Terse terms of the same kind that no bank holds: the held-out check.
    unseen = ["splenic enlargement on exam", "hepatomegaly, ?cause", "deranged LFTs post chemo", "RUQ discomfort after meals, ?stones",
              "oesophageal varices, surveillance", "adrenal incidentaloma follow-up", "IVC thrombus extension",
              "renal calculus, L", "infrarenal aortic aneurysm 4.6 cm", "recurrent pancreatitis, ?pancreas divisum"]
    assert _held_out(full11, unseen, allowed=0.0) == unseen
    preds = full11.predict(seen + unseen)
    assert [p.text for p in preds if not p.in_domain] == []
    assert all(max(p.structure_relevance.values()) > 0.3 for p in preds)


@shipped
def test_non_abdominal_dev_texts_are_out_of_domain_and_low(full11):
    texts = ["Knee effusion after twisting injury, ?meniscal tear", "h/o migraine, worse headache, ?SAH",
             "My toothache is unbearable, my jaw is swollen and I can't open my mouth wide.",
             "My eye is red and gritty and stuck shut with gunk every morning."]
    assert _held_out(full11, texts, allowed=0.0) == texts
    for pred in full11.predict(texts):
        assert not pred.in_domain, pred.text
        assert pred.ood_score > 0.5, pred.text
        assert max(pred.structure_relevance.values()) < 0.35, (pred.text, pred.structure_relevance)


@shipped
def test_evaluation_script_reports_both_channels(tmp_path):
    out = tmp_path / "ood.json"
    result = subprocess.run([sys.executable, "Training/evaluate_ood.py", "--settings", "full11", "--output", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())["full11"]
    # The largest cosine to the banks over all texts of a set, before the texts stored in the banks are left out:
    # none of the current dev texts is near a stored text; the retired set holds one stored verbatim, which only
    # the maximum over all texts can show (the maximum over the texts kept is below 0.99 by construction).
    for name in ("dev: presentations + non-abdominal", "dev: short histories"):
        assert report[name]["in_banks"] == 0 and report[name]["max_cosine_all"] < 0.95, (name, report[name])
    assert report["dev: presentations + non-abdominal"]["neural"]["n_non_abdominal"] >= 80
    dev = report["external dev (all)"]
    assert dev["neural"]["n_abdominal"] + dev["in_banks"] == 241 and dev["neural"]["n_non_abdominal"] == 52
    assert dev["max_cosine_all"] >= 0.99 and dev["in_banks"] >= 1 and dev["max_cosine_to_banks"] < 0.99
    # On the retired set the word channel keeps no fewer abdominal texts than the neural detector alone and flags
    # more others (on the current non-abdominal dev set it flags fewer, which is why the shipped full11 leaves it off:
    # docs/evaluation.md).
    assert dev["neural + words"]["kept_abdominal"] >= dev["neural"]["kept_abdominal"]
    assert dev["neural + words"]["flagged_non_abdominal"] > dev["neural"]["flagged_non_abdominal"]
    assert "| external dev: requisition |" in result.stdout


@shipped
def test_refit_program_stores_the_word_channel_switch(tmp_path):
    result = subprocess.run([sys.executable, "Training/refit_ood.py", "--settings", "full11", "--keep-detector",
                             "--word-channel", "on", "--output", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((tmp_path / "full11" / "config.json").read_text())
    shipped_config = json.loads((default_weights_dir() / "full11" / "config.json").read_text())
    assert written["ood"]["word_channel"] is True and shipped_config["ood"]["word_channel"] is False
    assert written["ood"]["coef"] == shipped_config["ood"]["coef"]
    reloaded = TextReasoner.load(tmp_path, setting="full11")
    assert reloaded.word_channel is True
    assert reloaded.detector.threshold == pytest.approx(shipped_config["ood"]["threshold"])
