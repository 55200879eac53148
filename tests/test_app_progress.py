"""Start-up: a page is up at once while a --videos folder is indexed; expected fallbacks print one clear line."""

from __future__ import annotations

import socket
import threading

import httpx
import pytest

from app.progress import TITLE, StartupLog, serve_while_starting


def test_startup_log_shows_the_latest_messages():
    echoed: list[str] = []
    log = StartupLog(echo=echoed.append)
    assert "starting" in log.markdown()
    for i in range(12):
        log(f"building library: {i}/11 videos")
    text = log.markdown(last=3)
    assert "Indexing your videos" in text and "11/11" in text and "8/11" not in text
    assert len(echoed) == 12
    log.ready = True
    assert log.markdown().startswith("**Ready")


def test_the_progress_page_is_served_while_building_then_frees_the_port():
    from bench.app_server import free_port

    port = free_port()
    go, seen = threading.Event(), {}

    def build(log):
        log("indexing 3 videos")
        r = httpx.get(f"http://127.0.0.1:{port}/config", timeout=10)
        seen["title"] = r.json()["title"]
        seen["page"] = httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code
        go.set()
        return "the real page"

    result = serve_while_starting({"server_name": "127.0.0.1", "server_port": port}, build,
                                  handover_seconds=0.1)
    assert go.is_set() and result == "the real page"
    assert seen == {"title": TITLE, "page": 200}
    with socket.socket() as s:  # the real page can take the port now
        s.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_offline_fallback_start_prints_clear_lines_only(tmp_path):
    """No network, default settings: one line per fallback, no traceback, no ERROR, no faiss import noise."""
    from bench.app_server import AppServer

    with AppServer(["--cache-dir", str(tmp_path / "cache")], env={"GRADIO_TEMP_DIR": str(tmp_path / "g")},
                   log_path=tmp_path / "app.log") as srv:
        text = srv.log()
    assert "Could not load model clip:ViT-B-32-quickgelu/openai: no network and not in the local cache" in text
    assert "serving model bundled:moving-shapes" in text
    for noise in ("Traceback", "ERROR", "ModuleNotFoundError", "Failed to download"):
        assert noise not in text, text
