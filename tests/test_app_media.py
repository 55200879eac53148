"""app.media: the library's files served by key, and the page's components passing their URLs through.

Before it, Gradio checked each gallery image of every search against every served file (two path
resolutions each): most of a search request's server time, growing with the library.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.media import ROUTE, MediaFiles

ROOT = "http://testserver"


@pytest.fixture()
def files(tmp_path):
    thumbs = tmp_path / "lib" / "thumbs"
    thumbs.mkdir(parents=True)
    jpg = thumbs / "a.jpg"
    jpg.write_bytes(b"\xff\xd8\xff" + bytes(range(256)) * 8)
    mp4 = tmp_path / "My Videos" / "clip 1.mp4"
    mp4.parent.mkdir()
    mp4.write_bytes(os.urandom(5000))
    (thumbs / "secret.txt").write_text("not served")
    blob = tmp_path / "blobs" / "0f1e2d"  # a Hub cache: a symlink named x.jpg into a blob without a suffix
    blob.parent.mkdir()
    blob.write_bytes(b"\xff\xd8\xffhub")
    link = thumbs / "hub.jpg"
    link.symlink_to(blob)
    return jpg, mp4, link, thumbs / "secret.txt"


def test_urls_name_only_registered_files_and_hide_their_folder(files):
    jpg, mp4, link, secret = files
    media = MediaFiles([jpg, mp4, link])
    assert len(media) == 3 and jpg in media and secret not in media
    url = media.url(mp4, ROOT + "/")
    assert url.startswith(f"{ROOT}{ROUTE}/") and url.endswith("/clip%201.mp4") and "My" not in url
    assert media.url(secret, ROOT) is None and media.url(None, ROOT) is None
    assert media.url(jpg, "") is None  # no address known: no link (callers show the path or nothing)
    assert MediaFiles([mp4]).url(mp4, ROOT) == url  # the key is the same after a restart: browsers keep their cache
    assert media.url(jpg.parent / ".." / "thumbs" / "a.jpg", ROOT) == media.url(jpg, ROOT)
    assert media.linker(ROOT)(link) == media.url(link, ROOT) and media.url(link, ROOT).endswith("/hub.jpg")


def test_a_key_opens_only_its_own_file_under_its_own_name(files):
    jpg, mp4, link, _ = files
    media = MediaFiles([jpg, mp4, link])
    key = media.key(jpg)
    assert media.file(key, "a.jpg") == (jpg, "a.jpg")
    assert media.file(key, "secret.txt") is None and media.file(key, "../a.jpg") is None
    assert media.file("0" * 20, "a.jpg") is None
    assert media.file(media.key(link), "hub.jpg") == (link, "hub.jpg")  # served through the link
    jpg.unlink()
    assert media.file(key, "a.jpg") is None  # gone since start-up: not found, not an error


def test_the_route_serves_exact_files_with_types_and_ranges(files):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    jpg, mp4, link, secret = files
    media = MediaFiles([jpg, mp4, link])
    client = TestClient(Starlette(routes=[media.route()]))
    r = client.get(media.url(jpg, ROOT))
    assert r.status_code == 200 and r.content == jpg.read_bytes()
    assert r.headers["content-type"] == "image/jpeg" and r.headers["x-content-type-options"] == "nosniff"
    hub = client.get(media.url(link, ROOT))
    assert hub.status_code == 200 and hub.content == b"\xff\xd8\xffhub" and hub.headers["content-type"] == "image/jpeg"
    part = client.get(media.url(mp4, ROOT), headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == mp4.read_bytes()[100:200]
    assert part.headers["content-type"] == "video/mp4"
    assert client.head(media.url(mp4, ROOT)).status_code == 200
    key = media.key(jpg)
    for path in [f"{ROUTE}/{key}/secret.txt", f"{ROUTE}/{key}/..%2Fsecret.txt", f"{ROUTE}/{'f' * 20}/a.jpg",
                 f"{ROUTE}/{key}", f"{ROUTE}/{key}/a.jpg/x", f"{ROUTE}/../thumbs/secret.txt"]:
        assert client.get(path).status_code == 404, path
    assert client.post(media.url(jpg, ROOT)).status_code == 405


def _count_file_work(monkeypatch) -> list[str]:
    """Names of Gradio's path checks, copies and downloads, as they are called."""
    import gradio.processing_utils as pu
    import gradio.utils as gu

    calls: list[str] = []
    for mod, name in [(gu, "is_in_or_equal"), (pu, "save_url_to_cache"), (pu, "save_file_to_cache")]:
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    return calls


