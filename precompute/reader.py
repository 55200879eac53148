"""Decode one video into model input and thumbnails (the "reader" stage; runs in worker processes).

Only the sampled frames are decoded (video.decode: decord first, PyAV fallback per file). The
worker also runs the model's preprocessing and renders the JPEGs, so the encoder process gets
ready-to-stack tensors and small byte strings, and raw frames never leave the worker. Every failure
becomes a DecodeResult with a reason: bad input never raises out of here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from video.frames import frame_strip, jpeg_bytes, resize_to_height, time_order

__all__ = ["DecodeTask", "DecodeResult", "decode_one", "thumbnail_strip", "poster_frame"]

Preprocess = Callable[[np.ndarray], "object"]


@dataclass
class DecodeTask:
    seq: int
    id: str
    path: str
    frames: int = 12
    num_segments: int = 6
    max_side: int | None = 512
    thumb_height: int | None = 96
    """None: no thumbnails."""
    poster_height: int = 256
    timeout: float | None = None
    """Seconds of decoding before the file fails (checked between frames; a worker is also killed)."""


@dataclass
class DecodeResult:
    seq: int
    id: str
    ok: bool
    reason: str | None = None
    pixels: np.ndarray | None = None
    """float32 [T, 3, S, S], the model's preprocessed frames (chunk-major, as sampled)."""
    timestamps: list[float] = field(default_factory=list)
    duration: float = 0.0
    fps: float = 0.0
    thumb: bytes | None = None
    poster: bytes | None = None
    backend: str = ""
    seconds: float = 0.0
    """Wall time spent on this video in the worker (decode + preprocess + thumbnails)."""


def thumbnail_strip(frames: np.ndarray, indices: list[int], height: int) -> bytes:
    """One JPEG: the sampled frames side by side in time order (chunk-major order undone)."""
    ordered = [frames[i] for i in time_order(indices)]
    return jpeg_bytes(frame_strip(ordered, height, max_frames=None, gap=0))


def poster_frame(frames: np.ndarray, indices: list[int], height: int) -> bytes:
    """The middle sampled frame (in time order), at most `height` pixels high (never upscaled)."""
    order = time_order(indices)
    frame = frames[order[len(order) // 2]]
    return jpeg_bytes(resize_to_height(frame, min(height, frame.shape[0])))


def decode_one(task: DecodeTask, preprocess: Preprocess | None) -> DecodeResult:
    """Read, preprocess and thumbnail one video; failures are returned, never raised."""
    from video.decode import DecodeLimits, VideoReadError, read_frames

    start = time.perf_counter()
    res = DecodeResult(seq=task.seq, id=task.id, ok=False)
    try:
        got = read_frames(task.path, task.frames, num_segments=task.num_segments, max_side=task.max_side,
                          limits=DecodeLimits(timeout=task.timeout))
        frames = got.frames
        if preprocess is not None:
            pixels = preprocess(frames)
            pixels = pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)
            res.pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if task.thumb_height:
            res.thumb = thumbnail_strip(frames, list(got.indices), task.thumb_height)
            res.poster = poster_frame(frames, list(got.indices), task.poster_height)
        res.timestamps = [round(float(t), 6) for t in got.timestamps]
        res.duration, res.fps = float(got.info.duration), float(got.info.fps)
        res.backend, res.ok = got.backend, True
    except VideoReadError as e:
        res.reason = str(e)
    except MemoryError:
        res.reason = f"{task.path}: out of memory while decoding"
    except Exception as e:  # noqa: BLE001 - a bad file must never stop a run
        res.reason = f"{task.path}: unexpected {type(e).__name__} while decoding: {e}"
    if not res.ok:
        res.pixels = res.thumb = res.poster = None
    res.seconds = time.perf_counter() - start
    return res
