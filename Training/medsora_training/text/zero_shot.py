"""Zero-shot baseline: cosine between a symptom and a prompt per organ, with the same frozen encoder.

Each class gets a few prompts; the class vector is the normalised mean of the prompts'
embeddings, and a symptom's score for the class is its cosine with that vector. No training.
"""

from __future__ import annotations

import numpy as np

from MedSORALib.organs import CLASS_DISPLAY_NAMES

PROMPT_TEMPLATES = (
    "a symptom caused by a disease of the {organ}",
    "clinical signs of {organ} disease",
    "the patient has a problem with the {organ}",
)


def class_prompts(class_key: str) -> list[str]:
    """Prompts of one reasoning class, e.g. 'clinical signs of pancreas disease'."""
    name = CLASS_DISPLAY_NAMES[class_key]
    return [template.format(organ=name) for template in PROMPT_TEMPLATES]


def zero_shot_class_vectors(encoder, classes) -> np.ndarray:
    """(C, D) unit-norm prompt vectors for ``classes`` with ``encoder`` (a TextEncoder)."""
    vectors = []
    for cls in classes:
        emb = encoder.encode(class_prompts(cls)).mean(axis=0)
        vectors.append(emb / max(float(np.linalg.norm(emb)), 1e-12))
    return np.stack(vectors).astype(np.float32)


def zero_shot_scores(embeddings: np.ndarray, class_vectors: np.ndarray) -> np.ndarray:
    """(N, D) text embeddings x (C, D) class vectors -> (N, C) cosine similarities."""
    return np.asarray(embeddings, dtype=np.float32) @ class_vectors.T
