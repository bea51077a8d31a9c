"""The cited disease catalogue: schema, sources, lexicon coverage, counts and spot checks of content."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from MedSORALib.differential import catalogue as cat
from MedSORALib.organs import STRUCTURES

REPO = Path(__file__).resolve().parent.parent
SCHEMA_PAGE = REPO / "docs" / "differential_schema.md"


def _schema_base_ids() -> list[str]:
    """The base finding ids the schema page lists (used while findings/base.yaml is not on this branch)."""
    text = SCHEMA_PAGE.read_text(encoding="utf-8")
    section = text[text.index("### Base finding ids"):text.index("### Findings computed")]
    return sorted(set(re.findall(r"`([a-z][a-z0-9_]*)`", section)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The shipped data; without base.yaml, a copy with a base lexicon made from the schema page's ids."""
    if (cat.DATA_DIR / "findings" / "base.yaml").is_file():
        return cat.DATA_DIR
    root = tmp_path_factory.mktemp("differential")
    shutil.copytree(cat.DATA_DIR, root, dirs_exist_ok=True)
    base = [{"id": i, "label": i.replace("_", " "), "kind": "symptom", "patterns": [i.replace("_", " ")]}
            for i in _schema_base_ids() if i not in cat.COMPUTED_FINDINGS]
    (root / "findings" / "base.yaml").write_text(yaml.safe_dump({"findings": base}), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def catalogue(data_dir) -> cat.Catalogue:
    return cat.load_catalogue(data_dir)
