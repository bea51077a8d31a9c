"""The clinical reader: a symptom text -> the findings it asserts, denies, doubts or places in the past.

:func:`read` returns a :class:`Reading`: the findings read (id, label, status, the text span), the age and sex
stated, the structures removed by surgery, the side named. Steps:

1. The text is normalised (lower case, straight quotes) and cut into sentences and segments
   (:mod:`.context`), which also decides each span's status: ``present``, ``negated`` ("no fever",
   "denies chest pain or vomiting", "without jaundice", "Murphy's sign negative"), ``uncertain`` ("?",
   "possible", "rule out"), ``history`` ("history of", "s/p", "years ago") or ``family``.
2. Findings are matched by the lexicon's patterns (``resources/differential/findings/*.yaml``), with word
   edges, inside one sentence; the names and synonyms of a finding's HPO terms (``hpo_terms.json``, built
   from the HPO by :mod:`.hpo_terms`) are matched the same way.
3. Laboratory values and vital signs are read with their units against normal ranges (:mod:`.labs`).
4. A generic finding whose span overlaps a specific one is dropped ("right upper quadrant abdominal pain"
   reads as right upper quadrant pain, not also as abdominal pain); a finding read several times keeps its
   strongest status (present over history over uncertain over negated).
5. A history finding with ``removes`` (cholecystectomy, splenectomy, nephrectomy...) asserted or in the past
   removes its structure; for a paired organ the side comes from the words around it.
"""
from __future__ import annotations

import functools
import json
import re
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..organs import PAIRED_STRUCTURES
from .context import FAMILY, HISTORY, NEGATED, PRESENT, UNCERTAIN, Context, normalise
from .demographics import read_age, read_sex
from .labs import load_lab_reader
from .readings import ReadFinding

DATA_DIR = Path(__file__).resolve().parent.parent / "resources" / "differential"
HPO_TERMS_FILE = DATA_DIR / "hpo_terms.json"
#: Status order when one finding is read several times: the first wins.
_STATUS_RANK = {PRESENT: 0, HISTORY: 1, UNCERTAIN: 2, NEGATED: 3, FAMILY: 4}
#: The names of a test for blood in the stool (FOBT, FIT, guaiac).
_OCCULT_TEST = (r"(?:fobt|gfobt|fit|f(?:a)?ecal (?:occult blood|immunochemical)(?: test)?|(?:stool )?guaiac(?: test)?|"
                r"ha?emoccult|occult blood(?: test)?)")
