"""The organ-symptom text dataset: build from a config, split, count, load.

Build (:func:`build_dataset`), driven by a YAML config (see ``Training/configs/dataset_shipped.yaml``):

1. read the team observations (curated, multi-organ labels);
2. optionally retrieve organ-specific chunks from the knowledge base and run generation
   backends over them (:mod:`.generation`), the paper's filter-then-write steps;
3. pass every text through the guards (:mod:`.guards`): no organ names, no (near) duplicates,
   length limits; each drop counted;
4. split into train/val/test (70/10/20 by default) by source passage (:func:`split_by_passage`): no test
   text shares a passage (``chunk_ids``) with a training or validation text;
5. write jsonl (one record per line, ``split`` added) atomically, plus a build report JSON.

Record fields: id, text, organ (source class), organs (class keys, primary first, equal to organ),
chunk_ids, phrasing ("clinical"|"lay"), laterality ("left"|"right"|None), backend, split; generated
records also carry ``provenance``. Train/val use ``organ`` as the label, test uses ``organs``.
"""
from __future__ import annotations

import json
import os
import random
from pathlib import Path

from ..errors import InputFileError, MedSORAError
from ..files import atomic_write_text, file_sha256, read_jsonl, resource_path

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASET_PATH = resource_path("dataset", "symptom_texts.jsonl")
TEAM_OBSERVATIONS_PATH = resource_path("dataset", "team_observations.jsonl")
SPLITS = ("train", "val", "test")
#: The shares of :func:`split_by_passage` when a configuration gives none (70/10/20).
DEFAULT_RATIOS = {"train": 0.7, "val": 0.1, "test": 0.2}
PHRASINGS = ("clinical", "lay")


class DatasetError(MedSORAError):
    """A dataset file or build config is invalid."""


# -- reading and validation ---------------------------------------------------------------------
def label_problem(record: dict, classes) -> str | None:
    """Why ``record``'s labels are invalid (None when valid): organ a class key, organs a non-empty
    list of distinct class keys whose first entry equals organ, laterality left/right/None."""
    organ = record.get("organ")
    organs = record.get("organs")
    if organ not in classes:
        return f"organ {organ!r} is not a class key"
    if not isinstance(organs, list) or not organs:
        return "organs is not a non-empty list"
    unknown = [o for o in organs if o not in classes]
    if unknown:
        return f"organs has unknown class key(s) {unknown}"
    if organs[0] != organ:
        return f"organs[0] {organs[0]!r} differs from organ {organ!r}"
    if len(set(organs)) != len(organs):
        return "organs repeats a class"
    if record.get("laterality") not in (None, "left", "right"):
        return f"laterality {record.get('laterality')!r} is not left, right or null"
    return None


def read_team_observations(path, classes) -> list:
    """Team observation records, validated (:func:`label_problem`, unique ids, text present)."""
    rows = read_jsonl(path)
    seen = set()
    for number, row in enumerate(rows, 1):
        if not row.get("id") or not isinstance(row.get("text"), str):
            raise DatasetError(f"{path}: record {number} has no id or text")
        if row["id"] in seen:
            raise DatasetError(f"{path}: repeated id {row['id']}")
        seen.add(row["id"])
        problem = label_problem(row, classes)
        if problem:
            raise DatasetError(f"{path}: record {row['id']}: {problem}")
        row.setdefault("chunk_ids", [])
        row.setdefault("phrasing", "clinical")
        row.setdefault("laterality", None)
        row.setdefault("backend", "team")
    return rows


def load_dataset(split=None, path=None) -> list:
    """Records of the symptom-text dataset.

    Args:
        split: "train", "val", "test" or None (all).
        path: a dataset jsonl; default: the shipped ``symptom_texts.jsonl``.

    Returns:
        list of dicts (file order).
    """
    if split is not None and split not in SPLITS:
        raise DatasetError(f"unknown split '{split}'; use one of: {', '.join(SPLITS)}")
    rows = read_jsonl(path or DATASET_PATH)
    return [r for r in rows if split is None or r.get("split") == split]


