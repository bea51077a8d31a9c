"""How a clinical text is cut into sentences and clauses, and what context governs each word.

The clinical reader (:mod:`.reader`) matches findings inside clauses; this module decides, for a matched
span, whether the text asserts it (``present``), denies it (``negated``), doubts it (``uncertain``), places it
in the patient's past (``history``) or in a relative (``family``).

The rules follow the NegEx family of algorithms (Chapman WW, Bridewell W, Hanbury P, Cooper GF, Buchanan BG.
A simple algorithm for identifying negated findings and diseases in discharge summaries. J Biomed Inform,
2001; Harkema H, Dowling JN, Thornblade T, Chapman WW. ConText: an algorithm for determining negation,
experiencer, and temporal status from clinical reports. J Biomed Inform, 2009), written for this project:

* A text is cut into sentences at ``. ! ? ;`` and line breaks (not inside numbers such as ``38.4``, not after
  ``Dr.``, and not at a leading query mark such as ``?cholecystitis``), and each sentence into segments at
  commas, colons, brackets and dashes.
* A *trigger* before a span governs it from the trigger to the end of its segment, unless a *terminator*
  ("but", "however", "apart from", "presents with", "and has"...) comes first. A negation also runs on
  through the items of a list closed by "or"/"nor"/"and" ("no fever, rigors or night sweats") when its own
  clause holds no verb; after a verb of denial ("denies", "did not report", "no history of") the list needs no
  closer and runs to the first item with a verb or a turn. A history or family scope also ends where the text
  turns to the presentation ("has", "presenting", "this morning"...: "a history of gallstones has sudden chest
  pain"); "PMH:" and "Family history:" govern their list to the end of the sentence. A recent diagnosis
  ("recently diagnosed with", "diagnosed with ... 4 weeks earlier"), "a 10-year history of" and "a history of
  pain ... for 4 days" are the presentation.
* A one-word placeholder of a masked text ("[organ]") is a word, not a break.
* Pseudo-negations deny nothing after them ("not only ... but", "no improvement in", "no relief of"); only a
  finding that begins with their own word is denied ("no relief from antacids").
* A query mark right after a span doubts it ("jaundice?"); "unlikely" after a span denies it.
* ``non-`` governs only the word it is joined to ("non-tender abdomen": tenderness denied; "non-bilious
  vomiting": vomiting asserted).
* A trigger after a span ("Murphy's sign negative", "pancreatitis ruled out", "cholecystectomy in 2015")
  governs the span it follows within three words, in its segment.
* Words inside the matched span never govern it ("no gallbladder", "absent pulses" are findings).
* Precedence: family, then negated, uncertain, history, present (in "no family history of cancer" the
  cancer is not the patient's).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

PRESENT, NEGATED, UNCERTAIN, HISTORY, FAMILY = "present", "negated", "uncertain", "history", "family"
STATUSES = (PRESENT, NEGATED, UNCERTAIN, HISTORY, FAMILY)

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                              "\u2014": "-", "\u00a0": " ", "\u2212": "-", "\u00d7": "x",
                              "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u00b4": "'",
                              "\u00b3": "3", "\u2079": "9", "\u00b2": "2"})


def normalise(text: str) -> str:
    """Lower case with straight quotes and plain dashes; same length as ``text`` so that spans map back."""
    out = text.translate(_APOSTROPHES).lower()
    if len(out) != len(text):  # a few characters change length when lowered (e.g. "İ"); keep positions
        out = "".join((c.translate(_APOSTROPHES).lower() or " ")[0] for c in text)
    return out


# ------------------------------------------------------------------------------------------ sentences
_NO_SPLIT_BEFORE = re.compile(r"(?:\b(?:dr|mr|mrs|ms|st|vs|e\.g|i\.e|approx|etc|no|fig|pt|yrs?|hrs?|mins?)|\b[a-z])$")
_SENTENCE_END = re.compile(r"(?<=\w)[.!?]+(?=\s|$)|(?<=[)\"'%\]])[.!?]+(?=\s|$)|;|\n+|(?<=\s)-{2,}(?=\s)")
_SEGMENT_BREAK = re.compile(r",|:|\(|\)|\s-\s|\s/\s|\[|\]")


@dataclass(frozen=True)
class Segment:
    """A piece of a sentence between commas, colons, brackets or dashes: [start, end) in the text."""

    start: int
    end: int
    sentence: int


def sentences(norm: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence of a normalised text."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(norm):
        if m.group(0).startswith(".") and _NO_SPLIT_BEFORE.search(norm[max(0, m.start() - 8):m.start()]):
            continue
        if m.start() > start:
            out.append((start, m.start()))
        start = m.end()
    if start < len(norm):
        out.append((start, len(norm)))
    return [(s, e) for s, e in out if norm[s:e].strip()]


_PLACEHOLDER = re.compile(r"\[[a-z][a-z ]{0,20}\]")


def _is_placeholder(norm: str, pos: int) -> bool:
    """Whether the bracket at ``pos`` opens or closes a one-word placeholder ("[organ]", "[diagnosis]")."""
    if norm[pos] == "[":
        return _PLACEHOLDER.match(norm, pos) is not None
    start = norm.rfind("[", max(0, pos - 22), pos)
    return start >= 0 and _PLACEHOLDER.match(norm, start) is not None and norm.find("]", start) == pos


def segments(norm: str) -> list[Segment]:
    """Segments of every sentence, in text order."""
    out = []
    for index, (s, e) in enumerate(sentences(norm)):
        pos = s
        for m in _SEGMENT_BREAK.finditer(norm, s, e):
            if m.group(0) in "[]" and _is_placeholder(norm, m.start()):
                continue  # "[organ]" stands for a word left out, not for a break in the clause
            if m.start() > pos and norm[pos:m.start()].strip():
                out.append(Segment(pos, m.start(), index))
            pos = m.end()
        if pos < e and norm[pos:e].strip():
            out.append(Segment(pos, e, index))
    return out


from .context_words import (
    _NEG_PRE, _NEG_NON, _NEG_POST, _UNC_PRE, _UNC_QMARK, _HIST_PRE, _HIST_POST, _FAMILY_PRE,
    _TERMINATORS, _RECENT_SPAN, _RECENT_BEFORE, _RECENT_AFTER, _FUTURE_POST, _HIST_TERMINATORS, _LIST_HISTORY,
    _NOW_WORDS, _DENIED_HISTORY, _PRESENTED_WITH, _LIST_VERB, _PSEUDO_NEG, _LIST_CLOSER, _LIST_CLOSER_START,
    _VERBISH, _VERBISH_STRICT, _LIST_HEAD, _DENIAL, _CLAUSE_VERB, _NOT_A_NOUN, _OFF_END,
)


def _recent_diagnosis(norm: str, trigger: re.Match) -> bool:
    if "diagnos" not in trigger.group(0):
        return False
    return bool(_RECENT_BEFORE.search(norm[max(0, trigger.start() - 25):trigger.start()]) or
                _RECENT_AFTER.match(norm[trigger.end():trigger.end() + 80].lstrip()))


def _negation_verb_end(norm: str, start: int, end: int) -> int:
    """End of a negation's scope at its clause's verb, when a word that can be the denied thing precedes it.
    "No one (else) has had ..." denies the subject: what nobody has stays denied."""
    if re.match(r"\s+one\b", norm[start:start + 6]):
        return end
    for vm in _CLAUSE_VERB.finditer(norm, start, end):
        words = re.findall(r"[a-z][a-z'-]*", norm[start:vm.start()])
        if any(w not in _NOT_A_NOUN for w in words):
            return vm.start()
        return end
    return end


_CONTRAST = re.compile(r"(?<![\w/])(?:but|however|though|although|yet|whereas|while)(?![\w/])")
_JOINED = re.compile(r"(?<![\w/])(?:and|or)(?![\w/])")
_OBJECT_AFTER = re.compile(r"\s+(?!by\b|on\b|at\b|in\b|when\b|today\b|now\b|throughout\b)[a-z]")


def _post_denial_applies(after: str, m: re.Match) -> bool:
    """Whether a denial a few words after a span ("Murphy's sign was clearly negative") denies it: not across a
    contrast ("loss of appetite but denied polyuria"), and a verb of denial with its own object after it is the
    denial of that object ("had jaundice and denied itching": the jaundice is present)."""
    between = after[:m.start(1)]
    if _CONTRAST.search(between):
        return False
    if m.group(1).endswith("denied"):
        if _JOINED.search(between) or _OBJECT_AFTER.match(after, m.end(1)):
            return False
    return True


@dataclass(frozen=True)
class Scope:
    """A governed stretch of text [start, end) with the status it gives and the trigger that opened it."""

    start: int
    end: int
    status: str
    trigger: str


def _forward_end(norm: str, start: int, seg_end: int) -> int:
    """End of a forward trigger's scope: the first terminator after ``start`` or the segment end."""
    m = _TERMINATORS.search(norm, start, seg_end)
    return m.start() if m else seg_end


