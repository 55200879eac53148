"""Search hits as moments: grouping by video, time ranges, the whole-video timeline, and the engine
and API on a library of a long video (precompute format 2)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from app.moments import format_span, group_by_video, moment_label, timeline


@dataclass
class _H:
    index: int
    file_id: str
    start: float
    end: float
    score: float


def test_group_by_video_best_moment_first_others_in_time_order():
    hits = [_H(7, "b.mp4", 60, 90, 0.9), _H(2, "a.mp4", 0, 10, 0.8), _H(9, "b.mp4", 120, 150, 0.7),
            _H(5, "b.mp4", 30, 60, 0.6), _H(3, "c.mp4", 0, 5, 0.5)]
    groups = group_by_video(hits, {"b.mp4": 6})
    assert [g.video for g in groups] == ["b.mp4", "a.mp4", "c.mp4"]
    b = groups[0]
    assert (b.best.row, b.segments) == (7, 6) and [m.row for m in b.others] == [5, 9]
    assert groups[1].others == [] and groups[1].segments == 1


def test_group_by_video_keeps_the_higher_score_when_hits_are_unsorted():
    groups = group_by_video([_H(1, "v", 0, 10, 0.2), _H(2, "v", 10, 20, 0.6)])
    assert groups[0].best.row == 2 and [m.row for m in groups[0].others] == [1]


@pytest.mark.parametrize("start,end,text", [(0, 9.6, "0:00-0:10"), (65, 95, "1:05-1:35"),
                                            (3600, 3630, "1:00:00-1:00:30")])
def test_format_span(start, end, text):
    assert format_span(start, end) == text


def test_moment_label_has_time_and_score():
    from app.moments import Moment

    assert moment_label(Moment(3, 30, 60, 0.31234)) == "0:30-1:00 (0.312)"


def test_timeline_spans_marks_and_best_inside_the_selected_segment():
    rows = [(0.0, 10.0, [2.0, 5.0, 8.0], [0.1, 0.9, 0.2]),
            (10.0, 20.0, [12.0, 15.0, 15.0, 18.0], [0.3, 0.5, 0.6, 0.4])]
    tl = timeline(rows, [False, True], selected=1)
    assert tl.timestamps == [2.0, 5.0, 8.0, 12.0, 15.0, 18.0]
    assert tl.scores == [0.1, 0.9, 0.2, 0.3, 0.6, 0.4]  # repeated 15.0 keeps its best score
    assert tl.spans == [(0.0, 10.0), (10.0, 20.0)] and tl.marked == [False, True]
    assert tl.best == 4  # the best frame of the selected segment, not the video's best (5.0)


# ------------------------------------------------------------------------------------ engine and API


@pytest.fixture(scope="module")
def long_engine(tmp_path_factory, tiny_model):
    """A library of one 60 s video cut into segments at its hard cuts, and a short clip."""
    from test_video_segments import FPS, _shots

    from app.engine import SearchEngine
    from precompute import BuildSettings, build_library, open_library
    from video.decode import write_video

    root = tmp_path_factory.mktemp("moments")
    src = root / "videos"
    src.mkdir()
    write_video(src / "long.mp4", _shots([0, 250, 500, 750, 1000, 1250, 1500]), FPS)
    write_video(src / "short.mp4", _shots([0, 50], seed=3), FPS)
    build_library(src, root / "lib", tiny_model, BuildSettings(workers=0, progress_bar=False, thumb_height=24))
    return SearchEngine(tiny_model, open_library(root / "lib"), caption_bank=["a red circle moves left"],
                        served_dirs=[src], cache_dir=root / "cache")


def test_engine_ranks_segments_and_hits_carry_their_moment(long_engine):
    lib = long_engine.library
    assert long_engine.segments_of("long.mp4") == 6 and long_engine.segments_of("short.mp4") == 1
    res = long_engine.search("a red circle moves left", 10)
    assert res.ok and len(res.hits) == 7
    for h in res.hits:
        rec = lib.records[h.index]
        assert (h.file_id, h.start, h.end) == (rec.video, rec.start, rec.end)
    spans = sorted((h.start, h.end) for h in res.hits if h.file_id == "long.mp4")
    assert spans[0][0] == 0 and all(abs(e - s - 10) < 0.1 for s, e in spans)


def test_timeline_covers_the_whole_video(long_engine):
    res = long_engine.search("a red circle moves left", 3)
    hit = next(h for h in res.hits if h.file_id == "long.mp4")
    tl, _ = long_engine.video_timeline("a red circle moves left", hit.index, [h.index for h in res.hits])
    assert len(tl.spans) == 6 and tl.spans[0][0] == 0 and tl.spans[-1][1] == pytest.approx(60, abs=0.1)
    assert min(tl.timestamps) < 10 and max(tl.timestamps) > 50 and len(tl.timestamps) >= 6 * 6
    marked_rows = {h.index for h in res.hits if h.file_id == "long.mp4"}
    rows = long_engine.library.rows_of_video("long.mp4")
    assert tl.marked == [r in marked_rows for r in rows]
    a, b = tl.spans[rows.index(hit.index)]
    assert a <= tl.timestamps[tl.best] <= b


def test_api_hit_json_returns_the_segment_as_start_and_end(long_engine):
    from app.mcp import hit_json

    res = long_engine.search("a red circle moves left", 10)
    for h in res.hits:
        j = hit_json(long_engine, h, lambda path: None, res.query)
        if h.file_id == "long.mp4":
            assert (j["start"], j["end"]) == (round(h.start, 3), round(h.end, 3)) and j["video_id"] == "long.mp4"
        else:
            assert 0 <= j["start"] < j["end"] <= h.duration + 1e-6 and j["video_id"] == "short.mp4"


def test_similarity_plot_draws_marked_segments():
    from app.render import similarity_plot

    ts, sc = list(np.linspace(0, 59, 30)), list(np.linspace(0.1, 0.3, 30))
    plain = np.asarray(similarity_plot(ts, sc, 3, duration=60))
    marked = np.asarray(similarity_plot(ts, sc, 3, duration=60, spans=[(0, 20), (20, 40), (40, 60)],
                                        marked=[False, True, False]))
    diff = np.abs(plain.astype(int) - marked.astype(int)).sum(-1) > 0
    cols = np.flatnonzero(diff.any(0))
    w = plain.shape[1]
    # the shading lies in the middle third of the plot area (left margin 58 px, right 16 px)
    assert cols.size and cols.min() >= 58 + (w - 74) / 3 - 3 and cols.max() <= 58 + 2 * (w - 74) / 3 + 3
