"""Hostile uploads to Describe: refused from their headers, or stopped at their limits, in one line each."""
from __future__ import annotations

import dataclasses
import time

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
