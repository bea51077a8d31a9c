#!/usr/bin/env python
"""Score the rows of a batch manifest without a window: 3D Slicer batch mode or plain Python.

Inside 3D Slicer (no window, no dialogs), the rows are scored in Slicer's own
process, one CT after another (no Dask cluster is started there):

    Slicer --no-splash --no-main-window --python-script MedSORA/Scripts/batch.py \\
        cohort.csv --output-dir out/cohort

With plain Python the arguments are those of ``medsora batch`` (``--workers``,
``--scheduler`` ...); the outputs and the summary are the same. The script always
ends with ``sys.exit`` (``--python-script`` does not end Slicer by itself; Slicer
exits with the status given to ``sys.exit``):

    0    every row was scored
    1    some row failed (the summary says which and why)
    2    bad input or bad arguments: one line ``batch.py: error: ...``
    3    anything else went wrong (a missing Python package, a bug): one line
         ``batch.py: error: <kind>: ...``
    130  interrupted
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROG = "batch.py"
#: Exit status when something other than the input went wrong.
EXIT_UNEXPECTED = 3
EXIT_INTERRUPTED = 130


def _import_library():
    """Make ``MedSORALib`` importable from a source checkout or a Slicer extension install."""
    try:
        import MedSORALib  # noqa: F401
    except ImportError:
        here = Path(__file__).resolve()
        for folder in (here.parents[1], here.parents[2]):
            if (folder / "MedSORALib" / "__init__.py").is_file():
                sys.path.insert(0, str(folder))
                break


def main(argv: list[str] | None = None) -> int:
    from MedSORALib.commands import batch

    parser = argparse.ArgumentParser(prog=PROG, add_help=False)
    batch_parser = batch.add_parser(parser.add_subparsers(dest="command"))
    batch_parser.prog = PROG
    return batch.run(batch_parser.parse_args(argv))


def run(argv: list[str] | None = None) -> int:
    """:func:`main`, with every exception turned into one line and a non-zero status (MedSORALib.script_guard)."""
    try:
        _import_library()
        from MedSORALib.script_guard import run_guarded
    except ImportError as exc:
        print(f"{PROG}: error: {type(exc).__name__}: {exc} (MedSORA's Python packages are missing)", file=sys.stderr)
        return EXIT_UNEXPECTED
    return run_guarded(PROG, main, argv, EXIT_UNEXPECTED, EXIT_INTERRUPTED)


if __name__ == "__main__":
    # Slicer passes the script's own arguments in sys.argv after the script path.
    sys.exit(run(sys.argv[1:]))
