"""The development sets: labels and counts, independence from every text the models were built from, and
out-of-domain calibration topics kept apart from the non-abdominal dev topics (Training/data/DEV_SETS.md)."""
from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from MedSORALib.organs import FULL_CLASSES, STRUCTURES, structure_class

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "Training" / "data"


def _load_overlap():
    spec = importlib.util.spec_from_file_location("dev_overlap", REPO / "Training" / "dev_overlap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


overlap_module = _load_overlap()


CASE_DERIVED = "dev_case_derived.jsonl"
CASE_DERIVED2 = "dev_case_derived2.jsonl"
CASE_DERIVED3 = "dev_case_derived3.jsonl"


def _rows(name):
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def sets():
    return {name: _rows(name) for name in overlap_module.DEV_FILES}


# -- the overlap measures on hand-computed pairs ----------------------------------------------------
def test_trigram_coverage_and_jaccard_by_hand():
    dev = ["pain in the right loin", "fever and rigors", "a b"]
    other = ["severe pain in the right loin today", "rigors and fever", "nothing alike"]
    out = overlap_module.overlap(dev, other)
    # "pain in the right loin": trigrams {pain in the, in the right, the right loin}, all in other[0]
    assert out["coverage"][0] == pytest.approx(1.0) and out["coverage_at"][0] == 0
    # words: 5 shared of 7 in the union
    assert out["jaccard"][0] == pytest.approx(5 / 7) and out["jaccard_at"][0] == 0
    # same words, other order: Jaccard 1, no trigram in common
    assert out["jaccard"][1] == pytest.approx(1.0) and out["coverage"][1] == 0.0
    # a two-word text has no trigram and shares no word
    assert out["coverage"][2] == 0.0 and out["jaccard"][2] == 0.0 and out["jaccard_at"][2] == -1
    # coverage is the share of the dev text's trigrams: half of them copied
    half = overlap_module.overlap(["w1 w2 w3 w4 w5 w6"], ["w1 w2 w3 w4 x y z"])
    assert half["coverage"][0] == pytest.approx(2 / 4)


def test_violations_flag_a_copied_text():
    refs = [("dataset/x.jsonl", "Waves of pain from the right loin to the groin with blood in the urine.")]
    dev = [{"id": "a", "text": "waves of pain from the right loin to the groin, vomiting"},
           {"id": "b", "text": "dull ache in the left upper abdomen after a fall"}]
    bad = overlap_module.violations(dev, refs)
    assert [b["id"] for b in bad] == ["a"] and bad[0]["coverage"] >= 0.5 and bad[0]["source"] == "dataset/x.jsonl"


def test_reference_texts_include_every_training_knowledge_and_calibration_source():
    sources = Counter(source for source, _ in overlap_module.reference_texts())
    for required in ("dataset/symptom_texts.jsonl", "dataset/register_texts.jsonl", "dataset/team_observations.jsonl",
                     "knowledge/corpus.jsonl", "knowledge/chunks.json.gz", "ood/non_abdominal.jsonl",
                     "ood/abdominal_queries.jsonl", "weights/text/full11/knowledge_terms.json"):
        assert sources[required] > 100 or required.startswith("ood/abdominal") and sources[required] > 50, required
    # a training text file added later under dataset/ or differential/ is read too
    assert all(not s.startswith(("dataset/", "differential/")) or s.endswith(".jsonl") for s in sources)


# -- the independence rule ----------------------------------------------------------------------------
def test_no_dev_text_is_close_to_a_training_knowledge_or_calibration_text():
    dev = overlap_module.dev_rows()
    assert len(dev) >= 400
    bad = overlap_module.violations(dev, overlap_module.reference_texts())
    assert bad == [], bad[:5]


def test_calibration_topics_are_disjoint_from_non_abdominal_dev_topics(sets):
    calibration = [json.loads(line) for line in
                   (REPO / "MedSORALib" / "resources" / "ood" / "non_abdominal.jsonl").read_text().splitlines()
                   if line.strip()]
    assert all(r.get("topic") for r in calibration)
    topics = {t.strip().lower() for r in calibration for t in r["topic"].split(";")}
    dev = sets["dev_non_abdominal.jsonl"]
    assert all(r.get("topic") for r in dev)
    dev_topics = {r["topic"].strip().lower() for r in dev}
    assert len(dev_topics) >= 40
    assert not dev_topics & topics, sorted(dev_topics & topics)


# -- labels and counts --------------------------------------------------------------------------------
def _class_of(row):
    return structure_class(row["organs"][0])


def test_rows_are_well_formed(sets):
    seen = set()
    for name, rows in sets.items():
        for r in rows:
            assert set(r) >= {"id", "text", "organs", "register", "abdominal", "scope", "outside", "laterality"}, r
            assert r["id"] not in seen and r["text"].strip() == r["text"] and r["text"]
            seen.add(r["id"])
            assert len(set(r["organs"])) == len(r["organs"]) and set(r["organs"]) <= set(STRUCTURES)
            assert r["scope"] in ("modelled", "abdominal-other", "non-abdominal")
            assert r["abdominal"] == (r["scope"] != "non-abdominal")
            assert bool(r["organs"]) == (r["scope"] == "modelled")
            assert bool(r["outside"]) == (r["scope"] == "abdominal-other")
            assert r["laterality"] in ("left", "right", None)
            if name in (CASE_DERIVED, CASE_DERIVED2, CASE_DERIVED3):
                # retold published cases: each row names its source and the source's final diagnosis
                assert r["written"] == "case-derived" and "<http" in r["source"] and r["diagnosis"].strip(), r["id"]
            else:
                assert r.get("written", "first") in ("first", "second")
            # a one-sided paired label agrees with the side the text names
            sides = {o.rsplit("_", 1)[1] for o in r["organs"] if o.endswith(("_left", "_right"))}
            if len(sides) == 1:
                assert r["laterality"] == sides.pop(), r["id"]
    texts = [r["text"].lower() for rows in sets.values() for r in rows]
    assert len(set(texts)) == len(texts)


def test_counts_per_set_class_and_register(sets):
    pres = sets["dev_presentations.jsonl"]
    modelled = [r for r in pres if r["scope"] == "modelled"]
    assert len(modelled) >= 200 and 25 <= sum(r["scope"] == "abdominal-other" for r in pres) <= 40
    per_class = Counter(_class_of(r) for r in modelled)
    assert set(per_class) == set(FULL_CLASSES) and min(per_class.values()) >= 10
    assert {r["register"] for r in pres} == {"case", "exam", "lay"}
    assert min(Counter(r["register"] for r in modelled).values()) >= 50
    short = sets["dev_short_histories.jsonl"]
    assert len(short) >= 120 and {r["register"] for r in short} == {"short"}
    assert all(5 <= len(r["text"].split()) <= 15 for r in short)
    assert min(Counter(_class_of(r) for r in short if r["organs"]).values()) >= 10
    other = sets["dev_non_abdominal.jsonl"]
    assert len(other) >= 80 and all(r["scope"] == "non-abdominal" and not r["organs"] for r in other)


def test_presentations_leave_out_organ_names(sets):
    # Whole words and stems; "epigastric" names a region, "hepatitis B" is background history a real text carries.
    import re

    pattern = re.compile(r"\b(spleen|splenic|kidneys?|renal|gall ?bladder|o?esophag\w*|liver|hepatic|stomach|gastric|"
                         r"aortas?|aortic|vena cava|portal vein|pancrea\w*|adrenals?)\b")
    found = [(r["id"], m) for r in sets["dev_presentations.jsonl"] for m in pattern.findall(r["text"].lower())]
    assert found == []
    assert pattern.findall("epigastric pain, chronic hepatitis c, liver tests") == ["liver"]


# -- the case-derived set: published cases retold in the team's own words (DEV_SETS.md) ---------------
#: What the case-derived set holds today (counts are per file; raise them as rows are added).
CASE_MIN = {"modelled": 75, "per_class": 5, "abdominal-other": 11, "non-abdominal": 12}
CASE_SOURCE_KINDS = {"published case report", "teaching case", "patient story or news report"}


def test_case_derived_counts_classes_registers_and_sources(sets):
    rows = sets[CASE_DERIVED]
    modelled = [r for r in rows if r["scope"] == "modelled"]
    assert len(modelled) >= CASE_MIN["modelled"]
    per_class = Counter(_class_of(r) for r in modelled)
    assert set(per_class) == set(FULL_CLASSES) and min(per_class.values()) >= CASE_MIN["per_class"]
    assert [r["id"] for r in rows] == [f"dc-{i:03d}" for i in range(1, len(rows) + 1)]
    assert sum(r["scope"] == "abdominal-other" for r in rows) >= CASE_MIN["abdominal-other"]
    non = [r for r in rows if r["scope"] == "non-abdominal"]
    assert len(non) >= CASE_MIN["non-abdominal"] and all(r.get("topic") for r in non)
    # the three registers of real text: case-report opening, teaching-file line, patient story
    assert {r["register"] for r in rows} == {"case", "short", "lay"}
    assert all(3 <= len(r["text"].split()) <= 30 for r in rows if r["register"] == "short")
    # every kind of source is there, and none dominates
    kinds = Counter(r["source_kind"] for r in rows)
    assert set(kinds) == CASE_SOURCE_KINDS and max(kinds.values()) < 0.6 * len(rows)
    # one retold case per source page, and no published case twice under another address
    pages = [r["source"].rsplit("<", 1)[1].rstrip(">") for r in rows]
    assert len(set(pages)) == len(pages)
    assert len({r["diagnosis"].lower() + r["text"][:20] for r in rows}) == len(rows)


def test_case_derived_texts_leave_out_organ_names(sets):
    # the same rule as the presentations, on every abdominal row; a non-abdominal row may say "stomach"
    # the way a patient does ("stomach ache") but names no other structure
    import re

    pattern = re.compile(r"\b(spleen|splenic|kidneys?|renal|gall ?bladder|o?esophag\w*|liver|hepatic|stomach|gastric|"
                         r"aortas?|aortic|vena cava|portal vein|pancrea\w*|adrenals?)\b")
    found = [(r["id"], m) for r in sets[CASE_DERIVED] for m in pattern.findall(r["text"].lower())
             if r["abdominal"] or m != "stomach"]
    assert found == []


def test_case_derived_non_abdominal_topics_are_not_calibration_topics(sets):
    calibration = [json.loads(line) for line in
                   (REPO / "MedSORALib" / "resources" / "ood" / "non_abdominal.jsonl").read_text().splitlines()
                   if line.strip()]
    topics = {t.strip().lower() for r in calibration for t in r["topic"].split(";")}
    dev_topics = {r["topic"].strip().lower() for r in sets[CASE_DERIVED] if r["scope"] == "non-abdominal"}
    assert not dev_topics & topics, sorted(dev_topics & topics)


# -- the second case-derived set: more published cases retold, built the same way (DEV_SETS.md) --------
#: What the second set holds today (raise the counts as rows are added).
CASE2_MIN = {"modelled": 82, "per_class": 6, "abdominal-other": 8, "non-abdominal": 15, "short": 40, "lay": 20}
_ORGAN_WORDS = (r"\b(spleen|splenic|kidneys?|renal|gall ?bladder|o?esophag\w*|liver|hepatic|stomach|gastric|"
                r"aortas?|aortic|vena cava|portal vein|pancrea\w*|adrenals?)\b")


def _page(row):
    return row["source"].rsplit("<", 1)[1].rstrip(">")


def test_case_derived2_counts_classes_registers_and_sources(sets):
    rows = sets[CASE_DERIVED2]
    assert [r["id"] for r in rows] == [f"dd-{i:03d}" for i in range(1, len(rows) + 1)]
    modelled = [r for r in rows if r["scope"] == "modelled"]
    assert len(modelled) >= CASE2_MIN["modelled"]
    # every class, the thin ones of the first set (adrenal, portal/splenic vein, IVC, spleen) included
    per_class = Counter(_class_of(r) for r in modelled)
    assert set(per_class) == set(FULL_CLASSES) and min(per_class.values()) >= CASE2_MIN["per_class"], per_class
    assert sum(r["scope"] == "abdominal-other" for r in rows) >= CASE2_MIN["abdominal-other"]
    non = [r for r in rows if r["scope"] == "non-abdominal"]
    assert len(non) >= CASE2_MIN["non-abdominal"] and all(r.get("topic") for r in non)
    registers = Counter(r["register"] for r in rows)
    assert set(registers) == {"case", "short", "lay"}
    assert registers["short"] >= CASE2_MIN["short"] and registers["lay"] >= CASE2_MIN["lay"]
    assert all(3 <= len(r["text"].split()) <= 30 for r in rows if r["register"] == "short")
    kinds = Counter(r["source_kind"] for r in rows)
    assert set(kinds) == CASE_SOURCE_KINDS and max(kinds.values()) < 0.7 * len(rows)
    assert all(r["written"] == "case-derived" and r["diagnosis"].strip() for r in rows)


def test_case_derived2_uses_no_page_of_the_first_set_and_no_page_twice(sets):
    first, second = [_page(r) for r in sets[CASE_DERIVED]], [_page(r) for r in sets[CASE_DERIVED2]]
    assert len(set(second)) == len(second)
    assert not set(first) & set(second)
    # the same article under another address: a PMC or PubMed number shared with the first set
    import re

    def ids(pages):
        return {m.group(0).lower() for p in pages for m in re.finditer(r"PMC\d+|pubmed\.ncbi\.nlm\.nih\.gov/\d+", p, re.I)}

    assert not ids(first) & ids(second)


def test_case_derived2_abdominal_texts_leave_out_organ_names(sets):
    import re

    pattern = re.compile(_ORGAN_WORDS)
    found = [(r["id"], m) for r in sets[CASE_DERIVED2] for m in pattern.findall(r["text"].lower())
             if r["abdominal"] or m != "stomach"]
    assert found == []
    # the pattern itself catches what it is meant to
    assert pattern.findall("a tender spleen, renal angle pain, pancreatitis") == ["spleen", "renal", "pancreatitis"]


def test_case_derived2_non_abdominal_topics_are_not_calibration_topics(sets):
    calibration = [json.loads(line) for line in
                   (REPO / "MedSORALib" / "resources" / "ood" / "non_abdominal.jsonl").read_text().splitlines()
                   if line.strip()]
    topics = {t.strip().lower() for r in calibration for t in r["topic"].split(";")}
    dev_topics = {r["topic"].strip().lower() for r in sets[CASE_DERIVED2] if r["scope"] == "non-abdominal"}
    assert len(dev_topics) >= CASE2_MIN["non-abdominal"] // 2
    assert not dev_topics & topics, sorted(dev_topics & topics)


# -- the third case-derived set: published cases retold the same way, unseen by any method (DEV_SETS.md) ---
#: What the third set holds today (raise the counts as rows are added).
CASE3_MIN = {"modelled": 91, "per_class": 6, "abdominal-other": 8, "non-abdominal": 15, "short": 40, "lay": 20}


def test_case_derived3_counts_classes_registers_and_sources(sets):
    rows = sets[CASE_DERIVED3]
    assert [r["id"] for r in rows] == [f"de-{i:03d}" for i in range(1, len(rows) + 1)]
    modelled = [r for r in rows if r["scope"] == "modelled"]
    assert len(modelled) >= CASE3_MIN["modelled"]
    per_class = Counter(_class_of(r) for r in modelled)
    assert set(per_class) == set(FULL_CLASSES) and min(per_class.values()) >= CASE3_MIN["per_class"], per_class
    assert sum(r["scope"] == "abdominal-other" for r in rows) >= CASE3_MIN["abdominal-other"]
    non = [r for r in rows if r["scope"] == "non-abdominal"]
    assert len(non) >= CASE3_MIN["non-abdominal"] and all(r.get("topic") for r in non)
    registers = Counter(r["register"] for r in rows)
    assert set(registers) == {"case", "short", "lay"}
    assert registers["short"] >= CASE3_MIN["short"] and registers["lay"] >= CASE3_MIN["lay"]
    assert all(3 <= len(r["text"].split()) <= 30 for r in rows if r["register"] == "short")
    kinds = Counter(r["source_kind"] for r in rows)
    assert set(kinds) == CASE_SOURCE_KINDS and max(kinds.values()) < 0.7 * len(rows)
    assert all(r["written"] == "case-derived" and r["diagnosis"].strip() for r in rows)


def test_case_derived3_uses_no_page_of_the_earlier_sets_and_no_page_twice(sets):
    import re

    third = [_page(r) for r in sets[CASE_DERIVED3]]
    earlier = [_page(r) for r in sets[CASE_DERIVED] + sets[CASE_DERIVED2]]
    assert len(set(third)) == len(third)
    assert not set(earlier) & set(third)

    # the same article under another address: a PMC or PubMed number or a DOI shared with an earlier set
    def ids(pages):
        pattern = r"PMC\d+|pubmed\.ncbi\.nlm\.nih\.gov/\d+|10\.\d{4,}/[^\s>]+"
        return {m.group(0).lower().rstrip("/") for p in pages for m in re.finditer(pattern, p, re.I)}

    assert not ids(earlier) & ids(third)


def test_case_derived3_abdominal_texts_leave_out_organ_names(sets):
    import re

    pattern = re.compile(_ORGAN_WORDS)
    found = [(r["id"], m) for r in sets[CASE_DERIVED3] for m in pattern.findall(r["text"].lower())
             if r["abdominal"] or m != "stomach"]
    assert found == []


def test_case_derived3_non_abdominal_topics_are_not_calibration_topics(sets):
    calibration = [json.loads(line) for line in
                   (REPO / "MedSORALib" / "resources" / "ood" / "non_abdominal.jsonl").read_text().splitlines()
                   if line.strip()]
    topics = {t.strip().lower() for r in calibration for t in r["topic"].split(";")}
    non = [r for r in sets[CASE_DERIVED3] if r["scope"] == "non-abdominal"]
    assert all(r.get("topic") for r in non)
    dev_topics = {r["topic"].strip().lower() for r in non}
    assert len(dev_topics) >= CASE3_MIN["non-abdominal"] // 2
    assert not dev_topics & topics, sorted(dev_topics & topics)


@pytest.mark.parametrize("name", [CASE_DERIVED, CASE_DERIVED2, CASE_DERIVED3])
def test_case_derived_laterality_is_what_the_library_reads(sets, name):
    from MedSORALib.text.laterality import detect_laterality

    rows = sets[name]
    assert [r["laterality"] for r in rows] == [detect_laterality(r["text"]) for r in rows]
    # both sides occur, so the field is not constant
    assert {"left", "right", None} <= {r["laterality"] for r in rows}


# -- the evaluation harness (Training/evaluate_reasoning.py) ------------------------------------------
def _load_harness():
    import sys

    spec = importlib.util.spec_from_file_location("evaluate_reasoning", REPO / "Training" / "evaluate_reasoning.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["evaluate_reasoning"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_harness_metrics_by_hand():
    import numpy as np

    h = _load_harness()
    rows = [
        {"text": "a", "structures": ["kidney_left"], "scope": "modelled", "register": "case"},
        {"text": "b", "structures": ["liver", "gallbladder"], "scope": "modelled", "register": "lay"},
        {"text": "c", "structures": [], "scope": "non-abdominal", "register": "lay"},
        {"text": "d", "structures": [], "scope": "abdominal-other", "register": "case"},
    ]
    zero = dict.fromkeys(STRUCTURES, 0.0)
    outs = [
        # a left-kidney text: the right kidney first (same score, catalogue order puts it first) -> rank 2
        h.Output({**zero, "kidney_right": 0.9, "kidney_left": 0.9}, True),
        # liver 3rd, gallbladder 1st: hit@1, AP = (1/1 + 2/3) / 2
        h.Output({**zero, "gallbladder": 0.8, "spleen": 0.7, "liver": 0.6}, False),
        h.Output(zero, False),
        h.Output(zero, True),
    ]
    v = h.per_text(rows, outs)
    assert v["rank1"][:2].tolist() == [0.0, 1.0] and v["rank3"][:2].tolist() == [1.0, 1.0]
    assert v["mAP"][0] == pytest.approx(0.5) and v["mAP"][1] == pytest.approx((1 + 2 / 3) / 2)
    assert np.isnan(v["rank1"][2:]).all()
    assert v["kept"][:2].tolist() == [1.0, 0.0] and v["caught"][2] == 1.0 and v["other_in_domain"][3] == 1.0
    s = h.summary(v)
    assert (s["rank1"], s["kept"], s["caught"], s["n_ranked"], s["n_non_abdominal"]) == (0.5, 0.5, 1.0, 2, 1)
    per_register = h.grouped(rows, v, lambda r: r["register"] if r["scope"] == "modelled" else None)
    assert per_register == {"case": {"rank1": 0.0, "rank3": 1.0, "mAP": 0.5, "n": 1},
                            "lay": {"rank1": 1.0, "rank3": 1.0, "mAP": round((1 + 2 / 3) / 2, 4), "n": 1}}


def test_paired_bootstrap_interval():
    import numpy as np

    h = _load_harness()
    n = 200
    better = {"rank1": np.r_[np.ones(150), np.zeros(50)], **{k: np.full(n, np.nan) for k in ("rank3", "mAP", "kept", "caught")}}
    worse = {"rank1": np.r_[np.ones(100), np.zeros(100)], **{k: np.full(n, np.nan) for k in ("rank3", "mAP", "kept", "caught")}}
    out = h.paired_bootstrap(better, worse, n, resamples=2000, seed=0)
    assert set(out) == {"rank1"} and out["rank1"]["difference"] == pytest.approx(0.25) and out["rank1"]["n"] == n
    lo, hi = out["rank1"]["ci95"]
    # 50 of 200 paired differences are +1, the rest 0: the interval is about 0.25 +- 1.96 * sqrt(.25 * .75 / 200)
    assert 0.17 < lo < 0.21 and 0.29 < hi < 0.33
    same = h.paired_bootstrap(worse, worse, n)
    assert same["rank1"]["ci95"] == [0.0, 0.0]


def test_harness_takes_outputs_as_objects_or_dicts():
    h = _load_harness()
    zero = dict.fromkeys(STRUCTURES, 0.0)

    class Pred:
        structure_relevance = {**zero, "liver": 0.9}
        in_domain = True

    for item in (Pred(), {"scores": {**zero, "liver": 0.9}, "in_domain": 1, "scope": "modelled"},
                 h.Output({**zero, "liver": 0.9}, True)):
        out = h._as_output(item)
        assert out.scores["liver"] == 0.9 and out.in_domain is True
    import sys
    import types

    module = types.ModuleType("h24e_fake_methods")
    module.run = lambda texts: [{"scores": {"spleen": float(len(t))}, "in_domain": False} for t in texts]
    sys.modules[module.__name__] = module
    try:
        outs = h.callable_method("h24e_fake_methods:run")(["ab", "abc"])
    finally:
        del sys.modules[module.__name__]
    assert [o.scores["spleen"] for o in outs] == [2.0, 3.0] and outs[0].in_domain is False and outs[0].scope is None
