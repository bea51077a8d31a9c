"""The fast path of a cold ``medsora rank``: same answers, fewer imports.

- the reader's gated patterns (compiled on first need, skipped on texts without their literal needles) find
  exactly what the plain compiled patterns find;
- the catalogue's JSON cache gives back the catalogue built from the YAML, and is rebuilt when the YAML
  changes;
- ``medsora rank --json`` in a fresh process prints what the library computes in this process with the
  catalogue built from the YAML and every pattern compiled eagerly;
- ``medsora rank`` imports neither the imaging, web and scene sides nor the YAML parser.

The timings themselves are in ``bench/bench_scoring.py --only-cold`` (docs/benchmarks.md).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from MedSORALib.differential import compiled, gates
from MedSORALib.differential.records import DATA_DIR

REPO = Path(__file__).resolve().parents[1]
TEXTS = [
    "constant right upper quadrant pain since last night's dinner, fever 38.4, Murphy's sign",
    "right upper quadrant pain after fatty meals; gallbladder removed five years ago",
    "62 year old woman, epigastric pain radiating to the back, lipase 900 U/L, afebrile, denies jaundice",
]


# ------------------------------------------------------------------------------------------------ needles


@pytest.mark.parametrize("pattern, expected", [
    ("abc", ((("abc",),),)),
    ("colou?r", ((("colo",), ("r",)),)),
    ("(?:fever|pyrexia) and chills", (((" and chills",), ("fever",)), ((" and chills",), ("pyrexia",)))),
    ("(?:fever|pyrexia)", ((("fever",),), (("pyrexia",),))),
    ("(?<![\\w])(?:murphy'?s sign)(?![\\w])", ((("murphy",), ("s sign",)),)),
    ("(?:pain){2,}", ((("pain",),),)),
    ("x(?:ab)y", ((("xaby",),),)),
    ("(?:(?:left|right) upper|epigastric) pain", (((" upper",), (" pain",), ("left",)),
                                                  ((" upper",), (" pain",), ("right",)),
                                                  (("epigastric",), (" pain",)))),
    ("a?", None),
    ("[ab]+", None),
    ("x*", None),
    ("(?:pain|)", None),
    ("(?:pain|x?)", None),
    ("(?i)pain", None),
    ("(?i:pain)", None),
])
def test_needles_of_small_patterns(pattern, expected):
    assert gates.needles(pattern) == expected


def test_gated_patterns_match_as_compiled_ones_on_random_texts():
    patterns = ["ab", "a(?:b|c)", "(?:ab|c)+d", "a b?c", "(?<!a)bc", "(?:a|b)(?:c| )", "a{2,}b", "[ab]c",
                "(?:)ab", "c(?=a)b?", "(?:a|bc?)(?:ba|c)", "a(?:b(?:c|a)|cc)", "(?:ab)?ca", "(a)b\\1"]
    rng = random.Random(7)
    texts = ["".join(rng.choice("abc d") for _ in range(rng.randrange(0, 14))) for _ in range(400)]
    for pattern in patterns:
        gated = gates.GatedPattern(pattern, gates.needles(pattern))
        eager = re.compile(pattern)
        for text in texts:
            if not gated.may_match(text):  # the gate alone, on every text
                assert eager.search(text) is None, (pattern, text, gated.needles)
            assert [m.span() for m in gated.finditer(text)] == [m.span() for m in eager.finditer(text)], \
                (pattern, text, gated.needles)
            assert bool(gated.search(text)) == bool(eager.search(text))


def test_a_pattern_runs_ungated_after_many_texts(monkeypatch):
    monkeypatch.setattr(gates, "GATED_TEXTS", 3)
    gated = gates.GatedPattern("fever", gates.needles("fever"))
    assert [gated._worth_running("no") for _ in range(5)] == [False, False, False, True, True]
    assert gated._compiled is None  # never compiled while the gate said no
    assert [m.span() for m in gated.finditer("fever, fever")] == [(0, 5), (7, 12)]


def _examples(pattern: str, variants: int) -> set[str]:
    """Strings built from the pattern's parse tree, one per variant (variant i takes the i-th branch of
    every alternation, modulo its size); some may not match (look-arounds), the caller checks."""
    from re import _constants as C, _parser

    def char_of(items, v):
        for op, av in items:
            if op is C.LITERAL:
                return chr(av)
            if op is C.RANGE:
                return chr(av[0])
            if op is C.CATEGORY:
                return {C.CATEGORY_DIGIT: "1", C.CATEGORY_SPACE: " "}.get(av, "a")
        return "a"

    def gen(items, v):
        out = []
        for op, av in items:
            if op is C.LITERAL:
                out.append(chr(av))
            elif op is C.NOT_LITERAL:
                out.append("a" if av != ord("a") else "b")
            elif op is C.ANY:
                out.append("a")
            elif op is C.IN:
                out.append(char_of(av, v))
            elif op is C.BRANCH:
                out.append(gen(av[1][v % len(av[1])], v))
            elif op is C.SUBPATTERN:
                out.append(gen(av[3], v))
            elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT):
                low, high, inner = av
                count = low if v % 2 == 0 else min(max(low, 1), high)
                out.append("".join(gen(inner, v) for _ in range(count)))
            elif op is C.ATOMIC_GROUP:
                out.append(gen(av, v))
        return "".join(out)

    tree = _parser.parse(pattern, 0)
    return {gen(list(tree), v) for v in range(variants)}


def test_reader_patterns_gated_as_compiled_on_their_own_wordings():
    """Every pattern of the shipped reader (lexicon, HPO names, negative forms, lab names) on strings built
    from each of its alternatives: where the plain pattern matches, the gated one finds the same spans."""
    from MedSORALib.differential.reader import Reader, _hpo_terms
    from MedSORALib.differential.catalogue import build_catalogue
    from MedSORALib.differential.labs import load_lab_reader

    reader = Reader(build_catalogue().findings, _hpo_terms(), load_lab_reader())
    patterns = ([p for _f, p, _s in reader._regexes] + [p for p, _ids in reader._negative_forms]
                + [a.names for a in reader.labs.analytes])
    assert len(patterns) > 400 and all(isinstance(p, gates.GatedPattern) for p in patterns)
    assert sum(p.needles is None for p in patterns) < 0.05 * len(patterns)
    covered = 0
    for gated in patterns:
        eager = re.compile(gated.pattern)
        matched = False
        for example in _examples(gated.pattern, 24):
            text = f"the patient reports {example} since monday"
            spans = [m.span() for m in eager.finditer(text)]
            if spans:
                matched = True
                assert gated.may_match(text), (gated.pattern, example, gated.needles)
                assert [m.span() for m in gated.finditer(text)] == spans
        covered += matched
    # the examples reach nearly every pattern (those they miss need a look-around the builder ignores)
    assert covered >= 0.9 * len(patterns), (covered, len(patterns))


def test_gates_skip_most_patterns_on_a_short_text():
    from MedSORALib.differential.context import normalise
    from MedSORALib.differential.reader import load_reader

    reader = load_reader()
    norm = normalise(TEXTS[0])
    may = [p for _f, p, _s in reader._regexes if p.may_match(norm)]
    assert 0 < len(may) < 0.25 * len(reader._regexes)


def test_gates_file_is_reused_only_for_the_same_code(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDSORA_CACHE_DIR", str(tmp_path / "user-cache"))
    patterns = ["(?:fever|pyrexia) and chills", "abc"]
    first = gates.gated_patterns(patterns, root=tmp_path)
    path = compiled.package_cache_dir(tmp_path) / gates.GATES_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    assert len(data["needles"]) == 2 and data["code"] == gates._code_digest()
    # wrong needles under another code digest are not used: they are computed again
    for key in data["needles"]:
        data["needles"][key] = [[["zzz"]]]
    path.write_text(json.dumps({**data, "code": "other"}), encoding="utf-8")
    again = gates.gated_patterns(patterns, root=tmp_path)
    assert [g.needles for g in again] == [g.needles for g in first] == [gates.needles(p) for p in patterns]
    # and a malformed entry under the right digest is computed again too
    data = json.loads(path.read_text(encoding="utf-8"))
    data["needles"][gates._key(patterns[1])] = "abc"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert gates.gated_patterns(patterns, root=tmp_path)[1].needles == ((("abc",),),)


# ------------------------------------------------------------------------------------------ catalogue cache


@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    root = tmp_path / "differential"
    shutil.copytree(DATA_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("MEDSORA_CACHE_DIR", str(tmp_path / "user-cache"))
    return root


def _no_build(root):
    raise AssertionError("the cache should have been used")


def test_catalogue_cache_gives_back_the_built_catalogue(data_copy):
    from MedSORALib.differential.catalogue import build_catalogue

    first = compiled.cached_catalogue(data_copy, build_catalogue)
    path = compiled.package_cache_dir(data_copy) / compiled.CATALOGUE_FILE
    assert path.is_file()
    stamp = path.stat().st_mtime_ns
    again = compiled.cached_catalogue(data_copy, _no_build)
    built = build_catalogue(data_copy)
    assert compiled.same_catalogue(again, built) and compiled.same_catalogue(first, built)
    assert len(again.diseases) == len(built.diseases) >= 200 and len(again.findings) == len(built.findings)
    assert again.diseases[0].findings[0] == built.diseases[0].findings[0]
    assert isinstance(again.diseases[0].findings, tuple) and isinstance(again.findings[built.diseases[0]
                                                                                      .findings[0].id].patterns, tuple)
    assert path.stat().st_mtime_ns == stamp


def test_catalogue_cache_follows_an_edit_of_the_yaml(data_copy):
    from MedSORALib.differential.catalogue import build_catalogue

    before = compiled.cached_catalogue(data_copy, build_catalogue)
    part = sorted((data_copy / "diseases").glob("*.yaml"))[0]
    text = part.read_text(encoding="utf-8")
    first_name = re.search(r"^\s*name: (.+)$", text, re.M)
    part.write_text(text.replace(first_name.group(0), first_name.group(0).replace(
        first_name.group(1), "Edited " + first_name.group(1)), 1), encoding="utf-8")
    after = compiled.cached_catalogue(data_copy, build_catalogue)
    assert after.diseases[0].name.startswith("Edited ") and not before.diseases[0].name.startswith("Edited ")
    assert compiled.same_catalogue(compiled.cached_catalogue(data_copy, _no_build), after)


def test_catalogue_cache_ignores_a_damaged_file_and_reports_a_bad_catalogue(data_copy):
    from MedSORALib.differential.catalogue import CatalogueError, build_catalogue

    compiled.cached_catalogue(data_copy, build_catalogue)
    path = compiled.package_cache_dir(data_copy) / compiled.CATALOGUE_FILE
    path.write_text(path.read_text(encoding="utf-8")[:5000], encoding="utf-8")  # cut short
    assert compiled.same_catalogue(compiled.cached_catalogue(data_copy, build_catalogue), build_catalogue(data_copy))
    assert json.loads(path.read_text(encoding="utf-8"))["digest"]  # whole again
    # a record type outside .records is refused, even with the right digest
    data = path.read_text(encoding="utf-8").replace('"@":"Weight"', '"@":"Path"', 1)
    path.write_text(data, encoding="utf-8")
    with pytest.raises(AssertionError, match="cache should have been used"):
        compiled.cached_catalogue(data_copy, _no_build)
    # a malformed catalogue raises and leaves no cache of it
    part = sorted((data_copy / "diseases").glob("*.yaml"))[0]
    part.write_text(part.read_text(encoding="utf-8").replace("source:", "sauce:", 1), encoding="utf-8")
    path.unlink()
    with pytest.raises(CatalogueError):
        compiled.cached_catalogue(data_copy, build_catalogue)
    assert not path.exists()


def test_catalogue_cache_falls_back_to_the_user_folder(data_copy, tmp_path):
    from MedSORALib.differential.catalogue import build_catalogue

    compiled.package_cache_dir(data_copy).write_text("a file where the folder would be")  # not writable
    compiled.cached_catalogue(data_copy, build_catalogue)
    user = tmp_path / "user-cache" / "differential" / compiled.CATALOGUE_FILE
    assert user.is_file()
    assert compiled.same_catalogue(compiled.cached_catalogue(data_copy, _no_build), build_catalogue(data_copy))


def test_yaml_copy_is_exact(tmp_path, monkeypatch):
    import yaml

    from MedSORALib.differential import records

    monkeypatch.setattr(records, "DATA_DIR", tmp_path)
    monkeypatch.setenv("MEDSORA_CACHE_DIR", str(tmp_path / "user-cache"))
    source = ("a:\n  null: 1\n  2: two\n  true: 3.0\n  x: [1, 2.5, 'y', null, false]\n"
              "b: {c: {d: -0.0}}\n")
    path = tmp_path / "part.yaml"
    path.write_text(source, encoding="utf-8")
    expected = yaml.safe_load(source)
    first = compiled.read_yaml(path)
    copy = compiled.package_cache_dir(tmp_path) / "yaml-part.json"
    assert copy.is_file()
    second = compiled.read_yaml(path)
    assert compiled._identical(first, expected) and compiled._identical(second, expected)
    assert list(second["a"]) == [None, 2, True, "x"] and type(second["a"][True]) is float
    # a value JSON cannot hold exactly (a date): read from the YAML every time, no copy
    dated = tmp_path / "dated.yaml"
    dated.write_text("when: 2024-05-01\n", encoding="utf-8")
    assert str(compiled.read_yaml(dated)["when"]) == "2024-05-01"
    assert not (compiled.package_cache_dir(tmp_path) / "yaml-dated.json").exists()
    # the digest follows the file
    path.write_text(source.replace("two", "deux"), encoding="utf-8")
    assert compiled.read_yaml(path)["a"][2] == "deux"


# ------------------------------------------------------------------------------------- the command itself


@pytest.fixture
def eager_library(monkeypatch):
    """The differential as it was built before the fast path: the catalogue from the YAML, every reader and
    lab pattern compiled when the reader is made."""
    import yaml

    from MedSORALib.differential import catalogue, differential, labs, reader

    def clear():
        catalogue._cached.cache_clear()
        reader._load_reader.cache_clear()
        labs.load_lab_reader.cache_clear()

    monkeypatch.setattr(compiled, "cached_catalogue", lambda root, build: build(root))
    monkeypatch.setattr(gates, "gated_patterns", lambda patterns, root=None, name="": [re.compile(p) for p in patterns])
    monkeypatch.setattr(compiled, "read_yaml", lambda path: yaml.safe_load(Path(path).read_text(encoding="utf-8")))
    monkeypatch.setattr(differential, "_DEFAULT", None)
    clear()
    yield
    clear()


#: Runs ``medsora rank TEXT --json`` for each text, one after the other, in one fresh process.
RANK_EACH = """
import contextlib, io, json, os, sys
from MedSORALib.cli import main
outputs = []
for text in json.loads(sys.argv[1]):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        assert main(["rank", text, "--json"]) == 0
    outputs.append(out.getvalue())
