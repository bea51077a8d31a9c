"""Gated fusion of the differential's organ relevance with the trained text model's.

:func:`reason` is the one entry point for ``medsora rank`` and scoring: for each text it runs the
:class:`~MedSORALib.text.reasoning.TextReasoner` (structure relevance, out-of-domain gate) and the differential
(reader + catalogue scorer), and mixes them where the differential is confident:

    conf  = probability of the differential's top diagnosis
    mass  = probability of the diagnoses that lie in the 13 structures
    alpha = ALPHA * clip((conf - GATE_LOW) / (GATE_HIGH - GATE_LOW), 0, 1) * min(1, mass / MODELLED_MASS_FULL)
    fused = (1 - alpha) * model + alpha * differential        (per structure)

Below ``GATE_LOW`` the model's ranking is kept as it is. A structure removed by surgery gets 0 whatever either
side says. A non-specific text (every finding read is generic and no diagnosis stands out) keeps the order but
gets a flat ranking (:func:`flatten`), flagged ``non_specific``. ``scope`` comes from the differential where it is
confident, else from the model's out-of-domain decision (``modelled`` when in domain, ``non-abdominal`` otherwise,
unless the text reads a sign of the abdomen such as jaundice or melaena, ``ABDOMINAL_SIGNS``, or the differential
leads with a supported diagnosis in the 13 structures, ``OVERRULE_*``); the differential's body-site rule does not
overrule a model that calls the text in domain where a specific finding supports a best diagnosis in the 13
structures (``SITE_RULE_YIELDS``);
``in_domain`` is true only for ``modelled``.

The constants were chosen on the tune half (even lines) of the team's dev sets (``Training/data/dev_*.jsonl``),
by ``python -m MedSORALib.differential.evaluate --tune`` for the gate; docs/reasoning.md gives the figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..organs import STRUCTURES
from .context import PRESENT
from .differential import (ABDOMINAL_SIGNS, MODELLED, NON_ABDOMINAL, PRESENTING_KINDS, DifferentialResult,
                           load_differential)

ALPHA = 0.7
GATE_LOW = 0.02
GATE_HIGH = 0.02
#: Differential confidence above which its scope overrides the model's out-of-domain decision.
SCOPE_CONFIDENCE = 0.5
#: A non-specific text that names only non-abdominal body sites is called non-abdominal only where the model's
#: out-of-domain score (1 - p_in) reaches this (chosen on the tune half of the dev sets among settings keeping
#: 94 % of abdominal presentations in domain; the model's own decision needs far more).
SITE_RULE_MIN_OOD = 0.1
#: The differential's weight is scaled by the probability it puts on diagnoses in the 13 structures, full from this
#: mass on: where its best diagnoses lie elsewhere (the heart, the colon) it says little about which of the 13
#: matters, and the text model keeps more of the ranking (chosen on the tune half of the dev sets among 0.2, 0.35,
#: 0.5 and 0.7 against no scaling).
MODELLED_MASS_FULL = 0.5
#: A non-specific text (every finding read in it is generic: "abdominal pain and fever", "tummy ache") gets a
#: flat ranking: each relevance is drawn toward the mean of the 13 as ``mean + NON_SPECIFIC_SPREAD * (r - mean)``,
#: which keeps the order and says that the words do not point to one organ (designed).
NON_SPECIFIC_SPREAD = 0.25
#: ... unless the differential names a diagnosis with at least this probability.
NON_SPECIFIC_MAX_CONFIDENCE = 0.2
#: Where the text model calls a text out of domain but the differential leads with a diagnosis in the 13
#: structures that a presenting finding (symptom, sign, lab, vital) supports, with at least OVERRULE_CONFIDENCE of
#: probability and OVERRULE_MODELLED_MASS on the 13 structures, the text stays in scope (chosen on the tune half of
#: the dev sets among 0.1 / 0.2 / 0.3 x 0.5 / 0.7).
OVERRULE_CONFIDENCE = 0.2
OVERRULE_MODELLED_MASS = 0.7
#: Where the text model calls a text in domain, the differential's body-site rule (a text naming only non-abdominal
#: sites) yields to a best diagnosis in the 13 structures from this probability on that a specific (not generic)
#: symptom, sign, lab or vital supports ("food hard to get down ... an ache in the chest": achalasia, not a chest
#: complaint; designed).
SITE_RULE_YIELDS = 0.1


@dataclass
class Reasoned:
    """The fused answer for one text.

    Attributes:
        prediction: the text model's :class:`~MedSORALib.text.reasoning.TextPrediction` (``None`` without a model).
        differential: the :class:`~MedSORALib.differential.differential.DifferentialResult`.
        structure_relevance: {structure key: fused relevance in [0, 1]}.
        alpha: the weight the differential got (0 = the model alone).
        scope, outside, in_domain: see the module docstring.
        non_specific: every finding read is generic and no diagnosis stands out; the ranking was flattened.
    """

    text: str
    prediction: object
    differential: DifferentialResult
    structure_relevance: dict[str, float]
    alpha: float
    scope: str
    outside: str | None
    in_domain: bool
    non_specific: bool = False

    def ranked_structures(self) -> list[tuple[str, float]]:
        """(structure, relevance) best first; structures removed by surgery always last (they have 0)."""
        order = {k: i for i, k in enumerate(STRUCTURES)}
        removed = set(self.differential.removed)
        return sorted(self.structure_relevance.items(), key=lambda kv: (kv[0] in removed, -kv[1], order[kv[0]]))


def gate(confidence: float, alpha: float = ALPHA, low: float = GATE_LOW, high: float = GATE_HIGH) -> float:
    """The differential's weight for a top-diagnosis probability."""
    if high <= low:
        return alpha if confidence >= low else 0.0
    return alpha * min(max((confidence - low) / (high - low), 0.0), 1.0)


