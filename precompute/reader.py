"""Decode one video into model input and thumbnails (the "reader" stage; runs in worker processes).

Only the sampled frames are decoded (video.decode: decord first, PyAV fallback per file). The
worker also runs the model's preprocessing and renders the JPEGs, so the encoder process gets
ready-to-stack tensors and small byte strings, and raw frames never leave the worker. Every failure
becomes a DecodeResult with a reason: bad input never raises out of here.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

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


def _jpeg(img, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _resize_to_height(frame: np.ndarray, height: int):
    from PIL import Image

    img = Image.fromarray(frame)
    h, w = frame.shape[:2]
    height = max(1, int(height))
    width = max(1, round(w * height / h))
    return img.resize((width, height), Image.BILINEAR) if (width, height) != (w, h) else img


def thumbnail_strip(frames: np.ndarray, indices: list[int], height: int) -> bytes:
    """One JPEG: the sampled frames side by side in time order (chunk-major order undone)."""
    from PIL import Image

    order = np.argsort(np.asarray(indices), kind="stable")
    tiles = [_resize_to_height(frames[i], height) for i in order]
    strip = Image.new("RGB", (sum(t.width for t in tiles), tiles[0].height))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width
    return _jpeg(strip)


def poster_frame(frames: np.ndarray, indices: list[int], height: int) -> bytes:
    """The middle sampled frame (in time order), at most `height` pixels high (never upscaled)."""
    order = np.argsort(np.asarray(indices), kind="stable")
    frame = frames[order[len(order) // 2]]
    return _jpeg(_resize_to_height(frame, min(height, frame.shape[0])))


def decode_one(task: DecodeTask, preprocess: Preprocess | None) -> DecodeResult:
    """Read, preprocess and thumbnail one video; failures are returned, never raised."""
    from video.decode import VideoReadError, read_frames

    start = time.perf_counter()
    res = DecodeResult(seq=task.seq, id=task.id, ok=False)
    try:
        got = read_frames(task.path, task.frames, num_segments=task.num_segments, max_side=task.max_side)
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
