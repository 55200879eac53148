"""Command line: ``python -m precompute.push LIB org/name [--with-videos] [--private] [--revision R] [--dry-run]``.

Publishes a finished library as a Hugging Face *dataset* repo that ``app.py --library hf-hub:org/name``
loads: manifest, embeddings, index, videos.jsonl, failures, the thumbnails and posters the records
use, a dataset card, and the video files only with ``--with-videos``. A library names files on the
machine that built it (the source folder, the build command, failure reasons); every text file is
rewritten while staging so that no absolute path is uploaded: video paths stay relative to the
source (uploaded under ``videos/`` with ``--with-videos``), other paths keep only their last parts.
The upload is huggingface_hub's ``upload_folder``, which resumes an interrupted push when run again
(already committed files are skipped, already uploaded chunks deduplicated). Imports no torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

from .card import CardFacts, dataset_card
from .library import (
    FAILURES,
    FRAME_EMB,
    INDEX,
    MANIFEST,
    VIDEO_EMB,
    VIDEOS,
    Library,
    LibraryError,
    media_key,
    open_library,
    read_jsonl,
)

__all__ = ["PushPlan", "PlannedFile", "plan_push", "stage", "push", "scrub", "main", "VIDEO_DIR", "CARD"]

log = logging.getLogger(__name__)

#: Where the video files go in the dataset repo (the manifest's source_root_relative points here).
VIDEO_DIR = "videos"
CARD = "README.md"
_FREE_TEXT = ("captions", "generated_caption")
#: Model specs that name the same weights on any machine (a local folder or random weights do not).
PORTABLE_MODELS = ("hf-hub:", "clip:", "bundled:")
REPO_ID = re.compile(r"^(?:hf-hub:)?([\w.\-]+/[\w.\-]+)(?:@([\w.\-/]+))?$")
# An absolute path inside free text: POSIX (a "/" not preceded by a word, ":" or "/") or Windows (C:\ or C:/).
_ABS_PATH = re.compile(r"(?<![\w.:/~\-])/[^\s\"'<>|;,()\[\]{}]+|\b[A-Za-z]:[\\/][^\s\"'<>|;,()\[\]{}]*")


@dataclass
class PlannedFile:
    """One file of the dataset repo: its path there, and either a local file or the rewritten text."""

    repo_path: str
    source: Path | None = None
    text: str | None = None

    @property
    def size(self) -> int:
        return len(self.text.encode("utf-8")) if self.text is not None else self.source.stat().st_size  # type: ignore[union-attr]


@dataclass
class PushPlan:
    """Everything ``push`` uploads, decided before any network call (what --dry-run prints)."""

    repo_id: str
    revision: str | None
    private: bool
    files: list[PlannedFile] = field(default_factory=list)
    card: str = ""
    missing_videos: int = 0
    """Records whose video file was not found (with --with-videos): pushed without it."""
    warnings: list[str] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


# ------------------------------------------------------------------------------------ path scrubbing


def _known_roots(lib: Library) -> list[tuple[str, str]]:
    """(absolute prefix, what replaces it) for the folders a library's text may name, longest first."""
    roots: dict[str, str] = {}
    home = str(Path.home())
    for p in (lib.manifest.get("source_root"), str(lib.root), str(lib.root.resolve())):
        if p and os.path.isabs(p) and p.rstrip("/\\") not in ("", home):
            roots[p.rstrip("/\\")] = PurePosixPath(p.replace("\\", "/")).name or "."
    if len(home) > 1:
        roots[home] = "~"
    return sorted(roots.items(), key=lambda kv: -len(kv[0]))


def _last_part(path: str) -> str:
    return re.split(r"[\\/]", path.rstrip("\\/"))[-1] or "."


def scrub(value: Any, roots: Sequence[tuple[str, str]] = ()) -> Any:
    """A copy of a JSON value in which no string holds an absolute path.

    Known folders become their name (``/home/u/clips/a.mp4`` -> ``clips/a.mp4``), the home folder
    ``~``; any other absolute path keeps only its last part.
    """
    if isinstance(value, dict):
        return {k: scrub(v, roots) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v, roots) for v in value]
    if not isinstance(value, str):
        return value
    for prefix, name in roots:
        value = value.replace(prefix, name)
    return _ABS_PATH.sub(lambda m: _last_part(m.group(0)), value)


