"""Retrieval metrics (R@1/5/10, median and mean rank) and reversal accuracy.

Ranks are 1-based. Ties: rank = 1 + the number of candidates scoring strictly higher, so a tie
with the true item does not hurt it (the optimistic convention; with continuous float
similarities ties practically never happen, except for a degenerate model that outputs constant
scores, which this convention would flatter: check MnR against chance, (n + 1) / 2, for such runs).
"""

from __future__ import annotations

import numpy as np

__all__ = ["rank_metrics", "t2v_ranks", "v2t_ranks", "retrieval_metrics", "reversal_accuracy"]


def rank_metrics(ranks: np.ndarray) -> dict:
    """1-based ranks -> {"R@1", "R@5", "R@10" as fractions in [0, 1], "MdR", "MnR"}."""
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if ranks.size == 0:
        raise ValueError("no ranks to score")
    if (ranks < 1).any():
        raise ValueError("ranks are 1-based; got a rank below 1")
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in (1, 5, 10)}
    out["MdR"] = float(np.median(ranks))
    out["MnR"] = float(np.mean(ranks))
    return out


def _check(sim: np.ndarray, text_to_video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sim = np.asarray(sim)
    t2v = np.asarray(text_to_video, dtype=np.int64).reshape(-1)
    if sim.ndim != 2:
        raise ValueError(f"sim must be [n_text, n_video], got shape {sim.shape}")
    if t2v.shape[0] != sim.shape[0]:
        raise ValueError(f"text_to_video has {t2v.shape[0]} entries for {sim.shape[0]} texts")
    if t2v.size and (t2v.min() < 0 or t2v.max() >= sim.shape[1]):
        raise ValueError("text_to_video holds a video index outside sim's columns")
    return sim, t2v


def t2v_ranks(sim: np.ndarray, text_to_video: np.ndarray) -> np.ndarray:
    """Rank of each text's own video among all videos."""
    sim, t2v = _check(sim, text_to_video)
    true = sim[np.arange(sim.shape[0]), t2v]
    return 1 + (sim > true[:, None]).sum(axis=1)


def v2t_ranks(sim: np.ndarray, text_to_video: np.ndarray) -> np.ndarray:
    """For each video that has captions, the rank of its own caption group among all groups.

    As the reference (modules/metrics.py, v2t_metrics): a group (the captions of one video) scores
    a video by its best caption, and the video ranks the groups. With one caption per video
    (MSR-VTT 1k-A) this is the rank of its caption among all captions. Videos without any caption
    are left out, as queries and as groups.
    """
    sim, t2v = _check(sim, text_to_video)
    has = np.bincount(t2v, minlength=sim.shape[1]) > 0
    group = np.full((sim.shape[1], sim.shape[1]), -np.inf)
    np.maximum.at(group, t2v, sim)  # group[g, v] = best caption of video g against video v
    group = group[has][:, has]
    own = np.diagonal(group)
    return 1 + (group > own[None, :]).sum(axis=0)


def retrieval_metrics(sim: np.ndarray, text_to_video: np.ndarray) -> dict:
    """{"t2v": rank_metrics, "v2t": rank_metrics} for sim [n_text, n_video].

    text_to_video[i] is the column of caption i's video; a video may have several captions
    (video-to-text then ranks caption groups, each scored by its best caption).
    """
    return {"t2v": rank_metrics(t2v_ranks(sim, text_to_video)),
            "v2t": rank_metrics(v2t_ranks(sim, text_to_video))}


def reversal_accuracy(score_true: np.ndarray, score_reversed: np.ndarray) -> float:
    """Fraction of pairs where the true clip outscores its time reversal; ties count 1/2."""
    a = np.asarray(score_true, dtype=np.float64).reshape(-1)
    b = np.asarray(score_reversed, dtype=np.float64).reshape(-1)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need two non-empty score arrays of equal length, got {a.shape} and {b.shape}")
    return float(np.mean((a > b) + 0.5 * (a == b)))
