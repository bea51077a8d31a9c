"""Giant cell arteritis: a non-abdominal row (the cranial arteries) that keeps temporal headaches with jaw
claudication off the aorta's large-vessel vasculitis row (our own sentences)."""
from __future__ import annotations

from MedSORALib.differential.differential import NON_ABDOMINAL, differential

from differential_helpers import present as _present


def test_jaw_claudication_is_not_limb_claudication():
    assert _present("new headache and jaw claudication") >= {"jaw_claudication", "headache"}
    assert "claudication" not in _present("new headache and jaw claudication")
    assert "claudication" in _present("calf claudication after 100 yards")
    assert "jaw_claudication" in _present("her jaw aches whenever she chews meat")
    assert "temporal_artery_signs" in _present("the left temporal artery is thickened and tender")
    assert "temporal_artery_signs" in _present("her scalp is sore when she brushes her hair")


def test_giant_cell_arteritis_leads_a_temporal_headache_in_an_older_woman():
    d = differential("A 77-year-old woman: a new headache over the temples for two weeks, jaw ache on chewing, "
                     "ESR 96.")
    assert d.top.disease.id == "giant_cell_arteritis" and d.top.probability > 0.5
    assert d.scope == NON_ABDOMINAL and d.outside == "cranial_arteries"


def test_the_aortas_vasculitis_keeps_limb_signs_and_gca_stays_off_abdominal_pain():
    limbs = differential("A 30-year-old woman with arm claudication, a weak left radial pulse and a bruit over the "
                         "subclavian artery")
    assert limbs.top.disease.id != "giant_cell_arteritis"
    belly = differential("A 74-year-old woman with a headache and severe epigastric pain going through to the back, "
                         "lipase 2400")
    assert belly.top.disease.organs and "giant_cell_arteritis" not in {d.disease.id for d in belly.diagnoses[:5]}
