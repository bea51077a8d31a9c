"""The guard of MedSORA's windowless Slicer scripts (``MedSORA/Scripts/score.py`` and ``batch.py``).

Run with ``Slicer --no-main-window --python-script``, an uncaught exception would leave a Slicer process without a
window running; each script therefore turns every outcome into one line on stderr and an exit status
(see docs/slicer.md). Only the standard library is imported here, so that the guard works when MedSORA's own
packages are missing.
"""
from __future__ import annotations

import sys
from typing import Callable

#: What a script adds to an ImportError: where the missing packages come from.
MISSING_PACKAGES = ("MedSORA's Python packages are missing: click Apply once in the MedSORA module, or pip install "
                    "-r MedSORA/Resources/requirements.txt")


def import_error_line(prog: str, exc: ImportError) -> str:
    """The one line a script prints when a package it needs cannot be imported."""
    return f"{prog}: error: {type(exc).__name__}: {exc} ({MISSING_PACKAGES})"


def run_guarded(prog: str, main: Callable[[list[str] | None], int], argv: list[str] | None,
                exit_unexpected: int, exit_interrupted: int) -> int:
    """``main(argv)``'s status, with every exception turned into one line on stderr and a status.

    A :class:`~MedSORALib.errors.MedSORAError` gives its own exit code (2 for bad input); argparse's ``SystemExit``
    keeps its code (0 for ``--help``, 2 for a usage error, already printed); Ctrl-C gives ``exit_interrupted``;
    anything else ``exit_unexpected``, with the exception's kind.
    """
    from .errors import MedSORAError

    try:
        return int(main(argv) or 0)
    except MedSORAError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return exit_interrupted
    except ImportError as exc:
        print(import_error_line(prog, exc), file=sys.stderr)
        return exit_unexpected
    except BaseException as exc:  # noqa: BLE001 - an uncaught exception would leave a windowless Slicer running
        message = " ".join(str(exc).split()) or "(no message)"
        print(f"{prog}: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return exit_unexpected