# -- splitting and statistics -------------------------------------------------------------------
def passage_groups(records: list) -> list:
    """Group index of each record: records that share a source passage (any id in ``chunk_ids``) belong
    to one group, transitively; a record without ``chunk_ids`` is its own group (keyed by its id)."""
    parent: dict = {}

    def find(key):
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    keys = []
    for index, record in enumerate(records):
        chunks = [f"chunk:{c}" for c in (record.get("chunk_ids") or [])]
        own = chunks[0] if chunks else f"record:{record.get('id', index)}"
        find(own)
        for other in chunks[1:]:
            root_a, root_b = find(own), find(other)
            if root_a != root_b:
                parent[root_b] = root_a
        keys.append(own)
    roots: dict = {}
    return [roots.setdefault(find(k), len(roots)) for k in keys]


def split_by_passage(records: list, ratios: dict, seed: int) -> None:
    """Set ``record["split"]`` in place so that no two splits share a source passage.

    The one split of the project (dataset build, training and evaluation programs). Records are
    grouped by :func:`passage_groups`; each group is filed under the most frequent source organ of
    its records, and per organ the groups are shuffled with a seed and dealt to test, then val,
    then train: a group goes to test while the organ's test count is below ``round(n * test)``
    and adding it lands nearer that target than leaving it out (likewise for val). The result
    depends only on the seed and the records' ids, organs and passages.
    """
    total = sum(float(ratios.get(s, 0)) for s in SPLITS)
    if abs(total - 1.0) > 1e-6 or any(float(ratios.get(s, 0)) < 0 for s in SPLITS):
        raise DatasetError(f"split ratios must be >= 0 and sum to 1 (got {dict(ratios)})")
    groups: dict = {}
    for record, group in zip(records, passage_groups(records)):
        groups.setdefault(group, []).append(record)
    by_organ: dict = {}
    for members in groups.values():
        organs = [str(r["organ"]) for r in members]
        organ = max(sorted(set(organs)), key=organs.count)
        by_organ.setdefault(organ, []).append(members)
    for organ in sorted(by_organ):
        # Order groups by their smallest id, then shuffle with a seed of (seed, organ).
        ordered = sorted(by_organ[organ], key=lambda m: min(str(r.get("id", "")) for r in m))
        random.Random(f"{seed}:{organ}").shuffle(ordered)
        n = sum(len(m) for m in ordered)
        targets = {"test": round(n * float(ratios.get("test", 0))), "val": round(n * float(ratios.get("val", 0)))}
        counts = {"test": 0, "val": 0}
        for members in ordered:
            chosen = "train"
            for split in ("test", "val"):
                have, want = counts[split], targets[split]
                if have < want and abs(have + len(members) - want) <= abs(have - want):
                    chosen = split
                    break
            if chosen != "train":
                counts[chosen] += len(members)
            for record in members:
                record["split"] = chosen


def dataset_stats(records: list, classes=None) -> dict:
    """Counts of a dataset.

    Returns:
        {"total", "per_class": {class: {split: n, "total": n}}, "per_split": {split: n},
         "phrasing": {phrasing: n}, "backend": {backend: n}, "test_multi_organ": n,
         "test_organ_mentions": {class: n} (how often each class is in a test "organs" list)}
    """
    from ..organs import FULL_CLASSES

    classes = tuple(classes or FULL_CLASSES)
    per_class = {c: {s: 0 for s in SPLITS} for c in classes}
    per_split = {s: 0 for s in SPLITS}
    phrasing: dict = {}
    backend: dict = {}
    multi = 0
    mentions = {c: 0 for c in classes}
    for record in records:
        split = record.get("split", "train")
        organ = record.get("organ")
        per_class.setdefault(organ, {s: 0 for s in SPLITS})[split] += 1
        per_split[split] = per_split.get(split, 0) + 1
        phrasing[record.get("phrasing")] = phrasing.get(record.get("phrasing"), 0) + 1
        name = str(record.get("backend", "")).split(":")[0]
        backend[name] = backend.get(name, 0) + 1
        if split == "test":
            multi += len(record.get("organs") or []) > 1
            for o in record.get("organs") or []:
                mentions[o] = mentions.get(o, 0) + 1
    for counts in per_class.values():
        counts["total"] = sum(counts[s] for s in SPLITS)
    return {"total": len(records), "per_class": per_class, "per_split": per_split, "phrasing": phrasing,
            "backend": backend, "test_multi_organ": multi, "test_organ_mentions": mentions}


