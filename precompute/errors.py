"""What can go wrong with a library, as types: callers catch these, only main() functions exit."""
from __future__ import annotations


class LibraryError(Exception):
    """A library cannot be read, written or extended; the message says why and what to do."""


class ModelMismatchError(LibraryError):
    """The library was built with other weights (or other frame settings) than the model in use."""
