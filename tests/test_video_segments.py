"""Long videos as moments: segment options, merge/split rules, cut detection, one decoding pass,
library format 2 (segments as rows), version-1 compatibility, resume mid-video, bounded memory."""
from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from precompute import BuildSettings, build_library, open_library
from video.segments import (
    SegmentOptionError,
    SegmentOptions,
    fixed_windows,
    parse_segments,
    read_segments,
    shots_to_segments,
)

REPO = Path(__file__).resolve().parent.parent
FPS = 25


def _shots(bounds: list[int], size=(48, 64), seed: int = 0) -> np.ndarray:
    """Frames with a hard cut at every bound: each shot a flat colour with a small moving square."""
    rng = np.random.default_rng(seed)
    h, w = size
    frames = np.zeros((bounds[-1], h, w, 3), np.uint8)
    for a, b in zip(bounds, bounds[1:]):
        colour = rng.integers(0, 256, 3)
        frames[a:b] = colour
        for i in range(a, b):
            x = (i * 2) % (w - 8)
            frames[i, 10:18, x:x + 8] = 255 - colour
    return frames


@pytest.fixture(scope="module")
def cuts_video(tmp_path_factory) -> tuple[Path, list[int]]:
    from video.decode import write_video

    bounds = [0, 37, 100, 140, 400, 450, 900, 1500]  # 60 s at 25 fps; shots of 1.5-24 s
    path = tmp_path_factory.mktemp("cuts") / "cuts.mp4"
    write_video(path, _shots(bounds), FPS)
    return path, bounds


def _flat(pairs) -> list[float]:
    return [float(x) for p in pairs for x in p]


# ------------------------------------------------------------------------------------ options


@pytest.mark.parametrize("text,want", [
    ("auto", SegmentOptions("auto")),
    ("none", SegmentOptions("none")),
    ("fixed:10", SegmentOptions("fixed", 10.0, 10.0)),
    ("fixed:10/5", SegmentOptions("fixed", 10.0, 5.0)),
    (" FIXED:2.5/0.5 ", SegmentOptions("fixed", 2.5, 0.5)),
])
def test_parse_segments(text, want):
    assert parse_segments(text) == want


