"""A page that is up at once while a --videos folder is indexed, then hands its port to the real page.

Indexing a folder can take minutes; without this the address answers nothing until it ends. The
page shows the start-up messages as they come (every second) and reloads itself into the real
page once that one is up on the same port.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

__all__ = ["StartupLog", "serve_while_starting", "TITLE"]

TITLE = "Prompt Switch video search: starting"
READY = "ready"

#: Reloads once the real page answers (its config has another title), polling every second.
_RELOAD_WHEN_READY = """(state) => { if (state !== '%s' || window.__psReloading) return; window.__psReloading = true;
  const poll = () => fetch('config', {cache: 'no-store'}).then(r => r.json())
    .then(c => { if (c.title && c.title !== '%s') location.reload(); else setTimeout(poll, 1000); })
    .catch(() => setTimeout(poll, 1000));
  setTimeout(poll, 1000); }""" % (READY, TITLE)


class StartupLog:
    """Start-up messages, shared between the loading thread and the progress page."""

    def __init__(self, echo: Callable[[str], None] | None = None):
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self.echo = echo
        self.ready = False

    def __call__(self, message: str) -> None:
        with self._lock:
            self._lines.append(message)
        if self.echo is not None:
            self.echo(message)

    def markdown(self, last: int = 8) -> str:
        with self._lock:
            lines = self._lines[-last:]
        body = "\n".join(f"- {line}" for line in lines) or "- starting ..."
        head = ("**Ready: opening the page ...**" if self.ready
                else "**Indexing your videos.** The search page appears here when it is done.")
        return f"{head}\n\n{body}"


def progress_demo(startup_log: StartupLog):
    """The waiting page: the latest start-up messages, refreshed every second."""
    import gradio as gr

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown("# Prompt Switch video search")
        text = gr.Markdown(startup_log.markdown(), elem_id="startup-progress")
        state = gr.Textbox(visible=False)
        timer = gr.Timer(1.0)
        timer.tick(lambda: (startup_log.markdown(), READY if startup_log.ready else ""), None, [text, state],
                   api_visibility="private", queue=False, show_progress="hidden")
        state.change(None, [state], None, js=_RELOAD_WHEN_READY, api_visibility="private")
    return demo


def serve_while_starting(launch: dict[str, Any], build: Callable[[StartupLog], Any],
                         echo: Callable[[str], None] | None = None, handover_seconds: float = 2.0):
    """Serve the progress page on launch's host and port while build(log) runs; return build's result.

    The page is closed before returning, so the caller can launch the real page on the same port.
    """
    startup_log = StartupLog(echo)
    page = progress_demo(startup_log)
    page.launch(server_name=launch.get("server_name"), server_port=launch.get("server_port"),
                prevent_thread_lock=True, show_error=False, ssr_mode=False, quiet=True)
    try:
        result = build(startup_log)
        startup_log.ready = True
        time.sleep(handover_seconds)  # let open pages see "ready" before the port changes hands
        return result
    finally:
        page.close(verbose=False)
