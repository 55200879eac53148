"""Small images for the page, drawn with PIL only (no plotting library needed).

- similarity_plot: query similarity over a video's sampled frames, best moment marked.
- frame_strip: a row of frames, for videos a browser cannot play and for uploads (video.frames's, the
  one strip renderer, re-exported here for the page).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from video.frames import frame_strip

__all__ = ["similarity_plot", "frame_strip", "format_time", "Y_RANGE"]

#: The similarity axis: the same for every video, so two plots compare at a glance (a score below
#: the bottom widens it downwards in steps of 0.1).
Y_RANGE = (0.0, 1.0)

_BG = (255, 255, 255)
_AXIS = (90, 90, 90)
_GRID = (228, 228, 228)
_LINE = (37, 99, 235)
_BEST = (220, 38, 38)
_TEXT = (40, 40, 40)


def format_time(seconds: float) -> str:
    """1.5 -> '0:01.5', 75.25 -> '1:15.2' (minutes:seconds with one decimal)."""
    seconds = max(0.0, float(seconds))
    m, s = divmod(seconds, 60.0)
    if round(s, 1) >= 60.0:  # 59.96 s would print as 0:60.0
        m, s = m + 1, 0.0
    return f"{int(m)}:{s:04.1f}"


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def similarity_plot(
    timestamps: Sequence[float],
    scores: Sequence[float],
    best: int | None = None,
    *,
    duration: float | None = None,
    size: tuple[int, int] = (640, 260),
    title: str = "",
    spans: Sequence[tuple[float, float]] = (),
    marked: Sequence[bool] = (),
) -> Image.Image:
    """A line plot of scores against timestamps (seconds), the `best` point marked and labelled.

    spans: segments of the video (a timeline of moments): boundaries drawn, `marked` ones shaded."""
    w, h = size
    img = Image.new("RGB", size, _BG)
    d = ImageDraw.Draw(img)
    small, normal = _font(12), _font(14)
    left, right, top, bottom = 58, 16, 48, 40  # room at the top for the component label
    pw, ph = w - left - right, h - top - bottom
    if title:
        d.text((left, 8), title, fill=_TEXT, font=normal)
    t = np.asarray(timestamps, dtype=float)
    s = np.asarray(scores, dtype=float)
    if t.size == 0 or s.size != t.size:
        d.text((left, top + ph // 2), "no frames to plot", fill=_AXIS, font=normal)
        return img
    t_max = max(float(duration or 0.0), float(t.max()), 1e-6)
    lo, hi = min(Y_RANGE[0], np.floor(float(s.min()) * 10) / 10), Y_RANGE[1]

    def xy(ti: float, si: float) -> tuple[float, float]:
        return left + pw * ti / t_max, top + ph * (1.0 - (si - lo) / (hi - lo))

    # grid and axes
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        _, y = xy(0, v)
        d.line([(left, y), (left + pw, y)], fill=_GRID)
        d.text((22, y - 7), f"{v:.2f}", fill=_AXIS, font=small)
    for k in range(6):
        tv = t_max * k / 5
        x, _ = xy(tv, lo)
        d.line([(x, top + ph), (x, top + ph + 4)], fill=_AXIS)
        label = f"{tv:.1f}s"
        d.text((x - 12, top + ph + 6), label, fill=_AXIS, font=small)
    d.rectangle([left, top, left + pw, top + ph], outline=_AXIS)
    d.text((left + pw // 2 - 30, h - 16), "time (seconds)", fill=_AXIS, font=small)
    d.text((left, top - 18), "cosine similarity", fill=_AXIS, font=small)

    _draw_spans(d, spans, marked, lambda tv: xy(tv, lo)[0], top, top + ph)
    pts = [xy(ti, si) for ti, si in zip(t, s)]
    if len(pts) > 1:
        d.line(pts, fill=_LINE, width=2)
    for x, y in pts:
        d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=_LINE)
    if best is not None and 0 <= best < len(pts):
        x, y = pts[best]
        d.line([(x, top), (x, top + ph)], fill=_BEST, width=1)
        d.ellipse([x - 6, y - 6, x + 6, y + 6], outline=_BEST, width=3)
        label = f"best {format_time(t[best])} ({s[best]:.3f})"
        tx = min(max(x + 8, left + 2), left + pw - 8 * len(label) // 1.3)
        d.text((tx, max(top + 2, y - 22)), label, fill=_BEST, font=normal)
    return img


_MARK = (254, 226, 226)
_SPAN = (203, 213, 225)


def _draw_spans(d: ImageDraw.ImageDraw, spans: Sequence[tuple[float, float]], marked: Sequence[bool],
                x_of, top: float, bottom: float) -> None:
    """Matching segments shaded, every segment boundary a thin line (nothing for a single segment)."""
    if len(spans) < 2 and not any(marked):
        return
    for k, (a, b) in enumerate(spans):
        if k < len(marked) and marked[k]:
            d.rectangle([x_of(a), top + 1, x_of(b), bottom - 1], fill=_MARK)
    for a, _ in spans[1:]:
        d.line([(x_of(a), top + 1), (x_of(a), bottom - 1)], fill=_SPAN, width=1)
