"""Videos the benchmarks and tests write themselves: a moving gradient in H.264, any length and GOP."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def encode_gradient(path: Path, n: int, size: int, fps: int, fmt: str, gop: int | None = None) -> Path:
    """n frames of a moving gradient (libx264, ultrafast); fmt "h264" is a raw stream."""
    import av

    yy, xx = np.mgrid[0:size, 0:size]
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        opts = {"preset": "ultrafast"}
        if gop:
            opts.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
        s.options = opts
        for i in range(n):
            img = np.stack([(xx + i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (3 * i) % 256)], -1)
            for p in s.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