def stats_markdown(stats: dict) -> str:
    """A Markdown table of texts per class and split, with totals and the test multi-organ count."""
    lines = ["| class | train | val | test | total | in test labels |", "|---|---:|---:|---:|---:|---:|"]
    for cls, counts in stats["per_class"].items():
        lines.append(f"| {cls} | {counts['train']} | {counts['val']} | {counts['test']} | {counts['total']} | "
                     f"{stats['test_organ_mentions'].get(cls, 0)} |")
    split = stats["per_split"]
    lines.append(f"| **all** | {split.get('train', 0)} | {split.get('val', 0)} | {split.get('test', 0)} | "
                 f"{stats['total']} | |")
    test = split.get("test", 0)
    lines.append("")
    lines.append(f"Test records with more than one organ in their label: {stats['test_multi_organ']} of {test}. "
                 f"Phrasing: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["phrasing"].items(), key=str)) + ". "
                 f"Backends: " + ", ".join(f"{k} {v}" for k, v in sorted(stats["backend"].items())) + ".")
    return "\n".join(lines)


# -- building -----------------------------------------------------------------------------------
def resolve_path(value, base: Path | None = None) -> Path:
    """A config path: absolute as is; relative to the working directory when it exists there,
    else to the config's folder (``base``), else to the repository root."""
    path = Path(os.path.expanduser(str(value)))
    if path.is_absolute() or path.exists():
        return path
    for root in (base, REPO_ROOT):
        if root is not None and (root / path).exists():
            return root / path
    return path


