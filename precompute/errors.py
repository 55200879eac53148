"""What can go wrong with a library, as types: callers catch these, only main() functions exit."""
from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator

#: OS errors that mean "this folder cannot be written": disk full, quota, read-only, no permission.
#: The exit status of `python -m precompute` (and .merge) when the library folder cannot be written.
EXIT_CANNOT_WRITE = 3

WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


class LibraryError(Exception):
    """A library cannot be read, written or extended; the message says why and what to do."""


class ModelMismatchError(LibraryError):
    """The library was built with other weights (or other frame settings) than the model in use."""


class LibraryWriteError(LibraryError):
    """The library folder cannot be written (disk full, read-only file system, permission denied).

    Nothing of the previous complete library is lost; free space or fix permissions and run again."""


@contextlib.contextmanager
def writing(where: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OS write failure inside the block into one LibraryWriteError naming the folder."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        name = f" ({e.filename})" if e.filename else ""
        raise LibraryWriteError(f"{where}: cannot write the library: {e.strerror or e}{name}") from e
