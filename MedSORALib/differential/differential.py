"""The differential diagnosis: diseases of the catalogue scored from the findings read in a text.

Each disease d starts from its designed base rate (``frequency`` -> prior; x ``AGE_OUTSIDE_FACTOR`` outside its
typical ages; x ``WRONG_SEX_FACTOR`` for the other sex, ``MOSTLY_OTHER_SEX_FACTOR`` where the row says the other
sex has it too) and is updated by likelihood ratios, naive-Bayes style (log odds add), for every finding the text
reads and the row names:

* a finding read as present: log(LR+); an uncertain one ("?", "possible"): half of it; a risk or history
  finding placed in the past counts as present (that is what it is); a symptom or sign in the past counts 0;
* a finding read as negated: log(LR-), LR- = (1 - freq) / (1 - freq / LR+) (``Weight.lr_negative``);
* risk factors and history (the context) count fully only for a diagnosis that some present symptom, sign, lab or
  vital supports; otherwise ``CONTEXT_ALONE_WEIGHT`` of them (an old disease is context, not the presentation);
* a present finding of the row's ``against`` list: log(LR) (< 0);
* generic findings (``generic: true``: fever, nausea, abdominal pain...) count ``GENERIC_WEIGHT`` of their log LR
  so that many of them do not outweigh one specific finding;
* the sum of log LRs is multiplied by ``TEMPERATURE`` (2.5: the catalogue's designed LRs are conservative as a set;
  docs/reasoning.md).

Base rates enter flattened (``prior ** PRIOR_POWER``). A further hypothesis, *none of these* (a presentation
the catalogue does not explain, or too non-specific to name), holds the share ``NONE_SHARE`` of the prior mass
and LR 1 for every finding, so a text with only generic findings
leaves most of the mass there: a flat, honest ranking. The posterior is the softmax of the log scores over the
diseases and that hypothesis.

Organ relevance: each structure gets the posterior mass of the diseases that name it (the main organ fully,
further organs ``SECONDARY_SHARE``), paired organs split by the side read in the text (the other side
``CONTRALATERAL_FACTOR``). A structure removed by surgery gets 0 and a disease all of whose structures are removed
is dropped.

Scope: ``modelled`` when the leading diagnoses' mass lies in the 13 structures, ``abdominal-other`` (with
``outside``) when it lies in an abdominal structure MedSORA does not show, ``non-abdominal`` when it lies outside
the abdomen, or when nothing is explained (the best diagnosis is below ``SCOPE_MIN``, or below 0.5 and carried by risk
factors and history alone) and the text names non-abdominal body sites only.

All constants are designed (our choice) and documented in docs/reasoning.md; the fusion thresholds that use
these outputs were chosen on the team's dev sets (:mod:`.fusion`).
"""
from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field

from ..organs import PAIRED_STRUCTURES, STRUCTURES
from .context import FAMILY, HISTORY, NEGATED, PRESENT, UNCERTAIN
from .records import AGE_OUTSIDE_FACTOR

