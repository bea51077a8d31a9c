"""Checkpoints of a training run without pickles: the model folder, the optimizer's tensors as safetensors
with its other state as JSON, and the run state (epoch, history, configuration) as JSON."""
from __future__ import annotations

import json
from pathlib import Path

from MedSORALib.files import atomic_write_bytes, atomic_write_text


def optimizer_to_safetensors(optimizer) -> tuple[bytes, str]:
    """Optimizer state as (safetensors bytes of its tensors, JSON of everything else)."""
    import torch
    from safetensors.torch import save

    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    meta = {"param_groups": state["param_groups"], "scalars": scalars}
    return save(tensors) if tensors else save({"_empty": torch.zeros(1)}), json.dumps(meta)


def optimizer_from_safetensors(optimizer, blob: bytes, meta_json: str) -> None:
    """Inverse of :func:`optimizer_to_safetensors`, loaded into ``optimizer``."""
    from safetensors.torch import load

    tensors = load(blob)
    meta = json.loads(meta_json)
    state: dict = {}
    for key, value in tensors.items():
        if key == "_empty":
            continue
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    # JSON turns tuples (Adam's betas) into lists; give them back their type.
    groups = [{k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
              for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(folder: Path, model, optimizer, state: dict) -> None:
    """Write the model, the optimizer and ``state`` into ``folder`` (each file atomically)."""
    blob, meta = optimizer_to_safetensors(optimizer)
    model.save(folder)
    atomic_write_bytes(folder / "optimizer.safetensors", blob)
    atomic_write_text(folder / "optimizer.json", meta)
    atomic_write_text(folder / "state.json", json.dumps(state, indent=2))


def load_checkpoint(folder: Path, model, optimizer) -> dict:
    """Load a checkpoint folder into ``model`` and ``optimizer``; returns the saved run state."""
    from safetensors.torch import load_file

    from MedSORALib.errors import ModelError

    if not (folder / "state.json").is_file():
        raise ModelError(f"no checkpoint in {folder} (state.json missing)")
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
    optimizer_from_safetensors(optimizer, (folder / "optimizer.safetensors").read_bytes(),
                               (folder / "optimizer.json").read_text())
    return json.loads((folder / "state.json").read_text())
