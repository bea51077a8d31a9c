"""Regular expressions compiled on first need, behind the literal strings every match must contain.

The clinical reader has one pattern per finding of the lexicon (about 500, with the HPO names and the lab
names); a short text can match a handful. :class:`GatedPattern` holds a pattern's *needles*: alternatives (one
per branch of the pattern's alternations) of clauses of literal strings; every match contains a string of each
clause of some alternative (derived from the pattern's parse tree by :func:`needles`). A text that satisfies no
alternative cannot match, so ``finditer`` returns nothing without compiling the pattern. The needles are kept
in ``reader-gates.json`` and ``labs-gates.json`` beside the catalogue cache (:mod:`.compiled`), keyed by a
digest of the pattern text (a changed pattern simply gets new needles), with a digest of this module's source
(other code, other needles).
"""
from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

from .compiled import CACHE_VERSION, _PYTHON, _read_json, _write_json, package_cache_dir, user_cache_dir

#: The file of the reader's patterns (the lab reader's: ``labs-gates.json``).
GATES_FILE = "reader-gates.json"


#: Most clauses kept per alternative (the most selective ones), and most alternatives per pattern: the check
#: stays a few substring tests per alternative.
MAX_CLAUSES = 3
MAX_ALTERNATIVES = 256
#: Stands for a part of a sequence left out of its clauses (the alternation being split).
_GAP = object()


def needles(pattern: str) -> tuple[tuple[tuple[str, ...], ...], ...] | None:
    """Alternatives of clauses of literal strings: every non-empty match of ``pattern`` (compiled without
    flags) satisfies one alternative, i.e. contains a string of each of its clauses. A text that satisfies
    no alternative cannot match.

    The pattern's alternations (``(?:a)|(?:b)``, also inside groups) split it into alternatives, one per
    branch, each with the clauses of the parts around it. ``None`` when the pattern gives no such guarantee
    (a branch or the whole pattern optional, case-insensitive flags, ...): the pattern must then always run.
    The strings come from the parts a match consumes (literal runs, groups, repeats of at least one), never
    from look-arounds, so each lies inside the match itself.
    """
    from re import _constants as C, _parser

    try:
        tree = _parser.parse(pattern, 0)
    except re.error:
        return None
    if tree.state.flags & (re.IGNORECASE | re.LOCALE):
        return None
    alternatives = _alternatives(list(tree), C)
    if not alternatives:
        return None
    return tuple(tuple(tuple(sorted(c, key=lambda n: (-len(n), n))) for c in alt[:MAX_CLAUSES])
                 for alt in alternatives)


def _flat(items, C) -> list:
    """The sequence with its plain groups (no local flags) opened: a group does not change what is literal."""
    out = []
    for op, av in items:
        if op is C.SUBPATTERN and not av[1] and not av[2]:
            out.extend(_flat(av[3], C))
        else:
            out.append((op, av))
    return out


def _alternatives(items, C) -> list[list[frozenset[str]]] | None:
    """Alternatives (each a list of clauses, most selective first) one of which every match satisfies."""
    items = _flat(items, C)
    branches = [k for k, (op, _av) in enumerate(items) if op is C.BRANCH]
    if branches:
        k = max(branches, key=lambda b: len(items[b][1][1]))
        around = _clauses(items[:k] + [(_GAP, None)] + items[k + 1:], C)
        out = []
        for branch in items[k][1][1]:
            inner = _alternatives(branch, C)
            for alt in inner if inner else [[]]:
                merged = _ordered(around + alt)
                if not merged:
                    return None  # this branch can match with no literal at all
                out.append(merged)
                if len(out) > MAX_ALTERNATIVES:
                    one = _clauses(items, C)
                    return [one] if one else None
        return out
    clauses = _clauses(items, C)
    return [clauses] if clauses else None


def _selectivity(clause: frozenset[str]):
    return min(map(len, clause)), -len(clause)


def _ordered(clauses) -> list[frozenset[str]]:
    unique = list(dict.fromkeys(c for c in clauses if c and all(c)))
    return sorted(unique, key=_selectivity, reverse=True)