TEMPERATURE = 2.5
GENERIC_WEIGHT = 0.5
UNCERTAIN_WEIGHT = 0.5
#: Prior share of "none of these" before any finding (the rest is shared by the diseases by base rate).
NONE_SHARE = 0.05
#: Base rates enter as prior ** PRIOR_POWER: texts sent to MedSORA are already selected by a clinician's
#: suspicion, so the spread of population base rates (100x between common and very rare) is flattened.
PRIOR_POWER = 0.3
#: Below this top-diagnosis probability the differential does not decide the scope (non-specific text).
SCOPE_MIN = 0.2
WRONG_SEX_FACTOR = 0.01
#: The other sex's factor for a row marked ``sex: mostly female`` / ``mostly male`` (a disease both sexes get, one
#: clearly more often: acute coronary syndrome, migraine, thyrotoxicosis; designed, about a 3:1 ratio).
MOSTLY_OTHER_SEX_FACTOR = 0.3
SECONDARY_SHARE = 0.5
CONTRALATERAL_FACTOR = 0.3
#: Diagnoses within this share of the best one's probability form "the leading diagnoses" of the scope rule.
LEADING_SHARE = 0.35
TOP_K = 10
#: Kinds of finding that describe the presentation (the others, risk factors, history and demographics, are context).
PRESENTING_KINDS = ("symptom", "sign", "lab", "vital")
#: Share of the context findings' log LR a diagnosis keeps when no present presenting finding supports it
#: ("a history of gallstones has sudden chest pain and sweating": the gallstones alone do not make biliary colic
#: the answer). A diagnosis counts as supported when its present presenting findings give together at least
#: LR 1.3 (PRESENTING_MIN_LOG_LR, after the generic discount). Both chosen on the tune half of the dev sets among
#: (0.3, 0.5) x (LR 1.3, 2) against 1 (no discount).
CONTEXT_ALONE_WEIGHT = 0.3
PRESENTING_MIN_LOG_LR = math.log(1.3)
#: History findings that, read as happening now, are the presentation's event rather than its background: "fell
#: off a horse this morning, now left upper quadrant pain" (they count as presenting findings; designed).
EVENT_FINDINGS = frozenset(("trauma",))
#: Findings that place a presentation in the abdomen whatever body sites the text names besides: a text reading
#: one of them is never called non-abdominal by the body-site rule ("the whites of my eyes turned yellow and my skin
#: itches" names the eyes and the skin, but the jaundice is the liver's). Pain sites of the abdomen are here too
#: because lay wording ("under my right ribs") does not name them in words the site rule knows (designed list).
#: ``ABDOMINAL_SIGNS`` (the list less the pain sites, which non-abdominal mimics share: the epigastric pain of an
#: inferior myocardial infarction) also keep a text from being called non-abdominal on the text model's
#: out-of-domain decision alone (:func:`MedSORALib.differential.fusion.fuse`).
ABDOMINAL_SIGNS = frozenset((
    "jaundice", "painless_jaundice", "dark_urine", "pale_stools", "clay_coloured_and_dark_urine", "bilirubin_raised",
    "alp_raised", "transaminases_raised", "lipase_raised", "lipase_3x_uln", "amylase_3x_uln", "haematemesis",
    "coffee_ground_vomiting", "melaena", "haematochezia", "haematuria", "painless_haematuria", "ascites",
    "hepatomegaly", "splenomegaly", "abdominal_distension", "pulsatile_mass", "murphy_sign", "steatorrhoea",
))
ABDOMINAL_FINDINGS = ABDOMINAL_SIGNS | frozenset((
    "epigastric_pain", "ruq_pain", "luq_pain", "rlq_pain", "llq_pain", "flank_pain", "bilateral_flank_pain",
    "suprapubic_pain", "pelvic_pain",
))

MODELLED, ABDOMINAL_OTHER, NON_ABDOMINAL = "modelled", "abdominal-other", "non-abdominal"

# Body sites outside the abdomen: a text naming only these, with nothing the catalogue explains, is
# non-abdominal (knee pain after a fall, a rash on the arm, blurred vision). The chest and the legs are not among
# them: chest pain is the presentation of the oesophagus and the thoracic aorta, and swelling of both legs that of
# the inferior vena cava, all in scope; the catalogue's diagnoses or the text model decide those texts. Dizziness
# is not among them either: it is the blood loss, the adrenal failure or the dehydration of many abdominal
# presentations as often as an ear's or a brain's.
_NON_ABDOMINAL_SITE = re.compile(
    r"(?<![\w])(?:knees?|ankles?|wrists?|elbows?|shoulders?|hips?|feet|foot|toes?|fingers?|thumbs?|hands?|arms?|"
    r"thighs?|calf|calves|shins?|heels?|neck|head|headaches?|eyes?|vision|visual|ears?|hearing|tooth|teeth|"
    r"gums?|jaw|throat|tonsils?|nose|sinus(?:es)?|skin|rash|scalp|hair|nails?|breasts?|nipples?|joints?|"
    r"muscles?|tendons?|spine|migraine|seizures?|fits?|numb\w*|tingl\w*|memory|mood|"
    r"anxiety|depress\w*|sleep|insomnia|cough\w*|sneez\w*|earache|toothache|wheez\w*|"
    r"testic\w*|scrot\w*|penis|buttocks?)(?![\w])")
