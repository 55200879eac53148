"""ZeroGPU on Hugging Face Spaces: a GPU exists only inside functions decorated with `spaces.GPU`.

So the model is loaded on the CPU, and every handler that runs it is decorated and moves the model
to CUDA inside the call. Without the `spaces` package (anywhere but a ZeroGPU Space) handlers are
returned unchanged.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["spaces_module", "on_zero_gpu", "gpu_handler"]


def spaces_module() -> Any | None:
    """The `spaces` package when running on a ZeroGPU Space, else None."""
    if not on_zero_gpu():
        return None
    try:
        return importlib.import_module("spaces")
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the `spaces` package is missing: handlers run on the CPU")
        return None


def on_zero_gpu() -> bool:
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "true", "yes")


def gpu_handler(fn: Callable, model: Any, spaces: Any | None = None) -> Callable:
    """fn decorated for ZeroGPU (with the model moved to CUDA inside the call), or fn itself elsewhere."""
    spaces = spaces if spaces is not None else spaces_module()
    if spaces is None:
        return fn

    @functools.wraps(fn)
    def on_gpu(*args, **kwargs):
        import torch

        if torch.cuda.is_available() and getattr(model, "device", None) != torch.device("cuda", 0):
            model.to("cuda")
        return fn(*args, **kwargs)

    return spaces.GPU(on_gpu)
