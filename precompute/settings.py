"""Build settings (one flat dataclass, mirrored by the CLI flags) and the build report."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from video.segments import DEFAULT_MAX_SEGMENT, DEFAULT_MIN_SEGMENT, SegmentOptions, parse_segments

__all__ = ["BuildSettings", "BuildReport", "default_workers"]


def _opt(default: Any, help: str, *, flag: str | None = None, group: str = "encoding", **argparse_kw: Any) -> Any:
    """A setting with its command-line help: __main__ builds every flag from these (one source of defaults).

    flag: the option name when it is not --field-name (e.g. --no-thumbnails for a True default);
    "" for settings that have no flag.
    """
    meta = {"help": help, "flag": flag, "group": group, "argparse": argparse_kw}
    if isinstance(default, (list, tuple, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class BuildSettings:
    """How to build a library. `frames` and `max_side` change the embeddings: a library built with
    other values is refused (like one built with another model) unless `overwrite`. Each field's
    help is what `python -m precompute --help` shows for its flag."""

    frames: int = _opt(12, "frames sampled per video (a multiple of the model's num_prompts, 6)")
    batch_size: int = _opt(8, "videos per encoder call")
    device: str = _opt("auto", "auto (cuda if available, else cpu), cpu, cuda or cuda:N")
    workers: int | None = _opt(None, "decoding processes; 0 decodes in the main process; auto = cores - 1 "
                                     "(at most 8)")
    threads: int | None = _opt(None, "torch threads for encoding on the CPU during the build (restored after) "
                                     "(default: torch's choice, usually all cores)")
    max_side: int = _opt(512, "frames are downscaled at decode time to at most this longer side")
    decode_timeout: float = _opt(600.0, "seconds one video may take to decode before it is skipped as failed "
                                        "(its worker is killed)")
    captions: str = _opt("auto", "generate captions (only models with a trained captioning head can): "
                                 "auto/on = when the model can, off = never", choices=("auto", "on", "off"))
    caption_max_len: int = _opt(20, "maximum caption length in tokens")
    caption_beams: int = _opt(1, "caption beam width (1 = greedy)")
    index: str = _opt("Flat", "faiss index_factory string: Flat (exact IndexFlatIP), HNSW32, IVF4096,PQ64, ...",
                      group="library")
    index_params: str | None = _opt(None, "faiss search parameters, e.g. nprobe=64 or efSearch=128 "
                                          "(default: sensible ones for the index type)", group="library")
    thumbnails: bool = _opt(True, "do not write thumbnail strips and posters", flag="--no-thumbnails",
                            group="library")
    thumb_height: int = _opt(96, "thumbnail strip height in pixels", group="library")
    limit: int | None = _opt(None, "only the first N videos of SOURCE (in id order); the library then holds "
                                   "just those (default: all)", group="library")
    video_dir: str | None = _opt(None, "for annotation sources: the folder with <video_id>.<ext> files "
                                       "(default: guessed beside the annotation)", group="library")
    portable: bool = _opt(False, "record no absolute path of this machine: the videos' folder only relative to "
                                 "the library (for a library shipped in a repository or published)",
                          group="library")
    follow_symlinks: bool = _opt(False, "index symbolic links that lead outside SOURCE (refused by default, "
                                        "recorded in failures.jsonl)", group="library")
    overwrite: bool = _opt(False, "delete the library's files (this tool's only) and rebuild (needed to change "
                                  "model, frames or max_side)", group="library")
    retry_failed: bool = _opt(False, "try again files that failed before even if they did not change",
                              group="library")
    chunk_size: int = _opt(32, "videos per resumable chunk file: at most this many are re-encoded after a kill",
                           group="library")
    num_shards: int = _opt(1, "split SOURCE into this many shards", group="sharding")
    shard_id: int = _opt(0, "which shard this run encodes (0-based)", group="sharding")
    progress_bar: bool = _opt(True, "no progress bar", flag="--no-progress", group="output")
    seed: int = _opt(0, "seed for index training and recall queries", group="output")
    segments: str = _opt("auto", "auto: a video longer than --max-segment is cut at shot boundaries into moments; "
                                 "none: one row per file; fixed:W[/S]: windows of W seconds every S seconds")
    min_segment: float = _opt(DEFAULT_MIN_SEGMENT, "auto: shots shorter than this many seconds are merged into a "
                                                   "neighbour")
    max_segment: float = _opt(DEFAULT_MAX_SEGMENT, "auto: no segment is longer than this many seconds (about an "
                                                   "MSR-VTT clip); a video no longer than it stays one segment")
    reuse_from: tuple[str, ...] = _opt((), "other libraries whose embeddings (and failures) are reused for "
                                           "unchanged files; same model and settings required", flag="")

    def validate(self) -> None:
        if self.frames <= 0:
            raise ValueError(f"frames must be positive, got {self.frames}")
        if self.batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if self.num_shards < 1 or not 0 <= self.shard_id < self.num_shards:
            raise ValueError(f"shard_id must be in [0, num_shards), got {self.shard_id} of {self.num_shards}")
        if self.captions not in ("auto", "on", "off"):
            raise ValueError(f"captions must be auto, on or off, got {self.captions!r}")
        if self.chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {self.chunk_size}")
        if self.thumb_height <= 0:
            raise ValueError(f"thumb_height must be positive, got {self.thumb_height}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be >= 0, got {self.limit}")
        self.segment_options()

    def segment_options(self) -> SegmentOptions:
        """The parsed segmentation settings (raises SegmentOptionError, a ValueError, if bad)."""
        return parse_segments(self.segments, self.min_segment, self.max_segment)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reuse_from"] = list(self.reuse_from)
        return d


def default_workers() -> int:
    """One decoder per spare core (the encoder keeps one), between 1 and 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores - 1))


