"""App settings: one dataclass, filled from command-line flags and environment variables.

Every flag has an environment variable so a Hugging Face Space (which runs `python app.py` with no
arguments) can be configured from its settings page. Flags win over the environment.
Importing this module is cheap: no torch, no gradio.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

#: The model tried first when none is configured.
DEFAULT_MODEL = "clip:ViT-B-32-quickgelu/openai"

REPO_ROOT = Path(__file__).resolve().parent.parent
ASSETS = REPO_ROOT / "assets"
SAMPLE_VIDEOS = ASSETS / "videos"
CAPTION_BANK = ASSETS / "captions" / "bank.txt"
BUNDLED_LIBRARY = ASSETS / "library-shapes"

MB = 1024 * 1024

ENV_MODEL = "PROMPTSWITCH_MODEL"
ENV_LIBRARY = "PROMPTSWITCH_LIBRARY"
ENV_VIDEOS = "PROMPTSWITCH_VIDEOS"
ENV_CACHE = "PROMPTSWITCH_CACHE"
ENV_MCP = "PROMPTSWITCH_MCP"
ENV_VIDEO_ROOTS = "PROMPTSWITCH_VIDEO_ROOTS"


def set_environment_defaults() -> None:
    """Telemetry off and a persistent hub cache on Spaces; call before importing gradio/hub code.

    Only sets what the user has not set. On a Space with persistent storage (mounted at /data),
    HF_HOME goes to /data/.huggingface so downloaded weights survive restarts.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Gradio's queue rebuilds a pandas summary of its last 10,000 events after every event (for its
    # monitoring page): a cost per request that grows with uptime. Summarise every 200 events instead.
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "200")
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "2000")
    if "HF_HOME" not in os.environ and os.environ.get("SPACE_ID"):
        data = Path("/data")
        if data.is_dir() and os.access(data, os.W_OK):
            os.environ["HF_HOME"] = str(data / ".huggingface")


def hf_home(env=None) -> Path:
    """The Hugging Face cache root, as huggingface_hub resolves it (HF_HOME, XDG_CACHE_HOME)."""
    env = os.environ if env is None else env
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser()
    xdg = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface"


def _env_int(env, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


def _env_float(env, name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not a number") from None


def _env_str(env, name: str) -> str | None:
    raw = env.get(name)
    return raw.strip() if raw and raw.strip() else None


@dataclass
class Limits:
    """Every limit the app applies to what a user types or uploads: the one place their defaults live."""

    max_query_chars: int = 1000
    """Longer queries are cut (the model reads far fewer tokens anyway) and the user is told."""
    default_k: int = 12
    max_k: int = 50
    max_upload_bytes: int = 50 * MB
    max_video_seconds: float = 600.0
    max_video_frames: int = 36000
    """Frames of an upload (counted from its packets when the header has none): 10 min at 60 fps."""
    max_video_pixels: int = 3840 * 2160
    """Width x height of an upload's frames (4K)."""
    decode_seconds: float = 60.0
    """Wall-clock time one upload's decoding may take, in its own process, before it is stopped."""
    decode_memory_mb: int = 3072
    """Address space of that process (Python, PyAV and the sampled frames fit easily in it)."""
    max_library_captions: int = 20000
    """Unique library captions encoded at start-up for the Describe tab (more are skipped, with a note)."""
    num_bank: int = 5
    num_library_captions: int = 5
    num_similar: int = 6


@dataclass
class AppConfig:
    model: str | None = None
    """Model spec; None = DEFAULT_MODEL, with the offline fallbacks of app.startup."""
    library: str | None = None
    """A library folder, or hf-hub:org/dataset[@rev]; None = chosen from the model and --videos."""
    videos: Path | None = None
    """A folder of videos to search; a library is built from it when none matches the model."""
    host: str = "127.0.0.1"
    port: int = 7860
    device: str = "auto"
    cache_dir: Path = field(default_factory=lambda: hf_home() / "promptswitch")
    """Where libraries built by the app (and caption-bank embeddings) are kept."""
    fallback: bool = True
    """Fall back to the bundled model/library when the configured ones cannot be loaded."""
    caption_bank: Path = CAPTION_BANK
    max_upload_mb: float = Limits.max_upload_bytes / MB
    max_video_seconds: float = Limits.max_video_seconds
    search_concurrency: int = 4
    describe_concurrency: int = 2
    queue_size: int = 256
    mcp: bool = False
    """Also serve the API as an MCP server (tools search_videos, describe_video; see app.mcp)."""
    video_roots: list[Path] = field(default_factory=list)
    """Extra folders whose videos a library may name and the page may play (besides --videos, the library's
    own folder, assets/ and the cache folder): a library's recorded source root outside all of them is
    not trusted, so its videos are neither served nor re-indexed."""
    upload_ttl_s: int = 3600
    """Uploads (and Gradio's other cached files) older than this are deleted, checked as often."""

    def trusted_roots(self, library_root: Path | None = None) -> list[Path]:
        """Folders a library's videos may lie in: what the operator configured, nothing a library says."""
        roots = [*self.video_roots, ASSETS, self.cache_dir]
        if self.videos:
            roots.append(self.videos)
        if library_root is not None:
            roots.append(library_root)
        return [Path(os.path.abspath(r)) for r in roots]


    @property
    def model_spec(self) -> str:
        return self.model or DEFAULT_MODEL

    @property
    def model_explicit(self) -> bool:
        return self.model is not None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * MB)

    def limits(self) -> Limits:
        """The engine's limits: the defaults, with the two a user sets."""
        return Limits(max_upload_bytes=self.max_upload_bytes, max_video_seconds=self.max_video_seconds)


#: Folders a library may never name as its video folder, whatever it says: the system's and hidden ones.
SYSTEM_FOLDERS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64",
                  "/run", "/var/lib", "/var/log", "/var/run", "/var/spool", "/snap")


