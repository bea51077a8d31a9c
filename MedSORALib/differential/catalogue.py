"""The disease catalogue and finding lexicon: frozen records, loading, merging and validation.

The data are YAML parts under ``MedSORALib/resources/differential/`` (format: ``docs/differential_schema.md``):

- ``findings/*.yaml``: the finding lexicon (``findings: [...]``). A finding id defined in several parts is
  merged: its patterns and HPO ids are united, its ``label`` and ``kind`` must agree. Patterns are written in
  lower case: the reader matches them against the lower-cased text.
- ``labs.yaml`` (optional here): laboratory analytes and vital signs; every finding id it yields joins the
  lexicon (findings computed from numbers need no text pattern).
- ``diseases/*.yaml``: the disease rows (``diseases: [...]``), concatenated in file-name order. A part may also
  hold ``against_all: [...]``: ``against`` entries every row of the part gets unless the row names that finding
  itself (the non-abdominal parts use it: pain placed in the abdomen or peritonism argue against all of them).

Every problem found while loading is reported, one line each, in one :class:`CatalogueError`.

``python -m MedSORALib.differential.catalogue --summary`` prints the row counts by structure and outside;
``--scope FILE.jsonl ...`` prints the differential's scope counts on text files (docs/catalogue.md).
"""
from __future__ import annotations

import argparse
import functools
import math
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Iterable, Mapping

from ..errors import MedSORAError
from ..organs import PAIRED_STRUCTURES, STRUCTURES
# The records are re-exported: callers import them from here.
from .records import (  # noqa: F401
    DATA_DIR, OUTSIDE, FREQUENCY_PRIORS, AGE_OUTSIDE_FACTOR, FINDING_KINDS, ORGAN_KEYS,
    COMPUTED_FINDINGS, _FINDING_KEYS, _DISEASE_KEYS, _WEIGHT_KEYS, _ID, _YEAR, _UPPER,
    CatalogueError, Finding, Weight, Disease, Catalogue)


def _yaml_loader():
    """The safe YAML loader, in C where libyaml is present (about 5x faster)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path, top: str, problems: list[str], optional: tuple[str, ...] = (),
               extra: dict | None = None) -> list:
    """The list under ``top``; the lists under the ``optional`` keys go into ``extra``."""
    import yaml

    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_yaml_loader())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        problems.append(f"{path.name}: not readable YAML: {str(exc).splitlines()[0]}")
        return []
    if data is None:
        return []
    if not isinstance(data, dict) or top not in data or set(data) - {top, *optional}:
        allowed = f"one top-level key {top!r}" + (f" (and optionally {', '.join(map(repr, optional))})"
                                                 if optional else "")
        problems.append(f"{path.name}: expected {allowed}")
        return []
    items = data[top] or []
    if not isinstance(items, list):
        problems.append(f"{path.name}: {top!r} must be a list")
        return []
    for key in optional:
        if key in data and extra is not None:
            extra[key] = data[key]
    return items


def _with_part_against(raw, part_against: list) -> object:
    """A disease entry with its part's ``against_all`` entries added, except findings the row names itself."""
    if not part_against or not isinstance(raw, dict):
        return raw
    named = {w.get("id") for key in ("findings", "against") for w in (raw.get(key) or []) if isinstance(w, dict)}
    own = raw.get("against") or []
    if not isinstance(own, list):
        return raw  # reported by the row's own check
    added = [w for w in part_against if isinstance(w, dict) and w.get("id") not in named]
    return {**raw, "against": own + added}


