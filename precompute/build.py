"""build_library: the runner that plans, streams reader -> encoder -> writer, and assembles.

Plan: scan SOURCE, then compare each file (id, size, mtime) with what is already known: the finished
library in OUT, chunks of an interrupted run, and any ``reuse_from`` libraries. Unchanged videos are
reused, new and changed ones are encoded, vanished ones are dropped. Then decode in worker processes
while the main process encodes batches, commit a chunk every ``chunk_size`` videos, and finally
assemble the library and its index. The CLI, torchrun and the app all call ``build_library``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import writing
from .library import FORMAT_VERSION, MANIFEST, Library, VideoRecord, shard_of
from .settings import BuildReport, BuildSettings, default_workers
from .sources import Source, SourceItem, display_path, scan_source
from .writer import (
    BuildLock,
    Chunk,
    ChunkWriter,
    Entry,
    Rows,
    check_header,
    commit,
    drop_chunks,
    finish_work_dir,
    load_chunks,
    recover,
    remove_stale_media,
    wipe,
)

__all__ = ["build_library", "Progress"]

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]

#: Testing hook: seconds to sleep after each chunk is committed (lets a test kill a run mid-way).
SLEEP_ENV = "PRECOMPUTE_SLEEP_AFTER_CHUNK"


@dataclass
class _Known:
    """What an earlier run knows about an id: an encoded entry or a failure, with the file's size/mtime."""

    size: int
    mtime: float
    entries: list[Entry] | None = None
    """The file's rows (its segments, in order); None when it failed."""
    failure: dict[str, Any] | None = None
    origin: str = "library"  # library | chunk | reuse


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _select(src: Source, settings: BuildSettings) -> list[SourceItem]:
    items = src.items
    if settings.limit is not None:
        items = items[: settings.limit]
    if settings.num_shards > 1:
        items = [i for i in items if shard_of(i.id, settings.num_shards) == settings.shard_id]
    return items


def _open_existing(out: Path) -> Library | None:
    if not (out / MANIFEST).is_file():
        return None
    return Library(out)


def _header(model: Any, settings: BuildSettings) -> dict[str, Any]:
    return {"fingerprint": model.fingerprint, "model": getattr(model, "spec", "?"), "frames": settings.frames,
            "dim": int(model.embed_dim), "max_side": settings.max_side,
            "segments": settings.segment_options().to_dict()}


def _lib_header(lib: Library) -> dict[str, Any]:
    m = lib.manifest
    h = {"fingerprint": m.get("fingerprint"), "model": m.get("model"), "frames": m.get("frames"), "dim": m.get("dim")}
    if "max_side" in m.get("settings", {}):
        h["max_side"] = m["settings"]["max_side"]
    if "segments" in m:  # version 2; a version-1 library's rows are whole files, reused as such
        h["segments"] = m["segments"]
    return h


def _known_from_library(known: dict[str, _Known], lib: Library, origin: str, media_root: Path | None,
                        with_failures: bool) -> None:
    rows = Rows(lib.video_emb, lib.frame_emb)
    _add_entries(known, [Entry(rec, rows, i, media_root=media_root) for i, rec in enumerate(lib.records)], origin)
    if with_failures:
        for f in lib.failures:
            if "id" in f:
                known[f["id"]] = _Known(int(f.get("size", -2)), float(f.get("mtime", 0.0)), failure=f, origin=origin)


def _known_from_chunks(known: dict[str, _Known], chunks: list[Chunk]) -> None:
    for c in chunks:
        _add_entries(known, [Entry(rec, c.rows, i) for i, rec in enumerate(c.records)], "chunk")
        for f in c.failures:
            known[f["id"]] = _Known(int(f.get("size", -2)), float(f.get("mtime", 0.0)), failure=f, origin="chunk")


def _add_entries(known: dict[str, _Known], entries: list[Entry], origin: str) -> None:
    """Group rows by source file (a later source of the same file replaces an earlier one whole)."""
    by: dict[str, list[Entry]] = {}
    for e in entries:
        by.setdefault(e.record.video, []).append(e)
    for video, rows in by.items():
        rows.sort(key=lambda e: (e.record.segment, e.record.start))
        known[video] = _Known(rows[0].record.size, rows[0].record.mtime, entries=rows, origin=origin)


