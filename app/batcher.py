"""Encode concurrent queries together: one forward pass for every query that arrived meanwhile.

A text tower on a CPU costs nearly the same for 1 query as for 8 (the weights are read once either
way), so when 20 people search at once, encoding their queries one by one behind a lock makes each
wait for all the others. MicroBatcher runs `fn` on one worker thread; every caller blocks until its
own result is ready. While a batch runs, new items queue; the next batch takes all of them (up to
max_batch). A lone item waits at most `window` seconds for company, so a single user pays almost
nothing and a crowd shares forward passes.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

__all__ = ["MicroBatcher"]

T = TypeVar("T")
R = TypeVar("R")

#: Every batcher, so that a forked child (ZeroGPU runs handlers in one; app.isolation forks too) starts
#: with an empty queue and its own worker instead of waiting on a thread that exists only in the parent.
_LIVE: weakref.WeakSet = weakref.WeakSet()


def _reset_after_fork() -> None:
    for batcher in list(_LIVE):
        batcher._reset()


os.register_at_fork(after_in_child=_reset_after_fork)


class MicroBatcher(Generic[T, R]):
    """Call fn(list of items) -> list of results (same length, same order) for items submitted by many threads."""

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], *, window: float = 0.002, max_batch: int = 32,
                 name: str = "batcher"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        self._fn = fn
        self.window = max(0.0, float(window))
        self.max_batch = int(max_batch)
        self._name = name
        self._reset()
        _LIVE.add(self)

    def _reset(self) -> None:
        """A fresh queue, locks, counters and no worker (at construction and in a forked child)."""
        self._queue: queue.SimpleQueue[tuple[T, Future]] = queue.SimpleQueue()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._count_lock = threading.Lock()
        self.submitted = 0  # items handed to submit() so far
        self.batches = 0  # calls of fn so far
        self.items = 0  # items through fn so far

    def pending(self) -> int:
        """Items waiting for the next batch (approximate while threads submit)."""
        return self._queue.qsize()

    def submit(self, item: T) -> R:
        """fn's result for item, computed in a batch with whatever else is waiting; fn's exception is re-raised."""
        fut: Future = Future()
        with self._count_lock:
            self.submitted += 1
        self._queue.put((item, fut))
        self._ensure_worker()
        return fut.result()

    def _ensure_worker(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()

    def _collect(self) -> list[tuple[T, Future]]:
        batch = [self._queue.get()]  # blocks while idle
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        deadline = time.monotonic() + self.window
        while len(batch) == 1:  # alone: wait a moment for company
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            live = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not live:
                continue
            try:
                results = list(self._fn([item for item, _ in live]))
                if len(results) != len(live):
                    raise RuntimeError(f"{self._name}: {len(results)} results for {len(live)} items")
            except BaseException as e:  # every waiting caller gets the error; the worker keeps serving
                log.exception("%s: batch of %d failed", self._name, len(live))
                for _, fut in live:
                    fut.set_exception(e)
                continue
            finally:
                self.batches += 1
                self.items += len(live)
            for (_, fut), res in zip(live, results):
                fut.set_result(res)