#: Wordings that deny findings in one word or phrase ("afebrile", "anicteric", "haemodynamically stable").
NEGATIVE_FORMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"afebrile|apyrexial|no temperature|temperature (?:is |was )?normal", ("fever",)),
    (r"an-?icteric|non-?icteric|not (?:jaundiced|yellow|icteric)|(?:eyes|skin) (?:are not|aren'?t|is not|isn'?t|"
     r"were not|weren'?t|haven'?t (?:gone|turned)|hasn'?t (?:gone|turned)|not) yellow", ("jaundice",)),
    (r"normotensive", ("hypotension", "hypertension")),
    (r"ha?emodynamically stable|vitals? (?:signs )?(?:are |were )?(?:normal|stable|unremarkable)|"
     r"obs (?:are |were )?(?:normal|stable)",
     ("hypotension", "tachycardia", "shock", "fever")),
    (r"soft,? (?:and )?non-?tender|benign abdomen|abdomen (?:is |was )?(?:soft and non-?tender|benign)|"
     r"abdomen (?:is |was )?soft(?!,? (?:but|and|with|though|although|yet|tender))|"
     r"no peritonism|no peritoneal signs", ("guarding", "rigid_abdomen", "rebound_tenderness", "peritonitis",
                                            "abdominal_pain")),
    # "soft but tender in the left iliac fossa": soft denies only rigidity
    (r"abdomen (?:is |was )?soft(?=,? (?:but|and|with|though|although|yet|tender))", ("rigid_abdomen",)),
    (r"normal bowel (?:habit|movements|motions)|bowels? (?:are |is |opening )?(?:normal|regular|fine)|"
     r"bo (?:normal|regular|nad|ok|fine)",
     ("diarrhoea", "constipation", "melaena", "haematochezia")),
    (r"eating (?:and drinking )?normally|appetite (?:is |was )?(?:good|normal|preserved|fine)", ("anorexia",)),
    (r"weight (?:is |has been )?(?:stable|steady)|no (?:change in )?weight (?:change|loss)", ("weight_loss",)),
    (r"urin(?:e|alysis)(?: dip(?:stick)?)? (?:is |was )?(?:clear|normal|negative|unremarkable|bland)(?! for)|"
     r"(?:urine )?dip(?:stick)? (?:is |was )?(?:clear|normal|negative|unremarkable)(?! for)",
     ("haematuria", "microscopic_haematuria", "pyuria", "nitrites_positive", "proteinuria")),
    (r"passing (?:urine|water) normally|no urinary symptoms", ("dysuria", "frequency", "haematuria", "urgency")),
    # a denial of smoking says nothing of drinking and the other way round
    (r"never[- ]smoker|lifelong non-?smoker|(?:doesn'?t|does not|don'?t|do not) smoke(?! (?:cannabis|weed|pot))",
     ("smoking",)),
    (r"teetotal(?:ler)?|does not drink|doesn'?t drink|abstinent from alcohol",
     ("alcohol_use", "heavy_alcohol_use")),
    # "no alcohol", "denies drinking": the denial of any drinking (its annotation names alcohol use alone)
    (r"(?:denies|denied|denying|no|nil) (?:any )?(?:alcohol|etoh)(?! (?:for|since|in|gel|wipes?|swabs?|hand)\b)|"
     r"(?:denies|denied|denying) (?:any )?drinking", ("alcohol_use",)),
    (r"(?:belly|tummy|abdomen|stomach) (?:is not|was not|isn'?t|wasn'?t|has not|hasn'?t|had not|hadn'?t)"
     r"(?: (?:been|become|got|gone|really|at all))?(?: any)? (?:swollen|distended|bloated|bigger|swelled|swollen up)",
     ("abdominal_distension",)),
    (r"regular (?:periods|menses|cycles?)", ("amenorrhoea", "missed_period")),
    (r"sats (?:are |were )?normal|saturating well|saturations? normal", ("hypoxia",)),
    (r"(?:negative|-ve) " + _OCCULT_TEST + r"|" + _OCCULT_TEST + r"(?: test)? (?:was |is |were |came back |returned )?"
     r"(?:negative|-ve)|(?:guaiac|ha?eme?|ha?emoccult)[- ]negative", ("occult_blood",)),
)
_JOINING_HYPHEN = re.compile(r"(?<=[a-z])-(?=[a-z])(?!old\b)")  # "year-old" needs no second reading
_SIDE_WORDS = re.compile(r"(?<![\w])(left|right|l|r|lt|rt)(?![\w])")


@dataclass
class Reading:
    """What the reader found in one text (see the module docstring)."""

    text: str
    findings: list[ReadFinding] = field(default_factory=list)
    age: float | None = None
    sex: str | None = None
    removed: tuple[str, ...] = ()
    laterality: str | None = None
    #: the text's clauses and scopes as the reader cut them (reused by the embedding fallback; not compared)
    context: Context | None = field(default=None, repr=False, compare=False)

    def text_context(self) -> Context:
        """The text's clauses and scopes: the reader's own, or cut again for a reading built without them."""
        if self.context is None:
            self.context = Context(normalise(self.text))
        return self.context

    def present(self) -> list[ReadFinding]:
        """Findings asserted now."""
        return [f for f in self.findings if f.status == PRESENT]

    def by_status(self, status: str) -> list[ReadFinding]:
        return [f for f in self.findings if f.status == status]

    def status_of(self, finding_id: str) -> str | None:
        for f in self.findings:
            if f.id == finding_id:
                return f.status
        return None

    def to_dict(self) -> dict:
        return {"findings": [f.to_dict() for f in self.findings], "age": self.age, "sex": self.sex,
                "removed": list(self.removed), "laterality": self.laterality}


#: Findings whose HPO names are too broad to match as words (their lexicon patterns are enough).
_NO_HPO = frozenset({"abdominal_pain", "fatigue", "malaise"})


