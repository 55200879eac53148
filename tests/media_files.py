"""Media files the tests craft themselves (shared by the video-reading and precompute tests)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.media import encode_gradient as encode_h264  # noqa: F401 - re-exported for tests


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
