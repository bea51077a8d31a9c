"""Organ masks kept as one label map.

A 512 x 512 x 300 CT has 78 MB per boolean mask, so the 13 masks of its
segmentation take 1 GB as separate arrays. :class:`LabelMasks` holds the label
map instead and computes each organ's boolean mask when it is asked for; code
that handles one organ at a time (cropping, counting, writing) then never holds
more than one mask. It is a read-only ``Mapping`` of structure key -> boolean
array ``[i, j, k]``, like the plain dict of arrays it stands for.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Iterable, Iterator, Sequence

import numpy as np

from . import organs


class LabelMasks(Mapping):
    """Structure key -> boolean mask, computed from a label map on access.

    Args:
        labels: integer label map ``[i, j, k]`` (kept, not copied; its memory order is kept by the masks).
        values: structure key -> the label values of that structure; keys are kept in catalog order.
    """

    def __init__(self, labels: np.ndarray, values: Mapping[str, Sequence[int]]):
        self.labels = labels
        self.values = {k: tuple(int(v) for v in values[k]) for k in organs.structures_present(values)}

    @classmethod
    def from_label_table(cls, labels: np.ndarray, table: Mapping[int, str], present: Iterable[int]) -> "LabelMasks":
        """The structures of ``table`` (label value -> key) whose values are among ``present``."""
        present = set(int(v) for v in present)
        values: dict[str, list[int]] = {}
        for value, key in table.items():
            if int(value) in present:
                values.setdefault(key, []).append(int(value))
        return cls(labels, values)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.labels.shape)

    def __getitem__(self, key: str) -> np.ndarray:
        values = self.values[key]
        return self.labels == values[0] if len(values) == 1 else np.isin(self.labels, values)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def restrict(self, keys: Iterable[str]) -> "LabelMasks":
        """The same label map limited to ``keys``."""
        wanted = set(keys)
        return LabelMasks(self.labels, {k: v for k, v in self.values.items() if k in wanted})


def restrict(masks: Mapping[str, np.ndarray], keys: Iterable[str]) -> Mapping[str, np.ndarray]:
    """``masks`` limited to ``keys`` (in that order for a dict), without computing label-map masks."""
    if isinstance(masks, LabelMasks):
        return masks.restrict(keys)
    return {k: masks[k] for k in keys}
