"""Evaluate text-reasoning methods on the development sets, with paired bootstrap intervals against the model.

A **method** is a callable ``texts -> list of Output`` (one per text): ``scores`` ({structure key: score} for
the 13 structures, higher = more relevant), ``in_domain`` (the method's out-of-domain decision: True where
it says the answer lies in the 13 structures) and, when the method has one, ``scope`` (``modelled``,
``abdominal-other`` or ``non-abdominal``). Built in:

* ``model``: today's product text model (``TextReasoner`` full11, the weights shipped in the package, or
  ``--weights``);
* ``differential`` and ``fusion``: the differential alone and its gated fusion with ``model``, from
  ``MedSORALib.differential.fusion.reason``, when that package is importable (skipped with a note
  otherwise);
* ``--extra-weights NAME=DIR``: another trained text model (a retrained one), as method ``NAME``, and
  ``NAME+fusion`` when the differential exists;
* ``--callable NAME=module:function``: any importable function ``texts -> list`` whose items are
  :class:`Output` objects, objects with ``structure_relevance`` (or ``scores``) and ``in_domain`` (and
  optionally ``scope``) attributes, or dicts with those keys.

Each text is encoded once per model (one batch over all sets, kept in memory only).

Sets (``Training/data``; see ``DEV_SETS.md``): ``presentations``, ``short_histories``, ``non_abdominal``,
``case_derived`` (published cases retold in the team's words, written blind; its failures have been studied since
the fifth round of issue 24, so it is a development set now), ``case_derived2`` (a second such set, written blind;
its aggregate figures have been used to choose between general methods since the seventh round, so it is a
development set too), ``case_derived3`` (a third, written blind and used for no choice: the unseen one), and the
retired ``external_dev`` for comparison (its labels are reasoning classes: a paired class becomes the side its
``laterality`` names, else both sides).

Figures (fractions in the JSON, percent in the Markdown):

* ranking, on the rows whose answer lies in the 13 structures (``scope: modelled``), over the 13 structures
  ranked as ``medsora rank`` shows them (ties in catalogue order): Rank-1 and Rank-3 (a true structure among
  the first k; a paired organ counts by structure, so a left-kidney text needs the left kidney, a text that
  names no side lists both), mAP (average precision against the text's structures); also per reasoning class
  of the main organ, per register and per writing pass of the dev sets;
* out-of-domain decision: ``kept`` (modelled rows called in domain), ``caught`` (non-abdominal rows called
  out of domain), ``other_in_domain`` (abdominal-other rows called in domain; issue 24 wants them out of the
  13-structure scope) and, for methods that give a scope, ``scope_accuracy`` on every row;
* paired bootstrap (2,000 resamples of the texts, seed 0) of each method's difference to ``model`` on the
  same texts: mean and 95 % percentile interval of Rank-1, Rank-3, mAP, kept and caught;
* every figure again on the **check half** of each file (rows at odd line positions): the differential's and
  the fusion's constants are chosen on the even positions (``MedSORALib.differential.evaluate --tune``), so
  only the check half compares them with the model on texts no choice has seen; and on the **second
  writing pass** of the dev sets (``written: second``), rows added after the catalogue and the reader had
  been developed against the first pass.

The sets are for choosing between methods; nothing is fitted on them here.

    python Training/evaluate_reasoning.py [--methods model differential fusion] [--sets ...]
        [--extra-weights NAME=DIR ...] [--callable NAME=module:function ...] [--output Training/results/reasoning_eval]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "Training" / "data"
SETS = {
    "presentations": DATA / "dev_presentations.jsonl",
    "short_histories": DATA / "dev_short_histories.jsonl",
    "non_abdominal": DATA / "dev_non_abdominal.jsonl",
    "case_derived": DATA / "dev_case_derived.jsonl",
    "case_derived2": DATA / "dev_case_derived2.jsonl",
    "case_derived3": DATA / "dev_case_derived3.jsonl",
    "external_dev (retired)": DATA / "external_dev.jsonl",
}
DEFAULT_OUTPUT = REPO / "Training" / "results" / "reasoning_eval"
RESAMPLES = 2000
SEED = 0


@dataclass
class Output:
    """One method's answer for one text."""

    scores: dict
    in_domain: bool
    scope: str | None = None


