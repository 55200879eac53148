"""The Gradio page, built per tab: Search, Describe a video, Library. Logic lives in app.engine,
the words in app.pages, the event handlers in app.handlers.

Event API (every event has an explicit api_name; callable with gradio_client):
- /search_videos (query: str, k: int) -> JSON text {"ok", "message", "query", "hits": [{rank, id, video, start,
  end, score, caption, thumbnail, ...}]} and /describe_video (video_id: str): see app.mcp (also MCP tools)
- /describe_upload (video: {"video": handle_file(path)}) -> {"ok", "message", "caption", "confidence",
  "nearest_score", "ranked_captions", "similar": [hits]}
- /similarity (query: str, video_id: str) -> {timestamps, scores, best_time, best_score}
- /library_info () -> model, fingerprint, videos, index, settings, failures
- /search and /describe: what the page itself shows (gallery and Markdown).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from app import pages
from app.components import LibraryGallery, LibraryImage, LibraryVideo
from app.config import AppConfig
from app.gpu import gpu_handler
from app.handlers import LIBRARY_GRID, Handlers
from app.mcp import register_tools
from app.startup import Startup

__all__ = ["build_demo", "launch_kwargs", "CSS", "banner"]

# Colours: text on white at >= 4.5:1 (WCAG AA); a focus ring that cannot be missed; a gallery of 1-2
# columns on a phone with captions under (not over) the thumbnails and no inner scrolling.
CSS = """
.gradio-container { max-width: 1200px !important; }
.gradio-container, .gradio-container .prose, .gradio-container label span { color: #1f2937; }
#banner { font-size: 0.92em; }
#banner p { margin: 0.2em 0; }
.gradio-container span[data-testid="block-info"], .gradio-container .label-wrap span { color: #1f2937 !important; }
footer, footer a, footer button { color: #374151 !important; }
:focus-visible, textarea:focus, input:focus { outline: 3px solid #1d4ed8 !important; outline-offset: 2px; }
.gallery-grid .caption-label, #results .caption-label, #similar .caption-label, #library-grid .caption-label {
  position: static !important; white-space: normal !important; overflow: visible !important;
  background: #ffffff !important; color: #111827 !important; text-overflow: clip !important;
  max-width: 100% !important; margin: 0 !important; padding: 2px 4px !important; font-size: 0.85em;
}
.gallery-grid .thumbnail-item, #results .thumbnail-item, #similar .thumbnail-item, #library-grid .thumbnail-item {
  flex-direction: column !important; height: auto !important; aspect-ratio: auto !important;
}
#results .grid-wrap, #similar .grid-wrap, #library-grid .grid-wrap {
  max-height: none !important; overflow: visible !important;
}
@media (max-width: 640px) {
  #results .grid-container, #similar .grid-container, #library-grid .grid-container {
    grid-template-columns: repeat(2, minmax(0, 1fr)) !important;
  }
  .gradio-container { padding: 4px !important; }
  #banner { font-size: 0.8em; }
}
"""

#: Moves the player into view and starts it (Gradio sets the start position from the handler).
SCROLL_AND_PLAY = """() => { let n = 0; const go = () => {
  const v = document.querySelector('#result-video video');
  if ((!v || !v.currentSrc) && n++ < 30) { setTimeout(go, 100); return; }
  const target = v || document.querySelector('#result-info');
  if (target) target.scrollIntoView({block: 'center', behavior: 'instant'});
  if (v) { v.muted = true; v.play().catch(() => {}); }
}; setTimeout(go, 150); }"""


def banner(st: Startup) -> str:
    lib = st.engine.library
    return pages.banner_markdown(st.model_spec, st.model_reason, lib.root.name, len(lib), st.library_reason,
                                 st.attempts, st.offline)


def _examples(st: Startup) -> list[str]:
    fallback = pages.SHAPES_EXAMPLES if st.model_spec.startswith("bundled:") else pages.GENERIC_EXAMPLES
    return pages.example_queries([r.captions for r in st.engine.library.records], fallback=fallback)


def _player(prefix: str) -> tuple[gr.Video, gr.Image, gr.Markdown]:
    video = LibraryVideo(label="Selected video", elem_id=f"{prefix}-video", visible=False, interactive=False,
                         height=320, loop=True, autoplay=True)
    strip = LibraryImage(label="Sampled frames", elem_id=f"{prefix}-strip", visible=False, interactive=False)
    return video, strip, gr.Markdown(elem_id=f"{prefix}-info")


def _search_tab(h: Handlers, gpu) -> gr.Gallery:
    limits, lib = h.engine.limits, h.engine.library
    examples = _examples(h.st)
    with gr.Row(equal_height=True):
        query = gr.Textbox(label="Describe the video you are looking for", elem_id="query", scale=5,
                           placeholder="e.g. " + examples[0], max_lines=3)
        k = gr.Slider(1, limits.max_k, value=min(limits.default_k, max(1, len(lib))), step=1,
                      label="Number of results", elem_id="k", scale=2, min_width=160)
        go = gr.Button("Search", variant="primary", elem_id="search-btn", scale=1, min_width=100)
    ex = gr.Examples([[q] for q in examples], inputs=[query], label="Example queries", cache_examples=False,
                     elem_id="search-examples", api_name="fill_search_example", api_visibility="private")
    first_status, first_state = h.first_screen()
    status = gr.Markdown(first_status, elem_id="search-status")
    gallery = LibraryGallery(label="Results", elem_id="results", columns=4, allow_preview=False,
                         object_fit="contain", height="auto")
    state = gr.State(first_state)
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            video, strip, info = _player("result")
        with gr.Column(scale=1, min_width=280):
            plot = gr.HTML(visible=False, elem_id="similarity-plot", label="Query similarity over the frames")
            moment = gr.Markdown(elem_id="best-moment")
            others = gr.Radio([], label="Other matching moments of this video (select one to play it)",
                              visible=False, elem_id="other-moments")
    selection = [video, strip, info, plot, moment, others]
    search = gpu(h.search)
    gr.on([go.click, query.submit], search, inputs=[query, k], outputs=[gallery, status, state],
          api_name="search", concurrency_id="search").then(
        h.clear_selection, None, selection, api_name="clear_selection", api_visibility="private", queue=False)
    ex.load_input_event.then(search, inputs=[query, k], outputs=[gallery, status, state],
                             api_name="run_search_example", api_visibility="private", concurrency_id="search").then(
        h.clear_selection, None, selection, api_name="clear_selection_example", api_visibility="private",
        queue=False)
    _wire_selection(h, gpu, gallery, state, selection, others)
    return gallery


def _wire_selection(h: Handlers, gpu, gallery: gr.Gallery, state: gr.State, selection: list, others: gr.Radio):
    gallery.select(gpu(h.select), inputs=[state], outputs=selection, api_name="select_result",
                   api_visibility="private", concurrency_id="search").then(
        None, None, None, js=SCROLL_AND_PLAY, api_visibility="private", queue=False)
    others.input(gpu(h.select_moment), inputs=[state, others], outputs=selection[:5], api_name="select_moment",
                 api_visibility="private", concurrency_id="search").then(
        None, None, None, js=SCROLL_AND_PLAY, api_visibility="private", queue=False)


def _describe_tab(h: Handlers, gpu, concurrency: int) -> None:
    limits = h.engine.limits
    with gr.Row():
        with gr.Column(scale=1, min_width=280):
            upload = gr.Video(label=f"Upload a video (up to {limits.max_upload_bytes / 2**20:.0f} MB, "
                                    f"{limits.max_video_seconds / 60:.0f} min)",
                              sources=["upload"], include_audio=True, elem_id="upload")
            btn = gr.Button("Describe", variant="primary", elem_id="describe-btn")
            samples = [str(p) for p in h.st.example_videos]
            ex = (gr.Examples([[s] for s in samples], inputs=[upload], label="Library videos to try",
                              cache_examples=False, api_name="fill_describe_example", elem_id="describe-examples",
                              api_visibility="private") if samples else None)
        with gr.Column(scale=1, min_width=280):
            status = gr.Markdown(elem_id="describe-status")
            generated = gr.Markdown(elem_id="generated-caption")
            strip = gr.Image(label="Sampled frames", elem_id="upload-strip", interactive=False)
    bank = gr.Dataframe(headers=["caption", "score"], label="Caption bank matches", elem_id="bank-captions",
                        interactive=False, wrap=True)
    libc = gr.Dataframe(headers=["caption", "score", "video"], label="Library caption matches",
                        elem_id="library-captions", interactive=False, wrap=True)
    similar = LibraryGallery(label="Similar library videos (select one to play it)", elem_id="similar", columns=4,
                         allow_preview=False, object_fit="contain", height="auto")
    similar_rows = gr.State([])
    with gr.Row():
        video, vstrip, info = _player("similar")
    api_out = gr.JSON(visible=False)
    api_btn = gr.Button(visible=False)
    outputs = [status, generated, strip, bank, libc, similar, similar_rows]
    describe = gpu(h.describe)
    gr.on([btn.click, upload.upload], describe, inputs=[upload], outputs=outputs, api_name="describe",
          concurrency_limit=concurrency, concurrency_id="describe")
    if ex is not None:
        ex.load_input_event.then(describe, inputs=[upload], outputs=outputs, api_name="run_describe_example",
                                 api_visibility="private", concurrency_id="describe", concurrency_limit=concurrency)
    api_btn.click(gpu(h.describe_upload), inputs=[upload], outputs=[api_out], api_name="describe_upload",
                  concurrency_id="describe", concurrency_limit=concurrency)
    similar.select(h.select_similar, inputs=[similar_rows], outputs=[video, vstrip, info],
                   api_name="select_similar", api_visibility="private")


def _library_tab(h: Handlers) -> gr.Gallery:
    shown = min(LIBRARY_GRID, len(h.engine.library))
    gr.Markdown(pages.library_summary_markdown(len(h.engine.library), shown, h.st.library_reason),
                elem_id="library-summary")
    grid = LibraryGallery(label="Library videos", elem_id="library-grid",
                      columns=5, allow_preview=False, object_fit="contain", height="auto")
    with gr.Row():
        video, strip, info = _player("browse")
    with gr.Accordion("Technical details (model, fingerprints, index, failures)", open=False,
                      elem_id="library-details"):
        gr.Markdown(pages.library_details_markdown(h.engine.info(), h.st.model_reason, h.st.library_reason,
                                                   h.st.attempts), elem_id="library-info")
    grid.select(h.select_library, None, [video, strip, info], api_name="select_library", api_visibility="private")
    return grid


def build_demo(st: Startup, config: Any = None, spaces: Any = None) -> gr.Blocks:
    """The page. Call gr.set_static_paths(st.example_videos) first (app.main.create_app does).

    spaces: the ZeroGPU `spaces` module (found automatically on a ZeroGPU Space; tests pass a stand-in).
    """
    h = Handlers(st)
    model = st.engine.model

    def gpu(fn):
        return gpu_handler(fn, model, spaces)

    ttl = int(getattr(config, "upload_ttl_s", AppConfig.upload_ttl_s))  # uploads expire: none is kept for good
    with gr.Blocks(title="Prompt Switch video search", delete_cache=(ttl, ttl)) as demo:
        gr.Markdown(pages.header_markdown(), elem_id="header")
        gr.Markdown(banner(st), elem_id="banner")
        with gr.Tabs():
            with gr.Tab("Search", id="search"):
                results = _search_tab(h, gpu)
            with gr.Tab("Describe a video", id="describe"):
                _describe_tab(h, gpu, getattr(config, "describe_concurrency", 1))
            with gr.Tab("Library", id="library"):
                grid = _library_tab(h)
        demo.load(h.page_galleries, None, [results, grid], api_name="page_galleries", api_visibility="private",
                  queue=False)
        gr.api(gpu(h.similarity), api_name="similarity", concurrency_id="search")
        gr.api(h.library_info, api_name="library_info", queue=False)
        register_tools(h.engine, st.media, gpu)  # search_videos, describe_video: JSON for programs and MCP agents
    return demo


def launch_kwargs(config, st: Startup) -> dict[str, Any]:
    """Arguments for demo.launch(): size limit, the library's files (app.media's route; Gradio's own file
    route serves only the Describe tab's example videos), theme without web fonts."""
    return dict(
        server_name=config.host,
        server_port=config.port,
        max_file_size=config.max_upload_bytes,
        allowed_paths=[str(p) for p in st.example_videos],
        app_kwargs={"routes": [st.media.route()]},
        show_error=False,  # handlers return their own one-line messages; Gradio's internals stay hidden
        theme=gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"],
                             font_mono=["ui-monospace", "monospace"]),
        css=CSS,
        footer_links=["api", "gradio"],
        ssr_mode=False,  # server-side rendering needs a recent Node.js; the page needs none
        mcp_server=bool(getattr(config, "mcp", False)),
    )