def acceptable_video_folder(folder: str | os.PathLike[str]) -> bool:
    """A local library's recorded video folder is trusted unless it is a system folder, a top-level folder
    (/, /home) or lies under a hidden one (~/.ssh): a tampered manifest cannot open those to the server."""
    p = Path(os.path.realpath(folder))
    if len(p.parts) < 3 or any(part.startswith(".") for part in p.parts[1:]):
        return False
    if str(p) == os.path.realpath(Path.home()):
        return False
    return not any(p == Path(s) or Path(s) in p.parents for s in SYSTEM_FOLDERS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="app.py",
        description="Prompt Switch text-to-video search: a Gradio page to search a video library by text "
        "and describe uploaded videos.",
        epilog=f"Environment: {ENV_MODEL}, {ENV_LIBRARY}, {ENV_VIDEOS}, {ENV_CACHE}, {ENV_MCP}, {ENV_VIDEO_ROOTS}, "
        "PROMPTSWITCH_MAX_UPLOAD_MB, PROMPTSWITCH_MAX_VIDEO_SECONDS, GRADIO_SERVER_NAME, GRADIO_SERVER_PORT, "
        "HF_HOME (flags win).",
    )
    p.add_argument("--model", help=f"model spec (default: {DEFAULT_MODEL}, falling back to bundled:moving-shapes "
                   "offline); e.g. hf-hub:org/name[@rev], a local folder, random:tiny")
    p.add_argument("--library", help="library folder made by precompute, or hf-hub:org/dataset[@rev]")
    p.add_argument("--videos", type=Path, help="folder of videos; a library is built from it if needed")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1; 0.0.0.0 on a Space)")
    p.add_argument("--port", type=int, help="port (default 7860)")
    p.add_argument("--device", help="cpu, cuda, or auto (default)")
    p.add_argument("--cache-dir", type=Path, help="where built libraries are kept (default $HF_HOME/promptswitch)")
    p.add_argument("--no-fallback", action="store_true",
                   help="fail instead of falling back to the bundled model and library")
    p.add_argument("--max-upload-mb", type=float,
                   help=f"largest upload accepted (default {AppConfig.max_upload_mb:g})")
    p.add_argument("--max-video-seconds", type=float,
                   help=f"longest uploaded video accepted (default {AppConfig.max_video_seconds:g})")
    p.add_argument("--video-root", action="append", type=Path, default=[], metavar="DIR",
                   help="a folder whose videos a --library may play (repeatable; a library's recorded video "
                   f"folder outside --videos, the library and these is not trusted); {ENV_VIDEO_ROOTS} too, "
                   "separated by os.pathsep")
    p.add_argument("--mcp", action="store_true",
                   help=f"also serve the API as an MCP server at /gradio_api/mcp/ ({ENV_MCP}=1)")
    return p


def from_args(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    """Settings from flags, then environment variables, then defaults."""
    args = build_parser().parse_args(argv)
    env = os.environ if environ is None else environ
    on_space = bool(env.get("SPACE_ID"))
    videos = args.videos or (Path(_env_str(env, ENV_VIDEOS)) if _env_str(env, ENV_VIDEOS) else None)
    cache = args.cache_dir or (Path(_env_str(env, ENV_CACHE)) if _env_str(env, ENV_CACHE) else None)
    cfg = AppConfig(
        model=args.model or _env_str(env, ENV_MODEL),
        library=args.library or _env_str(env, ENV_LIBRARY),
        videos=videos.expanduser() if videos else None,
        host=args.host or _env_str(env, "GRADIO_SERVER_NAME") or ("0.0.0.0" if on_space else "127.0.0.1"),
        port=args.port or _env_int(env, "GRADIO_SERVER_PORT", 7860),
        device=args.device or _env_str(env, "PROMPTSWITCH_DEVICE") or "auto",
        cache_dir=(cache or hf_home(env) / "promptswitch").expanduser(),
        fallback=not args.no_fallback,
        video_roots=[p.expanduser() for p in args.video_root]
        + [Path(p).expanduser() for p in (_env_str(env, ENV_VIDEO_ROOTS) or "").split(os.pathsep) if p],
        mcp=args.mcp or (_env_str(env, ENV_MCP) or "0").lower() not in ("0", "false", "no", "off"),
        max_upload_mb=args.max_upload_mb or _env_float(env, "PROMPTSWITCH_MAX_UPLOAD_MB", AppConfig.max_upload_mb),
        max_video_seconds=args.max_video_seconds
        or _env_float(env, "PROMPTSWITCH_MAX_VIDEO_SECONDS", AppConfig.max_video_seconds),
    )
    if cfg.max_upload_mb <= 0 or cfg.max_video_seconds <= 0:
        raise SystemExit("--max-upload-mb and --max-video-seconds must be positive")
    return cfg
