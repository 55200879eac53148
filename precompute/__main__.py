"""Command line: ``python -m precompute SOURCE --out LIBRARY --model SPEC [options]``.

Encodes every video of SOURCE (a folder searched recursively, a text file with one path per line,
or an MSR-VTT-style annotation file) into a searchable library. Rerun it to resume a killed build or
to update the library after SOURCE changed. Under ``torchrun --nproc_per_node=N -m precompute ...``
each rank encodes a shard and rank 0 merges them. This module imports no torch until it runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import EXIT_CANNOT_WRITE, LibraryError, LibraryWriteError
from .settings import BuildSettings

__all__ = ["make_parser", "settings_from_args", "main"]


def _workers(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"workers must be an integer >= 0 or 'auto', got {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError("workers must be >= 0 or 'auto'")
    return n


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown for valued flags; switches are off unless given, and None defaults say in words."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.nargs == 0 or action.default is None:
            return action.help or ""
        return super()._get_help_string(action)


_GROUPS = {"encoding": "encoding", "library": "library",
           "sharding": "sharding (job arrays; torchrun sets these from RANK/WORLD_SIZE)", "output": "output"}


def _value_type(f: dataclasses.Field) -> Callable[[str], Any]:
    if f.name == "workers":
        return _workers
    annotation = str(f.type)
    return int if annotation.startswith("int") else float if annotation.startswith("float") else str


def _add_setting(group: argparse._ArgumentGroup, f: dataclasses.Field) -> None:
    """One flag from one BuildSettings field: its name, help and default come from the field."""
    meta = f.metadata
    default = f.default
    flag = meta.get("flag") or "--" + f.name.replace("_", "-")
    if isinstance(default, bool):  # --overwrite (False -> True) or --no-thumbnails (True -> False)
        group.add_argument(flag, dest=f.name, action="store_false" if default else "store_true", help=meta["help"])
        return
    shown = "auto" if f.name == "workers" else default
    group.add_argument(flag, dest=f.name, type=_value_type(f), default=shown, help=meta["help"],
                       **meta.get("argparse", {}))


def make_parser() -> argparse.ArgumentParser:
    """The CLI; every option below `--model` is a BuildSettings field (its default and help live there)."""
    p = argparse.ArgumentParser(
        prog="python -m precompute",
        description="Encode a video collection once into a cached, searchable library (embeddings, "
                    "faiss index, thumbnails). Resumable, incremental, and shardable. Exit codes: 0 done, "
                    "1 nothing could be indexed, 2 bad arguments or an unusable library, 3 the library cannot be "
                    "written (disk full, read-only, permission denied), 130 interrupted.",
        formatter_class=_HelpFormatter,
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
    groups = {key: p.add_argument_group(title) for key, title in _GROUPS.items()}
    for f in dataclasses.fields(BuildSettings):
        if f.metadata.get("flag") != "":
            _add_setting(groups[f.metadata.get("group", "encoding")], f)
    out = groups["output"]
    out.add_argument("--json", action="store_true", help="print the final report as JSON on stdout")
    out.add_argument("-v", "--verbose", action="store_true", help="log more")
    return p


def settings_from_args(args: argparse.Namespace) -> BuildSettings:
    """BuildSettings from parsed flags (every field that has a flag; the rest keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(BuildSettings) if hasattr(args, f.name)}
    return BuildSettings(**values)


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
    from .writer import SHARDS, work_dir

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if settings.device == "auto" and torch.cuda.is_available():
        settings.device = f"cuda:{local % torch.cuda.device_count()}"
    if settings.device.startswith("cuda"):
        torch.cuda.set_device(torch.device(settings.device))
    # gloo only synchronises the ranks (a barrier); it works on CPU and GPU machines alike.
    dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    out = Path(args.out).expanduser().absolute()
    shards_dir = work_dir(out) / SHARDS
    shard_dir = shards_dir / f"shard-{rank:05d}-of-{world:05d}"
    settings.num_shards, settings.shard_id = world, rank
    settings.reuse_from = () if settings.overwrite else (str(out),)
    settings.progress_bar = settings.progress_bar and rank == 0
    code = 0
    try:
        report = build_library(args.source, shard_dir, args.model, settings, command=command)
        _print_report(report, False, prefix=f"[rank {rank}] ")
        dist.barrier()
        if rank == 0:
            shards = sorted(shards_dir.glob(f"shard-*-of-{world:05d}"))
            merged = merge_libraries(shards, out, index=settings.index, index_params=settings.index_params,
                                     overwrite=settings.overwrite, command=command)
            merged.indexed = report.indexed
            _print_report(merged, args.json, prefix="[merged] ")
            code = merged.exit_code
            shutil.rmtree(shards_dir, ignore_errors=True)
            try:
                work_dir(out).rmdir()
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
    except LibraryWriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
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