def modelled_mass(result: DifferentialResult) -> float:
    """The probability the differential puts on diagnoses that lie in the 13 structures."""
    return sum(d.probability for d in result.diagnoses if d.disease.organs)


def non_specific(result: DifferentialResult) -> bool:
    """True when the text asserts findings, all of them generic, and no diagnosis reaches
    :data:`NON_SPECIFIC_MAX_CONFIDENCE`."""
    present = result.reading.present()
    conf = result.top.probability if result.top is not None else 0.0
    return bool(present) and all(f.generic for f in present) and conf < NON_SPECIFIC_MAX_CONFIDENCE


def flatten(relevance: dict[str, float], spread: float = NON_SPECIFIC_SPREAD) -> dict[str, float]:
    """Relevances drawn toward their mean (order kept; structures at 0, removed ones, stay at 0)."""
    live = [v for v in relevance.values() if v > 0]
    if not live:
        return dict(relevance)
    mean = sum(live) / len(live)
    return {k: (mean + spread * (v - mean) if v > 0 else 0.0) for k, v in relevance.items()}


def fuse(model_relevance: dict[str, float] | None, result: DifferentialResult, in_domain: bool | None,
         alpha: float = ALPHA, low: float = GATE_LOW, high: float = GATE_HIGH,
         ood_score: float | None = None) -> tuple[dict, float, str, str | None]:
    """Fused structure relevance, the weight used, scope and outside for one text."""
    conf = result.top.probability if result.top is not None else 0.0
    if model_relevance is None:
        a = 1.0
        model_relevance = dict.fromkeys(STRUCTURES, 0.0)
    else:
        a = gate(conf, alpha, low, high) * min(1.0, modelled_mass(result) / MODELLED_MASS_FULL)
    fused = {k: (1.0 - a) * float(model_relevance.get(k, 0.0)) + a * result.organ_relevance.get(k, 0.0)
             for k in STRUCTURES}
    for key in result.removed:
        if key in fused:
            fused[key] = 0.0
    if conf >= SCOPE_CONFIDENCE or in_domain is None:
        scope, outside = result.scope, result.outside
    elif result.scope == NON_ABDOMINAL and (in_domain is False or (
            ood_score is not None and ood_score >= SITE_RULE_MIN_OOD and not _specific_lead(result))):
        scope, outside = NON_ABDOMINAL, None
    elif in_domain or any(f.id in ABDOMINAL_SIGNS for f in result.reading.present()) or _leads_in_scope(result):
        # a sign of the abdomen read in the text (jaundice, melaena, a raised bilirubin), or a supported leading
        # diagnosis in the 13 structures, keeps it in scope whatever the model's out-of-domain score says
        scope, outside = MODELLED, None
    else:
        scope, outside = NON_ABDOMINAL, None
    return fused, a, scope, outside


