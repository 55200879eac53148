"""The Gradio page: Search, Describe a video, Library. All logic lives in app.engine.

Event API (callable with gradio_client; every event has an explicit api_name):
- /search (query: str, k: int) -> (gallery [{image, caption}], status markdown)
- /describe (video: {"video": handle_file(path)}) ->
      (status, generated caption, frame strip, bank captions table, library captions table, similar gallery)
- /similarity (query: str, video_id: str) -> dict with timestamps, scores, best moment
- /library_info () -> dict: model, fingerprint, videos, index, settings, failures
Handlers never raise on bad input: they return a message for the page.
"""

from __future__ import annotations

import functools
import html
import logging
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from app.engine import Hit, SearchEngine
from app.mcp import register_tools
from app.render import format_time, frame_strip, similarity_plot
from app.startup import Startup, banner_markdown

log = logging.getLogger(__name__)

__all__ = ["build_demo", "launch_kwargs", "CSS"]

BROWSER_CODECS = {"h264", "vp8", "vp9", "av1", "theora"}
BROWSER_SUFFIXES = {".mp4", ".m4v", ".webm", ".ogg", ".ogv"}

CSS = """
#banner { font-size: 0.95em; }
#results .caption-label { white-space: normal; }
#best-moment { font-size: 1.05em; }
"""

_PLACEHOLDER: Image.Image | None = None


def _placeholder() -> Image.Image:
    global _PLACEHOLDER
    if _PLACEHOLDER is None:
        _PLACEHOLDER = Image.new("RGB", (160, 120), (210, 210, 210))
    return _PLACEHOLDER


@functools.lru_cache(maxsize=4096)
def browser_playable(path: str) -> bool:
    """True for mp4/webm/ogg files whose video codec browsers decode (H.264, VP8/9, AV1, Theora)."""
    p = Path(path)
    if p.suffix.lower() not in BROWSER_SUFFIXES:
        return False
    try:
        import av

        with av.open(str(p), metadata_errors="ignore") as c:
            if not c.streams.video:
                return False
            return c.streams.video[0].codec_context.name in BROWSER_CODECS
    except Exception:
        return False


def _gallery(hits: list[Hit]) -> list[tuple[Any, str]]:
    items = []
    for h in hits:
        img = h.poster or h.thumbnail
        items.append((str(img) if img else _placeholder(), f"{h.rank}. {h.label}"))
    return items


def _md_escape(text: str) -> str:
    text = html.escape(text, quote=False)
    for ch in "*_`#|":
        text = text.replace(ch, "\\" + ch)
    return text


def _warn(message: str) -> str:
    return f"⚠️ {_md_escape(message)}"


