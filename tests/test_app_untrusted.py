"""The app against libraries nobody vetted: it serves the library's exact files and nothing a record names.

Each test is one of the attacks of the untrusted-input issue, run against the real start-up (and, for what
the server answers, the real app over HTTP).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from app.config import from_args
from app.startup import StartupError, start
from precompute.library import INDEX, MANIFEST, VIDEOS


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(library, videos folder, model): a tiny clean library to copy and tamper with."""
    from shapes_library import make_shapes_library

    from model import load_model

    model = load_model("random:tiny")
    lib, videos = make_shapes_library(tmp_path_factory.mktemp("clean"), model=model, num=4)
    return lib, videos, model


def _copy(built, tmp_path: Path) -> Path:
    lib = tmp_path / "library"
    shutil.copytree(built[0], lib)
    return lib


def _rewrite_records(lib: Path, change) -> None:
    rows = [json.loads(line) for line in (lib / VIDEOS).read_text().splitlines() if line.strip()]
    for n, row in enumerate(rows):
        change(n, row)
    (lib / VIDEOS).write_text("".join(json.dumps(r) + "\n" for r in rows))


def _rewrite_manifest(lib: Path, **fields) -> None:
    manifest = json.loads((lib / MANIFEST).read_text())
    manifest.update(fields)
    (lib / MANIFEST).write_text(json.dumps(manifest))


def _start(lib: Path, tmp_path: Path, *extra: str):
    cfg = from_args(["--model", "random:tiny", "--library", str(lib), "--cache-dir", str(tmp_path / "cache"),
                     *extra], environ={})
    return start(cfg, progress=None)


def _tamper(n: int, row: dict) -> None:
    if n == 0:
        row["path"] = "/etc/passwd"
    elif n == 1:
        row["thumbnail"] = "../../../../etc/hostname"
    elif n == 2:
        row["poster"] = "/etc/hostname"


def test_tampered_records_are_refused_and_never_served(built, tmp_path):
    lib = _copy(built, tmp_path)
    _rewrite_records(lib, _tamper)
    _rewrite_manifest(lib, source_root="/", source_root_relative=None)
    st = _start(lib, tmp_path)
    served = [str(p) for p in st.served_files]
    assert served and not any(p.startswith("/etc") for p in served)
    assert all(Path(p).is_file() and Path(p).is_relative_to(lib.resolve()) for p in served)
    hits = st.engine.search("a shape", 10).hits
    assert len(hits) == 1  # rows 0-2 are refused; their files are never named in a result
    assert any("not played" in a and "--video-root" in a for a in st.attempts)


def test_only_the_exact_files_are_served_not_their_folders(built, tmp_path):
    lib = _copy(built, tmp_path)
    (lib / "thumbs" / "evil.html").write_text("<script>alert(1)</script>")
    st = _start(lib, tmp_path)
    served = {p.name for p in st.served_files}
    assert "evil.html" not in served and all(p.is_file() for p in st.served_files)
    assert lib / "thumbs" / "evil.html" not in st.media and all(p in st.media for p in st.served_files)
    assert len(st.media) == len(set(st.served_files))
    assert {p.resolve() for p in st.video_files} <= {p.resolve() for p in built[1].glob("*.mp4")}
    assert len(st.video_files) == 4


def test_a_fingerprint_mismatch_never_reindexes_a_system_folder(built, tmp_path):
    """The attack: another model's fingerprint plus source_root=/etc made the app index /etc into its cache."""
    lib = _copy(built, tmp_path)
    _rewrite_manifest(lib, fingerprint="0" * 16, source_root="/etc", source_root_relative=None)
    st = _start(lib, tmp_path)
    for manifest in (tmp_path / "cache").rglob(MANIFEST):  # libraries the app built (the sample clips, fine)
        m = json.loads(manifest.read_text())
        assert not any(str(m.get(k) or "").startswith("/etc") for k in ("source", "source_root")), m
    assert st.library_root != lib  # another library is served instead, and the banner says why
    assert any("Could not use library" in a for a in st.attempts)


def test_a_library_of_another_model_is_reindexed_from_its_own_video_folder(built, tmp_path):
    lib = _copy(built, tmp_path)
    _rewrite_manifest(lib, fingerprint="0" * 16)
    st = _start(lib, tmp_path)
    assert len(st.engine.library) == 4 and "indexed for" in st.library_reason


@pytest.mark.parametrize("folder, ok", [
    ("/", False), ("/etc", False), ("/etc/ssl", False), ("/usr/share/videos", False), ("/proc/self", False),
    ("/home", False), ("~", False), ("~/.ssh", False), ("~/.cache/videos", False),
    ("~/Videos", True), ("/srv/media/clips", True), ("/var/tmp/clips", True),
])
def test_which_recorded_video_folders_a_local_library_may_name(folder, ok):
    from app.config import acceptable_video_folder

    assert acceptable_video_folder(Path(folder).expanduser()) is ok


