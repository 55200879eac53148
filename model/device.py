"""Device choice, stated once: "auto" means CUDA when there is one, else the CPU."""
from __future__ import annotations


class DeviceError(ValueError):
    """A device was asked for that this machine does not have."""


def resolve_device(device: str = "auto") -> str:
    """"auto" -> "cuda" or "cpu"; an explicit "cuda[:N]" without CUDA is an error, not a silent CPU run."""
    import torch

    device = (device or "auto").strip().lower()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} asked for, but CUDA is not available here; use --device cpu or auto")
    return device
