"""Which files are videos: the one extension list every room uses (precompute, training, the app).

The order matters where a video is looked up by id (``<video_id><ext>``): earlier extensions win.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["VIDEO_EXTENSIONS", "is_video_name", "extensions_preferring", "is_inside"]

VIDEO_EXTENSIONS: tuple[str, ...] = (
    ".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv",
    ".ts", ".mts", ".m2ts", ".vob", ".divx", ".asf",
)


def is_video_name(name: str | os.PathLike[str]) -> bool:
    """True when a file name has a video extension (any case); hidden files (".x.mp4") are not videos."""
    base = Path(name).name
    return not base.startswith(".") and Path(base).suffix.lower() in VIDEO_EXTENSIONS


def extensions_preferring(primary: str) -> tuple[str, ...]:
    """VIDEO_EXTENSIONS with `primary` first (a dataset's usual container is tried before the others)."""
    return (primary,) + tuple(e for e in VIDEO_EXTENSIONS if e != primary)


def is_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> bool:
    """`path` is `folder` or below it, after normalising '..' and '.' (symlinks are not followed)."""
    p, f = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(folder))
    return os.path.commonpath([p, f]) == f
