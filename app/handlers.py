"""What each event of the page does: engine results turned into component values.

Every handler catches its own failures and returns a message for the page (never a bare "Error").
The JSON handlers (search_videos, describe_video, similarity, library_info) are the structured API.
"""

from __future__ import annotations

import base64
import functools
import io
import logging
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from app import pages
from app.engine import Description, Hit, SearchEngine
from app.mcp import hit_json, root_url
from app.moments import Moment, VideoHits, format_span, group_by_video, moment_label
from app.render import frame_strip, similarity_plot
from app.startup import Startup

log = logging.getLogger(__name__)

__all__ = ["Handlers", "browser_playable", "FIRST_SCREEN", "LIBRARY_GRID"]

BROWSER_CODECS = {"h264", "vp8", "vp9", "av1", "theora"}
BROWSER_SUFFIXES = {".mp4", ".m4v", ".webm", ".ogg", ".ogv"}
FIRST_SCREEN = 12
"""Library videos shown on the Search tab before the first query."""
LIBRARY_GRID = 200
"""Library videos shown on the Library tab."""


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
    except Exception:  # noqa: BLE001 - unreadable means: show the frame strip instead
        return False


def _placeholder() -> Image.Image:
    return Image.new("RGB", (160, 120), (210, 210, 210))


def _hidden() -> dict:
    return gr.update(value=None, visible=False)