@pytest.mark.parametrize("text,kw,message", [
    ("shots", {}, "auto, none or fixed:W[/S]"),
    ("fixed:", {}, "auto, none or fixed:W[/S]"),
    ("fixed:-3", {}, "auto, none or fixed:W[/S]"),
    ("fixed:0", {}, "must be positive"),
    ("fixed:5/10", {}, "would skip parts"),
    ("auto", {"max_segment": 0}, "--max-segment"),
    ("auto", {"min_segment": -1}, "--min-segment"),
    ("auto", {"min_segment": 20, "max_segment": 30}, "at most half"),
])
def test_bad_segment_options_are_refused(text, kw, message):
    with pytest.raises(SegmentOptionError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_segments(text, **kw)


@pytest.mark.parametrize("flags", [["--segments", "shots"], ["--segments", "fixed:5/10"], ["--max-segment", "0"]])
def test_cli_refuses_bad_segment_options_with_one_line(tmp_path, capsys, flags):
    from precompute.__main__ import main

    (tmp_path / "src").mkdir()
    code = main([str(tmp_path / "src"), "--out", str(tmp_path / "lib"), "--model", "random:tiny",
                 "--no-progress", *flags])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: --") and len(err.splitlines()) == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------ rules


@pytest.mark.parametrize("cuts,duration,want", [
    ([], 20.0, [(0.0, 20.0)]),                                          # short video: one segment
    ([], 70.0, [(0.0, 30.0), (30.0, 50.0), (50.0, 70.0)]),              # one long shot: windows <= max
    ([10.0, 20.0], 30.0, [(0.0, 10.0), (10.0, 20.0), (20.0, 30.0)]),    # shots kept as they are
    ([10.0, 11.0, 20.0], 30.0, [(0.0, 11.0), (11.0, 20.0), (20.0, 30.0)]),  # 1 s shot -> previous one
    ([1.0, 10.0], 20.0, [(0.0, 10.0), (10.0, 20.0)]),                   # short first shot -> next one
    ([10.0, 19.5], 20.0, [(0.0, 10.0), (10.0, 20.0)]),                  # short last shot -> previous one
    ([5.0, 45.0], 50.0, [(0.0, 5.0), (5.0, 25.0), (25.0, 45.0), (45.0, 50.0)]),  # 40 s shot split equally
])
def test_merge_and_split_rules(cuts, duration, want):
    got = shots_to_segments(cuts, duration, min_segment=2.0, max_segment=30.0)
    assert _flat(got) == pytest.approx(_flat(want))


@pytest.mark.parametrize("seed", range(5))
def test_segments_tile_the_video_within_limits(seed):
    rng = np.random.default_rng(seed)
    duration = float(rng.uniform(60, 600))
    cuts = sorted(rng.uniform(0, duration, int(rng.integers(0, 80))).tolist())
    segs = shots_to_segments(cuts, duration, min_segment=2.0, max_segment=30.0)
    assert segs[0][0] == 0 and segs[-1][1] == pytest.approx(duration)
    assert all(a[1] == b[0] for a, b in zip(segs, segs[1:]))
    assert all(e - s <= 30.0 + 1e-6 for s, e in segs)
    assert all(e - s >= 2.0 - 1e-6 for s, e in segs[:-1])  # only the tail of a split may be anywhere


def test_fixed_windows():
    assert fixed_windows(25.0, 10.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (15.0, 25.0)]
    assert fixed_windows(20.0, 10.0, 5.0) == [(0.0, 10.0), (5.0, 15.0), (10.0, 20.0)]
    assert fixed_windows(8.0, 10.0, 5.0) == [(0.0, 8.0)]


# ------------------------------------------------------------------------------------ one decoding pass


def test_hard_cuts_found_within_one_frame(cuts_video):
    path, bounds = cuts_video
    opts = parse_segments("auto", min_segment=1.0, max_segment=30.0)
    segs = list(read_segments(path, opts, num_frames=12))
    starts = [s.start for s in segs]
    # every shot is >= 1 s here, and none > 30 s: each boundary is a segment start, within a frame
    assert len(segs) == len(bounds) - 1
    for got, b in zip(starts, bounds[:-1]):
        assert abs(got - b / FPS) <= 1.0 / FPS + 1e-6
    assert segs[-1].end == pytest.approx(bounds[-1] / FPS, abs=1.0 / FPS)
    for s in segs:
        assert s.frames.shape[0] == 12 and s.frames.dtype == np.uint8
        assert all(s.start <= t < s.end for t in s.timestamps)
        # a segment's frames all come from its own shot: one flat background colour
        corners = s.frames[:, -4:, -4:].reshape(12, -1, 3).mean(1)
        assert np.ptp(corners, axis=0).max() < 12


def test_fixed_windows_decode(cuts_video):
    path, _ = cuts_video
    segs = list(read_segments(path, parse_segments("fixed:20/10"), num_frames=6))
    got = _flat((s.start, s.end) for s in segs)
    assert got == pytest.approx(_flat([(0, 20), (10, 30), (20, 40), (30, 50), (40, 60)]), abs=0.05)
    assert all(len(s.timestamps) == 6 and s.timestamps == sorted(s.timestamps) for s in segs)


# ------------------------------------------------------------------------------------ libraries


def _settings(**kw) -> BuildSettings:
    base = dict(workers=0, chunk_size=2, batch_size=4, progress_bar=False, thumb_height=24,
                min_segment=1.0, max_segment=10.0)
    base.update(kw)
    return BuildSettings(**base)


@pytest.fixture(scope="module")
def long_source(cuts_video, tmp_path_factory) -> Path:
    """One 60 s video with 7 shots and two 1 s clips."""
    from video.decode import write_video

    src = tmp_path_factory.mktemp("long") / "src"
    src.mkdir()
    shutil.copy2(cuts_video[0], src / "b_long.mp4")
    write_video(src / "a_short.mp4", _shots([0, 25], seed=1), FPS)
    write_video(src / "c_short.mp4", _shots([0, 25], seed=2), FPS)
    return src


@pytest.fixture(scope="module")
def long_reference(long_source, tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("ref") / "lib"
    report = build_library(long_source, out, tiny_model, _settings())
    return report, open_library(out)


def test_library_rows_are_segments(long_reference):
    report, lib = long_reference
    assert lib.format_version == 2 and lib.segments["spec"] == "auto" and lib.segments["max_segment"] == 10.0
    assert report.videos == 3 and report.indexed == 3 and report.total == len(lib)
    rows = lib.rows_of_video("b_long.mp4")
    recs = [lib.records[i] for i in rows]
    assert len(recs) >= 7 and [r.segment for r in recs] == list(range(len(recs)))
    assert all(r.id == f"b_long.mp4#{r.segment:05d}" and r.end - r.start <= 10.0 + 1e-6 for r in recs)
    assert recs[0].start == 0 and all(a.end == b.start for a, b in zip(recs, recs[1:]))
    assert len({r.thumbnail for r in recs}) == len(recs) and all((lib.root / r.poster).is_file() for r in recs)
    short = lib.records[lib.row("a_short.mp4")]
    assert (short.video, short.start, short.segment) == ("a_short.mp4", 0.0, 0) and short.end == short.duration
    # different shots, different embeddings
    emb = lib.video_emb[rows].astype(np.float32)
    assert np.abs(emb[0] - emb[-1]).max() > 1e-3


def _as_version_1(src: Path, dst: Path) -> Path:
    """A copy of a library written as format 1 wrote it: no segment fields in the manifest or the rows."""
    import json

    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["format_version"] = 1
    manifest.pop("segments", None)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    rows = [json.loads(line) for line in (dst / "videos.jsonl").read_text().splitlines() if line.strip()]
    for row in rows:
        for key in ("video", "start", "end", "segment"):
            row.pop(key, None)
    (dst / "videos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def test_version_1_library_opens_as_one_segment_per_video(tmp_path):
    lib = open_library(_as_version_1(REPO / "assets" / "library-shapes", tmp_path / "v1"))
    assert lib.format_version == 1 and lib.segments["mode"] == "none"
    for i, r in enumerate(lib.records):
        assert (r.video, r.start, r.end, r.segment) == (r.id, 0.0, r.duration, 0)
        assert lib.rows_of_video(r.id) == [i]
    scores, idx = lib.search(lib.video_emb[0].astype(np.float32), 1)
    assert idx[0, 0] == 0


def test_interrupted_mid_video_resumes_to_the_same_library(long_source, long_reference, tmp_path, tiny_model):
    """Stopped after the first batch of the long video's segments: no part of it is kept, and the
    next run re-encodes it whole and equals the uninterrupted build."""
    out = tmp_path / "lib"
    calls = []

    def stop(done, total, message):
        if message.startswith("encoded"):
            calls.append(message)
            if len(calls) == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_library(long_source, out, tiny_model, _settings(), progress=stop)
    chunks = sorted((out / ".work" / "chunks").glob("chunk-*.json"))
    import json

    kept = [r for c in chunks for r in json.loads(c.read_text())["records"]]
    assert kept and {r["video"] for r in kept} == {"a_short.mp4"}  # the long video was in progress: not kept
    report = build_library(long_source, out, tiny_model, _settings())
    assert report.resumed == 1 and report.indexed == 2
    lib, ref = open_library(out), long_reference[1]
    assert lib.ids == ref.ids
    np.testing.assert_allclose(lib.video_emb.astype(np.float32), ref.video_emb.astype(np.float32), atol=2e-3)
    assert [(r.start, r.end) for r in lib.records] == [(r.start, r.end) for r in ref.records]


def test_changed_long_file_is_resegmented_whole(long_source, tmp_path, tiny_model):
    from video.decode import write_video

    src = tmp_path / "src"
    shutil.copytree(long_source, src)
    out = tmp_path / "lib"
    build_library(src, out, tiny_model, _settings())
    before = open_library(out)
    n_long = len(before.rows_of_video("b_long.mp4"))
    write_video(src / "b_long.mp4", _shots([0, 250, 500], seed=5), FPS)  # now 20 s, two shots
    report = build_library(src, out, tiny_model, _settings())
    lib = open_library(out)
    recs = [lib.records[i] for i in lib.rows_of_video("b_long.mp4")]
    assert report.indexed == 1 and report.skipped_unchanged == 2
    assert len(recs) == 2 != n_long and recs[1].start == pytest.approx(10.0, abs=0.05)
    stale = {before.records[i].thumbnail for i in before.rows_of_video("b_long.mp4")} - {r.thumbnail for r in recs}
    assert stale and not any((out / t).exists() for t in stale)


def test_other_segment_settings_are_refused(long_source, long_reference, tmp_path, tiny_model):
    from precompute import ModelMismatchError

    out = tmp_path / "lib"
    shutil.copytree(long_reference[1].root, out)
    with pytest.raises(ModelMismatchError, match="segments=auto.*segments=fixed:5/5"):
        build_library(long_source, out, tiny_model, _settings(segments="fixed:5"))


def test_segments_none_keeps_whole_files(long_source, tmp_path, tiny_model):
    build_library(long_source, tmp_path / "lib", tiny_model, _settings(segments="none"))
    lib = open_library(tmp_path / "lib")
    assert lib.ids == ["a_short.mp4", "b_long.mp4", "c_short.mp4"] and lib.segments["mode"] == "none"


@pytest.mark.slow
def test_thirty_minute_video_indexed_in_bounded_memory(tmp_path, tiny_model):
    """The decoding pass holds a bounded window of frames: a 30-minute video peaks no higher than a
    3-minute one (numpy allocations, traced), and the whole build indexes it."""
    import av

    def write(path: Path, seconds: int, fps: int = 5) -> Path:
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=fps)
            s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
            s.options = {"preset": "ultrafast"}
            for i in range(seconds * fps):
                shot = i // (fps * 45)  # a cut every 45 s: split into windows, then cut
                img = np.full((32, 32, 3), (shot * 53) % 256, np.uint8)
                img[4:12, (i % 20):(i % 20) + 8] = 255
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        return path

    def peak(path: Path) -> tuple[int, int]:
        tracemalloc.start()
        n = sum(1 for _ in read_segments(path, parse_segments("auto")))
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return n, top

    n_short, short = peak(write(tmp_path / "short.mp4", 180))
    (tmp_path / "src").mkdir()
    long_path = write(tmp_path / "src" / "long.mp4", 1800)
    n_long, long = peak(long_path)
    assert n_long > 5 * n_short and long < 1.5 * short + 1_000_000
    report = build_library(tmp_path / "src", tmp_path / "lib", tiny_model,
                           BuildSettings(workers=1, progress_bar=False, thumb_height=24))
    lib = open_library(tmp_path / "lib")
    assert report.indexed == 1 and len(lib) == n_long and lib.records[-1].end == pytest.approx(1800, abs=0.5)