Method = Callable[[Sequence[str]], list]


# -- data -------------------------------------------------------------------------------------------------
def _structures_of(row: dict) -> list[str]:
    """The row's true structures: dev sets store structure keys; the retired set stores classes."""
    from MedSORALib.differential.evaluate import structures_of

    return structures_of(row)


def load_set(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for position, row in enumerate(rows):
        row["structures"] = _structures_of(row)
        # MedSORALib.differential.evaluate chooses its constants on the rows at even positions of each file and
        # keeps the odd ones (the check half) unseen.
        row["half"] = "tune" if position % 2 == 0 else "check"
        if "scope" not in row:  # the retired set: abdominal rows are all modelled
            row["scope"] = "modelled" if row.get("abdominal") else "non-abdominal"
        row.setdefault("register", "unknown")
    return rows


# -- methods ----------------------------------------------------------------------------------------------
class ModelCache:
    """Predictions of one text model, computed once per text (in memory only)."""

    def __init__(self, reasoner):
        self.reasoner = reasoner
        self.cache: dict[str, object] = {}

    def predictions(self, texts: Sequence[str]) -> list:
        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for text, pred in zip(todo, self.reasoner.predict(todo)):
                self.cache[text] = pred
        return [self.cache[t] for t in texts]


def model_method(cache: ModelCache) -> Method:
    def run(texts):
        return [Output(dict(p.structure_relevance), bool(p.in_domain), None) for p in cache.predictions(texts)]

    return run


def differential_available() -> str | None:
    """None when ``MedSORALib.differential.fusion.reason`` can be used, else why not."""
    try:
        from MedSORALib.differential import fusion  # noqa: F401
    except Exception as exc:  # the package may not exist yet on this branch
        return f"MedSORALib.differential.fusion is not importable ({type(exc).__name__}: {exc})"
    if not hasattr(fusion, "reason"):
        return "MedSORALib.differential.fusion has no reason()"
    return None


def differential_method(cache: ModelCache | None) -> Method:
    """The differential alone (``cache`` None) or fused with the model of ``cache``."""
    from MedSORALib.differential.fusion import reason

    def run(texts):
        texts = list(texts)
        if cache is None:
            results = reason(texts, reasoner=None)
        else:
            results = reason(texts, reasoner=cache.reasoner, predictions=cache.predictions(texts))
        return [Output(dict(r.structure_relevance), bool(r.in_domain), r.scope) for r in results]

    return run


def _as_output(item) -> Output:
    if isinstance(item, Output):
        return item
    get = item.get if isinstance(item, dict) else lambda key, default=None: getattr(item, key, default)
    scores = get("scores") if get("scores") is not None else get("structure_relevance")
    return Output(dict(scores), bool(get("in_domain")), get("scope"))


def callable_method(spec: str) -> Method:
    """The function named ``module:function``, its items turned into :class:`Output`."""
    import importlib

    module, _, function = spec.partition(":")
    if not module or not function:
        raise SystemExit(f"evaluate_reasoning: --callable takes NAME=module:function, not {spec!r}")
    func = getattr(importlib.import_module(module), function)

    def run(texts):
        return [_as_output(item) for item in func(list(texts))]

    return run


def build_methods(names: Sequence[str], weights=None, extra: dict | None = None,
                  callables: dict | None = None) -> tuple[dict, list[str]]:
    """{name: Method} for the names asked for, and notes on those skipped."""
    from MedSORALib.text.reasoning import TextReasoner

    methods, notes = {}, []
    base = ModelCache(TextReasoner.load(weights, setting="full11"))
    missing = differential_available()
    for name in names:
        if name == "model":
            methods[name] = model_method(base)
        elif name in ("differential", "fusion"):
            if missing:
                notes.append(f"{name} skipped: {missing}")
                continue
            methods[name] = differential_method(None if name == "differential" else base)
        else:
            raise SystemExit(f"evaluate_reasoning: unknown method {name!r}")
    for name, folder in (extra or {}).items():
        cache = ModelCache(TextReasoner.load(folder, setting="full11"))
        methods[name] = model_method(cache)
        if not missing:
            methods[f"{name}+fusion"] = differential_method(cache)
    for name, spec in (callables or {}).items():
        methods[name] = callable_method(spec)
    if "model" not in methods:
        methods = {"model": model_method(base), **methods}  # the reference of every paired difference
    return methods, notes


# -- metrics ----------------------------------------------------------------------------------------------
def per_text(rows: list[dict], outputs: list[Output]) -> dict[str, np.ndarray]:
    """Per-text values (NaN where a figure does not apply to the row)."""
    from MedSORALib.organs import STRUCTURES

    n = len(rows)
    scores = np.array([[float(o.scores.get(k, 0.0)) for k in STRUCTURES] for o in outputs]).reshape(n, len(STRUCTURES))
    relevant = np.array([[k in r["structures"] for k in STRUCTURES] for r in rows], bool).reshape(n, len(STRUCTURES))
    ranked = np.argsort(-scores, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, ranked, axis=1)
    modelled = np.array([r["scope"] == "modelled" and bool(r["structures"]) for r in rows])
    nan = np.full(n, np.nan)
    in_domain = np.array([o.in_domain for o in outputs], float)
    # average precision: mean over the true structures of the precision at their rank
    found = np.cumsum(hits, axis=1) / np.arange(1, len(STRUCTURES) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (found * hits).sum(axis=1) / hits.sum(axis=1)
    out = {
        "rank1": np.where(modelled, hits[:, :1].any(axis=1), nan),
        "rank3": np.where(modelled, hits[:, :3].any(axis=1), nan),
        "mAP": np.where(modelled, ap, nan),
        "kept": np.where(modelled, in_domain, nan),
        "caught": np.where([r["scope"] == "non-abdominal" for r in rows], 1.0 - in_domain, nan),
        "other_in_domain": np.where([r["scope"] == "abdominal-other" for r in rows], in_domain, nan),
    }
    if all(o.scope is not None for o in outputs):
        out["scope_accuracy"] = np.array([float(o.scope == r["scope"]) for o, r in zip(outputs, rows)])
    out["top"] = np.array([STRUCTURES[i] for i in ranked[:, 0]]) if n else np.array([])
    return out


def _mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return round(float(values.mean()), 4) if len(values) else None


def _count(values: np.ndarray) -> int:
    return int(np.isfinite(values).sum())


FIGURES = ("rank1", "rank3", "mAP", "kept", "caught", "other_in_domain", "scope_accuracy")


def summary(values: dict) -> dict:
    out = {k: _mean(values[k]) for k in FIGURES if k in values}
    out["n_ranked"] = _count(values["rank1"])
    out["n_non_abdominal"] = _count(values["caught"])
    out["n_other"] = _count(values["other_in_domain"])
    return out


def grouped(rows: list[dict], values: dict, key: Callable[[dict], str | None]) -> dict:
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        name = key(row)
        if name is not None:
            groups.setdefault(name, []).append(i)
    return {name: {**{k: _mean(values[k][idx]) for k in ("rank1", "rank3", "mAP")},
                   "n": _count(values["rank1"][idx])}
            for name, idx in sorted(groups.items())}


def paired_bootstrap(a: dict, b: dict, n_rows: int, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """Mean and 95 % interval of (method a - method b) per figure, resampling the texts of a set with
    replacement (the same resamples for every figure; texts where a figure does not apply are left out of it)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_rows, size=(resamples, n_rows)) if n_rows else np.zeros((resamples, 0), int)
    out = {}
    for fig in ("rank1", "rank3", "mAP", "kept", "caught"):
        diff = a[fig] - b[fig]
        valid = np.isfinite(diff)
        if not valid.any():
            continue
        d = np.where(valid, diff, 0.0)[idx]
        w = valid[idx].astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot = d.sum(axis=1) / w.sum(axis=1)
        boot = boot[np.isfinite(boot)]
        lo, hi = np.percentile(boot, [2.5, 97.5])
        out[fig] = {"difference": round(float(diff[valid].mean()), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)],
                    "n": int(valid.sum())}
    return out


#: Parts of a set reported apart, with their labels in the Markdown tables.
PARTS = {"check_half": "check half", "second_pass": "second pass"}


def subsets(rows: list[dict]) -> dict:
    """Row masks of the parts of a set: the check half (odd line positions) and, where the set has one, the
    second writing pass (rows added after the differential's authors had merged the first pass)."""
    out = {"check_half": np.array([r["half"] == "check" for r in rows], bool)}
    second = np.array([r.get("written") == "second" for r in rows], bool)
    if second.any():
        out["second_pass"] = second
    return out


def evaluate(methods: dict, sets: dict) -> dict:
    from MedSORALib.organs import structure_class

    report = {}
    for set_name, rows in sets.items():
        texts = [r["text"] for r in rows]
        values = {name: per_text(rows, method(texts)) for name, method in methods.items()}
        entry = {"n": len(rows), "methods": {}}
        for name, v in values.items():
            entry["methods"][name] = {
                "overall": summary(v),
                "per_organ_rank1": grouped(rows, v, lambda r: structure_class(r["structures"][0])
                                           if r["scope"] == "modelled" and r["structures"] else None),
                "per_register": grouped(rows, v, lambda r: r["register"] if r["scope"] == "modelled" else None),
            }
            tops = Counter(str(t) for t in v["top"])
            entry["methods"][name]["first_structure"] = dict(tops.most_common())
            if any("written" in r for r in rows):  # the dev sets' first and second writing passes (DEV_SETS.md)
                entry["methods"][name]["per_pass"] = grouped(
                    rows, v, lambda r: r.get("written") if r["scope"] == "modelled" else None)
            if name != "model":
                entry["methods"][name]["vs_model"] = paired_bootstrap(v, values["model"], len(rows))
            for part, mask in subsets(rows).items():
                sub = {k: a[mask] for k, a in v.items()}
                entry["methods"][name][part] = {"overall": summary(sub)}
                if name != "model":
                    ref = {k: a[mask] for k, a in values["model"].items()}
                    entry["methods"][name][part]["vs_model"] = paired_bootstrap(sub, ref, int(mask.sum()))
        report[set_name] = entry
    return report


# -- report -----------------------------------------------------------------------------------------------
def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _interval(entry: dict | None) -> str:
    if not entry:
        return "-"
    lo, hi = entry["ci95"]
    return f"{100 * entry['difference']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def markdown(report: dict, info: dict) -> str:
    lines = ["# Text reasoning on the development sets", "",
             f"Written by `{info['command']}` (code {info['commit']}). Figures in percent; "
             "ranking over the 13 structures on the rows whose answer lies in them; see "
             "`Training/evaluate_reasoning.py` and `Training/data/DEV_SETS.md`. "
             "The check half (odd line positions of each file) is the part no constant of the differential "
             "or the fusion was chosen on (`MedSORALib.differential.evaluate --tune` uses the even positions); "
             "the second pass (field `written`) holds the rows added after the differential's authors had "
             "merged the first pass of the dev sets.", ""]
    for note in info.get("notes", []):
        lines.append(f"- {note}")
    if info.get("notes"):
        lines.append("")
    lines += ["## Overall", "",
              "| set | method | n ranked | Rank-1 | Rank-3 | mAP | kept (modelled in domain) | caught (non-abdominal out) "
              "| abdominal-other called in domain | scope accuracy |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for part, label in ((None, ""), *((k, f" [{v}]") for k, v in PARTS.items())):
        for set_name, entry in report.items():
            for name, res in entry["methods"].items():
                if part and part not in res:
                    continue
                o = (res[part] if part else res)["overall"]
                lines.append(f"| {set_name}{label} | {name} | {o['n_ranked']} | {_pct(o.get('rank1'))} "
                             f"| {_pct(o.get('rank3'))} | {_pct(o.get('mAP'))} | {_pct(o.get('kept'))} "
                             f"| {_pct(o.get('caught'))} | {_pct(o.get('other_in_domain'))} "
                             f"| {_pct(o.get('scope_accuracy'))} |")
    others = [(s, m) for s, e in report.items() for m in e["methods"] if m != "model"]
    if others:
        lines += ["", "## Against the model (paired bootstrap, 2,000 resamples, 95 % interval, points)", "",
                  "| set | method | Rank-1 | Rank-3 | mAP | kept | caught |", "|---|---|---|---|---|---|---|"]
        for part, label in ((None, ""), *((k, f" [{v}]") for k, v in PARTS.items())):
            for set_name, name in others:
                res = report[set_name]["methods"][name]
                if part and part not in res:
                    continue
                vs = (res[part] if part else res)["vs_model"]
                lines.append(f"| {set_name}{label} | {name} | " + " | ".join(
                    _interval(vs.get(f)) for f in ("rank1", "rank3", "mAP", "kept", "caught")) + " |")
    lines += ["", "## The structure each method ranks first most often (share of all rows of the set)", "",
              "| set | method | most frequent first structures |", "|---|---|---|"]
    for set_name, entry in report.items():
        for name, res in entry["methods"].items():
            counts = res["first_structure"]
            total = sum(counts.values()) or 1
            lines.append(f"| {set_name} | {name} | " + ", ".join(
                f"{k} {100 * c / total:.0f}" for k, c in list(counts.items())[:3]) + " |")
    for set_name, entry in report.items():
        names = list(entry["methods"])
        first = entry["methods"][names[0]]
        if not first["per_organ_rank1"]:
            continue
        lines += ["", f"## {set_name}: Rank-1 per reasoning class of the main organ", "",
                  "| class | n | " + " | ".join(names) + " |", "|---|---:|" + "---:|" * len(names)]
        for organ, g in first["per_organ_rank1"].items():
            lines.append(f"| {organ} | {g['n']} | " + " | ".join(
                _pct(entry["methods"][m]["per_organ_rank1"][organ]["rank1"]) for m in names) + " |")
        for group, title in (("per_register", "register"), ("per_pass", "writing pass")):
            if group not in first:
                continue
            lines += ["", f"## {set_name}: per {title} (Rank-1 / Rank-3 / mAP)", "",
                      f"| {title} | n | " + " | ".join(names) + " |", "|---|---:|" + "---|" * len(names)]
            for key, g in first[group].items():
                lines.append(f"| {key} | {g['n']} | " + " | ".join(
                    " / ".join(_pct(entry["methods"][m][group][key][k]) for k in ("rank1", "rank3", "mAP"))
                    for m in names) + " |")
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["model", "differential", "fusion"])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--weights", default=None, help="text weights folder of `model` (default: the shipped ones)")
    parser.add_argument("--extra-weights", nargs="*", default=[], metavar="NAME=DIR",
                        help="further trained text models to evaluate as methods")
    parser.add_argument("--callable", nargs="*", default=[], metavar="NAME=module:function",
                        help="further methods: an importable function texts -> outputs")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT), help="output path without suffix (.json and .md)")
    args = parser.parse_args(argv)

    from MedSORALib.files import atomic_write_text

    extra = {}
    for item in args.extra_weights:
        name, _, folder = item.partition("=")
        if not name or not folder:
            raise SystemExit("evaluate_reasoning: --extra-weights takes NAME=DIR")
        extra[name] = folder
    callables = {}
    for item in args.callable:
        name, _, spec = item.partition("=")
        if not name or not spec:
            raise SystemExit("evaluate_reasoning: --callable takes NAME=module:function")
        callables[name] = spec
    methods, notes = build_methods(args.methods, args.weights, extra, callables)
    sets = {name: load_set(SETS[name]) for name in args.sets}
    report = evaluate(methods, sets)
    command = "python Training/evaluate_reasoning.py" + ("" if argv is None and len(sys.argv) == 1 else
                                                          " " + " ".join(sys.argv[1:] if argv is None else argv))
    info = {"command": command, "commit": _commit(), "methods": list(methods), "notes": notes,
            "resamples": RESAMPLES, "seed": SEED}
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_suffix(".json"), json.dumps({"info": info, "sets": report}, indent=1) + "\n")
    text = markdown(report, info)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
