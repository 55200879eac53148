"""Which frames of a video to decode (Prompt Switch's segment sampling).

The video is cut into ``num_segments`` equal segments (``num_segments`` = the prompt cube's
Np = 6). A clip of ``num_frames`` frames is ``num_frames // num_segments`` chunks; each chunk
takes one frame from every segment, in time order. The order is chunk-major, so every group of
``num_segments`` consecutive frames spans the whole video and can be encoded on its own (the model
switches prompts inside a chunk only).

- Test: fixed positions; the j-th chunk takes position ``(j + 0.5) / k`` of each segment.
- Training: the j-th chunk takes one uniformly random position in the j-th of the ``k`` equal parts of
  each segment (with k = 1, the usual "one random frame per segment"). Stratifying keeps chunks
  distinct and keeps time order inside every segment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["sample_times", "sample_indices", "timestamps_for"]


def sample_times(
    num_frames: int,
    num_segments: int = 6,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Relative positions in [0, 1) of the sampled frames, chunk-major (see module doc).

    Used directly for rendered clips (which have no frame count) and by ``sample_indices``.
    """
    if num_segments <= 0:
        raise ValueError(f"num_segments must be positive, got {num_segments}")
    if num_frames <= 0 or num_frames % num_segments:
        raise ValueError(
            f"num_frames ({num_frames}) must be a positive multiple of num_segments ({num_segments})"
        )
    k = num_frames // num_segments
    seg = np.arange(num_segments, dtype=np.float64)[None, :]  # [1, S]
    chunk = np.arange(k, dtype=np.float64)[:, None]  # [k, 1]
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        offset = rng.random((k, num_segments))
    else:
        offset = np.full((k, num_segments), 0.5)
    times = (seg + (chunk + offset) / k) / num_segments  # [k, S], row j = chunk j
    return np.minimum(times.reshape(-1), np.nextafter(1.0, 0.0))


def sample_indices(
    total_frames: int,
    num_frames: int,
    num_segments: int = 6,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> list[int]:
    """Frame indices to decode from a video of ``total_frames`` frames, chunk-major.

    Videos shorter than ``num_frames`` repeat frames (indices are clipped to ``total_frames - 1``).
    """
    if total_frames <= 0:
        raise ValueError(f"total_frames must be positive, got {total_frames}")
    times = sample_times(num_frames, num_segments, train=train, rng=rng)
    idx = np.floor(times * total_frames).astype(np.int64)
    return np.clip(idx, 0, total_frames - 1).tolist()


def timestamps_for(indices: Sequence[int], fps: float) -> list[float]:
    """Presentation time in seconds of each frame index (index / fps)."""
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return [float(i) / float(fps) for i in indices]
