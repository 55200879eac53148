"""Read the sampled frames of a video (decord first, PyAV fallback) and write browser-playable mp4.

One small interface over two decoders: decord is fast but has no macOS arm64 wheels and is
unmaintained, PyAV is always installed. Every failure to read a file surfaces as ``VideoReadError``
naming the file and the reason, so batch jobs can log and skip bad files instead of crashing.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from video.sampling import sample_indices, timestamps_for

__all__ = ["VideoReadError", "VideoLimitError", "DecodeLimits", "VideoInfo", "Frames", "read_frames", "probe",
           "write_video", "h264_encoder"]

log = logging.getLogger(__name__)

#: PyAV seeks to each sampled frame (instead of decoding in order) above either limit, so an
#: hours-long video only decodes about one GOP per sampled frame.
SEEK_MIN_FRAMES = 2000
SEEK_MIN_SECONDS = 120.0


class VideoReadError(Exception):
    """A video file could not be read; the message names the file and the reason."""


class VideoLimitError(VideoReadError):
    """A video is over a DecodeLimits bound (length, frames, frame size or decoding time); refused."""


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds for decoding files nobody vetted (uploads, folders from strangers).

    Length, frame count and frame size are checked from the headers (frames counted from the
    packets when the header has no count) before any frame is decoded; `timeout` is checked between
    decoded frames by PyAV (a decord call cannot be interrupted: run untrusted decoding in a process
    that can be killed, as precompute's workers and the app's describe worker do). None = no bound.
    """

    max_seconds: float | None = None
    max_frames: int | None = None
    max_pixels: int | None = 8192 * 8192
    """Width x height of the coded frames (decoding allocates one such frame at a time)."""
    timeout: float | None = None
    """Seconds of probing and decoding before VideoLimitError."""

    def check(self, path: Path, info: "VideoInfo") -> None:
        """Refuse a file whose headers (or counted packets) are over a bound, before decoding it."""
        if self.max_pixels is not None and info.width * info.height > self.max_pixels:
            raise VideoLimitError(f"{path}: frames of {info.width}x{info.height} are larger than the limit "
                                  f"({self.max_pixels} pixels)")
        if self.max_frames is not None and info.num_frames > self.max_frames:
            raise VideoLimitError(f"{path}: {info.num_frames} frames, more than the limit of {self.max_frames}")
        if self.max_seconds is not None and info.duration > self.max_seconds:
            raise VideoLimitError(f"{path}: {info.duration:.1f} s long, more than the limit of "
                                  f"{self.max_seconds:g} s")


#: What read_frames and probe use when the caller gives no limits: only the frame-size cap.
DEFAULT_LIMITS = DecodeLimits()

#: Packets counted at most for a stream whose header has no frame count (when no max_frames is given).
MAX_COUNTED_PACKETS = 10_000_000


class _Deadline:
    """A time budget checked between frames; `decoded` counts the frames the decoder produced."""

    def __init__(self, path: Path, timeout: float | None):
        self.path, self.timeout = path, timeout
        self.end = time.monotonic() + timeout if timeout else None
        self.decoded = 0

    def check(self) -> None:
        if self.end is not None and time.monotonic() > self.end:
            raise VideoLimitError(f"{self.path}: decoding took longer than the limit of {self.timeout:g} s")


@dataclass
class VideoInfo:
    num_frames: int
    fps: float
    duration: float  # seconds
    width: int
    height: int
    frames_counted: bool = False
    """True when the headers had no frame count and the packets were counted (raw streams): such
    files have no usable index, so they are decoded front to back, never by seeking."""


@dataclass
class Frames:
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB, in the order of `indices`
    indices: list[int]
    timestamps: list[float]  # seconds, index / fps
    info: VideoInfo
    backend: str  # "decord" | "pyav"
    decoded: int = -1
    """Frames the decoder produced to get these (PyAV; -1 when unknown, decord): the decoding cost."""


# --------------------------------------------------------------------------------------------
# helpers


def _check_file(path: Path) -> None:
    """Fail early, with a clear reason, on files that no decoder could read."""
    try:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise VideoReadError(f"{path}: file not found") from None
        if stat.S_ISDIR(st.st_mode):
            raise VideoReadError(f"{path}: is a directory, not a video file")
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader forever, a device never ends
            raise VideoReadError(f"{path}: not a regular file (a FIFO, socket or device): refused")
        with open(path, "rb") as fh:
            head = fh.read(16)
    except PermissionError as e:
        raise VideoReadError(f"{path}: permission denied ({e.strerror})") from e
    except OSError as e:
        raise VideoReadError(f"{path}: cannot open ({e})") from e
    if not head:
        raise VideoReadError(f"{path}: empty file (0 bytes)")


