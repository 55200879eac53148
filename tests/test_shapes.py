import csv
import json
import time

import numpy as np
import pytest

from training.shapes import (
    COLORS,
    MOTIONS,
    REVERSE,
    SHAPES,
    ClipSpec,
    ShapeSpec,
    load_specs,
    make_batch,
    parse_caption,
    parse_caption_all,
    random_clip,
    render,
    write_dataset,
)


def all_single_shape_specs():
    for c, s, m in ((c, s, m) for c in COLORS for s in SHAPES for m in MOTIONS):
        yield ClipSpec((ShapeSpec(c, s, m, 0.17, (0.5, 0.5), fade_at=0.1),), (10, 10, 10))


def test_vocabulary():
    assert len(COLORS) >= 4 and set(SHAPES) == {"circle", "square", "triangle"}
    assert set(MOTIONS) == set(REVERSE) and all(REVERSE[REVERSE[m]] == m for m in MOTIONS)
    assert all(REVERSE[m] != m for m in MOTIONS)


def test_determinism_by_seed():
    a = [random_clip(np.random.default_rng(7), 2) for _ in range(3)]
    b = [random_clip(np.random.default_rng(7), 2) for _ in range(3)]
    assert a == b
    assert random_clip(np.random.default_rng(8), 2) != a[0]
    np.testing.assert_array_equal(render(a[0], 6, 32), render(b[0], 6, 32))
    fa, ca, _ = make_batch(np.random.default_rng(1), 8, 6, 32)
    fb, cb, _ = make_batch(np.random.default_rng(1), 8, 6, 32)
    assert ca == cb and np.array_equal(fa, fb)


@pytest.mark.parametrize("num_frames", [1, 6, 7, 24])
def test_reversed_renders_reversed_frames_exactly(num_frames):
    rng = np.random.default_rng(0)
    for _ in range(30):
        spec = random_clip(rng, max_shapes=2)
        fwd = render(spec, num_frames, (40, 30))
        back = render(spec.reversed(), num_frames, (40, 30))
        np.testing.assert_array_equal(back, fwd[::-1])
        assert spec.reversed().reversed() == spec
        assert ClipSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_every_motion_changes_over_time_and_differs_from_reversal():
    for spec in all_single_shape_specs():
        frames = render(spec, 6, 32).astype(int)
        assert np.abs(frames[0] - frames[-1]).max() > 100, spec.caption()
        assert not np.array_equal(frames, render(spec.reversed(), 6, 32))


def test_motion_directions_and_magnitudes():
    """Translations travel over half the frame; grows really grows; appears starts empty."""

    def centroid_and_area(frame, bg=10):
        mask = np.abs(frame.astype(int) - bg).max(axis=-1) > 60
        ys, xs = np.nonzero(mask)
        return (xs.mean(), ys.mean(), mask.sum()) if mask.any() else (None, None, 0)

    def spec(m):
        return ClipSpec((ShapeSpec("red", "circle", m, 0.17, (0.5, 0.5), fade_at=0.0),), (10, 10, 10))

    size = 48
    x0, y0, _ = centroid_and_area(render(spec("moves right"), 2, size)[0])
    x1, y1, _ = centroid_and_area(render(spec("moves right"), 2, size)[1])
    assert x1 - x0 > 0.5 * size and abs(y1 - y0) < 1
    x0, y0, _ = centroid_and_area(render(spec("moves up"), 2, size)[0])
    x1, y1, _ = centroid_and_area(render(spec("moves up"), 2, size)[1])
    assert y0 - y1 > 0.5 * size and abs(x1 - x0) < 1  # image y points down: up = decreasing y
    a0 = centroid_and_area(render(spec("grows"), 2, size)[0])[2]
    a1 = centroid_and_area(render(spec("grows"), 2, size)[1])[2]
    assert a1 > 5 * a0 > 0
    f = render(spec("appears"), 2, size)
    assert centroid_and_area(f[0])[2] == 0 and centroid_and_area(f[1])[2] > 100


def test_render_shapes_colours_and_times():
    spec = ClipSpec((ShapeSpec("blue", "square", "grows", 0.2, (0.5, 0.5)),), (5, 6, 7))
    f = render(spec, 3, (40, 30))
    assert f.shape == (3, 30, 40, 3) and f.dtype == np.uint8
    assert tuple(f[0, 0, 0]) == (5, 6, 7)
    assert tuple(f[1, 15, 20]) == COLORS["blue"]
    np.testing.assert_array_equal(render(spec, 3, (40, 30), times=[0.0, 0.5, 1.0]), f)
    with pytest.raises(ValueError):
        render(spec, 4, 32, times=[0.0, 1.0])


def test_captions_and_reversal_captions():
    rng = np.random.default_rng(3)
    for _ in range(50):
        spec = random_clip(rng, max_shapes=2)
        caps = spec.captions()
        assert caps[0] == spec.caption() and len(set(caps)) == len(caps) >= 3
        assert caps == spec.captions()
        rev = spec.reversed().caption()
        assert rev != spec.caption()
        for a, b in zip(parse_caption_all(spec.caption()), parse_caption_all(rev)):
            assert a[:2] == b[:2] and REVERSE[a[2]] == b[2]
    two = ClipSpec((ShapeSpec("red", "circle", "moves left", 0.17, (0.5, 0.5)),
                    ShapeSpec("blue", "square", "grows", 0.17, (0.5, 0.5))))
    assert two.caption() == "a red circle moves left and a blue square grows"
    assert "the red circle slides to the left" in two.captions()[1]


