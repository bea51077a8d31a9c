"""``medsora dataset``: build and inspect the organ-symptom text dataset.

    medsora dataset build --config Training/configs/dataset_shipped.yaml [--output PATH]
    medsora dataset stats [PATH] [--json | --markdown]
"""
from __future__ import annotations

import argparse
import json
import sys

HELP = "build or count the organ-symptom text dataset"
DESCRIPTION = """\
'build' turns a config (team observations, generation backends over
retrieved passages, guards, seed and split ratios) into a jsonl dataset with a
train/val/test split stratified by organ, plus a .build.json report of what
the guards dropped and why. 'stats' counts texts per organ class and split."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("dataset", help=HELP, description=DESCRIPTION,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    actions = parser.add_subparsers(dest="dataset_action", metavar="ACTION")
    build = actions.add_parser("build", help="build a dataset from a YAML config",
                               description="Build a dataset from a YAML config (see Training/configs/dataset_shipped.yaml).")
    build.add_argument("--config", required=True, help="YAML build config")
    build.add_argument("--output", help="output jsonl (default: the config's 'output')")
    build.add_argument("--quiet", action="store_true", help="print only the final summary")
    stats = actions.add_parser("stats", help="texts per class and split",
                               description="Count texts per organ class and split of a dataset jsonl.")
    stats.add_argument("path", nargs="?", help="dataset jsonl (default: the shipped symptom_texts.jsonl)")
    form = stats.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print JSON")
    form.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.set_defaults(_parser=parser)
    return parser


def run(args) -> int:
    from ..knowledge import symptom_texts as ds

    action = getattr(args, "dataset_action", None)
    if action is None:
        args._parser.print_help()
        return 0
    if action == "build":
        config = ds.read_config(args.config)
        say = None if args.quiet else (lambda message: print(message, file=sys.stderr))
        report = ds.build_dataset(config, output=args.output, progress=say)
        dropped = ", ".join(f"{k} {v}" for k, v in report["guards"]["dropped"].items()) or "none"
        print(f"wrote {report['texts_out']} texts to {report['output']} "
              f"(from {report['texts_in']}; dropped: {dropped})")
        print(ds.stats_markdown(report["stats"]))
        return 0
    path = args.path or ds.DATASET_PATH
    records = ds.read_jsonl(path)
    stats = ds.dataset_stats(records)
    if args.json:
        print(json.dumps(stats, indent=1))
    elif args.markdown:
        print(ds.stats_markdown(stats))
    else:
        print(f"{path}: {stats['total']} texts")
        print(f"{'class':30s} {'train':>6s} {'val':>6s} {'test':>6s} {'total':>6s}")
        for cls, counts in stats["per_class"].items():
            print(f"{cls:30s} {counts['train']:6d} {counts['val']:6d} {counts['test']:6d} {counts['total']:6d}")
        split = stats["per_split"]
        print(f"{'all':30s} {split.get('train', 0):6d} {split.get('val', 0):6d} {split.get('test', 0):6d} "
              f"{stats['total']:6d}")
        print(f"test records with several organs: {stats['test_multi_organ']}; phrasing: "
              + ", ".join(f"{k} {v}" for k, v in stats["phrasing"].items()))
    return 0
