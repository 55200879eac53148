"""Find the videos of a SOURCE: a folder, a text file of paths, or an MSR-VTT-style annotation file.

Every video gets a stable id (the path relative to the source root, posix, or the annotation's
video_id) and its size and mtime, which is how incremental builds tell a changed file. Whatever
cannot be indexed is kept as an item with an error, so it lands in failures.jsonl instead of
stopping the run: files an annotation names but that are missing, file names that are not UTF-8,
FIFOs, sockets and devices (refused before any decoder opens them), folders that cannot be listed,
and symbolic links that lead outside SOURCE (unless ``follow_symlinks``).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from video.annotations import VideoFinder, read_msrvtt_csv, read_msrvtt_json
from video.files import VIDEO_EXTENSIONS, is_inside, is_video_name

__all__ = ["SourceItem", "Source", "scan_source", "display_path"]


@dataclass
class SourceItem:
    id: str
    path: Path
    """Absolute path of the file."""
    rel: str
    """What the library stores: relative to the source root (posix)."""
    captions: list[str] = field(default_factory=list)
    size: int = -1
    mtime: float = 0.0
    error: str | None = None
    """Set when the file cannot be indexed at all; the item then goes straight to failures."""


@dataclass
class Source:
    kind: str
    """folder, list, msrvtt-json, msrvtt-csv or file."""
    spec: str
    root: Path
    """Folder that stored paths are relative to; every item lies inside it."""
    items: list[SourceItem]
    """Sorted by id, ids unique."""
    video_dir: Path | None = None


def display_path(text: str | os.PathLike[str]) -> str:
    """A path as valid UTF-8 text: bytes that are not UTF-8 become \\xNN escapes (JSON-safe)."""
    return os.fsencode(os.fspath(text)).decode("utf-8", "backslashreplace")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _stat(item: SourceItem) -> SourceItem:
    """Size and mtime of a regular file; anything else (missing, FIFO, device, socket) gets an error."""
    try:
        st = item.path.stat()
    except FileNotFoundError:
        item.error = "file not found"
        return item
    except OSError as e:
        item.error = f"cannot stat ({e.strerror or e})"
        return item
    if not stat.S_ISREG(st.st_mode):
        item.error = "not a regular file (a FIFO, socket, device or folder): refused"
        return item
    item.size, item.mtime = int(st.st_size), float(st.st_mtime)
    return item


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _file_item(path: Path, root: Path, real_root: Path, follow_symlinks: bool) -> SourceItem:
    rel = _rel(path, root)
    if not _utf8(rel):
        shown = display_path(rel)
        return SourceItem(id=shown, path=path, rel=shown, error="file name is not valid UTF-8: rename it to index it")
    item = SourceItem(id=rel, path=path, rel=rel)
    if not follow_symlinks and path.is_symlink() and not is_inside(path.resolve(), real_root):
        item.error = "symbolic link leads outside SOURCE: refused (pass --follow-symlinks to index it)"
        return item
    return _stat(item)


def _folder(root: Path, follow_symlinks: bool = False) -> list[SourceItem]:
    """Video files under root, recursively; hidden files and folders (temp files, .work) skipped.

    Folders that cannot be listed become one failure each; symlinked folders are entered only with
    follow_symlinks (and each real folder once, so link loops end).
    """
    real_root = root.resolve()
    items: list[SourceItem] = []
    stack, seen = [root], {real_root}
    while stack:
        folder = stack.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            rel = display_path(_rel(folder, root)) + "/"
            items.append(SourceItem(id=rel, path=folder, rel=rel, error=f"cannot list folder ({e.strerror or e})"))
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False) or (follow_symlinks and entry.is_symlink() and path.is_dir()):
                real = path.resolve()
                if real not in seen:
                    seen.add(real)
                    stack.append(path)
            elif is_video_name(display_path(entry.name)):
                items.append(_file_item(path, root, real_root, follow_symlinks))
    return items


def _path_list(list_file: Path) -> tuple[list[SourceItem], Path]:
    """One path per line (relative to the list file's folder); blank lines and # comments ignored.

    Ids stay relative to the list's folder (absolute for files outside it); stored paths are relative
    to the folder that holds the list and every listed file, which is the source root.
    """
    base = list_file.parent
    paths: list[Path] = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line).expanduser()
            paths.append(Path(os.path.normpath(p if p.is_absolute() else base / p)))
    root = Path(os.path.commonpath([os.fspath(base)] + [os.fspath(p) for p in paths]))
    items = [_stat(SourceItem(id=_rel(p, base), path=p, rel=_rel(p, root))) for p in paths]
    return items, root


def _annotation(path: Path, kind: str, video_dir) -> tuple[list[SourceItem], Path]:
    """Items of an MSR-VTT JSON or split CSV (captions from MSRVTT_data.json beside a CSV without them)."""
    ids, captions = read_msrvtt_json(path) if kind == "msrvtt-json" else read_msrvtt_csv(path)
    sibling = path.parent / "MSRVTT_data.json"
    if kind == "msrvtt-csv" and not captions and sibling.is_file():
        _, all_caps = read_msrvtt_json(sibling)
        captions = {v: all_caps.get(v, []) for v in ids}
    root = path.parent
    if video_dir is not None:
        candidates = [Path(video_dir).expanduser()]
    else:
        candidates = [root / "videos" / "all", root / "videos", root, root.parent / "videos" / "all",
                      root.parent / "videos", root / "MSRVTT" / "videos" / "all"]
    found = VideoFinder(VIDEO_EXTENSIONS).first_folder_with(ids, candidates)
    if found is None and video_dir is None:
        tried = ", ".join(str(c) for c in candidates)
        raise FileNotFoundError(f"{path}: none of its videos found (looked in {tried}); pass --video-dir")
    vdir, files = found if found is not None else (candidates[0], {})
    vdir = vdir.absolute()
    source_root = Path(os.path.commonpath([os.fspath(root.absolute()), os.fspath(vdir)]))
    items = []
    for vid in ids:
        file = files.get(vid, vdir / f"{vid}.mp4").absolute()
        items.append(_stat(SourceItem(id=vid, path=file, rel=_rel(file, source_root),
                                      captions=list(captions.get(vid, [])))))
    return items, vdir


def scan_source(source: str | os.PathLike[str], video_dir: str | os.PathLike[str] | None = None,
                follow_symlinks: bool = False) -> Source:
    """Resolve SOURCE into sorted, unique items (raises FileNotFoundError/ValueError for bad SOURCE)."""
    spec = str(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"SOURCE {spec}: no such file or folder")
    path = path.absolute()
    vdir = None
    if path.is_dir():
        kind, root, items = "folder", path, _folder(path, follow_symlinks)
    else:
        ext = path.suffix.lower()
        root = path.parent
        if ext in (".json", ".csv"):
            kind = "msrvtt-json" if ext == ".json" else "msrvtt-csv"
            items, vdir = _annotation(path, kind, video_dir)
            root = Path(os.path.commonpath([os.fspath(root), os.fspath(vdir)]))
        elif ext in VIDEO_EXTENSIONS:
            kind, items = "file", [_stat(SourceItem(id=path.name, path=path, rel=path.name))]
        else:
            kind = "list"
            items, root = _path_list(path)
    unique: dict[str, SourceItem] = {}
    for item in items:
        unique.setdefault(item.id, item)
    return Source(kind=kind, spec=spec, root=root, items=sorted(unique.values(), key=lambda i: i.id),
                  video_dir=vdir)
