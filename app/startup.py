"""Resolve what the app serves: which model, which library, and why.

The order of attempts lives here and only here:

- models: the configured one (default DEFAULT_MODEL), then FALLBACK_MODELS, unless --no-fallback;
- libraries, for the model that loaded: --library (a folder or hf-hub:org/dataset[@rev]), then one
  built from --videos, then the model's own default (the bundled moving-shapes library for the
  bundled model, the sample clips in assets/videos for any other). A library built with another
  model is never served: when its videos are at hand, a new one is built for the model in use
  (kept under the cache folder).

Every attempt that fails leaves a line saying why, and the page shows them in its banner.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from app.config import BUNDLED_LIBRARY, SAMPLE_VIDEOS, AppConfig
from app.media import MediaFiles
from precompute.library import MANIFEST
from video.files import is_inside, is_video_name

log = logging.getLogger(__name__)

__all__ = ["FALLBACK_MODELS", "Startup", "StartupError", "start", "model_candidates", "resolve_hub_library",
           "library_model", "video_files"]

#: Tried in order after the configured model fails to load (offline, not cached, ...).
FALLBACK_MODELS: tuple[str, ...] = ("bundled:moving-shapes", "random:tiny")

Progress = Callable[[str], None]


class StartupError(RuntimeError):
    """Nothing could be served; the message lists every attempt and why it failed."""


@dataclass
class Startup:
    """What start() loaded, and the reasons, for the page banner and the Library tab."""

    engine: object  # app.engine.SearchEngine
    model_spec: str
    model_reason: str
    library_root: Path
    library_reason: str
    attempts: list[str] = field(default_factory=list)
    """One line per model/library that could not be used, with the reason."""
    offline: bool = False
    video_files: list[Path] = field(default_factory=list)
    """The video files the page may play (the library's own, nothing else in their folders)."""
    media_files: list[Path] = field(default_factory=list)
    """The library's thumbnails and posters (exact files)."""
    seconds: float = 0.0
    build_log: list[str] = field(default_factory=list)

    @property
    def served_files(self) -> list[Path]:
        """Every file the web server may serve from the library (exact files, no folders)."""
        return self.media_files + list(self.video_files)

    @functools.cached_property
    def example_videos(self) -> list[Path]:
        """Up to four of the library's playable files: the Describe tab's examples (Gradio serves these)."""
        engine, found = self.engine, []
        for i in range(min(len(engine.library), 200)):  # type: ignore[attr-defined]
            p = engine.video_path(i)  # type: ignore[attr-defined]
            if p is not None and p not in found:
                found.append(p)
            if len(found) == 4:
                break
        return found

    @functools.cached_property
    def media(self) -> MediaFiles:
        """The served files by key, for the page's URLs (app.media)."""
        return MediaFiles(self.served_files)

    @property
    def fallback(self) -> bool:
        return bool(self.attempts)


def _say(progress: Progress | None, msg: str) -> None:
    if progress is not None:
        progress(msg)
    else:
        log.info(msg)


# ------------------------------------------------------------------------------------ network


def _hub_needed(config: AppConfig, first_model: str | None = None) -> bool:
    specs = [first_model or config.model_spec, config.library or ""]
    return any(s.startswith(("clip:", "hf-hub:")) for s in specs)


# ------------------------------------------------------------------------------------ models


def model_candidates(config: AppConfig, library_spec: str | None = None) -> list[str]:
    """The configured model (or the one the library names), then the fallbacks, in the order tried."""
    out = [library_spec or config.model_spec]
    if config.fallback:
        out += [s for s in FALLBACK_MODELS if s not in out]
    return out


def _short_reason(e: BaseException, limit: int = 300) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _device(config: AppConfig) -> str:
    """The device the model loads on; on ZeroGPU the CPU (app.gpu moves it inside each GPU handler)."""
    from app.gpu import on_zero_gpu
    from model.device import resolve_device

    if on_zero_gpu() and config.device == "auto":
        return "cpu"
    return resolve_device(config.device)


# ------------------------------------------------------------------------------------ libraries


def resolve_hub_library(ref: str) -> Path:
    """hf-hub:org/dataset[@rev] -> local folder of the downloaded dataset snapshot (LibraryError offline)."""
    from model.hub import hub_offline, parse_hub_spec, quick_network_failures
    from precompute.library import LibraryError

    parsed = parse_hub_spec(ref)
    if parsed is None:
        raise LibraryError(f"{ref!r}: expected hf-hub:<org>/<dataset>[@revision]")
    repo_id, revision = parsed
    quick_network_failures()
    try:
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(repo_id, repo_type="dataset", revision=revision))
    except Exception as e:
        why = ("no network and it is not in the local cache"
               if hub_offline() else "the Hub could not be reached or the dataset does not exist")
        raise LibraryError(
            f"could not download the library dataset {repo_id}" + (f"@{revision}" if revision else "")
            + f" ({why}; cache HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}): {_short_reason(e)}"
        ) from None
    if (path / MANIFEST).is_file():
        return path
    found = sorted(p.parent for p in path.glob(f"*/{MANIFEST}"))
    if len(found) == 1:
        return found[0]
    raise LibraryError(f"dataset {repo_id} has no library (manifest.json) at its root"
                       + (f" and {len(found)} in subfolders: {', '.join(p.name for p in found)}" if found else ""))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:40] or "videos"