class Reader:
    """Compiled lexicon patterns, HPO terms and the lab reader."""

    def __init__(self, lexicon, hpo_terms: dict | None = None, labs=None):
        self.lexicon = dict(lexicon)
        self.labs = labs if labs is not None else load_lab_reader()
        self._hpo_terms = hpo_terms or {}
        self._matchers: dict = {}
        # named syndromes and their parts (the lexicon's ``implies`` and ``all_of``; :meth:`_derive`)
        self._implies = {f.id: f.implies for f in self.lexicon.values() if f.implies}
        self._all_of = [f for f in self.lexicon.values() if f.all_of]
        sources: list[tuple[object, str, str]] = []
        for finding in self.lexicon.values():
            if finding.patterns:
                body = "|".join(f"(?:{p})" for p in finding.patterns)
                sources.append((finding, rf"(?<![\w])(?:{body})(?![\w])", "lexicon"))
            terms = [t for h in finding.hpo for t in (hpo_terms or {}).get(h, [])]
            if terms and finding.id not in _NO_HPO:
                # longest first; equal lengths in a fixed order, so the pattern is the same in every process
                body = "|".join(re.escape(t) for t in sorted(set(terms), key=lambda t: (-len(t), t)))
                sources.append((finding, rf"(?<![\w])(?:{body})(?![\w])", "hpo"))
        # compiled on first need, and only for texts holding one of the pattern's literal needles (.gates)
        from .gates import gated_patterns

        negative = [rf"(?<![\w])(?:{p})(?![\w])" for p, _ids in NEGATIVE_FORMS]
        patterns = gated_patterns([pattern for _f, pattern, _s in sources] + negative)
        self._regexes: list[tuple[object, re.Pattern, str]] = [
            (finding, pattern, source) for (finding, _p, source), pattern in zip(sources, patterns)]
        self._negative_forms = [(pattern, ids) for pattern, (_p, ids) in
                                zip(patterns[len(sources):], NEGATIVE_FORMS)]

    def read(self, text: str, age: float | None = None, sex: str | None = None, encoder=None,
             embedding_threshold: float | None = None) -> Reading:
        """Read one text; ``age`` / ``sex`` given by the caller take precedence over the text's.

        With a sentence ``encoder``, asserted clauses that nothing else read go through the conservative
        embedding fallback (:mod:`.embedding`).
        """
        from ..text.laterality import detect_laterality

        norm = normalise(text)
        ctx = Context(norm)
        reading = Reading(text=text, context=ctx)
        reading.age = float(age) if age is not None else read_age(norm)
        reading.sex = sex if sex in ("female", "male") else read_sex(norm)
        reading.laterality = detect_laterality(text)
        sentence_bounds = [(s.start, s.end, s.sentence) for s in ctx.segments]
        raw: list[ReadFinding] = []
        # words joined by hyphens read as the words apart as well ("left-upper-quadrant pain", "sudden-onset pain");
        # same length as the text, so spans and context stay those of the text
        unhyphened = _JOINING_HYPHEN.sub(" ", norm)
        hyphen_spans = [(s, e) for s, e in _sentences(ctx) if "-" in norm[s:e] and unhyphened[s:e] != norm[s:e]]
        # places of pain joined before one head noun read as each place with the noun ("chest or back pain",
        # "retrosternal and upper abdominal pain"): the first place is read again with the noun put after it
        joins = _coordinated(unhyphened)
        for finding, regex, source in self._regexes:
            matches = [(m.start(), m.end()) for m in regex.finditer(norm)]
            # the passes below look inside a window of a changed copy of the text: the gate is checked on the
            # window alone (.gates: a match inside the window holds its needles there)
            for s_start, s_end in hyphen_spans:  # only the sentences a joining hyphen changed
                matches += [(m.start(), m.end()) for m in regex.finditer_within(unhyphened, s_start, s_end)
                            if "-" in norm[m.start():m.end()]]
            for coordinated, first_start, first_end, whole_end in joins:
                # the span read is the place itself, so that the places after it are read in their own right
                matches += [(m.start(), first_end) for m in regex.finditer_within(
                    coordinated, max(0, first_start - 40), whole_end) if m.start() < first_end < m.end()]
            for start, end in matches:
                if end == start or not _inside_one_sentence(sentence_bounds, start, end):
                    continue
                status, trigger = ctx.status(start, end)
                raw.append(self._make(finding, status, text, norm, start, end, source, trigger))
        for pattern, ids in self._negative_forms:
            for m in pattern.finditer(norm):
                for fid in ids:
                    if fid in self.lexicon:
                        raw.append(self._make(self.lexicon[fid], NEGATED, text, norm, m.start(), m.end(), "lexicon",
                                              m.group(0)))
        for hit in self.labs.read_values(norm, reading.sex):
            finding = self.lexicon.get(hit.finding)
            if finding is None:
                continue
            status, trigger = hit.status, None
            ctx_status, ctx_trigger = ctx.status(hit.start, hit.end)
            if ctx_status in (HISTORY, FAMILY):
                status, trigger = ctx_status, ctx_trigger
            raw.append(self._make(finding, status, text, norm, hit.start, hit.end, "lab", trigger, hit.value))
        for s_start, s_end in _sentences(ctx):
            for hit in self.labs.read_words(norm, s_start, s_end):
                finding = self.lexicon.get(hit.finding)
                if finding is None:
                    continue
                status, trigger = ctx.status(hit.start, hit.end)
                if hit.status == NEGATED and status != FAMILY:
                    status, trigger = NEGATED, "normal"
                raw.append(self._make(finding, status, text, norm, hit.start, hit.end, "lab", trigger))
        raw = [self._twin(f) for f in raw]
        raw += [t for f in raw for t in self._side_twins(f, norm)]
        reading.findings = self._derive(_resolve(raw))
        if encoder is not None:
            from . import embedding

            embedding.apply(reading, ctx, norm, self.matcher(encoder),
                            embedding.THRESHOLD if embedding_threshold is None else embedding_threshold)
        reading.removed = _removed(reading.findings, norm, self.lexicon)
        return reading

    def matcher(self, encoder):
        """The embedding fallback's matcher (:class:`.embedding.EmbeddingMatcher`) for ``encoder``, made once per
        encoder."""
        matcher = self._matchers.get(id(encoder))
        if matcher is None:
            from .embedding import EmbeddingMatcher

            matcher = self._matchers[id(encoder)] = EmbeddingMatcher(encoder, self.lexicon, self._hpo_terms)
        return matcher

    def _derive(self, findings: list[ReadFinding]) -> list[ReadFinding]:
        """Findings a clinician reads from others across clauses: jaundice with pain denied elsewhere in the text
        ("jaundice for 4 weeks ... he denies any abdominal pain") is painless jaundice."""
        ids = {f.id: f for f in findings if f.status == PRESENT}
        if ("jaundice" in ids and "painless_jaundice" not in ids and "painless_jaundice" in self.lexicon
                and not any("pain" in f.id and f.kind == "symptom" for f in ids.values())
                and any("pain" in f.id and f.status == NEGATED for f in findings)):
            t = self.lexicon["painless_jaundice"]
            findings = findings + [replace(ids["jaundice"], id=t.id, label=t.label, kind=t.kind, generic=t.generic,
                                           side=None, value=None, source="derived", trigger=None)]
        # a named syndrome and its parts (the lexicon's ``implies`` and ``all_of``: Charcot's triad)
        # (a part or syndrome the text reads itself, in any status, keeps that status: "afebrile" stays denied)
        read_ids = {f.id for f in findings}
        for f in list(ids.values()):
            for other in self._implies.get(f.id, ()):
                if other not in read_ids and other in self.lexicon:
                    t = self.lexicon[other]
                    ids[other] = replace(f, id=t.id, label=t.label, kind=t.kind, generic=t.generic, side=t.side,
                                         value=None, source="derived", trigger=None)
                    findings = findings + [ids[other]]
                    read_ids.add(other)
        for t in self._all_of:
            if t.id not in read_ids and all(any(i in ids for i in group) for group in t.all_of):
                first = min((ids[i] for group in t.all_of for i in group if i in ids), key=lambda g: g.start)
                findings = findings + [replace(first, id=t.id, label=t.label, kind=t.kind, generic=t.generic,
                                               side=t.side, value=None, source="derived", trigger=None)]
        return findings

    def _twin(self, f: ReadFinding) -> ReadFinding:
        twin = _HISTORY_TWIN.get(f.id)
        if f.status != HISTORY or f.source == "lab" or twin not in self.lexicon:
            return f
        t = self.lexicon[twin]
        return replace(f, id=t.id, label=t.label, kind=t.kind, generic=t.generic)

    def _side_twins(self, f: ReadFinding, norm: str) -> list[ReadFinding]:
        """The sided finding a sideless one names in its own words ("radiating to the back of the right shoulder"
        is also the right shoulder's finding; the side must lie inside the span, not next to it: "right upper
        quadrant pain radiating to the shoulder" names no shoulder's side), and the sideless one a sided finding
        is ("radiating to R scapula" is a radiation to the shoulder too)."""
        if f.id in _SIDELESS:
            twin = _SIDELESS[f.id]
        elif f.id in _SIDED_TWIN:
            sides = {("left" if w.startswith("l") else "right") for w in _SIDE_WORDS.findall(norm[f.start:f.end])}
            twin = _SIDED_TWIN[f.id].get(sides.pop()) if len(sides) == 1 else None
        else:
            return []
        t = self.lexicon.get(twin)
        if t is None:
            return []
        return [replace(f, id=t.id, label=t.label, kind=t.kind, generic=t.generic, side=t.side or f.side)]

    def _make(self, finding, status, text, norm, start, end, source, trigger, value=None) -> ReadFinding:
        side = finding.side
        if side is None:
            sm = _SIDE_WORDS.findall(norm[max(0, start - 25):end + 5])
            sides = {("left" if w.startswith("l") else "right") for w in sm if w in ("left", "right") or
                     text[max(0, start - 25):end + 5].find(w.upper()) >= 0}
            side = sides.pop() if len(sides) == 1 else None
        return ReadFinding(finding.id, finding.label, finding.kind, status, text[start:end], start, end,
                           finding.generic, side, value, source, trigger)


