"""Learnable organ anchors and the soft labels they define (Med-SORA paper, arXiv:2511.06752; docs/text-model.md).

Each reasoning class ``i`` owns two vectors in the frozen sentence-embedding space:

* a positive anchor ``p_i``: what is specific to symptoms of organ ``i``;
* a negative anchor ``n_i``: what the symptoms of the *other* organs share.

For a text embedding ``f`` the two similarities are ``cos(p_i, f)`` and ``cos(n_i, f)``.
The anchors are trained with the margin function

    M(a, b) = max(0, m - a) + max(0, b - (1 - m))

which pushes the similarity ``a`` that should be high above ``m`` and the similarity ``b``
that should be low below ``1 - m``. For organ ``i`` the anchor loss is the mean of
``M(cos(p_i, f), cos(n_i, f))`` over the texts of organ ``i`` plus the mean of
``M(cos(n_i, f), cos(p_i, f))`` over the texts of the other organs (roles swapped).
The total loss sums over organs.

The soft label of any text for organ ``i`` is ``y_i = (cos(p_i, f) + 1) / 2`` in [0, 1],
with no softmax across organs, so one text may be close to several organs' anchors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

DEFAULT_MARGIN = 0.8


def margin_function(a: torch.Tensor, b: torch.Tensor, margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """Elementwise margin function ``M(a, b) = max(0, m - a) + max(0, b - (1 - m))``.

    Args:
        a: similarities that should be at least ``margin`` (any shape).
        b: similarities that should be at most ``1 - margin`` (same shape as ``a``).
        margin: ``m`` in (0.5, 1]; the paper uses 0.8.

    Returns:
        tensor of the broadcast shape of ``a`` and ``b``, >= 0.
    """
    return F.relu(margin - a) + F.relu(b - (1.0 - margin))


class OrganAnchors(nn.Module):
    """Positive and negative anchors of ``n_classes`` reasoning classes in a ``dim``-d embedding space.

    Args:
        n_classes: number of reasoning classes C.
        dim: embedding width D (384 for the default encoder).

    Attributes:
        positive: (C, D) parameter, positive anchors p_i (not constrained to unit norm; cosine is used).
        negative: (C, D) parameter, negative anchors n_i.
    """

    def __init__(self, n_classes: int, dim: int) -> None:
        super().__init__()
        self.positive = nn.Parameter(torch.randn(n_classes, dim) / dim**0.5)
        self.negative = nn.Parameter(torch.randn(n_classes, dim) / dim**0.5)

    @property
    def n_classes(self) -> int:
        return int(self.positive.shape[0])

    @torch.no_grad()
    def init_from_centroids(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Start p_i at the mean embedding of class i and n_i at the mean of all other classes' texts.

        Args:
            embeddings: (N, D) float text embeddings.
            labels: (N,) long class indices in [0, C).
        """
        for i in range(self.n_classes):
            own = embeddings[labels == i]
            other = embeddings[labels != i]
            if len(own):
                self.positive[i] = F.normalize(own.mean(0), dim=0)
            if len(other):
                self.negative[i] = F.normalize(other.mean(0), dim=0)

    def similarities(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine similarities of texts to every anchor.

        Args:
            embeddings: (N, D) text embeddings.

        Returns:
            (pos, neg): two (N, C) tensors, ``pos[k, i] = cos(p_i, f_k)``, ``neg[k, i] = cos(n_i, f_k)``.
        """
        f = F.normalize(embeddings, dim=-1)
        pos = f @ F.normalize(self.positive, dim=-1).T
        neg = f @ F.normalize(self.negative, dim=-1).T
        return pos, neg

    def soft_labels(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Soft labels ``y_i = (cos(p_i, f) + 1) / 2``.

        Args:
            embeddings: (N, D) text embeddings.

        Returns:
            (N, C) tensor in [0, 1].
        """
        pos, _ = self.similarities(embeddings)
        return (pos + 1.0) / 2.0

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.soft_labels(embeddings)


class AnchorLoss(nn.Module):
    """Anchor loss summed over organs (see module docstring).

    Args:
        margin: ``m`` of the margin function (paper: 0.8).

    Call with ``(pos, neg, labels)``: pos and neg (N, C) cosine similarities from
    :meth:`OrganAnchors.similarities`, labels (N,) long class indices. Returns a scalar.
    An organ without texts in the batch contributes only its "other organs" term, and vice versa.
    """

    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        super().__init__()
        if not 0.5 < margin <= 1.0:
            raise ValueError(f"margin must lie in (0.5, 1], got {margin}")
        self.margin = margin

    def forward(self, pos: torch.Tensor, neg: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n_classes = pos.shape[1]
        own = F.one_hot(labels, n_classes).to(pos.dtype)  # (N, C): 1 where text k belongs to organ i
        other = 1.0 - own
        own_term = margin_function(pos, neg, self.margin)  # organ i's own texts: p_i close, n_i far
        other_term = margin_function(neg, pos, self.margin)  # other organs' texts: n_i close, p_i far
        own_count = own.sum(0)
        other_count = other.sum(0)
        own_mean = (own_term * own).sum(0) / own_count.clamp(min=1.0)
        other_mean = (other_term * other).sum(0) / other_count.clamp(min=1.0)
        return (own_mean + other_mean).sum()


@dataclass
class AnchorTrainingConfig:
    """Hyper-parameters of anchor training (full batch, Adam)."""

    margin: float = DEFAULT_MARGIN
    epochs: int = 300
    lr: float = 1e-2
    seed: int = 0
    init: str = "centroids"  # "centroids" or "random"


def train_anchors(
    embeddings: np.ndarray, labels: np.ndarray, n_classes: int, config: AnchorTrainingConfig | None = None
) -> tuple[OrganAnchors, list[float]]:
    """Fit organ anchors on the training texts.

    Args:
        embeddings: (N, D) float32 text embeddings.
        labels: (N,) int class indices in [0, n_classes).
        n_classes: C.
        config: training hyper-parameters.

    Returns:
        (anchors, losses): the trained module (eval mode) and the loss per epoch.
    """
    config = config or AnchorTrainingConfig()
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    anchors = OrganAnchors(n_classes, x.shape[1])
    with torch.no_grad():
        anchors.positive.copy_(torch.randn(anchors.positive.shape, generator=generator) / x.shape[1] ** 0.5)
        anchors.negative.copy_(torch.randn(anchors.negative.shape, generator=generator) / x.shape[1] ** 0.5)
    if config.init == "centroids":
        anchors.init_from_centroids(x, y)
    loss_fn = AnchorLoss(config.margin)
    optimizer = torch.optim.Adam(anchors.parameters(), lr=config.lr)
    losses: list[float] = []
    for _ in range(config.epochs):
        optimizer.zero_grad()
        pos, neg = anchors.similarities(x)
        loss = loss_fn(pos, neg, y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    anchors.eval()
    return anchors, losses
