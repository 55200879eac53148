"""The library's files on the web: exact files by opaque key, one dict lookup per request.

Gradio checks every file it serves or returns against its static and allowed paths one by one,
resolving both paths each time; with an exact-file list (a stranger's library may hold anything
beside its thumbnails) that is O(library) per gallery image, which was most of a search request's
server time and grows to seconds at 100k videos. So the page's galleries and player get absolute
URLs of this route instead, and Gradio passes such URLs through untouched (app.ui.LibraryVideo
does the same for the player).
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

__all__ = ["MediaFiles", "ROUTE", "media_type"]

ROUTE = "/media"
"""Where the files are served: ROUTE/<key>/<file name>."""

_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".ogv": "video/ogg",
          ".ogg": "video/ogg", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png",
          ".webp": "image/webp", ".gif": "image/gif"}


def media_type(name: str) -> str | None:
    return _TYPES.get(Path(name).suffix.lower()) or mimetypes.guess_type(name)[0]


def _key(path: Path) -> str:
    """Stable across restarts (browsers keep their cache), says nothing about the folder."""
    return hashlib.sha256(str(path).encode("utf-8", "surrogateescape")).hexdigest()[:20]


class MediaFiles:
    """The exact files the page may show, each under a key made from its absolute path.

    Nothing is resolved at start-up (a path costs a dict entry, not file-system calls); a symlink (a Hub
    cache's thumbnail is one, named x.jpg, into a blob without an extension) is served under its own
    name, which is in its URL and sets its content type."""

    def __init__(self, files: Iterable[Path | str]):
        self._by_key: dict[str, Path] = {}
        self._key_of: dict[Path, str] = {}
        for f in files:
            p = Path(os.path.abspath(f))
            if p not in self._key_of:
                k = _key(p)
                self._by_key[k], self._key_of[p] = p, k

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, path: Any) -> bool:
        return path is not None and self.key(path) is not None

    def key(self, path: Path | str) -> str | None:
        return self._key_of.get(Path(os.path.abspath(path)))

    def linker(self, root: str):
        """path -> absolute URL (or None) under root: how app.mcp and app.handlers link files."""
        return lambda path: self.url(path, root)

    def url(self, path: Path | str | None, root: str) -> str | None:
        """Absolute URL of a served file (root: the app's public URL); None if it is not served or root is ''."""
        if path is None or not root:
            return None
        k = self.key(path)
        return f"{root.rstrip('/')}{ROUTE}/{k}/{quote(self._by_key[k].name)}" if k else None

    def file(self, key: str, name: str) -> tuple[Path, str] | None:
        """(file, name) behind ROUTE/key/name, if that is exactly a served file that still exists."""
        p = self._by_key.get(key)
        if p is None or p.name != name or not p.is_file():
            return None
        return p, p.name

    def route(self):
        """The Starlette route that serves the files (ranges included, so videos can seek)."""
        from starlette.responses import FileResponse, PlainTextResponse
        from starlette.routing import Route

        def serve(request):
            found = self.file(request.path_params["key"], request.path_params["name"])
            if found is None:
                return PlainTextResponse("Not found", status_code=404)
            p, name = found
            kind = media_type(name) or "application/octet-stream"
            headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff",
                       "Content-Security-Policy": "default-src 'none'; sandbox"}
            return FileResponse(p, media_type=kind, headers=headers, content_disposition_type="inline")

        return Route(ROUTE + "/{key}/{name}", serve, methods=["GET", "HEAD"])