_PLACE = (r"(?:(?:left|right|upper|lower|central|mid|bilateral|lower left|lower right|upper left|upper right) )?"
          r"(?:chest|back|flank|loin|epigastric|retrosternal|substernal|periumbilical|suprapubic|pelvic|groin|"
          r"shoulder|testicular|scrotal|abdominal|lumbar|midback|neck|hip|rib|upper quadrant|lower quadrant|"
          r"ruq|luq|rlq|llq|iliac fossa)")
_PLACE_RE = re.compile(r"(?<![\w-])" + _PLACE + r"(?![\w])")
_COORDINATION = re.compile(r"(?<![\w-])(" + _PLACE + r")((?:,| and| or| &| ?/)(?: and| or)? (?:[a-z]+ ){0,3}?" + _PLACE +
                           r" )(pain|tenderness|discomfort|ache|aching|cramps)(?![\w])")


def _coordinated(norm: str) -> list[tuple[str, int, int, int]]:
    """For each place but the last of a coordination ("chest, back and abdominal pain"): the text with the head
    noun put right after that place (same length), the place's start and end, and the coordination's end."""
    joins = []
    for m in _COORDINATION.finditer(norm):
        places = [(m.start(1), m.end(1))] + [
            (m.start(2) + p.start(), m.start(2) + p.end()) for p in _PLACE_RE.finditer(m.group(2))][:-1]
        for start, end in places:
            filler = (" " + m.group(3)).ljust(m.end() - end)
            joins.append((norm[:end] + filler + norm[m.end():], start, end, m.end()))
    return joins


