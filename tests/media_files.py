"""Media files the tests craft themselves (shared by the video-reading and precompute tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_audio_only(path: Path) -> Path:
    """An mp4 holding half a second of silent AAC audio and no video stream."""
    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=16000)
        s.layout = "mono"
        for i in range(8):
            fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, i * 1024
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def encode_h264(path: Path, n: int, size: int, fps: int, fmt: str, gop: int | None = None) -> Path:
    """n frames of a moving gradient with libx264; fmt "h264" writes a raw stream (no header counts)."""
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
            img = np.stack([(xx + i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (i * 3) % 256)], -1)
            for p in s.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path
