"""precompute: encode a video collection once into a cached, searchable library.

    from precompute import build_library, open_library, BuildSettings
    report = build_library("videos/", "lib", "random:tiny", BuildSettings(workers=1))
    lib = open_library("lib"); scores, rows = lib.search(text_emb, k=10)

Roles, one module each: sources (find videos) -> reader + workers (decode in processes) -> encoder
(batched, on the device) -> writer (resumable chunks, atomic assembly) -> library (format, reader)
and index (faiss); build runs them, merge joins shards, __main__ is the CLI. Importing the package
is cheap: torch loads only when a build starts, faiss on the first search.
"""

from __future__ import annotations

from .build import build_library
from .library import FORMAT_VERSION, Library, LibraryError, ModelMismatchError, VideoRecord, open_library
from .settings import BuildReport, BuildSettings

__all__ = ["build_library", "open_library", "Library", "VideoRecord", "LibraryError", "ModelMismatchError",
           "BuildSettings", "BuildReport", "FORMAT_VERSION", "merge_libraries"]


def merge_libraries(*args, **kwargs):
    """See precompute.merge.merge_libraries (imported lazily: it is a separate command)."""
    from .merge import merge_libraries as _merge

    return _merge(*args, **kwargs)
