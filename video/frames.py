"""Sampled frames after decoding: put them in time order, and draw them as one strip.

Frames are sampled chunk-major (video.sampling), so their indices are not sorted; every view that
shows frames to a person (thumbnail strips, posters, the app's frame rows) wants them in time order.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["time_order", "frame_strip", "jpeg_bytes", "resize_to_height"]


def time_order(positions: Sequence[float] | np.ndarray) -> list[int]:
    """Indices that sort frames by position (frame index or seconds); ties keep the sampled order."""
    return np.argsort(np.asarray(positions, dtype=np.float64), kind="stable").tolist()


def resize_to_height(frame: np.ndarray, height: int) -> Image.Image:
    """A uint8 RGB frame as an image `height` pixels high, aspect kept (never narrower than 1 px)."""
    img = Image.fromarray(np.asarray(frame, dtype=np.uint8))
    height = max(1, int(height))
    width = max(1, round(img.width * height / max(1, img.height)))
    return img.resize((width, height), Image.BILINEAR) if (width, height) != img.size else img


def frame_strip(frames: np.ndarray | Sequence[np.ndarray], height: int = 96, max_frames: int | None = 12,
                columns: int | None = None, gap: int = 2) -> Image.Image:
    """Frames [T, H, W, 3] in the given order at `height` px, `columns` per row (default: one row).

    Used for library thumbnails (gap 0, JPEG) and the app's frame rows; an empty input gives a grey tile.
    """
    frames = list(frames)[:max_frames] if max_frames is not None else list(frames)
    if not frames:
        return Image.new("RGB", (height, height), (200, 200, 200))
    tiles = [resize_to_height(f, height) for f in frames]
    cols = max(1, min(columns or len(tiles), len(tiles)))
    rows = -(-len(tiles) // cols)
    tw = max(t.width for t in tiles)
    strip = Image.new("RGB", (cols * tw + gap * (cols - 1), rows * height + gap * (rows - 1)), (255, 255, 255))
    for n, t in enumerate(tiles):
        r, c = divmod(n, cols)
        strip.paste(t, (c * (tw + gap), r * (height + gap)))
    return strip


def jpeg_bytes(img: Image.Image, quality: int = 85) -> bytes:
    """An image as JPEG bytes (how libraries store thumbnails and posters)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()
