"""Hostile uploads to Describe: refused from their headers, or stopped at their limits, in one line each."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from media_files import encode_h264

from app.config import Limits
from app.engine import SearchEngine


@pytest.fixture(scope="module")
def engine_for(tiny_library_for_uploads):
    model, lib = tiny_library_for_uploads

    def make(**limits) -> SearchEngine:
        return SearchEngine(model, lib, limits=dataclasses.replace(Limits(), **limits))

    return make


@pytest.fixture(scope="module")
def tiny_library_for_uploads(tmp_path_factory):
    from shapes_library import make_shapes_library

    from model import load_model
    from precompute.library import open_library

    model = load_model("random:tiny")
    lib, _ = make_shapes_library(tmp_path_factory.mktemp("lib"), model=model, num=3)
    return model, open_library(lib)


def test_raw_h264_without_frame_count_is_refused_before_decoding(engine_for, tmp_path):
    upload = encode_h264(tmp_path / "upload.mp4", 1200, 256, 25, "h264")
    d = engine_for(max_video_frames=1000).describe(str(upload))
    assert not d.ok
    assert "upload.mp4" in d.message and "over the upload limits" in d.message and "1000" in d.message
    assert str(tmp_path) not in d.message  # no server path


def test_one_keyframe_upload_is_stopped_at_its_time_limit(engine_for, tmp_path):
    upload = encode_h264(tmp_path / "long.mp4", 2400, 256, 4, "mp4", gop=100_000)  # 2,400 frames to decode
    t0 = time.monotonic()
    d = engine_for(decode_seconds=0.05, max_video_seconds=3600).describe(str(upload))
    assert time.monotonic() - t0 < 20
    assert not d.ok and "long.mp4" in d.message and str(tmp_path) not in d.message
    assert "limit" in d.message or "longer than" in d.message


def test_memory_limit_reaches_the_decoder(engine_for, tmp_path):
    upload = encode_h264(tmp_path / "ok.mp4", 48, 64, 12, "mp4")
    assert engine_for().describe(str(upload)).ok
    d = engine_for(decode_memory_mb=64).describe(str(upload))  # too little even to start Python's decoder
    assert not d.ok and "ok.mp4" in d.message


def test_a_normal_upload_still_describes(engine_for, tmp_path):
    upload = encode_h264(tmp_path / "fine.mp4", 60, 96, 12, "mp4")
    d = engine_for().describe(str(upload))
    assert d.ok and len(d.timestamps) > 0 and d.similar


def _long_upload(path, seconds_per_shot: float, shots: int, fps: int = 4):
    """Hard cuts between flat-coloured shots, each with a small moving square: a long upload of `shots` shots."""
    from video.decode import write_video

    rng = np.random.default_rng(5)
    per = int(seconds_per_shot * fps)
    frames = np.zeros((per * shots, 48, 64, 3), np.uint8)
    for k in range(shots):
        colour = rng.integers(0, 256, 3)
        frames[k * per:(k + 1) * per] = colour
        for i in range(k * per, (k + 1) * per):
            frames[i, 10:18, (2 * i) % 56:(2 * i) % 56 + 8] = 255 - colour
    return write_video(path, frames, fps=fps)


def test_a_long_upload_gets_a_timeline_of_its_moments(engine_for, tmp_path):
    upload = _long_upload(tmp_path / "long.mp4", 20, 3)  # 60 s: longer than one segment may be
    d = engine_for().describe(str(upload))
    assert d.ok and len(d.timeline) >= 2
    starts = [m.start for m in d.timeline]
    assert starts == sorted(starts) and d.timeline[0].start == pytest.approx(0, abs=0.5)
    assert d.timeline[-1].end == pytest.approx(d.duration, abs=1.0)
    assert all(m.end > m.start and m.caption for m in d.timeline)


def test_a_short_upload_has_no_timeline(engine_for, tmp_path):
    upload = _long_upload(tmp_path / "short.mp4", 5, 2)  # 10 s: one clip
    d = engine_for().describe(str(upload))
    assert d.ok and d.timeline == []


def test_timeline_markdown_names_each_moment_and_where_its_caption_came_from():
    from app.engine import MomentCaption
    from app.pages import timeline_markdown

    text = timeline_markdown([MomentCaption(0, 20, "a red circle", "generated"),
                              MomentCaption(20, 59.96, "a dog", "caption bank", 0.4321)])
    assert "0:00.0-0:20.0" in text or "0:00-0:20" in text
    assert "a red circle | generated" in text and "closest caption-bank line, 0.432" in text
    assert "1:00" in text and timeline_markdown([]) == ""


def test_a_model_with_a_trained_head_captions_each_moment(tmp_path):
    from app.config import BUNDLED_LIBRARY
    from model import load_model
    from precompute.library import open_library

    engine = SearchEngine(load_model("bundled:moving-shapes"), open_library(BUNDLED_LIBRARY))
    d = engine.describe(str(_long_upload(tmp_path / "long.mp4", 20, 3)))
    assert d.ok and len(d.timeline) >= 2
    assert all(m.source == "generated" and m.caption for m in d.timeline)