# Places and findings of the abdomen: a non-specific text naming one of these stays with the model's decision.
_ABDOMINAL_SITE = re.compile(
    r"(?<![\w])(?:abdo\w*|belly|tummy|stomach|epigastr\w*|umbilic\w*|navel|flank|loin|pelvi\w*|"
    r"quadrant|iliac|hypochondri\w*|subcostal|costal margin|ribs?|rib cage|liver|spleen|kidneys?|renal|"
    r"gallbladder|gall bladder|"
    r"pancrea\w*|bowel|jaundice\w*|swallow\w*|retrosternal|oesophag\w*|esophag\w*|aort\w*|ruq|luq|rlq|llq|rif|lif)"
    r"(?![\w])")


@dataclass
class Diagnosis:
    """One scored disease of the differential."""

    disease: object
    log_score: float
    probability: float = 0.0
    supporting: list = field(default_factory=list)
    against: list = field(default_factory=list)
    structures: tuple[str, ...] = ()
    main: set = field(default_factory=set)

    def to_dict(self) -> dict:
        d = self.disease
        return {
            "id": d.id,
            "diagnosis": d.name,
            "organs": list(self.structures) if d.organs else [],
            "outside": d.outside,
            "probability": round(self.probability, 4),
            "supporting": [f.label for f in self.supporting],
            "against": [f.label + (" (absent)" if f.status == NEGATED else "") for f in self.against],
            "look_for": list(d.look_for),
            "source": d.source,
        }


@dataclass
class DifferentialResult:
    """The differential of one text: diagnoses best first, the unexplained mass, organ relevance and scope."""

    diagnoses: list[Diagnosis]
    none_probability: float
    organ_relevance: dict[str, float]
    scope: str
    outside: str | None
    removed: tuple[str, ...]
    reading: object

    @property
    def top(self) -> Diagnosis | None:
        return self.diagnoses[0] if self.diagnoses else None

    def organ_why(self, key: str, limit: int = 3) -> list[str]:
        """Names of the leading diagnoses behind a structure's relevance."""
        names = [d.disease.name for d in self.diagnoses if key in d.structures and d.probability >= 0.01]
        return names[:limit]

    def to_dict(self, top_k: int = 5) -> dict:
        return {
            "differential": [d.to_dict() for d in self.diagnoses[:top_k]],
            "none_of_these": round(self.none_probability, 4),
            "scope": self.scope,
            "outside": self.outside,
            "read": self.reading.to_dict(),
        }


