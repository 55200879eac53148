"""Search hits as moments of videos: pure functions the page and the API share.

A library row is a segment of a video (precompute format 2; a version-1 row is its whole video).
The engine ranks segments; the page shows one card per video, its best moment first, and lists
the video's other matching moments as times to jump to. The similarity plot becomes a timeline of
the whole video: every segment's frames, the matching segments marked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["Moment", "VideoHits", "group_by_video", "format_span", "moment_label", "Timeline", "timeline"]


@dataclass
class Moment:
    row: int
    start: float
    end: float
    score: float


@dataclass
class VideoHits:
    """One video's matching moments: `best` first (highest score), `others` in time order."""

    video: str
    best: Moment
    others: list[Moment] = field(default_factory=list)
    segments: int = 1
    """How many segments the video has in the library (1: the moment is the whole video)."""


def group_by_video(hits: Sequence[Any], segments_of: dict[str, int] | None = None) -> list[VideoHits]:
    """Hits (rank order; each with .index, .file_id, .start, .end, .score) -> one entry per video,
    ordered by each video's best score."""
    groups: dict[str, VideoHits] = {}
    for h in hits:
        m = Moment(int(h.index), float(h.start), float(h.end), float(h.score))
        g = groups.get(h.file_id)
        if g is None:
            n = (segments_of or {}).get(h.file_id, 1)
            groups[h.file_id] = VideoHits(h.file_id, m, segments=n)
        elif m.score > g.best.score:
            g.others.append(g.best)
            g.best = m
        else:
            g.others.append(m)
    out = sorted(groups.values(), key=lambda g: -g.best.score)
    for g in out:
        g.others.sort(key=lambda m: (m.start, m.row))
    return out


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def format_span(start: float, end: float) -> str:
    """'1:05-1:35' (hours shown when needed)."""
    return f"{_clock(start)}-{_clock(end)}"


def moment_label(m: Moment) -> str:
    """How a moment is listed among a video's other matches: its time range and score."""
    return f"{format_span(m.start, m.end)} ({m.score:.3f})"


@dataclass
class Timeline:
    """The query's similarity over a whole video: every segment's frames, and the segments."""

    timestamps: list[float]
    scores: list[float]
    spans: list[tuple[float, float]]
    """(start, end) of every segment, time order."""
    marked: list[bool]
    """Per span: the segment is among the search's matches."""
    best: int | None
    """Index into timestamps of the best frame inside the selected segment."""


def timeline(rows: Sequence[tuple[float, float, Sequence[float], Sequence[float]]], marked_rows: Sequence[bool],
             selected: int) -> Timeline:
    """rows: per segment (start, end, frame timestamps, frame scores), in time order; selected: the
    position in `rows` of the chosen moment. Repeated timestamps keep their best score."""
    points: dict[float, float] = {}
    for _, _, ts, ss in rows:
        for t, s in zip(ts, ss):
            t = round(float(t), 6)
            points[t] = max(points.get(t, float("-inf")), float(s))
    times = sorted(points)
    scores = [points[t] for t in times]
    best = None
    if 0 <= selected < len(rows):
        s0, s1 = rows[selected][0], rows[selected][1]
        inside = [i for i, t in enumerate(times) if s0 - 1e-6 <= t <= s1 + 1e-6]
        if inside:
            best = max(inside, key=lambda i: scores[i])
    return Timeline(times, scores, [(float(a), float(b)) for a, b, _, _ in rows], list(marked_rows), best)
