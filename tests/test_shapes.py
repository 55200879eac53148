import csv
import json

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


def test_make_batch_has_distinct_captions_in_mixed_phrasings():
    rng = np.random.default_rng(0)
    frames, caps, specs = make_batch(rng, 64, 6, 48)
    assert frames.shape == (64, 6, 48, 48, 3) and frames.dtype == np.uint8
    assert len({s.caption() for s in specs}) == 64
    assert all(parse_caption(c) == parse_caption(s.caption()) for c, s in zip(caps, specs))
    assert len({c for c in caps if c not in {s.caption() for s in specs}}) > 0  # mixed phrasings
    np.testing.assert_array_equal(frames[5], render(specs[5], 6, 48))


def test_make_batch_refuses_more_distinct_captions_than_exist():
    with pytest.raises(ValueError):
        make_batch(np.random.default_rng(0), 30, 6, 16, motions=("grows",))  # only 18 distinct captions exist


def test_make_batch_samples_video_times_when_given_segments():
    f, _, specs = make_batch(np.random.default_rng(0), 4, 12, 32, num_segments=6)
    assert f.shape == (4, 12, 32, 32, 3)
    from video.sampling import sample_times

    np.testing.assert_array_equal(f[0], render(specs[0], 12, 32, times=sample_times(12, 6)))


IDS = [f"shapes{i:04d}" for i in range(6)]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    """4 train + 2 test clips written once for the read-only tests below."""
    return write_dataset(tmp_path_factory.mktemp("ds"), seed=0, num_train=4, num_test=2, size=(64, 48),
                         seconds=1.0, fps=12)


def _captions_by_video(root) -> dict[str, list[str]]:
    by_vid: dict[str, list[str]] = {}
    for s in json.loads((root / "MSRVTT_data.json").read_text())["sentences"]:
        by_vid.setdefault(s["video_id"], []).append(s["caption"])
    return by_vid


def _test_rows(root) -> list[dict]:
    with open(root / "MSRVTT_JSFUSION_test.csv") as fh:
        return list(csv.DictReader(fh))


def test_write_dataset_writes_one_video_per_id(small_dataset):
    assert sorted(p.stem for p in (small_dataset / "videos").glob("*.mp4")) == IDS
    data = json.loads((small_dataset / "MSRVTT_data.json").read_text())
    assert {v["video_id"] for v in data["videos"]} == set(IDS)


def test_write_dataset_gives_every_video_several_captions(small_dataset):
    by_vid = _captions_by_video(small_dataset)
    assert set(by_vid) == set(IDS) and all(len(c) >= 3 for c in by_vid.values())


def test_write_dataset_splits_like_msrvtt(small_dataset):
    with open(small_dataset / "MSRVTT_train.9k.csv") as fh:
        assert [r["video_id"] for r in csv.DictReader(fh)] == IDS[:4]
    rows = _test_rows(small_dataset)
    assert [r["video_id"] for r in rows] == IDS[4:]
    assert set(rows[0]) == {"key", "vid_key", "video_id", "sentence"}
    by_vid = _captions_by_video(small_dataset)
    assert all(r["sentence"] == by_vid[r["video_id"]][0] for r in rows)


def test_written_video_shows_what_its_caption_says(small_dataset):
    from video.decode import read_frames

    r = read_frames(small_dataset / "videos" / "shapes0004.mp4", 6)
    assert r.frames.shape == (6, 48, 64, 3) and r.info.num_frames == 12
    specs = load_specs(small_dataset)
    assert sorted(specs) == IDS
    assert specs["shapes0004"].caption() == _test_rows(small_dataset)[0]["sentence"]
    ref = render(specs["shapes0004"], 12, (64, 48))[r.indices]  # a fresh render of the manifest's spec
    assert np.abs(ref.astype(int) - r.frames.astype(int)).mean() < 3


def test_write_dataset_reuses_files_for_the_same_arguments_only(tmp_path):
    args = dict(num_train=4, num_test=2, size=(64, 48), seconds=1.0, fps=12)
    root = write_dataset(tmp_path / "ds", seed=0, **args)
    mtimes = {p: p.stat().st_mtime_ns for p in (root / "videos").glob("*.mp4")}
    write_dataset(tmp_path / "ds", seed=0, **args)
    assert {p: p.stat().st_mtime_ns for p in (root / "videos").glob("*.mp4")} == mtimes
    write_dataset(tmp_path / "ds", seed=1, **args)
    assert any(p.stat().st_mtime_ns != t for p, t in mtimes.items())


def test_write_dataset_test_clips_independent_of_num_train(tmp_path):
    a = write_dataset(tmp_path / "a", num_train=2, num_test=2, size=32, seconds=0.5, fps=4)
    b = write_dataset(tmp_path / "b", num_train=3, num_test=2, size=32, seconds=0.5, fps=4)
    ra = list(csv.DictReader(open(a / "MSRVTT_JSFUSION_test.csv")))
    rb = list(csv.DictReader(open(b / "MSRVTT_JSFUSION_test.csv")))
    assert [r["sentence"] for r in ra] == [r["sentence"] for r in rb]