def _inside_one_sentence(bounds, start: int, end: int) -> bool:
    for s, e, sentence in bounds:
        if s <= start < e:
            # the match may run over segment breaks of the same sentence (a pattern may hold a comma)
            last = [b for b in bounds if b[2] == sentence][-1]
            return end <= last[1]
    return False


def _sentences(ctx: Context) -> list[tuple[int, int]]:
    out: dict[int, list[int]] = {}
    for seg in ctx.segments:
        span = out.setdefault(seg.sentence, [seg.start, seg.end])
        span[1] = seg.end
    return [tuple(v) for v in out.values()]


_PLACES_OF_PAIN = frozenset({
    "epigastric_pain", "ruq_pain", "luq_pain", "rlq_pain", "llq_pain", "periumbilical_pain", "suprapubic_pain",
    "flank_pain", "chest_pain", "retrosternal_pain", "interscapular_pain", "pelvic_pain", "testicular_pain",
    "loin_to_groin_pain", "diffuse_abdominal_pain"})


#: Findings that contain another ("vomiting blood" is haematemesis, not also vomiting to be weighed twice): the
#: other is dropped where their spans overlap ("a tender pulsatile mass" is one pulsatile mass).
_SUBSUMES = {"haematemesis": ("vomiting",), "coffee_ground_vomiting": ("vomiting",), "haemoptysis": ("cough",),
             "obstipation": ("constipation",),
             # the costal margin as the landmark of a palpable organ is not pain there ("an enlarged organ
             # palpable below the left costal margin")
             "splenomegaly": ("luq_pain",), "hepatomegaly": ("ruq_pain",),
             "occult_blood": ("haematochezia",),
             "pulsatile_mass": ("palpable_mass", "hernia_bulge", "epigastric_pain"),
             "hypertension_history": ("hypertension",)}
