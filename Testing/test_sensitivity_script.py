"""Training/sensitivity.py re-scores cached readings; its shipped variant must give what ``fusion.reason`` gives,
and its sentence split and pooled model must behave as documented."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TEXTS = [
    "constant right upper quadrant pain since last night's dinner, fever 38.4, Murphy's sign",
    "A 70-year-old man collapsed at home. He had sudden severe back pain. BP 80/50, pulsatile mass.",
    "painless jaundice with pale stools and weight loss; gallbladder removed five years ago",
]


def _script():
    sys.path.insert(0, str(REPO / "Training"))
    spec = importlib.util.spec_from_file_location("sensitivity", REPO / "Training" / "sensitivity.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sensitivity"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cache():
    return _script().Cache(TEXTS)


def test_sentence_split():
    s = _script()
    assert s.sentences("He had pain. Temp 38.4 today; no vomiting.\nBP 80/50 now") == [
        "He had pain.", "Temp 38.4 today;", "no vomiting.", "BP 80/50 now"]
    # a text without two words of letters in any part stays whole
    assert s.sentences("T 38.4") == ["T 38.4"]


def test_shipped_variant_matches_reason(cache):
    from MedSORALib.differential.differential import load_differential
    from MedSORALib.differential.fusion import ALPHA, reason

    s = _script()
    fused, diff = s.score_variant(cache, load_differential(), cache.predictions, ALPHA)
    expected = reason(TEXTS, reasoner=cache.reasoner)
    for mine, theirs, d in zip(fused, expected, diff):
        removed = set(theirs.differential.removed)
        for key, value in theirs.structure_relevance.items():
            assert mine[key] == pytest.approx(-1.0 if key in removed else value, abs=1e-9)
        assert d == theirs.differential.organ_relevance
    # the removed gallbladder ranks last in the third text
    assert "gallbladder" in expected[2].differential.removed and fused[2]["gallbladder"] == -1.0


def test_sentence_pooling(cache):
    whole = cache.predictions
    pooled = cache.sentence_predictions("max", 0.0)
    # share 0: the whole text's relevance back (same gate)
    for a, b in zip(whole, pooled):
        assert np.allclose([a.class_relevance[c] for c in a.class_relevance],
                           [b.class_relevance[c] for c in a.class_relevance], atol=1e-6)
    # share 1 on the one-sentence first text: the same sentence, so the same relevance
    one = cache.sentence_predictions("mean", 1.0)[0]
    assert one.class_relevance["gallbladder"] == pytest.approx(whole[0].class_relevance["gallbladder"], abs=1e-5)
    # the three-sentence second text changes under pooling
    three = cache.sentence_predictions("max", 1.0)[1]
    assert max(abs(three.class_relevance[c] - whole[1].class_relevance[c]) for c in three.class_relevance) > 1e-3


def test_headroom_by_hand():
    from MedSORALib.organs import STRUCTURES

    s = _script()
    zero = dict.fromkeys(STRUCTURES, 0.0)
    rows = [{"structures": ["liver"]}, {"structures": ["spleen"]}, {"structures": ["aorta"]}, {"structures": ["liver"]}]
    liver, spleen = {**zero, "liver": 0.9}, {**zero, "spleen": 0.9}
    model = [liver, liver, liver, liver]        # right on rows 0 and 3
    diff = [spleen, spleen, spleen, liver]      # right on rows 1 and 3
    fused = [liver, liver, liver, liver]
    out = s.headroom(rows, {"a": (0, 4)}, model, diff, fused)["a"]
    assert out == {"model": 50.0, "differential": 50.0, "fusion": 50.0, "either": 75.0, "both": 25.0}