def _failure(item: SourceItem, reason: str) -> dict[str, Any]:
    return {"id": item.id, "path": item.rel, "reason": reason, "size": item.size, "mtime": item.mtime}


def _timed(it: Iterator, acc: dict[str, float], key: str) -> Iterator:
    """Yield from `it`, adding the time spent waiting for each item to acc[key]."""
    while True:
        t0 = time.perf_counter()
        try:
            x = next(it)
        except StopIteration:
            acc[key] += time.perf_counter() - t0
            return
        acc[key] += time.perf_counter() - t0
        yield x


@dataclass
class _Build:
    """What one build carries from step to step: where, how, and what it has counted so far."""

    out: Path
    settings: BuildSettings
    report: BuildReport
    progress: Progress | None
    command: str | None
    secs: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_TIMERS, 0.0))
    t_start: float = field(default_factory=time.perf_counter)

    def say(self, done: int, total: int, message: str) -> None:
        if self.progress is not None:
            self.progress(done, total, message)


@dataclass
class _Plan:
    """The outcome of comparing SOURCE with what is known: what to keep, what to encode."""

    src: Source
    items: list[SourceItem]
    base: Library | None
    kept: dict[str, _Known]
    todo: list[SourceItem]
    chunks: list[Chunk]


@dataclass
class _Model:
    model: Any
    header: dict[str, Any]
    num_segments: int
    device: str


_TIMERS = ("load", "decode", "wait", "encode", "caption", "write", "index")


def build_library(source: str | os.PathLike[str], out: str | os.PathLike[str], model: Any,
                  settings: BuildSettings | None = None, progress: Progress | None = None,
                  command: str | None = None) -> BuildReport:
    """Encode SOURCE into the library at OUT (created, resumed or updated); returns a BuildReport.

    model: a loaded model (from model.load_model) or a spec string. progress(done, total, message)
    is called as videos finish, for UIs. Raises ModelMismatchError if OUT was built with other
    weights (unless settings.overwrite), LibraryError/ValueError/FileNotFoundError for bad arguments;
    bad video files never raise: they land in failures.jsonl.
    """
    settings = settings or BuildSettings()
    settings.validate()
    out = Path(out).expanduser().absolute()
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        return _build(source, out, model, _Build(out, settings, BuildReport(
            library=str(out), allow_empty=settings.num_shards > 1), progress, command))


def _build(source: str | os.PathLike[str], out: Path, model: Any, job: _Build) -> BuildReport:
    """scan -> load the model -> plan -> encode -> assemble, under the library's lock."""
    settings = job.settings
    with BuildLock(out):
        recover(out)  # finish an assembly that a kill interrupted
        if settings.overwrite:
            wipe(out)
        src, items = _scan(job, source)
        m = _load_model(job, model)  # after scanning: a bad SOURCE fails fast, before seconds of model loading
        plan = _plan(job, src, items, m.header)
        if _up_to_date(job, plan):
            finish_work_dir(out)
            job.say(0, 0, "library is up to date")
            return job.report
        encoded, captions, run_seconds = _encode(job, plan, m)
        entries = _assemble(job, plan, m, captions, encoded)
    report = job.report
    report.total = len(entries)
    report.videos = len({e.record.video for e in entries})
    report.seconds = dict(job.secs, total=time.perf_counter() - job.t_start)
    report.videos_per_s = encoded / run_seconds if run_seconds > 0 and encoded else 0.0
    job.say(len(plan.todo), len(plan.todo), "done")
    return report


def _scan(job: _Build, source: str | os.PathLike[str]) -> tuple[Source, list[SourceItem]]:
    """SOURCE -> the items this run covers (limit and shard applied)."""
    job.say(0, 0, f"scanning {source}")
    src = scan_source(source, job.settings.video_dir, follow_symlinks=job.settings.follow_symlinks)
    items = _select(src, job.settings)
    job.report.source_items = len(items)
    return src, items


