"""A BERT encoder forward pass in plain torch, for sentence embeddings at inference.

Loading a sentence encoder through ``transformers.AutoModel`` imports the
library's model registry, which costs seconds at start-up; the bundled
all-MiniLM-L6-v2 is a plain BERT, so :class:`BertEncoder` runs it from its
``config.json`` and ``model.safetensors`` with the same parameter names
(``embeddings.*``, ``encoder.layer.N.*``) and the same arithmetic as
transformers' ``BertModel`` (post-LayerNorm blocks, erf GELU, additive
attention mask). Tokenisation uses the folder's ``tokenizer.json`` with the
``tokenizers`` library. :func:`supports` says whether a folder can be run this
way; other folders go through transformers.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

#: activations of ``config.json``'s ``hidden_act`` that this module implements
_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def supports(folder: Path) -> bool:
    """True when ``folder`` holds an absolute-position BERT with safetensors weights and a ``tokenizer.json``."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (config.get("model_type") == "bert"
            and config.get("position_embedding_type", "absolute") == "absolute"
            and config.get("hidden_act") in _ACTIVATIONS
            and (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file())


class _Linear(nn.Linear):
    def reset_parameters(self) -> None:  # left uninitialised: every weight is loaded from the file
        pass


class _Embedding(nn.Embedding):
    def reset_parameters(self) -> None:  # as _Linear
        pass


class _Layer(nn.Module):
    def __init__(self, width: int, heads: int, inner: int, eps: float, activation: str):
        super().__init__()
        self.heads = heads
        self.query = _Linear(width, width)
        self.key = _Linear(width, width)
        self.value = _Linear(width, width)
        self.attention_out = _Linear(width, width)
        self.attention_norm = nn.LayerNorm(width, eps=eps)
        self.intermediate = _Linear(width, inner)
        self.activation = _ACTIVATIONS[activation]()
        self.out = _Linear(inner, width)
        self.out_norm = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, width = x.shape

        def split(t):
            return t.view(b, n, self.heads, width // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(width // self.heads) + bias
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, width)
        x = self.attention_norm(x + self.attention_out(context))
        return self.out_norm(x + self.out(self.activation(self.intermediate(x))))


class BertEncoder(nn.Module):
    """BERT embeddings and encoder layers; ``forward`` returns the last hidden states ``(B, T, width)``."""

    def __init__(self, config: dict):
        super().__init__()
        width, eps = int(config["hidden_size"]), float(config.get("layer_norm_eps", 1e-12))
        self.word = _Embedding(int(config["vocab_size"]), width)
        self.position = _Embedding(int(config["max_position_embeddings"]), width)
        self.token_type = _Embedding(int(config.get("type_vocab_size", 2)), width)
        self.norm = nn.LayerNorm(width, eps=eps)
        self.layers = nn.ModuleList(
            _Layer(width, int(config["num_attention_heads"]), int(config["intermediate_size"]), eps,
                   config.get("hidden_act", "gelu"))
            for _ in range(int(config["num_hidden_layers"])))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = self.norm(self.word(input_ids) + self.token_type(types) + self.position(positions)[None])
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, bias)
        return x

    @staticmethod
    def rename(saved: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """transformers' ``BertModel`` parameter names -> this module's (pooler and buffers dropped)."""
        names = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
                 "attention.output.dense": "attention_out", "attention.output.LayerNorm": "attention_norm",
                 "intermediate.dense": "intermediate", "output.dense": "out", "output.LayerNorm": "out_norm"}
        top = {"embeddings.word_embeddings": "word", "embeddings.position_embeddings": "position",
               "embeddings.token_type_embeddings": "token_type", "embeddings.LayerNorm": "norm"}
        out = {}
        for key, value in saved.items():
            key = key[len("bert."):] if key.startswith("bert.") else key
            stem, _, kind = key.rpartition(".")
            if stem in top:
                out[f"{top[stem]}.{kind}"] = value
            elif stem.startswith("encoder.layer."):
                index, _, inner = stem[len("encoder.layer."):].partition(".")
                if inner in names:
                    out[f"layers.{index}.{names[inner]}.{kind}"] = value
        return out

    @classmethod
    def load(cls, folder: Path) -> "BertEncoder":
        """The model of ``folder`` (``config.json`` + ``model.safetensors``), in eval mode; loading is strict."""
        from safetensors.torch import load_file

        model = cls(json.loads((folder / "config.json").read_text()))
        model.load_state_dict(cls.rename(load_file(str(folder / "model.safetensors"))), strict=True, assign=True)
        return model.eval()


def load_tokenizer(folder: Path, max_length: int):
    """The folder's ``tokenizer.json``, truncating to ``max_length`` and padding each batch to its longest text."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    pad = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad is None else pad, pad_token="[PAD]")
    return tokenizer