# ------------------------------------------------------------------------------------ planning


def _jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)


def _video_file(lib: Library, i: int, with_videos: bool) -> tuple[str, Path | None]:
    """(path to record, local file to upload) for record i: relative to the repo's videos/ folder."""
    rec = lib.records[i]
    path = rec.path.replace("\\", "/")
    relative = not (os.path.isabs(rec.path) or re.match(r"^[A-Za-z]:[\\/]", rec.path))
    if not relative or path.startswith("../") or "/../" in path:  # outside the source folder
        path = f"external/{media_key(rec.id)}/{_last_part(rec.path)}"
    local = lib.path_of(i) if with_videos else None
    return path, local


def _records(lib: Library, with_videos: bool, roots) -> tuple[list[dict[str, Any]], list[PlannedFile], int]:
    """Rewritten videos.jsonl rows, the media (and video) files they use, and how many videos are missing."""
    rows, files, missing, seen = [], [], 0, set()
    for i, rec in enumerate(lib.records):
        row = json.loads(rec.to_json())
        row["path"], local = _video_file(lib, i, with_videos)
        for rel in (rec.thumbnail, rec.poster):
            if not rel or os.path.isabs(rel) or ".." in PurePosixPath(rel.replace("\\", "/")).parts:
                continue  # a library file is always inside the library
            src = lib.media_path(rel)
            if src is not None and rel not in seen:
                seen.add(rel)
                files.append(PlannedFile(PurePosixPath(rel).as_posix(), source=src))
        if with_videos:
            if local is None:
                missing += 1
            elif row["path"] not in seen:
                seen.add(row["path"])
                files.append(PlannedFile(f"{VIDEO_DIR}/{row['path']}", source=local))
        text = {k: row.pop(k) for k in _FREE_TEXT if k in row}  # captions are data: never rewritten
        rows.append({**scrub(row, roots), **text})
    return rows, files, missing


def _manifest(lib: Library, with_videos: bool, roots) -> dict[str, Any]:
    """The manifest as uploaded: no source_root; the videos/ folder as the relative source when shipped."""
    m = dict(lib.manifest)
    m["source_root"] = None
    m["source_root_relative"] = VIDEO_DIR if with_videos else None
    src = m.get("source")
    if isinstance(src, str) and src:
        m["source"] = _last_part(src) if (os.path.isabs(src) or re.match(r"^[A-Za-z]:[\\/]", src)) else src
    return scrub(m, roots)


def plan_push(library: str | os.PathLike[str], repo: str, *, with_videos: bool = False, private: bool = False,
              revision: str | None = None, license: str | None = None,
              attribution: str | None = None) -> PushPlan:
    """Decide every file of the dataset repo (touches no network). Raises LibraryError, ValueError."""
    m = REPO_ID.match(repo.strip())
    if m is None:
        raise ValueError(f"{repo!r}: expected a Hub dataset id like org/name (or hf-hub:org/name[@revision])")
    repo_id, revision = m.group(1), revision or m.group(2)
    lib = open_library(library)
    roots = _known_roots(lib)
    rows, media, missing = _records(lib, with_videos, roots)
    manifest = _manifest(lib, with_videos, roots)
    failures = [scrub(f, roots) for f in read_jsonl(lib.root / FAILURES)]  # as built, not the reader's additions
    videos_uploaded = sum(1 for f in media if f.repo_path.startswith(VIDEO_DIR + "/"))
    card = dataset_card(manifest, CardFacts(repo_id, videos_uploaded, license, attribution))
    plan = PushPlan(repo_id, revision, private, card=card, missing_videos=missing)
    spec = str(lib.manifest.get("model", ""))
    if not spec.startswith(PORTABLE_MODELS):
        plan.warnings.append(
            f"the library was built with model {manifest.get('model')!r}, which another machine cannot load by that "
            "name: push the model first (model.push_to_hub), rebuild with --model hf-hub:ORG/MODEL, then push this")
    plan.files = [PlannedFile(CARD, text=card),
                  PlannedFile(MANIFEST, text=json.dumps(manifest, indent=2, ensure_ascii=False) + "\n"),
                  PlannedFile(VIDEOS, text=_jsonl(rows)), PlannedFile(FAILURES, text=_jsonl(failures))]
    plan.files += [PlannedFile(name, source=lib.root / name) for name in (VIDEO_EMB, FRAME_EMB, INDEX)
                   if (lib.root / name).is_file()]
    plan.files += media
    return plan


