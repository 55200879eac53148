"""Long videos as moments: segment options, shot-aware segmentation rules and one decoding pass.

Prompt Switch encodes short clips (MSR-VTT clips last 10-30 s), so a long video is indexed as
segments. ``--segments auto`` cuts at shot boundaries (PySceneDetect's ContentDetector, fed with
frames we decode ourselves: no ffmpeg binary), merges shots shorter than ``min_segment`` into a
neighbour and splits shots longer than ``max_segment`` into equal windows; ``fixed:W[/S]`` cuts
windows of W seconds every S seconds; ``none`` keeps one segment per file.

``read_segments`` decodes a video once, in order: every frame, shrunk to a few dozen pixels, goes
to the shot detector; frames on a ``candidate_fps`` grid are kept at ``side`` pixels (short side)
until the segment they belong to is final, then the segment's test frames (video.sampling,
chunk-major) are picked from them and the older candidates dropped. Memory is bounded by about
``3 * max_segment * candidate_fps`` small frames, whatever the video's length; no seek per segment.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from video.sampling import sample_times

__all__ = ["SegmentOptions", "SegmentOptionError", "parse_segments", "Segmenter", "shots_to_segments",
           "fixed_windows", "Segment", "read_segments", "DEFAULT_MIN_SEGMENT", "DEFAULT_MAX_SEGMENT"]

log = logging.getLogger(__name__)

#: A segment is never longer than this (seconds): about the length of an MSR-VTT clip (10-30 s).
DEFAULT_MAX_SEGMENT = 30.0
#: Shots shorter than this (seconds) are merged into a neighbour: flashes and the several detections of
#: one gradual transition (PySceneDetect's own minimum scene length is 15 frames, 0.5-0.6 s). Longer
#: shots are kept: a 1-2 s shot merged into a 3 s event dilutes its frames (bench/moments.py).
DEFAULT_MIN_SEGMENT = 0.5
#: Frames per second kept as candidates for the segments' test frames.
CANDIDATE_FPS = 4.0
#: Width in pixels of the frames the shot detector sees (hard cuts need no detail).
DETECT_WIDTH = 64
#: ContentDetector's threshold (PySceneDetect's default).
CUT_THRESHOLD = 27.0


class SegmentOptionError(ValueError):
    """A bad --segments / --min-segment / --max-segment value; the message says what is accepted."""


@dataclass(frozen=True)
class SegmentOptions:
    """How to cut videos into segments (stored in the library's manifest)."""

    mode: str = "auto"
    """auto | none | fixed"""
    window: float = 0.0
    """fixed: window length in seconds."""
    stride: float = 0.0
    """fixed: seconds between window starts (= window when not given)."""
    min_segment: float = DEFAULT_MIN_SEGMENT
    max_segment: float = DEFAULT_MAX_SEGMENT

    @property
    def spec(self) -> str:
        if self.mode == "fixed":
            return f"fixed:{self.window:g}/{self.stride:g}"
        return self.mode

    def to_dict(self) -> dict[str, object]:
        return {"mode": self.mode, "spec": self.spec, "window": self.window, "stride": self.stride,
                "min_segment": self.min_segment, "max_segment": self.max_segment}

    def whole_file(self, duration: float) -> bool:
        """True when a video of this duration is one segment (no segmenting pass needed)."""
        if self.mode == "none":
            return True
        if self.mode == "auto":
            return duration <= self.max_segment
        return duration <= self.window


_FIXED = re.compile(r"^fixed:([0-9]*\.?[0-9]+)(?:/([0-9]*\.?[0-9]+))?$")


def parse_segments(text: str, min_segment: float = DEFAULT_MIN_SEGMENT,
                   max_segment: float = DEFAULT_MAX_SEGMENT) -> SegmentOptions:
    """Parse `auto`, `none` or `fixed:W[/S]` (seconds); raises SegmentOptionError with the reason."""
    if not (isinstance(min_segment, (int, float)) and math.isfinite(min_segment) and min_segment >= 0):
        raise SegmentOptionError(f"--min-segment must be a number of seconds >= 0, got {min_segment!r}")
    if not (isinstance(max_segment, (int, float)) and math.isfinite(max_segment) and max_segment > 0):
        raise SegmentOptionError(f"--max-segment must be a number of seconds > 0, got {max_segment!r}")
    if min_segment > max_segment / 2:
        raise SegmentOptionError(f"--min-segment ({min_segment:g}) must be at most half of --max-segment "
                                 f"({max_segment:g}), or split windows could fall below it")
    s = str(text).strip().lower()
    if s in ("auto", "none"):
        return SegmentOptions(s, min_segment=float(min_segment), max_segment=float(max_segment))
    m = _FIXED.match(s)
    if not m:
        raise SegmentOptionError(f"--segments must be auto, none or fixed:W[/S] (seconds, e.g. fixed:10 or "
                                 f"fixed:10/5), got {text!r}")
    window = float(m.group(1))
    stride = float(m.group(2)) if m.group(2) else window
    if window <= 0 or stride <= 0:
        raise SegmentOptionError(f"--segments {text!r}: window and stride must be positive seconds")
    if stride > window:
        raise SegmentOptionError(f"--segments {text!r}: stride ({stride:g}s) longer than the window "
                                 f"({window:g}s) would skip parts of every video")
    return SegmentOptions("fixed", window, stride, float(min_segment), float(max_segment))


# ------------------------------------------------------------------------------------ rules


def _split(start: float, end: float, max_segment: float) -> list[tuple[float, float]]:
    """Equal windows of at most max_segment seconds covering [start, end]."""
    n = max(1, math.ceil((end - start) / max_segment - 1e-9))
    step = (end - start) / n
    return [(start + i * step, end if i == n - 1 else start + (i + 1) * step) for i in range(n)]


class Segmenter:
    """Turns shot boundaries, seen in time order, into final segments as early as possible.

    Rules: a shot shorter than ``min_segment`` is merged with the shot before it (the first shot
    with the one after it); a merged run longer than ``max_segment`` is closed; a span longer than
    ``max_segment`` is split into equal windows. A shot still open after ``2 * max_segment`` gives
    away a window of ``max_segment`` (so an hour-long single shot never holds memory).
    """

    def __init__(self, min_segment: float = DEFAULT_MIN_SEGMENT, max_segment: float = DEFAULT_MAX_SEGMENT):
        self.min, self.max = float(min_segment), float(max_segment)
        self.start = 0.0
        """Start of what is not emitted yet."""
        self.pending: float | None = None
        """End of the closed (merged) shots waiting for their neighbour; None if none."""

    def _open_start(self) -> float:
        return self.start if self.pending is None else self.pending

    def cut(self, t: float) -> list[tuple[float, float]]:
        """A shot boundary at t seconds; returns the segments that became final."""
        shot_start = self._open_start()
        if t - shot_start <= 1e-6:
            return []
        if self.pending is None:
            self.pending = t
            return []
        if (self.pending - self.start) < self.min or (t - self.pending) < self.min:
            self.pending = t  # merge the short shot with its neighbour
            if self.pending - self.start > self.max:
                return self._emit_pending()
            return []
        out = self._emit_pending()
        self.pending = t
        return out

    def _emit_pending(self) -> list[tuple[float, float]]:
        assert self.pending is not None
        out = _split(self.start, self.pending, self.max)
        self.start, self.pending = self.pending, None
        return out

    def advance(self, t: float) -> list[tuple[float, float]]:
        """Time reached t with no boundary: cut windows off a shot that is too long to hold."""
        out: list[tuple[float, float]] = []
        if t - self._open_start() <= 2 * self.max:
            return out
        if self.pending is not None:
            out += self._emit_pending()
        while t - self.start > 2 * self.max:
            out.append((self.start, self.start + self.max))
            self.start += self.max
        return out

    def finish(self, duration: float) -> list[tuple[float, float]]:
        """End of the video at `duration` seconds: everything left becomes final."""
        out = self.cut(duration)
        if self.pending is not None:
            out += self._emit_pending()
        return out


def shots_to_segments(cuts: list[float], duration: float, min_segment: float = DEFAULT_MIN_SEGMENT,
                      max_segment: float = DEFAULT_MAX_SEGMENT) -> list[tuple[float, float]]:
    """Segments (start, end) in seconds from shot boundaries: the Segmenter's rules, all at once."""
    seg = Segmenter(min_segment, max_segment)
    out: list[tuple[float, float]] = []
    for t in sorted(c for c in cuts if 0 < c < duration):
        out += seg.advance(t)
        out += seg.cut(t)
    out += seg.advance(duration)
    out += seg.finish(duration)
    return out


def fixed_windows(duration: float, window: float, stride: float) -> list[tuple[float, float]]:
    """Windows of `window` seconds every `stride` seconds; the last one ends at the video's end."""
    if duration <= window:
        return [(0.0, duration)]
    out, s = [], 0.0
    while s + window < duration - 1e-6:
        out.append((s, s + window))
        s += stride
    out.append((max(0.0, duration - window), duration))
    return out


# ------------------------------------------------------------------------------------ one decoding pass


@dataclass
class Segment:
    """One segment of a video, ready to be encoded as a clip."""

    index: int
    start: float
    end: float
    frames: np.ndarray
    """uint8 [T, H, W, 3] RGB, the model's test frames in chunk-major order (video.sampling)."""
    timestamps: list[float]
    """Seconds in the file of each frame, same order."""


class _Candidates:
    """Frames kept on a time grid until the segments that need them are final."""

    def __init__(self, fps: float):
        self.step = 1.0 / fps
        self.next = 0.0
        self.times: list[float] = []
        self.frames: list[np.ndarray] = []

    def wants(self, t: float) -> bool:
        return t >= self.next - 1e-9 or not self.times

    def add(self, t: float, frame: np.ndarray) -> None:
        self.times.append(t)
        self.frames.append(frame)
        while self.next <= t + 1e-9:
            self.next += self.step

    def pick(self, start: float, end: float, rel: np.ndarray) -> tuple[np.ndarray, list[float]]:
        """The candidates nearest to start + rel * (end - start), chunk-major like `rel`."""
        times = np.asarray(self.times)
        inside = np.flatnonzero((times >= start - 1e-6) & (times < end - 1e-6))
        pool = inside if inside.size else np.arange(times.size)
        targets = start + rel * (end - start)
        chosen = [int(pool[np.argmin(np.abs(times[pool] - x))]) for x in targets]
        return np.stack([self.frames[i] for i in chosen]), [round(float(times[i]), 6) for i in chosen]

    def drop_before(self, t: float) -> None:
        """Forget candidates before t, keeping the last one (a segment may start between two)."""
        k = int(np.searchsorted(np.asarray(self.times), t, side="right")) - 1
        if k > 0:
            del self.times[:k], self.frames[:k]


def _size(width: int, height: int, short: int) -> tuple[int, int]:
    """(w, h) with the shorter side `short` (never upscaled), even numbers, aspect kept."""
    scale = min(1.0, short / min(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


class _Planner:
    """Final segments as the decode advances: Segmenter (auto) or fixed windows, made as time passes
    (the same windows as fixed_windows for the decoded duration, with no need to trust the header)."""

    def __init__(self, options: SegmentOptions):
        self.options = options
        self.segmenter = Segmenter(options.min_segment, options.max_segment) if options.mode == "auto" else None
        self.next_start = 0.0
        """fixed: start of the next window not emitted yet."""

    def step(self, t: float, cut: bool) -> list[tuple[float, float]]:
        if self.segmenter is not None:
            return self.segmenter.advance(t) + (self.segmenter.cut(t) if cut else [])
        out = []
        if self.options.mode == "fixed":
            while self.next_start + self.options.window <= t:
                out.append((self.next_start, self.next_start + self.options.window))
                self.next_start += self.options.stride
        return out

    def finish(self, end: float) -> list[tuple[float, float]]:
        if self.segmenter is not None:
            return self.segmenter.finish(end)
        if self.options.mode == "none" or end <= self.options.window:
            return [(0.0, end)]
        return [(max(0.0, end - self.options.window), end)]

    def keep_from(self) -> float:
        """Candidates before this time are no longer needed."""
        if self.segmenter is not None:
            return self.segmenter.start
        return self.next_start if self.options.mode == "fixed" else 0.0


def _open(path: Path):
    """The container and its first video stream, decoded with frame threads (one file, in order)."""
    import av

    from video.decode import VideoReadError, probe

    probe(path)  # clear errors for missing, empty, non-video and audio-only files
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoReadError(f"{path}: cannot open ({e})") from e
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def read_segments(path: str | Path, options: SegmentOptions, num_frames: int = 12, num_segments: int = 6,
                  side: int = 224, candidate_fps: float = CANDIDATE_FPS) -> Iterator[Segment]:
    """Decode `path` once, in order, and yield its segments (see the module doc) as they become final.

    Frames are kept with their shorter side at `side` pixels. Raises video.decode.VideoReadError for
    files that cannot be read.
    """
    from scenedetect.common import FrameTimecode
    from scenedetect.detectors import ContentDetector

    from video.decode import VideoReadError, decoded_frames

    path = Path(path)
    rel = sample_times(num_frames, num_segments)
    container, stream = _open(path)
    try:
        fps = float(stream.average_rate or stream.guessed_rate or 25.0)
        planner = _Planner(options)
        detector = ContentDetector(threshold=CUT_THRESHOLD, min_scene_len=0) if options.mode == "auto" else None
        cands = _Candidates(candidate_fps)
        t0: float | None = None
        t = 0.0
        n = index = 0
        for frame in decoded_frames(container, stream, path):
            if t0 is None:
                t0 = float(frame.time or 0.0)
                w, h = _size(frame.width, frame.height, side)
                dw, dh = DETECT_WIDTH, max(2, round(DETECT_WIDTH * frame.height / frame.width))
            t = max(t, float(frame.time or 0.0) - t0) if n else 0.0
            cut = False
            if detector is not None:
                small = frame.to_ndarray(format="bgr24", width=dw, height=dh)
                cut = bool(detector.process_frame(FrameTimecode(n, fps), small)) and n > 0
            if cands.wants(t):
                cands.add(t, frame.to_ndarray(format="rgb24", width=w, height=h))
            for s, e in planner.step(t, cut):
                yield _segment(cands, index, s, e, rel)
                index += 1
            cands.drop_before(planner.keep_from())
            n += 1
        if t0 is None:
            raise VideoReadError(f"{path}: no decodable video frames (truncated or corrupt file?)")
        for s, e in planner.finish(t + 1.0 / fps):
            yield _segment(cands, index, s, e, rel)
            index += 1
    finally:
        container.close()


def _segment(cands: _Candidates, index: int, start: float, end: float, rel: np.ndarray) -> Segment:
    frames, times = cands.pick(start, end, rel)
    return Segment(index, round(start, 6), round(end, 6), frames, times)


def decode_segments(path: str | Path, options: SegmentOptions, num_frames: int = 12, num_segments: int = 6,
                    side: int = 224, limits=None) -> list[Segment]:
    """Every segment of one file as a list (for a worker process: the result is pickled back).

    limits: a video.decode.DecodeLimits checked from the headers before anything is decoded.
    """
    from video.decode import probe

    if limits is not None:
        probe(path, limits=limits)
    return list(read_segments(path, options, num_frames=num_frames, num_segments=num_segments, side=side))
