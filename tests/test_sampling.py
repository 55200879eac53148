import numpy as np
import pytest

from video.sampling import sample_indices, sample_times, timestamps_for


def reference_uniform(vlen: int, num_frames: int, num_prompts: int = 6) -> list[int]:
    """The reference's test sampling (datasets/video_capture.py, sample='uniform'), re-stated for videos
    of at least num_prompts frames."""
    intervals = np.linspace(start=0, stop=vlen, num=num_prompts + 1).astype(int)
    ranges = [(intervals[i], intervals[i + 1] - 1) for i in range(num_prompts)]
    chunks = num_frames // num_prompts
    return [int((x1 - x0) // (chunks + 1) * (i + 1) + x0) for i in range(chunks) for x0, x1 in ranges]


@pytest.mark.parametrize("vlen,num,expected", [
    (600, 12, [33, 133, 233, 333, 433, 533, 66, 166, 266, 366, 466, 566]),  # the example
    (130, 12, [6, 28, 50, 71, 93, 115, 12, 35, 57, 77, 100, 122]),
    (600, 6, [49, 149, 249, 349, 449, 549]),
    (8, 12, [0, 1, 2, 4, 5, 6, 0, 1, 2, 4, 5, 6]),  # fewer frames than requested
    (6, 12, [0, 1, 2, 3, 4, 5] * 2),
    (3, 12, [0, 0, 1, 1, 2, 2] * 2),  # fewer frames than segments: each group still spans the video
    (1, 6, [0] * 6),
])
def test_test_positions_are_pinned(vlen: int, num: int, expected: list[int]) -> None:
    assert sample_indices(vlen, num) == expected


@pytest.mark.parametrize("vlen", [6, 7, 13, 48, 100, 299, 600, 1001])
@pytest.mark.parametrize("num", [6, 12, 18])
def test_test_positions_equal_the_reference_formula(vlen: int, num: int) -> None:
    assert sample_indices(vlen, num) == reference_uniform(vlen, num)


def test_every_group_spans_the_video_in_time_order() -> None:
    idx = sample_indices(120, 12, 6)
    for g in range(2):
        group = idx[6 * g : 6 * g + 6]
        assert group == sorted(group) and [i // 20 for i in group] == list(range(6))


@pytest.mark.parametrize("vlen", [600, 130, 13])
def test_train_frames_fall_in_the_reference_ranges_without_their_last_frame(vlen: int) -> None:
    edges = np.linspace(0, vlen, 7).astype(int)
    seen = set()
    for seed in range(200):
        idx = sample_indices(vlen, 12, train=True, rng=np.random.default_rng(seed))
        for j, i in enumerate(idx):
            s = j % 6
            x0, x1 = edges[s], edges[s + 1] - 1
            assert x0 <= i < max(x1, x0 + 1)
        seen.update(idx)
    # every frame the reference's random.choice(range(x0, x1)) can draw is drawn
    reachable = {f for s in range(6) for f in range(edges[s], edges[s + 1] - 1)}
    assert seen <= reachable and len(seen) > 0.9 * len(reachable)


def test_train_sampling_is_seeded() -> None:
    a = sample_indices(600, 12, train=True, rng=np.random.default_rng(1))
    assert a == sample_indices(600, 12, train=True, rng=np.random.default_rng(1))
    assert a != sample_indices(600, 12, train=True, rng=np.random.default_rng(2))


def test_train_on_one_frame_ranges_takes_their_frame() -> None:
    # the reference's random.choice(range(x0, x0)) would fail on these; we take x0
    assert sample_indices(6, 6, train=True, rng=np.random.default_rng(0)) == [0, 1, 2, 3, 4, 5]
    assert max(sample_indices(3, 6, train=True, rng=np.random.default_rng(0))) <= 2


@pytest.mark.parametrize("total,num,seg", [(0, 6, 6), (-3, 6, 6), (10, 7, 6), (10, 0, 6)])
def test_invalid_arguments(total, num, seg):
    with pytest.raises(ValueError):
        sample_indices(total, num, seg)


def test_sample_times_follow_the_same_rule() -> None:
    np.testing.assert_allclose(sample_times(6, 6), (np.arange(6) + 0.5) / 6)
    np.testing.assert_allclose(sample_times(12, 6), np.concatenate([(np.arange(6) + 1 / 3) / 6,
                                                                     (np.arange(6) + 2 / 3) / 6]))
    t = sample_times(12, 6, train=True, rng=np.random.default_rng(0))
    assert t.shape == (12,) and (np.floor(t * 6) == np.tile(np.arange(6), 2)).all()


def test_timestamps_for():
    assert timestamps_for([0, 5, 25], 25.0) == [0.0, 0.2, 1.0]
    with pytest.raises(ValueError):
        timestamps_for([1], 0)
