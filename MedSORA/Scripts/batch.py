#!/usr/bin/env python
"""Score the rows of a batch manifest without a window: 3D Slicer batch mode or plain Python.

Inside 3D Slicer (no window, no dialogs), the rows are scored in Slicer's own
process, one CT after another (no Dask cluster is started there):

    Slicer --no-splash --no-main-window --python-script MedSORA/Scripts/batch.py \\
        cohort.csv --output-dir out/cohort

With plain Python the arguments are those of ``medsora batch`` (``--workers``,
``--scheduler`` ...); the outputs, the summary and the exit status (0 all rows
done, 1 some row failed, 2 bad input) are the same.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


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
    _import_library()
    from MedSORALib.commands import batch
    from MedSORALib.errors import MedSORAError

    parser = argparse.ArgumentParser(prog="batch.py", add_help=False)
    sub = parser.add_subparsers(dest="command")
    batch_parser = batch.add_parser(sub)
    batch_parser.prog = "batch.py"
    args = batch_parser.parse_args(argv)
    try:
        return batch.run(args)
    except MedSORAError as exc:
        print(f"batch.py: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    # Slicer passes the script's own arguments in sys.argv after the script path.
    sys.exit(main(sys.argv[1:]))