def _str_list(value, where: str, key: str, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        problems.append(f"{where}: {key!r} must be a list of non-empty strings")
        return ()
    return tuple(value)


def _parse_finding(raw, part: str, problems: list[str]) -> Finding | None:
    if not isinstance(raw, dict):
        problems.append(f"{part}: a finding entry is not a mapping: {raw!r}")
        return None
    fid = raw.get("id")
    where = f"{part}: finding {fid!r}"
    ok = True
    if not isinstance(fid, str) or not _ID.match(fid):
        problems.append(f"{where}: id must be snake_case")
        return None
    for key in sorted(set(raw) - _FINDING_KEYS):
        problems.append(f"{where}: unknown key {key!r}")
        ok = False
    label, kind = raw.get("label"), raw.get("kind")
    if not isinstance(label, str) or not label.strip():
        problems.append(f"{where}: missing label")
        ok = False
    if kind not in FINDING_KINDS:
        problems.append(f"{where}: kind {kind!r} is not one of {', '.join(FINDING_KINDS)}")
        ok = False
    generic = raw.get("generic", False)
    if not isinstance(generic, bool):
        problems.append(f"{where}: 'generic' must be true or false")
        ok = False
    patterns = _str_list(raw.get("patterns"), where, "patterns", problems)
    for p in patterns:
        try:
            re.compile(p, re.IGNORECASE)
        except re.error as exc:
            problems.append(f"{where}: invalid regex {p!r}: {exc}")
            ok = False
            continue
        if _UPPER.search(p):
            problems.append(f"{where}: pattern {p!r} has upper-case letters; texts are matched lower-cased")
            ok = False
    hpo = _str_list(raw.get("hpo"), where, "hpo", problems)
    for h in hpo:
        if not re.fullmatch(r"HP:\d{7}", h):
            problems.append(f"{where}: invalid HPO id {h!r}")
            ok = False
    side = raw.get("side")
    if side not in (None, "left", "right"):
        problems.append(f"{where}: side {side!r} must be left, right or null")
        ok = False
    removes = _str_list(raw.get("removes"), where, "removes", problems)
    for r in removes:
        if r not in ORGAN_KEYS:
            problems.append(f"{where}: removes unknown structure key {r!r}")
            ok = False
    if removes and kind != "history":
        problems.append(f"{where}: only history findings may remove a structure")
        ok = False
    all_of: list[tuple[str, ...]] = []
    raw_all = raw.get("all_of") or []
    if not isinstance(raw_all, list):
        problems.append(f"{where}: 'all_of' must be a list of finding ids or lists of finding ids")
        ok = False
        raw_all = []
    for group in raw_all:
        ids = _str_list(group, where, "all_of", problems)
        if not ids:
            ok = False
        all_of.append(ids)
    implies = _str_list(raw.get("implies"), where, "implies", problems)
    if fid in implies or any(fid in g for g in all_of):
        problems.append(f"{where}: a finding cannot imply or be made of itself")
        ok = False
    if not ok:
        return None
    return Finding(fid, label.strip(), kind, generic, patterns, hpo, side, removes, False, (part,), tuple(all_of),
                   implies)


def _merge_finding(old: Finding, new: Finding, problems: list[str]) -> Finding:
    where = f"finding {new.id!r} (in {', '.join(old.parts + new.parts)})"
    if old.label != new.label:
        problems.append(f"{where}: labels disagree: {old.label!r} vs {new.label!r}")
    if old.kind != new.kind:
        problems.append(f"{where}: kinds disagree: {old.kind!r} vs {new.kind!r}")
    if old.side != new.side:
        problems.append(f"{where}: sides disagree: {old.side!r} vs {new.side!r}")
    return Finding(old.id, old.label, old.kind, old.generic or new.generic,
                   tuple(dict.fromkeys(old.patterns + new.patterns)), tuple(dict.fromkeys(old.hpo + new.hpo)),
                   old.side, tuple(dict.fromkeys(old.removes + new.removes)), old.computed,
                   old.parts + new.parts, tuple(dict.fromkeys(old.all_of + new.all_of)),
                   tuple(dict.fromkeys(old.implies + new.implies)))


def _lab_finding_ids(node) -> set[str]:
    """Finding ids a labs file yields: strings under any key named ``finding``, ``findings`` or ``yields``, and
    under the ``high`` / ``low`` / ``positive`` / ``negative`` keys of a ``qualitative`` block."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "qualitative" and isinstance(value, dict):
                for words in value.values():
                    if isinstance(words, list):
                        found.update(v for v in words if isinstance(v, str))
            elif key in ("finding", "findings", "yields"):
                if isinstance(value, str):
                    found.add(value)
                elif isinstance(value, list):
                    found.update(v for v in value if isinstance(v, str))
                    for v in value:
                        if isinstance(v, dict) and isinstance(v.get("id"), str):
                            found.add(v["id"])
                elif isinstance(value, dict):
                    found.update(k for k in value if isinstance(k, str))
                    found |= _lab_finding_ids(value)
            else:
                found |= _lab_finding_ids(value)
    elif isinstance(node, list):
        for v in node:
            found |= _lab_finding_ids(v)
    return {f for f in found if _ID.match(f)}


def load_lexicon(finding_files: Iterable[Path], labs_file: Path | None, problems: list[str]) -> dict[str, Finding]:
    """The merged finding lexicon: the parts, then the ids computed from numbers that no part defines."""
    lexicon: dict[str, Finding] = {}
    for path in finding_files:
        for raw in _read_yaml(path, "findings", problems):
            finding = _parse_finding(raw, path.name, problems)
            if finding is None:
                continue
            if finding.id in lexicon:
                lexicon[finding.id] = _merge_finding(lexicon[finding.id], finding, problems)
            else:
                lexicon[finding.id] = finding
    computed = dict(COMPUTED_FINDINGS)
    if labs_file is not None and labs_file.is_file():
        import yaml

        try:
            labs = yaml.load(labs_file.read_text(encoding="utf-8"), Loader=_yaml_loader())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            problems.append(f"{labs_file.name}: not readable YAML: {str(exc).splitlines()[0]}")
            labs = None
        for fid in sorted(_lab_finding_ids(labs)):
            computed.setdefault(fid, (fid.replace("_", " "), "lab"))
    for fid, (label, kind) in computed.items():
        if fid in lexicon:
            lexicon[fid] = replace(lexicon[fid], computed=True)
        else:
            lexicon[fid] = Finding(fid, label, kind, computed=True, parts=("labs",))
    for f in lexicon.values():
        if not f.patterns and not f.hpo and not f.computed and not f.all_of:
            problems.append(f"finding {f.id!r} (in {', '.join(f.parts)}): no pattern, no HPO id and not computed")
        for other in sorted({i for g in f.all_of for i in g} | set(f.implies)):
            if other not in lexicon and other not in computed:
                problems.append(f"finding {f.id!r} (in {', '.join(f.parts)}): all_of or implies names {other!r}, "
                                "not in the lexicon")
    return lexicon


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _parse_weights(raw, where: str, against: bool, lexicon: Mapping[str, Finding],
                   problems: list[str]) -> tuple[Weight, ...]:
    key = "against" if against else "findings"
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        problems.append(f"{where}: {key!r} must be a list")
        return ()
    out = []
    for item in raw:
        if not isinstance(item, dict):
            problems.append(f"{where}: a {key} entry is not a mapping: {item!r}")
            continue
        fid = item.get("id")
        w = f"{where}: {key} {fid!r}"
        for k in sorted(set(item) - _WEIGHT_KEYS):
            problems.append(f"{w}: unknown key {k!r}")
        if not isinstance(fid, str) or fid not in lexicon:
            problems.append(f"{w}: finding id not in the lexicon")
            continue
        freq = item.get("freq")
        if freq is None and not against:
            problems.append(f"{w}: missing freq")
            continue
        if freq is not None:
            freq = _number(freq)
            if freq is None or not 0.0 <= freq <= 1.0:
                problems.append(f"{w}: freq {item.get('freq')!r} outside 0-1")
                continue
        lr = _number(item.get("lr"))
        if lr is None or lr <= 0:
            problems.append(f"{w}: lr {item.get('lr')!r} must be a positive number")
            continue
        if not against and lr <= 1:
            problems.append(f"{w}: lr {lr} must be > 1 in findings")
            continue
        if against and lr >= 1:
            problems.append(f"{w}: lr {lr} must be < 1 in against")
            continue
        src = item.get("lr_source")
        if src is not None and (not isinstance(src, str) or not src.strip()):
            problems.append(f"{w}: lr_source must be a non-empty string")
            continue
        out.append(Weight(fid, freq, lr, src))
    return tuple(out)


def _parse_disease(raw, part: str, lexicon: Mapping[str, Finding], problems: list[str]) -> Disease | None:
    if not isinstance(raw, dict):
        problems.append(f"{part}: a disease entry is not a mapping: {raw!r}")
        return None
    did = raw.get("id")
    where = f"{part}: disease {did!r}"
    n_before = len(problems)
    if not isinstance(did, str) or not _ID.match(did):
        problems.append(f"{where}: id must be snake_case")
    for key in sorted(set(raw) - _DISEASE_KEYS):
        problems.append(f"{where}: unknown key {key!r}")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        problems.append(f"{where}: missing name")
    organs = _str_list(raw.get("organs"), where, "organs", problems)
    for o in organs:
        if o not in ORGAN_KEYS:
            problems.append(f"{where}: unknown structure key {o!r}")
    outside = raw.get("outside")
    if outside is not None and outside not in OUTSIDE:
        problems.append(f"{where}: unknown OUTSIDE key {outside!r}")
    if bool(organs) == (outside is not None):
        problems.append(f"{where}: give either organs or outside (exactly one)")
    frequency = raw.get("frequency")
    if frequency not in FREQUENCY_PRIORS:
        problems.append(f"{where}: frequency {frequency!r} is not one of {', '.join(FREQUENCY_PRIORS)}")
    sex = raw.get("sex")
    sex_strict = True
    if isinstance(sex, str) and sex.startswith("mostly "):
        sex, sex_strict = sex[len("mostly "):], False
    if sex not in (None, "female", "male"):
        problems.append(f"{where}: sex {raw.get('sex')!r} must be female, male, mostly female, mostly male or null")
    age = raw.get("age")
    if age is not None:
        if (not isinstance(age, list) or len(age) != 2 or any(_number(a) is None for a in age)
                or not 0 <= age[0] < age[1] <= 120):
            problems.append(f"{where}: age {age!r} must be [min, max] years with 0 <= min < max <= 120")
            age = None
        else:
            age = (int(age[0]), int(age[1]))
    findings = _parse_weights(raw.get("findings"), where, False, lexicon, problems)
    against = _parse_weights(raw.get("against"), where, True, lexicon, problems)
    if not raw.get("findings"):
        problems.append(f"{where}: no findings")
    ids = [w.id for w in findings + against]
    for dup in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{where}: finding {dup!r} named twice")
    look_for = _str_list(raw.get("look_for"), where, "look_for", problems)
    if not look_for:
        problems.append(f"{where}: missing look_for (the CT signs)")
    source = raw.get("source")
    if not isinstance(source, str) or not source.strip():
        problems.append(f"{where}: missing source")
    elif not _YEAR.search(source):
        problems.append(f"{where}: source {source!r} names no year")
    if len(problems) > n_before:
        return None
    return Disease(did, name.strip(), organs, outside, frequency, sex, age, findings, against, look_for,
                   source.strip(), part, sex_strict)


def build_catalogue(data_dir: Path | str | None = None) -> Catalogue:
    """Load, merge and validate the catalogue under ``data_dir`` (default: the shipped data).

    Raises:
        CatalogueError: listing every problem found, one per line.
    """
    root = Path(data_dir) if data_dir is not None else DATA_DIR
    problems: list[str] = []
    finding_files = sorted((root / "findings").glob("*.yaml"))
    disease_files = sorted((root / "diseases").glob("*.yaml"))
    if not disease_files:
        problems.append(f"no disease parts in {root / 'diseases'}")
    lexicon = load_lexicon(finding_files, root / "labs.yaml", problems)
    diseases: list[Disease] = []
    seen: dict[str, str] = {}
    for path in disease_files:
        extra: dict = {}
        raws = _read_yaml(path, "diseases", problems, ("against_all",), extra)
        part_against = extra.get("against_all") or []
        if not isinstance(part_against, list):
            problems.append(f"{path.name}: 'against_all' must be a list")
            part_against = []
        else:
            # validated once, as the against list of the part; the rows get the valid entries
            part_against = [{"id": w.id, "lr": w.lr} for w in
                            _parse_weights(part_against, f"{path.name}: against_all", True, lexicon, problems)]
        for raw in raws:
            d = _parse_disease(_with_part_against(raw, part_against), path.name, lexicon, problems)
            if d is None:
                continue
            if d.id in seen:
                problems.append(f"{path.name}: disease {d.id!r} already defined in {seen[d.id]}")
                continue
            seen[d.id] = path.name
            diseases.append(d)
    if problems:
        raise CatalogueError(problems)
    return Catalogue(MappingProxyType(lexicon), tuple(diseases))


@functools.lru_cache(maxsize=None)
def _cached(root: str) -> Catalogue:
    if Path(root) == DATA_DIR:
        # the shipped data: from the JSON cache checked against the YAML's digest (.compiled)
        from .compiled import cached_catalogue

        return cached_catalogue(DATA_DIR, build_catalogue)
    return build_catalogue(root)


def load_catalogue(data_dir: Path | str | None = None) -> Catalogue:
    """The validated catalogue, read once per process (per folder)."""
    return _cached(str(Path(data_dir).resolve() if data_dir is not None else DATA_DIR))


# ----------------------------------------------------------------------------------------------- summary


def summary_rows(catalogue: Catalogue) -> list[tuple[str, int, int]]:
    """(structure or outside key, rows where it is the main organ, rows naming it) for the summary table."""
    rows = []
    for key in STRUCTURES:
        main = sum(1 for d in catalogue.diseases
                   if d.organs and key in PAIRED_STRUCTURES.get(d.organs[0], {d.organs[0]: d.organs[0]}).values())
        rows.append((key, main, len(catalogue.for_structure(key))))
    for key in OUTSIDE:
        n = sum(1 for d in catalogue.diseases if d.outside == key)
        if n:
            rows.append((f"outside: {key}", n, n))
    return rows


def summary_markdown(catalogue: Catalogue) -> str:
    """The counts as a markdown table."""
    lines = ["| structure | main organ of | named by |", "|---|---:|---:|"]
    lines += [f"| {k} | {m} | {n} |" for k, m, n in summary_rows(catalogue)]
    outside = catalogue.outside_rows()
    abdominal = sum(1 for d in outside if OUTSIDE[d.outside] == "abdominal")
    n_lr = sum(1 for d in catalogue.diseases for w in d.findings + d.against if w.lr_source)
    n_w = sum(len(d.findings) + len(d.against) for d in catalogue.diseases)
    lines += ["", f"rows: {len(catalogue.diseases)} ({len(catalogue.diseases) - len(outside)} of the 13 structures, "
              f"{len(outside)} outside: {abdominal} abdominal, {len(outside) - abdominal} non-abdominal); "
              f"findings in the lexicon: {len(catalogue.findings)}; weights: {n_w} "
              f"({n_lr} with a published LR)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m MedSORALib.differential.catalogue",
                                     description="Validate the disease catalogue and print its counts.")
    parser.add_argument("--summary", action="store_true", help="print the row counts by structure and outside")
    parser.add_argument("--data", help="data folder (default: the shipped one)")
    args = parser.parse_args(argv)
    try:
        catalogue = build_catalogue(args.data)
    except MedSORAError as exc:
        print(f"medsora: error: {exc}", file=sys.stderr)
        return 2
    if args.summary:
        print(summary_markdown(catalogue))
    else:
        print(f"ok: {len(catalogue.diseases)} diseases, {len(catalogue.findings)} findings")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
