"""Device, precision and data-parallel training: one command from one CPU process to many GPUs under torchrun.

Under `torchrun` (RANK/WORLD_SIZE/LOCAL_RANK in the environment) every process trains on its own share of each
batch step and the gradients are averaged with one all-reduce per step (gloo on CPUs, NCCL on GPUs), which is
what DistributedDataParallel does. We reduce by hand rather than wrap the model in DDP because gradual unfreezing
changes the set of trainable parameters every epoch, and DDP fixes that set when the model is wrapped.
Only rank 0 writes: the run folder, checkpoints, the token cache and progress.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from .errors import ConfigError, UlmfitError


def seed_all(seed: int) -> None:
    """Seed Python, numpy and torch (every stage and inference starts here; also hides the FutureWarning that
    fastai's import raises)."""
    import random
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit deprecation raised by fastai's import
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


_WORLD = World()


def world() -> World:
    return _WORLD


def init(device: str) -> World:
    """Join the torchrun process group when there is one (once per process); single process otherwise."""
    global _WORLD
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or _WORLD.size > 1:
        return _WORLD
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device.startswith("cuda") or (device == "auto" and _cuda_available()) else "gloo"
    if backend == "nccl":
        import torch

        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    atexit.register(_leave)
    _WORLD = World(rank, size, local)
    return _WORLD


def _leave() -> None:
    """At exit, every process waits for the others, then leaves the group, as PyTorch asks: a rank with nothing
    left to do (rank 0 still writes the run folder) that exited with gloo's threads running aborted now and then
    ("terminate called without an active exception", exit -6: seen once in CI under load)."""
    import contextlib

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(name: str):
    """`--device auto|cpu|cuda|cuda:N|mps` -> torch.device, or a clear error when it is not there."""
    import torch

    w = world()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", w.local_rank)
        if w.size == 1 and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("`--device mps`: no Apple GPU (MPS) on this machine; use --device cpu or auto")
        if w.size > 1:
            raise ConfigError("`--device mps` runs in one process; drop torchrun or use cpu/cuda")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"`--device {name}`: no CUDA GPU is visible on this machine; use --device cpu or auto")
        index = w.local_rank if name == "cuda" else int(name.split(":", 1)[1])
        if name != "cuda" and w.size > 1:
            raise ConfigError(f"`--device {name}`: under torchrun each process takes its own GPU; give --device cuda")
        if index >= torch.cuda.device_count():
            raise ConfigError(f"`--device {name}`: this machine has {torch.cuda.device_count()} CUDA device(s)")
        return torch.device("cuda", index)
    raise ConfigError(f"`--device` must be auto, cpu, cuda, cuda:N or mps, got {name!r}")


def check_precision(precision: str, device) -> None:
    import torch

    if precision == "fp32":
        return
    if device.type != "cuda":
        raise ConfigError(
            f"`--precision {precision}` is mixed precision for CUDA GPUs; on {device.type} use --precision fp32"
        )
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        raise ConfigError("`--precision bf16`: this GPU has no bf16; use --precision fp16")


def autocast(device, precision: str):
    """The forward-pass context: autocast to bf16/fp16 on GPUs, nothing in fp32."""
    import torch

    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def to_device(batch, device):
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, tuple | list):
        return type(batch)(to_device(b, device) for b in batch)
    return batch


def broadcast_params(model) -> None:
    """Start every process from rank 0's weights."""
    if world().size > 1:
        import torch.distributed as dist

        for t in [*model.parameters(), *model.buffers()]:
            dist.broadcast(t.data, 0)


def average_grads(params: list) -> None:
    """Average the gradients of `params` over all processes, in one flat all-reduce."""
    if world().size <= 1:
        return
    import torch
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    for p in params:
        if p.grad is None:  # every process must send the same layout
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world().size
    for g, r in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(r)


def all_finite(ok: bool) -> bool:
    """Whether every process's loss is finite (so all stop together on a NaN, none waits forever)."""
    if world().size <= 1:
        return ok
    import torch
    import torch.distributed as dist

    flag = torch.tensor([0 if ok else 1], dtype=torch.int32)
    dist.all_reduce(flag)
    return int(flag.item()) == 0


def from_main(obj):
    """Rank 0's `obj` (anything picklable) on every process, so that all take rank 0's decisions."""
    if world().size <= 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def on_main(fn: Callable):
    """Run `fn` on rank 0 only; the others wait for it and raise the same error if it failed."""
    w = world()
    if w.size <= 1:
        return fn()
    import torch.distributed as dist

    result, failure = None, [None]
    if w.main:
        try:
            result = fn()
        except UlmfitError as e:
            failure = [(type(e).__name__, str(e), e.exit_code)]
            dist.broadcast_object_list(failure, 0)
            raise
        except BaseException as e:
            failure = [("UlmfitError", f"rank 0 failed: {type(e).__name__}: {e}", 1)]
            dist.broadcast_object_list(failure, 0)
            raise
    dist.broadcast_object_list(failure, 0)
    if failure[0] is not None and not w.main:
        _, msg, code = failure[0]
        err = UlmfitError(msg)
        err.exit_code = code
        raise err
    return result
