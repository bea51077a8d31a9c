"""The image-text model: organ image encoder + text alignment projection, saved as one folder.

A trained model is a folder holding ``model.safetensors`` (tensors) and ``config.json``
(encoder sizes, crop settings, organ keys, training summary). The shipped default
lives in ``MedSORALib/resources/weights/image/``.

Inference::

    model = ImageTextModel.load()                  # shipped weights, CPU
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
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ModelError
from ..files import atomic_write_bytes
from ..organs import STRUCTURES
from .crops import CropConfig
from .encoder import EncoderConfig, OrganImageEncoder
from .losses import slice_mean_similarity

DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "resources" / "weights" / "image"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


@dataclass
class OrganFeatures:
    """Image features of the organs of one volume.

    Attributes:
        keys: organ keys, the column order of :meth:`ImageTextModel.score`.
        slice_features: (n_organs, S, d) L2-normalised fused slice features (S = D, or 1 in mode "3d").
        organ_probabilities: (n_organs, n_classes) softmax of the organ-classification head
            (columns: ``ImageTextModel.organ_keys``).
    """

    keys: list[str]
    slice_features: torch.Tensor
    organ_probabilities: np.ndarray

    def predicted_organs(self, organ_keys: Sequence[str]) -> dict[str, str]:
        """Organ named by the classification head for each crop key."""
        return {k: organ_keys[int(i)] for k, i in zip(self.keys, self.organ_probabilities.argmax(1))}


class ImageTextModel(nn.Module):
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
        organ_keys = list(organ_keys)
        if encoder_config.n_classes != len(organ_keys):
            raise ModelError(f"encoder has {encoder_config.n_classes} classes but {len(organ_keys)} organ keys")
        crop_config = crop_config or CropConfig(D=encoder_config.D, H=encoder_config.H, W=encoder_config.W)
        if (crop_config.D, crop_config.H, crop_config.W) != (encoder_config.D, encoder_config.H, encoder_config.W):
            raise ModelError("crop size and encoder input size differ")
        self.encoder_config = encoder_config
        self.crop_config = crop_config
        self.organ_keys = organ_keys
        self.metadata = dict(metadata or {})
        self.encoder = OrganImageEncoder(encoder_config)
        self.text_projection = nn.Linear(encoder_config.text_dim, encoder_config.slice_hidden)
        self.source: str | None = None

    # ----- training-time forward passes -------------------------------------------------------------
    def forward(self, crops: torch.Tensor, text_embeddings: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """crops (B, D, H, W) -> encoder outputs (see :class:`OrganImageEncoder`); with ``text_embeddings``
        (N, text_dim) also ``text_features`` (N, d), their projection by ``W_align``."""
        out = self.encoder(crops)
        if text_embeddings is not None:
            out["text_features"] = self.text_projection(text_embeddings)
        return out

    def project_text(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(N, text_dim) sentence embeddings -> (N, d)."""
        return self.text_projection(text_embeddings)

    def similarity(self, slice_features: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
        """(n_organs, S, d) image features and (N, text_dim) embeddings -> (N, n_organs) mean-over-slices cosine."""
        return slice_mean_similarity(slice_features, self.project_text(text_embeddings))

    # ----- inference API -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode_organs(self, crops: Mapping[str, torch.Tensor], batch_size: int = 16) -> OrganFeatures:
        """Encode the crops of one volume.

        Args:
            crops: organ key -> (D, H, W) tensor from :func:`MedSORALib.image.crops.organ_crops`
                with this model's ``crop_config``.
            batch_size: organs per forward pass.

        Returns:
            :class:`OrganFeatures` with keys in the order of ``crops``.
        """
        if not crops:
            raise ModelError("no organ crops to encode")
        expected = (self.encoder_config.D, self.encoder_config.H, self.encoder_config.W)
        keys = list(crops)
        for k in keys:
            if tuple(crops[k].shape) != expected:
                raise ModelError(f"crop of {k} has shape {tuple(crops[k].shape)}, the model expects {expected}")
        was_training = self.training
        self.eval()
        feats, probs = [], []
        try:
            for start in range(0, len(keys), batch_size):
                batch = torch.stack([torch.as_tensor(crops[k], dtype=torch.float32) for k in
                                     keys[start:start + batch_size]]).to(self.device)
                out = self.encoder(batch)
                feats.append(torch.nn.functional.normalize(out["features"].float(), dim=-1).cpu())
                probs.append(torch.softmax(self.encoder.organ_logits(out).float(), dim=-1).cpu())
        finally:
            self.train(was_training)
        return OrganFeatures(keys=keys, slice_features=torch.cat(feats), organ_probabilities=torch.cat(probs).numpy())

    @torch.no_grad()
    def score(self, features: OrganFeatures, text_embeddings: np.ndarray) -> np.ndarray:
        """Cosine similarity (mean over slices) of each text with each organ.

        Args:
            features: from :meth:`encode_organs`.
            text_embeddings: (N, text_dim) float sentence embeddings (``TextEncoder.encode``).

        Returns:
            float32 (N, len(features.keys)) in [-1, 1].
        """
        emb = np.asarray(text_embeddings, dtype=np.float32)
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2 or emb.shape[1] != self.encoder_config.text_dim:
            raise ModelError(f"text embeddings must be (N, {self.encoder_config.text_dim}), got {emb.shape}")
        text = self.text_projection(torch.from_numpy(emb).to(self.device)).float().cpu()
        sims = slice_mean_similarity(features.slice_features.float(), text)
        return sims.clamp(-1.0, 1.0).numpy().astype(np.float32)

    def encode_volume(self, volume, masks: Mapping[str, np.ndarray]) -> OrganFeatures:
        """Crop every organ of ``volume`` with this model's crop settings and encode them."""
        from .crops import organ_crops

        return self.encode_organs(organ_crops(volume, masks, self.crop_config))

    def info(self) -> dict:
        """Model identity for JSON outputs."""
        meta = self.metadata
        return {
            "name": meta.get("name", "medsora-image"),
            "version": meta.get("version"),
            "mode": self.encoder_config.mode,
            "preset": meta.get("preset"),
            "width": self.encoder_config.slice_hidden,
            "input": [self.encoder_config.D, self.encoder_config.H, self.encoder_config.W],
            "parameters": int(sum(p.numel() for p in self.parameters())),
            "organ_keys": list(self.organ_keys),
            "trained_on": meta.get("trained_on"),
            "source": self.source,
            "weights_sha256": meta.get("weights_sha256"),
        }

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
        try:
            enc = EncoderConfig.from_dict(config["encoder"])
            crop = CropConfig.from_dict(config["crop"])
            keys = config.get("organ_keys", list(STRUCTURES))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"invalid image model configuration: {exc}") from exc
        return cls(enc, crop, keys, config.get("metadata"))

    @classmethod
    def load(cls, weights_dir: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> "ImageTextModel":
        """Load a model folder (default: the shipped weights) onto ``device``.

        Raises:
            ModelError: the folder, its config or its weights are missing or do not match.
        """
        folder = Path(weights_dir) if weights_dir is not None else DEFAULT_WEIGHTS_DIR
        cfg_path, w_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise ModelError(f"no image model in {folder} (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
        try:
            config = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as exc:
            raise ModelError(f"{cfg_path} is not valid JSON: {exc}") from exc
        model = cls.from_config(config)
        from safetensors.torch import load_file

        try:
            state = load_file(str(w_path))
            model.load_state_dict(state, strict=True)
        except (RuntimeError, OSError) as exc:
            raise ModelError(f"weights in {w_path} do not fit the configuration: {str(exc).splitlines()[0]}") from exc
        model.source = str(folder)
        model.eval()
        return model.to(device)