def _load_model(job: _Build, model: Any) -> _Model:
    """The model on its device, and the header that every chunk and library of this run must match."""
    from model.device import resolve_device

    from .encoder import load

    device = resolve_device(job.settings.device)
    job.say(0, 0, f"loading model on {device}")
    t_load = time.perf_counter()
    m = load(model, device)
    job.secs["load"] = time.perf_counter() - t_load
    num_segments = int(getattr(m.config, "num_prompts", 6))
    if job.settings.frames % num_segments:
        raise ValueError(f"frames={job.settings.frames} must be a multiple of the model's num_prompts "
                         f"({num_segments})")
    return _Model(m, _header(m, job.settings), num_segments, device)


def _known_rows(job: _Build, header: dict[str, Any], base: Library | None, chunks: list[Chunk]) -> dict[str, _Known]:
    """Every id an earlier run knows: reused libraries, then OUT's library, then chunks (later wins)."""
    known: dict[str, _Known] = {}
    for other in job.settings.reuse_from:
        other_path = Path(other).expanduser().absolute()
        if other_path == job.out or not (other_path / MANIFEST).is_file():
            continue
        lib = Library(other_path)
        check_header(other_path, _lib_header(lib), header)  # asked to reuse it: a mismatch is an error
        _known_from_library(known, lib, "reuse", lib.root, with_failures=True)
    if base is not None:
        _known_from_library(known, base, "library", None, with_failures=True)
    _known_from_chunks(known, chunks)
    return known


def _plan(job: _Build, src: Source, items: list[SourceItem], header: dict[str, Any]) -> _Plan:
    """Unchanged videos are kept, new and changed ones encoded, failures kept unless retried."""
    base = _open_existing(job.out)
    if base is not None:
        check_header(job.out, _lib_header(base), header)
    chunks = load_chunks(job.out, header)
    known = _known_rows(job, header, base, chunks)
    report = job.report
    todo: list[SourceItem] = []
    kept: dict[str, _Known] = {}
    for item in items:
        k = known.get(item.id)
        same = k is not None and k.size == item.size and k.mtime == item.mtime
        if item.error:
            failure = _failure(item, f"{display_path(item.path)}: {item.error}")
            kept[item.id] = _Known(item.size, item.mtime, failure=failure, origin="source")
            if same and k.failure is not None and k.origin != "chunk":
                report.failed_before += 1
            else:
                report.failed += 1
        elif same and k.entries is not None:
            kept[item.id] = k
            if k.origin == "chunk":
                report.resumed += 1
            else:
                report.skipped_unchanged += 1
        elif same and k.failure is not None and not job.settings.retry_failed:
            kept[item.id] = k
            if k.origin == "chunk":
                report.failed += 1
            else:
                report.failed_before += 1
        else:
            todo.append(item)
    if base is not None:
        wanted = {i.id for i in items}
        report.removed = len({r.video for r in base.records if r.video not in wanted})
    return _Plan(src, items, base, kept, todo, chunks)


def _recorded_source(src, settings: BuildSettings, out: Path) -> str:
    """SOURCE as given; for a portable library, relative to the library (a clone finds it there too)."""
    return os.path.relpath(os.path.abspath(src.spec), out.absolute()) if settings.portable else src.spec


def _recorded_root(src, settings: BuildSettings) -> str | None:
    """The videos' folder as the manifest records it: absolute, or nothing for a portable library."""
    return None if settings.portable or src.root is None else str(src.root)


def _up_to_date(job: _Build, plan: _Plan) -> bool:
    """True (and the report filled in) when the library already holds exactly what this run would write."""
    base, settings = plan.base, job.settings
    if base is None or plan.todo or plan.chunks or job.report.removed:
        return False
    bs = base.manifest.get("settings", {})
    if bs.get("index") != settings.index or bs.get("index_params") != settings.index_params:
        return False
    if base.manifest.get("source_root") != _recorded_root(plan.src, settings):
        return False
    pairs = [(e, i) for i in plan.items for e in (plan.kept[i.id].entries or [])]
    same_records = [e.record.id for e, _ in pairs] == base.ids and all(
        _refresh(e.record, it).to_json() == e.record.to_json() for e, it in pairs)
    same_failures = sorted(json.dumps(plan.kept[i.id].failure, sort_keys=True) for i in plan.items
                           if plan.kept[i.id].failure is not None) == sorted(
        json.dumps(f, sort_keys=True) for f in base.failures)
    if not (same_records and same_failures):
        return False
    job.report.total = len(base)
    job.report.videos = len({r.video for r in base.records})
    job.report.up_to_date = True
    job.report.seconds = dict(job.secs, total=time.perf_counter() - job.t_start)
    return True


