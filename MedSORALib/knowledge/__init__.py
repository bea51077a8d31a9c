"""Symptom knowledge: organ-tagged passages, retrieval, and the symptom-text dataset.

- :mod:`.sources`: HPO, Symptom Ontology and team-corpus chunks with organ tags;
- :mod:`.kb`: :class:`KnowledgeBase` (``load()``, ``search()``: BM25, dense, hybrid);
- :mod:`.generation`: backends that turn a passage into clinical observations
  (OpenAI-compatible endpoint, local transformers LM, rule-based composer);
- :mod:`.guards`: filters applied to every generated text (organ names, near duplicates, length);
- :mod:`.symptom_texts`: the symptom-text dataset build (config -> split jsonl) and :func:`load_dataset`.
"""
from .kb import Hit, KnowledgeBase, KnowledgeError
from .sources import Chunk

__all__ = ["Chunk", "Hit", "KnowledgeBase", "KnowledgeError"]
