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

    # Serve the library's thumbnails/posters and its own video files in place; nothing else.
    gr.set_static_paths([str(p) for p in st.static_dirs])
    demo = build_demo(st, config)
    demo.queue(default_concurrency_limit=config.search_concurrency, max_size=config.queue_size)
    return demo, st


def main(argv: list[str] | None = None) -> int:
    set_environment_defaults()  # first: on a Space it moves HF_HOME (and so the cache folder) to /data
    config = from_args(argv)  # before any heavy import, so --help is instant
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "urllib3", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from app.startup import StartupError

    if config.mcp:
        from app.mcp import mcp_missing

        if mcp_missing():
            print(f"[promptswitch] {mcp_missing()}", file=sys.stderr)
            return 2
    try:
        demo, st = create_app(config, progress=lambda m: print(f"[promptswitch] {m}", flush=True))
    except StartupError as e:
        print(f"[promptswitch] {e}", file=sys.stderr)
        return 2
    from app.ui import launch_kwargs

    demo.launch(**launch_kwargs(config, st))
    return 0
