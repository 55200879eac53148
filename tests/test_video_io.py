import os
import sys
import time

import numpy as np
import pytest
from media_files import write_audio_only

from video import decode as video_io
from video.decode import Frames, VideoReadError, h264_encoder, probe, read_frames, write_video
from video.sampling import sample_indices

BACKENDS = ["decord", "pyav"]


def coded_frames(n: int, h: int = 48, w: int = 64) -> np.ndarray:
    """Uniform frames whose colour encodes the frame index (R: i % 16, G: i // 16)."""
    i = np.arange(n)
    rgb = np.stack([16 * (i % 16) + 8, 16 * (i // 16) + 8, np.full(n, 128)], axis=1).astype(np.uint8)
    return np.broadcast_to(rgb[:, None, None, :], (n, h, w, 3)).copy()


def decode_index(frame: np.ndarray) -> int:
    r, g, _ = frame.reshape(-1, 3).mean(axis=0)
    return int(round((g - 8) / 16)) * 16 + int(round((r - 8) / 16))


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    out = {
        "coded": write_video(d / "coded.mp4", coded_frames(48), fps=12),
        "odd": write_video(d / "odd.mp4", coded_frames(5, 33, 47), fps=5),
        "one": write_video(d / "one.mp4", coded_frames(1), fps=25),
        "wide": write_video(d / "wide.mp4", coded_frames(6, 150, 200), fps=6),
        # 130 s at 1 fps: over the seek threshold (120 s), tiny frames
        "long": write_video(d / "long.mp4", coded_frames(130, 16, 16), fps=1),
    }
    # coded top half, incompressible noise in the bottom half (so truncation cuts mid-stream)
    noisy = coded_frames(48)
    noisy[:, 24:] = np.random.default_rng(0).integers(0, 256, size=(48, 24, 64, 3), dtype=np.uint8)
    out["noisy"] = write_video(d / "noisy.mp4", noisy, fps=12)
    return out


def test_h264_encoder_available():
    assert h264_encoder() in ("libx264", "libopenh264", "h264")


def test_write_video_is_h264_yuv420p_even(clips):
    import av

    with av.open(str(clips["odd"])) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264"
        assert s.codec_context.pix_fmt == "yuv420p"
        assert (s.codec_context.width, s.codec_context.height) == (48, 34)  # padded to even
    info = probe(clips["coded"])
    assert info.num_frames == 48 and info.fps == pytest.approx(12)
    assert info.duration == pytest.approx(4.0, abs=0.1)
    assert (info.width, info.height) == (64, 48)


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", np.zeros((4, 8, 8), np.uint8), fps=5)
    with pytest.raises(ValueError):
        write_video(tmp_path / "x.mp4", np.zeros((4, 8, 8, 3), np.float32), fps=5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_back_indices_and_colours(clips, backend):
    r = read_frames(clips["coded"], 12, backend=backend)
    assert isinstance(r, Frames) and r.backend == backend
    assert r.frames.shape == (12, 48, 64, 3) and r.frames.dtype == np.uint8
    assert r.indices == sample_indices(48, 12)
    assert r.timestamps == pytest.approx([i / 12 for i in r.indices])
    assert [decode_index(f) for f in r.frames] == r.indices  # the right frame, in the right order
    assert abs(float(r.frames[..., 2].mean()) - 128) < 4
    assert r.info.num_frames == 48 and r.info.fps == pytest.approx(12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_train_sampling_is_seeded(clips, backend):
    a = read_frames(clips["coded"], 6, train=True, rng=np.random.default_rng(3), backend=backend)
    b = read_frames(clips["coded"], 6, train=True, rng=np.random.default_rng(3), backend=backend)
    assert a.indices == b.indices
    assert [decode_index(f) for f in a.frames] == a.indices


def test_auto_prefers_decord_and_falls_back(clips, monkeypatch):
    assert read_frames(clips["coded"], 6).backend == "decord"
    monkeypatch.setitem(sys.modules, "decord", None)  # import decord -> ImportError
    r = read_frames(clips["coded"], 6)
    assert r.backend == "pyav" and [decode_index(f) for f in r.frames] == r.indices
    with pytest.raises(VideoReadError, match="decord is not installed"):
        read_frames(clips["coded"], 6, backend="decord")


def test_decord_failure_falls_back_to_pyav(clips, monkeypatch):
    def broken(*a, **k):
        raise IndexError("Out of bound indices: [47]")  # decord's len() was wrong

    monkeypatch.setattr(video_io, "_read_decord", broken)
    assert read_frames(clips["coded"], 6).backend == "pyav"
    with pytest.raises(VideoReadError, match="Out of bound"):
        read_frames(clips["coded"], 6, backend="decord")


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_video(clips, backend):
    r = read_frames(clips["one"], 12, backend=backend)
    assert r.frames.shape[0] == 12 and r.indices == [0] * 12
    assert all(decode_index(f) == 0 for f in r.frames)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_side_downscales_keeping_aspect(clips, backend):
    assert read_frames(clips["wide"], 6, max_side=64, backend=backend).frames.shape == (6, 48, 64, 3)
    assert read_frames(clips["wide"], 6, max_side=None, backend=backend).frames.shape == (6, 150, 200, 3)
    assert read_frames(clips["wide"], 6, max_side=512, backend=backend).frames.shape == (6, 150, 200, 3)


def test_long_video_seeks_and_is_fast(clips):
    t = time.perf_counter()
    r = read_frames(clips["long"], 12, backend="pyav")
    assert time.perf_counter() - t < 5
    assert r.info.num_frames == 130
    assert [decode_index(f) for f in r.frames] == r.indices == sample_indices(130, 12)


def test_seek_path_matches_sequential(clips, monkeypatch):
    seq = read_frames(clips["coded"], 12, backend="pyav")
    monkeypatch.setattr(video_io, "SEEK_MIN_FRAMES", 10)
    called = []
    real = video_io._seek_frames
    monkeypatch.setattr(video_io, "_seek_frames", lambda *a: called.append(1) or real(*a))
    seek = read_frames(clips["coded"], 12, backend="pyav")
    assert called and seek.indices == seq.indices
    assert np.abs(seek.frames.astype(int) - seq.frames.astype(int)).max() <= 2


# ---------------------------------------------------------------- bad files


@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
@pytest.mark.parametrize(
    "kind,message",
    [
        ("empty", "empty file"),
        ("text", "not a video"),
        ("random", "not a video"),
        ("audio", "no video stream"),
        ("truncated_head", "no video stream|no decodable|not a video"),
        ("missing", "not found"),
        ("directory", "directory"),
    ],
)
def test_bad_files_raise_video_read_error(tmp_path, clips, kind, message, backend):
    path = tmp_path / f"{kind}.mp4"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("this is not a video\n" * 100)
    elif kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    elif kind == "audio":
        write_audio_only(path)
    elif kind == "truncated_head":
        path.write_bytes(clips["coded"].read_bytes()[:200])
    elif kind == "directory":
        path.mkdir()
    with pytest.raises(VideoReadError, match=message) as e:
        read_frames(path, 6, backend=backend)
    assert str(path) in str(e.value)


def test_probe_raises_video_read_error(tmp_path):
    path = tmp_path / "a.mp4"
    write_audio_only(path)
    with pytest.raises(VideoReadError, match="no video stream"):
        probe(path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads any file")
def test_unreadable_permissions(tmp_path, clips):
    path = tmp_path / "locked.mp4"
    path.write_bytes(clips["coded"].read_bytes())
    path.chmod(0)
    with pytest.raises(VideoReadError, match="permission denied"):
        read_frames(path, 6)


def test_permission_error_is_reported(clips, monkeypatch):
    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(video_io, "open", denied, raising=False)  # as root, chmod 0 still reads
    with pytest.raises(VideoReadError, match="permission denied"):
        read_frames(clips["coded"], 6)


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_truncated_file_returns_what_it_can(tmp_path, clips, backend):
    data = clips["noisy"].read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    r = read_frames(path, 12, backend=backend)
    assert r.frames.shape == (12, 48, 64, 3)
    wanted = sample_indices(48, 12)
    assert r.indices != wanted  # the second half is gone...
    assert r.indices[0] == wanted[0] and max(r.indices) < 40
    # ...and replaced by the last decodable frame, never by a later or garbage one
    assert all(got <= want for got, want in zip(r.indices, wanted))
    assert [decode_index(f[:24]) for f in r.frames] == r.indices


@pytest.mark.parametrize("backend", BACKENDS)
def test_reads_avi_mpeg4(tmp_path, backend):
    """MSVD and LSMDC ship .avi files (MPEG-4 part 2), not H.264 mp4."""
    import av

    path = tmp_path / "clip.avi"
    frames = coded_frames(30)
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=15)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        s.options = {"qscale": "2"}
        for arr in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    r = read_frames(path, 6, backend=backend)
    assert r.info.num_frames == 30 and r.indices == sample_indices(30, 6)
    assert [decode_index(f) for f in r.frames] == r.indices