def _lead_in_the_13(result: DifferentialResult, min_probability: float, specific: bool) -> bool:
    """The best diagnosis lies in the 13 structures, with at least ``min_probability``, and a presenting finding
    (symptom, sign, lab, vital) supports it; with ``specific``, a present and not generic one."""
    top = result.top
    return bool(top is not None and top.disease.organs and top.probability >= min_probability and any(
        f.kind in PRESENTING_KINDS and (not specific or (f.status == PRESENT and not f.generic))
        for f in top.supporting))


def _specific_lead(result: DifferentialResult) -> bool:
    return _lead_in_the_13(result, SITE_RULE_YIELDS, specific=True)


def _leads_in_scope(result: DifferentialResult) -> bool:
    return (_lead_in_the_13(result, OVERRULE_CONFIDENCE, specific=False)
            and modelled_mass(result) >= OVERRULE_MODELLED_MASS)


def read_texts(texts: Sequence[str], reasoner=None, age=None, sex=None, embedding: bool = True,
               matcher=None) -> list:
    """The clinical reader's readings of ``texts`` (age and sex as in :func:`reason`); with a reasoner and
    ``embedding``, the reader's embedding fallback runs over all of them with one encoder call (``matcher``: the
    fallback's :class:`.embedding.EmbeddingMatcher`, by default the reader's own for the reasoner's encoder)."""
    from .reader import load_reader, read

    readings = []
    for i, text in enumerate(texts):
        a_i = age[i] if isinstance(age, (list, tuple)) else age
        s_i = sex[i] if isinstance(sex, (list, tuple)) else sex
        readings.append(read(text, age=a_i, sex=s_i))
    if embedding and reasoner is not None:
        from . import embedding as fallback

        fallback.apply_batch(readings, matcher or load_reader().matcher(reasoner.encoder))
    return readings


def answer(text: str, prediction, result: DifferentialResult, alpha: float = ALPHA) -> Reasoned:
    """One text's fused answer from the model's prediction (``None``: the differential alone) and its scored
    differential."""
    fused, a, scope, outside = fuse(prediction.structure_relevance if prediction is not None else None, result,
                                    prediction.in_domain if prediction is not None else None, alpha=alpha,
                                    ood_score=prediction.ood_score if prediction is not None else None)
    flat = non_specific(result)
    if flat:
        fused = flatten(fused)
    return Reasoned(text, prediction, result, fused, a, scope, outside, scope == MODELLED, flat)


def reason(texts: Sequence[str], reasoner=None, age=None, sex=None, predictions=None,
           embedding: bool = True, matcher=None) -> list[Reasoned]:
    """Fused organ relevance, differential and scope for each text.

    Args:
        texts: symptom texts.
        reasoner: a loaded :class:`~MedSORALib.text.reasoning.TextReasoner`; ``None`` = the differential alone.
        age, sex: the patient's, when the caller knows them (one value for all texts, or one per text);
            they take precedence over what the text states.
        predictions: the reasoner's predictions for ``texts`` when already computed.
        embedding: with a reasoner, run the reader's embedding fallback (:mod:`.embedding`) with its encoder,
            one encoder call for all texts.
        matcher: the fallback's matcher when not the reader's own (a clause bank, :func:`read_texts`).
    """
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if predictions is None and reasoner is not None:
        predictions = reasoner.predict(texts)
    scorer = load_differential()
    readings = read_texts(texts, reasoner, age, sex, embedding, matcher)
    return [answer(text, predictions[i] if predictions is not None else None, scorer.score(readings[i]))
            for i, text in enumerate(texts)]
