"""The search engine behind the page: one loaded model, one library, no UI.

Everything a user can type or upload is checked here, so the web page, the HTTP API and the tests
all get the same clear messages. Bad input never raises: each result carries `ok` and a `message`.
The model and the library are given to the constructor, already loaded; nothing is ever reloaded
per request (text embeddings of recent queries are cached instead).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from app.batcher import MicroBatcher
from app.config import Limits
from app.moments import Timeline, timeline
from app.tokens import QueryTokenizer
from model.files import atomic_save
from model.text_fast import FastTextError, fast_text_wanted
from video.frames import time_order
from video.segments import DEFAULT_MAX_SEGMENT

log = logging.getLogger(__name__)

__all__ = [
    "Limits", "Hit", "SearchResult", "FrameSimilarity", "RankedCaption", "Description", "SearchEngine",
    "clean_query", "QueryError",
]

#: Characters that mean nothing to a search and can break encoders or terminals. Control characters
#: (category Cc) become spaces; lone surrogates (Cs, only reachable through JSON escapes) and
#: non-characters are dropped. Format characters (Cf) such as the zero-width joiner inside emoji stay.
_WS = re.compile(r"\s+")
#: Bidirectional overrides can make a query display differently from what is searched.
_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class QueryError(ValueError):
    """A query that cannot be searched; str(e) is the message for the user."""


@dataclass
class Hit:
    rank: int  # 1-based
    index: int  # row in the library
    id: str
    score: float  # cosine similarity
    caption: str  # the caption shown with the thumbnail
    captions: list[str]
    generated_caption: str | None
    thumbnail: Path | None  # strip of sampled frames (library file)
    poster: Path | None  # one frame (library file)
    video: Path | None  # the video file, only when it lies in a served folder
    duration: float
    file_id: str = ""  # the source file's id (a row is one segment of it; version-1 rows: the whole file)
    start: float = 0.0  # seconds: the segment (moment) this row covers
    end: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.caption} · {self.score:.3f}"


@dataclass
class SearchResult:
    ok: bool
    message: str  # for the user: why nothing was searched, or notes (e.g. the query was cut)
    query: str = ""  # the text that was actually searched
    k: int = 0
    hits: list[Hit] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class FrameSimilarity:
    ok: bool
    message: str
    video_id: str = ""
    timestamps: list[float] = field(default_factory=list)  # sorted, seconds
    scores: list[float] = field(default_factory=list)  # cosine, same order
    best: int | None = None  # index into timestamps/scores
    duration: float = 0.0

    @property
    def best_time(self) -> float | None:
        return None if self.best is None else self.timestamps[self.best]

    @property
    def best_score(self) -> float | None:
        return None if self.best is None else self.scores[self.best]


@dataclass
class RankedCaption:
    caption: str
    score: float
    source: str  # "caption bank" or the library video id


@dataclass
class MomentCaption:
    """One segment of a long upload and what it shows (generated, or the closest caption-bank line)."""

    start: float
    end: float
    caption: str
    source: str  # "generated", "caption bank", "library" (closest library caption) or "none"
    score: float | None = None  # cosine similarity, for a caption-bank line


@dataclass
class Description:
    ok: bool
    message: str
    generated_caption: str | None = None
    captioner_note: str = ""
    bank: list[RankedCaption] = field(default_factory=list)
    library_captions: list[RankedCaption] = field(default_factory=list)
    similar: list[Hit] = field(default_factory=list)
    confident: bool = True
    """False when the upload is far from every library video: its captions and matches are guesses."""
    nearest: float | None = None  # cosine similarity of the closest library video
    frames: np.ndarray | None = None  # uint8 [T, H, W, 3], in time order
    timestamps: list[float] = field(default_factory=list)
    duration: float = 0.0
    seconds: float = 0.0
    timeline: list[MomentCaption] = field(default_factory=list)
    """A long upload's segments in time order, each with its caption (empty for a short clip)."""


# ------------------------------------------------------------------------------------ queries


