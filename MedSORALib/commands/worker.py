"""``medsora worker``: serve scoring requests as JSON lines on stdin/stdout (:mod:`MedSORALib.worker`, docs/worker.md)."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Keep the models loaded and score CTs on request: one JSON request a line on
stdin, one JSON event a line on stdout (progress, result or error). The 3D
Slicer module runs this in a child process; scripts can too."""

EPILOG = """\
example:
  echo '{"id": 1, "volume": "ct.nii.gz", "segmentation": "seg.nii.gz", "label_scheme": "totalsegmentator",
         "symptoms": ["jaundice"], "output": "out/p1"}' | medsora worker"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser("worker", help="scoring process for the Slicer module (JSON lines on stdin/stdout)",
                                 description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)


def run(args) -> int:
    from ..worker.server import serve

    return serve()
