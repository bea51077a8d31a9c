"""Wording families of the reader, in sentences written for these tests: pain referred to a shoulder (with its
side), intolerance of fatty food, bleeding by its route, tingling feet, the weeks after delivery against the third
trimester, and the pulsatile abdominal mass."""
import pytest

from MedSORALib.differential.reader import read


def _finding(text, finding_id):
    return next((f for f in read(text).findings if f.id == finding_id), None)


# -- pain referred to a shoulder: the sideless finding and, when the words name a side, that side's finding -------
@pytest.mark.parametrize("text, side", [
    ("the ache spreads towards the back of the right shoulder", "right"),
    ("sharp pain radiating into the right shoulder blade after supper", "right"),
    ("epigastric pain irradiating to the right scapula", "right"),
    ("pain in the left upper quadrant radiating up to the left shoulder tip", "left"),
    ("she says it shoots up to her left shoulder", "left"),
    ("upper abdominal pain radiating toward the dorsal shoulder", None),
    ("the pain goes into the shoulder blade", None),
])
def test_pain_referred_to_a_shoulder(text, side):
    f = _finding(text, "pain_radiating_to_shoulder")
    assert f is not None and f.status == "present", read(text).to_dict()
    right, left = _finding(text, "right_shoulder_pain"), _finding(text, "left_shoulder_pain")
    if side == "right":
        assert right is not None and right.status == "present" and right.side == "right"
        assert left is None
    elif side == "left":
        assert left is not None and left.status == "present" and left.side == "left"
        assert right is None
    else:
        assert right is None and left is None


def test_the_side_of_the_shoulder_comes_from_the_shoulder_not_the_quadrant():
    # the quadrant names a side; the shoulder named no side, so no sided shoulder finding is read
    text = "right upper quadrant pain radiating to the shoulder"
    assert _finding(text, "pain_radiating_to_shoulder").status == "present"
    assert _finding(text, "right_shoulder_pain") is None
    assert _finding(text, "left_shoulder_pain") is None


def test_denied_radiation_to_a_shoulder_is_denied_on_its_side():
    text = "constant right upper quadrant pain, no radiation to the right shoulder"
    assert _finding(text, "right_shoulder_pain").status == "negated"
    assert _finding(text, "pain_radiating_to_shoulder").status == "negated"


def test_pain_between_the_shoulder_blades_is_not_referred_to_a_shoulder():
    text = "tearing pain radiating to the back between the shoulder blades"
    assert _finding(text, "interscapular_pain").status == "present"
    assert _finding(text, "pain_radiating_to_shoulder") is None


# -- intolerance of fatty food --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, status", [
    ("intolerance of fatty foods for a year", "present"),
    ("he cannot tolerate fatty food any more", "present"),
    ("she no longer tolerates fried meals", "present"),
    ("fat intolerance and wind", "present"),
    ("greasy food disagrees with her stomach", "present"),
    ("intolerant of fried and greasy foods", "present"),
    ("no intolerance to fatty foods", "negated"),
    ("food intolerance", None),            # no fat named: not the fatty-food finding
    ("impaired glucose tolerance", None),
    ("lactose intolerance", None),
])
def test_intolerance_of_fatty_food(text, status):
    assert read(text).status_of("pain_after_fatty_meal") == status


# -- bleeding: the route decides the finding; a bleed named without its route is no GI finding ----------------------
@pytest.mark.parametrize("text, finding", [
    ("heavy bleeding from the back passage since the morning", "haematochezia"),
    ("he was bleeding heavily from his bottom", "haematochezia"),
    ("passing a lot of blood per rectum", "haematochezia"),
    ("passing clots of blood rectally overnight", "haematochezia"),
    ("an episode of massive lower GI bleeding", "haematochezia"),
    ("she threw up a lot of blood", "haematemesis"),
    ("vomited a large amount of blood this morning", "haematemesis"),
])
def test_bleeding_read_by_its_route(text, finding):
    assert read(text).status_of(finding) == "present", read(text).to_dict()


@pytest.mark.parametrize("text", ["woke with a gross haemorrhage and collapsed", "he was bleeding heavily",
                                  "she has been passing a lot of blood"])
def test_bleeding_without_a_route_is_no_gi_finding(text):
    ids = {f.id for f in read(text).findings}
    assert not ids & {"haematochezia", "haematemesis", "melaena", "heavy_periods"}, ids


