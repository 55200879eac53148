"""The on-disk library format, and the reader the app and the CLI share.

A library is a folder (format version ``FORMAT_VERSION``)::

    manifest.json     format version, model spec + fingerprint, frames, dim, count, index, settings, segments
    videos.jsonl      one VideoRecord per line, one per segment; line i describes row i of the arrays
    video_emb.npy     float16 [N, D], L2-normalised (np.load(..., mmap_mode="r"))
    frame_emb.npy     float16 [N, T, D], L2-normalised, rows in the order of each record's timestamps
    index.faiss       faiss index over video_emb (inner product = cosine)
    failures.jsonl    {"path", "reason", ...} for every file that could not be indexed
    thumbs/KEY.jpg    strip of the segment's sampled frames in time order; posters/KEY.jpg: the middle frame
    .work/            resumable state of an unfinished build (absent when the build finished)

``manifest.json`` is replaced last, so a reader never sees arrays from one build with the manifest
of another once a build has finished. Importing this module is cheap (numpy only; faiss loads on the
first search).

Version 2 made a row a *segment* of a video (records gained ``video``, ``start``, ``end``,
``segment``); version-1 libraries open unchanged, each row read as the one segment of its video.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from model.files import atomic_write_text
from video.files import is_inside

from .errors import LibraryError, ModelMismatchError
from .index import read_index

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT_VERSION", "LibraryError", "ModelMismatchError", "VideoRecord", "Library", "open_library",
    "MANIFEST", "VIDEOS", "VIDEO_EMB", "FRAME_EMB", "INDEX", "FAILURES", "THUMBS", "POSTERS", "WORK",
    "source_root_within",
]

FORMAT_VERSION = 2
#: Versions this code reads (version 1: one row per video, read as one segment covering it).
READABLE_VERSIONS = (1, 2)

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
    """What the library knows about one indexed segment of a video (one line of videos.jsonl)."""

    id: str
    """Stable key of the row: the video's id when the video is one segment, else ``VIDEO#NNNNN`` (segment)."""
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
    video: str = ""
    """The source file's id (the path relative to SOURCE, or the MSR-VTT video_id); '' reads as `id`."""
    start: float = 0.0
    """Seconds: where the segment starts in the video."""
    end: float = 0.0
    """Seconds: where it ends (0 reads as the video's duration)."""
    segment: int = 0
    """Index of the segment within its video (time order)."""

    def __post_init__(self) -> None:
        if not self.video:  # a version-1 row: the whole video is its one segment
            self.video = self.id
        if self.end <= 0:
            self.end = self.duration

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

    def __init__(self, root: str | os.PathLike[str], allowed_roots: Iterable[str | os.PathLike[str]] | None = None):
        """Open the library at `root`.

        allowed_roots: folders the operator configured; a recorded source root outside all of them is
        not trusted (no video file is served from it, rows stay searchable). None trusts any source root.
        Every path a record names is checked (see ``refused``); the arrays, records and manifest are
        checked to belong to one build (a library being assembled refuses to open).
        """
        root = Path(root).expanduser()
        self.root: Path = root
        manifest_path = root / MANIFEST
        stamp = _stamp(manifest_path)
        if stamp is None:
            hint = " (a build was interrupted or is being assembled: run precompute again to finish it)" \
                if (root / WORK).is_dir() else ""
            raise LibraryError(f"{root}: not a precompute library, no {MANIFEST}{hint}")
        self._stamp = stamp
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise LibraryError(f"{manifest_path}: cannot read the manifest ({e})") from e
        version = self.manifest.get("format_version") if isinstance(self.manifest, dict) else None
        if version not in READABLE_VERSIONS:
            raise LibraryError(
                f"{root}: library format version {version!r}, this code reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}; "
                "rebuild it with `python -m precompute ... --overwrite`"
            )
        self.records: list[VideoRecord] = [_record(d, root) for d in read_jsonl(root / VIDEOS)]
        self.ids: list[str] = [r.id for r in self.records]
        n, dim, frames = len(self.records), _int(self.manifest, "dim", root), _int(self.manifest, "frames", root)
        if n != _int(self.manifest, "count", root, default=n):
            raise LibraryError(f"{root}: {VIDEOS} has {n} videos but the manifest says {self.manifest['count']}")
        self.video_emb: np.ndarray = self._load(VIDEO_EMB, (n, dim))
        self.frame_emb: np.ndarray = self._load(FRAME_EMB, (n, frames, dim))
        self.failures: list[dict[str, Any]] = read_jsonl(root / FAILURES)
        self.source_root: Path | None = self._source_root(allowed_roots)
        self.refused: dict[int, str] = {}
        """Rows whose record names a file outside the library or its source root: row -> reason. They are
        listed in ``failures``, never returned by ``search``, and none of their files is served."""
        self._check_paths()
        self._check_same_build()
        self._index = None
        self._row_of: dict[str, int] | None = None
        self._rows_of_video: dict[str, list[int]] | None = None

    def _source_root(self, allowed_roots: Iterable[str | os.PathLike[str]] | None) -> Path | None:
        """The folder the videos are in: recorded, or found beside the library; None if untrusted."""
        root = recorded_source_root(self.root, self.manifest)
        if root is not None and allowed_roots is not None and not _within_any(root, allowed_roots):
            log.warning("%s: source root %s lies outside the configured folders; its videos are not served",
                        self.root, root)
            return None
        return root

    def _check_paths(self) -> None:
        """Refuse every row that names a video, thumbnail or poster outside where it may be."""
        for i, rec in enumerate(self.records):
            reason = self._path_problem(rec)
            if reason is not None:
                self.refused[i] = reason
                self.failures.append({"id": rec.id, "path": rec.path, "reason": f"refused: {reason}"})
                log.warning("%s: row %d (%r) refused: %s", self.root, i, rec.id, reason)

    def _path_problem(self, rec: VideoRecord) -> str | None:
        for what, rel, subdir in (("thumbnail", rec.thumbnail, THUMBS), ("poster", rec.poster, POSTERS)):
            if rel and (Path(rel).is_absolute() or not is_inside(self.root / rel, self.root / subdir)):
                return f"its {what} {rel!r} lies outside the library's {subdir}/ folder"
        p = Path(rec.path)
        if not rec.path:
            return "it names no video file"
        if p.is_absolute():
            bases = [b for b in (self.source_root, self.root) if b is not None]
            if not any(is_inside(p, b) for b in bases):
                return f"its video {rec.path!r} lies outside the library and its source root"
        elif self.source_root is not None and not is_inside(self.source_root / p, self.source_root):
            return f"its video {rec.path!r} leaves the source root"
        elif self.source_root is None and ".." in p.parts:
            return f"its video {rec.path!r} leaves the source root"
        return None

    def _check_same_build(self) -> None:
        """The manifest read at the start is still the live one: no assembly swapped files meanwhile."""
        if _stamp(self.root / MANIFEST) != self._stamp:
            raise LibraryError(f"{self.root}: the library was being rebuilt while it was opened; open it again")

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

    @property
    def format_version(self) -> int:
        return int(self.manifest.get("format_version", 1))

    @property
    def segments(self) -> dict[str, Any]:
        """The segmentation settings of the build ({"mode": "none"} for a version-1 library)."""
        return dict(self.manifest.get("segments") or {"mode": "none", "spec": "none"})

    def rows_of_video(self, video: str) -> list[int]:
        """Rows of every segment of a source file, in time order ([] if absent)."""
        if self._rows_of_video is None:
            by: dict[str, list[int]] = {}
            for i, r in enumerate(self.records):
                by.setdefault(r.video, []).append(i)
            for rows in by.values():
                rows.sort(key=lambda i: (self.records[i].start, self.records[i].segment))
            self._rows_of_video = by
        return list(self._rows_of_video.get(video, []))

    # -------------------------------------------------------------- checks and paths
    def check_model(self, fingerprint: str, spec: str | None = None) -> None:
        """Refuse to search (or extend) with a model other than the one that built the library."""
        if fingerprint != self.fingerprint:
            raise ModelMismatchError(mismatch_message(self.root, self.model_spec, self.fingerprint, spec, fingerprint))

    def path_of(self, i: int) -> Path | None:
        """Absolute path of video i if it is a regular file inside the (trusted) source root or the library."""
        if i in self.refused:
            return None
        p = Path(self.records[i].path)
        if not p.is_absolute():
            if self.source_root is None:
                return None
            p = self.source_root / p
        p = Path(os.path.normpath(p))
        return p if p.is_file() else None

    def media_path(self, relative: str) -> Path | None:
        """Absolute path of a thumbnail/poster given its library-relative path, if it exists in thumbs/ or posters/."""
        if not relative or Path(relative).is_absolute():
            return None
        p = Path(os.path.normpath(self.root / relative))
        if not any(is_inside(p, self.root / sub) for sub in (THUMBS, POSTERS)):
            return None
        return p if p.is_file() else None

    def allowed_files(self) -> frozenset[Path]:
        """Exactly the files a server may send for this library: every row's thumbnail, poster and video
        file that exists (refused rows excluded). Absolute, normalised paths; folders never."""
        files: set[Path] = set()
        for i, rec in enumerate(self.records):
            if i in self.refused:
                continue
            for p in (self.media_path(rec.thumbnail), self.media_path(rec.poster), self.path_of(i)):
                if p is not None:
                    files.add(Path(os.path.abspath(p)))
        return frozenset(files)

    def source_root_within(self, folders: Iterable[str | os.PathLike[str]]) -> bool:
        """True when the source root in use lies inside one of `folders` (what may be re-indexed or served)."""
        return self.source_root is not None and _within_any(self.source_root, folders)

    # -------------------------------------------------------------- search
    def _load_index(self):
        if self._index is None:
            self._check_same_build()  # an index of a later build must never answer for these rows
            index = read_index(self.root / INDEX, self.manifest.get("index", {}))
            if index.d != self.dim or index.ntotal != len(self):
                raise LibraryError(f"{self.root / INDEX}: holds {index.ntotal} vectors of dimension {index.d}, the "
                                   f"library {len(self)} of dimension {self.dim}; the library is damaged, rebuild it")
            self._index = index
        return self._index

    def check_index(self) -> None:
        """Load the index now (LibraryError if missing, unreadable or not this library's): for start-ups."""
        self._load_index()

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
        k = max(0, min(int(k), len(self) - len(self.refused)))
        if k == 0:
            return np.zeros((q.shape[0], 0), np.float32), np.zeros((q.shape[0], 0), np.int64)
        scores, idx = self._load_index().search(q, min(len(self), k + len(self.refused)))
        idx = idx.astype(np.int64, copy=False)
        if self.refused:  # refused rows never come back: keep the first k others, in score order
            keep = np.argsort(np.isin(idx, list(self.refused)), axis=1, kind="stable")[:, :k]
            scores, idx = np.take_along_axis(scores, keep, 1), np.take_along_axis(idx, keep, 1)
        return scores, idx