def _target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) with the longer side at most max_side, aspect kept, never below 1 px."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    if frames.shape[1:3] == (h, w):
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BILINEAR)) for f in frames])


def _rate(stream) -> float:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return float(r)
    return 0.0


def _av_info(container, path: Path):
    """(video stream, VideoInfo) from the container headers, without decoding."""
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise VideoReadError(f"{path}: no video stream (streams found: {', '.join(kinds)})")
    stream = container.streams.video[0]
    fps = _rate(stream)
    duration = 0.0
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000  # av.time_base
    num = int(stream.frames or 0)
    if num <= 0 and duration > 0 and fps > 0:
        num = int(round(duration * fps))
    if fps <= 0 and num > 0 and duration > 0:
        fps = num / duration
    if duration <= 0 and num > 0 and fps > 0:
        duration = num / fps
    width = stream.codec_context.width or stream.width
    height = stream.codec_context.height or stream.height
    if not width or not height:
        raise VideoReadError(f"{path}: video stream has no frame size (corrupt header?)")
    return stream, VideoInfo(num_frames=num, fps=fps, duration=duration, width=int(width), height=int(height))


def _open_av(path: Path):
    import av

    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.InvalidDataError as e:
        raise VideoReadError(f"{path}: not a video file or unrecognised format ({e})") from e
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
        raise VideoReadError(f"{path}: cannot open ({e})") from e


def _count_packets(container, stream, path: Path, cap: int, deadline: _Deadline) -> int:
    """Frames of a stream whose header has no count (raw H.264 ...): its packets, demuxed, never decoded."""
    import av

    n = 0
    try:
        for packet in container.demux(stream):
            if packet.size:
                n += 1
                if n > cap:
                    raise VideoLimitError(f"{path}: more than {cap} frames, over the limit")
                if n % 512 == 0:
                    deadline.check()
    except (av.error.FFmpegError, OSError) as e:  # damaged tail: count what is there
        log.warning("%s: packet count stopped early (%s)", path, e)
    return n


def _probe(path: Path, limits: DecodeLimits, deadline: _Deadline) -> VideoInfo:
    """Headers (and a packet count where they have no frame count), checked against `limits`."""
    _check_file(path)
    container = _open_av(path)
    try:
        stream, info = _av_info(container, path)
        limits.check(path, info)
        if info.num_frames <= 0:
            cap = limits.max_frames if limits.max_frames is not None else MAX_COUNTED_PACKETS
            info.num_frames = _count_packets(container, stream, path, cap, deadline)
            info.frames_counted = True
            if info.num_frames <= 0:
                raise VideoReadError(f"{path}: no video frames (truncated or corrupt file?)")
            if info.fps > 0:
                info.duration = info.num_frames / info.fps
            limits.check(path, info)
    except VideoReadError:
        raise
    except Exception as e:
        raise VideoReadError(f"{path}: cannot read the stream headers ({type(e).__name__}: {e})") from e
    finally:
        container.close()
    return info


def probe(path: str | Path, limits: DecodeLimits | None = None) -> VideoInfo:
    """Frame count, fps, duration and size without decoding; VideoLimitError when over `limits`.

    The frame count comes from the headers, or from counting packets when they have none (raw
    streams), so the numbers are real before anything is decoded.
    """
    path = Path(path)
    limits = limits or DEFAULT_LIMITS
    return _probe(path, limits, _Deadline(path, limits.timeout))


# --------------------------------------------------------------------------------------------
# decoders


