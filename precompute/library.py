"""The on-disk library format, and the reader the app and the CLI share.

A library is a folder (format version ``FORMAT_VERSION``)::

    manifest.json     format version, model spec + fingerprint, frames, dim, count, index, settings
    videos.jsonl      one VideoRecord per line; line i describes row i of the arrays
    video_emb.npy     float16 [N, D], L2-normalised (np.load(..., mmap_mode="r"))
    frame_emb.npy     float16 [N, T, D], L2-normalised, rows in the order of each record's timestamps
    index.faiss       faiss index over video_emb (inner product = cosine)
    failures.jsonl    {"path", "reason", ...} for every file that could not be indexed
    thumbs/KEY.jpg    strip of the sampled frames in time order; posters/KEY.jpg: the middle frame
    .work/            resumable state of an unfinished build (absent when the build finished)

``manifest.json`` is replaced last, so a reader never sees arrays from one build with the manifest
of another once a build has finished. Importing this module is cheap (numpy only; faiss loads on the
first search).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from model.files import atomic_write_text

from .errors import LibraryError, ModelMismatchError
from .index import read_index

__all__ = [
    "FORMAT_VERSION", "LibraryError", "ModelMismatchError", "VideoRecord", "Library", "open_library",
    "MANIFEST", "VIDEOS", "VIDEO_EMB", "FRAME_EMB", "INDEX", "FAILURES", "THUMBS", "POSTERS", "WORK",
]

FORMAT_VERSION = 1

MANIFEST = "manifest.json"
VIDEOS = "videos.jsonl"
VIDEO_EMB = "video_emb.npy"
FRAME_EMB = "frame_emb.npy"
INDEX = "index.faiss"
FAILURES = "failures.jsonl"
THUMBS = "thumbs"
POSTERS = "posters"
WORK = ".work"


@dataclass
class VideoRecord:
    """What the library knows about one indexed video (one line of videos.jsonl)."""

    id: str
    """Stable key: the path relative to SOURCE (posix), or the MSR-VTT video_id."""
    path: str
    """Relative to the manifest's source_root where possible, else absolute."""
    duration: float
    fps: float
    timestamps: list[float]
    """Seconds, one per sampled frame, in the order of this video's frame_emb rows (chunk-major)."""
    captions: list[str] = field(default_factory=list)
    """Ground-truth captions when the source has them (annotation files), else []."""
    generated_caption: str | None = None
    """Only when the model has a trained captioning head."""
    thumbnail: str = ""
    """Library-relative path of the JPEG strip of the sampled frames (time order); '' if none."""
    poster: str = ""
    """Library-relative path of the poster JPEG (middle sampled frame); '' if none."""
    size: int = 0
    """File size in bytes when encoded: with mtime, how incremental builds spot a changed file."""
    mtime: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VideoRecord":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def media_key(video_id: str) -> str:
    """File stem for an id's thumbnail and poster: stable, filesystem-safe, unique in practice."""
    return hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:20]


def shard_of(video_id: str, num_shards: int) -> int:
    """Which shard encodes an id: a stable hash, so adding files does not move the others."""
    if num_shards <= 1:
        return 0
    return int(hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:12], 16) % num_shards


# ------------------------------------------------------------------------------------ atomic I/O


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | str]) -> None:
    """Atomic JSON-lines file (rows are dicts or already-serialised lines)."""
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False, separators=(",", ":")) for r in rows]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise LibraryError(f"{path}:{n}: not valid JSON ({e}); the library is damaged, rebuild it") from e
    return out


# ------------------------------------------------------------------------------------ reading