class Differential:
    """The scorer over one catalogue (see the module docstring)."""

    def __init__(self, catalogue, temperature: float = TEMPERATURE, generic_weight: float = GENERIC_WEIGHT,
                 none_share: float = NONE_SHARE, prior_power: float = PRIOR_POWER):
        self.catalogue = catalogue
        self.temperature = temperature
        self.generic_weight = generic_weight
        self.prior_power = prior_power
        total = sum(d.prior ** prior_power for d in catalogue.diseases) or 1.0
        self.none_log_prior = math.log(none_share / (1.0 - none_share) * total)
        self.findings = catalogue.findings
        # per disease: {finding id: weight} for quick lookup
        self._weights = [({w.id: w for w in d.findings}, {w.id: w for w in d.against}) for d in catalogue.diseases]
        self._structures = [d.structures for d in catalogue.diseases]
        self._main = [(set(PAIRED_STRUCTURES[d.organs[0]].values()) if d.organs[0] in PAIRED_STRUCTURES
                       else {d.organs[0]}) if d.organs else set() for d in catalogue.diseases]
        self._log_prior = [prior_power * math.log(d.prior) for d in catalogue.diseases]

    def _finding_weight(self, read_finding) -> float:
        """How much a read finding's log LR counts: by status and genericity."""
        status = read_finding.status
        finding = self.findings.get(read_finding.id)
        kind = finding.kind if finding is not None else read_finding.kind
        if status == PRESENT:
            w = 1.0
        elif status == UNCERTAIN:
            w = UNCERTAIN_WEIGHT
        elif status == HISTORY:
            w = 1.0 if kind in ("risk", "history") else 0.0
        else:
            w = 0.0
        if finding is not None and finding.generic:
            w *= self.generic_weight
        return w

    def score(self, reading) -> DifferentialResult:
        """The differential of a :class:`~MedSORALib.differential.reader.Reading`."""
        removed = set(reading.removed)
        side = reading.laterality
        side_findings = {f.side for f in reading.findings if f.side and f.status == PRESENT}
        if side is None and len(side_findings) == 1:
            side = side_findings.pop()
        read = [f for f in reading.findings if f.status != FAMILY]
        scored: list[Diagnosis] = []
        sided_cache: dict = {}
        for index, (disease, (pos, neg)) in enumerate(zip(self.catalogue.diseases, self._weights)):
            structures = self._structures[index]
            if removed:
                structures = tuple(s for s in structures if s not in removed)
                if disease.organs and not structures:
                    continue
            log_prior = self._log_prior[index]
            if disease.sex and reading.sex and disease.sex != reading.sex:
                log_prior += math.log(WRONG_SEX_FACTOR if disease.sex_strict else MOSTLY_OTHER_SEX_FACTOR)
            if disease.age and reading.age is not None and not disease.age[0] <= reading.age <= disease.age[1]:
                log_prior += math.log(AGE_OUTSIDE_FACTOR)
            total, context, presenting, supporting, against = 0.0, 0.0, 0.0, [], []
            for f in read:
                w = pos.get(f.id)
                if w is not None:
                    if f.status == NEGATED:
                        lr = w.lr_negative
                        if lr < 1.0:
                            total += math.log(lr) * (self.generic_weight if self._generic(f) else 1.0)
                            against.append(f)
                    else:
                        weight = self._finding_weight(f)
                        if weight > 0:
                            if self._kind(f) in PRESENTING_KINDS:
                                total += math.log(w.lr) * weight
                                if f.status == PRESENT and w.lr > 1.0:
                                    presenting += math.log(w.lr) * weight
                            elif f.status == PRESENT and f.id in EVENT_FINDINGS:
                                total += math.log(w.lr) * weight  # counts fully, but explains no other context
                            else:
                                context += math.log(w.lr) * weight
                            supporting.append(f)
                    continue
                a = neg.get(f.id)
                if a is not None and f.status != NEGATED:
                    weight = self._finding_weight(f)
                    if weight > 0:
                        total += math.log(a.lr) * weight
                        against.append(f)
            # risk factors and past disease make a diagnosis likelier only beside a presentation it explains: a
            # diagnosis no present symptom, sign, lab or vital supports gets CONTEXT_ALONE_WEIGHT of them
            explained = presenting >= PRESENTING_MIN_LOG_LR
            total += context * (1.0 if explained or context <= 0 else CONTEXT_ALONE_WEIGHT)
            sided = sided_cache.get(structures)
            if sided is None:
                sided = sided_cache[structures] = _sided(structures, side)
            diagnosis = Diagnosis(disease, log_prior + self.temperature * total, 0.0, supporting, against, sided)
            main = self._main[index]
            if removed and structures and not main & set(structures):
                # the main organ is gone (a bile duct stone after cholecystectomy): the first structure left leads
                main = {structures[0]}
            diagnosis.main = main
            scored.append(diagnosis)
        none_log = self.none_log_prior
        peak = max([d.log_score for d in scored] + [none_log])
        z = math.exp(none_log - peak) + sum(math.exp(d.log_score - peak) for d in scored)
        for d in scored:
            d.probability = math.exp(d.log_score - peak) / z
        none_p = math.exp(none_log - peak) / z
        scored.sort(key=lambda d: -d.probability)
        relevance = self._relevance(scored, side, removed)
        scope, outside = self._scope(scored, none_p, reading)
        return DifferentialResult(scored, none_p, relevance, scope, outside, tuple(sorted(removed)), reading)

    def _kind(self, f) -> str:
        finding = self.findings.get(f.id)
        return finding.kind if finding is not None else f.kind

    def _generic(self, f) -> bool:
        finding = self.findings.get(f.id)
        return bool(finding is not None and finding.generic)

    @staticmethod
    def _relevance(scored: list[Diagnosis], side: str | None, removed: set) -> dict[str, float]:
        rel = dict.fromkeys(STRUCTURES, 0.0)
        factors = {key: _side_factor(key, side) for key in STRUCTURES}
        for d in scored:
            if not d.disease.organs or d.probability < 1e-6:
                continue
            main_keys = d.main
            for key in d.structures:
                share = 1.0 if key in main_keys else SECONDARY_SHARE
                rel[key] += d.probability * share * factors[key]
        for key in removed:
            if key in rel:
                rel[key] = 0.0
        return {k: min(v, 1.0) for k, v in rel.items()}

    @staticmethod
    def _scope(scored: list[Diagnosis], none_p: float, reading) -> tuple[str, str | None]:
        from .catalogue import OUTSIDE

        if not scored:
            return MODELLED, None
        best = scored[0].probability
        presenting = best >= 0.5 or any(f.kind in PRESENTING_KINDS for f in scored[0].supporting)
        if best < SCOPE_MIN or not presenting:
            # a diagnosis carried by risk factors or history alone (a fall, alcohol) names no presentation
            # nothing named with confidence: a text about a non-abdominal body site only is non-abdominal
            if any(f.id in ABDOMINAL_FINDINGS for f in reading.present()):
                return MODELLED, None
            norm = _asserted_text(reading)
            if _NON_ABDOMINAL_SITE.search(norm) and not _ABDOMINAL_SITE.search(norm):
                return NON_ABDOMINAL, None
            return MODELLED, None
        leading = [d for d in scored[:TOP_K] if d.probability >= LEADING_SHARE * best]
        mass = {MODELLED: 0.0, ABDOMINAL_OTHER: 0.0, NON_ABDOMINAL: 0.0}
        outside_mass: dict[str, float] = {}
        for d in leading:
            if d.disease.organs:
                mass[MODELLED] += d.probability
            elif OUTSIDE.get(d.disease.outside) == "abdominal":
                mass[ABDOMINAL_OTHER] += d.probability
                outside_mass[d.disease.outside] = outside_mass.get(d.disease.outside, 0.0) + d.probability
            else:
                mass[NON_ABDOMINAL] += d.probability
                outside_mass[d.disease.outside] = outside_mass.get(d.disease.outside, 0.0) + d.probability
        scope = max(mass, key=lambda k: (mass[k], k == MODELLED))
        if scope == MODELLED:
            return MODELLED, None
        region = "abdominal" if scope == ABDOMINAL_OTHER else "non_abdominal"
        keys = {k: v for k, v in outside_mass.items() if OUTSIDE.get(k) == region}
        return scope, (max(keys, key=keys.get) if keys else None)


