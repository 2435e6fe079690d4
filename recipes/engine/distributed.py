"""Devices and distribution: one device resolver, and the torchrun process group.

``resolve_device`` turns a ``--device`` / ``train.device`` name into a ``torch.device``
for every command; ``distribution`` joins the process group that ``torchrun`` describes in
the environment (gloo on CPU, nccl on CUDA); ``shard`` gives a process its rank.
"""

from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist

__all__ = ["DEVICE_HELP", "Distribution", "distribution", "resolve_device", "shard"]

DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


def shard() -> tuple[int, int]:
    """``(rank, world size)`` from torchrun's environment, ``(0, 1)`` outside it.

    Raises:
        ValueError: ``RANK``/``WORLD_SIZE`` are not integers or out of range.
    """
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError as err:
        raise ValueError(f"WORLD_SIZE/RANK must be integers ({err})") from None
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is not in [0, WORLD_SIZE {world})")
    return rank, world


def resolve_device(name: str, what: str = "device") -> torch.device:
    """The device a command runs on.

    Args:
        name: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. Under torchrun with several processes, ``"auto"`` and ``"cuda"``
            on a CUDA machine mean ``cuda:LOCAL_RANK``.
        what: how the setting is named in messages (``--device``, ``train.device``).

    Raises:
        ValueError: not a device name, or CUDA asked for where there is none.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a string ({DEVICE_HELP}), got {name!r}")
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{what} {name!r} is not a device name ({DEVICE_HELP})") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"{what} {name!r}: expected {DEVICE_HELP}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{what} is {name!r} but CUDA is not available here")
        if device.index is None and world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


@dataclasses.dataclass
class Distribution:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # whether fit() initialised the process group

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` is set on any rank (so that every rank stops at one step)."""
        if self.world == 1:
            return flag
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def mean(self, value: float, device: torch.device) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t) / self.world


def distribution(device_name: str) -> tuple[Distribution, str]:
    """Join the process group that torchrun describes in the environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distribution(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and (
        device_name == "auto" or device_name.startswith("cuda")
    )
    if use_cuda:
        device_name = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    owned = False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owned = True
    return Distribution(rank, dist.get_world_size(), local_rank, owned), device_name
