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
    # video 0: best own caption is 1 (0.8), the top of column 0 -> rank 1.
    # video 1: best own caption is 3 (0.5); caption 0 scores 0.9 -> rank 2.
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


def test_large_random_matches_argsort_definition():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(50, 20))
    t2v = rng.integers(0, 20, size=50)
    t2v[:20] = np.arange(20)
    order = np.argsort(-sim, axis=1)
    expected = [int(np.nonzero(order[i] == t2v[i])[0][0]) + 1 for i in range(50)]
    np.testing.assert_array_equal(t2v_ranks(sim, t2v), expected)
    exp_v2t = []
    for j in range(20):
        col_order = np.argsort(-sim[:, j])
        pos = [int(np.nonzero(col_order == i)[0][0]) + 1 for i in np.nonzero(t2v == j)[0]]
        exp_v2t.append(min(pos))
    np.testing.assert_array_equal(v2t_ranks(sim, t2v), exp_v2t)


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
