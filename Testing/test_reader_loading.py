"""Cheaper loading and reading give the same readings: packed gates, gates checked on a window, the catalogue
cache's record hook, the embedding fallback's lazy vectors and the reader's kept clauses."""
import dataclasses
import re
import json

import pytest

from MedSORALib.differential import compiled, gates, records
from MedSORALib.differential.context import Context, normalise
from MedSORALib.differential.reader import load_reader

TEXTS = [
    "a 58-year-old man with sudden-onset left-sided chest and back pain, BP 182/100, no prior history of the like",
    "painless jaundice, pale stools and itching; bilirubin 4.2 mg/dL, ALP 610 U/L",
    "she has right upper and left upper quadrant pain with vomiting after fatty food",
    "urine dip: no blood, no nitrites; afebrile",
]


def _shipped_patterns():
    reader = load_reader()
    return [p for _f, p, _s in reader._regexes] + [p for p, _ids in reader._negative_forms]


def test_pack_round_trip_and_separators():
    value = ((("right upper", "ruq"), ("pain",)), (("murphy",),))
    assert gates.unpack(gates.pack(value)) == value
    assert gates.pack(None) is None
    assert gates.pack(((("a\tb",),),)) is None  # a needle holding a separator is not packed: the pattern runs
    assert gates.unpack("") is None and gates.unpack(3) is None


def test_packed_check_answers_as_the_opened_needles():
    checked = 0
    for p in _shipped_patterns():
        value = gates.needles(p.pattern)
        packed = gates.pack(value)
        if packed is None:
            continue
        lazy = gates.GatedPattern(p.pattern, None, packed=packed)
        opened = gates.GatedPattern(p.pattern, value)
        assert lazy.needles == value
        for text in TEXTS:
            norm = normalise(text)
            assert lazy.may_match(norm) == opened.may_match(norm), p.pattern
        checked += 1
    assert checked > 400


def test_damaged_packed_needles_only_let_the_pattern_run():
    # an empty part is in every text: the gate opens, it never hides a match
    g = gates.GatedPattern("fever", None, packed="zzz\n")
    assert g.may_match("no match here") is True
    assert [m.span() for m in g.finditer("high fever")] == [(5, 10)]


def test_window_check_gives_the_matches_of_the_whole_text():
    for p in _shipped_patterns():
        for text in TEXTS:
            norm = normalise(text)
            for start, end in ((0, len(norm)), (10, 60), (25, len(norm))):
                fresh = gates.GatedPattern(p.pattern, gates.needles(p.pattern))
                got = [m.span() for m in fresh.finditer_within(norm, start, end)]
                assert got == [m.span() for m in p.compiled().finditer(norm, start, end)], p.pattern


def test_catalogue_hook_builds_the_records_the_constructors_build(tmp_path):
    text = json.dumps({"w": compiled._encode(records.Weight("fever", 0.5, 2.0, None)),
                       "f": compiled._encode(records.Finding("fever", "fever", "symptom", True, ("fever",)))})
    fast = json.loads(text, object_hook=compiled._decoder())
    assert fast["w"] == records.Weight("fever", 0.5, 2.0, None)
    assert fast["f"] == records.Finding("fever", "fever", "symptom", True, ("fever",))
    assert hash(fast["w"]) == hash(records.Weight("fever", 0.5, 2.0, None))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast["w"].lr = 3.0
    # a record missing a field goes through the constructor (and its defaults)
    short = json.loads('{"@": "Weight", "id": "fever", "freq": 0.5, "lr": 2.0}', object_hook=compiled._decoder())
    assert short == records.Weight("fever", 0.5, 2.0)
    with pytest.raises(TypeError):
        json.loads('{"@": "Path", "x": 1}', object_hook=compiled._decoder())


def test_embedding_vectors_load_only_when_a_clause_needs_them():
    from MedSORALib.differential.embedding import EmbeddingMatcher

    class Encoder:
        model_id = "none"
        calls = 0

        def encode(self, texts):
            import numpy as np

            Encoder.calls += 1
            return np.ones((len(texts), 4), dtype="float32")

    reader = load_reader()
    matcher = EmbeddingMatcher(Encoder(), reader.lexicon, reader._hpo_terms)
    assert matcher.match([]) == [] and matcher._vectors is None and Encoder.calls == 0
    assert len(matcher.phrases) == len(matcher.owners) > 100
    matcher.match(["a clause nothing read"])
    assert matcher._vectors is not None and matcher.vectors.shape == (len(matcher.phrases), 4)


def test_reading_keeps_the_clauses_it_was_read_with():
    text = TEXTS[0]
    r = load_reader().read(text)
    fresh = Context(normalise(text))
    assert r.context is not None and r.context.norm == fresh.norm
    assert r.context.segments == fresh.segments and r.context.scopes == fresh.scopes
    assert "context" not in r.to_dict()


def test_packed_needles_are_opened_after_a_few_checks_with_the_same_answers():
    pattern = r"(?<![\w])(?:(?:right upper quadrant|ruq) (?:pain|tenderness))(?![\w])"
    value = gates.needles(pattern)
    g = gates.GatedPattern(pattern, None, packed=gates.pack(value))
    texts = ["ruq pain since noon", "no pain at all", "right upper quadrant tenderness"] * 5
    spans = [[m.span() for m in g.finditer(t)] for t in texts]
    assert g._packed is None and g._needles == value  # opened after PACKED_CHECKS checks
    assert spans == [[m.span() for m in re.finditer(pattern, t)] for t in texts]


def test_first_clause_list_turns_texts_away_as_the_full_check_does():
    for p in _shipped_patterns():
        value = gates.needles(p.pattern)
        first = gates.first_strings(value)
        if value is None:
            assert first is None
            continue
        for text in TEXTS + ["", "pain", "right upper quadrant pain after fatty meals"]:
            norm = normalise(text)
            full = gates.GatedPattern(p.pattern, value).may_match(norm)
            if first is not None and not any(n in norm for n in first):
                assert not full, p.pattern  # the list never turns away a text the full check lets through
    assert gates.first_strings(((("a",), ("b",)), ())) is None  # an alternative with no clause holds always
