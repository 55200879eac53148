"""Writing a library (the "writer" stage): resumable chunks, then one atomic-as-possible assembly.

While a build runs, every ``chunk_size`` encoded videos (and the failures met on the way) go into one
chunk file under ``.work/chunks/`` (written to a temp file, then renamed), and a line goes to
``.work/progress.log``. A build killed at any moment loses at most the chunk in progress; the next
run loads the chunks, skips their videos and goes on.

Assembly writes every final file into ``.work/final/``, then a ``COMPLETE`` marker, then moves the
files into place (manifest last). A run killed during the moves finishes them on the next start
(``recover``), so the library never mixes files of two builds.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from model.files import atomic_save, atomic_write_bytes, atomic_write_text

from .library import (
    FAILURES,
    FRAME_EMB,
    INDEX,
    MANIFEST,
    POSTERS,
    THUMBS,
    VIDEO_EMB,
    VIDEOS,
    WORK,
    LibraryError,
    ModelMismatchError,
    VideoRecord,
    media_key,
    write_jsonl,
)

__all__ = ["ChunkWriter", "Chunk", "ChunkRows", "Rows", "load_chunks", "drop_chunks", "check_header", "Entry",
           "commit", "recover", "wipe", "remove_stale_media", "import_media", "finish_work_dir", "BuildLock",
           "work_dir", "SHARDS"]

log = logging.getLogger(__name__)

CHUNKS = "chunks"
SHARDS = "shards"
"""torchrun ranks build their shard libraries under .work/shards/ (rank 0 merges them)."""
FINAL = "final"
COMPLETE = "COMPLETE"
PROGRESS = "progress.log"


def work_dir(root: Path) -> Path:
    return Path(root) / WORK


# ------------------------------------------------------------------------------------ chunks


class Rows:
    """Embedding rows that live somewhere (memory, a memory-mapped library, a chunk on disk)."""

    def __init__(self, video: np.ndarray, frame: np.ndarray):
        self._video, self._frame = video, frame

    def video(self, row: int) -> np.ndarray:
        return self._video[row]

    def frame(self, row: int) -> np.ndarray:
        return self._frame[row]


class ChunkRows(Rows):
    """A chunk's arrays, memory-mapped on first use; an LRU bound keeps open maps few at any N."""

    _open: "OrderedDict[str, tuple[np.ndarray, np.ndarray]]" = OrderedDict()
    MAX_OPEN = 128

    def __init__(self, stem: Path):
        self.stem = Path(stem)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        key = str(self.stem)
        cache = ChunkRows._open
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        arrays = (np.load(f"{key}.video.npy", mmap_mode="r"), np.load(f"{key}.frame.npy", mmap_mode="r"))
        cache[key] = arrays
        while len(cache) > self.MAX_OPEN:
            cache.popitem(last=False)
        return arrays

    def video(self, row: int) -> np.ndarray:
        return self._arrays()[0][row]

    def frame(self, row: int) -> np.ndarray:
        return self._arrays()[1][row]

    @classmethod
    def close_all(cls) -> None:
        cls._open.clear()


@dataclass
class Chunk:
    stem: Path
    """chunks/chunk-RUN-SEQ: .json (written last: the commit mark), .video.npy, .frame.npy."""
    records: list[VideoRecord]
    failures: list[dict[str, Any]]
    rows: ChunkRows


