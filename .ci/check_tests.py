#!/usr/bin/env python3
"""Check a pytest JUnit XML report against the floor and the must-run list kept in this folder.

    python3 .ci/check_tests.py REPORT.xml [--floor .ci/test_floor] [--must-run .ci/must_run.txt]

Fails (exit 1, one line per problem on stderr) when
- the report is missing, unreadable or holds no test;
- fewer tests passed than the floor (the first whole number in the floor file);
- a must-run pattern matches no test, or a test it matches was skipped (or xfailed).

Test ids are pytest's node ids, ``path/to/test_file.py::test_name[params]`` or
``path/to/test_file.py::TestClass::test_name`` for a test in a class, so the pattern
``path/to/test_file.py::*`` covers every test of a file. They are built from the
testcase's ``file`` attribute (written under ``junit_family=xunit1``, which .ci/run
sets) and the class names that follow the module in ``classname``; a report without
``file`` falls back to ``classname`` alone, where the first part named ``Test*``
starts the classes (pytest's default ``python_classes``). Must-run lines are
shell-style patterns on the ids (``*`` matches anything), one per line, ``#`` starts
a comment. Standard library only: it runs before and outside the project's venv.
"""
from __future__ import annotations

import argparse
import fnmatch
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent


def node_id(classname: str, name: str, file: str | None = None) -> str:
    """The pytest node id of a JUnit testcase (see the module's docstring).

    ``("Testing.test_x.TestC", "test_y", "Testing/test_x.py")`` -> ``"Testing/test_x.py::TestC::test_y"``.
    """
    parts = [p for p in classname.split(".") if p]
    if file:
        path = file.replace("\\", "/")
        module = path[:-3] if path.endswith(".py") else path
        dotted = module.replace("/", ".").split(".")
        # classname is the module's dotted path (perhaps under a --junit-prefix) then the classes
        for start in range(len(parts) + 1):
            if parts[start:start + len(dotted)] == dotted:
                classes = parts[start + len(dotted):]
                break
        else:
            classes = []
    else:
        first_class = next((i for i, p in enumerate(parts) if i > 0 and p.startswith("Test")), len(parts))
        path = "/".join(parts[:first_class]) + ".py" if parts else "?"
        classes = parts[first_class:]
    return "::".join([path, *classes, name])


def read_report(path: Path) -> list[dict]:
    """One dict per test case: ``id`` and ``outcome`` (passed, failed, error or skipped)."""
    root = ET.parse(path).getroot()
    cases = []
    for case in root.iter("testcase"):
        case_id = node_id(case.get("classname", ""), case.get("name", ""), case.get("file"))
        outcome = "passed"
        for kind in ("failure", "error", "skipped"):
            if case.find(kind) is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                break
        cases.append({"id": case_id, "outcome": outcome})
    return cases


def read_floor(path: Path) -> int:
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if re.fullmatch(r"[0-9]+", line):
            return int(line)
    raise ValueError(f"{path}: holds no whole number")


def read_patterns(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def problems(cases: list[dict], floor: int, patterns: list[str]) -> list[str]:
    found = []
    if not cases:
        return ["the report holds no test"]
    passed = sum(c["outcome"] == "passed" for c in cases)
    if passed < floor:
        found.append(f"{passed} tests passed, fewer than the floor of {floor}")
    for pattern in patterns:
        matched = [c for c in cases if fnmatch.fnmatchcase(c["id"], pattern)]
        if not matched:
            found.append(f"must-run tests {pattern}: none ran")
        for case in matched:
            if case["outcome"] == "skipped":
                found.append(f"must-run test {case['id']} was skipped")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--floor", type=Path, default=HERE / "test_floor")
    parser.add_argument("--must-run", type=Path, default=HERE / "must_run.txt")
    args = parser.parse_args(argv)
    try:
        cases = read_report(args.report)
        floor = read_floor(args.floor)
        patterns = read_patterns(args.must_run)
    except (OSError, ET.ParseError, ValueError) as exc:
        print(f"ci: cannot check the tests: {exc}", file=sys.stderr)
        return 1
    found = problems(cases, floor, patterns)
    for problem in found:
        print(f"ci: {problem}", file=sys.stderr)
    if found:
        return 1
    counts = {o: sum(c["outcome"] == o for c in cases) for o in ("passed", "failed", "error", "skipped")}
    print(f"ci: {counts['passed']} passed (floor {floor}), {counts['skipped']} skipped, "
          f"{len(patterns)} must-run pattern(s) satisfied")
    return 0


if __name__ == "__main__":
    sys.exit(main())