def clean_query(text: Any, max_chars: int = 1000) -> tuple[str, list[str]]:
    """(cleaned query, notes for the user). Raises QueryError when nothing searchable is left."""
    if text is None:
        text = ""
    if not isinstance(text, str):
        text = str(text)
    notes: list[str] = []
    total = len(text.strip())
    # Cut before scanning: a 10M-character query must cost no more than a long one. Control characters
    # removed below can only shorten what is left, so 4x the limit always leaves enough to read.
    text = text[: 4 * max_chars]
    removed = 0
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            if ch not in "\t\n\r":
                removed += 1
            out.append(" ")
        elif cat in ("Cs", "Cn") or ch in _BIDI:
            removed += 1
        else:
            out.append(ch)
    if removed:
        notes.append(f"Removed {removed} control or invalid character{'s' if removed != 1 else ''} from the query.")
    text = _WS.sub(" ", unicodedata.normalize("NFC", "".join(out))).strip()
    if not text:
        raise QueryError("The query is empty: type what you are looking for, e.g. \"a dog runs on the beach\".")
    if len(text) > max_chars or total > 4 * max_chars:
        notes.append(f"The query had {total:,} characters; only the first {max_chars:,} were read.")
        text = text[:max_chars].rstrip()
    return text, notes


# ------------------------------------------------------------------------------------ engine