def _encode(job: _Build, plan: _Plan, m: _Model) -> tuple[int, bool, float]:
    """Decode and encode what is new or changed into chunks. Returns (encoded, captions on, run seconds)."""
    from .encoder import Encoder

    settings = job.settings
    captions = settings.captions != "off" and bool(getattr(m.model, "has_trained_captioner", False))
    if settings.captions == "on" and not captions:
        job.report.warnings.append(f"captions requested, but model {m.header['model']} has no trained captioning "
                                   "head: no captions generated")
    delay = float(os.environ.get(SLEEP_ENV, "0") or 0)
    writer = ChunkWriter(job.out, m.header, settings.chunk_size,
                         after_flush=(lambda: time.sleep(delay)) if delay > 0 else None)
    encoder = Encoder(m.model, captions=captions, caption_max_len=settings.caption_max_len,
                      caption_beams=settings.caption_beams)
    workers = default_workers() if settings.workers is None else settings.workers
    t_run = time.perf_counter()
    with _torch_threads(settings.threads if m.device == "cpu" else None):
        encoded = _run(plan.todo, m.model, settings, m.num_segments, workers, encoder, writer, job.report,
                       job.secs, job.say)
    run_seconds = time.perf_counter() - t_run
    job.secs["encode"] += encoder.seconds["encode"]
    job.secs["caption"] += encoder.seconds["caption"]
    return encoded, captions, run_seconds