print(json.dumps([outputs, sorted(sys.modules), os.environ.get("OMP_WAIT_POLICY")]))
"""


def _rank_each(texts: list[str], cache: Path, **extra_env) -> tuple[list[str], set[str], str | None]:
    """The outputs, the modules imported and OMP_WAIT_POLICY at the end, in one fresh process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "MEDSORA_CACHE_DIR": str(cache), **extra_env}
    env.pop("MEDSORA_EMBEDDING_CACHE", None)  # nothing encoded earlier is reused
    if "OMP_WAIT_POLICY" not in extra_env:
        env.pop("OMP_WAIT_POLICY", None)
    done = subprocess.run([sys.executable, "-c", RANK_EACH, json.dumps(texts)], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs, modules, policy = json.loads(done.stdout.strip().splitlines()[-1])
    return outputs, set(modules), policy


def _same_output(printed: str, expected: str) -> None:
    """The same JSON text, except that a number may differ by one unit of its last printed digit.

    torch's CPU kernels can differ in the last bits between two processes running the same code (seen on
    the reference machine with the code before the fast path too, e.g. ``rank --file``, whose texts are
    encoded as one padded batch); every name, status, order and list must be the same.
    """
    if printed == expected:
        return

    def walk(a, b, where="$"):
        assert type(a) is type(b), where
        if isinstance(a, dict):
            assert list(a) == list(b), where
            for k in a:
                walk(a[k], b[k], f"{where}.{k}")
        elif isinstance(a, list):
            assert len(a) == len(b), where
            for i, (x, y) in enumerate(zip(a, b)):
                walk(x, y, f"{where}[{i}]")
        elif isinstance(a, float):
            assert abs(a - b) <= 2e-6, (where, a, b)
        else:
            assert a == b, (where, a, b)

    walk(json.loads(printed), json.loads(expected))


def test_rank_in_a_fresh_process_prints_what_the_library_computes(tmp_path, eager_library):
    """Each text ranked alone (a batch of texts is not compared: padding moves the last digits)."""
    from MedSORALib.commands.rank import prediction_json, reason_chunk
    from MedSORALib.differential.reader import load_reader
    from MedSORALib.text.encoder import TextEncoder
    from MedSORALib.text.reasoning import TextReasoner

    assert isinstance(load_reader()._regexes[0][1], re.Pattern)  # the eager path is the one in use here
    encoder = TextEncoder(cache_dir=False)
    reasoner = TextReasoner.load(None, setting="full11", encoder=encoder)
    info = reasoner.info()
    expected = []
    for text in TEXTS:
        encoder._memory.clear()
        expected.append(json.dumps(prediction_json(reason_chunk([text], reasoner)[0], info), indent=1) + "\n")
    parsed = [json.loads(e) for e in expected]
    assert parsed[0]["differential"][0]["diagnosis"] == "Acute calculous cholecystitis"
    assert "gallbladder" in parsed[1]["removed"] and parsed[2]["findings"]

    outputs, _modules, policy = _rank_each(TEXTS, tmp_path / "cache")
    assert policy == "PASSIVE"  # set by rank before torch loads (the numbers above are computed without it)
    assert len(outputs) == len(expected)
    for printed, wanted in zip(outputs, expected):
        _same_output(printed, wanted)


#: Modules a text-only ranking has no use for: the imaging side, the web page, the Slicer scene, the YAML
#: parser (the catalogue comes from its JSON cache) and the training-time stacks.
NOT_FOR_RANK = ("MedSORALib.web", "MedSORALib.scene", "MedSORALib.session", "MedSORALib.scoring",
                "MedSORALib.image", "MedSORALib.commands.score", "MedSORALib.commands.serve",
                "MedSORALib.commands.batch", "nibabel", "SimpleITK", "dask", "scipy", "sklearn", "yaml",
                "transformers", "sentence_transformers", "monai")


def test_rank_imports_nothing_it_does_not_need(tmp_path):
    _rank_each(TEXTS[2:], tmp_path / "cache")  # a first run may build the compiled data (parsing the YAML)
    outputs, modules, policy = _rank_each(TEXTS[2:], tmp_path / "cache", OMP_WAIT_POLICY="ACTIVE")
    assert policy == "ACTIVE"  # the user's setting is kept
    assert json.loads(outputs[0])["differential"] and "MedSORALib.differential.reader" in modules  # it ranked
    found = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_FOR_RANK))
    assert found == []


def test_the_one_command_parser_reads_as_the_full_one(capsys):
    """``medsora rank ...`` builds only rank's parser: the same help, the same parse; ``medsora --help``
    still lists every command."""
    from MedSORALib.cli import COMMANDS, _command_of, build_parser, main

    argv = ["rank", "pain after meals", "--json", "--setting", "paper7"]
    assert _command_of(argv) == "rank" and _command_of(["--version"]) is None and _command_of([]) is None
    full, one = build_parser(), build_parser("rank")
    assert vars(one.parse_args(argv)).keys() == vars(full.parse_args(argv)).keys()
    assert {k: v for k, v in vars(one.parse_args(argv)).items() if k != "_run"} == \
        {k: v for k, v in vars(full.parse_args(argv)).items() if k != "_run"}
    helps = []
    for parser in (full, one):
        with pytest.raises(SystemExit):
            parser.parse_args(["rank", "--help"])
        helps.append(capsys.readouterr().out)
    assert helps[0] == helps[1] and "--setting" in helps[0]
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert all(f"    {name}" in listing for name in COMMANDS)