def _read_decord(path: Path, info: VideoInfo, num_frames, num_segments, train, rng, max_side,
                 limits: DecodeLimits):
    """One VideoReader, one get_batch of the sorted unique indices (decoding only moves forward, so a
    video with few keyframes is decoded once, not once per sampled frame), reader deleted after."""
    import decord

    tw, th = _target_size(info.width, info.height, max_side)
    size = {} if (tw, th) == (info.width, info.height) else {"width": tw, "height": th}
    vr = None
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **size)
        total = len(vr)
        fps = float(vr.get_avg_fps() or 0.0) or info.fps
        if total <= 0:
            raise VideoReadError(f"{path}: decord found no frames")
        out = VideoInfo(num_frames=total, fps=fps, duration=total / fps if fps > 0 else info.duration,
                        width=info.width, height=info.height)
        limits.check(path, out)
        indices = sample_indices(total, num_frames, num_segments, train=train, rng=rng)
        unique = sorted(set(indices))
        batch = vr.get_batch(unique).asnumpy()
    finally:
        del vr
    if batch.ndim != 4 or batch.shape[0] != len(unique) or batch.shape[-1] != 3:
        raise VideoReadError(f"{path}: decord returned frames of shape {batch.shape}")
    row = {v: i for i, v in enumerate(unique)}
    frames = batch[[row[i] for i in indices]]
    frames = _resize(np.ascontiguousarray(frames, dtype=np.uint8), (tw, th))
    return frames, indices, out


def decoded_frames(container, stream, path: Path, deadline: _Deadline | None = None):
    """Yield decoded frames in order, ending quietly at a decode error (truncated or damaged data);
    with a deadline, counts them and enforces its time budget."""
    import av

    deadline = deadline or _Deadline(path, None)
    it = container.decode(stream)
    while True:
        deadline.check()
        try:
            frame = next(it)
        except StopIteration:
            return
        except (av.error.FFmpegError, OSError) as e:
            log.warning("%s: decoding stopped early (%s)", path, e)
            return
        deadline.decoded += 1
        yield frame


def _read_pyav(path: Path, info: VideoInfo, num_frames, num_segments, train, rng, max_side, deadline: _Deadline):
    """The sampled frames by PyAV: only they are kept (converted as they pass), never the whole video."""
    container = _open_av(path)
    try:
        stream = container.streams.video[0]
        tw, th = _target_size(info.width, info.height, max_side)

        def to_rgb(frame) -> np.ndarray:
            return frame.to_ndarray(format="rgb24", width=tw, height=th)

        indices = sample_indices(info.num_frames, num_frames, num_segments, train=train, rng=rng)
        long_video = info.num_frames > SEEK_MIN_FRAMES or info.duration > SEEK_MIN_SECONDS
        got: dict[int, np.ndarray] = {}
        if long_video and info.fps > 0 and stream.time_base and not info.frames_counted:
            got = _seek_frames(container, stream, path, indices, info.fps, to_rgb, deadline)
        if not got:  # short video, a raw stream, or seeking found nothing: front to back
            if long_video and not info.frames_counted:
                container.close()
                container = _open_av(path)
                stream = container.streams.video[0]
            got = _sequential_frames(container, stream, path, indices, to_rgb, deadline)
    finally:
        container.close()

    if not got:
        raise VideoReadError(f"{path}: no decodable video frames (truncated or corrupt file?)")
    # A needed frame that could not be decoded (truncated file, frame count too high in the
    # header) is replaced by the last decodable frame before it (or the first one after it).
    have = sorted(got)
    used = []
    for i in indices:
        k = int(np.searchsorted(have, i, side="right")) - 1
        used.append(have[max(k, 0)])
    return np.stack([got[i] for i in used]), used, info


def _sequential_frames(container, stream, path, indices, to_rgb, deadline: _Deadline) -> dict[int, np.ndarray]:
    """Decode in order, keep the needed frames, stop after the last needed one."""
    wanted, last = set(indices), max(indices)
    got: dict[int, np.ndarray] = {}
    prev = None
    for n, frame in enumerate(decoded_frames(container, stream, path, deadline)):
        if n in wanted:
            got[n] = to_rgb(frame)
        prev = (n, frame)
        if n >= last:
            break
    if prev is not None and prev[0] not in got and prev[0] < last:  # stream ended early
        got[prev[0]] = to_rgb(prev[1])
    return got


def _seek_frames(container, stream, path, indices, fps, to_rgb, deadline: _Deadline) -> dict[int, np.ndarray]:
    """Seek to each needed frame (long videos): decodes about one GOP per sampled frame.

    When a seek lands further back than the gap to the next sampled frame (keyframes are rarer than
    sampled frames, e.g. one keyframe for the whole file), seeking again would decode the same frames
    over and over: decoding then simply goes on forward, so no frame is decoded twice.
    """
    import av

    got: dict[int, np.ndarray] = {}
    tb = float(stream.time_base)
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    targets = sorted(set(indices))
    gap = min((b - a for a, b in zip(targets, targets[1:])), default=0)
    frames = None
    for idx in targets:
        target = start + idx / fps
        if frames is None:  # seeking mode
            try:
                container.seek(int(target / tb), stream=stream, backward=True, any_frame=False)
            except (av.error.FFmpegError, OSError) as e:
                log.warning("%s: seek to %.2fs failed (%s)", path, target, e)
                continue
            it, before = decoded_frames(container, stream, path, deadline), deadline.decoded
        chosen = None
        for frame in it:
            t = float(frame.pts * tb) if frame.pts is not None else float(frame.time or 0.0)
            chosen = frame
            if t >= target - 0.5 / fps:
                break
        if frames is None and deadline.decoded - before > max(gap, 1):
            frames = it  # keyframes are rarer than samples: decode straight on from here
        if chosen is not None:
            got[idx] = to_rgb(chosen)
    return got