def _clauses(items, C) -> list[frozenset[str]]:
    """Clauses every match of the sequence satisfies, most selective first (empty: no guarantee)."""
    found: list[frozenset[str]] = []
    run: list[str] = []

    def flush():
        if run:
            found.append(frozenset(["".join(run)]))
            run.clear()

    for op, av in _flat(items, C):
        if op is C.LITERAL:
            run.append(chr(av))
            continue
        flush()
        if op is C.BRANCH:
            # one clause: the union of each branch's most selective one
            parts = [_clauses(alt, C) for alt in av[1]]
            if parts and all(parts):
                found.append(frozenset().union(*(p[0] for p in parts)))
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
            low, _high, inner_items = av
            if low >= 1:
                found.extend(_clauses(inner_items, C))
        elif op is C.ATOMIC_GROUP:
            found.extend(_clauses(av, C))
        # anything else (the split alternation, classes, any character, anchors, look-arounds, groups with
        # local flags, back-references): no string
    flush()
    return _ordered(found)


#: Texts a pattern is checked for before it simply runs on every text: the check (a few thousand substring
#: tests for the whole lexicon) saves compiling the patterns a cold run does not need, but costs more than
#: running the compiled patterns once a process has read many texts (a server, ``medsora rank --file``).
GATED_TEXTS = 64


#: Checks made on the packed string of the gates file before it is opened into tuples (a cold run makes one or a
#: few per pattern: its text and the extra passes over words joined by hyphens or before one noun).
PACKED_CHECKS = 8


class GatedPattern:
    """A regular expression compiled on first need, skipped on texts that satisfy no alternative of its
    needles (for the first :data:`GATED_TEXTS` texts; then it runs on every text).

    ``finditer`` / ``search`` / ``findall`` give what the compiled pattern gives; anything else is the
    compiled pattern's.
    """

    __slots__ = ("pattern", "_needles", "_first", "_packed", "_compiled", "_checks_left")

    def __init__(self, pattern: str, needles: tuple[tuple[tuple[str, ...], ...], ...] | None,
                 packed: str | None = None):
        self.pattern = pattern
        self._needles = needles
        self._first = first_strings(needles)
        # the needles as kept in the gates file (:func:`pack`): checked as they are for the first PACKED_CHECKS
        # checks (scanning the string costs about twice what scanning the opened tuples costs, opening them ten
        # times more, and a cold run checks each pattern once or a few times), then opened
        self._packed = packed
        self._compiled = None
        self._checks_left = GATED_TEXTS

    @property
    def needles(self) -> tuple[tuple[tuple[str, ...], ...], ...] | None:
        """Alternatives of clauses of strings (see :func:`needles`); ``None``: the pattern always runs."""
        if self._packed is not None:
            return unpack(self._packed)
        return self._needles

    def compiled(self) -> re.Pattern:
        if self._compiled is None:
            self._compiled = re.compile(self.pattern)
        return self._compiled

    def _worth_running(self, text: str) -> bool:
        if self._checks_left <= 0:
            return True  # a process reading many texts: running the compiled pattern is cheaper than the check
        self._checks_left -= 1
        return self.may_match(text)

    def may_match(self, text: str) -> bool:
        """Whether the text satisfies an alternative of the needles (``False``: the pattern cannot match)."""
        packed = self._packed
        if packed is not None:
            if self._checks_left > GATED_TEXTS - PACKED_CHECKS:
                return _may_match_packed(packed, text)
            # a process reading many texts: opened once, the needles are checked faster from then on
            opened = unpack(packed)
            self._first = first_strings(opened)
            self._needles = opened
            self._packed = None
        if self._needles is None:
            return True
        return _satisfied(self._first, self._needles, text)

    def finditer(self, text: str, *args):
        return self.compiled().finditer(text, *args) if self._worth_running(text) else iter(())

    def finditer_within(self, text: str, pos: int, endpos: int):
        """``finditer(text, pos, endpos)``, checked on ``text[pos:endpos]`` only: a match inside the window holds
        its needles inside the window (the same matches, a shorter check)."""
        if self._checks_left > 0 and not self._worth_running(text[pos:endpos]):
            return iter(())
        return self.compiled().finditer(text, pos, endpos)

    def search(self, text: str, *args):
        return self.compiled().search(text, *args) if self._worth_running(text) else None

    def findall(self, text: str, *args):
        return self.compiled().findall(text, *args) if self._worth_running(text) else []

    def __getattr__(self, name):
        return getattr(self.compiled(), name)

    def __repr__(self):
        return f"GatedPattern({self.pattern!r}, needles={self.needles!r})"


def _code_digest() -> str:
    """Digest of this module's source: needles found by other code are not reused."""
    try:
        return hashlib.blake2b(Path(__file__).read_bytes(), digest_size=12).hexdigest()
    except OSError:
        return "unknown"


def _key(pattern: str) -> str:
    return hashlib.blake2b(pattern.encode("utf-8"), digest_size=12).hexdigest()


_GATES_LOCK = threading.Lock()