def mismatch_message(root: Path, lib_spec: str, lib_fp: str, spec: str | None, fp: str) -> str:
    return (
        f"{root} was built with model {lib_spec!r} (fingerprint {lib_fp}), but the model in use is "
        f"{spec or 'another model'!r} (fingerprint {fp}). Embeddings of different weights cannot be "
        "mixed: use the same model, or rebuild the library with --overwrite."
    )


def open_library(path: str | os.PathLike[str],
                 allowed_roots: Iterable[str | os.PathLike[str]] | None = None) -> Library:
    """Open a finished library folder for reading (raises LibraryError with the reason)."""
    return Library(path, allowed_roots=allowed_roots)


def source_root_within(library: str | os.PathLike[str], folders: Iterable[str | os.PathLike[str]]) -> bool:
    """True when the library's recorded source root lies inside one of `folders`.

    Reads only the manifest, so it answers for libraries that cannot be searched (other model,
    damaged arrays): a caller about to re-index a library's source checks this first, so a tampered
    manifest never makes it index a folder outside the configured ones.
    """
    try:
        manifest = json.loads((Path(library) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    src = manifest.get("source_root") if isinstance(manifest, dict) else None
    if not isinstance(src, str) or not src or not os.path.isabs(src):
        return False
    return _within_any(Path(src), folders)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """Which manifest file this is (inode, size, mtime): a rename during assembly changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def recorded_source_root(root: Path, manifest: dict[str, Any]) -> Path | None:
    """The video folder a manifest names: relative to the library first (a clone, or moved with its videos),
    else the absolute path it was built from. A claim, not yet trusted: see Library(allowed_roots=...)."""
    src = manifest.get("source_root")
    found = Path(os.path.abspath(src)) if isinstance(src, str) and src else None
    rel = manifest.get("source_root_relative")
    if isinstance(rel, str) and rel and (Path(root) / rel).is_dir():
        found = (Path(root) / rel).resolve()
    return found


def _within_any(path: Path, folders: Iterable[str | os.PathLike[str]]) -> bool:
    real = os.path.realpath(path)
    return any(is_inside(path, f) and is_inside(real, os.path.realpath(f)) for f in folders)


def _int(manifest: dict[str, Any], key: str, root: Path, default: int | None = None) -> int:
    value = manifest.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise LibraryError(f"{root}: manifest field {key!r} is {value!r}, expected a count; rebuild the library")
    return value


def _record(d: Any, root: Path) -> VideoRecord:
    """One videos.jsonl row, its types checked (a damaged or hostile line is a LibraryError, not a crash)."""
    if not isinstance(d, dict):
        raise LibraryError(f"{root / VIDEOS}: a line is not a video record; rebuild the library")
    try:
        rec = VideoRecord.from_dict(d)
    except TypeError as e:
        raise LibraryError(f"{root / VIDEOS}: a record is not a video record ({e}); rebuild the library") from e
    for name in ("id", "path", "thumbnail", "poster"):
        if not isinstance(getattr(rec, name), str):
            raise LibraryError(f"{root / VIDEOS}: record {rec.id!r} has a {name} that is not text")
    return rec