@dataclass
class BuildReport:
    """What one build did. `exit_code` is 0 unless nothing at all could be indexed."""

    library: str
    total: int = 0
    """Rows (segments) in the library after the build."""
    videos: int = 0
    """Source files with at least one row in the library after the build."""
    indexed: int = 0
    """Files encoded by this run."""
    segments_indexed: int = 0
    """Segments encoded by this run."""
    skipped_unchanged: int = 0
    failed: int = 0
    """Files that failed in this run (new or changed files)."""
    failed_before: int = 0
    """Unchanged files that had failed before and were not retried (--retry-failed retries them)."""
    removed: int = 0
    resumed: int = 0
    """Videos taken from the chunks of an interrupted run."""
    seconds: dict[str, float] = field(default_factory=dict)
    """load (model), decode (summed over workers, overlapped with encoding), wait (encoder idle,
    waiting on decoding), encode, caption, write (chunks, thumbnails, final arrays), index, total (wall)."""
    videos_per_s: float = 0.0
    """Videos encoded by this run per second of the streaming run (decode + encode + chunk writes);
    model loading and the final assembly are excluded (they are in seconds["load"/"write"/"index"])."""
    source_items: int = 0
    warnings: list[str] = field(default_factory=list)
    up_to_date: bool = False

    allow_empty: bool = False
    """True for a shard whose share of SOURCE is empty: that is not a failure."""

    @property
    def exit_code(self) -> int:
        if self.total > 0 or (self.allow_empty and self.source_items == 0):
            return 0
        return 1

    def summary(self) -> str:
        s = self.seconds
        lines = [
            f"library {self.library}: {self.total} segments of {self.videos} videos"
            + (" (up to date, nothing to do)" if self.up_to_date else ""),
            f"  indexed {self.indexed} ({self.segments_indexed} segments), skipped (unchanged) "
            f"{self.skipped_unchanged}, failed {self.failed}"
            + (f" (+{self.failed_before} failed before, not retried)" if self.failed_before else "")
            + f", removed {self.removed}" + (f", resumed {self.resumed}" if self.resumed else ""),
            "  time: " + ", ".join(f"{k} {s.get(k, 0.0):.1f}s" for k in
                                   ("load", "decode", "wait", "encode", "caption", "write", "index", "total")),
            f"  {self.videos_per_s:.2f} videos/s",
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["exit_code"] = self.exit_code
        return d
