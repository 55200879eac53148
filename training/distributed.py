"""Data parallelism without a DDP wrapper: every process's gradient is that of the global batch's loss.

A training step calls several model methods (not one forward()), and batches differ in size across
processes (unreadable videos are dropped, duplicate videos are removed across the global batch),
so the pieces DDP would hide are written out here:

- `global_keep`: the first caption of each video over the concatenated global batch (rank order).
- `gather_rows`: every process's rows of variable length; gradients flow to the local rows only.
- `sum_gradients`: the global loss is the same number on every process, and each process
  back-propagates only through its own rows, so the sum of the processes' gradients is the gradient
  of the global loss (parameters used by every process directly, such as logit_scale, are scaled
  by 1/world on each, see `shared`).
With one process every function is the identity.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.distributed as dist


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def init_from_env() -> tuple[int, int]:
    """Join the process group torchrun describes in the environment; (rank, world)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not active():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return rank(), world_size()


def global_keep(keys: Sequence[str]) -> list[int]:
    """Local indices of the captions to keep: the first of each video over the whole global batch.

    Two captions of one video in a batch would each have a false negative (its twin); the reference
    removes them, and across processes the same rule needs every process's keys."""
    everyone: list[list[str]] = [list(keys)]
    if active():
        everyone = [[] for _ in range(world_size())]
        dist.all_gather_object(everyone, list(keys))
    seen: set[str] = set()
    for other in everyone[: rank()]:
        seen.update(other)
    keep = []
    for i, k in enumerate(keys):
        if k not in seen:
            seen.add(k)
            keep.append(i)
    return keep


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate every process's rows [n_r, ...] in rank order; gradients reach the local rows."""
    if not active():
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    counts = [int(s) for s in sizes]
    top = max(counts)
    padded = torch.zeros((top, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x.detach()
    parts = [torch.zeros_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    parts = [p[:n] for p, n in zip(parts, counts)]
    parts[rank()] = x
    return torch.cat(parts)


def sum_(x: torch.Tensor) -> torch.Tensor:
    """Sum of a (detached) tensor over processes."""
    if not active():
        return x
    x = x.detach().clone()
    dist.all_reduce(x)
    return x


def shared(p: torch.Tensor) -> torch.Tensor:
    """A parameter every process uses in the global loss: same value, 1/world of the gradient each."""
    w = world_size()
    return p if w == 1 else p / w + (p * (1 - 1 / w)).detach()


def sum_gradients(model: torch.nn.Module) -> None:
    """Sum the gradients over processes (a process without rows contributes zeros)."""
    if not active():
        return
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)


def check_replicas_in_sync(model: torch.nn.Module) -> None:
    """Every process must end with the same weights; a silent divergence would waste the run."""
    if not active():
        return
    local = torch.stack([sum(p.detach().double().sum() for p in model.parameters())])
    local = local.to(next(model.parameters()).device)
    all_sums = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(all_sums, local)
    sums = torch.cat(all_sums)
    if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-9, atol=1e-6):
        raise RuntimeError(f"data-parallel replicas diverged: parameter sums {sums.tolist()}")