def _library_markdown(engine: SearchEngine, st: Startup) -> str:
    info = engine.info()
    idx = info["index"] or {}
    rows = [
        ("Model", f"`{info['model']}` ({st.model_reason})"),
        ("Model fingerprint", f"`{info['model_fingerprint']}`"),
        ("Captioning head", info["captioning_head"]),
        ("Library", f"`{info['library']}` ({st.library_reason})"),
        ("Library built with", f"`{info['library_model']}` (fingerprint `{info['library_fingerprint']}`)"),
        ("Videos", f"{info['videos']:,}"),
        ("Frames per video", str(info["frames_per_video"])),
        ("Embedding size", str(info["dim"])),
        ("Index", ", ".join(f"{k}: {v}" for k, v in idx.items() if v not in (None, "", {})) or "Flat"),
        ("Caption bank", f"{info['caption_bank']:,} captions"),
        ("Library captions", f"{info['library_captions']:,}"),
    ]
    if info.get("created"):
        rows.append(("Built", str(info["created"])))
    out = ["### Model and library", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    settings = info.get("settings") or {}
    if settings:
        out += ["", "### Build settings", "", "| setting | value |", "|---|---|"]
        out += [f"| {k} | `{v}` |" for k, v in settings.items()]
    fails = info.get("failures") or []
    out += ["", f"### Failures ({len(fails)})", ""]
    if fails:
        out += ["| file | reason |", "|---|---|"]
        for f in fails[:200]:
            where = _md_escape(str(f.get("path", f.get("id", "?"))))
            why = _md_escape(str(f.get("reason", f.get("error", ""))))
            out.append(f"| {where} | {why} |")
        if len(fails) > 200:
            out.append(f"\n… and {len(fails) - 200} more (see failures.jsonl in the library).")
    else:
        out.append("Every video was indexed.")
    notes = info.get("notes") or []
    if st.attempts or notes:
        out += ["", "### Start-up notes", ""] + [f"- {_md_escape(a)}" for a in [*st.attempts, *notes]]
    return "\n".join(out)


def example_queries(engine: SearchEngine, n: int = 6) -> list[str]:
    """A few first captions spread over the library (what the model was shown to know)."""
    recs = engine.library.records
    out: list[str] = []
    if recs:
        step = max(1, len(recs) // n)
        for r in recs[::step]:
            if r.captions and r.captions[0] not in out:
                out.append(r.captions[0])
            if len(out) >= n:
                break
    return out or ["a person walks down the street", "a dog runs on the beach", "cars drive at night"]


def build_demo(st: Startup, config=None) -> gr.Blocks:
    """The page. Call gr.set_static_paths(st.static_dirs) first (launch() in app.main does)."""
    engine: SearchEngine = st.engine  # type: ignore[assignment]
    limits = engine.limits

    # ------------------------------------------------------------------ handlers
    def search(query: str, k: float) -> tuple[list, str, dict]:
        """Search the library by text; returns the gallery of results and a status line."""
        try:
            res = engine.search(query, k)
        except Exception as e:  # a bug must not take the page down: say so and keep serving
            log.exception("search failed")
            return [], _warn(f"Search failed: {type(e).__name__}: {e}"), {}
        if not res.ok:
            return [], _warn(res.message), {}
        status = (f"**{len(res.hits)}** results for “{_md_escape(res.query)}” "
                  f"({res.seconds * 1000:.0f} ms). Select one to see where it matches best.")
        if res.message:
            status += "\n\n" + _warn(res.message)
        state = {"query": res.query, "rows": [h.index for h in res.hits], "scores": [h.score for h in res.hits]}
        return _gallery(res.hits), status, state

    def clear_selection():
        return (gr.update(value=None, visible=False), gr.update(value=None, visible=False), "", None, "")

    def select(state: dict, evt: gr.SelectData):
        hidden = gr.update(value=None, visible=False)
        try:
            rows = (state or {}).get("rows") or []
            i = evt.index if isinstance(evt.index, int) else (evt.index[0] if evt.index else 0)
            if not rows or not 0 <= i < len(rows):
                return hidden, hidden, "Search first, then select a result.", None, ""
            row = rows[i]
            score = state["scores"][i]
            rec = engine.library.records[row]
            sim = engine.frame_similarity(state["query"], row)
            video = engine.video_path(row)
            best_t = sim.best_time if sim.ok else None
            if video is not None and browser_playable(str(video)):
                v = gr.update(value=str(video), visible=True, playback_position=float(best_t or 0.0))
                s = hidden
                note = ""
            else:
                strip = engine.library.media_path(rec.thumbnail) or engine.library.media_path(rec.poster)
                v = hidden
                s = gr.update(value=str(strip) if strip else None, visible=strip is not None)
                note = ("\n\n*The video file is not available here; showing its sampled frames.*" if video is None
                        else "\n\n*This format does not play in browsers; showing its sampled frames.*")
            caps = rec.captions or []
            info = [f"### {_md_escape(rec.id)}",
                    f"Score **{score:.3f}** · duration {format_time(rec.duration or 0)} · {len(caps)} caption(s)"]
            info += [f"- {_md_escape(c)}" for c in caps[:10]]
            if rec.generated_caption:
                info.append(f"\nGenerated caption: *{_md_escape(rec.generated_caption)}*")
            if not sim.ok:
                return v, s, "\n".join(info) + note, None, _warn(sim.message)
            plot = similarity_plot(sim.timestamps, sim.scores, sim.best, duration=sim.duration or None)
            moment = (f"Best-matching moment: **{format_time(best_t)}** ({best_t:.2f} s), similarity "
                      f"{sim.best_score:.3f} over {len(sim.scores)} sampled frames.")
            return v, s, "\n".join(info) + note, plot, moment
        except Exception as e:
            log.exception("select failed")
            return hidden, hidden, _warn(f"Could not show this result: {type(e).__name__}: {e}"), None, ""

    def describe(video: str | None):
        """Describe an uploaded video: generated caption, ranked captions, similar library videos."""
        empty_tbl = None
        try:
            d = engine.describe(video)
        except Exception as e:
            log.exception("describe failed")
            return _warn(f"Describe failed: {type(e).__name__}: {e}"), "", None, empty_tbl, empty_tbl, []
        if not d.ok:
            return _warn(d.message), "", None, empty_tbl, empty_tbl, []
        status = f"Described a {d.duration:.1f} s video from {len(d.timestamps)} sampled frames in {d.seconds:.1f} s."
        if d.message:
            status += "\n\n" + _warn(d.message)
        gen = (f"**Generated caption:** {_md_escape(d.generated_caption)}" if d.generated_caption
               else f"*{_md_escape(d.captioner_note or 'No generated caption.')}*")
        strip = frame_strip(d.frames, height=120, columns=4) if d.frames is not None and len(d.frames) else None
        bank = [[c.caption, round(c.score, 4)] for c in d.bank]
        libc = [[c.caption, round(c.score, 4), c.source] for c in d.library_captions]
        return status, gen, strip, bank or empty_tbl, libc or empty_tbl, _gallery(d.similar)

    try:  # ZeroGPU on Spaces: only the handler that runs the video tower asks for a GPU
        import spaces  # type: ignore[import-not-found]

        describe = spaces.GPU(describe)
    except ImportError:
        pass

    def similarity(query: str, video_id: str) -> dict:
        """Similarity of a query to each sampled frame of one library video (by id), in time order."""
        sim = engine.frame_similarity(query, video_id)
        return {"ok": sim.ok, "message": sim.message, "video_id": sim.video_id, "timestamps": sim.timestamps,
                "scores": sim.scores, "best_time": sim.best_time, "best_score": sim.best_score}

    def library_info() -> dict:
        """Model spec and fingerprint, library size, index type, build settings and failures."""
        return engine.info()

    # ------------------------------------------------------------------ layout
    with gr.Blocks(title="Prompt Switch video search") as demo:
        gr.Markdown("# Prompt Switch video search\nSearch a video library by describing what happens, "
                    "or upload a clip to describe it.")
        gr.Markdown(banner_markdown(st), elem_id="banner")
        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                with gr.Row(equal_height=True):
                    query = gr.Textbox(label="Describe the video you are looking for", elem_id="query", scale=5,
                                       placeholder="e.g. " + example_queries(engine, 1)[0], max_lines=3)
                    k = gr.Slider(1, limits.max_k, value=min(limits.default_k, max(1, len(engine.library))), step=1,
                                  label="Number of results", elem_id="k", scale=2)
                    go = gr.Button("Search", variant="primary", elem_id="search-btn", scale=1)
                search_examples = gr.Column()
                status = gr.Markdown(label="status", elem_id="search-status")
                gallery = gr.Gallery(label="Results", elem_id="results", columns=5, allow_preview=False,
                                     object_fit="contain")
                state = gr.State({})
                with search_examples:
                    search_ex = gr.Examples([[q] for q in example_queries(engine)], inputs=[query],
                                            label="Example queries", cache_examples=False, elem_id="search-examples",
                                            api_name="fill_search_example", api_visibility="private")
                with gr.Row():
                    with gr.Column(scale=1):
                        video = gr.Video(label="Selected video", elem_id="result-video", visible=False,
                                         interactive=False, height=320, loop=True)
                        strip = gr.Image(label="Sampled frames", elem_id="result-strip", visible=False,
                                         interactive=False)
                        info = gr.Markdown(elem_id="result-info")
                    with gr.Column(scale=1):
                        plot = gr.Image(label="Query similarity over the sampled frames", elem_id="similarity-plot",
                                        interactive=False, format="png")
                        moment = gr.Markdown(elem_id="best-moment")
            with gr.Tab("Describe a video", id="describe"):
                with gr.Row():
                    with gr.Column(scale=1):
                        upload = gr.Video(label=f"Upload a video (up to {limits.max_upload_bytes / 2**20:.0f} MB, "
                                                f"{limits.max_video_seconds / 60:.0f} min)",
                                          sources=["upload"], include_audio=True, elem_id="upload")
                        describe_btn = gr.Button("Describe", variant="primary", elem_id="describe-btn")
                        samples = [str(p) for p in (engine.video_path(i) for i in range(min(len(engine.library), 200)))
                                   if p is not None][:4]
                        example_box = gr.Column()
                    with gr.Column(scale=1):
                        d_status = gr.Markdown(label="status", elem_id="describe-status")
                        generated = gr.Markdown(label="generated_caption", elem_id="generated-caption")
                        d_strip = gr.Image(label="Sampled frames", elem_id="upload-strip", interactive=False)
                bank_tbl = gr.Dataframe(headers=["caption", "score"], label="Caption bank matches",
                                        elem_id="bank-captions", interactive=False, wrap=True)
                lib_tbl = gr.Dataframe(headers=["caption", "score", "video"], label="Library caption matches",
                                       elem_id="library-captions", interactive=False, wrap=True)
                similar = gr.Gallery(label="Similar library videos", elem_id="similar", columns=6,
                                     allow_preview=False, object_fit="contain", height="auto")
                describe_ex = None
                if samples:
                    with example_box:
                        describe_ex = gr.Examples([[s] for s in samples], inputs=[upload],
                                                  label="Library videos to try",
                                                  cache_examples=False, api_name="fill_describe_example",
                                                  elem_id="describe-examples",
                                                  api_visibility="private")
            with gr.Tab("Library", id="library"):
                gr.Markdown(_library_markdown(engine, st), elem_id="library-info")

        # ------------------------------------------------------------------ events
        selection = [video, strip, info, plot, moment]
        gr.on([go.click, query.submit], search, inputs=[query, k], outputs=[gallery, status, state],
              api_name="search", concurrency_id="search").then(
            clear_selection, None, selection, api_name="clear_selection", api_visibility="private", queue=False)
        search_ex.load_input_event.then(
            search, inputs=[query, k], outputs=[gallery, status, state], api_name="run_search_example",
            api_visibility="private", concurrency_id="search").then(
            clear_selection, None, selection, api_name="clear_selection_example", api_visibility="private", queue=False)
        gallery.select(select, inputs=[state], outputs=[video, strip, info, plot, moment], api_name="select_result",
                       api_visibility="private", concurrency_id="search")
        gr.on([describe_btn.click, upload.upload], describe, inputs=[upload],
              outputs=[d_status, generated, d_strip, bank_tbl, lib_tbl, similar], api_name="describe",
              concurrency_limit=getattr(config, "describe_concurrency", 1), concurrency_id="describe")
        if describe_ex is not None:
            describe_ex.load_input_event.then(
                describe, inputs=[upload], outputs=[d_status, generated, d_strip, bank_tbl, lib_tbl, similar],
                api_name="run_describe_example", api_visibility="private", concurrency_id="describe",
                concurrency_limit=getattr(config, "describe_concurrency", 1))
        gr.api(similarity, api_name="similarity", concurrency_id="search")
        gr.api(library_info, api_name="library_info", queue=False)
        register_tools(engine)  # search_videos, describe_video: JSON for programs and MCP agents
    return demo


def launch_kwargs(config, st: Startup) -> dict[str, Any]:
    """Arguments for demo.launch(): size limit, theme without web fonts (works offline), CSS."""
    return dict(
        server_name=config.host,
        server_port=config.port,
        max_file_size=config.max_upload_bytes,
        show_error=True,
        theme=gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"]),
        css=CSS,
        footer_links=["api", "gradio"],
        ssr_mode=False,  # server-side rendering needs a recent Node.js; the page needs none
        mcp_server=bool(getattr(config, "mcp", False)),
    )
