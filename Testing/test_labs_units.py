"""Laboratory values in less common units, bounds and unit slips, on clauses written for these tests."""
import pytest

from MedSORALib.differential.labs import load_lab_reader
from MedSORALib.differential.reader import read


def _finding(text, finding):
    return next((f for f in read(text).findings if f.id == finding), None)


@pytest.mark.parametrize("text, value", [
    ("D-dimer 1.8 ug/mL FEU", 1800.0),
    ("D-dimer 3.1 mg/L FEU", 3100.0),
    ("D-dimer of 2,640 ng/mL", 2640.0),
    ("D-dimer 980 ng/ml", 980.0),
    ("D-dimer 7.4", 7400.0),            # a bare number below 50 is in mg/L (ug/mL)
    ("D-dimer 42", 42000.0),
    ("D-dimer 1200", 1200.0),           # a bare number above is in ng/mL
])
def test_d_dimer_raised_in_every_unit(text, value):
    f = _finding(text, "d_dimer_raised")
    assert f is not None and f.status == "present"
    assert f.value == pytest.approx(value, rel=1e-3)


@pytest.mark.parametrize("text", ["D-dimer > 20", "D-dimer >35 mg/L", "D-dimer greater than 0.5 mg/L",
                                  "D-dimer more than 500 ng/mL"])
def test_a_lower_bound_reads_above_its_number(text):
    assert _finding(text, "d_dimer_raised").status == "present"


@pytest.mark.parametrize("text", ["D-dimer 0.3 mg/L FEU", "D-dimer 240 ng/mL", "D-dimer 0.42"])
def test_d_dimer_normal(text):
    assert _finding(text, "d_dimer_raised").status == "negated"


def test_lower_bound_on_vital_signs():
    assert _finding("heart rate over 100", "tachycardia").status == "present"
    assert _finding("pulse 100", "tachycardia").status != "present"


# -- haemoglobin written with a wrong unit: the designed plausibility rule ------------------------------------------
@pytest.mark.parametrize("text, value", [
    ("haemoglobin 7.2 mg/dl", 7.2),     # an unknown unit: 3-20 is g/dL
    ("Hb 5.9 g/L", 5.9),                # 0.59 g/dL is impossible: the author meant g/dL
    ("hemoglobin 8.4 gm/dL", 8.4),
    ("Hb 84 g/L", 8.4),                 # a correct unit is kept
    ("Hb 6.2 mmol/L", 6.2 * 1.611),     # mmol/L is a real unit of haemoglobin, and 6.2 is plausible in it
])
def test_haemoglobin_unit_slip(text, value):
    f = _finding(text, "anaemia")
    assert f is not None and f.status == "present"
    assert f.value == pytest.approx(value, rel=1e-3)


def test_haemoglobin_slip_normal_value():
    f = _finding("haemoglobin 14.6 mg/dl in a man", "anaemia")
    assert f.status == "negated" and f.value == pytest.approx(14.6)


def test_slip_is_declared_in_labs_yaml():
    hb = load_lab_reader().by_id["haemoglobin"]
    assert hb.slip == (3, 20, "g/dl")
    assert load_lab_reader().by_id["wbc"].slip is None


# -- lab changes written in prose ------------------------------------------------------------------------------------
def test_elevations_of_a_list():
    r = read("bloods showed elevations of the white cell count, urea and the CRP")
    assert r.status_of("leukocytosis") == "present"
    assert r.status_of("crp_raised") == "present"


def test_falling_haemoglobin_reads_its_last_value():
    f = _finding("haemoglobin falling from 12.9 to 8.1 g/dL overnight", "anaemia")
    assert f.status == "present" and f.value == pytest.approx(8.1)
