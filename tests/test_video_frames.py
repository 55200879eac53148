"""video.files and video.frames: the one extension list, the one time-order helper, the one strip renderer."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from video.files import VIDEO_EXTENSIONS, extensions_preferring, is_video_name
from video.frames import frame_strip, jpeg_bytes, time_order
from video.sampling import sample_indices


@pytest.mark.parametrize("name, ok", [("a.mp4", True), ("b.MKV", True), ("dir/c.webm", True), ("d.ts", True),
                                      ("notes.txt", False), (".partial.mp4", False), ("mp4", False)])
def test_is_video_name(name, ok):
    assert is_video_name(name) is ok


def test_extension_list_is_one_ordered_list():
    assert VIDEO_EXTENSIONS[0] == ".mp4" and len(set(VIDEO_EXTENSIONS)) == len(VIDEO_EXTENSIONS)
    avi = extensions_preferring(".avi")
    assert avi[0] == ".avi" and sorted(avi) == sorted(VIDEO_EXTENSIONS)


def test_time_order_undoes_chunk_major_sampling():
    idx = sample_indices(120, 12, 6)
    assert idx != sorted(idx)  # chunk-major: not in time order
    assert [idx[j] for j in time_order(idx)] == sorted(idx)
    assert time_order([2.0, 1.0, 2.0, 0.5]) == [3, 1, 0, 2]  # ties keep the sampled order


def _frames(n: int, h: int = 20, w: int = 30) -> np.ndarray:
    f = np.zeros((n, h, w, 3), np.uint8)
    f[..., 0] = (np.arange(n) * 40)[:, None, None]
    return f


def test_strip_one_row_without_gaps_for_thumbnails():
    img = frame_strip(_frames(4), height=10, max_frames=None, gap=0)
    assert img.size == (4 * 15, 10)
    reds = [img.getpixel((15 * k + 7, 5))[0] for k in range(4)]
    assert reds == sorted(reds) and reds[0] < 10 < reds[-1]  # frames left to right in the given order


def test_strip_grid_with_gaps_and_cap_for_the_page():
    img = frame_strip(_frames(14), height=10, columns=4)  # capped at 12 frames: 3 rows of 4
    assert img.size == (4 * 15 + 3 * 2, 3 * 10 + 2 * 2)
    assert frame_strip([], height=8).size == (8, 8)


def test_jpeg_bytes_round_trip():
    img = Image.open(io.BytesIO(jpeg_bytes(frame_strip(_frames(2), height=16, gap=0))))
    assert img.format == "JPEG" and img.size == (48, 16)


def test_precompute_thumbnail_is_the_strip_in_time_order():
    from precompute.reader import thumbnail_strip

    frames = _frames(6)
    indices = [50, 10, 40, 0, 30, 20]
    strip = Image.open(io.BytesIO(thumbnail_strip(frames, indices, 10)))
    assert strip.size == (6 * 15, 10)
    reds = [strip.getpixel((15 * k + 7, 5))[0] for k in range(6)]
    expected = [frames[j, 0, 0, 0] for j in time_order(indices)]
    assert np.allclose(reds, expected, atol=12)