#: Pains that a palpable organ's landmark only names; an organ felt tender is also tenderness in that quadrant.
_LANDMARK_PAIN = frozenset({"luq_pain", "ruq_pain"})
#: A finding read in the past that is another finding of the lexicon ("PMH: hypertension" is known hypertension,
#: not a raised blood pressure now).
_HISTORY_TWIN = {"hypertension": "hypertension_history"}
#: A sideless finding whose own words name a side, and the lexicon's finding for each side: pain referred to the
#: right shoulder or scapula is the biliary and hepatic finding, to the left shoulder tip Kehr's sign of blood
#: under the left diaphragm (spleen, ectopic pregnancy).
_SIDED_TWIN = {"pain_radiating_to_shoulder": {"right": "right_shoulder_pain", "left": "left_shoulder_pain"}}
_SIDELESS = {side: sideless for sideless, sides in _SIDED_TWIN.items() for side in sides.values()}


def _resolve(raw: list[ReadFinding]) -> list[ReadFinding]:
    """Drop generic findings overlapped by specific ones; one entry per id with its strongest status."""
    raw = [f for f in raw if not any(
        f.id in _SUBSUMES.get(g.id, ()) and g.status == f.status and g.start < f.end and f.start < g.end
        and not (f.id in _LANDMARK_PAIN and "tender" in g.text.lower())
        for g in raw)]
    # only generic *pain* findings give way ("right upper quadrant abdominal pain" is one place of pain);
    # a generic symptom inside a more specific one ("non-bilious vomiting") is still read
    specific = [f for f in raw if f.source != "lab" and f.status != NEGATED and f.id in _PLACES_OF_PAIN]
    kept = []
    for f in raw:
        if f.generic and f.id.endswith("_pain") and f.source != "lab" and any(
                g.start < f.end and f.start < g.end and g.id != f.id and g.status == f.status for g in specific):
            continue
        kept.append(f)
    best: dict[str, ReadFinding] = {}
    # at equal status a value read from a number wins over a wording ("blood sugar 40 mg/dL" keeps its value)
    for f in sorted(kept, key=lambda f: (_STATUS_RANK[f.status], f.value is None, f.source == "hpo", f.start)):
        if f.id not in best:
            best[f.id] = f
        elif best[f.id].side is None and f.side is not None and f.status == best[f.id].status:
            best[f.id] = f
    return sorted(best.values(), key=lambda f: (f.start, f.id))


#: Operations that leave part of the organ ("partial gastrectomy", "partial nephrectomy"): no removal.
_PARTIAL = re.compile(r"(?<![\w])(?:partial|subtotal|sub-total|sleeve|distal|proximal|wedge|segmental|hemi-?|"
                      r"part of (?:the |his |her |my )?|lobe of (?:the |his |her |my )?|heminephrectom\w*)")


def _removed(findings: list[ReadFinding], norm: str, lexicon) -> tuple[str, ...]:
    removed: list[str] = []
    for f in findings:
        finding = lexicon.get(f.id)
        if finding is None or not finding.removes or f.status not in (PRESENT, HISTORY):
            continue
        if _PARTIAL.search(norm[max(0, f.start - 20):f.end]):
            continue
        for key in finding.removes:
            if key in PAIRED_STRUCTURES:
                if f.side in ("left", "right"):
                    removed.append(PAIRED_STRUCTURES[key][f.side])
            else:
                removed.append(key)
    return tuple(dict.fromkeys(removed))


def _hpo_terms() -> dict:
    try:
        return json.loads(HPO_TERMS_FILE.read_text(encoding="utf-8")).get("terms", {})
    except (OSError, ValueError):
        return {}


_LOAD_LOCK = threading.Lock()


def load_reader(data_dir: str | None = None) -> Reader:
    """The reader of the shipped (or given) catalogue's lexicon, built once per process (thread-safe)."""
    with _LOAD_LOCK:
        return _load_reader(data_dir)


@functools.lru_cache(maxsize=2)
def _load_reader(data_dir: str | None = None) -> Reader:
    from .catalogue import load_catalogue

    root = Path(data_dir) if data_dir else DATA_DIR
    catalogue = load_catalogue(data_dir)
    return Reader(catalogue.findings, _hpo_terms(), load_lab_reader(str(root / "labs.yaml")))


def read(text: str, age: float | None = None, sex: str | None = None) -> Reading:
    """Read one text with the shipped lexicon (see :class:`Reader`)."""
    return load_reader().read(text, age=age, sex=sex)
