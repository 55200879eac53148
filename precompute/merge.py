"""Merge shard libraries into one library and index: ``python -m precompute.merge SHARD... --out LIB``.

Shards come from ``--num-shards N --shard-id i`` runs (job arrays) or from torchrun ranks. Every
shard must be built with the same model and settings; ids must not repeat; by default all N shards
must be present. The merged rows are sorted by file id, then segment, so the result equals a one-process build.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .errors import EXIT_CANNOT_WRITE, LibraryWriteError, writing
from .library import FORMAT_VERSION, MANIFEST, Library, LibraryError, VideoRecord
from .settings import BuildReport
from .writer import BuildLock, Entry, Rows, check_header, commit, finish_work_dir, recover, remove_stale_media, wipe

__all__ = ["merge_libraries", "main"]


def _header(lib: Library) -> dict[str, Any]:
    m = lib.manifest
    return {"fingerprint": m.get("fingerprint"), "model": m.get("model"), "frames": m.get("frames"),
            "dim": m.get("dim"), "max_side": m.get("settings", {}).get("max_side"),
            **({"segments": m["segments"]} if "segments" in m else {})}


def _check_shards(libs: list[Library], out: Path, allow_partial: bool) -> dict[str, Any]:
    """Refuse shards of other models/settings/splits, or an incomplete set; returns the common header."""
    for lib in libs:
        if lib.root.absolute() == out:
            raise ValueError(f"--out {out} is one of the shards; merge into a new folder")
    first = _header(libs[0])
    for lib in libs[1:]:
        check_header(lib.root, _header(lib), first)
    info = [lib.manifest.get("shard") for lib in libs]
    if all(info):
        nums = {i["num_shards"] for i in info}
        if len(nums) != 1:
            raise LibraryError(f"shards come from different splits (num_shards {sorted(nums)}); rebuild them together")
        ids = [i["id"] for i in info]
        if len(set(ids)) != len(ids):
            raise LibraryError(f"shard ids repeat: {sorted(ids)}")
        missing = sorted(set(range(nums.pop())) - set(ids))
        if missing and not allow_partial:
            raise LibraryError(f"shards {missing} are missing (pass --allow-partial to merge what is there)")
    return first


def _common_root(libs: list[Library]) -> str | None:
    """The folder every shard's videos lie in: their common source root (the deepest shared folder)."""
    roots = [str(lib.source_root) for lib in libs if lib.source_root is not None]
    if not roots:
        return None
    return roots[0] if len(set(roots)) == 1 else os.path.commonpath(roots)


def _gather(libs: list[Library], root: str | None) -> tuple[list[Entry], list[dict[str, Any]]]:
    """Rows of every shard sorted by id (paths re-based on the merged source root), and their failures."""
    seen: dict[str, Path] = {}
    rows: list[tuple[str, Entry]] = []
    failures: list[dict[str, Any]] = []
    for lib in libs:
        r = Rows(lib.video_emb, lib.frame_emb)
        for i, rec in enumerate(lib.records):
            if rec.id in seen:
                raise LibraryError(f"video id {rec.id!r} is in both {seen[rec.id]} and {lib.root}: "
                                   "shards must come from one --num-shards split")
            seen[rec.id] = lib.root
            if root is not None and lib.source_root is not None and str(lib.source_root) != root:
                moved = os.path.relpath(lib.source_root / rec.path, root)
                rec = VideoRecord.from_dict(dict(json.loads(rec.to_json()), path=Path(moved).as_posix()))
            rows.append((rec.id, Entry(rec, r, i, media_root=lib.root)))
        failures.extend(lib.failures)
    rows.sort(key=lambda x: (x[1].record.video, x[1].record.segment, x[1].record.start))  # file id, then time
    failures.sort(key=lambda f: str(f.get("id", f.get("path", ""))))
    return [e for _, e in rows], failures


def _write_merged(out: Path, libs: list[Library], entries: list[Entry], failures: list[dict[str, Any]],
                  first: dict[str, Any], index: str, index_params: str | None, settings: dict[str, Any],
                  overwrite: bool, common_root: str | None, progress, command: str | None):
    """Commit the merged rows into `out` under its lock; returns commit's (seconds, index info)."""
    out.mkdir(parents=True, exist_ok=True)
    with BuildLock(out):
        recover(out)
        if (out / MANIFEST).is_file():
            existing = Library(out)
            if overwrite:
                wipe(out)
            else:
                check_header(out, _header(existing), first)
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest = {k: v for k, v in libs[0].manifest.items() if k not in ("shard", "index", "count", "failures")}
        manifest.update(format_version=FORMAT_VERSION, created=min(lib.manifest.get("created", now) for lib in libs),
                        updated=now, source_root=common_root, settings=settings,
                        merged_from=[str(lib.root) for lib in libs],
                        command=command if command is not None else " ".join(sys.argv))
        step = (lambda msg: progress(len(entries), len(entries), msg)) if progress else None
        result = commit(out, entries, failures, manifest, index, index_params,
                        seed=int(settings.get("seed", 0)), step=step)
        remove_stale_media(out, [e.record for e in entries])
        finish_work_dir(out)
    return result


def merge_libraries(shards: Sequence[str | Path], out: str | Path, index: str | None = None,
                    index_params: str | None = None, overwrite: bool = False, allow_partial: bool = False,
                    progress=None, command: str | None = None) -> BuildReport:
    """Merge finished shard libraries into `out` (replacing its previous contents)."""
    t0 = time.perf_counter()
    out = Path(out).expanduser().absolute()
    if not shards:
        raise ValueError("no shards to merge")
    libs = [Library(s) for s in shards]
    first = _check_shards(libs, out, allow_partial)
    common_root = _common_root(libs)
    entries, failures = _gather(libs, common_root)

    base_settings = dict(libs[0].manifest.get("settings", {}))
    index = index if index is not None else base_settings.get("index", "Flat")
    index_params = index_params if index_params is not None else base_settings.get("index_params")
    base_settings.update(index=index, index_params=index_params, num_shards=1, shard_id=0)

    report = BuildReport(library=str(out), source_items=len(entries) + len(failures))
    with writing(out):
        secs, index_info = _write_merged(out, libs, entries, failures, first, index, index_params, base_settings,
                                         overwrite, common_root, progress, command)
    if "warning" in index_info:
        report.warnings.append(index_info["warning"])
    report.total = len(entries)
    report.videos = len({e.record.video for e in entries})
    report.failed_before = len(failures)
    report.seconds = dict(secs, total=time.perf_counter() - t0)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m precompute.merge", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("shards", nargs="+", help="shard library folders")
    p.add_argument("--out", "-o", required=True, help="merged library folder")
    p.add_argument("--index", default=None, help="faiss index_factory string (default: the shards' setting)")
    p.add_argument("--index-params", default=None, help="faiss search parameters, e.g. nprobe=64")
    p.add_argument("--overwrite", action="store_true", help="replace a library in --out built with another model")
    p.add_argument("--allow-partial", action="store_true", help="merge even if some shards are missing")
    args = p.parse_args(argv)
    try:
        report = merge_libraries(args.shards, args.out, index=args.index, index_params=args.index_params,
                                 overwrite=args.overwrite, allow_partial=args.allow_partial)
    except LibraryWriteError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CANNOT_WRITE
    except (LibraryError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"merged {len(args.shards)} shards into {report.library}: {report.total} videos, "
          f"{report.failed_before} failures, {report.seconds['total']:.1f}s", file=sys.stderr)
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