def _png_html(img: Image.Image, alt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    alt = alt.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
    return f'<img class="similarity-img" src="data:image/png;base64,{data}" alt="{alt}" style="width:100%">'


def _others(g: VideoHits) -> list[tuple[int, float, float, float]]:
    """A video's other matching moments for the page state: (row, start, end, score), time order."""
    return [(m.row, m.start, m.end, m.score) for m in g.others]


def _no_others() -> dict:
    return gr.update(choices=[], value=None, visible=False)


def _others_update(others: list) -> dict:
    """The other matching moments of the selected video as choices (label: time range, value: row)."""
    if not others:
        return _no_others()
    choices = [(moment_label(Moment(int(r), a, b, sc)), int(r)) for r, a, b, sc in others]
    return gr.update(choices=choices, value=None, visible=True)


class Handlers:
    """The page's event handlers over one engine (bound methods are what ui wires to events)."""

    def __init__(self, st: Startup):
        self.st = st
        self.engine: SearchEngine = st.engine  # type: ignore[assignment]

    # ------------------------------------------------------------------ galleries
    def gallery(self, hits: list[Hit], with_score: bool = True, spans: list[str] | None = None,
                root: str = "") -> list[tuple[Any, str]]:
        """(image, label) per hit; with root (the app's URL) the images are app.media URLs, which
        Gradio passes through as they are (a file path costs it a check against every served file)."""
        items = []
        for n, h in enumerate(hits):
            img = h.poster or h.thumbnail
            label = f"{h.rank}. {h.label}" if with_score else h.caption
            if spans and spans[n]:
                label = f"{label} · {spans[n]}"
            items.append((self._link(img, root) or _placeholder(), label))
        return items

    def library_hits(self, n: int) -> list[Hit]:
        """The first n library videos as hits (rank = position, no score)."""
        return [self.engine.hit_of(i) for i in range(min(n, len(self.engine.library)))]

    def first_screen(self) -> tuple[str, dict]:
        """The Search tab before a query: its status line and state (the gallery comes with page_galleries)."""
        hits = self.library_hits(FIRST_SCREEN)
        status = pages.first_screen_status(len(self.engine.library), len(hits))
        return status, {"query": None, "rows": [h.index for h in hits], "scores": [None] * len(hits)}

    def page_galleries(self, request: gr.Request = None) -> tuple[list, list]:
        """The first screen's and the Library tab's galleries, filled when a page loads (their URLs
        need the address the page was opened at)."""
        grid = self.gallery(self.library_hits(max(FIRST_SCREEN, LIBRARY_GRID)), with_score=False,
                            root=root_url(request))
        return grid[:FIRST_SCREEN], grid[:LIBRARY_GRID]

    # ------------------------------------------------------------------ search tab
    def search(self, query: str, k: float, request: gr.Request = None) -> tuple[list, str, dict]:
        """Search the library by text; returns the gallery of results and a status line."""
        try:
            res = self.engine.search(query, k)
        except Exception as e:  # noqa: BLE001 - a bug must not take the page down: say so and keep serving
            log.exception("search failed")
            return [], pages.warn(f"Search failed: {type(e).__name__}: {e}"), {}
        if not res.ok:
            return [], pages.warn(res.message), {}
        groups = group_by_video(res.hits, {h.file_id: self.engine.segments_of(h.file_id) for h in res.hits})
        by_row = {h.index: h for h in res.hits}
        best = [by_row[g.best.row] for g in groups]
        for rank, h in enumerate(best, 1):
            h.rank = rank
        state = {"query": res.query, "rows": [h.index for h in best], "scores": [h.score for h in best],
                 "matched": [h.index for h in res.hits], "others": [_others(g) for g in groups]}
        spans = [format_span(g.best.start, g.best.end) if g.segments > 1 else "" for g in groups]
        return (self.gallery(best, spans=spans, root=root_url(request)),
                pages.search_status(len(best), res.query, res.seconds, res.message), state)

    def clear_selection(self):
        return _hidden(), _hidden(), "", gr.update(value="", visible=False), "", _no_others()

    def select(self, state: dict, evt: gr.SelectData, request: gr.Request = None):
        """Show the selected result: play it from its best moment, plot the query over its frames."""
        try:
            rows = (state or {}).get("rows") or []
            i = evt.index if isinstance(evt.index, int) else (evt.index[0] if evt.index else 0)
            if not rows or not 0 <= i < len(rows):
                return (*self.clear_selection()[:2], "Search first, then select a result.",
                        gr.update(value="", visible=False), "", _no_others())
            others = (state.get("others") or [[]] * len(rows))[i]
            return (*self._show(rows[i], state.get("query"), state["scores"][i], state.get("matched"),
                                root=root_url(request)), _others_update(others))
        except Exception as e:  # noqa: BLE001
            log.exception("select failed")
            return (_hidden(), _hidden(), pages.warn(f"Could not show this result: {type(e).__name__}: {e}"),
                    gr.update(value="", visible=False), "", _no_others())

    def select_moment(self, state: dict, row: Any, request: gr.Request = None):
        """Another matching moment of the selected video: play from its start, mark it on the timeline."""
        try:
            if row is None or not (state or {}).get("query"):
                return (gr.update(), gr.update(), gr.update(), gr.update(), gr.update())
            row = int(row)
            score = next((m[3] for o in state.get("others", []) for m in o if m[0] == row), None)
            return self._show(row, state["query"], score, state.get("matched"), root=root_url(request))
        except Exception as e:  # noqa: BLE001
            log.exception("moment select failed")
            return (_hidden(), _hidden(), pages.warn(f"Could not show this moment: {type(e).__name__}: {e}"),
                    gr.update(value="", visible=False), "")

    def _link(self, path: Path | None, root: str) -> str | None:
        """What the page's player and strip are given: the file's app.media URL (its path without a root)."""
        if path is None:
            return None
        return self.st.media.url(path, root) if root else str(path)

    def _player(self, row: int, start: float, root: str = "") -> tuple[dict, dict, str]:
        """(video update, frame-strip update, what is shown) for library row `row`."""
        rec = self.engine.library.records[row]
        video = self.engine.video_path(row)
        if video is not None and browser_playable(str(video)):
            return (gr.update(value=self._link(video, root), visible=True, playback_position=float(start)),
                    _hidden(), "video")
        strip = self._link(self.engine.library.media_path(rec.thumbnail) or self.engine.library.media_path(rec.poster),
                           root)
        s = gr.update(value=strip, visible=strip is not None)
        return _hidden(), s, "missing" if video is None else "unplayable"

    def _show(self, row: int, query: str | None, score: float | None, matched: list[int] | None = None,
              root: str = ""):
        rec = self.engine.library.records[row]
        if query and self.engine.segments_of(rec.video) > 1:
            return self._show_moment(row, query, score, matched or [], root)
        sim = self.engine.frame_similarity(query, row) if query else None
        best_t = sim.best_time if sim is not None and sim.ok else None
        v, s, shown = self._player(row, best_t or 0.0, root)
        info = pages.result_markdown(rec.video, score, rec.duration or 0.0, [c for c in rec.captions if c],
                                     rec.generated_caption, shown)
        if sim is None:
            return v, s, info, gr.update(value="", visible=False), ""
        if not sim.ok:
            return v, s, info, gr.update(value="", visible=False), pages.warn(sim.message)
        img = similarity_plot(sim.timestamps, sim.scores, sim.best, duration=sim.duration or None)
        alt = pages.similarity_alt_text(query, sim.timestamps, sim.scores, sim.best)
        moment = pages.best_moment_markdown(best_t, sim.best_score, len(sim.scores))
        return v, s, info, gr.update(value=_png_html(img, alt), visible=True), moment

    def _show_moment(self, row: int, query: str, score: float | None, matched: list[int], root: str = ""):
        """A moment of a long video: play from its start; the plot is the whole video's timeline."""
        rec = self.engine.library.records[row]
        v, s, shown = self._player(row, rec.start, root)
        span = format_span(rec.start, rec.end)
        info = pages.result_markdown(f"{rec.video} · {span}", score, rec.duration or 0.0,
                                     [c for c in rec.captions if c], rec.generated_caption, shown)
        tl, message = self.engine.video_timeline(query, row, matched)
        if tl is None:
            return v, s, info, gr.update(value="", visible=False), pages.warn(message)
        img = similarity_plot(tl.timestamps, tl.scores, tl.best, duration=rec.duration or None,
                              spans=tl.spans, marked=tl.marked)
        alt = pages.similarity_alt_text(query, tl.timestamps, tl.scores, tl.best)
        moment = pages.moment_markdown(span, sum(tl.marked), len(tl.spans))
        return v, s, info, gr.update(value=_png_html(img, alt), visible=True), moment

    def select_library(self, evt: gr.SelectData, request: gr.Request = None):
        """A video chosen on the Library tab (or among Describe's similar videos): play it, list its captions."""
        try:
            row = int(evt.index if isinstance(evt.index, int) else evt.index[0])
            return self._show(row, None, None, root=root_url(request))[:3]
        except Exception as e:  # noqa: BLE001
            log.exception("library select failed")
            return _hidden(), _hidden(), pages.warn(f"Could not show this video: {type(e).__name__}: {e}")

    def select_similar(self, rows: list[int], evt: gr.SelectData, request: gr.Request = None):
        try:
            i = int(evt.index if isinstance(evt.index, int) else evt.index[0])
            return self._show(rows[i], None, None, root=root_url(request))[:3]
        except Exception as e:  # noqa: BLE001
            log.exception("similar select failed")
            return _hidden(), _hidden(), pages.warn(f"Could not show this video: {type(e).__name__}: {e}")

    # ------------------------------------------------------------------ describe tab
    def describe(self, video: str | None, request: gr.Request = None):
        """Describe an uploaded video: generated caption, ranked captions, similar library videos."""
        try:
            d = self.engine.describe(video)
        except Exception as e:  # noqa: BLE001
            log.exception("describe failed")
            return pages.warn(f"Describe failed: {type(e).__name__}: {e}"), "", None, None, None, [], []
        if not d.ok:
            return pages.warn(d.message), "", None, None, None, [], []
        status = pages.describe_status(d.duration, len(d.timestamps), d.seconds, d.message)
        gen = pages.generated_markdown(d.generated_caption, d.captioner_note, d.confident, d.nearest)
        if d.timeline:
            gen += "\n\n" + pages.timeline_markdown(d.timeline)
        strip = frame_strip(d.frames, height=120, columns=4) if d.frames is not None and len(d.frames) else None
        bank = [[c.caption, round(c.score, 4)] for c in d.bank] or None
        libc = [[c.caption, round(c.score, 4), c.source] for c in d.library_captions] or None
        similar = self.gallery(d.similar, root=root_url(request))
        return status, gen, strip, bank, libc, similar, [h.index for h in d.similar]

    # ------------------------------------------------------------------ structured API
    def describe_upload(self, video: Any, request: gr.Request = None) -> dict[str, Any]:
        """Describe an uploaded video: {"ok", "message", "caption", "confidence", "ranked_captions", "similar"}."""
        try:
            d = self.engine.describe(video)
        except Exception as e:  # noqa: BLE001
            log.exception("describe_upload failed")
            d = Description(False, f"Describe failed: {type(e).__name__}")
        ranked = sorted([*d.bank, *d.library_captions], key=lambda c: -c.score)
        return {
            "ok": d.ok, "message": d.message, "caption": d.generated_caption,
            "confidence": ("high" if d.confident else "low") if d.ok else None, "nearest_score": d.nearest,
            "ranked_captions": [{"caption": c.caption, "score": round(c.score, 6), "source": c.source}
                                for c in ranked],
            "similar": [hit_json(self.engine, h, self.st.media.linker(root_url(request)), None) for h in d.similar],
            "moments": [{"start": m.start, "end": m.end, "caption": m.caption, "source": m.source,
                         "score": m.score} for m in d.timeline],
        }

    def similarity(self, query: str, video_id: str) -> dict:
        """Similarity of a query to each sampled frame of one library video (by id), in time order."""
        try:
            sim = self.engine.frame_similarity(query, video_id)
        except Exception as e:  # noqa: BLE001
            log.exception("similarity failed")
            return {"ok": False, "message": f"Similarity failed: {type(e).__name__}"}
        return {"ok": sim.ok, "message": sim.message, "video_id": sim.video_id, "timestamps": sim.timestamps,
                "scores": sim.scores, "best_time": sim.best_time, "best_score": sim.best_score}

    def library_info(self) -> dict:
        """Model spec and fingerprint, library size, index type, build settings and failures."""
        return self.engine.info()
