"""Self-consistency of the catalogue (:mod:`MedSORALib.differential.consistency`): each row of the 13 structures,
given its own textbook picture (its most characteristic presenting findings, its ages and sex), should come out
among the first three diagnoses; key rows should come out first."""
from __future__ import annotations

import math

import pytest

from MedSORALib.differential.catalogue import load_catalogue
from MedSORALib.differential.consistency import (SHADOW_RANK, TEXTBOOK_FINDINGS, characteristic_findings, check,
                                                 summary, textbook_reading)
from MedSORALib.differential.context import PRESENT

#: Share of rows of the 13 structures within the first three on their own picture (measured with
#: ``python -m MedSORALib.differential.consistency``: 0.924 before the sixth pass and after it, 146 of 158).
MIN_TOP3 = 0.92
#: Share first on their own picture (0.690 before, 0.677 after: hiatus hernia and erosive oesophagitis now come
#: second to reflux disease on heartburn, regurgitation and symptoms worse lying down, the same picture).
MIN_TOP1 = 0.67
#: The same among rows that are not incidental lesions (0.953 of 148 before, 0.959 of 147 after: the gallbladder
#: polyp row now names being found incidentally, its commonest presentation, and counts as incidental).
MIN_PRESENTING_TOP3 = 0.95
#: With each row's most characteristic risk or history finding added (``--context 1``: 0.956 before, 0.968 after).
MIN_CONTEXT_TOP3 = 0.96
#: Rows a textbook picture must put first: the common and the dangerous presentations of each structure.
KEY_ROWS = [
    "gord", "achalasia", "boerhaave_syndrome", "peptic_ulcer_disease", "perforated_peptic_ulcer",
    "bleeding_peptic_ulcer", "biliary_colic", "acute_cholecystitis", "choledocholithiasis", "acute_cholangitis",
    "acute_viral_hepatitis", "decompensated_cirrhosis", "pyogenic_liver_abscess", "budd_chiari_syndrome",
    "acute_pancreatitis", "chronic_pancreatitis", "pancreatic_head_cancer", "renal_colic", "acute_pyelonephritis",
    "renal_cell_carcinoma", "pheochromocytoma", "adrenal_crisis_addison", "traumatic_splenic_rupture",
    "splenic_infarct", "ruptured_aaa", "aortic_dissection_type_b", "ivc_thrombosis", "acute_portal_vein_thrombosis",
    "cirrhotic_portal_hypertension",
]


@pytest.fixture(scope="module")
def checks():
    return check()


def test_every_modelled_row_is_checked_once(checks):
    catalogue = load_catalogue()
    modelled = {d.id for d in catalogue.diseases if d.organs}
    assert sorted(c.id for c in checks) == sorted(modelled)
    assert len(modelled) >= 150


def test_the_picture_is_the_rows_most_characteristic_presenting_findings():
    catalogue = load_catalogue()
    row = catalogue.by_id["acute_pancreatitis"]
    picture = characteristic_findings(row, catalogue)
    assert len(picture) == TEXTBOOK_FINDINGS
    assert picture[0] == "lipase_3x_uln"  # 0.85 x log 15: the largest of the row
    kinds = {catalogue.findings[f].kind for f in picture}
    assert kinds <= {"symptom", "sign", "lab", "vital"}
    # every finding left out weighs no more than the last one kept
    kept = {w.id: w for w in row.findings}
    def value(w):
        f = catalogue.findings[w.id]
        return w.freq * math.log(w.lr) * (0.5 if f.generic else 1.0)
    last = min(value(kept[f]) for f in picture)
    for w in row.findings:
        if w.id not in picture and catalogue.findings[w.id].kind in ("symptom", "sign", "lab", "vital"):
            assert value(w) <= last + 1e-12
    reading = textbook_reading(row, catalogue)
    assert all(f.status == PRESENT for f in reading.findings)
    assert reading.age == pytest.approx((18 + 95) / 2)


def test_share_of_rows_within_the_first_three_on_their_own_picture(checks):
    s = summary(checks)
    assert s["top3"] >= MIN_TOP3, s["shadowed"]
    assert s["top1"] >= MIN_TOP1


def test_rows_that_are_not_incidental_lesions_come_within_the_first_three(checks):
    s = summary(checks)
    assert s["presenting_top3"] >= MIN_PRESENTING_TOP3
    assert 5 <= len(s["incidental"]) <= 20  # cysts, haemangioma, focal nodular hyperplasia...
    assert "hepatic_haemangioma" in s["incidental"] and "acute_cholecystitis" not in s["incidental"]


def test_with_the_rows_background_the_share_rises():
    with_context = check(context=1)
    s = summary(with_context)
    assert s["top3"] >= MIN_CONTEXT_TOP3
    # the background is the row's own risk or history finding: the aortic graft of a graft infection
    graft = next(c for c in with_context if c.id == "aortic_graft_infection")
    assert "aortic_graft_history" in graft.findings and graft.rank <= SHADOW_RANK


@pytest.mark.parametrize("row", KEY_ROWS)
def test_key_rows_come_first_on_their_own_picture(row):
    (c,) = check(rows=[row])
    assert c.rank == 1, (c.findings, c.ahead)
    assert not c.shadowed and SHADOW_RANK >= 1
