"""Read the annotation files of MSR-VTT, MSVD, LSMDC (and the generated moving-shapes set).

Each loader turns the files users already have on disk into a list of (video id, video path,
captions). Videos named in the annotations but absent on disk are skipped and listed; too many
missing videos is an error, because it usually means a wrong --root or --video-dir.

Splits:
- msrvtt: "train" = "train9k" (MSRVTT_train.9k.csv), "train7k" (MSRVTT_train.7k.csv), "test" (the
  1k-A split, MSRVTT_JSFUSION_test.csv: one item per row with that row's sentence). MSR-VTT has no
  official validation set in this protocol, so "val" is a deterministic 5% of the train list (the
  ids with the smallest SHA-1 hashes, independent of list order and numpy versions) and
  "train-minus-val" is the rest; "train" stays the full list, as the paper trains on it.
- msvd: "train", "val", "test" from train_list.txt / val_list.txt / test_list.txt.
- lsmdc: "train", "val", "test" (LSMDC16_annos_training.csv, LSMDC16_annos_val.csv,
  LSMDC16_challenge_1000_publictect.csv).
- moving-shapes: MSR-VTT layout written by training.shapes.write_dataset.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from video.files import extensions_preferring

__all__ = ["VideoItem", "Split", "MissingVideosError", "DATASETS", "load_split", "msrvtt_val_ids",
           "read_msrvtt_json", "read_msrvtt_csv", "VideoFinder"]

VAL_FRACTION = 0.05


@dataclass
class VideoItem:
    video_id: str
    path: Path
    captions: list[str]


@dataclass
class Split:
    name: str
    items: list[VideoItem]
    missing: list[str] = field(default_factory=list)  # ids in the annotations but absent on disk


class MissingVideosError(FileNotFoundError):
    """More videos missing on disk than allowed (usually a wrong root or video_dir)."""


_LAYOUT = {
    "msrvtt": "MSR-VTT: <root>/MSRVTT_data.json, <root>/MSRVTT_train.9k.csv (or .7k), "
              "<root>/MSRVTT_JSFUSION_test.csv, videos <root>/videos/<video_id>.mp4 or <root>/<video_id>.mp4",
    "msvd": "MSVD: <root>/captions_msvd.json, <root>/train_list.txt, val_list.txt, test_list.txt, "
            "videos <root>/videos/<id>.avi, <root>/<id>.avi or <root>/YouTubeClips/<id>.avi",
    "lsmdc": "LSMDC: <root>/LSMDC16_annos_training.csv, LSMDC16_annos_val.csv, "
             "LSMDC16_challenge_1000_publictect.csv (tab-separated, 6 fields, caption last), videos "
             "<root>/videos/<clip_id>.avi, <root>/<clip_id>.avi or <root>/<movie>/<clip_id>.avi",
}
_LAYOUT["moving-shapes"] = _LAYOUT["msrvtt"].replace("MSR-VTT", "moving-shapes (MSR-VTT format, "
                                                     "written by training.shapes.write_dataset)")

_SPLITS = {
    "msrvtt": ("train", "train9k", "train7k", "val", "train-minus-val", "test"),
    "msvd": ("train", "val", "test"),
    "lsmdc": ("train", "val", "test"),
}
_SPLITS["moving-shapes"] = _SPLITS["msrvtt"]
DATASETS = tuple(_SPLITS)


def _need(path: Path, dataset: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{dataset}: annotation file not found: {path}\nexpected layout: {_LAYOUT[dataset]}")
    return path


class VideoFinder:
    """Finds <id><ext> in a list of folders, listing each folder once (fast for 100k files).

    Extensions are tried in the given order; hidden files are never matched.
    """

    def __init__(self, exts: tuple[str, ...]):
        self.exts = exts
        self._listing: dict[Path, dict[str, str]] = {}

    def _names(self, folder: Path) -> dict[str, str]:
        """Lower-cased name -> name as on disk, for one folder (listed once)."""
        if folder not in self._listing:
            try:
                self._listing[folder] = {e.name.lower(): e.name for e in os.scandir(folder)
                                         if not e.is_dir() and not e.name.startswith(".")}
            except OSError:
                self._listing[folder] = {}
        return self._listing[folder]

    def find(self, video_id: str, folders: Iterable[Path]) -> Path | None:
        """The first folder's <video_id><ext> (extensions in any case, the id as written)."""
        for folder in folders:
            names = self._names(folder)
            for ext in self.exts:
                name = names.get((video_id + ext).lower())
                if name is not None and name[: len(video_id)] == video_id:
                    return folder / name
        return None

    def first_folder_with(self, ids: Iterable[str], folders: Iterable[Path]) -> tuple[Path, dict[str, Path]] | None:
        """The first folder holding any of `ids`, and id -> file there (an annotation's video folder)."""
        ids = list(ids)
        for folder in folders:
            if not Path(folder).is_dir():
                continue
            found = {vid: p for vid in ids if (p := self.find(vid, [folder])) is not None}
            if found:
                return Path(folder), found
        return None