# --------------------------------------------------------------------------------------------
# public reader


def read_frames(
    path: str | Path,
    num_frames: int = 12,
    *,
    num_segments: int = 6,
    train: bool = False,
    rng: np.random.Generator | None = None,
    max_side: int | None = 512,
    backend: str = "auto",
    limits: DecodeLimits | None = None,
) -> Frames:
    """Decode the ``num_frames`` sampled frames of a video (chunk-major, see video.sampling).

    backend: "auto" (decord if importable and it reads the file, else PyAV), "decord" or "pyav".
    Frames are downscaled so the longer side is at most ``max_side`` (None keeps the size).
    limits: DecodeLimits (default: DEFAULT_LIMITS, only a frame-size cap); a file over them is
    refused with VideoLimitError before its frames are decoded. Only the sampled frames are held.
    Raises VideoReadError, and nothing else, for files that cannot be read.
    """
    if backend not in ("auto", "decord", "pyav"):
        raise ValueError(f"backend must be 'auto', 'decord' or 'pyav', got {backend!r}")
    if num_frames <= 0 or num_frames % num_segments:
        raise ValueError(f"num_frames ({num_frames}) must be a positive multiple of num_segments ({num_segments})")
    path = Path(path)
    limits = limits or DEFAULT_LIMITS
    deadline = _Deadline(path, limits.timeout)
    info = _probe(path, limits, deadline)  # clear errors for non-video, audio-only and over-limit files

    if backend in ("auto", "decord"):
        try:
            frames, indices, info_d = _read_decord(path, info, num_frames, num_segments, train, rng, max_side, limits)
            return Frames(frames, indices, timestamps_for(indices, info_d.fps or 1.0), info_d, "decord")
        except VideoLimitError:
            raise
        except ImportError as e:
            if backend == "decord":
                raise VideoReadError(f"{path}: decord is not installed ({e})") from e
        except Exception as e:  # decord raises RuntimeError/DECORDError/IndexError on bad input
            if backend == "decord":
                reason = (str(e).splitlines() or [type(e).__name__])[0][:300]
                raise VideoReadError(f"{path}: decord could not read it ({reason})") from e
            log.debug("%s: decord failed (%s), falling back to PyAV", path, e)

    try:
        frames, indices, info = _read_pyav(path, info, num_frames, num_segments, train, rng, max_side, deadline)
    except VideoReadError:
        raise
    except Exception as e:  # anything unexpected from the decoder is still a read error
        raise VideoReadError(f"{path}: PyAV could not read it ({type(e).__name__}: {e})") from e
    return Frames(frames, indices, timestamps_for(indices, info.fps or 1.0), info, "pyav", deadline.decoded)


# --------------------------------------------------------------------------------------------
# writer

_H264_ENCODERS = ("libx264", "libopenh264", "h264")


def h264_encoder() -> str:
    """Name of an H.264 encoder this PyAV build has (libx264 preferred)."""
    import av

    for name in _H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise RuntimeError(
        "this PyAV build has no H.264 encoder (tried " + ", ".join(_H264_ENCODERS) + "); "
        "install the PyPI 'av' wheel, which bundles libx264"
    )


def write_video(path: str | Path, frames: np.ndarray, fps: float, *, crf: int = 18) -> Path:
    """Write uint8 RGB frames [T, H, W, 3] as H.264 yuv420p mp4 that browsers play.

    Odd widths/heights are padded by one edge pixel (yuv420p needs even sizes).
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be [T, H, W, 3] with T >= 1, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    if not fps or fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    _, h, w, _ = frames.shape
    pad_h, pad_w = h % 2, w % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    encoder = h264_encoder()
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream(encoder, rate=rate)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if encoder == "libx264":
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        for arr in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
