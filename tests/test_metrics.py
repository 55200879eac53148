import numpy as np
import pytest

from training.metrics import rank_metrics, retrieval_metrics, reversal_accuracy, t2v_ranks, v2t_ranks


def test_rank_metrics_known_values():
    m = rank_metrics(np.array([1, 2, 5, 6, 10, 11, 100, 1]))
    assert m["R@1"] == pytest.approx(2 / 8)
    assert m["R@5"] == pytest.approx(4 / 8)
    assert m["R@10"] == pytest.approx(6 / 8)
    assert m["MdR"] == pytest.approx(5.5)
    assert m["MnR"] == pytest.approx(136 / 8)
    assert set(m) == {"R@1", "R@5", "R@10", "MdR", "MnR"}
    with pytest.raises(ValueError):
        rank_metrics(np.array([]))
    with pytest.raises(ValueError):
        rank_metrics(np.array([0, 1]))


def test_one_caption_per_video():
    sim = np.array([
        [0.9, 0.1, 0.2],  # text 0 -> video 0: rank 1
        [0.8, 0.5, 0.1],  # text 1 -> video 1: rank 2
        [0.7, 0.6, 0.3],  # text 2 -> video 2: rank 3
    ])
    t2v = np.arange(3)
    np.testing.assert_array_equal(t2v_ranks(sim, t2v), [1, 2, 3])
    # v2t: column 0 -> text 0 (0.9) is the top: rank 1; column 1 -> text 1 (0.5) is below
    # text 2 (0.6): rank 2; column 2 -> text 2 (0.3) is above 0.2 and 0.1: rank 1
    np.testing.assert_array_equal(v2t_ranks(sim, t2v), [1, 2, 1])
    m = retrieval_metrics(sim, t2v)
    assert m["t2v"]["R@1"] == pytest.approx(1 / 3) and m["t2v"]["MnR"] == pytest.approx(2)
    assert m["v2t"]["R@1"] == pytest.approx(2 / 3)


def test_several_captions_per_video_best_caption_counts():
    # 4 captions, 2 videos; captions 0,1 describe video 0, captions 2,3 video 1.
    sim = np.array([
        [0.1, 0.9],  # caption 0 (video 0): video 1 wins -> t2v rank 2
        [0.8, 0.2],  # caption 1 (video 0): rank 1
        [0.3, 0.4],  # caption 2 (video 1): rank 1
        [0.6, 0.5],  # caption 3 (video 1): rank 2
    ])
    t2v = np.array([0, 0, 1, 1])
    np.testing.assert_array_equal(t2v_ranks(sim, t2v), [2, 1, 1, 2])
    # video 0: own group's best is caption 1 (0.8), group 1's best is 0.6 -> rank 1.
    # video 1: own group's best is caption 3 (0.5); group 0's best (caption 0) scores 0.9 -> rank 2.
    np.testing.assert_array_equal(v2t_ranks(sim, t2v), [1, 2])
    m = retrieval_metrics(sim, t2v)
    assert m["t2v"]["R@1"] == pytest.approx(0.5) and m["v2t"]["MdR"] == pytest.approx(1.5)


def test_ties_rank_by_strictly_greater_count():
    sim = np.array([[0.5, 0.5, 0.5], [0.5, 0.7, 0.5]])
    np.testing.assert_array_equal(t2v_ranks(sim, np.array([2, 0])), [1, 2])


def test_videos_without_captions_are_left_out_of_v2t():
    sim = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.95]])
    ranks = v2t_ranks(sim, np.array([0, 1]))
    assert ranks.tolist() == [1, 1]


def reference_v2t_ranks(sim: np.ndarray, t2v: np.ndarray) -> np.ndarray:
    """The reference's v2t_metrics re-stated: pad each video's captions to [video, max_text, video]
    with -inf, max over captions, transpose, double argsort; plus one for 1-based ranks."""
    n = sim.shape[1]
    groups = [sim[t2v == g] for g in range(n)]
    width = max(len(g) for g in groups)
    padded = np.stack([np.vstack([g, np.full((width - len(g), n), -np.inf)]) for g in groups])
    best = padded.max(axis=1).T  # [video, group]
    order = np.argsort(-best, axis=1, kind="stable")
    return np.argsort(order, axis=1, kind="stable").diagonal() + 1


@pytest.mark.parametrize("captions_per_video", [1, 2, 5])
def test_v2t_matches_the_reference_formula(captions_per_video: int) -> None:
    rng = np.random.default_rng(captions_per_video)
    n = 30
    t2v = np.repeat(np.arange(n), captions_per_video)
    rng.shuffle(t2v)
    sim = rng.normal(size=(len(t2v), n))
    np.testing.assert_array_equal(v2t_ranks(sim, t2v), reference_v2t_ranks(sim, t2v))


def test_multi_caption_v2t_ranks_groups_not_captions() -> None:
    # video 0 has captions 0,1; video 1 has captions 2,3. For video 0, captions 2 and 3 (one group)
    # both beat its best caption: rank 2 among groups, where ranking individual captions gave 3.
    sim = np.array([[0.5, 0.0], [0.4, 0.0], [0.7, 0.9], [0.6, 0.8]])
    np.testing.assert_array_equal(v2t_ranks(sim, np.array([0, 0, 1, 1])), [2, 1])


def test_one_caption_per_video_v2t_is_rank_among_captions() -> None:
    """MSR-VTT 1k-A (one caption per video): the same as ranking every caption for the video."""
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(40, 40))
    order = np.argsort(-sim, axis=0)
    expected = [int(np.nonzero(order[:, j] == j)[0][0]) + 1 for j in range(40)]
    np.testing.assert_array_equal(v2t_ranks(sim, np.arange(40)), expected)


def test_t2v_matches_argsort_definition():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(50, 20))
    t2v = rng.integers(0, 20, size=50)
    t2v[:20] = np.arange(20)
    order = np.argsort(-sim, axis=1)
    expected = [int(np.nonzero(order[i] == t2v[i])[0][0]) + 1 for i in range(50)]
    np.testing.assert_array_equal(t2v_ranks(sim, t2v), expected)


def test_bad_inputs():
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError):
        retrieval_metrics(np.zeros((2, 2)), np.array([0, 2]))


def test_reversal_accuracy():
    assert reversal_accuracy(np.array([1.0, 2.0, 3.0, 0.0]), np.array([0.0, 2.0, 4.0, -1.0])) == pytest.approx(
        (1 + 0.5 + 0 + 1) / 4)
    assert reversal_accuracy(np.ones(5), np.ones(5)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        reversal_accuracy(np.ones(3), np.ones(2))