def test_bleeding_from_the_back_passage_is_not_a_heavy_period():
    r = read("heavy bleeding from the back passage")
    assert r.status_of("heavy_periods") is None
    assert r.status_of("heavy_periods") is None and r.status_of("haematochezia") == "present"
    assert read("heavy bleeding with clots during her periods").status_of("heavy_periods") == "present"


def test_vomiting_beside_bloody_diarrhoea_is_not_haematemesis():
    r = read("vomiting and diarrhoea with blood in the stool")
    assert r.status_of("haematemesis") is None
    assert r.status_of("vomiting") == "present" and r.status_of("haematochezia") == "present"


def test_passing_blood_is_the_urine_unless_the_stool_is_named():
    assert read("passing blood in his urine").status_of("haematuria") == "present"
    r = read("passing blood with his stools")
    assert r.status_of("haematochezia") == "present" and r.status_of("haematuria") is None


# -- tingling feet are the sensory neuropathy finding (numbness or tingling of the feet) ----------------------------
@pytest.mark.parametrize("text, status", [
    ("tingling feet for three months", "present"),
    ("pins and needles in both feet", "present"),
    ("numb toes and unsteady in the dark", "present"),
    ("no tingling feet", "negated"),
])
def test_tingling_feet_read_as_the_neuropathy_finding(text, status):
    assert read(text).status_of("numb_feet") == status


def test_tingling_fingers_of_overbreathing_are_not_the_feet():
    r = read("tingling fingers and lips when she panics")
    assert r.status_of("numb_feet") is None and r.status_of("panic_features") == "present"


# -- the weeks after delivery are not the third trimester -----------------------------------------------------------
@pytest.mark.parametrize("text", ["postpartum day 4", "two weeks after giving birth", "she delivered her baby "
                                  "ten days ago", "puerperal fever", "day 3 after caesarean section",
                                  "10 days post delivery", "since giving birth she has had headaches"])
def test_after_delivery_reads_postpartum_only(text):
    r = read(text)
    assert r.status_of("postpartum") == "present", r.to_dict()
    assert r.status_of("late_pregnancy") is None


@pytest.mark.parametrize("text", ["32 weeks pregnant", "primigravida at 36/40", "third trimester",
                                  "pregnant at term"])
def test_third_trimester_reads_late_pregnancy_only(text):
    r = read(text)
    assert r.status_of("late_pregnancy") == "present"
    assert r.status_of("postpartum") is None


# -- the pulsatile abdominal mass ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["a pulsatile mass above the navel", "a pulsating lump in the belly",
                                  "a mass that throbs with the heartbeat", "I can feel a lump in my tummy that beats "
                                  "with my pulse", "a widened aortic pulsation on palpation",
                                  "a tender pulsatile epigastric mass"])
def test_pulsatile_mass_wordings(text):
    r = read(text)
    assert r.status_of("pulsatile_mass") == "present", r.to_dict()
    # one mass, weighed once: not also a plain mass, a hernia or epigastric pain
    assert r.status_of("palpable_mass") is None
    assert r.status_of("hernia_bulge") is None
    assert r.status_of("epigastric_pain") is None


def test_tender_left_lower_mass_is_the_quadrant_not_a_pulsatile_mass():
    r = read("a tender mass in the left lower quadrant")
    assert r.status_of("llq_pain") == "present" and r.status_of("pulsatile_mass") is None
    assert next(f for f in r.findings if f.id == "llq_pain").side == "left"


@pytest.mark.parametrize("text, side", [("tender right upper quadrant with pain into the right shoulder", "right"),
                                        ("an ache in the left shoulder tip since the fall", "left")])
def test_pain_felt_in_a_shoulder_tip_or_blade(text, side):
    f = _finding(text, f"{side}_shoulder_pain")
    assert f is not None and f.status == "present" and f.side == side
    assert read("pain in the shoulder joint when lifting the arm").status_of("pain_radiating_to_shoulder") is None


# -- diarrhoea or stools that turn bloody -----------------------------------------------------------------------------
@pytest.mark.parametrize("text, finding", [
    ("watery diarrhoea at first, then bloody", "bloody_diarrhoea"),
    ("diarrhea becoming progressively bloody over two days", "bloody_diarrhoea"),
    ("the loose stools turned bloody on the third day", "bloody_diarrhoea"),
    ("his motions became blood-stained", "haematochezia"),
])
def test_diarrhoea_or_stools_turning_bloody(text, finding):
    assert read(text).status_of(finding) == "present", read(text).to_dict()
