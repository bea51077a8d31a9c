"""Gated fusion of the differential's organ relevance with the trained text model's.

:func:`reason` is the one entry point for ``medsora rank`` and scoring: for each text it runs the
:class:`~MedSORALib.text.reasoning.TextReasoner` (structure relevance, out-of-domain gate) and the differential
(reader + catalogue scorer), and mixes them where the differential is confident:

    conf  = probability of the differential's top diagnosis
    alpha = ALPHA * clip((conf - GATE_LOW) / (GATE_HIGH - GATE_LOW), 0, 1)
    fused = (1 - alpha) * model + alpha * differential        (per structure)

Below ``GATE_LOW`` the model's ranking is kept as it is. A structure removed by surgery gets 0 whatever either
side says. ``scope`` comes from the differential where it is confident, else from the model's out-of-domain
decision (``modelled`` when in domain, ``non-abdominal`` otherwise); ``in_domain`` is true only for ``modelled``.

The constants were chosen on the team's dev set only (``Training/data/external_dev.jsonl``) by
``python -m MedSORALib.differential.evaluate --tune``; docs/reasoning.md gives the figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..organs import STRUCTURES
from .differential import MODELLED, NON_ABDOMINAL, DifferentialResult, load_differential

ALPHA = 0.7
GATE_LOW = 0.02
GATE_HIGH = 0.02
#: Differential confidence above which its scope overrides the model's out-of-domain decision.
SCOPE_CONFIDENCE = 0.3
#: A non-specific text that names only non-abdominal body sites is called non-abdominal only where the model's
#: out-of-domain detector agrees (chosen on the tune half of the dev sets: it keeps abdominal texts in domain).
SITE_RULE_NEEDS_MODEL = True


@dataclass
class Reasoned:
    """The fused answer for one text.

    Attributes:
        prediction: the text model's :class:`~MedSORALib.text.reasoning.TextPrediction` (``None`` without a model).
        differential: the :class:`~MedSORALib.differential.differential.DifferentialResult`.
        structure_relevance: {structure key: fused relevance in [0, 1]}.
        alpha: the weight the differential got (0 = the model alone).
        scope, outside, in_domain: see the module docstring.
    """

    text: str
    prediction: object
    differential: DifferentialResult
    structure_relevance: dict[str, float]
    alpha: float
    scope: str
    outside: str | None
    in_domain: bool

    def ranked_structures(self) -> list[tuple[str, float]]:
        order = {k: i for i, k in enumerate(STRUCTURES)}
        return sorted(self.structure_relevance.items(), key=lambda kv: (-kv[1], order[kv[0]]))


def gate(confidence: float, alpha: float = ALPHA, low: float = GATE_LOW, high: float = GATE_HIGH) -> float:
    """The differential's weight for a top-diagnosis probability."""
    if high <= low:
        return alpha if confidence >= low else 0.0
    return alpha * min(max((confidence - low) / (high - low), 0.0), 1.0)


def fuse(model_relevance: dict[str, float] | None, result: DifferentialResult, in_domain: bool | None,
         alpha: float = ALPHA, low: float = GATE_LOW, high: float = GATE_HIGH) -> tuple[dict, float, str, str | None]:
    """Fused structure relevance, the weight used, scope and outside for one text."""
    conf = result.top.probability if result.top is not None else 0.0
    if model_relevance is None:
        a = 1.0
        model_relevance = dict.fromkeys(STRUCTURES, 0.0)
    else:
        a = gate(conf, alpha, low, high)
    fused = {k: (1.0 - a) * float(model_relevance.get(k, 0.0)) + a * result.organ_relevance.get(k, 0.0)
             for k in STRUCTURES}
    for key in result.removed:
        if key in fused:
            fused[key] = 0.0
    if conf >= SCOPE_CONFIDENCE or in_domain is None:
        scope, outside = result.scope, result.outside
    elif result.scope == NON_ABDOMINAL and (not SITE_RULE_NEEDS_MODEL or in_domain is False):
        scope, outside = NON_ABDOMINAL, None
    else:
        scope, outside = (MODELLED, None) if in_domain else (NON_ABDOMINAL, None)
    return fused, a, scope, outside


def reason(texts: Sequence[str], reasoner=None, age=None, sex=None, predictions=None) -> list[Reasoned]:
    """Fused organ relevance, differential and scope for each text.

    Args:
        texts: symptom texts.
        reasoner: a loaded :class:`~MedSORALib.text.reasoning.TextReasoner`; ``None`` = the differential alone.
        age, sex: the patient's, when the caller knows them (one value for all texts, or one per text);
            they take precedence over what the text states.
        predictions: the reasoner's predictions for ``texts`` when already computed.
    """
    from .reader import read

    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if predictions is None and reasoner is not None:
        predictions = reasoner.predict(texts)
    scorer = load_differential()
    out = []
    for i, text in enumerate(texts):
        a_i = age[i] if isinstance(age, (list, tuple)) else age
        s_i = sex[i] if isinstance(sex, (list, tuple)) else sex
        result = scorer.score(read(text, age=a_i, sex=s_i))
        pred = predictions[i] if predictions is not None else None
        fused, a, scope, outside = fuse(pred.structure_relevance if pred is not None else None, result,
                                        pred.in_domain if pred is not None else None)
        out.append(Reasoned(text, pred, result, fused, a, scope, outside, scope == MODELLED))
    return out
