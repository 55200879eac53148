"""Decoding files nobody vetted: real length before decoding, limits, bounded memory and work.

The attacks: raw H.264 with no frame count in an .mp4 name (every frame used to be kept), a video
that is one keyframe interval long (every sampled frame used to decode from the only keyframe), a
FIFO named like a video (the reader blocked forever).
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from media_files import encode_h264 as _encode

from video.decode import DecodeLimits, VideoLimitError, VideoReadError, probe, read_frames

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def raw_h264(tmp_path_factory) -> Path:
    """Raw H.264 (no container, no frame count) under an .mp4 name: 1,200 frames of 256x256."""
    return _encode(tmp_path_factory.mktemp("raw") / "upload.mp4", 1200, 256, 25, "h264")


@pytest.fixture(scope="module")
def one_keyframe(tmp_path_factory) -> Path:
    """A 600 s video (2,400 frames at 4 fps) whose only keyframe is the first frame."""
    return _encode(tmp_path_factory.mktemp("gop") / "long.mp4", 2400, 64, 4, "mp4", gop=100_000)


def test_raw_stream_frame_count_is_counted_before_decoding(raw_h264):
    info = probe(raw_h264)
    assert info.num_frames == 1200 and info.duration == pytest.approx(1200 / 25)


@pytest.mark.parametrize("limits, message", [
    (DecodeLimits(max_frames=1000), "1001 frames|more than"),
    (DecodeLimits(max_seconds=30), "48.0 s long"),
    (DecodeLimits(max_pixels=200 * 200), "256x256"),
])
def test_over_limit_raw_stream_is_refused_by_probe(raw_h264, limits, message):
    with pytest.raises(VideoLimitError, match=message):
        probe(raw_h264, limits=limits)
    with pytest.raises(VideoLimitError):
        read_frames(raw_h264, 12, limits=limits)


def test_raw_stream_holds_only_the_sampled_frames(raw_h264):
    """All 1,200 decoded frames would be 225 MB; the sampled 12 are 2.3 MB. Measured in a fresh process."""
    code = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(REPO)!r})
        from video.decode import read_frames
        import av, numpy  # imports first: only decoding counts
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fr = read_frames({str(raw_h264)!r}, 12, backend="pyav", max_side=None)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(fr.info.num_frames, fr.frames.shape[0], grown // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    total, held, grown_mb = map(int, out.stdout.split())
    assert (total, held) == (1200, 12)
    assert grown_mb < 100, f"decoding grew the process by {grown_mb} MB"


def test_single_keyframe_video_decodes_each_frame_at_most_about_once(one_keyframe):
    fr = read_frames(one_keyframe, 12, backend="pyav")
    assert fr.info.num_frames == 2400 and fr.frames.shape == (12, 64, 64, 3)
    assert 0 < fr.decoded <= 1.05 * fr.info.num_frames  # once per sampled frame would be about 12 x 1,200
    # the frames are the ones a plain front-to-back decode gives
    import av

    with av.open(str(one_keyframe)) as c:
        wanted = set(fr.indices)
        every = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in wanted}
    for i, frame in zip(fr.indices, fr.frames):
        assert np.abs(frame.astype(int) - every[i].astype(int)).mean() < 2


def test_decoding_time_is_bounded(one_keyframe):
    with pytest.raises(VideoLimitError, match="took longer than the limit"):
        read_frames(one_keyframe, 12, backend="pyav", limits=DecodeLimits(timeout=1e-6))


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_limits_are_checked_on_the_default_path_too(one_keyframe, backend):
    with pytest.raises(VideoLimitError, match="600.0 s long"):
        read_frames(one_keyframe, 12, backend=backend, limits=DecodeLimits(max_seconds=60))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_named_like_a_video_is_refused_without_blocking(tmp_path):
    """Opening a FIFO with no writer blocks forever: probe must refuse it from its type (fresh process)."""
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from video.decode import VideoReadError, read_frames
        try:
            read_frames({str(fifo)!r}, 12)
        except VideoReadError as e:
            print(e)
    """)
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("reading a FIFO blocked")
    assert "not a regular file" in out.stdout


def test_device_is_refused(tmp_path):
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    with pytest.raises(VideoReadError, match="not a regular file"):
        probe("/dev/zero")


def test_long_raw_stream_is_read_front_to_back(tmp_path):
    """Over 2,000 frames a video is read by seeking, but a raw stream has no index to seek in."""
    from video.sampling import sample_indices

    raw = _encode(tmp_path / "long_raw.mp4", 2100, 32, 25, "h264")
    fr = read_frames(raw, 12, backend="pyav")
    assert fr.info.num_frames == 2100 and fr.info.frames_counted
    assert fr.indices == sample_indices(2100, 12) and fr.frames.shape == (12, 32, 32, 3)
    assert fr.decoded <= 2100
