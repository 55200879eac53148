"""Decode one video into model input and thumbnails (the "reader" stage; runs in worker processes).

A video that is one segment (see video.segments: ``--segments none``, or not longer than
``--max-segment``) decodes only its sampled frames (video.decode: decord first, PyAV fallback per
file); a longer one is decoded once, in order (video.segments.read_segments), and yields one result
per segment as soon as it is final, the last one marked ``last``. The
worker also runs the model's preprocessing and renders the JPEGs, so the encoder process gets
ready-to-stack tensors and small byte strings, and raw frames never leave the worker. Every failure
becomes a DecodeResult with a reason: bad input never raises out of here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from video.frames import frame_strip, jpeg_bytes, resize_to_height, time_order
from video.segments import SegmentOptions

__all__ = ["DecodeTask", "DecodeResult", "decode_one", "decode_file", "thumbnail_strip", "poster_frame"]

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
    segments: SegmentOptions | None = None
    """None: the whole file is one segment (version-1 behaviour)."""


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
    segment: int = 0
    start: float = 0.0
    end: float = 0.0
    """Seconds in the file covered by this segment (end 0: the whole video)."""
    whole: bool = True
    """The file is one segment (its row keeps the file's id)."""
    last: bool = True
    """No more results follow for this file (a failure is always last)."""


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


def _segment_result(task: DecodeTask, preprocess: Preprocess | None, seg, info, start: float) -> DecodeResult:
    res = DecodeResult(seq=task.seq, id=task.id, ok=True, segment=seg.index, start=seg.start, end=seg.end,
                       whole=False, last=False, backend="pyav-segments")
    if preprocess is not None:
        pixels = preprocess(seg.frames)
        pixels = pixels.numpy() if hasattr(pixels, "numpy") else np.asarray(pixels)
        res.pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    if task.thumb_height:
        res.thumb = thumbnail_strip(seg.frames, list(seg.timestamps), task.thumb_height)
        res.poster = poster_frame(seg.frames, list(seg.timestamps), task.poster_height)
    res.timestamps = list(seg.timestamps)
    res.duration, res.fps = float(info.duration), float(info.fps)
    res.seconds = time.perf_counter() - start
    return res


def decode_file(task: DecodeTask, preprocess: Preprocess | None) -> Iterator[DecodeResult]:
    """Every segment of one file, in time order, the last marked `last`; a failure ends the file.

    Whole-file videos give exactly one result (decode_one). Failures are yielded, never raised.
    """
    from video.decode import VideoReadError, probe
    from video.segments import read_segments

    opts = task.segments
    if opts is None or opts.mode == "none":
        yield decode_one(task, preprocess)
        return
    start = time.perf_counter()
    prev: DecodeResult | None = None
    try:
        info = probe(task.path)
        if opts.whole_file(info.duration):
            yield decode_one(task, preprocess)
            return
        for seg in read_segments(task.path, opts, task.frames, task.num_segments, side=_side(task)):
            res = _segment_result(task, preprocess, seg, info, start)
            start = time.perf_counter()
            if prev is not None:
                yield prev
            prev = res
        if prev is None:
            raise VideoReadError(f"{task.path}: no segments decoded")
        end = max(prev.end, info.duration)
        prev.last = True
        prev.duration = end
        yield prev
    except Exception as e:  # noqa: BLE001 - a bad file must never stop a run
        reason = str(e) if isinstance(e, VideoReadError) else \
            f"{task.path}: unexpected {type(e).__name__} while decoding segments: {e}"
        yield DecodeResult(seq=task.seq, id=task.id, ok=False, reason=reason, seconds=time.perf_counter() - start)


def _side(task: DecodeTask) -> int:
    """Short side of the kept frames: what the model's 224 px crop and a 2x poster need, at most max_side."""
    return min(task.max_side or 1 << 30, max(224, task.poster_height))
