"""Search and describe for programs: typed functions that Gradio serves as API endpoints and MCP tools.

`python app.py --mcp` (or PROMPTSWITCH_MCP=1) starts Gradio's MCP server, which turns every public
endpoint into a tool whose schema comes from the function's type hints and its docstring's Args.
The page's own events return widgets (a gallery, Markdown); these two return JSON text instead
(Gradio hands an agent ``str()`` of a tool's result, so a dict would arrive as a Python repr):
``search_videos`` (ranked hits with the best-matching moment) and ``describe_video`` (what the
library knows about one of its videos, and the captions and videos closest to it). Uploading a new
video to describe stays with the page's ``describe`` endpoint, which takes a file.
Not ``from __future__ import annotations``: Gradio reads the tools' type hints at runtime.
"""

import importlib.util
import json
import logging
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["mcp_missing", "make_tools", "register_tools", "TOOL_NAMES"]

TOOL_NAMES = ("search_videos", "describe_video")


def mcp_missing() -> str | None:
    """Why the MCP server cannot start here (the extra is not installed), or None when it can."""
    if importlib.util.find_spec("mcp") is None:
        return "--mcp needs Gradio's MCP extra: pip install \"gradio[mcp]==6.31.0\" (it is in requirements.txt)"
    return None


def root_url(request: Any) -> str:
    """The app's public URL as the caller sees it ('' when unknown): file links must be absolute for agents."""
    req = getattr(request, "request", None)
    if req is None:
        return ""
    try:
        from gradio import route_utils

        root_path = getattr(req.scope.get("app"), "root_path", None) or req.scope.get("root_path")
        return route_utils.get_root_url(req, req.url.path, root_path or None)
    except Exception:  # a link is a convenience: never fail the call for it
        return ""


Link = Callable[[Any], "str | None"]
"""A served file's path -> its absolute URL, None when it is not served (app.media.MediaFiles.linker)."""


def _moment(engine, query: str, row: int, duration: float) -> tuple[float, float]:
    """(start, end) seconds around the sampled frame that matches the query best (the whole video if unknown)."""
    sim = engine.frame_similarity(query, row)
    if not sim.ok or sim.best is None:
        return 0.0, duration
    ts, b = sim.timestamps, sim.best
    start = 0.0 if b == 0 else (ts[b - 1] + ts[b]) / 2
    end = (ts[b] + ts[b + 1]) / 2 if b + 1 < len(ts) else max(duration, ts[b])
    return round(float(start), 3), round(float(end), 3)


def hit_json(engine, hit, link: Link, query: str | None) -> dict[str, Any]:
    if hit.file_id and engine.segments_of(hit.file_id) > 1:  # a moment of a long video: its segment
        start, end = round(float(hit.start), 3), round(float(hit.end), 3)
    else:
        start, end = _moment(engine, query, hit.index, hit.duration) if query else (0.0, hit.duration)
    return {"rank": hit.rank, "id": hit.id, "video_id": hit.file_id or hit.id, "video": link(hit.video),
            "start": start, "end": end,
            "score": round(float(hit.score), 4), "caption": hit.caption, "captions": hit.captions,
            "generated_caption": hit.generated_caption, "duration": hit.duration,
            "thumbnail": link(hit.thumbnail)}


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)


def _closest(emb: np.ndarray | None, v: np.ndarray, n: int) -> list[tuple[int, float]]:
    if emb is None or not len(emb) or n <= 0:
        return []
    scores = np.asarray(emb, np.float32) @ v
    order = np.argsort(-scores)[:n]
    return [(int(j), float(scores[j])) for j in order]


def _describe(engine, video_id: str, link: Link) -> dict[str, Any]:
    row = engine.row_of(video_id)
    if row is None:
        return {"ok": False, "message": f"No video {video_id!r} in the library; use an id from search_videos."}
    rec = engine.library.records[row]
    v = np.asarray(engine.library.video_emb[row], np.float32)
    lim = engine.limits
    ranked = [{"caption": engine.bank[j], "score": round(s, 4), "source": "caption bank"}
              for j, s in _closest(engine.bank_emb, v, lim.num_bank)]
    ranked += [{"caption": engine.library_captions[j][0], "score": round(s, 4), "source": engine.library_captions[j][1]}
               for j, s in _closest(engine.library_caption_emb, v, lim.num_library_captions + len(rec.captions))
               if engine.library_captions[j][1] != rec.id][: lim.num_library_captions]
    ranked.sort(key=lambda c: -c["score"])
    scores, idx = engine.library.search(v[None, :], lim.num_similar + 1)
    rows = [(int(i), float(s)) for s, i in zip(scores[0], idx[0]) if i >= 0 and int(i) != row][: lim.num_similar]
    similar = [hit_json(engine, engine._hit(r + 1, i, s), link, None) for r, (i, s) in enumerate(rows)]
    return {"ok": True, "message": "", "id": rec.id, "video": link(engine.video_path(row)),
            "duration": float(rec.duration or 0.0), "captions": list(rec.captions),
            "generated_caption": rec.generated_caption, "ranked_captions": ranked, "similar": similar}


def make_tools(engine, media) -> list[Callable[..., Any]]:
    """The tool functions bound to an engine; their docstrings and hints are the MCP schema agents read.

    media: the served files (app.media.MediaFiles): file links in the results point there."""
    import gradio as gr

    def search_videos(query: str, k: int = 10, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """Search the video library by describing what happens in a video (text-to-video retrieval).

        Args:
            query: a short English description of the video to find, e.g. "a red circle moves to the left".
            k: how many results to return, best first (1 to 50).
        Returns:
            JSON {"ok", "message", "query", "hits"}; each hit has "rank", "id", "video" (URL or null),
            "start" and "end" (seconds: the best-matching moment), "score" (cosine similarity), "caption",
            "captions", "generated_caption", "duration" and "thumbnail" (URL).
        """
        res = engine.search(query, k)
        link = media.linker(root_url(request))
        hits = [hit_json(engine, h, link, res.query) for h in res.hits] if res.ok else []
        return _json({"ok": res.ok, "message": res.message, "query": res.query, "hits": hits})

    def describe_video(video_id: str, request: gr.Request = None) -> str:  # type: ignore[assignment]
        """Describe one video of the library: its captions, the captions and library videos closest to it.

        Args:
            video_id: the id of a library video, as returned in the "id" field of search_videos.
        Returns:
            JSON {"ok", "message", "id", "video" (URL or null), "duration", "captions", "generated_caption",
            "ranked_captions" (each {"caption", "score", "source"}), "similar" (hits as in search_videos)}.
        """
        return _json(_describe(engine, str(video_id or "").strip(), media.linker(root_url(request))))

    return [search_videos, describe_video]


def register_tools(engine, media, wrap: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None) -> None:
    """Add the tools as named endpoints of the Blocks being built (call inside ``with gr.Blocks()``).

    wrap: applied to each tool (app.ui passes the ZeroGPU decorator: the tools run the model)."""
    import gradio as gr

    for fn in make_tools(engine, media):
        gr.api(wrap(fn) if wrap else fn, api_name=fn.__name__, concurrency_id="search")
