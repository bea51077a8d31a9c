"""The learning-rate schedule: linear warm-up, then cosine decay to 5 % of the base rate."""
from __future__ import annotations

import math

#: the rate at the end of the cosine, as a fraction of the base rate
FLOOR = 0.05


def lr_at(step: int, total: int, warmup: int, base: float) -> float:
    """The learning rate at optimizer step ``step`` of ``total`` (``warmup`` of them warming up linearly)."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (FLOOR + (1.0 - FLOOR) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def set_rate(optimizer, lr: float | None = None, weight_decay: float | None = None) -> None:
    """Set the learning rate and / or weight decay of every parameter group."""
    for group in optimizer.param_groups:
        if lr is not None:
            group["lr"] = lr
        if weight_decay is not None:
            group["weight_decay"] = weight_decay