# ------------------------------------------------------------------------------------ staging and upload


def stage(plan: PushPlan, folder: Path) -> None:
    """Lay the repo out in `folder`: text files written, binaries hard-linked (copied across filesystems)."""
    for f in plan.files:
        dest = folder / f.repo_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if f.text is not None:
            dest.write_text(f.text, encoding="utf-8")
            continue
        try:
            os.link(f.source, dest)  # type: ignore[arg-type]
        except OSError:
            shutil.copy2(f.source, dest)  # type: ignore[arg-type]


def push(plan: PushPlan, library: str | os.PathLike[str], api: Any = None) -> str:
    """Create the dataset repo (and branch) if needed and upload the plan; returns the repo's URL.

    Staged beside the library when possible, so binaries are hard links rather than copies.
    """
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    api.create_repo(plan.repo_id, repo_type="dataset", private=plan.private, exist_ok=True)
    if plan.revision:
        api.create_branch(plan.repo_id, repo_type="dataset", branch=plan.revision, exist_ok=True)
    try:
        tmp = tempfile.TemporaryDirectory(prefix=".push-", dir=library)
    except OSError:  # a read-only library: stage (copy) in the system's temporary folder
        tmp = tempfile.TemporaryDirectory(prefix="promptswitch-push-")
    with tmp as folder:
        stage(plan, Path(folder))
        api.upload_folder(repo_id=plan.repo_id, folder_path=folder, repo_type="dataset", revision=plan.revision,
                          commit_message=f"Upload promptswitch library ({len(plan.files)} files)")
    return f"https://huggingface.co/datasets/{plan.repo_id}"


# ------------------------------------------------------------------------------------ command line


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m precompute.push",
                                description="Publish a library made by `python -m precompute` as a Hugging Face "
                                "dataset repo that `app.py --library hf-hub:ORG/NAME` loads. Run it again to resume.")
    p.add_argument("library", metavar="LIB", help="the library folder (the --out of python -m precompute)")
    p.add_argument("repo", metavar="ORG/NAME", help="dataset repo id (hf-hub:ORG/NAME[@REV] also accepted)")
    p.add_argument("--with-videos", action="store_true", help="also upload the video files (under videos/)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--revision", help="branch to push to (created if missing; default: main)")
    p.add_argument("--license", help="Hub licence id of the source videos for the card, e.g. cc-by-4.0")
    p.add_argument("--attribution", help="credit line for the source videos, written into the card")
    p.add_argument("--dry-run", action="store_true", help="print the files and the card; upload nothing")
    return p


def _print_plan(plan: PushPlan, dry_run: bool) -> None:
    verb = "would upload" if dry_run else "uploading"
    print(f"{verb} {len(plan.files)} files ({plan.total_bytes / 2**20:.1f} MB) to dataset "
          f"{plan.repo_id} (revision {plan.revision or 'main'}, {'private' if plan.private else 'public'}):")
    for f in plan.files:
        print(f"  {f.repo_path}  {f.size} bytes")
    for w in plan.warnings:
        print(f"warning: {w}")
    if plan.missing_videos:
        print(f"warning: {plan.missing_videos} video file(s) not found on this machine: pushed without them")


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        plan = plan_push(args.library, args.repo, with_videos=args.with_videos, private=args.private,
                         revision=args.revision, license=args.license, attribution=args.attribution)
    except (LibraryError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _print_plan(plan, args.dry_run)
    if args.dry_run:
        print(f"\n--- {CARD} ---\n{plan.card}")
        return 0
    try:
        url = push(plan, args.library)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:  # the hub's errors (auth, offline mode, network) end in one line
        print(f"error: could not push to {plan.repo_id}: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(f"pushed: {url}  (use it with: python app.py --library hf-hub:{plan.repo_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
