"""The image-text model: organ image encoder + text alignment projection, saved as one folder.

A trained model is a folder holding ``model.safetensors`` (tensors) and ``config.json``
(encoder sizes, crop settings, organ keys, training summary). The shipped default
lives in ``MedSORALib/resources/weights/image/``.

:class:`ImageTextModel` is the training-time model (its encoder is built from MONAI blocks);
scoring loads the same folder into :class:`~MedSORALib.image.inference.InferenceModel`, a
plain-torch copy with the same inference API::

    model = InferenceModel.load()                  # shipped weights, CPU
    crops = organ_crops(volume, masks, model.crop_config)
    features = model.encode_organs(crops)          # once per volume
    sims = model.score(features, text_embeddings)  # (N texts, n organs) cosine in [-1, 1]

Columns of ``score`` follow ``features.keys`` (the organs present in that volume, in
catalog order); ``model.organ_keys`` lists all organs the classification heads know.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from ..errors import ModelError
from ..files import atomic_write_bytes
from ..organs import STRUCTURES
from .crops import CropConfig
from .encoder import EncoderConfig, OrganImageEncoder
from .inference import (CONFIG_FILE, DEFAULT_WEIGHTS_DIR, WEIGHTS_FILE, OrganFeatures, OrganScoring,  # noqa: F401
                        checked_crop_config, parse_config, read_model_folder)
from .losses import slice_mean_similarity

FORMAT_VERSION = 1


class ImageTextModel(OrganScoring, nn.Module):
    """Organ image encoder plus ``W_align``, the linear projection of a 384-d text embedding to width d.

    Args:
        encoder_config: encoder sizes and fusion mode.
        crop_config: how crops for this model are made.
        organ_keys: class order of the organ-classification heads (default: the 13 structures).
        metadata: free JSON-able training summary kept in ``config.json``.
    """

    def __init__(self, encoder_config: EncoderConfig, crop_config: CropConfig | None = None,
                 organ_keys: Sequence[str] = STRUCTURES, metadata: dict | None = None):
        super().__init__()
        self.encoder_config = encoder_config
        self.crop_config = checked_crop_config(encoder_config, crop_config, organ_keys)
        self.organ_keys = list(organ_keys)
        self.metadata = dict(metadata or {})
        self.encoder = OrganImageEncoder(encoder_config)
        self.text_projection = nn.Linear(encoder_config.text_dim, encoder_config.slice_hidden)
        self.source: str | None = None

    # ----- training-time forward passes -------------------------------------------------------------
    def forward(self, crops: torch.Tensor, text_embeddings: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """crops (B, D, H, W) -> encoder outputs (see :class:`OrganImageEncoder`); with ``text_embeddings``
        (N, text_dim) also ``similarity`` (N, B), :meth:`similarity` of the texts with the B organs (computed
        in the forward pass so that a DDP-wrapped model reduces the projection's gradients)."""
        out = self.encoder(crops)
        if text_embeddings is not None:
            out["similarity"] = self.similarity(out["features"].float(), text_embeddings)
        return out

    def project_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(N, text_dim) sentence embeddings -> (N, d)."""
        return self.text_projection(text_embeddings)

    def similarity(self, slice_features: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(n_organs, S, d) image features and (N, text_dim) embeddings -> (N, n_organs) mean-over-slices cosine."""
        return slice_mean_similarity(slice_features, self.project_text(text_embeddings).float())

    # ----- persistence ---------------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "encoder": self.encoder_config.to_dict(),
            "crop": self.crop_config.to_dict(),
            "organ_keys": list(self.organ_keys),
            "metadata": self.metadata,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``folder`` (atomically, file by file)."""
        from safetensors.torch import save

        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        blob = save(state)
        self.metadata["weights_sha256"] = hashlib.sha256(blob).hexdigest()
        atomic_write_bytes(folder / WEIGHTS_FILE, blob)
        atomic_write_bytes(folder / CONFIG_FILE, json.dumps(self.config_dict(), indent=2).encode())
        return folder

    @classmethod
    def from_config(cls, config: Mapping) -> "ImageTextModel":
        return cls(*parse_config(config))

    @classmethod
    def load(cls, weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "ImageTextModel":
        """Load a model folder (default: the shipped weights) onto ``device``, strictly, for training or export.

        Scoring uses :class:`~MedSORALib.image.inference.InferenceModel`, which gives the same outputs
        without importing MONAI.

        Raises:
            ModelError: the folder, its config or its weights are missing or do not match.
        """
        folder, config, state = read_model_folder(weights_dir)
        model = cls.from_config(config)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ModelError(f"weights in {folder / WEIGHTS_FILE} do not fit the configuration: "
                             f"{str(exc).splitlines()[0]}") from exc
        model.source = str(folder)
        model.eval()
        return model.to(device)
