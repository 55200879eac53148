"""The real app (python app.py) on a free localhost port, driven through gradio_client and plain HTTP."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from shapes_library import make_shapes_library

    from bench.app_server import AppServer
    from video.decode import write_video

    root = tmp_path_factory.mktemp("apphttp")
    lib, videos = make_shapes_library(root, "random:tiny", num=6)
    bad = root / "uploads"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("not a video\n" * 100)
    (bad / "noise.webm").write_bytes(np.random.default_rng(0).integers(0, 256, 30000, dtype=np.uint8).tobytes())
    (bad / "big.mp4").write_bytes(b"\x00" * (1536 * 1024))  # 1.5 MB, over the 1 MB limit below
    frames = np.zeros((36, 48, 64, 3), np.uint8)
    frames[:, 10:30, 10:30] = 255
    write_video(bad / "long.mp4", frames, fps=12)  # 3 s, over the 2.5 s limit below
    with AppServer(["--model", "random:tiny", "--library", str(lib), "--cache-dir", str(root / "cache"),
                    "--max-upload-mb", "1", "--max-video-seconds", "2.5"],
                   env={"GRADIO_TEMP_DIR": str(root / "gradio")}, log_path=root / "app.log") as srv:
        srv.lib, srv.videos, srv.bad, srv.root = lib, videos, bad, root
        yield srv


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False, download_files=False)


_SCORE = re.compile(r"^(\d+)\. (.+) · (-?\d+\.\d+)$")


def _parse(gallery):
    out = []
    for item in gallery:
        m = _SCORE.match(item["caption"])
        assert m, item["caption"]
        out.append((int(m.group(1)), m.group(2), float(m.group(3))))
    return out


def test_api_names(client):
    api = client.view_api(print_info=False, return_format="dict")
    names = set(api["named_endpoints"])
    assert {"/search", "/describe", "/similarity", "/library_info"} <= names


def test_search_over_http(client):
    gallery, status = client.predict("a red circle moves left", 4, api_name="/search")
    rows = _parse(gallery)
    assert [r[0] for r in rows] == [1, 2, 3, 4]
    scores = [r[2] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert all(r[1] for r in rows) and "4" in status
    url = gallery[0]["image"]["url"] if isinstance(gallery[0]["image"], dict) else None
    assert url and url.startswith(client.src.rstrip("/") + "/media/") and url.endswith(".jpg")


@pytest.mark.parametrize("query,words", [
    ("", "empty"),
    ("   \n\t ", "empty"),
    ("\x00\x01\x02", "empty"),
    ("a red circle " * 800, "only the first"),
    ("🐶 a dog 🏖️ on the beach 🎉", None),
    ("a red\x00 circle\x1b moves", "Removed 2"),
])
def test_bad_queries_over_http(client, query, words):
    gallery, status = client.predict(query, 3, api_name="/search")
    if words == "empty":
        assert gallery == [] and "empty" in status and "⚠️" in status
    else:
        assert len(gallery) == 3
        if words:
            assert words in status
    # ... and the app keeps serving
    gallery, _ = client.predict("a blue square", 2, api_name="/search")
    assert len(gallery) == 2


def test_describe_over_http(client, server):
    from gradio_client import handle_file

    clip = sorted(server.videos.glob("*.mp4"))[0]
    status, generated, strip, bank, libcaps, similar = client.predict(handle_file(str(clip)), api_name="/describe")
    assert status.startswith("Described"), status
    assert "no trained captioning head" in generated
    assert strip is not None
    assert libcaps["data"] and [r[1] for r in libcaps["data"]] == sorted([r[1] for r in libcaps["data"]], reverse=True)
    assert similar and _parse(similar)[0][2] > 0.99


@pytest.mark.parametrize("name,words", [
    ("empty.mp4", "empty (0 bytes)"),
    ("notes.mp4", "could not be read as a video"),
    ("noise.webm", "could not be read as a video"),
    ("long.mp4", "limit"),
])
def test_bad_uploads_over_http(client, server, name, words):
    from gradio_client import handle_file

    status, generated, strip, bank, libcaps, similar = client.predict(handle_file(str(server.bad / name)),
                                                                      api_name="/describe")
    assert "⚠️" in status and words in status, status
    assert similar == [] and strip is None


def test_oversize_upload_is_refused(client, server):
    from gradio_client import handle_file

    with pytest.raises(Exception) as e:
        client.predict(handle_file(str(server.bad / "big.mp4")), api_name="/describe")
    assert re.search(r"size|large|413", str(e.value), re.I), str(e.value)
    # gradio_client checks the limit itself; the server enforces it too, for any HTTP client.
    import httpx

    with open(server.bad / "big.mp4", "rb") as fh:
        r = httpx.post(f"{server.url}gradio_api/upload", files={"files": ("big.mp4", fh, "video/mp4")}, timeout=30)
    assert r.status_code == 413 and "size" in r.text.lower(), (r.status_code, r.text[:200])
    gallery, _ = client.predict("a green triangle", 2, api_name="/search")  # still serving
    assert len(gallery) == 2


def test_similarity_and_library_info(client, server):
    info = client.predict(api_name="/library_info")
    assert info["videos"] == 6 and info["model"] == "random:tiny"
    vid = sorted(server.videos.glob("*.mp4"))[0].stem
    sim = client.predict("a red circle", vid, api_name="/similarity")
    assert sim["ok"] and sim["timestamps"] == sorted(sim["timestamps"])
    assert sim["best_score"] == max(sim["scores"])


def test_only_thumbnails_and_videos_are_served(client, server):
    """The library's files come from /media/<key>/<name> (exact files); Gradio's own file route serves
    only the Describe tab's example videos; nothing else of the library, its folder or the machine."""
    import json

    import httpx

    hits = json.loads(client.predict("a circle", 6, api_name="/search_videos"))["hits"]
    assert len(hits) == 6
    for h in hits:
        for url, kind in ((h["thumbnail"], "image/jpeg"), (h["video"], "video/mp4")):
            r = httpx.get(url, timeout=10)
            assert r.status_code == 200 and r.headers["content-type"] == kind, url
            assert r.headers["x-content-type-options"] == "nosniff"
    thumb = next(server.lib.glob("thumbs/*.jpg"))
    by_name = {u.rsplit("/", 1)[-1]: u for h in hits for u in (h["thumbnail"], h["video"])}
    assert httpx.get(by_name[thumb.name], timeout=10).content == thumb.read_bytes()
    video_url = hits[0]["video"]
    ranged = httpx.get(video_url, headers={"Range": "bytes=0-99"}, timeout=10)
    assert ranged.status_code == 206 and len(ranged.content) == 100  # the player can seek
    key = video_url.split("/media/", 1)[1].split("/")[0]
    for url in [f"{server.url}media/{key}/manifest.json", f"{server.url}media/{key}/../manifest.json",
                f"{server.url}media/{'0' * 20}/{thumb.name}", f"{server.url}media/{key}",
                f"{server.url}media/{key}/..%2F..%2Fmanifest.json", f"{server.url}media/../app.py"]:
        assert httpx.get(url, timeout=10).status_code in (403, 404), url

    def get(path):
        return httpx.get(f"{server.url}gradio_api/file={path}", timeout=10).status_code

    videos = sorted(server.videos.glob("*.mp4"))
    assert get(videos[0]) == 200  # a Describe example: Gradio serves these four in place
    for path in ["/etc/passwd", server.lib / "manifest.json", server.lib / "video_emb.npy", thumb, videos[-1],
                 server.lib / "videos.jsonl", server.videos.parent / "MSRVTT_data.json", server.bad / "notes.mp4",
                 server.root / "app.log", "app.py", "../../../../etc/passwd",
                 f"{server.lib}/thumbs/../manifest.json"]:
        assert get(path) in (403, 404), path


