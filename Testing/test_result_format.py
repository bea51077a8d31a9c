"""The one format of a scored symptom (MedSORALib/result_format.py): names, numbers, tags and passages.

That the .seg.nrrd file and the Slicer node of one result carry the same names and tags is checked on a real
MRML scene in ``test_scene_outputs.py``.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from MedSORALib import organs, result_format
from MedSORALib.scoring import OrganScore, SymptomResult

REPO = Path(__file__).resolve().parents[1]


def test_the_format_imports_without_slicer_vtk_or_torch():
    probe = ("import sys, MedSORALib.result_format; "
             "print(' '.join(m for m in ('slicer', 'vtk', 'qt', 'torch', 'monai') if m in sys.modules) or 'none')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["none"]


def test_segment_names_capitalise_the_catalog_display_name():
    assert result_format.segment_name("kidney_right") == "Right kidney"
    assert result_format.segment_name("inferior_vena_cava") == "Inferior vena cava"
    for key, organ in organs.ORGANS.items():
        name = result_format.segment_name(key)
        assert name[0].isupper() and name.lower() == organ.display_name.lower()
        assert organs.organ_key(name) == key  # the readers of segment names resolve it back


def test_a_score_read_back_from_its_tag_is_the_json_number():
    values = np.random.default_rng(7).uniform(-1.0, 1.0, 2000)
    for value in values:
        score = OrganScore("liver", "liver", float(abs(value)), 0.5, float(value), 1, 1.0)
        exported = score.to_dict()
        assert float(result_format.score_text(score.image_score)) == exported["image_score"]
        assert float(result_format.score_text(score.relevance)) == exported["relevance"]
    assert result_format.score_text(1 / 3) == "0.333333"
    assert result_format.score_text(float("nan")) == ""


def test_tags_of_an_organ_without_measurements_or_findings():
    score = OrganScore("spleen", "spleen", 0.5, 0.25, 0.1, 9452, 255.2)
    assert result_format.organ_tags(score, {}) == {
        "MedSORA.Structure": "spleen", "MedSORA.Relevance": "0.500000", "MedSORA.TextPrior": "0.250000",
        "MedSORA.ImageScore": "0.100000", "MedSORA.FindingBoost": "0.000000", "MedSORA.Findings": "none"}


def test_passages_are_grouped_under_segment_names_in_the_results_order():
    passages = {
        "kidney_left": [{"id": "kidney-012", "text": " Flank pain and blood in the urine. ", "source": "Symptom Ontology",
                         "score": 0.7349},
                        {"id": "kidney-013", "text": "Colicky pain.", "source": "", "score": 0.5}],
        "spleen": [],
        "adrenal_gland_left": [{"id": "adrenal-002", "text": "Rarely painful.", "source": "notes", "score": 0.3}],
    }
    scores = [OrganScore(key, organs.ORGANS[key].display_name, 0.9 - 0.1 * n, 0.5, 0.0, 10, 1.0)
              for n, key in enumerate(passages)]
    result = SymptomResult("left flank pain", True, 0.1, "left", scores, passages=passages)
    assert [name for name, _ in result_format.passage_groups(result)] == ["Left kidney", "Left adrenal gland"]
    assert result_format.passages_text(result) == (
        "== Left kidney ==\n"
        "[kidney-012] (score 0.73)\nFlank pain and blood in the urine.\nSource: Symptom Ontology\n\n"
        "[kidney-013] (score 0.50)\nColicky pain.\n\n"
        "== Left adrenal gland ==\n"
        "[adrenal-002] (score 0.30)\nRarely painful.\nSource: notes")
    assert result_format.passages_text(SymptomResult("blurred vision", False, 0.9, None, scores)) == ""
