"""app.render: the time format, the similarity plot and the frame strip, pixel by pixel where it matters."""

from __future__ import annotations

import numpy as np
import pytest

from app.render import Y_RANGE, format_time, frame_strip, similarity_plot


@pytest.mark.parametrize("seconds,text", [
    (0, "0:00.0"),
    (1.5, "0:01.5"),
    (59.94, "0:59.9"),
    (59.96, "1:00.0"),  # rounds up into the next minute, never "0:60.0"
    (60, "1:00.0"),
    (75.25, "1:15.2"),
    (119.97, "2:00.0"),
    (-3, "0:00.0"),
])
def test_format_time(seconds, text):
    assert format_time(seconds) == text


def _blue(img) -> np.ndarray:
    a = np.asarray(img).astype(int)
    return (a[..., 2] > 200) & (a[..., 0] < 80) & (a[..., 1] < 140)


def test_plot_has_a_fixed_axis():
    """Two videos with different score ranges are drawn on the same axis: a higher score sits higher."""
    low = similarity_plot([0, 1, 2], [0.20, 0.20, 0.20])
    high = similarity_plot([0, 1, 2], [0.40, 0.40, 0.40])
    y_low = np.nonzero(_blue(low).any(axis=1))[0].mean()
    y_high = np.nonzero(_blue(high).any(axis=1))[0].mean()
    assert y_high < y_low - 10  # image rows grow downwards
    assert Y_RANGE[0] <= 0 and Y_RANGE[1] >= 0.5


def test_plot_marks_the_best_point():
    img = similarity_plot([0, 1, 2, 3], [0.1, 0.3, 0.2, 0.1], best=1, duration=4)
    a = np.asarray(img).astype(int)
    red = (a[..., 0] > 200) & (a[..., 1] < 80) & (a[..., 2] < 80)
    cols = np.nonzero(red.any(axis=0))[0]
    assert cols.size and img.size == (640, 260)
    blue_cols = np.nonzero(_blue(img).any(axis=0))[0]
    # the red marker is near the second of four points, a quarter of the way along the plot
    assert blue_cols.min() < np.median(cols) < (blue_cols.min() + blue_cols.max()) / 2


def test_plot_without_frames_says_so():
    img = similarity_plot([], [])
    assert not _blue(img).any() and np.asarray(img).min() < 200  # text, no line


def test_frame_strip_layout():
    frames = np.zeros((6, 20, 40, 3), np.uint8)
    frames[:, :, :, 0] = np.arange(6)[:, None, None] * 40
    strip = frame_strip(frames, height=10, columns=3)
    assert strip.size == (3 * 20 + 2 * 2, 2 * 10 + 2)
    a = np.asarray(strip)
    assert a[5, 5, 0] == 0 and a[5, 22 + 5, 0] == 40 and a[12 + 5, 5, 0] == 120  # reading order
    assert frame_strip([], height=16).size == (16, 16)
