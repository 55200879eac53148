"""Merge shard libraries into one library and index: ``python -m precompute.merge SHARD... --out LIB``.

Shards come from ``--num-shards N --shard-id i`` runs (job arrays) or from torchrun ranks. Every
shard must be built with the same model and settings; ids must not repeat; by default all N shards
must be present. The merged rows are sorted by id, so the result equals a one-process build.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from .library import FORMAT_VERSION, MANIFEST, Library, LibraryError, VideoRecord
from .settings import BuildReport
from .writer import BuildLock, Entry, Rows, check_header, commit, finish_work_dir, recover, remove_stale_media, wipe

__all__ = ["merge_libraries", "main"]


def _header(lib: Library) -> dict[str, Any]:
    m = lib.manifest
    return {"fingerprint": m.get("fingerprint"), "model": m.get("model"), "frames": m.get("frames"),
            "dim": m.get("dim"), "max_side": m.get("settings", {}).get("max_side")}


def merge_libraries(shards: Sequence[str | Path], out: str | Path, index: str | None = None,
                    index_params: str | None = None, overwrite: bool = False, allow_partial: bool = False,
                    progress=None, command: str | None = None) -> BuildReport:
    """Merge finished shard libraries into `out` (replacing its previous contents)."""
    t0 = time.perf_counter()
    out = Path(out).expanduser().absolute()
    if not shards:
        raise ValueError("no shards to merge")
    libs = [Library(s) for s in shards]
    for lib in libs:
        if lib.root.absolute() == out:
            raise ValueError(f"--out {out} is one of the shards; merge into a new folder")
    first = _header(libs[0])
    for lib in libs[1:]:
        check_header(lib.root, _header(lib), first)

    # Which shards are these? Warn about (or refuse) an incomplete set.
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

    seen: dict[str, Path] = {}
    rows: list[tuple[VideoRecord, Entry]] = []
    roots = {lib.manifest.get("source_root") for lib in libs}
    common_root = roots.pop() if len(roots) == 1 else None
    failures: list[dict[str, Any]] = []
    for lib in libs:
        r = Rows(lib.video_emb, lib.frame_emb)
        for i, rec in enumerate(lib.records):
            if rec.id in seen:
                raise LibraryError(f"video id {rec.id!r} is in both {seen[rec.id]} and {lib.root}: "
                                   "shards must come from one --num-shards split")
            seen[rec.id] = lib.root
            if common_root is None and lib.source_root is not None and not Path(rec.path).is_absolute():
                absolute = (lib.source_root / rec.path).as_posix()
                rec = VideoRecord.from_dict(dict(json.loads(rec.to_json()), path=absolute))
            rows.append((rec, Entry(rec, r, i, media_root=lib.root)))
        failures.extend(lib.failures)
    rows.sort(key=lambda x: x[0].id)
    failures.sort(key=lambda f: str(f.get("id", f.get("path", ""))))

    base_settings = dict(libs[0].manifest.get("settings", {}))
    index = index if index is not None else base_settings.get("index", "Flat")
    index_params = index_params if index_params is not None else base_settings.get("index_params")
    base_settings.update(index=index, index_params=index_params, num_shards=1, shard_id=0)

    out.mkdir(parents=True, exist_ok=True)
    report = BuildReport(library=str(out), source_items=len(rows) + len(failures))
    with BuildLock(out):
        recover(out)
        if (out / MANIFEST).is_file():
            existing = Library(out)
            if overwrite:
                wipe(out)
            else:
                check_header(out, _header(existing), first)
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        m0 = libs[0].manifest
        manifest = {k: v for k, v in m0.items() if k not in ("shard", "index", "count", "failures")}
        manifest.update(format_version=FORMAT_VERSION, created=min(lib.manifest.get("created", now) for lib in libs),
                        updated=now, source_root=common_root, settings=base_settings,
                        merged_from=[str(lib.root) for lib in libs],
                        command=command if command is not None else " ".join(sys.argv))
        step = (lambda msg: progress(len(rows), len(rows), msg)) if progress else None
        secs, index_info = commit(out, [e for _, e in rows], failures, manifest, index, index_params,
                                  seed=int(base_settings.get("seed", 0)), step=step)
        remove_stale_media(out, [rec for rec, _ in rows])
        finish_work_dir(out)
    if "warning" in index_info:
        report.warnings.append(index_info["warning"])
    report.total = len(rows)
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