class SearchEngine:
    """Search a library by text, measure a query against each sampled frame, describe an upload.

    model: a loaded model (see model.load_model); library: an opened precompute Library built with
    that model (checked here: a library of another model raises ModelMismatchError).
    served_files: the exact video files the web server may serve; served_dirs: folders it may serve
    (tests, scripts). A video that is neither is never returned (the page shows its frame strip instead).
    """

    def __init__(
        self,
        model,
        library,
        *,
        caption_bank: list[str] | None = None,
        limits: Limits | None = None,
        served_dirs: list[Path] | None = None,
        served_files: list[Path] | None = None,
        cache_dir: Path | None = None,
        fast_text: str | None = "auto",
        batch_window: float = 0.002,
    ):
        library.check_model(model.fingerprint, getattr(model, "spec", None))
        self.model = model
        self.library = library
        self.limits = limits or Limits()
        self.served_dirs = [Path(d).resolve() for d in (served_dirs or [])]
        self.served_files = {Path(f).resolve() for f in (served_files or [])}
        self.notes: list[str] = []  # start-up notes about this engine (shown on the Library tab)
        self._familiar: float | None = None
        self._posters: np.ndarray | None = None
        self._poster_floor = 0.5
        self._lock = threading.Lock()  # one video-tower call at a time: torch already uses every core
        self._text_lock = threading.Lock()  # text encoding never waits behind a describe
        self._cache_lock = threading.Lock()
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._text_cache_size = 2048
        self._cache_dir = Path(cache_dir) if cache_dir else None
        import torch

        self._torch = torch
        self._tokens = QueryTokenizer(model)  # batches for the fast path: the model's own tokenize, memoised
        self._tokenizer = self._tokens if self._tokens.available else None
        cfg = getattr(model, "config", None)
        self._context = int(getattr(cfg, "context_length", 77) if cfg is not None else 77)
        self._row_files = functools.lru_cache(maxsize=4096)(self._files_of_row)
        self.text_path = self._enable_fast_text(fast_text_wanted(fast_text or "off"))
        # Concurrent queries are encoded together: one forward pass for all that arrived meanwhile.
        self.query_batcher: MicroBatcher[str, np.ndarray] = MicroBatcher(
            self._encode_queries, window=batch_window, max_batch=32, name="query-batcher")
        self.num_frames = int(getattr(getattr(model, "config", None), "num_frames", 0) or library.num_frames)

        # caption bank and library captions, encoded once
        self.bank: list[str] = _unique(caption_bank or [])
        self.bank_emb = self._encode_many(self.bank, cache_name="bank") if self.bank else None
        lib_caps: list[tuple[str, str]] = []
        seen: set[str] = set()
        for rec in library.records:
            for c in ([*rec.captions] + ([rec.generated_caption] if rec.generated_caption else [])):
                c = c.strip()
                if c and c not in seen:
                    seen.add(c)
                    lib_caps.append((c, rec.id))
        if len(lib_caps) > self.limits.max_library_captions:
            self.notes.append(
                f"The library has {len(lib_caps):,} distinct captions; the Describe tab ranks the first "
                f"{self.limits.max_library_captions:,} of them."
            )
            lib_caps = lib_caps[: self.limits.max_library_captions]
        self.library_captions = lib_caps
        self.library_caption_emb = (
            self._encode_many([c for c, _ in lib_caps], cache_name="library") if lib_caps else None
        )
        if len(library):  # load the index now, not inside the first request
            library.search(np.zeros((1, library.dim), np.float32), 1)

    # -------------------------------------------------------------- info
    @property
    def model_spec(self) -> str:
        return str(getattr(self.model, "spec", "?"))

    @property
    def fingerprint(self) -> str:
        return str(self.model.fingerprint)

    @property
    def has_captioner(self) -> bool:
        return bool(getattr(self.model, "has_trained_captioner", False))

    def info(self) -> dict[str, Any]:
        """What the Library tab shows (JSON-serialisable)."""
        lib = self.library
        m = lib.manifest
        index = m.get("index", {})
        return {
            "model": self.model_spec,
            "model_fingerprint": self.fingerprint,
            "captioning_head": "trained" if self.has_captioner else "none (no generated captions)",
            "library": str(lib.root),
            "library_model": lib.model_spec,
            "library_fingerprint": lib.fingerprint,
            "videos": len(lib),
            "frames_per_video": lib.num_frames,
            "dim": lib.dim,
            "index": index if isinstance(index, dict) else {"type": str(index)},
            "settings": m.get("settings", {}),
            "created": m.get("created") or m.get("built_at") or m.get("updated"),
            "source_root": str(lib.source_root) if lib.source_root else None,
            "failures": lib.failures,
            "caption_bank": len(self.bank),
            "library_captions": len(self.library_captions),
            "text_encoder": self.text_path,
            "notes": list(self.notes),
        }

    # -------------------------------------------------------------- text
    def _enable_fast_text(self, backend: str | None) -> str:
        """Build the checked fast CPU text encoder when asked and possible; the text path in words."""
        self._fast_text = None
        if backend is None or not hasattr(self.model, "fast_text_encoder"):
            return "exact (open_clip text tower over the real tokens)"
        try:
            self._fast_text = self.model.fast_text_encoder(backend, cache_dir=self._cache_dir)
        except FastTextError as e:
            log.info("text encoder: exact path: %s", e)
            return f"exact ({e})"
        return f"fast CPU path ({self._fast_text.backend}), checked against the exact one"

    def _encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        """The batcher's forward: each distinct text once, results in the callers' order."""
        unique = list(dict.fromkeys(texts))
        emb = self._encode_text(unique)
        row = {t: emb[i] for i, t in enumerate(unique)}
        return [row[t] for t in texts]

    def _encode_many(self, texts: list[str], cache_name: str, batch: int = 256) -> np.ndarray:
        """Encode a fixed list of texts; cached on disk per model + text list (if a cache dir is set)."""
        cache = None
        if self._cache_dir is not None:
            h = hashlib.sha256("\n".join(texts).encode("utf-8", "replace")).hexdigest()[:16]
            cache = self._cache_dir / "text-emb" / f"{cache_name}-{self.fingerprint}-{h}.npy"
            if cache.is_file():
                try:
                    arr = np.load(cache)
                    if arr.shape == (len(texts), self.library.dim):
                        return arr
                except (OSError, ValueError):
                    pass
        out = []
        for i in range(0, len(texts), batch):
            out.append(self._encode_text(texts[i : i + batch]))
        arr = np.concatenate(out).astype(np.float32)
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                atomic_save(cache, lambda tmp: np.save(tmp, arr), suffix=".npy")
            except OSError as e:
                log.warning("could not cache text embeddings at %s: %s", cache, e)
        return arr

    def _encode_text(self, texts: list[str]) -> np.ndarray:
        with self._text_lock, self._torch.inference_mode():
            if self._fast_text is not None:
                emb = self._fast_text.encode(self._tokens.tokens(texts, self._context))
            else:
                emb = self.model.encode_text(texts)
        return emb.detach().to("cpu", self._torch.float32).numpy()

    def _fit_tokens(self, text: str) -> tuple[str, str | None]:
        """Cut text to what the text encoder reads; (text, note or None)."""
        if self._tokenizer is None:
            return text, None
        try:
            ids = self._tokenizer.encode(text)
        except Exception:  # a tokenizer quirk must not fail the search: the model truncates anyway
            return text, None
        if not ids:
            raise QueryError("Nothing searchable is left in the query after cleaning it; try some words.")
        room = max(1, self._context - 2)  # start and end tokens
        if len(ids) <= room:
            return text, None
        cut = self._tokenizer.decode(ids[:room]).strip()
        return cut or text, (
            f"The query is longer than the model reads ({len(ids)} tokens; it reads {room}): "
            f"searched for the first part only: \"{_short(cut, 120)}\"."
        )

    def embed_query(self, query: Any) -> tuple[np.ndarray, str, list[str]]:
        """(L2-normalised embedding [D], searched text, notes). Raises QueryError."""
        text, notes = clean_query(query, self.limits.max_query_chars)
        text, note = self._fit_tokens(text)
        if note:
            notes.append(note)
        key = text
        with self._cache_lock:
            emb = self._text_cache.get(key)
            if emb is not None:
                self._text_cache.move_to_end(key)
        if emb is None:
            emb = self.query_batcher.submit(text)
            with self._cache_lock:
                self._text_cache[key] = emb
                while len(self._text_cache) > self._text_cache_size:
                    self._text_cache.popitem(last=False)
        return emb, text, notes

    def _clamp_k(self, k: Any) -> tuple[int, str | None]:
        lim = self.limits
        try:
            kk = int(float(k)) if k is not None and str(k).strip() != "" else lim.default_k
        except (TypeError, ValueError):
            return lim.default_k, f"The number of results {k!r} is not a number; showing {lim.default_k}."
        if kk < 1:
            return 1, None
        if kk > lim.max_k:
            return lim.max_k, f"At most {lim.max_k} results are shown."
        return kk, None

    # -------------------------------------------------------------- search
    def search(self, query: Any, k: Any = None) -> SearchResult:
        """Top-k library videos for a text query (cosine similarity of normalised embeddings)."""
        import time

        t0 = time.perf_counter()
        kk, k_note = self._clamp_k(k)
        if len(self.library) == 0:
            return SearchResult(False, "The library is empty: there is nothing to search.", k=kk)
        try:
            emb, text, notes = self.embed_query(query)
        except QueryError as e:
            return SearchResult(False, str(e), k=kk)
        if k_note:
            notes.append(k_note)
        unknown, known = self.unknown_words(text)
        if unknown and not known:
            notes.append(f"This model knows none of these words ({', '.join(unknown[:8])}): the results below "
                         "are whatever it ranks highest, not matches.")
        elif unknown:
            notes.append(f"This model does not know: {', '.join(unknown[:8])}; it ranked by the other words.")
        scores, idx = self.library.search(emb[None, :], kk)
        hits = [self._hit(r + 1, int(i), float(s)) for r, (s, i) in enumerate(zip(scores[0], idx[0])) if i >= 0]
        return SearchResult(True, " ".join(notes), query=text, k=kk, hits=hits, seconds=time.perf_counter() - t0)

    def _files_of_row(self, i: int) -> tuple[Path | None, Path | None, Path | None]:
        """(thumbnail, poster, video) of row i: a few file-system calls each, so remembered (_row_files)."""
        rec = self.library.records[i]
        return self.library.media_path(rec.thumbnail), self.library.media_path(rec.poster), self.video_path(i)

    def _hit(self, rank: int, i: int, score: float) -> Hit:
        rec = self.library.records[i]
        caps = [c for c in rec.captions if c and c.strip()]
        caption = caps[0] if caps else (Path(rec.path).name if rec.path else rec.id)  # never a generated one
        thumbnail, poster, video = self._row_files(i)
        return Hit(
            rank=rank, index=i, id=rec.id, score=score, caption=caption, captions=caps,
            generated_caption=rec.generated_caption, thumbnail=thumbnail, poster=poster,
            video=video, duration=float(rec.duration or 0.0),
            file_id=rec.video, start=float(rec.start), end=float(rec.end or rec.duration or 0.0),
        )

    def hit_of(self, i: int) -> Hit:
        """Library row i as a hit without a query (rank = position, score 0): for browsing."""
        return self._hit(i + 1, i, 0.0)

    def video_path(self, i: int) -> Path | None:
        """The video file of row i if it exists and lies inside a served folder."""
        p = self.library.path_of(i)
        if p is None:
            return None
        if p in self.served_files:  # the usual case, without resolving symlinks again
            return p
        rp = p.resolve()
        if rp in self.served_files or any(rp.is_relative_to(d) for d in self.served_dirs):
            return p
        return None

    def row_of(self, video: Any) -> int | None:
        """Library row of a video id or row number (None if unknown)."""
        if isinstance(video, (int, np.integer)) and not isinstance(video, bool):
            return int(video) if 0 <= int(video) < len(self.library) else None
        try:
            return self.library.row(str(video))
        except KeyError:
            return None

    def frame_similarity(self, query: Any, video: Any) -> FrameSimilarity:
        """Similarity of the query to each sampled frame of one library video, in time order."""
        i = self.row_of(video)
        if i is None:
            return FrameSimilarity(False, f"No video {video!r} in the library.")
        try:
            emb, _, notes = self.embed_query(query)
        except QueryError as e:
            return FrameSimilarity(False, str(e), video_id=self.library.ids[i])
        rec = self.library.records[i]
        fe = np.asarray(self.library.frame_emb[i], dtype=np.float32)
        scores = fe @ emb
        ts = list(rec.timestamps)[: len(scores)]
        if len(ts) < len(scores):  # no timestamps recorded: spread the frames over the duration
            ts = list(np.linspace(0, rec.duration or len(scores), len(scores), endpoint=False))
        order = time_order(ts)
        # A short clip repeats its last frame: keep one point per timestamp (the best one).
        t_sorted, s_sorted = [], []
        for j in order:
            t, s = float(ts[j]), float(scores[j])
            if t_sorted and abs(t - t_sorted[-1]) < 1e-6:
                s_sorted[-1] = max(s_sorted[-1], s)
            else:
                t_sorted.append(t)
                s_sorted.append(s)
        best = int(np.argmax(s_sorted)) if s_sorted else None
        return FrameSimilarity(True, " ".join(notes), video_id=rec.id, timestamps=t_sorted, scores=s_sorted,
                               best=best, duration=float(rec.duration or 0.0))

    def segments_of(self, file_id: str) -> int:
        """How many segments (rows) the library holds for a source file."""
        return len(self.library.rows_of_video(file_id))

    def video_timeline(self, query: Any, row: int, marked: Sequence[int] = ()) -> tuple[Timeline | None, str]:
        """The query's similarity over every segment of row's video (None and a message if it cannot)."""
        try:
            emb, _, notes = self.embed_query(query)
        except QueryError as e:
            return None, str(e)
        rec = self.library.records[row]
        rows = self.library.rows_of_video(rec.video) or [row]
        per = []
        for r in rows:
            other = self.library.records[r]
            scores = np.asarray(self.library.frame_emb[r], dtype=np.float32) @ emb
            per.append((other.start, other.end or other.duration, list(other.timestamps)[: len(scores)],
                        scores.tolist()))
        want = set(int(m) for m in marked) | {row}
        return timeline(per, [r in want for r in rows], rows.index(row)), " ".join(notes)

    # -------------------------------------------------------------- describe
    def check_upload(self, path: Any) -> tuple[Path | None, str]:
        """(path, "") for a file worth decoding, else (None, message)."""
        if path is None or (isinstance(path, str) and not path.strip()):
            return None, "No video was uploaded: choose a video file first."
        if isinstance(path, dict):  # a FileData-like dict from an API client
            inner = path["video"] if isinstance(path.get("video"), dict) else path
            path = inner.get("path")
            if not path:
                return None, "No video was uploaded: choose a video file first."
        p = Path(str(path))
        if not p.is_file():
            return None, "The uploaded file is missing on the server (upload it again)."
        size = p.stat().st_size
        if size == 0:
            return None, f"\"{p.name}\" is empty (0 bytes): it is not a video."
        if size > self.limits.max_upload_bytes:
            return None, (f"\"{p.name}\" is {size / 2**20:.1f} MB; the limit is "
                          f"{self.limits.max_upload_bytes / 2**20:.0f} MB. Upload a shorter or smaller clip.")
        return p, ""

    def _decode_limits(self):
        from video.decode import DecodeLimits

        lim = self.limits
        return DecodeLimits(max_seconds=lim.max_video_seconds, max_frames=lim.max_video_frames,
                            max_pixels=lim.max_video_pixels, timeout=lim.decode_seconds)

    def describe_moments(self, p: Path) -> tuple[list[MomentCaption], str]:
        """A long upload cut into segments (one decoding pass, in a killable process) and each one captioned."""
        from app.isolation import LimitExceeded, WorkerFailed, run_limited
        from video.segments import SegmentOptions, decode_segments

        lim = self.limits
        try:
            segs = run_limited(decode_segments, p, SegmentOptions(), self.num_frames,
                               int(self.model.config.num_prompts), timeout_s=lim.decode_seconds + 5,
                               memory_bytes=lim.decode_memory_mb * 2**20,
                               kwargs={"side": 112, "limits": self._decode_limits()})
        except (LimitExceeded, WorkerFailed) as e:
            return [], f"Its moments were not found ({_without_path(str(e), p)})."
        if len(segs) < 2:
            return [], ""
        torch = self._torch
        x = torch.stack([self.model.preprocess_frames(s.frames) for s in segs]).to(self.model.device)
        with self._lock, torch.inference_mode():
            v, _ = self.model.encode_video(x)
            generated = self.model.generate_captions(x, max_len=20, num_beams=1) if self.has_captioner else None
        v = v.detach().to("cpu", torch.float32).numpy()
        out = []
        for i, s in enumerate(segs):
            if generated is not None:
                out.append(MomentCaption(s.start, s.end, generated[i].strip(), "generated"))
                continue
            top = (_top(self.bank_emb, v[i], 1, lambda j: (self.bank[j], "caption bank"))
                   or _top(self.library_caption_emb, v[i], 1, lambda j: (self.library_captions[j][0], "library")))
            caption, score, source = top[0] if top else ("(no caption to compare with)", None, "none")
            out.append(MomentCaption(s.start, s.end, caption, source, score))
        return out, ""

    def _decode_upload(self, p: Path) -> tuple[Any, str]:
        """(frames, "") or (None, one line for the user): decoded in a killable process within the limits."""
        from app.isolation import LimitExceeded, WorkerFailed, run_limited
        from video.decode import read_frames

        lim = self.limits
        bounds = self._decode_limits()
        name = p.name
        try:
            # PyAV, not decord, for files from strangers: it can be interrupted between frames.
            fr = run_limited(read_frames, p, self.num_frames, timeout_s=lim.decode_seconds + 5,
                             memory_bytes=lim.decode_memory_mb * 2**20,
                             kwargs={"backend": "pyav", "limits": bounds})
            return fr, ""
        except LimitExceeded as e:
            return None, f"\"{name}\" was not decoded: {e}. Upload a shorter or smaller clip."
        except WorkerFailed as e:
            reason = _without_path(e.message, p)
            if e.kind == "VideoLimitError":
                return None, f"\"{name}\" is over the upload limits: {reason}. Upload a shorter or smaller clip."
            if e.kind != "VideoReadError":
                log.warning("decoding an upload failed: %s", e)
                return None, f"\"{name}\" could not be read as a video ({e.kind})."
            return None, f"\"{name}\" could not be read as a video: {reason}."

    def describe(self, video_path: Any) -> Description:
        """Caption an uploaded video (if the model can), rank captions, find similar library videos."""
        import time

        t0 = time.perf_counter()
        p, msg = self.check_upload(video_path)
        if p is None:
            return Description(False, msg)
        fr, msg = self._decode_upload(p)
        if fr is None:
            return Description(False, msg)
        duration = float(fr.info.duration or 0.0)
        torch = self._torch
        x = self.model.preprocess_frames(fr.frames).unsqueeze(0)
        dev = getattr(self.model, "device", None)
        if dev is not None:
            x = x.to(dev)
        generated, note = None, ""
        with self._lock, torch.inference_mode():
            v, _ = self.model.encode_video(x)
            if self.has_captioner:
                try:
                    generated = self.model.generate_captions(x, max_len=20, num_beams=3)[0].strip() or None
                except Exception as e:
                    log.exception("caption generation failed")
                    note = f"Caption generation failed ({type(e).__name__})."
            else:
                note = "This model has no trained captioning head, so no caption is generated."
        v = v.detach().to("cpu", torch.float32).numpy()[0]

        bank = _top(self.bank_emb, v, self.limits.num_bank, lambda j: (self.bank[j], "caption bank"))
        libc = _top(self.library_caption_emb, v, self.limits.num_library_captions, lambda j: self.library_captions[j])
        similar: list[Hit] = []
        if len(self.library):
            scores, idx = self.library.search(v[None, :], self.limits.num_similar)
            similar = [self._hit(r + 1, int(i), float(s)) for r, (s, i) in enumerate(zip(scores[0], idx[0])) if i >= 0]
        notes = []
        if self.bank_emb is None:
            notes.append("No caption bank is loaded, so only the library's captions are ranked.")
        order = time_order(fr.timestamps)
        seen_t, keep = set(), []
        for j in order:
            if round(fr.timestamps[j], 3) not in seen_t:
                seen_t.add(round(fr.timestamps[j], 3))
                keep.append(j)
        nearest = similar[0].score if similar else None
        timeline, later = self.describe_moments(p) if duration > DEFAULT_MAX_SEGMENT else ([], "")
        return Description(
            True, " ".join([*notes, later]).strip(), generated_caption=generated, captioner_note=note,
            confident=self.is_familiar(nearest, fr.frames), nearest=nearest,
            bank=[RankedCaption(c, s, src) for c, s, src in bank],
            library_captions=[RankedCaption(c, s, src) for c, s, src in libc],
            similar=similar, frames=fr.frames[keep], timestamps=[float(fr.timestamps[j]) for j in keep],
            duration=duration, seconds=time.perf_counter() - t0, timeline=timeline,
        )


    # -------------------------------------------------------------- what the model knows
    def unknown_words(self, text: str) -> tuple[list[str], bool]:
        """(words of the query outside the model's caption vocabulary, whether any content word is known).

        Only models with a restricted caption vocabulary (the bundled moving-shapes model) can say; for
        others every word counts as known.
        """
        vocab = getattr(getattr(self.model, "config", None), "caption_vocab", None)
        if not vocab or self._tokenizer is None:
            return [], True
        known_ids = set(int(i) for i in vocab)
        unknown, content_known = [], False
        for word in re.findall(r"[^\W\d_]+", text.lower()):
            try:
                ids = self._tokenizer.encode(word)
            except Exception:  # noqa: BLE001 - a tokenizer quirk only loses the notice
                continue
            if ids and all(i in known_ids for i in ids):
                content_known = content_known or word not in _FUNCTION_WORDS
            elif word not in unknown:
                unknown.append(word)
        return unknown, content_known

    def is_familiar(self, nearest: float | None, frames: np.ndarray) -> bool:
        """Is an upload close to something the model knows? (Else its captions and matches are guesses.)

        A model trained on a narrow domain (a restricted caption vocabulary: the bundled shapes model)
        maps any video into that domain, so its embeddings cannot tell; there the upload's colours are
        compared with the library's posters instead. Every model: its embedding must be about as close
        to a library video as library videos are to each other.
        """
        if nearest is None or nearest < self.familiar_threshold():
            return False
        if not getattr(getattr(self.model, "config", None), "caption_vocab", None):
            return True
        posters = self._poster_histograms()
        if posters is None:
            return True
        h = np.mean([_colour_hist(f) for f in frames], axis=0)
        return float(np.minimum(posters, h).sum(axis=1).max()) >= self._poster_floor

    def _poster_histograms(self) -> np.ndarray | None:
        """Colour histograms of up to 256 library posters (None without posters), and their own floor."""
        if self._posters is None:
            from PIL import Image

            hists = []
            n = len(self.library)
            for i in np.unique(np.linspace(0, max(0, n - 1), min(n, 256)).astype(int)):
                path = self.library.media_path(self.library.records[int(i)].poster)
                try:
                    with Image.open(path) as im:
                        hists.append(_colour_hist(np.asarray(im.convert("RGB"))))
                except (OSError, TypeError, AttributeError):
                    continue
            self._posters = np.stack(hists) if hists else np.zeros((0, 64), np.float32)
            if len(hists) >= 2:
                own = np.minimum(self._posters[:, None], self._posters[None]).sum(-1)
                np.fill_diagonal(own, 0)
                self._poster_floor = float(np.percentile(own.max(axis=1), 5)) - 0.25
        return self._posters if len(self._posters) else None

    def familiar_threshold(self) -> float:
        """Below this similarity to its closest library video, an upload is "far from anything known".

        The 5th percentile of the library's own nearest-neighbour similarities (a sample of up to 256
        videos), minus a margin; a fixed 0.5 for a library of one video.
        """
        if self._familiar is None:
            n = len(self.library)
            if n < 2:
                self._familiar = 0.5
            else:
                rows = np.linspace(0, n - 1, min(n, 256)).astype(int)
                q = np.asarray(self.library.video_emb[rows], dtype=np.float32)
                scores, _ = self.library.search(q, 2)
                self._familiar = float(np.percentile(scores[:, 1], 5)) - 0.05
        return self._familiar