def test_concurrent_clients(server):
    from gradio_client import Client

    errors, done = [], []

    def run(n):
        try:
            c = Client(server.url, verbose=False, download_files=False)
            for i in range(3):
                g, _ = c.predict(f"a shape number {n} {i}", 3, api_name="/search")
                assert len(g) == 3
                done.append(1)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(done) == 18


def test_search_videos_chains_into_similarity(client, server):
    """The README's client example: JSON hits, a returned id fed to /similarity, served URLs."""
    import json

    import httpx

    found = json.loads(client.predict("a red circle moves left", 4, api_name="/search_videos"))
    hits = found["hits"]
    assert found["ok"] and [h["rank"] for h in hits] == [1, 2, 3, 4]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert all(0 <= h["start"] < h["end"] for h in hits)
    sim = client.predict(found["query"], hits[0]["id"], api_name="/similarity")
    assert sim["ok"] and sim["video_id"] == hits[0]["id"]
    assert hits[0]["start"] <= sim["best_time"] <= hits[0]["end"]
    assert httpx.get(hits[0]["video"], timeout=10).status_code == 200
    assert httpx.get(hits[0]["thumbnail"], timeout=10).status_code == 200


def test_describe_upload_returns_json(client, server):
    from gradio_client import handle_file

    clip = sorted(server.videos.glob("*.mp4"))[2]
    d = client.predict(handle_file(str(clip)), api_name="/describe_upload")
    assert d["ok"] and d["caption"] is None and d["confidence"] in ("high", "low")
    scores = [c["score"] for c in d["ranked_captions"]]
    assert scores and scores == sorted(scores, reverse=True)
    assert d["similar"][0]["id"] == clip.stem and d["similar"][0]["score"] > 0.99
    bad = client.predict(handle_file(str(server.bad / "notes.mp4")), api_name="/describe_upload")
    assert not bad["ok"] and "could not be read as a video" in bad["message"] and bad["confidence"] is None
