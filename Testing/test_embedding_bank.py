"""The clause bank of the reader's embedding fallback (MedSORALib/differential/embedding.py, embedding_build.py).

The bank is not shipped (it changed no ranking figure of the tune halves and cost one case of the second
case-derived set; docs/reasoning.md): these tests build small banks from texts written for them, in the
training register (not taken from any text of the project or elsewhere), and check the builder's labels and
file, and the vote on lay wordings the regular-expression reader misses.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from MedSORALib.differential import embedding
from MedSORALib.differential.embedding_build import (BANK_CAP, NONE_CAP, bank_candidates, build_bank,
                                                     evaluation_clauses, training_texts)
from MedSORALib.differential.reader import load_reader

REPO = Path(__file__).resolve().parent.parent

#: Texts in the register of the training texts, each with clauses the reader reads and plain context.
TEXTS = [
    "She says her urine is foamy, and she works in a shop.",
    "He has noticed frothy urine since the spring; his wife came with him.",
    "My pee is frothy, and I walk the dog twice a day.",
    "My belly is swollen and tight. I take the bus to work.",
    "Her abdomen has become distended over a month, and she is otherwise well.",
    "There is a lump in my groin when I cough. I play football at weekends.",
    "He has a groin bulge that goes back when he lies down.",
    "I've got mouth ulcers again, and my daughter drove me here.",
    "She has painful ulcers in her mouth. She keeps two dogs.",
    "No frothy urine. History of mouth ulcers. Denies any lump in the groin.",
]


@pytest.fixture(scope="module")
def encoder():
    from MedSORALib.text.encoder import TextEncoder

    return TextEncoder(cache_dir=False)


@pytest.fixture(scope="module")
def bank(tmp_path_factory, encoder):
    path = tmp_path_factory.mktemp("bank") / "bank.npz"
    build_bank(path, TEXTS, encoder)
    return path


def test_builder_labels_clauses_with_the_readers_own_findings():
    got = bank_candidates(load_reader(), TEXTS)
    labelled = {clause: fid for clause, fid in got}
    assert labelled["she says her urine is foamy"] == "foamy_urine"
    assert labelled["he has noticed frothy urine since the spring"] == "foamy_urine"
    assert labelled["he has a groin bulge that goes back when he lies down"] == "hernia_bulge"
    assert labelled["i take the bus to work"] == embedding.NONE
    # "a lump in my groin when I cough" reads two findings (a groin bulge and a cough): no single label
    assert "there is a lump in my groin when i cough" not in labelled
    # denied and past clauses are never taken, nor their findings
    assert not [c for c in labelled if "no frothy" in c or "history" in c or "denies" in c]
    counts = Counter(labelled.values())
    assert counts == {"foamy_urine": 3, "abdominal_distension": 2, "hernia_bulge": 1, "mouth_ulcers": 2,
                      embedding.NONE: 8}


def test_bank_file_schema(bank, encoder):
    with np.load(bank, allow_pickle=False) as data:
        stored = {key: data[key] for key in data.files}
    assert set(stored) == {"model_id", "phrases", "finding_ids", "vectors"}
    n = len(stored["phrases"])
    assert n == 16 == len(stored["finding_ids"]) == stored["vectors"].shape[0]
    assert stored["vectors"].dtype == np.float16 and stored["vectors"].shape[1] == 384
    assert np.allclose(np.linalg.norm(stored["vectors"].astype(np.float32), axis=1), 1.0, atol=5e-3)
    assert str(stored["model_id"]) == encoder.model_id
    lexicon = load_reader().lexicon
    for fid in set(stored["finding_ids"].tolist()) - {embedding.NONE}:
        assert lexicon[fid].kind in ("symptom", "sign")
    # the label and HPO wordings vote from finding_embeddings.npz and are not repeated in the bank
    reader = load_reader()
    assert not set(embedding.wordings(reader.lexicon, reader._hpo_terms)[0]) & set(stored["phrases"].tolist())


def test_bank_caps_and_sources():
    assert 0 < BANK_CAP <= 60 and NONE_CAP >= BANK_CAP
    texts = training_texts()
    assert len(texts) > 5000 and len(set(texts)) == len(texts)
    dev = set()
    for name in ("dev_presentations", "dev_short_histories", "dev_non_abdominal"):
        path = REPO / "Training" / "data" / f"{name}.jsonl"
        dev |= {json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert not dev & set(texts)
    symptom_tests = {json.loads(line)["text"] for line in
                     (REPO / "MedSORALib/resources/dataset/symptom_texts.jsonl").read_text().splitlines()
                     if line.strip() and json.loads(line)["split"] == "test"}
    assert len(symptom_tests) > 100 and not symptom_tests & set(texts)  # the text model's test split stays out
    assert "i'm itching all over" in evaluation_clauses()  # clauses of the annotated sets are never in the bank


# Lay wordings written for this test that the regular-expression reader does not read, with the finding a
# clinician reads in each; the label and HPO wordings alone do not reach them, the bank does.
LAY_MISSES = [
    ("my pee has gone all frothy like beer", "foamy_urine"),
    ("I've got ulcers inside my cheeks", "mouth_ulcers"),
]


@pytest.mark.parametrize("text, finding", LAY_MISSES)
def test_bank_reads_lay_wordings_the_patterns_miss(text, finding, bank, encoder):
    reader = load_reader()
    assert reader.read(text).findings == []
    assert reader.read(text, encoder=encoder).findings == []  # the shipped fallback: wordings only
    assert embedding.EmbeddingMatcher(encoder, reader.lexicon, reader._hpo_terms).match([text]) == []
    matcher = embedding.EmbeddingMatcher(encoder, reader.lexicon, reader._hpo_terms, bank=bank)
    [(index, found, cosine)] = matcher.match([text])
    assert index == 0 and found.id == finding and cosine >= embedding.BANK_COSINE


def test_bank_reads_nothing_in_denied_past_or_plain_clauses(bank, encoder):
    from MedSORALib.differential.context import normalise, Context

    reader = load_reader()
    matcher = embedding.EmbeddingMatcher(encoder, reader.lexicon, reader._hpo_terms, bank=bank)
    for text in ("no ulcers inside my cheeks", "she denies that her pee has gone frothy like beer",
                 "in 2015 my pee went all frothy like beer"):
        reading = reader.read(text)
        ctx = Context(normalise(text))
        assert embedding.fallback_clauses(reading, ctx, ctx.norm) == []  # a trigger touches the clause
        embedding.apply(reading, ctx, ctx.norm, matcher)
        assert [f for f in reading.findings if f.source == "embedding"] == []
    plain = ["she lives with her daughter", "her son works abroad", "he drove himself to the surgery this morning"]
    assert matcher.match(plain) == []
    ids, vectors = matcher.bank
    for text in plain:
        fid, share, best = embedding.vote(encoder.encode([text])[0] @ vectors.T, ids)
        assert fid == embedding.NONE or best < embedding.BANK_COSINE, (text, fid, best)


def test_plain_clauses_of_a_missed_wording_outvote_it(tmp_path, encoder):
    """A training clause the reader misses is a clause of no finding in the bank: it votes against the
    finding (the bank learns the reader's gaps as well as its reach)."""
    reader = load_reader()
    assert reader.read("for a week my urine has been frothy").findings == []
    others = [t for t in TEXTS if not t.startswith("My pee")]
    for extra in ([], ["For a week my urine has been frothy."]):
        path = tmp_path / f"gap{len(extra)}.npz"
        build_bank(path, others + extra, encoder)
        matcher = embedding.EmbeddingMatcher(encoder, reader.lexicon, reader._hpo_terms, bank=path)
        ids, vectors = matcher.bank
        fid, share, best = embedding.vote(encoder.encode(["my pee has gone all frothy like beer"])[0] @ vectors.T, ids)
        if extra:
            assert fid == embedding.NONE and share > 0.9  # the missed wording is nearest and votes for nothing
        else:
            assert fid == "foamy_urine" and best < embedding.BANK_COSINE  # too far to be added


def test_vote_weights_and_share():
    ids = ["a", "a", "b", embedding.NONE]
    row = np.array([0.80, 0.79, 0.60, 0.50], dtype=np.float32)
    fid, share, best = embedding.vote(row, ids, k=4, temperature=0.05)
    w = np.exp((row - 0.80) / 0.05)
    assert fid == "a" and best == pytest.approx(0.80) and share == pytest.approx(w[:2].sum() / w.sum(), rel=1e-5)
    fid, share, _ = embedding.vote(np.array([0.7, 0.71, 0.72]), ["a", "", ""], k=3)
    assert fid == embedding.NONE and share > 0.6
    assert embedding.vote(np.array([0.9, 0.1]), ["a", "b"], k=1)[:2] == ("a", 1.0)
    assert embedding.vote(np.zeros(0), [], k=3) is None


def test_bank_opens_only_when_a_clause_is_left_to_the_fallback(bank, encoder):
    reader = load_reader()
    matcher = embedding.EmbeddingMatcher(encoder, reader.lexicon, reader._hpo_terms, bank=bank)
    assert matcher.match([]) == [] and matcher._bank is None
    matcher.match(["the stools have a silvery look"])
    ids, vectors = matcher._bank
    assert len(ids) == vectors.shape[0] == 16 + len(matcher.phrases)
    # without a bank file the fallback is the wording rule alone
    plain = embedding.EmbeddingMatcher(encoder, reader.lexicon, reader._hpo_terms)
    plain.match(["the stools have a silvery look"])
    assert plain._bank is None