# The needles of a pattern are kept in the gates file as one string (decoding nested JSON lists and checking them
# cost more than the rest of loading the reader): alternatives joined by a line break, the clauses of an
# alternative by a tab, the strings of a clause by a carriage return. Needles holding one of these characters
# are kept as null (the pattern then always runs).
# The string opens with the strings of every alternative's first clause (its most selective one), then a vertical
# tab: a text holding none of them satisfies no alternative, and most texts are turned away by that one list.
_ALT, _CLAUSE, _NEEDLE, _FIRST = "\n", "\t", "\r", "\v"


def first_strings(value) -> tuple[str, ...] | None:
    """The strings of every alternative's first clause; ``None`` when an alternative has no clause (it holds
    for every text, so no list can turn a text away)."""
    if value is None or any(not alt for alt in value):
        return None
    return tuple(sorted({n for alt in value for n in alt[0]}, key=lambda n: (-len(n), n)))


def pack(value: tuple[tuple[tuple[str, ...], ...], ...] | None) -> str | None:
    """The needles as one string (``None``: no needles, or a needle holding a separator)."""
    if value is None or any(_ALT in n or _CLAUSE in n or _NEEDLE in n or _FIRST in n or not n
                            for alt in value for c in alt for n in c):
        return None
    body = _ALT.join(_CLAUSE.join(_NEEDLE.join(c) for c in alt) for alt in value)
    first = first_strings(value)
    return body if first is None else _NEEDLE.join(first) + _FIRST + body


def _satisfied(first, alternatives, text: str) -> bool:
    """Whether ``text`` holds a string of every clause of some alternative; ``first`` (the strings of every
    alternative's first clause, or ``None``) turns most texts away before the alternatives are tried."""
    if first is not None:
        for n in first:
            if n in text:
                break
        else:
            return False  # no alternative's first clause is in the text
    for alternative in alternatives:
        for clause in alternative:
            for n in clause:
                if n in text:
                    break
            else:
                break  # a clause with no string in the text: not this alternative
        else:
            return True
    return False


def _may_match_packed(packed: str, text: str) -> bool:
    """:meth:`GatedPattern.may_match` on the packed needles (the same answer as on the opened ones), split as far
    as the check reaches. An empty part (a damaged file) is in every text, so it can only let the pattern run,
    never skip a match."""
    first, sep, body = packed.partition(_FIRST)
    if not sep:
        first, body = None, first
    return _satisfied(first.split(_NEEDLE) if first is not None else None,
                      ((c.split(_NEEDLE) for c in alt.split(_CLAUSE)) for alt in body.split(_ALT)), text)


def unpack(packed) -> tuple[tuple[tuple[str, ...], ...], ...] | None:
    """The needles of :func:`pack`'s string; ``None`` when it is not one."""
    if not isinstance(packed, str) or not packed:
        return None
    body = packed.partition(_FIRST)[2] or packed
    return tuple(tuple(tuple(c.split(_NEEDLE)) for c in alt.split(_CLAUSE)) for alt in body.split(_ALT))


def gated_patterns(patterns: list[str], root: Path | None = None, name: str = "reader") -> list[GatedPattern]:
    """:class:`GatedPattern` for each pattern, with the needles from ``<name>-gates.json`` (computed for the
    patterns it lacks; the file is then rewritten with the needles of these patterns only, so it does not grow
    with each edit of the lexicon)."""
    from .records import DATA_DIR

    root = Path(root) if root is not None else DATA_DIR
    folders = (package_cache_dir(root), user_cache_dir())
    with _GATES_LOCK:
        known: dict = {}
        for folder in folders:
            data = _read_json(folder / f"{name}-gates.json")
            if isinstance(data, dict) and data.get("version") == CACHE_VERSION and data.get("python") == _PYTHON \
                    and data.get("code") == _code_digest() and isinstance(data.get("needles"), dict):
                known = data["needles"]
                break
        out, fresh = [], {}
        for p in patterns:
            key = _key(p)
            value = known.get(key, False)
            if value is None:
                out.append(GatedPattern(p, None))
            elif isinstance(value, str) and value:
                out.append(GatedPattern(p, None, packed=value))  # opened when first needed
            else:
                value = needles(p)
                fresh[key] = pack(value)
                out.append(GatedPattern(p, value))
        if fresh:
            keep = {k: known[k] for k in map(_key, patterns) if k in known}
            keep.update(fresh)
            data = {"version": CACHE_VERSION, "python": _PYTHON, "code": _code_digest(), "needles": keep}
            for folder in folders:
                if _write_json(folder, f"{name}-gates.json", data) is not None:
                    break
    return out