class Library:
    """A finished library, opened read-only. Arrays are memory-mapped float16 (flat memory at any N).

    ``video_emb`` [N, D] and ``frame_emb`` [N, T, D] are float16 memmaps: cast a slice with
    ``.astype(np.float32)`` for arithmetic. ``search`` takes float32 queries.
    """

    def __init__(self, root: str | os.PathLike[str]):
        root = Path(root).expanduser()
        self.root: Path = root
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            hint = " (a build was interrupted: run precompute again to finish it)" if (root / WORK).is_dir() else ""
            raise LibraryError(f"{root}: not a precompute library, no {MANIFEST}{hint}")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise LibraryError(f"{manifest_path}: cannot read the manifest ({e})") from e
        version = self.manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise LibraryError(
                f"{root}: library format version {version!r}, this code reads version {FORMAT_VERSION}; "
                "rebuild it with `python -m precompute ... --overwrite`"
            )
        self.records: list[VideoRecord] = [VideoRecord.from_dict(d) for d in read_jsonl(root / VIDEOS)]
        self.ids: list[str] = [r.id for r in self.records]
        n, dim, frames = len(self.records), int(self.manifest["dim"]), int(self.manifest["frames"])
        if n != int(self.manifest.get("count", n)):
            raise LibraryError(f"{root}: {VIDEOS} has {n} videos but the manifest says {self.manifest['count']}")
        self.video_emb: np.ndarray = self._load(VIDEO_EMB, (n, dim))
        self.frame_emb: np.ndarray = self._load(FRAME_EMB, (n, frames, dim))
        self.failures: list[dict[str, Any]] = read_jsonl(root / FAILURES)
        src = self.manifest.get("source_root")
        self.source_root: Path | None = Path(src) if src else None
        rel = self.manifest.get("source_root_relative")
        if rel and (self.source_root is None or not self.source_root.is_dir()) and (self.root / rel).is_dir():
            self.source_root = (self.root / rel).resolve()  # moved together with its videos
        self._index = None
        self._row_of: dict[str, int] | None = None

    def _load(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        path = self.root / name
        if shape[0] == 0:
            return np.zeros(shape, dtype=np.float16)
        try:
            arr = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise LibraryError(f"{path}: cannot read ({e}); the library is damaged, rebuild it") from e
        if arr.shape != shape:
            raise LibraryError(f"{path}: shape {arr.shape}, expected {shape} from the manifest")
        return arr

    # -------------------------------------------------------------- properties
    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"Library({str(self.root)!r}, {len(self)} videos, model={self.model_spec!r})"

    @property
    def fingerprint(self) -> str:
        return str(self.manifest.get("fingerprint", ""))

    @property
    def model_spec(self) -> str:
        return str(self.manifest.get("model", ""))

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def num_frames(self) -> int:
        return int(self.manifest["frames"])

    def row(self, video_id: str) -> int:
        """Row of an id (KeyError if absent)."""
        if self._row_of is None:
            self._row_of = {v: i for i, v in enumerate(self.ids)}
        return self._row_of[video_id]

    # -------------------------------------------------------------- checks and paths
    def check_model(self, fingerprint: str, spec: str | None = None) -> None:
        """Refuse to search (or extend) with a model other than the one that built the library."""
        if fingerprint != self.fingerprint:
            raise ModelMismatchError(mismatch_message(self.root, self.model_spec, self.fingerprint, spec, fingerprint))

    def path_of(self, i: int) -> Path | None:
        """Absolute path of video i if the file exists (the library stores no copies of videos)."""
        p = Path(self.records[i].path)
        if not p.is_absolute():
            if self.source_root is None:
                return None
            p = self.source_root / p
        return p if p.is_file() else None

    def media_path(self, relative: str) -> Path | None:
        """Absolute path of a thumbnail/poster given its library-relative path, if it exists."""
        if not relative:
            return None
        p = self.root / relative
        return p if p.is_file() else None

    # -------------------------------------------------------------- search
    def _load_index(self):

        if self._index is None:
            self._index = read_index(self.root / INDEX, self.manifest.get("index", {}))
        return self._index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by cosine: queries [Q, D] (or [D]) float32, L2-normalised.

        Returns (scores [Q, k], indices [Q, k]) with k clipped to N; approximate indexes may
        return -1 for missing neighbours (never for the default exact IndexFlatIP).
        """
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32))
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries must be [Q, {self.dim}] (or [{self.dim}]), got shape {q.shape}")
        k = max(0, min(int(k), len(self)))
        if k == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        scores, idx = self._load_index().search(q, k)
        return scores, idx.astype(np.int64, copy=False)


def mismatch_message(root: Path, lib_spec: str, lib_fp: str, spec: str | None, fp: str) -> str:
    return (
        f"{root} was built with model {lib_spec!r} (fingerprint {lib_fp}), but the model in use is "
        f"{spec or 'another model'!r} (fingerprint {fp}). Embeddings of different weights cannot be "
        "mixed: use the same model, or rebuild the library with --overwrite."
    )


def open_library(path: str | os.PathLike[str]) -> Library:
    """Open a finished library folder for reading (raises LibraryError with the reason)."""
    return Library(path)