def read_config(path) -> dict:
    """The YAML build config as a dict (DatasetError when unreadable or not a mapping)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"dataset config not found: {path}")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"dataset config {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(config, dict):
        raise DatasetError(f"dataset config {path} is not a mapping")
    config["_base"] = str(path.resolve().parent)
    return config


def retrieve_chunks(kb, organ: str, count: int, query: str, mode: str) -> list:
    """Organ-specific chunks: the best ``count`` for ``query`` (``{organ}`` filled with the class
    display name) among the chunks tagged with ``organ``."""
    from ..organs import CLASS_DISPLAY_NAMES

    text = query.format(organ=CLASS_DISPLAY_NAMES.get(organ, organ))
    hits = kb.search(text, k=count, organ=organ, mode=mode)
    if len(hits) < count:
        seen = {h.chunk.id for h in hits}
        hits = [h.chunk for h in hits] + [c for c in kb.chunks if organ in c.organs and c.id not in seen]
        return hits[:count]
    return [h.chunk for h in hits]


def _shown(path) -> str:
    """``path`` relative to the repository when inside it (reports stay the same on every machine)."""
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def build_dataset(config: dict, output=None, encoder=None, kb=None, progress=None) -> dict:
    """Build the dataset described by ``config`` and write it.

    Config keys: ``seed`` (int), ``classes`` ("full11"|"paper7"), ``split`` ({train, val, test}),
    ``team_observations`` (path or null), ``generation`` (list of backend settings, see
    :func:`MedSORALib.knowledge.generation.make_backend`, plus ``chunks_per_organ``,
    ``texts_per_chunk``, ``per_organ``, ``query``, ``mode``), ``guards`` ({max_cosine, min_words,
    max_chars, near_duplicates}), ``output`` (path).

    Args:
        config: the mapping (from :func:`read_config`).
        output: overrides ``config["output"]``.
        encoder: encoder for the near-duplicate guard (default: the process default encoder).
        kb: knowledge base for generation (default: ``KnowledgeBase.load()``).
        progress: optional callable(str) for status lines.

    Returns:
        The build report: output path, counts, guard and generation stats.
    """
    from ..organs import CLASS_SETTINGS
    from .generation import GenerationStats, generate_records, make_backend
    from .guards import TextGuard

    say = progress or (lambda message: None)
    base = Path(config["_base"]) if config.get("_base") else None
    setting = config.get("classes", "full11")
    if setting not in CLASS_SETTINGS:
        raise DatasetError(f"unknown class setting '{setting}'; use one of: {', '.join(CLASS_SETTINGS)}")
    classes = CLASS_SETTINGS[setting]
    seed = int(config.get("seed", 0))
    ratios = config.get("split", DEFAULT_RATIOS)
    out_path = Path(output) if output else resolve_path(config.get("output", DATASET_PATH), base)

    records = []
    team_info = None
    team_path = config.get("team_observations")
    if team_path:
        team_path = resolve_path(team_path, base)
        team = [r for r in read_team_observations(team_path, CLASS_SETTINGS["full11"]) if r["organ"] in classes]
        for r in team:
            r["organs"] = [o for o in r["organs"] if o in classes]
        records += team
        team_info = {"path": _shown(team_path), "records": len(team),
                     "sha256": file_sha256(team_path)}
        say(f"team observations: {len(team)} from {team_path}")

    generation_report = []
    for settings in config.get("generation") or []:
        if kb is None:
            from .kb import KnowledgeBase

            kb = KnowledgeBase.load()
        backend = make_backend(settings)
        chunks = {organ: retrieve_chunks(kb, organ, int(settings.get("chunks_per_organ", 40)),
                                         settings.get("query", "{organ} symptoms signs patient complaint"),
                                         settings.get("mode", "bm25"))
                  for organ in classes}
        stats = GenerationStats()
        generated = generate_records(backend, chunks, int(settings.get("texts_per_chunk", 3)), seed,
                                     settings.get("per_organ"), stats=stats, progress=progress)
        for r in generated:
            r["organs"] = [o for o in r["organs"] if o in classes]
        records += generated
        generation_report.append({"provenance": backend.provenance(), **stats.to_dict()})
        say(f"{backend.name}: {len(generated)} texts from {stats.chunks_kept}/{stats.chunks_seen} chunks")

    guard_cfg = dict(config.get("guards") or {})
    near = guard_cfg.pop("near_duplicates", True)
    if near and encoder is None:
        from ..text.encoder import get_default_encoder

        encoder = get_default_encoder()
    guard = TextGuard(encoder=encoder if near else None, **guard_cfg)
    kept = guard.filter(records)
    say(f"guards: kept {len(kept)} of {len(records)}")
    split_by_passage(kept, ratios, seed)

    fields = ("id", "text", "organ", "organs", "chunk_ids", "phrasing", "laterality", "backend", "split")
    lines = []
    for r in kept:
        row = {k: r.get(k) for k in fields}
        if "provenance" in r:
            row["provenance"] = r["provenance"]
        lines.append(json.dumps(row, ensure_ascii=False))
    atomic_write_text(out_path, "\n".join(lines) + "\n")
    stats = dataset_stats(kept, classes)
    report = {"output": _shown(out_path), "team_observations": team_info, "seed": seed, "classes": setting, "split_ratios": ratios,
              "texts_in": len(records), "texts_out": len(kept), "guards": guard.stats.to_dict(),
              "generation": generation_report, "stats": stats,
              "encoder": getattr(encoder, "model_id", None) if near else None}
    atomic_write_text(out_path.with_suffix(".build.json"), json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report