def cached_library_path(config: AppConfig, source: Path, model) -> Path:
    """Where the app keeps the library it builds from `source` for `model` (one per source and model)."""
    p = Path(source).expanduser().resolve()
    h = hashlib.sha1(str(p).encode()).hexdigest()[:8]
    name = p.parent.name if p.is_file() else p.name
    return config.cache_dir / "libraries" / f"{_slug(name)}-{h}-{model.fingerprint[:12]}"


def _progress_printer(progress: Progress | None, label: str):
    state = {"t": 0.0}

    def cb(done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if total <= 0:
            _say(progress, f"building {label}: {message}")
        elif done >= total or now - state["t"] >= 2.0:
            state["t"] = now
            _say(progress, f"building {label}: {done}/{total} videos" + (f" ({message})" if message else ""))

    return cb


def _build(source: Path, out: Path, model, progress: Progress | None, label: str, device: str,
           overwrite: bool = False):
    """Index `source` into the library at `out` (new, resumed, or updated with new/changed files only).

    Returns (opened library, BuildReport). An up-to-date library costs milliseconds.
    Raises ModelMismatchError if `out` holds a library of another model (unless overwrite).
    """
    from precompute import build_library
    from precompute.library import LibraryError, open_library
    from precompute.settings import BuildSettings

    spec = getattr(model, "spec", "the model")
    _say(progress, f"indexing {source} with {spec} into {out} (new or changed videos only)")
    t0 = time.perf_counter()
    settings = BuildSettings(frames=int(model.config.num_frames), device=device, progress_bar=False,
                             overwrite=overwrite)
    report = build_library(source, out, model, settings, progress=_progress_printer(progress, label))
    if report.exit_code != 0 or report.total == 0:
        raise LibraryError(f"no video of {source} could be indexed ({report.failed} failed)")
    if not report.up_to_date:
        _say(progress, f"indexed {report.indexed} videos into {out} ({report.total} in all, {report.failed} failed) "
                       f"in {time.perf_counter() - t0:.1f}s")
    return open_library(out), report


def _freshness(report) -> str:
    if report.up_to_date or (report.indexed == 0 and report.removed == 0):
        return "indexed earlier, up to date"
    if report.skipped_unchanged or report.removed:
        return f"updated: {report.indexed} new or changed videos indexed now"
    return "indexed now"


def _has_manifest(p: Path) -> bool:
    return (p / MANIFEST).is_file()


def _source_available(lib) -> Path | None:
    src = getattr(lib, "source_root", None)
    if src is not None and Path(src).is_dir() and any(lib.path_of(i) is not None for i in range(min(len(lib), 50))):
        spec = lib.manifest.get("source")  # the annotation file or folder it was built from
        if spec and (lib.root / spec).exists() and is_inside(lib.root / spec, src):
            return lib.root / spec  # relative to the library (a portable one), or absolute
        return Path(src)
    return None


class _LibraryContext:
    """What the library steps share: the settings, the loaded model, where to report."""

    def __init__(self, config: AppConfig, model, device: str, progress: Progress | None, attempts: list[str],
                 configured_root: Path | None):
        self.config, self.model, self.device, self.progress = config, model, device, progress
        self.attempts, self.configured_root = attempts, configured_root
        self.spec = model.spec

    def trusted_roots(self, root: Path) -> list[Path]:
        """The configured folders, plus a local library's own recorded video folder unless it is a system or
        hidden one; a Hub dataset (a stranger's files) is trusted with nothing outside its own folder."""
        import json

        from app.config import acceptable_video_folder
        from precompute.library import recorded_source_root

        roots = self.config.trusted_roots(root)
        from_hub = root == self.configured_root and (self.config.library or "").startswith("hf-hub:")
        if not from_hub and _has_manifest(root):
            try:
                recorded = recorded_source_root(root, json.loads((root / MANIFEST).read_text(encoding="utf-8")))
            except (OSError, ValueError):
                recorded = None
            if recorded is not None and acceptable_video_folder(recorded):
                roots.append(recorded)
        return roots

    def open_library(self, root: Path):
        """A library whose videos are trusted only inside the trusted folders, its index checked now."""
        from precompute.library import open_library

        lib = open_library(root, allowed_roots=self.trusted_roots(root))
        lib.check_index()  # a missing or damaged index is a start-up message, never a failed search later
        return lib

    def open_checked(self, root: Path):
        lib = self.open_library(root)
        lib.check_model(self.model.fingerprint, self.spec)
        return lib

    def index_into_cache(self, source: Path, label: str):
        """Index source into the app's cache folder for this model (our folder: rebuilt if damaged)."""
        from precompute.library import LibraryError

        out = cached_library_path(self.config, source, self.model)
        try:
            return _build(source, out, self.model, self.progress, label, self.device)
        except LibraryError as e:
            _say(self.progress, f"{out}: {_short_reason(e)}; rebuilding it")
            return _build(source, out, self.model, self.progress, label, self.device, overwrite=True)


def _library_with_videos(ctx: _LibraryContext, root: Path, ref: str):
    """--library DIR --videos DIR: keep the user's library up to date with their folder."""
    from precompute.library import LibraryError, ModelMismatchError

    videos = ctx.config.videos
    if not videos.is_dir():
        raise LibraryError(f"--videos {videos}: no such folder")
    try:
        lib, rep = _build(videos, root, ctx.model, ctx.progress, "library", ctx.device)
        return lib, f"your library {root.name!r} of {videos.name!r} ({_freshness(rep)})"
    except ModelMismatchError as e:
        ctx.attempts.append(f"Library {ref} is for another model ({_short_reason(e)}); "
                            f"{videos} was indexed again for {ctx.spec} in the cache folder.")
        lib, rep = ctx.index_into_cache(videos, "library")
        return lib, f"your videos folder {videos.name!r} ({_freshness(rep)})"


def _from_configured_library(ctx: _LibraryContext):
    """Step 1: --library (a folder, or a dataset on the Hub, resolved once by start())."""
    from precompute.library import LibraryError, ModelMismatchError

    ref, root = ctx.config.library, ctx.configured_root
    if not ref or root is None:
        return None
    try:
        if ctx.config.videos and not ref.startswith("hf-hub:"):
            return _library_with_videos(ctx, root, ref)
        if not _has_manifest(root):
            raise LibraryError(f"{root}: not a library (no manifest.json)")
        try:
            return ctx.open_checked(root), f"the library you configured ({ref})"
        except ModelMismatchError:
            lib = ctx.open_library(root)
            src = _source_available(lib)  # None when its recorded folder is not one the operator configured
            if src is None:
                raise
            ctx.attempts.append(f"Library {ref} was built with model {lib.model_spec!r}, not {ctx.spec!r}: "
                                f"its videos ({src}) were indexed again for {ctx.spec}.")
            lib2, rep = ctx.index_into_cache(src, "library")
            return lib2, f"the videos of {ref}, indexed for {ctx.spec} ({_freshness(rep)})"
    except (LibraryError, OSError, ValueError) as e:
        ctx.attempts.append(f"Could not use library {ref}: {_short_reason(e)}")
    return None


def _from_videos(ctx: _LibraryContext):
    """Step 2: --videos, "point it at your folder and search it"."""
    from precompute.library import LibraryError

    src = ctx.config.videos
    if not src:
        return None
    try:
        if not src.is_dir():
            raise LibraryError(f"{src}: no such folder")
        lib, rep = ctx.index_into_cache(src, "library")
        return lib, f"your videos folder {src.name!r} ({_freshness(rep)})"
    except (LibraryError, OSError, ValueError) as e:
        ctx.attempts.append(f"Could not index videos folder {src}: {_short_reason(e)}")
    return None


def _default_library(ctx: _LibraryContext):
    """Step 3: the model's own default (the bundled library, or the sample clips)."""
    from precompute.library import LibraryError

    if ctx.spec == "bundled:moving-shapes":
        if not _has_manifest(BUNDLED_LIBRARY):
            ctx.attempts.append(f"The bundled library {BUNDLED_LIBRARY} is missing (a broken checkout: "
                                "`git checkout assets/` restores it).")
            return None
        try:
            return ctx.open_checked(BUNDLED_LIBRARY), "the moving-shapes library bundled with this model"
        except LibraryError as e:
            ctx.attempts.append(f"Bundled library {BUNDLED_LIBRARY.name}: {_short_reason(e)}")
            return None
    found = SAMPLE_VIDEOS.glob("*") if SAMPLE_VIDEOS.is_dir() else []
    if not any(is_video_name(p) for p in found):
        ctx.attempts.append(f"No sample clips found in {SAMPLE_VIDEOS}.")
        return None
    try:
        lib, rep = ctx.index_into_cache(SAMPLE_VIDEOS, "sample library")
        return lib, f"the {len(lib)} sample clips in assets/videos ({_freshness(rep)})"
    except (LibraryError, OSError, ValueError) as e:
        ctx.attempts.append(f"Could not index the sample clips: {_short_reason(e)}")
    return None


def _obtain_library(ctx: _LibraryContext):
    """(library, why) for ctx.model, trying each step in order; (None, "") when none worked.

    With --no-fallback, a configured --library or --videos that cannot be used ends the start-up.
    """
    for step in (_from_configured_library, _from_videos, _default_library):
        got = step(ctx)
        if got is not None:
            return got
        configured = ctx.config.library if step is _from_configured_library else ctx.config.videos
        if configured and not ctx.config.fallback:
            raise StartupError(f"{ctx.attempts[-1]} (--no-fallback: not falling back to another library)")
    return None, ""


def attach_folder_captions(lib) -> int:
    """Fill in captions from a captions.json ({file name or relative path: [captions]}) beside the videos.

    For libraries built from a plain folder whose builder did not read that file. Only records without
    captions are touched, in memory. Returns how many records got captions.
    """
    import json

    src = getattr(lib, "source_root", None)
    if src is None or not (Path(src) / "captions.json").is_file():
        return 0
    try:
        table = json.loads((Path(src) / "captions.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    if not isinstance(table, dict):
        return 0
    n = 0
    for rec in lib.records:
        if rec.captions:
            continue
        caps = table.get(rec.id) or table.get(Path(rec.path).as_posix()) or table.get(Path(rec.path).name)
        if isinstance(caps, str):
            caps = [caps]
        if isinstance(caps, list) and caps:
            rec.captions = [str(c) for c in caps if str(c).strip()]
            n += 1
    return n


def media_files(lib, videos: list[Path]) -> list[Path]:
    """The thumbnails and posters of the library's rows (refused rows excluded), as the library names them.

    Exact files, never the folders: a library from a stranger may hold anything else beside them.
    videos: video_files(lib) (both lists hold absolute, normalised paths, as the library names them).
    """
    return sorted(lib.allowed_files() - set(videos))


def untrusted_source_note(lib) -> str | None:
    """A line for the banner when the library's recorded video folder was not trusted (nothing is played)."""
    recorded = lib.manifest.get("source_root") or lib.manifest.get("source_root_relative")
    if not recorded or lib.source_root is not None:
        return None
    return (f"The videos of library {lib.root.name!r} are not played: the folder it names ({recorded}) is not "
            "one this app was configured with. Start with --video-root DIR (or --videos DIR) to allow it.")


def video_files(lib) -> list[Path]:
    """The library's own video files that exist here: the only videos the page may play.

    Exact files, never their folders: a folder may hold other files (notes, private clips) that were
    never indexed.
    """
    refused = getattr(lib, "refused", {})
    out = []
    for i in range(len(lib)):
        p = None if i in refused else lib.path_of(i)
        if p is not None and is_video_name(p):  # a record naming notes.txt or a key file is never served
            out.append(Path(os.path.abspath(p)))
    return out


def read_caption_bank(path: Path) -> list[str]:
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def _go_offline_if_needed(config: AppConfig, progress: Progress | None, first_model: str | None = None) -> bool:
    """Probe the Hub once when the settings need it; True when the app runs from the local cache."""
    if not _hub_needed(config, first_model):
        return False
    from app.network import go_offline_if_unreachable
    from model.hub import hub_offline

    preset = hub_offline()
    offline = go_offline_if_unreachable()
    if offline and not preset:
        _say(progress, "the Hugging Face Hub is unreachable: using the local cache only (HF_HUB_OFFLINE=1)")
    return offline


def _configured_library_root(config: AppConfig, attempts: list[str]) -> Path | None:
    """--library as a local folder (a Hub dataset is downloaded or found in the cache), once per start."""
    from precompute.library import LibraryError

    if not config.library:
        return None
    try:
        if config.library.startswith("hf-hub:"):
            return resolve_hub_library(config.library)
        return Path(config.library).expanduser()
    except (LibraryError, OSError, ValueError) as e:
        attempts.append(f"Could not use library {config.library}: {_short_reason(e)}")
        return None


def library_model(root: Path | None) -> str | None:
    """The model spec a library's manifest names (None when unreadable): what --library alone loads."""
    import json

    if root is None or not _has_manifest(root):
        return None
    try:
        spec = json.loads((root / MANIFEST).read_text(encoding="utf-8")).get("model")
    except (OSError, ValueError):
        return None
    return spec.strip() if isinstance(spec, str) and spec.strip() else None


def _reason(spec: str, first: bool, config: AppConfig, from_library: bool) -> str:
    if not first:
        why = "the fallback model"
    elif from_library:
        why = "the model named in the library's manifest"
    else:
        why = "the model you configured" if config.model_explicit else "the default model"
    return why


def start(config: AppConfig, progress: Progress | None = print) -> Startup:
    """Load a model and a library for it (with fallbacks), and build the engine. Raises StartupError."""
    from model import load_model

    t0 = time.perf_counter()
    attempts: list[str] = []
    hub_library = (config.library or "").startswith("hf-hub:")
    offline = _go_offline_if_needed(config, progress) if hub_library else False
    root = _configured_library_root(config, attempts)
    lib_spec = None if config.model_explicit else library_model(root)
    if not hub_library:
        offline = _go_offline_if_needed(config, progress, lib_spec)
    device = _device(config)
    for n, spec in enumerate(model_candidates(config, lib_spec)):
        _say(progress, f"loading model {spec} ...")
        try:
            model = load_model(spec, device=device)
        except Exception as e:  # noqa: BLE001 - every loader failure means: try the next model
            needs_hub = spec.startswith(("clip:", "hf-hub:"))
            why = "no network and not in the local cache" if offline and needs_hub else _short_reason(e)
            named = " (named in the library's manifest)" if n == 0 and lib_spec else ""
            attempts.append(f"Could not load model {spec}{named}: {why}")
            _say(progress, attempts[-1])
            continue
        ctx = _LibraryContext(config, model, device, progress, attempts, root)
        lib, lib_reason = _obtain_library(ctx)
        if lib is None:
            attempts.append(f"No library could be used with model {spec}.")
            continue
        st = _serve(config, model, lib, lib_reason, attempts, offline, progress)
        st.model_reason = _reason(spec, n == 0, config, bool(lib_spec))
        st.seconds = time.perf_counter() - t0
        _say(progress, f"serving model {spec} with library {lib.root} ({len(lib)} videos), ready in {st.seconds:.1f}s")
        return st
    raise StartupError("Nothing can be served:\n" + "\n".join(f"- {a}" for a in attempts))


def _serve(config: AppConfig, model, lib, lib_reason: str, attempts: list[str], offline: bool,
           progress: Progress | None) -> Startup:
    """The engine over a loaded model and library, and what the page says about them."""
    from app.engine import SearchEngine

    note = untrusted_source_note(lib)
    if note:
        attempts.append(note)
    attached = attach_folder_captions(lib)
    if attached:
        _say(progress, f"captions for {attached} videos read from {lib.source_root}/captions.json")
    bank = read_caption_bank(config.caption_bank)
    files = video_files(lib)
    engine = SearchEngine(model, lib, caption_bank=bank, limits=config.limits(), served_files=files,
                          cache_dir=config.cache_dir)
    if not bank:
        engine.notes.append(f"No caption bank at {config.caption_bank}: the Describe tab ranks library captions only.")
    return Startup(engine=engine, model_spec=model.spec, model_reason="", library_root=lib.root,
                   library_reason=lib_reason, attempts=attempts, offline=offline, video_files=files,
                   media_files=media_files(lib, files))
