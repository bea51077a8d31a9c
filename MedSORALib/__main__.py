"""``python -m MedSORALib`` runs the ``medsora`` command line."""
import sys

from .cli import main

sys.exit(main())
