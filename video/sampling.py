"""Which frames of a video to decode: the reference code's segment sampling (datasets/video_capture.py).

The video is cut into ``num_segments`` ranges (``num_segments`` = the prompt cube's Np = 6): with
``edges = linspace(0, n_frames, num_segments + 1).astype(int)``, range s is
``[x0, x1] = [edges[s], edges[s + 1] - 1]``. A clip of ``num_frames`` frames is
``k = num_frames // num_segments`` chunks; each chunk takes one frame from every range, in time
order. The order is chunk-major, so every group of ``num_segments`` consecutive frames spans the
whole video and can be encoded on its own (the model switches prompts inside a chunk only).

- Test: chunk i takes frame ``(x1 - x0) // (k + 1) * (i + 1) + x0`` (a 600-frame video with 12
  frames gives 33, 133, ..., 533, 66, 166, ..., 566).
- Training: every chunk takes one uniformly random frame of ``[x0, x1)`` (the range's last frame
  excluded, as the reference's ``random.choice(range(x0, x1))``); a one-frame range gives x0.
- Videos shorter than ``num_segments`` frames: the reference samples min(Np, n_frames) ranges and
  pads by repeating the last frame, which leaves later groups without the start of the video. We keep
  Np ranges (empty ones take the frame before), so each group still spans the video in time order.

``sample_times`` is the same rule on a continuous clip of duration 1 (rendered clips have no frame count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["sample_times", "sample_indices", "timestamps_for"]


def _check(num_frames: int, num_segments: int) -> int:
    if num_segments <= 0:
        raise ValueError(f"num_segments must be positive, got {num_segments}")
    if num_frames <= 0 or num_frames % num_segments:
        raise ValueError(
            f"num_frames ({num_frames}) must be a positive multiple of num_segments ({num_segments})"
        )
    return num_frames // num_segments


def sample_times(
    num_frames: int,
    num_segments: int = 6,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Relative positions in [0, 1) of the sampled frames, chunk-major (see module doc)."""
    k = _check(num_frames, num_segments)
    seg = np.arange(num_segments, dtype=np.float64)[None, :]  # [1, S]
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        offset = rng.random((k, num_segments))
    else:
        offset = np.broadcast_to((np.arange(k, dtype=np.float64)[:, None] + 1) / (k + 1), (k, num_segments))
    times = (seg + offset) / num_segments  # [k, S], row i = chunk i
    return np.minimum(times.reshape(-1), np.nextafter(1.0, 0.0))


def sample_indices(
    total_frames: int,
    num_frames: int,
    num_segments: int = 6,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> list[int]:
    """Frame indices to decode from a video of ``total_frames`` frames, chunk-major (see module doc)."""
    if total_frames <= 0:
        raise ValueError(f"total_frames must be positive, got {total_frames}")
    k = _check(num_frames, num_segments)
    edges = np.linspace(0, total_frames, num_segments + 1).astype(np.int64)
    x0 = np.minimum(edges[:-1], total_frames - 1)
    x1 = np.maximum(edges[1:] - 1, x0)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        span = np.maximum(x1 - x0, 1)  # [x0, x1) has x1 - x0 frames; a one-frame range gives x0
        idx = x0[None, :] + np.floor(rng.random((k, num_segments)) * span[None, :]).astype(np.int64)
    else:
        i = np.arange(k, dtype=np.int64)[:, None]
        idx = (x1 - x0)[None, :] // (k + 1) * (i + 1) + x0[None, :]
    return idx.reshape(-1).tolist()


def timestamps_for(indices: Sequence[int], fps: float) -> list[float]:
    """Presentation time in seconds of each frame index (index / fps)."""
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return [float(i) / float(fps) for i in indices]