#: Words that say nothing about what is seen: knowing only these is knowing nothing.
_FUNCTION_WORDS = frozenset("a an the and or of on in at to is are with from by for its it this that".split())


def _without_path(message: str, path: Path) -> str:
    """A decoder's message without the server's path of the upload (clients never see server paths)."""
    text = message.replace(str(path), path.name)
    if text.startswith(path.name + ": "):
        text = text[len(path.name) + 2 :]
    return re.sub(r"\s*\(\[Errno [^)]*\)\)?", "", text).rstrip(" .")


def _colour_hist(frame: np.ndarray) -> np.ndarray:
    """A 64-bin colour histogram (4 levels per channel), summing to 1: a model-free look at a frame."""
    a = np.asarray(frame, dtype=np.uint8)[..., :3] // 64
    idx = a[..., 0].astype(np.int64) * 16 + a[..., 1].astype(np.int64) * 4 + a[..., 2]
    h = np.bincount(idx.ravel(), minlength=64).astype(np.float32)
    return h / max(1.0, float(h.sum()))


def _top(emb: np.ndarray | None, v: np.ndarray, n: int, item) -> list[tuple[str, float, str]]:
    if emb is None or not len(emb) or n <= 0:
        return []
    s = emb @ v
    n = min(n, len(s))
    best = np.argpartition(-s, n - 1)[:n]
    best = best[np.argsort(-s[best], kind="stable")]
    out = []
    for j in best:
        cap, src = item(int(j))
        out.append((cap, float(s[j]), src))
    return out


def _unique(items: list[str]) -> list[str]:
    seen, out = set(), []
    for x in items:
        x = x.strip()
        if x and x not in seen:
            seen.add(x)
            out.append(x)
    return out


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"