@pytest.mark.parametrize("damage", ["missing", "garbage", "other-dimension"])
def test_a_broken_index_is_a_start_up_message_not_a_traceback(built, tmp_path, damage):
    lib = _copy(built, tmp_path)
    if damage == "missing":
        (lib / INDEX).unlink()
    elif damage == "garbage":
        (lib / INDEX).write_bytes(b"not a faiss index" * 10)
    else:
        import faiss

        faiss.write_index(faiss.IndexFlatIP(7), str(lib / INDEX))
    st = _start(lib, tmp_path)
    assert st.library_root != lib
    assert any("index" in a.lower() and "Could not use library" in a for a in st.attempts)
    with pytest.raises(StartupError, match="no-fallback"):
        _start(lib, tmp_path, "--no-fallback")


def test_uploads_expire():
    from app.ui import build_demo

    cfg = from_args(["--model", "random:tiny"], environ={})
    st = start(cfg, progress=None)
    demo = build_demo(st, cfg)
    assert demo.delete_cache == (cfg.upload_ttl_s, cfg.upload_ttl_s) and cfg.upload_ttl_s <= 3600


def _media_url(path, root: str) -> str:
    """The URL app.media gives path (its key is a function of the resolved path)."""
    from app.media import MediaFiles

    return MediaFiles([path]).url(path, root.rstrip("/"))


@pytest.mark.slow
def test_server_answers_only_for_the_library_files(built, tmp_path):
    """The real server with a tampered library: /etc and the files beside the videos stay closed."""
    from bench.app_server import AppServer

    lib = _copy(built, tmp_path)
    _rewrite_records(lib, _tamper)
    videos = built[1]
    secret = videos / ".ssh"
    secret.mkdir(exist_ok=True)
    (secret / "id_rsa").write_text("PRIVATE KEY")
    (videos / "notes.txt").write_text("private notes")
    with AppServer(["--model", "random:tiny", "--library", str(lib),
                    "--cache-dir", str(tmp_path / "cache")], log_path=tmp_path / "app.log") as srv:
        def get(path) -> int:
            """The answer for path under /media (its key as the app would make it), or Gradio's file
            route when that says more than 'not found'."""
            media = httpx.get(_media_url(path, srv.url), timeout=10).status_code
            gradio = httpx.get(f"{srv.url}gradio_api/file={path}", timeout=10).status_code
            return media if gradio in (403, 404) else gradio

        rows = [json.loads(line) for line in (lib / VIDEOS).read_text().splitlines() if line.strip()]
        kept = rows[3]  # rows 0-2 are tampered, so refused
        assert get(lib / kept["thumbnail"]) == 200 and get(videos.parent / kept["path"]) == 200
        refused_thumb = lib / rows[0]["thumbnail"]  # a real file, but of a refused row
        assert refused_thumb.is_file() and get(refused_thumb) in (403, 404)
        for path in ["/etc/passwd", "/etc/hostname", secret / "id_rsa", videos / "notes.txt", lib / MANIFEST,
                     f"{lib}/thumbs/../../../../etc/passwd"]:
            assert get(path) in (403, 404), path


@pytest.mark.slow
def test_a_hub_dataset_in_the_cache_serves_its_thumbnails(built, tmp_path):
    """A Hub cache is a tree of symlinks into blobs/: the exact files served must survive Gradio's resolve."""
    from bench.app_server import AppServer

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "datasets--someone--shapes"
    snapshot = repo / "snapshots" / commit
    for f in sorted(p for p in built[0].rglob("*") if p.is_file()):  # blobs + symlinks, as huggingface_hub lays out
        blob = repo / "blobs" / f"{abs(hash(str(f))):x}"
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, blob)
        link = snapshot / f.relative_to(built[0])
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    with AppServer(["--model", "random:tiny", "--library", "hf-hub:someone/shapes",
                    "--cache-dir", str(tmp_path / "cache")], env=env, log_path=tmp_path / "app.log") as srv:
        row = json.loads((snapshot / VIDEOS).read_text().splitlines()[0])
        thumb = snapshot / row["thumbnail"]
        r = httpx.get(_media_url(thumb, srv.url), timeout=10)
        assert r.status_code == 200 and r.content == thumb.read_bytes()
        for path in (snapshot / MANIFEST, thumb):  # Gradio's own route serves neither
            assert httpx.get(f"{srv.url}gradio_api/file={path}", timeout=10).status_code in (403, 404)
        assert httpx.get(_media_url(snapshot / MANIFEST, srv.url), timeout=10).status_code == 404