def test_components_pass_media_urls_through_without_touching_files(files, monkeypatch):
    """What a search's gallery, the player and the strip cost Gradio: no path checks, no copies, no download."""
    import gradio.processing_utils as pu

    from app.components import LibraryGallery, LibraryImage, LibraryVideo

    jpg, mp4, _, _ = files
    media = MediaFiles([jpg, mp4])
    calls = _count_file_work(monkeypatch)
    gallery = LibraryGallery()
    items = [(media.url(jpg, ROOT), f"{i}. a caption") for i in range(10)]
    out = pu.move_files_to_cache(gallery.postprocess(items), gallery, postprocess=True)
    assert [g["image"]["url"] for g in out] == [u for u, _ in items] and out[3]["caption"] == "3. a caption"
    video = LibraryVideo()
    v = pu.move_files_to_cache(video.postprocess(media.url(mp4, ROOT)), video, postprocess=True)
    assert v["url"] == media.url(mp4, ROOT) and v["mime_type"] == "video/mp4"
    image = LibraryImage()
    s = pu.move_files_to_cache(image.postprocess(media.url(jpg, ROOT)), image, postprocess=True)
    assert s["url"] == media.url(jpg, ROOT)
    assert calls == []
    assert LibraryGallery().get_block_name() == "gallery" and LibraryVideo().get_block_name() == "video"
    assert not list((Path(__file__).parent.parent / "app").glob("*.pyi"))  # Gradio wrote no stub into the checkout


def test_gradio_serves_no_library_file_itself(tmp_path, tiny_model, monkeypatch):
    """Gradio's own lists (static and allowed paths) hold the Describe examples only, whatever the library's
    size: each entry costs two path resolutions on every file Gradio serves or returns. A search's gallery
    costs Gradio no path check at all."""
    import gradio.processing_utils as pu
    from gradio.data_classes import _StaticFiles
    from shapes_library import make_shapes_library

    from app.config import from_args
    from app.handlers import Handlers
    from app.main import create_app
    from app.ui import launch_kwargs

    lib, _ = make_shapes_library(tmp_path, tiny_model, num=6)
    cfg = from_args(["--library", str(lib), "--cache-dir", str(tmp_path / "cache")], environ={})
    before = len(_StaticFiles.all_paths)
    demo, st = create_app(cfg, progress=None)
    added = _StaticFiles.all_paths[before:]
    assert len(st.served_files) == 18 and len(st.media) == 18  # 6 thumbnails, 6 posters, 6 videos
    assert sorted(added) == sorted(p.resolve() for p in st.example_videos) and len(added) == 4
    kw = launch_kwargs(cfg, st)
    assert sorted(kw["allowed_paths"]) == sorted(str(p) for p in st.example_videos)
    assert [r.path for r in kw["app_kwargs"]["routes"]] == [ROUTE + "/{key}/{name}"]
    gallery = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "results")
    items = Handlers(st).gallery(st.engine.search("a red circle", 6).hits, root=ROOT)
    calls = _count_file_work(monkeypatch)
    out = pu.move_files_to_cache(gallery.postprocess(items), gallery, postprocess=True)
    assert len(out) == 6 and all(g["image"]["url"].startswith(ROOT + ROUTE) for g in out) and calls == []


def test_gradio_queue_summary_is_not_rebuilt_per_event(monkeypatch):
    from app.config import set_environment_defaults

    for name in ("GRADIO_ANALYTICS_CACHE_FREQUENCY", "GRADIO_ANALYTICS_MAX_EVENTS"):
        monkeypatch.delenv(name, raising=False)
    set_environment_defaults()
    assert int(os.environ["GRADIO_ANALYTICS_CACHE_FREQUENCY"]) >= 100
    monkeypatch.setenv("GRADIO_ANALYTICS_CACHE_FREQUENCY", "7")
    set_environment_defaults()
    assert os.environ["GRADIO_ANALYTICS_CACHE_FREQUENCY"] == "7"  # the user's setting wins


def _request(path: str, headers: dict[str, str], root_path: str = ""):
    from types import SimpleNamespace

    from starlette.requests import Request

    scope = {"type": "http", "method": "POST", "path": path, "root_path": root_path, "scheme": "http",
             "server": ("127.0.0.1", 7860), "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    return SimpleNamespace(request=Request(scope))


def test_links_use_the_address_the_caller_used():
    """Media URLs are absolute (Gradio passes only those through): they must be the caller's own address,
    behind a proxy (a Space) and under a sub-path as well."""
    from app.mcp import root_url

    assert root_url(_request("/gradio_api/call/search", {"host": "127.0.0.1:7860"})) == "http://127.0.0.1:7860"
    space = _request("/gradio_api/queue/join", {"host": "10.0.0.3:7860", "x-forwarded-host": "org-demo.hf.space",
                                                 "x-forwarded-proto": "https"})
    assert root_url(space) == "https://org-demo.hf.space"
    sub = _request("/videos/gradio_api/call/search", {"host": "example.org"}, root_path="/videos")
    assert root_url(sub) == "http://example.org/videos"
    assert root_url(None) == "" and root_url(object()) == ""
