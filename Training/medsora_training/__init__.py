"""MedSORA's training code, kept apart from the runtime package ``MedSORALib``.

Scoring needs none of this: ``MedSORALib`` loads trained weights; this package makes them.

- :mod:`.train` (the image-text run of ``Training/train.py``), :mod:`.train_text` (the text models of
  ``Training/train_text.py``), with :mod:`.checkpoint`, :mod:`.distributed` and :mod:`.schedule`;
- :mod:`.image_data`: CT cases with organ masks (BTCV, TotalSegmentator, label maps, phantoms) and the
  symptom texts the image side trains on;
- :mod:`.image`: crop augmentation, 2D pretrained weights, organ-identification and ranking metrics;
- :mod:`.text`: fitting the text reasoner (:mod:`.text.fitting`), ranking metrics, the zero-shot baseline.

The programs in ``Training/`` import it; installed with ``pip install -e ./Training`` (see
``docs/training.md``), or found beside them when a program runs as ``python Training/<program>.py``.
"""
from __future__ import annotations

from pathlib import Path

#: The repository the package is used from: configurations (``Training/configs``), data lists and
#: relative paths in them are resolved against it. Training runs from a checkout, not a wheel.
REPO = Path(__file__).resolve().parents[2]
