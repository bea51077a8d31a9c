"""Laboratory values and vital signs read from a clinical text (``resources/differential/labs.yaml``).

Two readings:

* **numbers**: an analyte's name followed by a value and an optional unit ("bilirubin 68 umol/L",
  "Hb 7.9", "lipase 1450 U/L", "T 38.4", "BP 84/50", "HR 118", "sats 88%", "ALT 12 x ULN"), a temperature or a
  blood pressure by its unit alone ("38.9 C", "84/50 mmHg"). The value is converted to the analyte's canonical
  unit (``units``: factor, or the Fahrenheit conversion; a value written without a unit is placed by
  ``unitless``), checked against ``plausible`` and compared with ``rules``: each rule that holds yields its
  findings as present; a rule on the normal side yields them as *negated* (a normal lipase argues against
  pancreatitis).
* **words**: an analyte with a qualitative word before or after it ("raised lipase", "ALP and GGT elevated",
  "positive hCG", "urine metanephrines elevated", "normal LFTs"). Raised / low / positive words give the
  ``qualitative`` findings; normal words give the raised and positive ones as negated.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

LABS_FILE = Path(__file__).resolve().parent.parent / "resources" / "differential" / "labs.yaml"

_NUMBER = r"\s*(\d{1,6}(?:[.,]\d{1,3})?)"
# a value reached by a change ("has fallen from 12 to 8.6", "dropping to 7")
_MOVED = (r"(?:(?:has |had |have )?(?:been )?)(?:rose|rising|risen|increased|increasing|went up|climbed|fell|fallen|"
          r"dropped|dropping|falling|decreased|decreasing|declined|declining|changed|went down|came down|down)")
_CONNECT = (r"(?:\s*(?:" + _MOVED + r" from [\d.]+ (?:[a-zµ/]+ )?to|" + _MOVED + r" to|"
            r"level|levels|count|conc(?:entration)?|value|of|was|is|were|are|:|=|at|up to|peaked at|"
            r"reached|measured|measuring|about|approximately|approx\.?|around|~|>|>=|≥|"
            r"greater than|in the|in the (?:high|low|mid)|"
            r"over|more than|elevated at|raised at|high at|low at|elevated to|raised to|of about|only|just|now|"
            r"on admission|initially|-|,|\(\s*[a-z0-9][a-z0-9 -]{0,8}\)|\((?=\s*\d))\s*){0,4}")
_UNIT = (r"\s*(x\s*10\s*\^?\s*\(?\s*(?:9|3|12)\s*\)?\s*/\s*(?:[lu]l?|[µμ]l)|10\s*\^\s*(?:9|3)\s*/\s*l|"
         r"(?:[°º]|deg(?:rees?)?)?\s*(?:fahrenheit|celsius|centigrade)\b|"
         r"[°º]\s*[cf]\b|deg(?:rees?)?\s*[cf]?\b|"
         r"(?:[a-zµμ%/]+(?:\s*/\s*[a-z0-9]+)?))?")
_ULN = re.compile(r"^\s*(?:x|times|-?fold)\s*(?:the\s*)?(?:uln|upper limit(?: of normal)?|upper normal limit|"
                  r"normal|upper limit of the normal range|upper reference limit)\b")
#: Multiples written in words ("lipase three times the upper limit").
_NUMBER_WORDS = {"two": 2, "twice": 2, "three": 3, "thrice": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "twelve": 12, "fifteen": 15, "twenty": 20, "fifty": 50,
                 "a hundred": 100, "one hundred": 100}
_ULN_BEFORE = re.compile(r"(?:>|over|more than|greater than|above|of|about|around|nearly|almost|at least)?\s*"
                         r"(\d+(?:\.\d+)?|" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")"
                         r"(?:\s*(?:x|times|-?fold)|(?<=twice)|(?<=thrice))\s*"
                         r"(?:the\s*)?(?:uln|upper limit(?: of normal)?(?: of the normal range)?|upper normal limit|"
                         r"normal|upper reference limit)\b")


def _multiple(text: str) -> float:
    """The number of a multiple of the upper limit, written in digits or words."""
    return float(_NUMBER_WORDS.get(text, None) or text)
_BP = re.compile(r"(?<![\d/])(\d{2,3})s?\s*/\s*(\d{2,3})s?(?![\d/])(\s*mm\s*hg)?")
_TEMP_UNIT = re.compile(r"(?<![\d.])(\d{2,3}(?:\.\d)?)\s*(?:°|º|deg(?:rees?)?)?\s*(c|f)\b(?!\s*/)")


@dataclass(frozen=True)
class LabHit:
    """One finding yielded by a value or a wording.

    Attributes:
        finding: the finding id.
        status: ``"present"`` or ``"negated"`` (a value on the normal side, "normal lipase").
        start, end: the span in the text (name through value).
        analyte: the analyte id; value: the value in the canonical unit (``None`` for wordings).
        unit: the canonical unit; qualitative: True for wordings (their context is decided by the reader).
    """

    finding: str
    status: str
    start: int
    end: int
    analyte: str
    value: float | None = None
    unit: str | None = None
    qualitative: bool = False


def _unit_key(text: str) -> str:
    key = re.sub(r"\s+", "", text.lower()).replace("μ", "u").replace("µ", "u").replace("º", "°")
    key = key.replace("fahrenheit", "f").replace("celsius", "c").replace("centigrade", "c")
    key = re.sub(r"^(?:degrees?|deg)(?=[cf]$)", "°", key)
    return key.replace("mcmol", "umol").replace("micromol", "umol")


@dataclass
class Analyte:
    id: str
    label: str
    names: re.Pattern
    unit: str
    units: dict
    unitless: list
    plausible: tuple[float, float]
    normal: object
    rules: list
    diastolic_rules: list
    qualitative: dict
    pair: bool
    urine_only: bool
    source: str
    #: a name that is only this analyte after another word ("direct 4.1" after "bilirubin"): that word, as a regex
    needs_before: re.Pattern | None = None
    #: a slip of the written unit: [low, high, unit]; a number in [low, high] whose written unit is unknown or gives
    #: an implausible value is read in ``unit`` ("haemoglobin 6.8 mg/dl" is 6.8 g/dL)
    slip: tuple | None = None

    def convert(self, value: float, unit_text: str | None) -> tuple[float | None, bool]:
        """Value in the canonical unit, and whether the unit was recognised."""
        if unit_text:
            key = _unit_key(unit_text)
            for name, factor in self.units.items():
                if _unit_key(str(name)) == key:
                    return _apply(value, factor), True
        if self.unitless:
            for bound, unit in self.unitless:
                if bound is None or value < float(bound):
                    factor = self.units.get(unit, 1)
                    return _apply(value, factor), False
        return value, False

    def limits(self, sex: str | None) -> tuple[float | None, float | None]:
        normal = self.normal
        if isinstance(normal, dict):
            normal = normal.get(sex) or normal.get(None) or normal.get("null") or next(iter(normal.values()))
        low, high = (normal or [None, None])
        return (None if low is None else float(low)), (None if high is None else float(high))


def _apply(value: float, factor) -> float:
    if factor == "f_to_c":
        return (value - 32.0) * 5.0 / 9.0
    return value * float(factor)


def _rule_limit(rule: dict, analyte: Analyte, sex: str | None, key: str) -> float | None:
    limit = rule.get(key)
    low, high = analyte.limits(sex)
    if limit == "lln":
        limit = low
    elif limit == "uln":
        limit = high
    if limit is None:
        return None
    return float(limit) * float(rule.get("x", 1))


def evaluate_rules(analyte: Analyte, value: float, sex: str | None, rules=None) -> list[tuple[str, str]]:
    """(finding, status) pairs of a value: present for rules that hold, negated for those on the normal side."""
    out: dict[str, str] = {}
    low, high = analyte.limits(sex)
    for rule in (analyte.rules if rules is None else rules):
        if "above" in rule:
            limit = _rule_limit(rule, analyte, sex, "above")
            holds = value >= limit if rule.get("inclusive") else value > limit
            # a low value says nothing about a "raised" finding's absence worth showing twice
            informative = low is None or value >= low
        else:
            limit = _rule_limit(rule, analyte, sex, "below")
            holds = value < limit
            informative = high is None or value <= high
        for fid in rule.get("findings", []):
            if holds:
                out[fid] = "present"
            elif informative and not rule.get("present_only"):
                out.setdefault(fid, "negated")
    return list(out.items())


class LabReader:
    """The analytes of ``labs.yaml``, compiled."""

    def __init__(self, data: dict):
        self.sources: dict = dict(data.get("sources") or {})
        self.analytes: list[Analyte] = []
        # compiled on first need, only for texts holding one of a pattern's literal needles (.gates)
        from .gates import gated_patterns

        raws = list(data["analytes"])
        patterns = [r"(?<![\w/])(?:" + "|".join(raw["names"]) + r")(?![\w/])" for raw in raws]
        gated = gated_patterns(patterns + ["|".join(f"(?:{p})" for p in patterns)], name="labs")
        for raw, names in zip(raws, gated):
            self.analytes.append(Analyte(
                id=raw["id"], label=raw["label"], names=names, unit=str(raw.get("unit", "")),
                units={str(k): v for k, v in (raw.get("units") or {}).items()},
                unitless=list(raw.get("unitless") or []), plausible=tuple(raw.get("plausible", [0, 1e9])),
                normal=_normal_of(raw.get("normal")), rules=list(raw.get("rules") or []),
                diastolic_rules=list(raw.get("diastolic_rules") or []),
                qualitative=dict(raw.get("qualitative") or {}), pair=bool(raw.get("pair")),
                urine_only=bool(raw.get("urine_only")), source=str(raw.get("source", "")),
                needs_before=re.compile(raw["needs_before"]) if raw.get("needs_before") else None,
                slip=tuple(raw["slip"]) if raw.get("slip") else None))
        words = data.get("qualitative_words") or {}
        self.high_words = _alternation(words.get("high", []))
        self.low_words = _alternation(words.get("low", []))
        self.positive_words = _alternation(words.get("positive", []))
        self.normal_words = _alternation([
            r"normal", r"within normal limits", r"wnl", r"unremarkable", r"not (?:raised|elevated|high|increased)",
            r"negative", r"neg", r"-ve", r"unrevealing", r"nad", r"in range",
            r"within (?:the )?(?:normal |reference )?range"])
        self.by_id = {a.id: a for a in self.analytes}
        self._name_any = gated[-1]

    # -------------------------------------------------------------------------------------- numbers
    def read_values(self, norm: str, sex: str | None = None) -> list[LabHit]:
        """Findings from numbers in a normalised text."""
        hits: list[LabHit] = []
        taken: list[tuple[int, int]] = []
        candidates = []
        for analyte in self.analytes:
            if analyte.urine_only or analyte.unit in ("flag", "xuln", "ratio") and not analyte.rules:
                continue
            for m in analyte.names.finditer(norm):
                if analyte.needs_before is not None and not analyte.needs_before.search(m.group(0)) and not \
                        analyte.needs_before.search(norm[max(0, m.start() - 50):m.start()]):
                    continue
                after = norm[m.end():m.end() + 60]
                hits_here = self._value_after(analyte, norm, m, after, sex)
                if hits_here:
                    candidates.append((m.start(), m.end(), hits_here))
        # of names that overlap, the longest wins ("conjugated bilirubin 31" is not also "bilirubin 31")
        for start, name_end, hits_here in sorted(candidates, key=lambda c: (-(c[1] - c[0]), c[0])):
            span = (start, max(h.end for h in hits_here))
            if any(s < span[1] and span[0] < e for s, e in taken):
                continue
            taken.append(span)
            hits.extend(hits_here)
        hits = _bilirubin_pattern(hits)
        hits.sort(key=lambda h: h.start)
        # a blood pressure or temperature written by its unit alone
        bp = self.by_id.get("blood_pressure")
        for m in _BP.finditer(norm):
            if any(s <= m.start() < e for s, e in taken):
                continue
            before = norm[max(0, m.start() - 25):m.start()]
            if m.group(3) or re.search(r"(?:bp|blood pressure|pressure)\W*(?:\w+\W+){0,2}$", before):
                if bp is not None:
                    hits.extend(self._bp_hits(bp, m, m.start(), sex))
                    taken.append((m.start(), m.end()))
        temp = self.by_id.get("temperature")
        for m in _TEMP_UNIT.finditer(norm):
            if any(s <= m.start() < e for s, e in taken) or temp is None:
                continue
            if m.group(2) == "f" and "." not in m.group(1) and float(m.group(1)) < 95 and \
                    not re.search(r"°|º|deg", m.group(0)):
                continue  # "89F" is an 89-year-old woman; a Fahrenheit temperature below 95 carries a degree sign
            value, _ = temp.convert(float(m.group(1)), m.group(2))
            if temp.plausible[0] <= value <= temp.plausible[1]:
                for fid, status in evaluate_rules(temp, value, sex):
                    hits.append(LabHit(fid, status, m.start(), m.end(), temp.id, value, temp.unit))
                taken.append((m.start(), m.end()))
        return hits

    def _value_after(self, analyte: Analyte, norm: str, m: re.Match, after: str, sex) -> list[LabHit]:
        if analyte.pair:
            pm = re.match(_CONNECT + r"(\d{2,3})s?\s*/\s*(\d{2,3})s?(\s*mm\s*hg)?", after)
            if not pm:
                return []
            bp = _BP.match(norm, m.end() + pm.start(1))
            return self._bp_hits(analyte, bp, m.start(), sex) if bp else []
        nm = re.match(_CONNECT + _NUMBER + _UNIT, after)
        if not nm:
            uln = _ULN_BEFORE.match(after.lstrip(" :=-"))
            if uln and analyte.limits(sex)[1] is not None:
                value = _multiple(uln.group(1)) * analyte.limits(sex)[1] * 1.0001
                end = m.end() + len(after) - len(after.lstrip(" :=-")) + uln.end()
                return [LabHit(f, s, m.start(), end, analyte.id, value, analyte.unit)
                        for f, s in evaluate_rules(analyte, value, sex)]
            return []
        raw = nm.group(1).replace(",", ".")
        if re.fullmatch(r"\d{1,3},\d{3}", nm.group(1)):
            raw = nm.group(1).replace(",", "")
        value = float(raw)
        unit_text = (nm.group(2) or "").strip()
        end = m.end() + nm.end()
        rest = after[nm.end():]
        uln = _ULN.match(rest) or (_ULN.match(unit_text + rest) if unit_text in ("x", "times") else None)
        if uln and analyte.limits(sex)[1] is not None:
            value = value * analyte.limits(sex)[1] * 1.0001
            return [LabHit(f, s, m.start(), end + uln.end(), analyte.id, value, analyte.unit)
                    for f, s in evaluate_rules(analyte, value, sex)]
        if re.match(r"^\s*(?:x|times|-?fold)\b", rest) or unit_text in ("x", "times"):
            return []
        if not unit_text and re.match(r"^\+", rest):
            return []  # "glucose 3+" is a dipstick grade, not a concentration
        converted, known = analyte.convert(value, unit_text)
        if not known:
            end = m.end() + nm.start(2) if nm.group(2) else end
        if analyte.slip and unit_text and analyte.slip[0] <= value <= analyte.slip[1] and (
                not known or converted is None or not analyte.plausible[0] <= converted <= analyte.plausible[1]):
            converted = _apply(value, analyte.units.get(analyte.slip[2], 1))  # the author's unit is a slip
        if converted is None or not analyte.plausible[0] <= converted <= analyte.plausible[1]:
            return []
        if _LOWER_BOUND.search(after, 0, nm.start(1)):
            converted *= 1.0001  # "D-dimer > 500": above the number, so above a limit equal to it
        if re.match(r"^\s*(?:years?|yrs?|days?|weeks?|months?|hours?|hrs?|y/?o|kg|cm|mm|times a day)\b",
                    rest if known else
                    after[nm.start(2):] if nm.group(2) else rest):
            return []
        if not analyte.rules:
            return []
        return [LabHit(f, s, m.start(), end, analyte.id, converted, analyte.unit)
                for f, s in evaluate_rules(analyte, converted, sex)]

    def _bp_hits(self, analyte: Analyte, bp: re.Match, start: int, sex) -> list[LabHit]:
        systolic, diastolic = float(bp.group(1)), float(bp.group(2))
        if not (analyte.plausible[0] <= systolic <= analyte.plausible[1]) or diastolic >= systolic:
            return []
        found = dict(evaluate_rules(analyte, systolic, sex))
        for fid, status in evaluate_rules(analyte, diastolic, sex, analyte.diastolic_rules):
            if status == "present" or fid not in found:
                found[fid] = status
        return [LabHit(f, s, start, bp.end(), analyte.id, systolic, analyte.unit) for f, s in found.items()]

    # -------------------------------------------------------------------------------------- words
    def read_words(self, norm: str, start: int, end: int) -> list[LabHit]:
        """Findings from qualitative wordings inside [start, end) of a normalised text (one clause)."""
        # names joined by a slash are a list ("ALT/AST raised", "negative for blood/nitrites"): read as if spaced
        # (same length, so spans stay those of the text)
        norm = _NAME_SLASH.sub(" ", norm)
        names = []
        for analyte in self.analytes:
            for m in analyte.names.finditer(norm, start, end):
                if analyte.urine_only and not re.search(r"urin|dipstick|\bua\b|\bmsu\b|urinalysis",
                                                        norm[max(0, start - 40):end]):
                    continue
                names.append((m.start(), m.end(), analyte))
        if not names:
            return []
        # in a urine clause a urine analyte wins over the blood one of the same name ("urinalysis showed leukocytes")
        names.sort(key=lambda t: (t[0], -(t[1] - t[0]), not t[2].urine_only))
        kept = []
        for n in names:  # longest name at a place wins ("conjugated bilirubin" over "bilirubin")
            if kept and n[0] < kept[-1][1]:
                continue
            kept.append(n)
        groups, current = [], [kept[0]]
        for n in kept[1:]:
            gap = norm[current[-1][1]:n[0]]
            if re.fullmatch(r"\s*(?:,|and|&|/|\+|or)?\s*(?:and\s+)?(?:the\s+)?", gap):
                current.append(n)
            else:
                groups.append(current)
                current = [n]
        groups.append(current)
        hits = []
        for group in groups:
            g_start, g_end = group[0][0], group[-1][1]
            before = norm[max(start, g_start - 40):g_start]
            after = norm[g_end:min(end, g_end + 50)]
            quality, span_start, span_end = None, g_start, g_end
            filler = r"(?:\s+(?:very|mildly|markedly|significantly|moderately|slightly|grossly|persistently|newly|"\
                     r"serum|plasma|urine|urinary|24[- ]?h(?:ou)?r?|both|also|the|her|his|a|an))*\s*"
            # a presence test (a dipstick or urine flag) is also denied by "no" ("urine shows no blood")
            flags = all(a.unit == "flag" for _s, _e, a in group)
            normal = self.normal_words + "|" + _ABSENT_WORDS if flags else self.normal_words
            for kind, regex in (("normal", normal), ("low", self.low_words), ("high", self.high_words),
                                ("positive", self.positive_words)):
                mb = re.search(r"(?<![\w/])(?:" + regex + r")(?:\s+for)?" + filler + r"$", before)
                ma = re.match(r"^\s*(?:levels?|tests?|counts?|screen|result|test result|values?)?"
                              r"(?:\s*(?:is|was|were|are|have been|has been|came back|come back|returned|remains?|"
                              r"remained|both|also|all|:|=|-|x\s?\d))*" + filler + r"(?:" + regex + r")(?![\w/])",
                              after)
                if mb or ma:
                    quality = kind
                    if mb:
                        span_start = g_start - (len(before) - mb.start())
                    if ma:
                        span_end = g_end + ma.end()
                    break
            if quality is None:
                continue
            shown_value = quality == "positive" and not ma and re.match(_CONNECT + r"\s*\d", after) is not None
            for _s, _e, analyte in group:
                if shown_value and analyte.rules:
                    continue  # "showed a WBC of 8600/uL": the number says what the value is, not "showed"
                q = analyte.qualitative
                if quality == "normal":
                    for fid in dict.fromkeys(q.get("high", []) + q.get("positive", [])):
                        hits.append(LabHit(fid, "negated", span_start, span_end, analyte.id, qualitative=True))
                else:
                    ids = q.get(quality) or (q.get("high") if quality == "positive" else None) or []
                    for fid in ids:
                        hits.append(LabHit(fid, "present", span_start, span_end, analyte.id, qualitative=True))
        return hits


#: A number written as a lower bound ("> 500", "greater than 20", "more than 3").
_LOWER_BOUND = re.compile(r">|≥|greater than|more than|over|above")
#: A slash between two words; only the qualitative wordings see it as a space (no number is read there).
_NAME_SLASH = re.compile(r"(?<=[a-z])/(?=[a-z])")
#: Words that deny a presence test (``unit: flag``) written before its name: "no blood", "nil nitrites".
_ABSENT_WORDS = r"no|nil|without|absence of|absent|free of"


#: Below this conjugated share of a raised total bilirubin the pattern is unconjugated (designed; see labs.yaml).
CONJUGATED_SHARE = 0.2
#: umol/L of bilirubin in 1 mg/dL (molar mass 584.7 g/mol).
_BILIRUBIN_UMOL_PER_MG_DL = 17.1


def _bilirubin_pattern(hits: list[LabHit]) -> list[LabHit]:
    """A raised total with a small conjugated part ("bilirubin 60, direct 6") reads as unconjugated."""
    totals = [h for h in hits if h.analyte == "bilirubin" and h.value is not None]
    conj = [h for h in hits if h.analyte == "bilirubin_conjugated" and h.value is not None]
    if not totals or not conj:
        return hits
    total, part = totals[0], conj[0]
    part_value = part.value
    if part_value > total.value and part_value / _BILIRUBIN_UMOL_PER_MG_DL <= total.value:
        part_value /= _BILIRUBIN_UMOL_PER_MG_DL  # a part written without a unit is in the total's unit ("bilirubin 60 umol/L, direct 6")
    if total.finding != "bilirubin_raised" or total.status != "present" or total.value <= 0 or \
            part_value / total.value >= CONJUGATED_SHARE or part_value > total.value:
        return hits
    out = [h for h in hits if not (h.analyte == "bilirubin_conjugated" and h.finding == "bilirubin_conjugated_raised")]
    out.append(LabHit("bilirubin_unconjugated_raised", "present", part.start, part.end, "bilirubin_conjugated",
                      total.value - part_value, part.unit))
    return out


def _alternation(words) -> str:
    return "|".join(sorted((str(w) for w in words), key=len, reverse=True)) or r"(?!x)x"


def _normal_of(raw):
    if isinstance(raw, dict):
        return {(None if k in (None, "null") else k): v for k, v in raw.items()}
    return raw


@functools.lru_cache(maxsize=4)
def load_lab_reader(path: str | None = None) -> LabReader:
    """The lab reader of ``labs.yaml`` (read once per process)."""
    from .compiled import read_yaml  # a JSON copy checked by the file's digest (the YAML parser is slow)

    return LabReader(read_yaml(Path(path or LABS_FILE)))
