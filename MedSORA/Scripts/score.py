#!/usr/bin/env python
"""Score a CT for symptoms without a window: 3D Slicer batch mode or plain Python.

Inside 3D Slicer (no window, no dialogs):

    Slicer --no-splash --no-main-window --python-script MedSORA/Scripts/score.py \\
        --volume ct.nii.gz --segmentation seg.nii.gz --label-scheme totalsegmentator \\
        --symptom "painless jaundice with pale stools" --output out/patient1

With plain Python (MedSORALib importable or next to this file in the repository):

    python MedSORA/Scripts/score.py --volume ... --symptom ... --output ...

The arguments and the outputs are those of ``medsora score`` (same scoring entry,
same files); the exit status is 0 on success and 2 for bad input.
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
    from MedSORALib.commands import score
    from MedSORALib.errors import MedSORAError

    parser = argparse.ArgumentParser(
        prog="score.py", description=score.DESCRIPTION, epilog=score.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    score.configure_parser(parser)
    args = parser.parse_args(argv)
    try:
        return score.run(args)
    except MedSORAError as exc:
        print(f"score.py: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    # Slicer passes the script's own arguments in sys.argv after the script path.
    sys.exit(main(sys.argv[1:]))
