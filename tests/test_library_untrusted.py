"""Opening libraries that strangers wrote (Hub datasets, copied folders): containment, atomic assembly.

Every path a library names must lie inside the library (thumbs/, posters/) or its source root; a row
that names anything else is refused when the library opens, listed as a failure, never searched and
none of its files served. A library caught mid-assembly refuses to open instead of pairing files of
two builds.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from precompute import FORMAT_VERSION, LibraryError, VideoRecord, open_library
from precompute import writer as W
from precompute.library import FAILURES, MANIFEST, POSTERS, THUMBS, VIDEOS, source_root_within

DIM, FRAMES = 16, 6


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _library(root: Path, videos: Path, n: int = 4, seed: int = 0) -> Path:
    """A finished library of n videos in `videos` (files exist), each with a thumbnail and a poster."""
    videos.mkdir(parents=True, exist_ok=True)
    video = _vectors(n, seed).astype(np.float16)
    rows = W.Rows(video, np.repeat(video[:, None, :], FRAMES, axis=1))
    entries = []
    for i in range(n):
        (videos / f"v{i}.mp4").write_bytes(b"video bytes")
        rec = VideoRecord(id=f"v{i}.mp4", path=f"v{i}.mp4", duration=1.0, fps=6.0,
                          timestamps=[j / 6 for j in range(FRAMES)], thumbnail=f"{THUMBS}/v{i}.jpg",
                          poster=f"{POSTERS}/v{i}.jpg")
        entries.append(W.Entry(rec, rows, i))
    for sub in (THUMBS, POSTERS):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (root / sub / f"v{i}.jpg").write_bytes(b"jpeg")
    manifest = {"format_version": FORMAT_VERSION, "model": "test:model", "fingerprint": "abc", "frames": FRAMES,
                "dim": DIM, "source_root": str(videos), "settings": {"max_side": 512}}
    W.commit(root, entries, [], manifest, "Flat", None)
    return root


def _tamper(root: Path, row: int, **fields) -> None:
    lines = (root / VIDEOS).read_text().splitlines()
    rec = json.loads(lines[row])
    rec.update(fields)
    lines[row] = json.dumps(rec)
    (root / VIDEOS).write_text("\n".join(lines) + "\n")


def _manifest(root: Path, **fields) -> None:
    m = json.loads((root / MANIFEST).read_text())
    m.update(fields)
    (root / MANIFEST).write_text(json.dumps(m))


@pytest.fixture
def lib_dir(tmp_path) -> Path:
    return _library(tmp_path / "lib", tmp_path / "videos")


def test_clean_library_serves_exactly_its_files(lib_dir, tmp_path):
    (tmp_path / "videos" / "notes.txt").write_text("beside the videos, never served")
    (tmp_path / "videos" / ".ssh").mkdir()
    lib = open_library(lib_dir)
    assert lib.refused == {}
    expected = {tmp_path / "videos" / f"v{i}.mp4" for i in range(4)}
    expected |= {lib_dir / sub / f"v{i}.jpg" for sub in (THUMBS, POSTERS) for i in range(4)}
    assert lib.allowed_files() == frozenset(expected)


@pytest.mark.parametrize("field, value", [
    ("path", "/etc/passwd"),
    ("path", "../../../../../../etc/passwd"),
    ("thumbnail", "../../../../../../etc/passwd"),
    ("thumbnail", "/etc/passwd"),
    ("poster", "../.git/config"),
    ("poster", "thumbs/../../outside.jpg"),
    ("thumbnail", "videos.jsonl"),  # inside the library, but not a media file
])
def test_tampered_row_is_refused_listed_and_never_served(lib_dir, field, value):
    _tamper(lib_dir, 1, **{field: value})
    lib = open_library(lib_dir)
    assert set(lib.refused) == {1}
    assert any(f["id"] == "v1.mp4" and f["reason"].startswith("refused") for f in lib.failures)
    assert lib.path_of(1) is None
    served = lib.allowed_files()
    assert all("passwd" not in str(p) and ".git" not in str(p) and p.name != VIDEOS for p in served)
    assert not any(p.name == "v1.mp4" or p.name == "v1.jpg" for p in served)
    assert len(served) == 3 * 3  # the other rows: video, thumbnail, poster each


def test_refused_rows_never_come_back_from_search(lib_dir):
    _tamper(lib_dir, 2, path="/etc/passwd")
    lib = open_library(lib_dir)
    own = np.asarray(lib.video_emb[2], dtype=np.float32)
    scores, rows = lib.search(own / np.linalg.norm(own), k=10)
    assert rows.shape == (1, 3) and 2 not in rows[0].tolist()
    assert np.all(np.diff(scores[0]) <= 1e-6)  # still in score order


def test_absolute_path_without_source_root_is_refused(lib_dir):
    """The reported attack: an absolute path and no source root made its folder a static path."""
    _manifest(lib_dir, source_root=None)
    _tamper(lib_dir, 0, path="/etc/passwd")
    lib = open_library(lib_dir)
    assert 0 in lib.refused and Path("/etc/passwd") not in lib.allowed_files()


def test_media_path_refuses_paths_outside_media_folders(lib_dir):
    lib = open_library(lib_dir)
    assert lib.media_path(f"{THUMBS}/v0.jpg") == lib_dir / THUMBS / "v0.jpg"
    for bad in ("../../etc/passwd", "/etc/passwd", MANIFEST, f"{THUMBS}/../{MANIFEST}"):
        assert lib.media_path(bad) is None


def test_source_root_outside_the_configured_folders_serves_no_video(lib_dir, tmp_path):
    elsewhere = tmp_path / "configured"
    elsewhere.mkdir()
    lib = open_library(lib_dir, allowed_roots=[elsewhere])
    assert lib.source_root is None and lib.path_of(0) is None
    assert all(p.suffix == ".jpg" for p in lib.allowed_files())  # still searchable, thumbnails still shown
    assert len(lib.search(_vectors(1)[0], k=4)[1][0]) == 4
    assert open_library(lib_dir, allowed_roots=[tmp_path]).path_of(0) == tmp_path / "videos" / "v0.mp4"


def test_tampered_source_root_is_not_inside_the_configured_folders(lib_dir, tmp_path):
    """A fingerprint mismatch triggers a re-index of the source root: the caller checks this first."""
    configured = [tmp_path / "videos"]
    assert source_root_within(lib_dir, configured)
    assert open_library(lib_dir).source_root_within(configured)
    for tampered in ("/etc", str(tmp_path / "videos" / ".." / ".."), "relative/path", None):
        _manifest(lib_dir, source_root=tampered)
        assert not source_root_within(lib_dir, configured), tampered
    (lib_dir / MANIFEST).write_text("{not json")
    assert not source_root_within(lib_dir, configured)


def test_symlinked_source_root_escape_is_not_inside(lib_dir, tmp_path):
    (tmp_path / "videos" / "link").symlink_to("/etc")
    _manifest(lib_dir, source_root=str(tmp_path / "videos" / "link"))
    assert not source_root_within(lib_dir, [tmp_path / "videos"])


@pytest.mark.parametrize("line", ['"just a string"', '{"id": 5, "path": "v.mp4", "duration": 1, "fps": 1, '
                                  '"timestamps": []}', '{"id": "x"}'])
def test_malformed_records_are_a_library_error(lib_dir, line):
    lines = (lib_dir / VIDEOS).read_text().splitlines()
    lines[0] = line
    (lib_dir / VIDEOS).write_text("\n".join(lines) + "\n")
    with pytest.raises(LibraryError):
        open_library(lib_dir)


def test_kill_during_assembly_never_opens_mixed_rows(tmp_path, monkeypatch):
    """Attack 9: a kill during the final renames left a library that opened and returned wrong rows.

    Rebuild with the same count but other vectors; kill after each possible number of renames.
    Every reader then either refuses or sees one complete build: each row's own vector finds itself.
    """
    real_replace = os.replace
    for kill_after in range(0, 7):  # 7 renames in or out of the library folder at most
        root = _library(tmp_path / f"lib{kill_after}", tmp_path / "videos", n=4, seed=0)
        calls = {"n": 0}

        def flaky(src, dst, root=root, kill_after=kill_after):
            if root in (Path(src).parent, Path(dst).parent):
                calls["n"] += 1
            if calls["n"] > kill_after:
                raise KeyboardInterrupt("simulated kill")
            return real_replace(src, dst)

        monkeypatch.setattr(W.os, "replace", flaky)
        with pytest.raises(KeyboardInterrupt):
            _library(root, tmp_path / "videos", n=4, seed=1)
        monkeypatch.setattr(W.os, "replace", real_replace)
        try:
            lib = open_library(root)
        except LibraryError as e:
            assert "interrupted or is being assembled" in str(e) or "rebuilt while" in str(e)
        else:
            emb = np.asarray(lib.video_emb, dtype=np.float32)
            _, rows = lib.search(emb / np.linalg.norm(emb, axis=1, keepdims=True), k=1)
            assert rows[:, 0].tolist() == list(range(4)), f"mixed rows after {kill_after} renames"
        assert W.recover(root) or (root / MANIFEST).is_file()
        lib = open_library(root)
        np.testing.assert_allclose(np.asarray(lib.video_emb, np.float32), _vectors(4, 1), atol=2e-3)


def test_a_reader_opening_during_an_assembly_refuses(lib_dir, monkeypatch):
    """The manifest read first and the arrays read after a rebuild swapped them: refused, not mixed."""
    import precompute.library as L

    real = L.read_jsonl
    calls = {"n": 0}

    def rebuild_midway(path):
        out = real(path)
        calls["n"] += 1
        if calls["n"] == 1:  # after the manifest was read: a whole new build lands
            _library(lib_dir, lib_dir.parent / "videos", n=4, seed=3)
        return out

    monkeypatch.setattr(L, "read_jsonl", rebuild_midway)
    with pytest.raises(LibraryError, match="rebuilt while it was opened"):
        open_library(lib_dir)


def test_search_after_a_rebuild_refuses_instead_of_answering_for_other_rows(lib_dir):
    lib = open_library(lib_dir)
    _library(lib_dir, lib_dir.parent / "videos", n=4, seed=5)
    with pytest.raises(LibraryError, match="rebuilt"):
        lib.search(_vectors(1)[0], k=2)


def test_failures_file_still_lists_build_failures(lib_dir):
    (lib_dir / FAILURES).write_text(json.dumps({"id": "bad.mp4", "reason": "empty"}) + "\n")
    _tamper(lib_dir, 3, thumbnail="/etc/hosts")
    ids = [f["id"] for f in open_library(lib_dir).failures]
    assert ids == ["bad.mp4", "v3.mp4"]
