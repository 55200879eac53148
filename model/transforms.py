"""Frames -> model input: CLIP's test transform, and the training augmentation.

Both work on whole clips at once so every frame of a clip gets the same crop and flip.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [T,H,W,3] (or one [H,W,3] frame) -> float [T,3,H,W] in 0..1."""
    if isinstance(frames, torch.Tensor):
        x = frames
    else:
        a = np.asarray(frames)
        x = torch.from_numpy(a if a.flags.writeable else a.copy())
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 frames [T,H,W,3], got shape {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def _normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def eval_transform(frames: np.ndarray | torch.Tensor, size: int, mean: Sequence[float],
                   std: Sequence[float]) -> torch.Tensor:
    """Resize the short side to `size` (bicubic), centre-crop `size` x `size`, normalise."""
    x = _to_tensor(frames)
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))  # as torchvision's center_crop
    x = x[:, :, top : top + size, left : left + size]
    return _normalise(x, mean, std).contiguous()


def train_transform(
    frames: np.ndarray | torch.Tensor,
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.5, 1.0),
    flip: bool = True,
) -> torch.Tensor:
    """Random resized crop (area `scale`) and horizontal flip, drawn once per clip.

    `flip` must be off for data whose captions name left/right (moving shapes)."""
    x = _to_tensor(frames)
    h, w = x.shape[-2:]
    area = rng.uniform(*scale) * h * w
    ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    ch = int(round(min(h, np.sqrt(area / ratio))))
    cw = int(round(min(w, np.sqrt(area * ratio))))
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    x = x[:, :, top : top + ch, left : left + cw]
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
    if flip and rng.random() < 0.5:
        x = x.flip(-1)
    return _normalise(x, mean, std).contiguous()