def _assemble(job: _Build, plan: _Plan, m: _Model, captions: bool, encoded: int) -> list[Entry]:
    """Every source item in id order, from wherever its row lives now, committed as the new library."""
    chunks = load_chunks(job.out, m.header)
    fresh: dict[str, _Known] = {}
    _known_from_chunks(fresh, chunks)
    entries: list[Entry] = []
    failures: list[dict[str, Any]] = []
    for item in plan.items:
        k = plan.kept.get(item.id) or fresh.get(item.id)
        if k is None:
            continue  # its chunk could not be read back: encoded again by the next run
        if k.entries is not None:
            entries += [Entry(_refresh(e.record, item), e.rows, e.row, e.media_root) for e in k.entries]
        elif k.failure is not None:
            failures.append(k.failure)
    total = len(plan.todo)
    job.say(encoded, total, "assembling the library")
    manifest = _manifest(plan.base, plan.src, job.settings, m.header, m.num_segments, captions, job.command,
                         job.out)
    # A library shipped with its videos (the bundled demo) must still find them when the
    # repository is cloned elsewhere: also record the source relative to the library.
    manifest["source_root_relative"] = os.path.relpath(plan.src.root, job.out.resolve()) if plan.src.root else None
    t_commit = time.perf_counter()
    step_secs, index_info = commit(job.out, entries, failures, manifest, job.settings.index,
                                   job.settings.index_params, seed=job.settings.seed,
                                   step=lambda msg: job.say(encoded, total, msg))
    job.secs["write"] += step_secs["write"]
    job.secs["index"] += step_secs["index"]
    if "warning" in index_info:
        job.report.warnings.append(index_info["warning"])
    drop_chunks(chunks)
    remove_stale_media(job.out, [e.record for e in entries])
    finish_work_dir(job.out)
    job.secs["write"] += max(0.0, time.perf_counter() - t_commit - step_secs["write"] - step_secs["index"])
    return entries


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Set torch's intra-op threads for the build only (the app's process shares torch)."""
    if not n:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _refresh(rec: VideoRecord, item: SourceItem) -> VideoRecord:
    """The stored record with what the source says now (path and ground-truth captions may change)."""
    d = json.loads(rec.to_json())
    d.update(path=item.rel, captions=list(item.captions))
    return VideoRecord.from_dict(d)


def _manifest(base: Library | None, src: Source, settings: BuildSettings, header: dict[str, Any],
              num_segments: int, captions: bool, command: str | None, out: Path) -> dict[str, Any]:
    now = _now()
    created = base.manifest.get("created", now) if base is not None else now
    m = {
        "format_version": FORMAT_VERSION,
        "tool": "promptswitch precompute",
        "model": header["model"],
        "fingerprint": header["fingerprint"],
        "frames": settings.frames,
        "num_segments": num_segments,
        "dim": header["dim"],
        "dtype": "float16",
        "count": 0,
        "created": created,
        "updated": now,
        "source": _recorded_source(src, settings, out),
        "source_kind": src.kind,
        "source_root": _recorded_root(src, settings),
        "generated_captions": captions,
        "segments": header["segments"],
        "thumbnails": {"height": settings.thumb_height, "enabled": settings.thumbnails},
        "settings": settings.to_dict(),
        "command": command if command is not None else " ".join(sys.argv),
    }
    if settings.num_shards > 1:
        m["shard"] = {"id": settings.shard_id, "num_shards": settings.num_shards}
    return m


def _run(todo: list[SourceItem], m: Any, settings: BuildSettings, num_segments: int, workers: int,
         encoder: Any, writer: ChunkWriter, report: BuildReport, secs: dict[str, float], say: Progress) -> int:
    """Decode (workers) -> encode (batches of segments) -> write (chunks). Returns the files encoded."""
    from tqdm.auto import tqdm

    from .reader import DecodeTask
    from .workers import decode_stream

    if not todo:
        return 0
    by_seq = dict(enumerate(todo))
    options = settings.segment_options()
    tasks = (DecodeTask(seq=i, id=it.id, path=str(it.path), frames=settings.frames, num_segments=num_segments,
                        max_side=settings.max_side, thumb_height=settings.thumb_height if settings.thumbnails else None,
                        poster_height=max(2 * settings.thumb_height, 224), timeout=settings.decode_timeout,
                        segments=options)
             for i, it in by_seq.items())
    bar = tqdm(total=len(todo), unit="video", disable=not settings.progress_bar, dynamic_ncols=True,
               smoothing=0.05, desc="precompute")
    count = {"done": 0, "files": 0, "segments": 0}
    batch: list[Any] = []

    def flush_batch() -> None:
        if not batch:
            return
        video, frames, caps = encoder.encode([r.pixels for r in batch])
        for j, r in enumerate(batch):
            writer.add(_record(by_seq[r.seq], r, caps[j] if caps else None), video[j], frames[j], r.thumb, r.poster,
                       last=r.last)
            if r.last:
                count["files"] += 1
                count["done"] += 1
                bar.update(1)
        count["segments"] += len(batch)
        say(count["done"], len(todo), f"encoded {count['files']} of {len(todo)} ({count['segments']} segments)")
        batch.clear()

    stream = decode_stream(tasks, m.preprocess_frames, workers, timeout=settings.decode_timeout,
                           buffer=2 * settings.batch_size)
    try:
        for res in _timed(stream, secs, "wait"):
            secs["decode"] += res.seconds
            if not res.ok:
                item = by_seq[res.seq]
                batch[:] = [b for b in batch if b.seq != res.seq]  # segments of a file that failed part-way
                writer.drop_video(item.id)
                writer.add_failure(_failure(item, res.reason or "unknown error"))
                report.failed += 1
                count["done"] += 1
                bar.update(1)
                bar.set_postfix(failed=report.failed, refresh=False)
                say(count["done"], len(todo), f"failed: {item.rel}")
                continue
            batch.append(res)
            if len(batch) >= settings.batch_size:
                flush_batch()
        flush_batch()
    finally:
        # Whatever happens (Ctrl-C included), commit the files already encoded whole.
        try:
            writer.flush()
        finally:
            bar.close()
            stream.close()
    secs["write"] += writer.seconds
    report.indexed = count["files"]
    report.segments_indexed = count["segments"]
    return count["files"]


def _record(item: SourceItem, r: Any, caption: str | None) -> VideoRecord:
    """The library row of one decoded segment (a whole-file segment keeps the file's id)."""
    seg_id = item.id if r.whole else f"{item.id}#{r.segment:05d}"  # zero-padded: ids sort in time order
    return VideoRecord(id=seg_id, path=item.rel, duration=r.duration, fps=r.fps, timestamps=r.timestamps,
                       captions=list(item.captions), generated_caption=caption, size=item.size, mtime=item.mtime,
                       video=item.id, start=r.start, end=r.end if r.end > 0 else r.duration, segment=r.segment)
