"""app.isolation: untrusted work runs in a child with a time and a memory limit, and fails in one line."""
from __future__ import annotations

import time

import numpy as np
import pytest

from app.isolation import LimitExceeded, WorkerFailed, run_limited


def _square(x: int) -> int:
    return x * x


def _sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "done"


def _hungry(mb: int) -> int:
    return int(np.ones(mb * 2**20, dtype=np.uint8).sum())


def _broken() -> None:
    raise ValueError("bad header\nsecond line with internals")


def test_result_comes_back():
    assert run_limited(_square, 7, timeout_s=30) == 49


def test_slow_work_is_stopped_at_its_time_limit():
    t0 = time.monotonic()
    with pytest.raises(LimitExceeded, match="longer than 1 s"):
        run_limited(_sleep, 30, timeout_s=1)
    assert time.monotonic() - t0 < 15  # killed, not waited for (30 s)


def test_memory_limit_stops_a_hungry_worker():
    assert run_limited(_hungry, 64, timeout_s=60, memory_bytes=2 * 2**30) == 64 * 2**20
    with pytest.raises(LimitExceeded, match="memory"):
        run_limited(_hungry, 4096, timeout_s=60, memory_bytes=2 * 2**30)


def test_errors_come_back_as_one_line():
    with pytest.raises(WorkerFailed) as e:
        run_limited(_broken, timeout_s=30)
    assert str(e.value) == "ValueError: bad header"
    assert (e.value.kind, e.value.message) == ("ValueError", "bad header")


def test_real_decode_in_a_worker_matches_the_server_process(tmp_path):
    from video.decode import read_frames, write_video

    frames = np.random.default_rng(0).integers(0, 255, (24, 48, 64, 3), dtype=np.uint8)
    path = write_video(tmp_path / "clip.mp4", frames, fps=12)
    here = read_frames(path, num_frames=6, backend="pyav")
    there = run_limited(read_frames, path, 6, timeout_s=60, kwargs={"backend": "pyav"})
    np.testing.assert_array_equal(there.frames, here.frames)
    assert there.frames.shape == here.frames.shape
    assert list(there.indices) == list(here.indices)
