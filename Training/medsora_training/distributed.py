"""Distributed set-up of a training run: world size, rank and device, DDP when ``WORLD_SIZE`` > 1 (torchrun)."""
from __future__ import annotations

import os


class Dist:
    """World size, rank and device of this process; DDP (NCCL on CUDA, gloo on CPU) when ``WORLD_SIZE`` > 1."""

    def __init__(self, device: str):
        import torch

        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.startswith("cuda") and not torch.cuda.is_available():
            from MedSORALib.errors import MedSORAError

            raise MedSORAError("--device cuda was asked for but CUDA is not available")
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if device.startswith("cuda") else "gloo"
            dist.init_process_group(backend=backend)
            if device.startswith("cuda"):
                torch.cuda.set_device(self.local_rank)
                device = f"cuda:{self.local_rank}"
        self.device = torch.device(device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        """Average a float over ranks."""
        if self.world == 1:
            return value
        import torch
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def wrap(self, model):
        """``model`` in DistributedDataParallel when there are several ranks, else ``model`` itself."""
        if self.world == 1:
            return model
        import torch

        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[self.local_rank] if self.device.type == "cuda" else None, find_unused_parameters=True)

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()
