"""Run work on untrusted files (decoding an upload) in a child process with a time and a memory limit.

A decoder fed a hostile file can allocate gigabytes or spin for minutes; in the server's own process that
would hold every other request. In a child it costs at most its limits, then it is killed and the user
gets one line. Children come from a fork server (a clean process started once), never from a fork of the
multi-threaded server itself.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

__all__ = ["LimitExceeded", "WorkerFailed", "run_limited"]

T = TypeVar("T")
_CONTEXT: Any = None


class LimitExceeded(RuntimeError):
    """The work went over its time or memory limit and was stopped."""


class WorkerFailed(RuntimeError):
    """The work raised an error (message kept short: type and first line, no traceback)."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}" if message else kind)
        self.kind, self.message = kind, message


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["numpy", "av", "video.decode"])
        _CONTEXT = ctx
    return _CONTEXT


def _limit_memory(memory_bytes: int | None) -> None:
    if not memory_bytes:
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _child(conn, fn: Callable[..., Any], args: tuple, kwargs: dict, memory_bytes: int | None) -> None:
    try:
        _limit_memory(memory_bytes)
        result = fn(*args, **kwargs)
        conn.send((True, result))
    except MemoryError:
        conn.send((False, ("MemoryError", "out of memory")))
    except BaseException as e:  # noqa: BLE001 - everything goes back to the parent as one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        try:
            conn.send((False, (type(e).__name__, first)))
        except MemoryError:
            os._exit(3)
    finally:
        conn.close()


def run_limited(fn: Callable[..., T], *args: Any, timeout_s: float, memory_bytes: int | None = None,
                kwargs: dict[str, Any] | None = None) -> T:
    """fn(*args, **kwargs) in a child; LimitExceeded past `timeout_s` seconds or `memory_bytes` of address space.

    `fn` must be a module-level function (it is imported by name in the child); its result is pickled back.
    """
    ctx = _context()
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(sender, fn, args, kwargs or {}, memory_bytes), daemon=True)
    proc.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            raise LimitExceeded(f"it took longer than {timeout_s:g} s")
        try:
            ok, payload = receiver.recv()
        except EOFError:
            proc.join(5)
            raise LimitExceeded("the worker stopped without an answer (memory limit or a decoder crash)") from None
    finally:
        receiver.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if ok:
        return payload
    kind, message = payload
    if kind == "MemoryError":
        raise LimitExceeded(f"it needed more than {memory_bytes / 2**20:,.0f} MB of memory")
    raise WorkerFailed(kind, message)
