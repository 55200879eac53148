"""Decoding worker processes, overlapped with encoding in the main process.

Each worker has its own pipe and its own short queue of tasks (``prefetch``), so the pool always
knows which file a worker is on. A collector thread drains the pipes into a bounded buffer while
the main thread encodes (torch releases the GIL), so workers never wait on the encoder. A worker
that crashes (decoders can segfault on hostile files) or hangs past ``timeout`` is killed and
replaced, and only that file is recorded as failed. A long video sends one result per segment as
they are final (only the one marked ``last`` ends its task), so memory stays bounded whatever its
length, and the timeout counts from the last result received. Results come back as they finish (unordered);
the build sorts by id at the end. ``num_workers=0`` decodes in the calling process (no overlap;
simplest to debug).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Iterable, Iterator

from .reader import DecodeResult, DecodeTask, Preprocess, decode_file

__all__ = ["DecodePool", "decode_stream"]

log = logging.getLogger(__name__)


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the build process dies (SIGKILL included)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _worker_init() -> None:
    """One thread per worker (the workers are the parallelism); Ctrl-C is the parent's to handle."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = "1"
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)


def _worker_main(conn, parent_end, preprocess: Preprocess | None) -> None:
    if parent_end is not None:  # fork copies the parent's end too; closing it lets recv() see EOF
        parent_end.close()
    _worker_init()
    if os.getppid() == 1:  # the parent died before PDEATHSIG was set
        return
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # parent gone (killed): exit quietly
            return
        if task is None:
            return
        try:
            for result in decode_file(task, preprocess):
                conn.send(result)
        except (BrokenPipeError, EOFError, OSError):
            return


def _context():
    # fork shares the loaded model's preprocessing without pickling it; elsewhere spawn is the safe default.
    if sys.platform.startswith("linux") and "fork" in mp.get_all_start_methods():
        return mp.get_context("fork")
    return mp.get_context("spawn")


def _signal_name(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class _Worker:
    def __init__(self, ctx, preprocess: Preprocess | None, wid: int):
        self.wid = wid
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        inherit = parent if ctx.get_start_method() == "fork" else None
        self.proc = ctx.Process(target=_worker_main, args=(child, inherit, preprocess), daemon=True,
                                name=f"precompute-decode-{wid}")
        self.proc.start()
        child.close()
        self.queue: deque[DecodeTask] = deque()
        self.started = time.monotonic()

    def send(self, task: DecodeTask) -> None:
        if not self.queue:
            self.started = time.monotonic()
        self.queue.append(task)
        self.conn.send(task)

    def kill(self) -> None:
        try:
            self.proc.kill()
        except (OSError, AttributeError):
            pass
        self.proc.join(5)
        self.conn.close()


class DecodePool:
    """Worker processes running reader.decode_one; iterate ``imap_unordered(tasks)`` for results."""

    def __init__(self, preprocess: Preprocess | None, num_workers: int, timeout: float = 600.0, prefetch: int = 2):
        if num_workers < 1:
            raise ValueError("DecodePool needs at least one worker (use decode_stream for in-process decoding)")
        self.preprocess = preprocess
        self.num_workers = num_workers
        self.timeout = timeout
        self.prefetch = max(1, prefetch)
        self.ctx = _context()
        self.workers: list[_Worker] = []
        self.restarts = 0

    def __enter__(self) -> "DecodePool":
        self.workers = [_Worker(self.ctx, self.preprocess, i) for i in range(self.num_workers)]
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        deadline = time.monotonic() + 5
        for w in self.workers:
            w.proc.join(max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.kill()
            else:
                w.conn.close()
        self.workers = []

    def _replace(self, w: _Worker) -> _Worker:
        w.kill()
        self.restarts += 1
        new = _Worker(self.ctx, self.preprocess, w.wid)
        self.workers[self.workers.index(w)] = new
        return new

    def imap_unordered(self, tasks: Iterable[DecodeTask], buffer: int = 8) -> Iterator[DecodeResult]:
        """Results as they finish. A collector thread keeps draining the workers into a buffer of
        `buffer` decoded videos while the caller is busy (encoding), so decoding never stalls on it."""
        if not self.workers:
            self.__enter__()
        out: queue.Queue = queue.Queue(maxsize=max(1, buffer))
        stop = threading.Event()
        done = object()

        def put(item) -> bool:
            t0 = time.monotonic()
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            blocked = time.monotonic() - t0
            for w in self.workers:  # time spent waiting on the caller is not decoding time
                w.started += blocked
            return not stop.is_set()

        def collect() -> None:
            try:
                for result in self._collect(tasks, stop):
                    if not put(result):
                        return
                put(done)
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
                put(_Failed(e))

        thread = threading.Thread(target=collect, name="precompute-decode-collector", daemon=True)
        thread.start()
        try:
            while True:
                item = out.get()
                if item is done:
                    return
                if isinstance(item, _Failed):
                    raise item.error
                yield item
        finally:
            stop.set()
            thread.join(30)

    def _collect(self, tasks: Iterable[DecodeTask], stop: threading.Event) -> Iterator[DecodeResult]:
        source = iter(tasks)
        retry: deque[DecodeTask] = deque()
        exhausted = False

        def next_task() -> DecodeTask | None:
            nonlocal exhausted
            if retry:
                return retry.popleft()
            if exhausted:
                return None
            try:
                return next(source)
            except StopIteration:
                exhausted = True
                return None

        def fill() -> None:
            for w in self.workers:
                while len(w.queue) < self.prefetch:
                    t = next_task()
                    if t is None:
                        return
                    w.send(t)

        def fail(w: _Worker, reason: str) -> DecodeResult:
            """Kill w, fail its current task, put the rest back, start a fresh worker."""
            bad = w.queue.popleft()
            retry.extendleft(reversed(w.queue))
            w.queue.clear()
            self._replace(w)
            log.warning("%s", reason.format(path=bad.path))
            return DecodeResult(seq=bad.seq, id=bad.id, ok=False, reason=reason.format(path=bad.path))

        fill()
        while any(w.queue for w in self.workers) and not stop.is_set():
            busy = [w for w in self.workers if w.queue]
            ready = wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=1.0)
            now = time.monotonic()
            for w in list(busy):
                if w.conn in ready:
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError):
                        w.proc.join(1)
                        yield fail(w, "{path}: the decoder process died on this file ("
                                   + _signal_name(w.proc.exitcode) + ")")
                        continue
                    if result.last:
                        w.queue.popleft()
                    w.started = now
                    yield result
                elif w.proc.sentinel in ready or not w.proc.is_alive():
                    w.proc.join(1)
                    yield fail(w, "{path}: the decoder process died on this file ("
                               + _signal_name(w.proc.exitcode) + ")")
                elif self.timeout and now - w.started > self.timeout:
                    yield fail(w, "{path}: decoding took longer than " + f"{self.timeout:g}s; skipped")
            fill()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def decode_stream(tasks: Iterable[DecodeTask], preprocess: Preprocess | None, num_workers: int,
                  timeout: float = 600.0, prefetch: int = 2, buffer: int = 8) -> Iterator[DecodeResult]:
    """Results for tasks, from worker processes (num_workers >= 1) or in-process (0, no overlap)."""
    if num_workers <= 0:
        for task in tasks:
            yield from decode_file(task, preprocess)
        return
    with DecodePool(preprocess, num_workers, timeout=timeout, prefetch=prefetch) as pool:
        yield from pool.imap_unordered(tasks, buffer=buffer)
