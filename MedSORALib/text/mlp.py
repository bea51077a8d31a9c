"""The relevance head g: an MLP on the frozen text embedding with one sigmoid output per class.

Trained with binary cross-entropy either on the anchors' soft labels (the method) or on
one-hot organ labels (the "hard labels" ablation); docs/text-model.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class RelevanceMLP(nn.Module):
    """Two-layer perceptron ``D -> hidden -> C`` with a sigmoid per class (no softmax).

    Args:
        dim: input width D (text embedding size, 384 for the default encoder).
        n_classes: number of reasoning classes C.
        hidden: hidden width.
        dropout: dropout rate after the hidden activation (training only).

    ``forward(x)`` takes (N, D) embeddings and returns (N, C) logits;
    :meth:`predict` returns sigmoid probabilities in [0, 1].
    """

    def __init__(self, dim: int, n_classes: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.n_classes = n_classes
        self.hidden = hidden
        self.net = nn.Sequential(
            nn.Linear(dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Sigmoid outputs (N, C) in [0, 1] (evaluation mode, no dropout)."""
        was_training = self.training
        self.eval()
        out = torch.sigmoid(self.net(x))
        self.train(was_training)
        return out


@dataclass
class MLPTrainingConfig:
    """Hyper-parameters of the relevance head (paper: 500 epochs, batch 32, lr 1e-3, Adam)."""

    epochs: int = 500
    batch_size: int = 32
    lr: float = 1e-3
    hidden: int = 256
    dropout: float = 0.1
    weight_decay: float = 0.0
    seed: int = 0


def train_mlp(
    embeddings: np.ndarray, targets: np.ndarray, config: MLPTrainingConfig | None = None
) -> tuple[RelevanceMLP, list[float]]:
    """Fit a :class:`RelevanceMLP` with binary cross-entropy to per-class targets.

    Args:
        embeddings: (N, D) float32 text embeddings.
        targets: (N, C) float targets in [0, 1] (soft labels or one-hot labels).
        config: training hyper-parameters.

    Returns:
        (model, losses): the trained model (eval mode) and the mean BCE per epoch.
    """
    config = config or MLPTrainingConfig()
    x = torch.as_tensor(np.asarray(embeddings, dtype=np.float32))
    t = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    if x.ndim != 2 or t.ndim != 2 or len(x) != len(t):
        raise ValueError(f"embeddings (N, D) and targets (N, C) expected, got {tuple(x.shape)} and {tuple(t.shape)}")
    torch.manual_seed(config.seed)
    model = RelevanceMLP(x.shape[1], t.shape[1], hidden=config.hidden, dropout=config.dropout)
    try:  # the fused CPU kernel is ~20 % faster for this many small steps
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, TypeError):
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    n = len(x)
    losses: list[float] = []
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            optimizer.zero_grad()
            loss = F.binary_cross_entropy_with_logits(model(x[idx]), t[idx])
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / n)
    model.eval()
    return model, losses
