"""`python app.py --mcp`: the running app serves an MCP tool schema, and the tools answer with JSON."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mcp")
pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from shapes_library import make_shapes_library

    from bench.app_server import AppServer

    root = tmp_path_factory.mktemp("appmcp")
    lib, videos = make_shapes_library(root, "random:tiny", num=5)
    # PROMPTSWITCH_MCP=1 here; the flag is covered by test_mcp_flag_and_environment.
    with AppServer(["--model", "random:tiny", "--library", str(lib), "--cache-dir", str(root / "cache")],
                   env={"PROMPTSWITCH_MCP": "1", "GRADIO_TEMP_DIR": str(root / "gradio")},
                   log_path=root / "app.log") as srv:
        srv.lib, srv.videos = lib, videos
        yield srv


@pytest.fixture(scope="module")
def schema(server):
    import httpx

    r = httpx.get(server.url + "gradio_api/mcp/schema", timeout=30)
    assert r.status_code == 200, r.text[:500]
    return {tool["name"]: tool for tool in r.json()}


def test_schema_lists_the_search_and_describe_tools(schema):
    assert {"search_videos", "describe_video"} <= set(schema)
    search = schema["search_videos"]
    props = search["inputSchema"]["properties"]
    assert set(props) == {"query", "k"}  # the gr.Request parameter is not part of the tool
    assert props["query"]["type"] == "string" and props["k"]["type"] == "integer"
    assert search["inputSchema"]["required"] == ["query"]
    assert "English description" in props["query"]["description"] and "best first" in props["k"]["description"]
    assert "Search the video library" in search["description"] and '"start"' in search["description"]
    describe = schema["describe_video"]["inputSchema"]
    assert set(describe["properties"]) == {"video_id"} and describe["required"] == ["video_id"]


def test_search_videos_returns_structured_hits(server):
    from gradio_client import Client

    out = json.loads(Client(server.url, verbose=False, download_files=False).predict(
        "a red circle moves left", 3, api_name="/search_videos"))
    assert out["ok"] is True and len(out["hits"]) == 3
    hits = out["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3]
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    for h in hits:
        assert set(h) >= {"id", "video", "start", "end", "score", "caption"}
        assert 0.0 <= h["start"] < h["end"] <= h["duration"] + 1e-6
        assert h["video"].startswith(server.url.rstrip("/") + "/media/") and h["video"].endswith(f"/{h['id']}.mp4")
    ids = {p.stem for p in server.videos.glob("*.mp4")}
    assert {h["id"] for h in hits} <= ids


def test_describe_video_by_id(server):
    from gradio_client import Client

    client = Client(server.url, verbose=False, download_files=False)
    first = json.loads(client.predict("a shape", 1, api_name="/search_videos"))["hits"][0]
    d = json.loads(client.predict(first["id"], api_name="/describe_video"))
    assert d["ok"] is True and d["id"] == first["id"] and d["captions"]
    assert d["similar"] and first["id"] not in {h["id"] for h in d["similar"]}
    assert all(c["source"] != first["id"] for c in d["ranked_captions"])
    missing = json.loads(client.predict("no-such-video", api_name="/describe_video"))
    assert missing["ok"] is False and "no-such-video" in missing["message"]


@pytest.mark.parametrize("argv,env,expected", [
    ([], {}, False),
    (["--mcp"], {}, True),
    ([], {"PROMPTSWITCH_MCP": "1"}, True),
    ([], {"PROMPTSWITCH_MCP": "0"}, False),
])
def test_mcp_flag_and_environment(argv, env, expected):
    from app.config import from_args

    assert from_args(argv, env).mcp is expected


def test_an_mcp_client_lists_and_calls_the_tools(server):
    """The real protocol (streamable HTTP at /gradio_api/mcp/), as an agent's MCP client speaks it."""
    import asyncio

    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async def run():
        async with streamable_http_client(server.url + "gradio_api/mcp/") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                result = await session.call_tool("search_videos", {"query": "a blue square", "k": 2})
                return names, result

    names, result = asyncio.run(asyncio.wait_for(run(), 120))
    assert {"search_videos", "describe_video"} <= names
    assert not result.isError
    payload = json.loads(result.content[0].text)
    assert payload["ok"] is True and [h["rank"] for h in payload["hits"]] == [1, 2]
