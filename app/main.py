"""Entry point: `python app.py [--model SPEC] [--library DIR] [--videos DIR] [--host H] [--port P]`."""

from __future__ import annotations

import logging
import sys

from app.config import AppConfig, from_args, set_environment_defaults


def create_app(config: AppConfig, progress=print):
    """(demo, startup): load the model and library once, then build the page (not launched)."""
    set_environment_defaults()
    from app.gpu import spaces_module

    spaces_module()  # on ZeroGPU, `spaces` must be imported before torch touches CUDA
    from app.startup import start

    st = start(config, progress=progress)
    import gradio as gr

    from app.ui import build_demo

    # The library's files are served by app.media's route; Gradio's own file route serves only the
    # Describe tab's example videos, in place.
    gr.set_static_paths([str(p) for p in st.example_videos])
    demo = build_demo(st, config)
    demo.queue(default_concurrency_limit=config.search_concurrency, max_size=config.queue_size)
    return demo, st


def main(argv: list[str] | None = None) -> int:
    set_environment_defaults()  # first: on a Space it moves HF_HOME (and so the cache folder) to /data
    config = from_args(argv)  # before any heavy import, so --help is instant
    _quiet_logging()
    from app.startup import StartupError

    if config.mcp:
        from app.mcp import mcp_missing

        if mcp_missing():
            print(f"[promptswitch] {mcp_missing()}", file=sys.stderr)
            return 2
    def say(m: str) -> None:
        print(f"[promptswitch] {m}", flush=True)

    try:
        if config.videos:  # indexing may take minutes: a page that shows its progress is up meanwhile
            from app.progress import serve_while_starting

            demo, st = serve_while_starting({"server_name": config.host, "server_port": config.port},
                                            lambda log: create_app(config, progress=log), echo=say)
        else:
            demo, st = create_app(config, progress=say)
    except StartupError as e:
        print(f"[promptswitch] {e}", file=sys.stderr)
        return 2
    from app.ui import launch_kwargs

    demo.launch(**launch_kwargs(config, st))
    return 0


class _ExpectedFallbacks(logging.Filter):
    """Drop third-party chatter about failures start-up already reports in one line of its own.

    open_clip logs "ERROR ... Failed to download weights" on the root logger before the app falls back;
    faiss's loader logs the ModuleNotFoundError of every CPU variant it tries.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not ("open_clip" in record.pathname and record.levelno < logging.CRITICAL)


def _quiet_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "huggingface_hub", "faiss", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ExpectedFallbacks())