class ChunkWriter:
    """Buffers encoded segments; a file's segments join the chunk buffer once the file is complete
    (``finish_video``), and a chunk (arrays, then its .json) is written once it holds `chunk_size`
    rows. A chunk therefore never holds part of a file: a kill in the middle of a long video's
    segments redoes that video whole."""

    def __init__(self, root: Path, header: dict[str, Any], chunk_size: int = 32,
                 after_flush: Callable[[], None] | None = None):
        self.root = Path(root)
        self.dir = work_dir(root) / CHUNKS
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.root / THUMBS).mkdir(exist_ok=True)
        (self.root / POSTERS).mkdir(exist_ok=True)
        self.header = header
        self.chunk_size = chunk_size
        self.run = f"{time.time_ns():020d}-{os.getpid()}"
        self.seq = 0
        self.records: list[VideoRecord] = []
        self.video: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self.failures: list[dict[str, Any]] = []
        self.open: dict[str, list[tuple[VideoRecord, np.ndarray, np.ndarray]]] = {}
        """Segments of files not complete yet, by the file's id."""
        self.seconds = 0.0
        self.written = 0
        self.after_flush = after_flush

    def add(self, record: VideoRecord, video_emb: np.ndarray, frame_emb: np.ndarray,
            thumb: bytes | None = None, poster: bytes | None = None, last: bool = True) -> None:
        """One encoded row; `last` completes its file (record.video)."""
        t0 = time.perf_counter()
        key = media_key(record.id)
        if thumb:
            record.thumbnail = f"{THUMBS}/{key}.jpg"
            atomic_write_bytes(self.root / record.thumbnail, thumb)
        if poster:
            record.poster = f"{POSTERS}/{key}.jpg"
            atomic_write_bytes(self.root / record.poster, poster)
        self.open.setdefault(record.video, []).append(
            (record, np.asarray(video_emb, dtype=np.float16), np.asarray(frame_emb, dtype=np.float16)))
        self.seconds += time.perf_counter() - t0
        if last:
            self.finish_video(record.video, record.duration)

    def finish_video(self, video: str, duration: float | None = None) -> None:
        """The file's segments are complete: they join the next chunk (duration: the file's, for all)."""
        for record, v, f in sorted(self.open.pop(video, []), key=lambda x: x[0].segment):
            if duration is not None:
                record.duration = duration
            self.records.append(record)
            self.video.append(v)
            self.frames.append(f)
        if len(self.records) >= self.chunk_size:
            self.flush()

    def drop_video(self, video: str) -> None:
        """Forget the segments of a file that failed part-way (it is recorded as a failure instead)."""
        self.open.pop(video, None)

    def add_failure(self, failure: dict[str, Any]) -> None:
        self.failures.append(failure)
        if len(self.failures) >= 4 * self.chunk_size:
            self.flush()

    @staticmethod
    def _npy(arr: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.save(buf, arr)
        return buf.getvalue()

    def flush(self) -> None:
        if not self.records and not self.failures:
            return
        t0 = time.perf_counter()
        dim, frames = int(self.header["dim"]), int(self.header["frames"])
        video = np.stack(self.video) if self.video else np.zeros((0, dim), np.float16)
        frame = np.stack(self.frames) if self.frames else np.zeros((0, frames, dim), np.float16)
        meta = dict(self.header, records=[json.loads(r.to_json()) for r in self.records], failures=self.failures)
        self.seq += 1
        stem = self.dir / f"chunk-{self.run}-{self.seq:06d}"
        atomic_write_bytes(Path(f"{stem}.video.npy"), self._npy(video))
        atomic_write_bytes(Path(f"{stem}.frame.npy"), self._npy(frame))
        atomic_write_text(Path(f"{stem}.json"), json.dumps(meta, ensure_ascii=False))  # the commit point
        with open(work_dir(self.root) / PROGRESS, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"chunk": stem.name, "videos": len(self.records), "failures": len(self.failures),
                                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        self.written += len(self.records)
        self.records, self.video, self.frames, self.failures = [], [], [], []
        self.seconds += time.perf_counter() - t0
        if self.after_flush is not None:
            self.after_flush()


def check_header(where: Path, got: dict[str, Any], want: dict[str, Any]) -> None:
    """Raise ModelMismatchError if `got` (a chunk's or a library's) was made with other weights/settings."""
    from .library import mismatch_message

    if got.get("fingerprint") != want["fingerprint"]:
        raise ModelMismatchError(mismatch_message(where, got.get("model", "?"), got.get("fingerprint", "?"),
                                                  want.get("model"), want["fingerprint"]))
    for key in ("frames", "dim", "max_side", "segments"):
        if key in got and got[key] != want.get(key):
            raise ModelMismatchError(
                f"{where} was built with {key}={_show(got[key])}, this run uses {key}={_show(want.get(key))}; "
                "embeddings made with different settings cannot be mixed: use the same settings, "
                "or rebuild the library with --overwrite."
            )


def _show(value: Any) -> str:
    return str(value.get("spec", value)) if isinstance(value, dict) else str(value)


def load_chunks(root: Path, header: dict[str, Any]) -> list[Chunk]:
    """The chunks of an interrupted run, oldest first (later chunks win for a repeated id).

    Arrays without their .json (killed between the writes) are leftovers and are deleted.
    """
    d = work_dir(root) / CHUNKS
    if not d.is_dir():
        return []
    chunks = []
    committed = set()
    for meta_path in sorted(d.glob("chunk-*.json")):
        stem = meta_path.with_suffix("")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            n = len(meta["records"])
            rows = ChunkRows(stem)
            if n and (rows.video(n - 1).shape[-1] != header["dim"]):
                raise ValueError("array shape does not match the chunk's records")
        except Exception as e:  # noqa: BLE001 - a damaged chunk only costs re-encoding its videos
            log.warning("%s: unreadable chunk, its videos will be encoded again (%s)", meta_path, e)
            continue
        check_header(root, meta, header)
        committed.add(stem.name)
        chunks.append(Chunk(stem, [VideoRecord.from_dict(r) for r in meta["records"]], meta.get("failures", []),
                            rows))
    for p in d.iterdir():  # leftovers of a write that was killed before its commit point
        if p.name.split(".", 1)[0] not in committed:
            p.unlink(missing_ok=True)
    return chunks


# ------------------------------------------------------------------------------------ assembly


@dataclass
class Entry:
    """One row of the library to be: its record and where its embeddings are now."""

    record: VideoRecord
    rows: Rows
    row: int
    media_root: Path | None = None
    """Library whose thumbs/posters hold this record's JPEGs, when not the one being written."""
    extra: dict[str, Any] = field(default_factory=dict)


def import_media(entry: Entry, root: Path) -> None:
    """Hard-link (or copy) the thumbnail and poster of a record reused from another library."""
    if entry.media_root is None or Path(entry.media_root).resolve() == Path(root).resolve():
        return
    for rel in (entry.record.thumbnail, entry.record.poster):
        if not rel:
            continue
        src, dst = Path(entry.media_root) / rel, Path(root) / rel
        if dst.exists() or not src.exists():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(dst, lambda tmp, src=src: _link_or_copy(src, Path(tmp)))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _final(root: Path) -> Path:
    return work_dir(root) / FINAL


def commit(root: Path, entries: list[Entry], failures: list[dict[str, Any]], manifest: dict[str, Any],
           index_factory: str, index_params: str | None, seed: int = 0,
           step: Callable[[str], None] | None = None) -> tuple[dict[str, float], dict[str, Any]]:
    """Write the library: arrays, records, failures, index, manifest. Returns (seconds, index info).

    Streams rows from their sources (chunks or memory-mapped older libraries) into plain file writes,
    so memory stays flat as the library grows and a full disk is an OSError, never SIGBUS.
    """
    from .index import build_index, write_index

    root = Path(root)
    final = _final(root)
    if final.exists():
        shutil.rmtree(final)
    final.mkdir(parents=True)
    n, dim, frames = len(entries), int(manifest["dim"]), int(manifest["frames"])
    t0 = time.perf_counter()
    if step:
        step("writing arrays")
    # Plain writes, never through a memory map: a full disk is then an OSError (ENOSPC), not SIGBUS.
    _write_rows(final / VIDEO_EMB, (n, dim), (e.rows.video(e.row) for e in entries))
    _write_rows(final / FRAME_EMB, (n, frames, dim), (e.rows.frame(e.row) for e in entries))
    for e in entries:
        import_media(e, root)
    video = np.load(final / VIDEO_EMB, mmap_mode="r") if n else np.zeros((0, dim), np.float16)
    write_jsonl(final / VIDEOS, [e.record.to_json() for e in entries])
    write_jsonl(final / FAILURES, failures)
    t1 = time.perf_counter()
    if step:
        step("building the index")
    index, info = build_index(video, index_factory, index_params, seed=seed)
    write_index(index, final / INDEX)
    del video, index
    t2 = time.perf_counter()
    manifest = dict(manifest, count=n, index=info, failures=len(failures))
    atomic_write_text(final / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    atomic_write_text(final / COMPLETE, "ok\n")
    recover(root)
    return {"write": t1 - t0 + (time.perf_counter() - t2), "index": t2 - t1}, info


def _write_rows(path: Path, shape: tuple[int, ...], rows: Iterable[np.ndarray]) -> None:
    """A float16 .npy of `shape`, written row by row (flat memory), then flushed to disk."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        for row in rows:
            row = np.ascontiguousarray(row, dtype=np.float16)
            if row.shape != tuple(shape[1:]):
                raise LibraryError(f"{path}: a row of shape {row.shape}, expected {tuple(shape[1:])}")
            fh.write(row.tobytes())
        fh.flush()
        os.fsync(fh.fileno())


#: The live manifest goes here first while an assembly moves files in: a reader then finds no
#: manifest and refuses to open (instead of pairing the old manifest with new arrays).
_OLD_MANIFEST = "manifest.previous"


def recover(root: Path) -> bool:
    """Finish an assembly that was killed while moving files into place; drop a half-written one.

    The old manifest leaves first and the new one arrives last, so at every moment the folder is
    either the previous complete library, the new complete library, or has no manifest (refuses to
    open). Returns True if a finished assembly was moved into place.
    """
    final = _final(root)
    if not final.is_dir():
        return False
    if not (final / COMPLETE).exists():
        shutil.rmtree(final, ignore_errors=True)
        return False
    live = Path(root) / MANIFEST
    if (final / MANIFEST).exists() and live.exists():
        os.replace(live, final / _OLD_MANIFEST)
    for name in (VIDEO_EMB, FRAME_EMB, VIDEOS, FAILURES, INDEX, MANIFEST):  # manifest last
        src = final / name
        if src.exists():
            os.replace(src, Path(root) / name)
    shutil.rmtree(final, ignore_errors=True)
    try:
        work_dir(root).rmdir()  # only if nothing else (chunks of a running build, shards) is in it
    except OSError:
        pass
    return True


def drop_chunks(chunks: Iterable[Chunk]) -> None:
    """Delete chunks once the library that contains them is in place (commit point first)."""
    ChunkRows.close_all()
    for c in chunks:
        for suffix in (".json", ".video.npy", ".frame.npy"):
            Path(f"{c.stem}{suffix}").unlink(missing_ok=True)


def remove_stale_media(root: Path, keep: Iterable[VideoRecord]) -> int:
    """Delete thumbnails/posters of videos no longer in the library; returns how many files."""
    wanted = set()
    for r in keep:
        wanted.update(p for p in (r.thumbnail, r.poster) if p)
    removed = 0
    for sub in (THUMBS, POSTERS):
        d = Path(root) / sub
        if not d.is_dir():
            continue
        for p in d.iterdir():
            if p.suffix == ".jpg" and f"{sub}/{p.name}" not in wanted:
                p.unlink(missing_ok=True)
                removed += 1
            elif p.name.endswith(".tmp"):
                p.unlink(missing_ok=True)
    return removed


def wipe(root: Path) -> None:
    """Delete this tool's files from a library folder (--overwrite); nothing else in it is touched."""
    root = Path(root)
    for name in (MANIFEST, VIDEOS, VIDEO_EMB, FRAME_EMB, INDEX, FAILURES):
        (root / name).unlink(missing_ok=True)
    for sub in (THUMBS, POSTERS):
        d = root / sub
        if d.is_dir():
            for p in d.iterdir():
                if p.suffix in (".jpg", ".tmp"):
                    p.unlink(missing_ok=True)
    w = work_dir(root)
    for sub in (CHUNKS, FINAL):  # never SHARDS: a torchrun merge overwrites OUT from them
        shutil.rmtree(w / sub, ignore_errors=True)
    (w / PROGRESS).unlink(missing_ok=True)


def finish_work_dir(root: Path) -> None:
    """Remove what is left of .work once a build has finished (torchrun's shards/ stays)."""
    w = work_dir(root)
    (w / PROGRESS).unlink(missing_ok=True)
    for d in (w / CHUNKS, w / FINAL, w):
        try:
            d.rmdir()  # only if empty
        except OSError:
            pass


_HELD_LOCKS: set[int] = set()


def _close_locks_in_child() -> None:
    # A forked decode worker must not keep the library locked after its parent is killed.
    for fd in list(_HELD_LOCKS):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_locks_in_child)


class BuildLock:
    """An exclusive flock on the library folder itself while a build writes it.

    The OS releases it when the process dies (SIGKILL included), and no lock file is left behind;
    forked children close their copy at once, so they cannot keep it.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.fd: int | None = None

    def __enter__(self) -> "BuildLock":
        try:
            import fcntl
        except ImportError:  # Windows: no flock; concurrent builds of one library are the user's problem
            return self
        self.fd = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            self.fd = None
            raise LibraryError(f"{self.root}: another precompute run is writing this library; "
                               "wait for it to finish") from None
        _HELD_LOCKS.add(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            _HELD_LOCKS.discard(self.fd)
            os.close(self.fd)
            self.fd = None