def _exts(primary: str) -> tuple[str, ...]:
    return extensions_preferring(primary)


def _build(dataset: str, split: str, entries: list[tuple[str, list[str]]], folders_for,
           exts: tuple[str, ...], max_missing_fraction: float) -> Split:
    finder = VideoFinder(exts)
    items, missing = [], []
    for vid, caps in entries:
        folders = folders_for(vid)
        path = finder.find(vid, folders)
        if path is None:
            missing.append(vid)
        else:
            items.append(VideoItem(vid, path, caps))
    if entries and len(missing) > max_missing_fraction * len(entries):
        where = sorted({str(f) for vid in missing[:3] for f in folders_for(vid)})
        raise MissingVideosError(
            f"{dataset}/{split}: {len(missing)} of {len(entries)} videos are missing on disk "
            f"(more than {max_missing_fraction:.0%}), e.g. {', '.join(missing[:5])}; "
            f"looked for <id>{'|'.join(exts)} in: {', '.join(where)}. "
            "Check root / video_dir, or raise max_missing_fraction."
        )
    return Split(split, items, missing)


# --------------------------------------------------------------------------------------------
# MSR-VTT (and moving-shapes)


def read_msrvtt_json(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """MSRVTT_data.json: (video ids in file order, id -> captions as written). ValueError if not one."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "sentences" not in data and "videos" not in data:
        raise ValueError(f"{path}: not an MSR-VTT annotation file (expected 'videos' and 'sentences' lists)")
    captions: dict[str, list[str]] = defaultdict(list)
    ids: list[str] = [str(v["video_id"]) for v in data.get("videos", []) if "video_id" in v]
    for s in data.get("sentences", []):
        if "video_id" in s and "caption" in s:
            captions[str(s["video_id"])].append(str(s["caption"]))
    if not ids:
        ids = list(captions)
    return ids, dict(captions)


def read_msrvtt_csv(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """An MSR-VTT split CSV: (unique ids in file order, id -> its 'sentence' cells, {} without that column)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "video_id" not in reader.fieldnames:
            raise ValueError(f"{path}: CSV without a 'video_id' column (expected an MSR-VTT split file)")
        ids: list[str] = []
        captions: dict[str, list[str]] = defaultdict(list)
        for row in reader:
            vid = (row.get("video_id") or "").strip()
            if not vid:
                continue
            ids.append(vid)
            if row.get("sentence"):
                captions[vid].append(row["sentence"])
    return list(dict.fromkeys(ids)), dict(captions)


def _read_id_csv(path: Path) -> list[str]:
    return read_msrvtt_csv(path)[0]


def msrvtt_val_ids(train_ids: list[str], fraction: float = VAL_FRACTION) -> set[str]:
    """The deterministic held-out subset used as MSR-VTT "val" (smallest SHA-1 of the id)."""
    n = max(1, round(fraction * len(train_ids))) if train_ids else 0
    ranked = sorted(set(train_ids), key=lambda v: hashlib.sha1(v.encode()).hexdigest())
    return set(ranked[:n])


def _load_msrvtt(root: Path, split: str, video_dir: Path | None, mmf: float, dataset: str) -> Split:
    if split == "test":
        path = _need(root / "MSRVTT_JSFUSION_test.csv", dataset)
        with open(path, newline="", encoding="utf-8") as fh:
            entries = [(row["video_id"].strip(), [row["sentence"].strip()]) for row in csv.DictReader(fh)]
    else:
        _, raw = read_msrvtt_json(_need(root / "MSRVTT_data.json", dataset))
        captions = {vid: [c.strip() for c in caps] for vid, caps in raw.items()}
        if split == "train7k":
            ids = _read_id_csv(_need(root / "MSRVTT_train.7k.csv", dataset))
        else:
            nine = root / "MSRVTT_train.9k.csv"
            if split in ("val", "train-minus-val") and not nine.is_file() and (root / "MSRVTT_train.7k.csv").is_file():
                nine = root / "MSRVTT_train.7k.csv"
            ids = _read_id_csv(_need(nine, dataset))
        if split in ("val", "train-minus-val"):
            val = msrvtt_val_ids(ids)
            ids = [v for v in ids if (v in val) == (split == "val")]
        entries = [(vid, captions.get(vid, [])) for vid in ids]
        no_caps = [vid for vid, caps in entries if not caps]
        if no_caps:
            raise ValueError(f"{dataset}/{split}: {len(no_caps)} ids have no caption in MSRVTT_data.json, "
                             f"e.g. {', '.join(no_caps[:5])}")
    folders = [video_dir] if video_dir else [root / "videos", root]
    return _build(dataset, split, entries, lambda vid: folders, _exts(".mp4"), mmf)


# --------------------------------------------------------------------------------------------
# MSVD


def _load_msvd(root: Path, split: str, video_dir: Path | None, mmf: float) -> Split:
    captions = json.loads(_need(root / "captions_msvd.json", "msvd").read_text(encoding="utf-8"))
    lines = _need(root / f"{split}_list.txt", "msvd").read_text(encoding="utf-8").splitlines()
    ids = [ln.strip() for ln in lines if ln.strip()]
    no_caps = [vid for vid in ids if not captions.get(vid)]
    if no_caps:
        raise ValueError(f"msvd/{split}: {len(no_caps)} ids have no caption in captions_msvd.json, "
                         f"e.g. {', '.join(no_caps[:5])}")
    entries = [(vid, [c.strip() for c in captions[vid]]) for vid in ids]
    folders = [video_dir] if video_dir else [root / "videos", root, root / "YouTubeClips"]
    return _build("msvd", split, entries, lambda vid: folders, _exts(".avi"), mmf)


# --------------------------------------------------------------------------------------------
# LSMDC

_LSMDC_FILES = {
    "train": "LSMDC16_annos_training.csv",
    "val": "LSMDC16_annos_val.csv",
    "test": "LSMDC16_challenge_1000_publictect.csv",
}


def _lsmdc_movie(clip_id: str) -> str:
    """Movie folder of a clip: the id without its trailing _<start>-<end> timestamps."""
    return clip_id.rsplit("_", 1)[0] if "_" in clip_id else clip_id


def _load_lsmdc(root: Path, split: str, video_dir: Path | None, mmf: float) -> Split:
    path = _need(root / _LSMDC_FILES[split], "lsmdc")
    captions: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < 6:
                raise ValueError(f"{path}:{n}: expected 6 tab-separated fields, got {len(fields)}")
            clip_id, caption = fields[0].strip(), "\t".join(fields[5:]).strip()
            captions.setdefault(clip_id, []).append(caption)
    entries = list(captions.items())
    bases = [video_dir] if video_dir else [root / "videos", root]

    def folders(vid: str) -> list[Path]:
        return bases + [b / _lsmdc_movie(vid) for b in bases]

    return _build("lsmdc", split, entries, folders, _exts(".avi"), mmf)


# --------------------------------------------------------------------------------------------


def load_split(
    dataset: str,
    root: Path,
    split: str,
    *,
    video_dir: Path | None = None,
    max_missing_fraction: float = 0.05,
) -> Split:
    """Items (id, video path, captions) of one split; see the module doc for names and layouts."""
    dataset = dataset.lower().replace("_", "-")
    dataset = {"msr-vtt": "msrvtt", "shapes": "moving-shapes"}.get(dataset, dataset)
    if dataset not in _SPLITS:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    if split not in _SPLITS[dataset]:
        raise ValueError(f"unknown split {split!r} for {dataset}; choose from {', '.join(_SPLITS[dataset])}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset}: dataset root {root} is not a folder\nexpected layout: {_LAYOUT[dataset]}")
    video_dir = Path(video_dir) if video_dir is not None else None
    if dataset in ("msrvtt", "moving-shapes"):
        return _load_msrvtt(root, split, video_dir, max_missing_fraction, dataset)
    if dataset == "msvd":
        return _load_msvd(root, split, video_dir, max_missing_fraction)
    return _load_lsmdc(root, split, video_dir, max_missing_fraction)