#: History triggers that are a time in the past ("ten years ago", "in 2015", "as a child").
_TIME_OPENING = re.compile(r".*(?:years?|yrs?|decades?) (?:ago|before|earlier|previously|prior)|in (?:19|20)\d\d|"
                           r"as a (?:child|teenager|baby)|in childhood")
_AMOUNT_OVER_TIME = re.compile(r"\d\s*(?:kg|kgs|kilos?|lbs?|pounds|stones?)\b|"
                               r"\b(?:lost|losing|loss|down|gained|gain)\b")


class Context:
    """The governed stretches of one normalised text (see the module docstring)."""

    def __init__(self, norm: str):
        self.norm = norm
        self.segments = segments(norm)
        self.scopes: list[Scope] = []
        self._post: list[tuple[int, int, str, str]] = []  # (segment start, trigger start, status, trigger)
        for i, seg in enumerate(self.segments):
            self._scan_segment(i, seg)

    def _extend_list(self, i: int, end: int, trigger: str = "", trigger_end: int | None = None) -> int:
        """A negation reaching the end of segment ``i`` runs on through a list closed by "or"/"nor"/"and"; after a
        verb of denial ("denies", "did not report", "no history of") through the list's items to the first that
        holds a verb or a turn."""
        seg = self.segments[i]
        if end < seg.end or not _LIST_HEAD.fullmatch(trigger):
            return end
        start = seg.start if trigger_end is None else trigger_end - len(trigger)
        dm = _DENIAL.match(self.norm, start)
        denial = dm is not None
        if dm is not None and trigger_end is not None:
            trigger_end = max(trigger_end, dm.end())
        own = self.norm[seg.start if trigger_end is None else trigger_end:seg.end]
        if (_VERBISH_STRICT if denial else _VERBISH).search(own):
            return end  # the trigger's own clause is not a list item ("does not change with movement, and ...")
        j = i + 1
        reached = end
        while j < len(self.segments) and self.segments[j].sentence == seg.sentence:
            text = self.norm[self.segments[j].start:self.segments[j].end]
            # items joined by a slash are one list ("absence of jaundice / ascites")
            starts_closed = _LIST_CLOSER_START.match(text) is not None
            words = len(text.split())
            if starts_closed:
                # the closing item ends at its first verb ("and vaginal discharge and has no other complaints")
                vm = (_VERBISH_STRICT if denial else _VERBISH).search(text, _LIST_CLOSER_START.match(text).end())
                if vm is not None and len(text[:vm.start()].split()) <= 8:
                    return _forward_end(self.norm, self.segments[j].start, self.segments[j].start + vm.start())
            if denial:
                if _VERBISH_STRICT.search(text) or words > (10 if starts_closed else 6):
                    break
            elif words > (8 if starts_closed else 5) or _VERBISH.search(text):
                break
            if _LIST_CLOSER.search(text):
                return _forward_end(self.norm, self.segments[j].start, self.segments[j].end)
            if denial:
                reached = self.segments[j].end
            j += 1
        return reached

    def _extend_history_list(self, i: int, end: int) -> int:
        """A past or family history reaching the end of segment ``i`` runs on through the items of its list
        ("a history of diabetes, hypertension and asthma presented with ..."): to the first item that holds a verb,
        a turn to the presentation or a recent time ("fever and vomiting for 2 days"), or past a closing
        "and"/"or" item."""
        seg = self.segments[i]
        j = i + 1
        reached = end
        while j < len(self.segments) and self.segments[j].sentence == seg.sentence:
            nxt = self.segments[j]
            text = self.norm[nxt.start:nxt.end]
            if self.norm[reached:nxt.start].strip() not in (",", ""):
                break  # a colon, bracket or dash opens something else
            if _RECENT_SPAN.search(text) or _NOW_WORDS.search(text):
                return reached  # "a history of gallstones, fever and vomiting for 2 days": the presentation
            stop = min((x.start() for x in (_TERMINATORS.search(text), _HIST_TERMINATORS.search(text),
                                             _VERBISH_STRICT.search(text), _LIST_VERB.search(text)) if x),
                       default=None)
            closed = _LIST_CLOSER.search(text) is not None
            if stop is not None:
                # the last item ends at its verb ("... and asthma who presented with"); an item that begins with
                # a verb is not an item
                short = len(text[:stop].split()) <= (8 if closed else 6)
                return nxt.start + stop if stop > 0 and short and _LIST_CLOSER.search(text, 0, stop) else reached
            if len(text.split()) > (8 if closed else 6):
                return reached
            reached = nxt.end
            if closed:
                return reached
            j += 1
        return reached

    def _scan_segment(self, i: int, seg: Segment) -> None:
        norm = self.norm
        for regex, status in ((_NEG_PRE, NEGATED), (_FAMILY_PRE, FAMILY), (_UNC_PRE, UNCERTAIN),
                              (_HIST_PRE, HISTORY)):
            for m in regex.finditer(norm, seg.start, seg.end):
                if status == NEGATED and re.match(r"\s+(?:stop|help|wait|keep from)\b", norm[m.end():m.end() + 12]):
                    continue  # "can't stop being sick" asserts the vomiting
                pm = _PSEUDO_NEG.match(norm, m.end()) if status == NEGATED else None
                if pm:
                    # "no improvement in the pain" asserts the pain; only a finding that begins with the word
                    # itself is denied ("no relief from antacids")
                    self.scopes.append(Scope(pm.start(1), pm.end(1), NEGATED, m.group(0)))
                    continue
                if status == NEGATED and m.group(0) == "resolution of" and re.search(
                        r"(?:no|not|without|little|poor) $", norm[max(0, m.start() - 8):m.start()]):
                    continue
                if status in (HISTORY, FAMILY) and re.match(r"\s*:", norm[m.end():m.end() + 3]):
                    # "PMH: gallstones, hypertension." governs its whole list, to the end of the sentence
                    sent_end = max(sg.end for sg in self.segments if sg.sentence == seg.sentence)
                    end = _forward_end(norm, m.end(), sent_end)
                    hm = _HIST_TERMINATORS.search(norm, m.end(), end)
                    self.scopes.append(Scope(m.end(), hm.start() if hm else end, status, m.group(0)))
                    continue
                if status == HISTORY and _TIME_OPENING.fullmatch(m.group(0)) and not norm[seg.start:m.start()].strip() \
                        and not norm[m.end():seg.end].strip(" ,"):
                    # "Ten years ago, jaundice after a viral illness. Now ...": a time that opens its sentence on
                    # its own governs the sentence, to a turn to the presentation
                    sent_end = max(sg.end for sg in self.segments if sg.sentence == seg.sentence)
                    end = _forward_end(norm, m.end(), sent_end)
                    stops = [x.start() for x in (_HIST_TERMINATORS.search(norm, m.end(), end),
                                                 _NOW_WORDS.search(norm, m.end(), end),
                                                 _RECENT_SPAN.search(norm, m.end(), end)) if x]
                    self.scopes.append(Scope(m.end(), min(stops, default=end), status, m.group(0)))
                    continue
                if status == HISTORY and re.search(r"(?:day|week|month|hour|hr|wk|short|brief|year|yr|decade)s?'?[- ]$",
                                                   norm[max(0, m.start() - 8):m.start()]):
                    # "a 3-day history of diarrhoea", "several days' history" are the presentation; "a 10-year
                    # history of diabetes" is a disease the patient has now
                    continue
                if status == HISTORY and m.group(0) in ("history of", "hx of", "h/o") and _RECENT_SPAN.search(
                        norm, m.end(), min(seg.end, m.end() + 80)):
                    continue  # "history of pain in the lower back for 4 days" is the presentation
                if status == HISTORY and m.group(0) in ("history of", "hx of", "h/o") and _PRESENTED_WITH.search(
                        norm, max(0, m.start() - 60), m.start()):
                    continue  # "presented with a history of abdominal pain": the complaint that brought them
                if status == HISTORY and _recent_diagnosis(norm, m):
                    continue  # "recently diagnosed with diabetes", "diagnosed ... 4 weeks earlier": a new disease
                end = _forward_end(norm, m.end(), seg.end)
                if status in (HISTORY, FAMILY):
                    hm = _HIST_TERMINATORS.search(norm, m.end(), end)
                    end = hm.start() if hm else end
                    if hm is None and end == seg.end and _LIST_HISTORY.fullmatch(m.group(0)):
                        end = self._extend_history_list(i, end)
                        if _DENIED_HISTORY.search(norm, max(0, m.start() - 30), m.start()):
                            # "denies a history of alcohol abuse, drug use and smoking": the whole list is denied
                            self.scopes.append(Scope(m.end(), end, NEGATED, m.group(0)))
                if status == NEGATED and m.group(0) == "off":
                    # "off" denies the thing it is off, not what the clause adds ("off her food and vomiting",
                    # "off warfarin with black stools")
                    am = _OFF_END.search(norm, m.end(), end)
                    end = am.start() if am else end
                if status == NEGATED:
                    end = _negation_verb_end(norm, m.end(), end)
                    end = self._extend_list(i, end, m.group(0), m.end())
                self.scopes.append(Scope(m.end(), end, status, m.group(0)))
        for m in _UNC_QMARK.finditer(norm, seg.start, seg.end):
            self.scopes.append(Scope(m.end(), _forward_end(norm, m.end(), seg.end), UNCERTAIN, "?"))
        for m in _NEG_NON.finditer(norm, seg.start, seg.end):
            word = re.match(r"[a-z']+", norm[m.end():seg.end])
            if word:
                self.scopes.append(Scope(m.end(), m.end() + word.end(), NEGATED, m.group(0)))

    def status(self, start: int, end: int) -> tuple[str, str | None]:
        """Status of the span [start, end) and the trigger that decided it (``None`` when present)."""
        found: dict[str, str] = {}
        for sc in self.scopes:
            # the trigger must begin before the span (words inside the span never govern it); a span may begin
            # inside a trigger's last words ("haven't actually been" / "been sick")
            if sc.start - len(sc.trigger) < start < sc.end:
                found.setdefault(sc.status, sc.trigger)
        seg = self._segment_of(start)
        if seg is not None:
            after = self.norm[end:seg.end]
            m = _NEG_POST.match(after.lstrip(" :-=")) if after.strip() else None
            if m is None and after.strip():
                # allow up to three words between the span and the trigger ("murphy's sign was clearly negative")
                m2 = re.match(r"\W*(?:[\w']+\W+){0,3}?((?:is |was |were |are |has been |remains? )?(?:negative|absent|"
                              r"not (?:present|seen|elicited|found|detected|palpable|felt)|ruled out|excluded|"
                              r"denied|(?:thought |felt |considered )?unlikely))\b",
                              after)
                if m2 and _post_denial_applies(after, m2):
                    found.setdefault(NEGATED, m2.group(1))
            elif m is not None:
                found.setdefault(NEGATED, m.group(0))
            if _HIST_POST.match(after):
                found.setdefault(HISTORY, "years ago")
            fm = _FUTURE_POST.match(after)
            over_time = fm is not None and fm.group(0).lstrip(" ,;:").startswith("in ") and \
                _AMOUNT_OVER_TIME.search(self.norm[start:end])
            if fm and not over_time:
                # "weight down 6 kg in three months" is an amount over a time, not a date to come
                found.setdefault(UNCERTAIN, "planned")
        if re.match(r"[ \t]{0,2}\?", self.norm[end:end + 3]) and not re.match(r"[ \t]{0,2}\?\s*[a-z]",
                                                                                 self.norm[end:end + 6]):
            found.setdefault(UNCERTAIN, "?")
        for status in (FAMILY, NEGATED, UNCERTAIN, HISTORY):
            if status in found:
                return status, found[status]
        return PRESENT, None

    def _segment_of(self, pos: int) -> Segment | None:
        for seg in self.segments:
            if seg.start <= pos < seg.end:
                return seg
        return None

    def sentence_span(self, pos: int) -> tuple[int, int]:
        """[start, end) of the sentence holding ``pos``."""
        seg = self._segment_of(pos)
        if seg is None:
            return pos, pos
        same = [s for s in self.segments if s.sentence == seg.sentence]
        return same[0].start, same[-1].end
