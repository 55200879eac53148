"""Command line: ``python -m precompute SOURCE --out LIBRARY --model SPEC [options]``.

Encodes every video of SOURCE (a folder searched recursively, a text file with one path per line,
or an MSR-VTT-style annotation file) into a searchable library. Rerun it to resume a killed build or
to update the library after SOURCE changed. Under ``torchrun --nproc_per_node=N -m precompute ...``
each rank encodes a shard and rank 0 merges them. This module imports no torch until it runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from .library import LibraryError
from .settings import BuildSettings

__all__ = ["make_parser", "settings_from_args", "main"]


def _workers(value: str) -> int | None:
    if value == "auto":
        return None
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("workers must be >= 0 or 'auto'")
    return n


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m precompute",
        description="Encode a video collection once into a cached, searchable library (embeddings, "
                    "faiss index, thumbnails). Resumable, incremental, and shardable.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Examples:\n  python -m precompute ~/Videos --out lib --model random:tiny\n"
               "  torchrun --standalone --nproc_per_node=4 -m precompute videos/ --out lib --model SPEC\n"
               "  python -m precompute videos/ --out lib.0 --model SPEC --num-shards 2 --shard-id 0 "
               "&& ... && python -m precompute.merge lib.0 lib.1 --out lib",
    )
    p.add_argument("source", metavar="SOURCE",
                   help="folder (searched recursively), text file of paths, or MSR-VTT annotation (.json/.csv)")
    p.add_argument("--out", "-o", required=True, metavar="LIBRARY", help="library folder to create or update")
    p.add_argument("--model", "-m", required=True, metavar="SPEC",
                   help="model spec: random:tiny, clip:ViT-B-32-quickgelu/openai, hf-hub:org/name, a folder, ...")
    g = p.add_argument_group("encoding")
    g.add_argument("--frames", type=int, default=12, help="frames sampled per video (a multiple of 6)")
    g.add_argument("--batch-size", type=int, default=8, help="videos per encoder call")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--workers", type=_workers, default="auto",
                   help="decoding processes; 0 decodes in the main process; auto = cores - 1 (max 8)")
    g.add_argument("--threads", type=int, default=None,
                   help="torch threads for encoding on the CPU (default: torch's choice, usually all cores)")
    g.add_argument("--max-side", type=int, default=512, help="downscale frames at decode time to this longer side")
    g.add_argument("--decode-timeout", type=float, default=600.0,
                   help="seconds one video may take to decode before it is skipped as failed")
    g.add_argument("--captions", choices=("auto", "on", "off"), default="auto",
                   help="generate captions (only models with a trained captioning head can)")
    g.add_argument("--caption-max-len", type=int, default=20, help="maximum caption length in tokens")
    g.add_argument("--caption-beams", type=int, default=1, help="beam width (1 = greedy)")
    g = p.add_argument_group("library")
    g.add_argument("--index", default="Flat",
                   help="faiss index_factory string: Flat (exact), HNSW32, IVF4096,PQ64, ...")
    g.add_argument("--index-params", default=None, help="faiss search parameters, e.g. nprobe=64 or efSearch=128")
    g.add_argument("--thumb-height", type=int, default=96, help="thumbnail strip height in pixels")
    g.add_argument("--no-thumbnails", action="store_true", help="do not write thumbnails and posters")
    g.add_argument("--limit", type=int, default=None, help="only the first N videos of SOURCE (in id order)")
    g.add_argument("--video-dir", default=None, help="for annotation sources: folder with <video_id>.mp4 files")
    g.add_argument("--overwrite", action="store_true",
                   help="delete the library's files and rebuild (needed to change model or frames)")
    g.add_argument("--retry-failed", action="store_true", help="retry files that failed before although unchanged")
    g.add_argument("--chunk-size", type=int, default=32, help="videos per resumable chunk file")
    g = p.add_argument_group("sharding (job arrays; torchrun sets these from RANK/WORLD_SIZE)")
    g.add_argument("--num-shards", type=int, default=1, help="split SOURCE into this many shards")
    g.add_argument("--shard-id", type=int, default=0, help="which shard this run encodes (0-based)")
    g = p.add_argument_group("output")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--json", action="store_true", help="print the final report as JSON on stdout")
    g.add_argument("--seed", type=int, default=0, help="seed for index training and recall queries")
    g.add_argument("-v", "--verbose", action="store_true", help="log more")
    return p


def settings_from_args(args: argparse.Namespace) -> BuildSettings:
    return BuildSettings(
        frames=args.frames, batch_size=args.batch_size, device=args.device, workers=args.workers, threads=args.threads,
        index=args.index, index_params=args.index_params, captions=args.captions,
        caption_max_len=args.caption_max_len, caption_beams=args.caption_beams,
        thumbnails=not args.no_thumbnails, thumb_height=args.thumb_height, limit=args.limit,
        overwrite=args.overwrite, retry_failed=args.retry_failed, num_shards=args.num_shards,
        shard_id=args.shard_id, chunk_size=args.chunk_size, max_side=args.max_side,
        decode_timeout=args.decode_timeout, video_dir=args.video_dir, progress_bar=not args.no_progress,
        seed=args.seed,
    )


def _print_report(report, as_json: bool, prefix: str = "") -> None:
    print("\n".join(prefix + line for line in report.summary().splitlines()), file=sys.stderr)
    if as_json:
        print(json.dumps(report.to_dict()))


def _distributed(args: argparse.Namespace, settings: BuildSettings, command: str) -> int:
    """torchrun: rank r encodes shard r into OUT/.work/shards/, then rank 0 merges into OUT."""
    import datetime
    import shutil

    import torch
    import torch.distributed as dist

    from .build import build_library
    from .merge import merge_libraries

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if settings.device == "auto" and torch.cuda.is_available():
        settings.device = f"cuda:{local % torch.cuda.device_count()}"
    if settings.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(settings.device))
    # gloo only synchronises the ranks (a barrier); it works on CPU and GPU machines alike.
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    out = Path(args.out).expanduser().absolute()
    shard_dir = out / ".work" / "shards" / f"shard-{rank:05d}-of-{world:05d}"
    settings.num_shards, settings.shard_id = world, rank
    settings.reuse_from = () if settings.overwrite else (str(out),)
    settings.progress_bar = settings.progress_bar and rank == 0
    code = 0
    try:
        report = build_library(args.source, shard_dir, args.model, settings, command=command)
        _print_report(report, False, prefix=f"[rank {rank}] ")
        dist.barrier()
        if rank == 0:
            shards = sorted((out / ".work" / "shards").glob(f"shard-*-of-{world:05d}"))
            merged = merge_libraries(shards, out, index=settings.index, index_params=settings.index_params,
                                     overwrite=settings.overwrite, command=command)
            merged.indexed = report.indexed
            _print_report(merged, args.json, prefix="[merged] ")
            code = merged.exit_code
            shutil.rmtree(out / ".work" / "shards", ignore_errors=True)
            try:
                (out / ".work").rmdir()
            except OSError:
                pass
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    command = "python -m precompute " + " ".join(sys.argv[1:] if argv is None else list(argv))
    try:
        settings = settings_from_args(args)
        settings.validate()
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world > 1 and args.num_shards == 1:
            return _distributed(args, settings, command)
        from .build import build_library

        report = build_library(args.source, args.out, args.model, settings, command=command)
    except (LibraryError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    _print_report(report, args.json)
    if report.exit_code:
        print("error: nothing could be indexed (see failures.jsonl)" if report.source_items
              else "error: no videos found in SOURCE", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