def test_parse_caption_round_trips_every_phrasing():
    for spec in all_single_shape_specs():
        sh = spec.shapes[0]
        for cap in spec.captions():
            assert parse_caption(cap) == (sh.color, sh.shape, sh.motion), cap
            assert parse_caption(cap.upper() + ".") == (sh.color, sh.shape, sh.motion)


def test_parse_caption_free_text_and_unknowns():
    assert parse_caption("A green ball goes out of view") == ("green", "circle", "disappears")
    assert parse_caption("the yellow box shows up") == ("yellow", "square", "appears")
    assert parse_caption("something else entirely") == (None, None, None)
    assert parse_caption_all("a red circle rises and a white triangle falls") == [
        ("red", "circle", "moves up"), ("white", "triangle", "moves down")]


def test_make_batch_distinct_and_fast():
    rng = np.random.default_rng(0)
    frames, caps, specs = make_batch(rng, 64, 6, 48)
    assert frames.shape == (64, 6, 48, 48, 3) and frames.dtype == np.uint8
    assert len({s.caption() for s in specs}) == 64
    assert all(parse_caption(c) == parse_caption(s.caption()) for c, s in zip(caps, specs))
    assert len({c for c in caps if c not in {s.caption() for s in specs}}) > 0  # mixed phrasings
    np.testing.assert_array_equal(frames[5], render(specs[5], 6, 48))
    t = time.perf_counter()
    make_batch(rng, 64, 6, 32)
    print(f"make_batch 64x6x32: {1000 * (time.perf_counter() - t):.1f} ms")  # no timing assert
    with pytest.raises(ValueError):
        make_batch(rng, 30, 6, 16, motions=("grows",))  # only 18 distinct captions exist
    f, _, _ = make_batch(rng, 4, 12, 32, num_segments=6, train=True)
    assert f.shape == (4, 12, 32, 32, 3)


def test_write_dataset_files_and_videos(tmp_path):
    from video.decode import read_frames

    root = write_dataset(tmp_path / "ds", seed=0, num_train=4, num_test=2, size=(64, 48), seconds=1.0, fps=12)
    ids = [f"shapes{i:04d}" for i in range(6)]
    assert sorted(p.stem for p in (root / "videos").glob("*.mp4")) == ids
    data = json.loads((root / "MSRVTT_data.json").read_text())
    assert {v["video_id"] for v in data["videos"]} == set(ids)
    by_vid = {}
    for s in data["sentences"]:
        by_vid.setdefault(s["video_id"], []).append(s["caption"])
    assert set(by_vid) == set(ids) and all(len(c) >= 3 for c in by_vid.values())
    with open(root / "MSRVTT_train.9k.csv") as fh:
        assert [r["video_id"] for r in csv.DictReader(fh)] == ids[:4]
    with open(root / "MSRVTT_JSFUSION_test.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["video_id"] for r in rows] == ids[4:]
    assert all(r["sentence"] == by_vid[r["video_id"]][0] for r in rows)
    assert set(rows[0]) == {"key", "vid_key", "video_id", "sentence"}

    r = read_frames(root / "videos" / "shapes0004.mp4", 6)
    assert r.frames.shape == (6, 48, 64, 3) and r.info.num_frames == 12
    # the video shows what the caption says: compare with a fresh render of the manifest's spec
    specs = load_specs(root)
    assert sorted(specs) == ids
    spec = specs["shapes0004"]
    assert spec.caption() == rows[0]["sentence"]
    ref = render(spec, 12, (64, 48))[r.indices]
    assert np.abs(ref.astype(int) - r.frames.astype(int)).mean() < 3

    # idempotent: same arguments reuse the files; different ones rewrite them
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "videos").glob("*.mp4")}
    write_dataset(tmp_path / "ds", seed=0, num_train=4, num_test=2, size=(64, 48), seconds=1.0, fps=12)
    assert {p: p.stat().st_mtime_ns for p in (root / "videos").glob("*.mp4")} == mtimes
    write_dataset(tmp_path / "ds", seed=1, num_train=4, num_test=2, size=(64, 48), seconds=1.0, fps=12)
    assert any(p.stat().st_mtime_ns != t for p, t in mtimes.items())


def test_write_dataset_test_clips_independent_of_num_train(tmp_path):
    a = write_dataset(tmp_path / "a", num_train=2, num_test=2, size=32, seconds=0.5, fps=4)
    b = write_dataset(tmp_path / "b", num_train=3, num_test=2, size=32, seconds=0.5, fps=4)
    ra = list(csv.DictReader(open(a / "MSRVTT_JSFUSION_test.csv")))
    rb = list(csv.DictReader(open(b / "MSRVTT_JSFUSION_test.csv")))
    assert [r["sentence"] for r in ra] == [r["sentence"] for r in rb]
