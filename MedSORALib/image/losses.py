"""Training losses of the image side (docs/training.md, "Image side" and "Training"), usable and testable alone.

- :func:`slice_mean_similarity`: similarity of organ images and texts, the mean over slices of cosines.
- :class:`OrganInfoNCE`: InfoNCE over organs with temperature tau (paper: 0.1); a text may have several
  positive organs (a "kidney" text matches both kidneys), then the positives' probabilities are summed.
- :class:`OrganClassificationLoss`: ``L_image = CE_2D + CE_3D + CE_fused`` over whichever heads the
  encoder mode has.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn


def slice_mean_similarity(organ_features: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
    """Mean over slices of the cosine similarity between each text and each organ.

    Args:
        organ_features: (n_organs, S, d) slice features of each organ (S slices; S = 1 for a single vector).
        text_features: (N, d) projected text features.

    Returns:
        (N, n_organs) similarities in [-1, 1].
    """
    organ = F.normalize(organ_features, dim=-1)
    text = F.normalize(text_features, dim=-1)
    return torch.einsum("nd,osd->nos", text, organ).mean(-1)


class OrganInfoNCE(nn.Module):
    """InfoNCE of texts against organs.

    ``loss = mean_t [ -log( sum_{o in P(t)} exp(s_to / tau) / sum_o exp(s_to / tau) ) ]``

    Args:
        temperature: tau (paper: 0.1).

    ``forward(similarity (N, n_organs), positives bool (N, n_organs)) -> scalar``. Texts without any
    positive organ among the columns are left out; when none is left the loss is an error.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError("temperature must be positive")
        self.temperature = float(temperature)

    def forward(self, similarity: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        if similarity.shape != positives.shape:
            raise ValueError(f"similarity {tuple(similarity.shape)} and positives {tuple(positives.shape)} differ")
        positives = positives.bool()
        keep = positives.any(dim=1)
        if not bool(keep.any()):
            raise ValueError("no text has a positive organ among the organs given")
        logits = similarity[keep] / self.temperature
        pos = positives[keep]
        log_all = torch.logsumexp(logits, dim=1)
        log_pos = torch.logsumexp(logits.masked_fill(~pos, float("-inf")), dim=1)
        return (log_all - log_pos).mean()


class OrganClassificationLoss(nn.Module):
    """Sum of cross-entropies of the organ-classification heads present in an encoder output.

    ``forward(outputs: {"logits_2d"|"logits_3d"|"logits_fused": (B, C)}, labels (B,)) -> (total, parts)``
    where ``parts`` maps ``"ce_2d"`` etc. to detached floats.
    """

    HEADS = (("logits_2d", "ce_2d"), ("logits_3d", "ce_3d"), ("logits_fused", "ce_fused"))

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = float(label_smoothing)

    def forward(self, outputs: Mapping[str, torch.Tensor], labels: torch.Tensor):
        total = None
        parts: dict[str, float] = {}
        for logit_key, name in self.HEADS:
            if logit_key in outputs:
                ce = F.cross_entropy(outputs[logit_key].float(), labels, label_smoothing=self.label_smoothing)
                parts[name] = float(ce.detach())
                total = ce if total is None else total + ce
        if total is None:
            raise ValueError("the encoder output has no logits")
        return total, parts
