"""Find the videos of a SOURCE: a folder, a text file of paths, or an MSR-VTT-style annotation file.

Every video gets a stable id (the path relative to the source root, posix, or the annotation's
video_id) and its size and mtime, which is how incremental builds tell a changed file. Files that an
annotation names but that are missing are kept, with an error, so they land in failures.jsonl.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["VIDEO_EXTENSIONS", "SourceItem", "Source", "scan_source"]

VIDEO_EXTENSIONS = frozenset({
    ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp", ".ogv",
    ".ts", ".mts", ".m2ts", ".vob", ".divx", ".asf",
})
#: Extensions tried, in order, for an annotation's <video_id>.
ANNOTATION_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")


@dataclass
class SourceItem:
    id: str
    path: Path
    """Absolute path of the file."""
    rel: str
    """What the library stores: relative to the source root (posix) where possible, else absolute."""
    captions: list[str] = field(default_factory=list)
    size: int = -1
    mtime: float = 0.0
    error: str | None = None
    """Set when the file cannot even be found; the item then goes straight to failures."""


@dataclass
class Source:
    kind: str
    """folder, list, msrvtt-json, msrvtt-csv or file."""
    spec: str
    root: Path
    """Folder that ids and stored paths are relative to."""
    items: list[SourceItem]
    """Sorted by id, ids unique."""
    video_dir: Path | None = None


def _stat(item: SourceItem) -> SourceItem:
    try:
        st = item.path.stat()
    except FileNotFoundError:
        item.error = "file not found"
        return item
    except OSError as e:
        item.error = f"cannot stat ({e.strerror or e})"
        return item
    item.size, item.mtime = int(st.st_size), float(st.st_mtime)
    return item


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _folder(root: Path) -> list[SourceItem]:
    """Video files under root, recursively; hidden files and folders (temp files, .work) skipped."""
    items = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=None):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            rel = _rel(path, root)
            items.append(_stat(SourceItem(id=rel, path=path, rel=rel)))
    return items


def _path_list(list_file: Path) -> list[SourceItem]:
    """One path per line (relative to the list file's folder); blank lines and # comments ignored."""
    root = list_file.parent
    items = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        path = p if p.is_absolute() else root / p
        path = Path(os.path.normpath(path))
        rel = _rel(path, root)
        items.append(_stat(SourceItem(id=rel, path=path, rel=rel)))
    return items


def _msrvtt_json(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "sentences" not in data and "videos" not in data:
        raise ValueError(f"{path}: not an MSR-VTT annotation file (expected 'videos' and 'sentences' lists)")
    captions: dict[str, list[str]] = defaultdict(list)
    ids: list[str] = [str(v["video_id"]) for v in data.get("videos", []) if "video_id" in v]
    for s in data.get("sentences", []):
        if "video_id" in s and "caption" in s:
            captions[str(s["video_id"])].append(str(s["caption"]))
    if not ids:
        ids = list(captions)
    return ids, captions


def _msrvtt_csv(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "video_id" not in reader.fieldnames:
            raise ValueError(f"{path}: CSV without a 'video_id' column (expected an MSR-VTT split file)")
        has_sentence = "sentence" in reader.fieldnames
        ids: list[str] = []
        captions: dict[str, list[str]] = defaultdict(list)
        for row in reader:
            vid = (row.get("video_id") or "").strip()
            if not vid:
                continue
            ids.append(vid)
            if has_sentence and row.get("sentence"):
                captions[vid].append(row["sentence"])
    if not has_sentence:  # split files list ids only: captions come from MSRVTT_data.json beside them
        sibling = path.parent / "MSRVTT_data.json"
        if sibling.is_file():
            _, all_caps = _msrvtt_json(sibling)
            captions = defaultdict(list, {v: all_caps.get(v, []) for v in ids})
    return list(dict.fromkeys(ids)), captions


def _find_video_dir(ann: Path, ids: list[str], video_dir: str | Path | None) -> tuple[Path, dict[str, str]]:
    """The folder holding <video_id>.<ext> files, and stem -> filename there."""
    root = ann.parent
    if video_dir is not None:
        candidates = [Path(video_dir).expanduser()]
    else:
        candidates = [root / "videos" / "all", root / "videos", root, root.parent / "videos" / "all",
                      root.parent / "videos", root / "MSRVTT" / "videos" / "all"]
    wanted = set(ids)
    for d in candidates:
        if not d.is_dir():
            continue
        names: dict[str, str] = {}
        for name in os.listdir(d):
            stem, ext = os.path.splitext(name)
            if stem in wanted and ext.lower() in ANNOTATION_EXTENSIONS and not name.startswith("."):
                prev = names.get(stem)
                if prev is None or ANNOTATION_EXTENSIONS.index(ext.lower()) < ANNOTATION_EXTENSIONS.index(
                        os.path.splitext(prev)[1].lower()):
                    names[stem] = name
        if names or video_dir is not None:
            return d, names
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{ann}: none of its videos found (looked in {tried}); pass --video-dir")


def _annotation(path: Path, kind: str, video_dir) -> tuple[list[SourceItem], Path]:
    ids, captions = _msrvtt_json(path) if kind == "msrvtt-json" else _msrvtt_csv(path)
    root = path.parent
    vdir, names = _find_video_dir(path, ids, video_dir)
    items = []
    for vid in ids:
        name = names.get(vid, f"{vid}.mp4")
        file = vdir / name
        item = SourceItem(id=vid, path=file.absolute(), rel=_rel(file.absolute(), root.absolute()),
                          captions=list(captions.get(vid, [])))
        items.append(_stat(item))
    return items, vdir


def scan_source(source: str | os.PathLike[str], video_dir: str | os.PathLike[str] | None = None) -> Source:
    """Resolve SOURCE into sorted, unique items (raises FileNotFoundError/ValueError for bad SOURCE)."""
    spec = str(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"SOURCE {spec}: no such file or folder")
    path = path.absolute()
    vdir = None
    if path.is_dir():
        kind, root, items = "folder", path, _folder(path)
    else:
        ext = path.suffix.lower()
        root = path.parent
        if ext == ".json":
            kind = "msrvtt-json"
            items, vdir = _annotation(path, kind, video_dir)
        elif ext == ".csv":
            kind = "msrvtt-csv"
            items, vdir = _annotation(path, kind, video_dir)
        elif ext in VIDEO_EXTENSIONS:
            kind, items = "file", [_stat(SourceItem(id=path.name, path=path, rel=path.name))]
        else:
            kind, items = "list", _path_list(path)
    unique: dict[str, SourceItem] = {}
    for item in items:
        unique.setdefault(item.id, item)
    return Source(kind=kind, spec=spec, root=root, items=sorted(unique.values(), key=lambda i: i.id),
                  video_dir=vdir)
