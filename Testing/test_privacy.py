"""Nothing derived from a patient's text is kept at rest: the embedding cache holds only the knowledge base's
own texts (and, when asked for, training texts), is owner-only and bounded in size."""
from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import EXAMPLE_CT, EXAMPLE_SEG

ROOT = Path(__file__).resolve().parent.parent
#: A symptom no other test scores, so that any trace of it on disk comes from this test.
SYMPTOM = "yellow eyes since the camping trip to lake quillwater with dark urine"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _fake_vectors(self, texts, batch_size):
    """Deterministic unit vectors standing in for the model (the cache logic is under test, not the model)."""
    out = []
    for text in texts:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


@pytest.fixture
def encoder_factory(monkeypatch):
    from MedSORALib.text import encoder as encoder_module

    monkeypatch.setattr(encoder_module.TextEncoder, "_encode_local", _fake_vectors)
    monkeypatch.delenv("MEDSORA_EMBEDDING_CACHE", raising=False)
    monkeypatch.delenv("MEDSORA_EMBEDDING_CACHE_MB", raising=False)
    return encoder_module


def _keys(db_path: Path) -> set[str]:
    with sqlite3.connect(db_path) as db:
        return {row[0] for row in db.execute("SELECT key FROM emb")}


def test_plain_encode_writes_nothing_and_stored_encode_is_owner_only(tmp_path, encoder_factory):
    folder = tmp_path / "cache" / "medsora"
    encoder = encoder_factory.TextEncoder(cache_dir=folder)
    vectors = encoder.encode([SYMPTOM, "epigastric pain"])
    assert vectors.shape == (2, 8)
    assert not (tmp_path / "cache").exists()  # nothing created for texts that are not stored

    passages = ["The pancreas lies behind the stomach.", "The spleen filters blood."]
    encoder.encode_stored(passages)
    db = folder / encoder_factory.CACHE_FILE
    assert _mode(folder) == 0o700 and _mode(db) == 0o600
    assert _keys(db) == {hashlib.sha256(t.encode()).hexdigest() for t in passages}
    # A new encoder reads the stored vectors back (no encoding) and still does not store the symptom.
    again = encoder_factory.TextEncoder(cache_dir=folder)
    np.testing.assert_array_equal(again.encode(passages), encoder.encode(passages))
    again.encode([SYMPTOM])
    assert hashlib.sha256(SYMPTOM.encode()).hexdigest() not in _keys(db)
    for leftover in folder.iterdir():
        assert _mode(leftover) == 0o600, leftover


def test_opt_in_by_environment(tmp_path, encoder_factory, monkeypatch):
    monkeypatch.setenv("MEDSORA_EMBEDDING_CACHE", "1")
    encoder = encoder_factory.TextEncoder(cache_dir=tmp_path / "c")
    encoder.encode(["a training text"])
    assert _keys(tmp_path / "c" / encoder_factory.CACHE_FILE) == {hashlib.sha256(b"a training text").hexdigest()}
    assert encoder_factory.TextEncoder(cache_dir=tmp_path / "d", persist=False).persist is False


def test_cache_is_bounded_oldest_first(tmp_path, encoder_factory, monkeypatch):
    # 8 float32 = 32 bytes a vector; a limit of 100 bytes keeps the 3 newest.
    encoder = encoder_factory.TextEncoder(cache_dir=tmp_path / "c")
    encoder._cache.limit_bytes = 100
    texts = [f"passage {n}" for n in range(10)]
    for text in texts:
        encoder.encode_stored([text])
    kept = _keys(tmp_path / "c" / encoder_factory.CACHE_FILE)
    assert kept == {hashlib.sha256(t.encode()).hexdigest() for t in texts[-3:]}
    assert encoder._cache.size_bytes() == 96
    monkeypatch.setenv("MEDSORA_EMBEDDING_CACHE_MB", "0.5")
    assert encoder_factory.cache_limit_bytes() == 1 << 19


def test_an_old_cache_is_emptied(tmp_path, encoder_factory):
    folder = tmp_path / "c"
    folder.mkdir(mode=0o755)
    old = folder / encoder_factory.CACHE_FILE
    with sqlite3.connect(old) as db:  # the layout of earlier versions, holding a patient's symptom
        db.execute("CREATE TABLE emb (model TEXT, key TEXT, vec BLOB, PRIMARY KEY (model, key))")
        db.execute("INSERT INTO emb VALUES (?, ?, ?)", ("m", hashlib.sha256(SYMPTOM.encode()).hexdigest(), b"x" * 32))
    os.chmod(old, 0o644)
    encoder = encoder_factory.TextEncoder(cache_dir=folder)
    encoder.encode([SYMPTOM])
    encoder.encode_stored(["a passage"])
    assert _keys(old) == {hashlib.sha256(b"a passage").hexdigest()}
    assert _mode(old) == 0o600 and _mode(folder) == 0o700
    assert SYMPTOM.encode() not in old.read_bytes()


def test_scoring_a_symptom_leaves_no_trace_in_the_users_cache(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("MEDSORA_CACHE_DIR", "MEDSORA_EMBEDDING_CACHE", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "out" / "r"
    done = subprocess.run(
        [sys.executable, "-m", "MedSORALib", "score", "--volume", str(EXAMPLE_CT), "--segmentation", str(EXAMPLE_SEG),
         "--label-scheme", "totalsegmentator", "--symptom", SYMPTOM, "--output", str(out), "--quiet"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    assert out.with_name("r.json").is_file()  # control: the symptom was scored
    digest = hashlib.sha256(SYMPTOM.encode()).hexdigest()
    files = [p for p in home.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        assert SYMPTOM.encode() not in data, path
        assert digest.encode() not in data, path
    for db in home.rglob("embeddings.sqlite"):
        assert digest not in _keys(db)
        assert _mode(db) == 0o600 and _mode(db.parent) == 0o700
