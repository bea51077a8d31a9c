"""The ``medsora`` command line.

    medsora score   --volume CT --segmentation SEG --symptom TEXT --output PREFIX
    medsora batch   MANIFEST.csv --output-dir DIR
    medsora rank    "TEXT"                  (text-only organ ranking)
    medsora kb      search "QUERY"          (symptom knowledge base)
    medsora dataset build|stats             (the organ-symptom text dataset)
    medsora worker                          (JSON lines on stdin/stdout: docs/worker.md)
    medsora serve   [--volume CT ...]       (the browser page)

Every scoring command scores through :class:`MedSORALib.session.ScoringSession`
(docs/architecture.md), with the defaults of :class:`~MedSORALib.session.ScoringSettings`.

Errors a user can cause print one line, ``medsora: error: ...``, and exit with
status 2; nothing is written in that case.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from . import __version__
from .commands import COMMANDS
from .errors import MedSORAError

DESCRIPTION = """\
MedSORA scores abdominal organs for a free-text symptom on a patient's CT.
Give it a CT (NIfTI, NRRD, MHA or a DICOM folder), its organ segmentation and
a symptom such as "painless jaundice with pale stools"; it writes a Slicer
segmentation coloured by relevance, a JSON report and an optional preview.
Everything runs offline with the bundled models."""

EPILOG = """\
examples:
  medsora score --volume ct.nii.gz --segmentation seg.nii.gz --label-scheme totalsegmentator \\
                --symptom "painless jaundice with pale stools" --output out/patient1 --preview
  medsora rank "burning pain in the upper belly after meals"
  medsora kb search "vomiting blood" --organ esophagus
run 'medsora COMMAND --help' for the options of each command."""


def _load_commands(only: str | None = None):
    modules = []
    for name in COMMANDS if only is None else (only,):
        try:
            modules.append(importlib.import_module(f"{__package__}.commands.{name}"))
        except ModuleNotFoundError as exc:
            # A subcommand whose module is absent (a trimmed install) is left out of the CLI.
            if exc.name != f"{__package__}.commands.{name}":
                raise
    return modules


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``medsora`` parser; with ``only``, the one subcommand (the others' modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="medsora", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"medsora {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _load_commands(only):
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def _command_of(argv: list[str]) -> str | None:
    """The subcommand when it is the first argument (``medsora rank ...``), else ``None``.

    Only that subcommand's module is then imported: ``score``'s pulls in the imaging stack, which a cold
    ``medsora rank`` does not need. Its parse is the same, as argparse hands everything after the subcommand
    to the subcommand's own parser.
    """
    if argv and argv[0] in COMMANDS and importlib.util.find_spec(f"{__package__}.commands.{argv[0]}") is not None:
        return argv[0]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_command_of(argv))
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except MedSORAError as exc:
        print(f"medsora: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("medsora: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