def _asserted_text(reading) -> str:
    """The normalised text with the stretches a negation governs blanked ("no yellow eyes" names no eye), from the
    reader's clauses and scopes."""
    from .context import NEGATED

    ctx = reading.text_context()
    chars = list(ctx.norm)
    for scope in ctx.scopes:
        if scope.status == NEGATED:
            chars[scope.start:scope.end] = " " * (scope.end - scope.start)
    return "".join(chars)


def _side_factor(key: str, side: str | None) -> float:
    for pair in PAIRED_STRUCTURES.values():
        if key in pair.values() and side in ("left", "right"):
            return 1.0 if pair[side] == key else CONTRALATERAL_FACTOR
    return 1.0


def _sided(structures: tuple[str, ...], side: str | None) -> tuple[str, ...]:
    """Structures of a diagnosis with a paired organ's other side dropped when the text names a side."""
    if side not in ("left", "right"):
        return structures
    out = []
    for key in structures:
        pair = next((p for p in PAIRED_STRUCTURES.values() if key in p.values()), None)
        if pair is not None and pair[side] != key and pair[side] in structures:
            continue
        out.append(key)
    return tuple(out)


_DEFAULT: Differential | None = None
_DEFAULT_LOCK = threading.Lock()


def load_differential() -> Differential:
    """The scorer of the shipped catalogue (built once per process)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            from .catalogue import load_catalogue

            _DEFAULT = Differential(load_catalogue())
        return _DEFAULT


def differential(text: str, age: float | None = None, sex: str | None = None) -> DifferentialResult:
    """Read a text and score its differential with the shipped catalogue."""
    from .reader import read

    return load_differential().score(read(text, age=age, sex=sex))
