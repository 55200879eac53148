"""The query micro-batcher: concurrent callers share forward passes and each gets its own result."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest

from app.batcher import MicroBatcher


def _wait_until(cond, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _run_threads(n: int, target) -> list:
    out: list = [None] * n
    errors: list = []

    def work(i: int) -> None:
        try:
            out[i] = target(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return out, errors, threads


@pytest.mark.parametrize("n", [3, 8, 20])
def test_concurrent_items_share_batches_and_get_their_own_results(n):
    gate = threading.Event()
    sizes: list[int] = []

    def fn(items):
        sizes.append(len(items))
        gate.wait(30)  # the first batch waits until everyone has submitted
        return [x * 10 + 1 for x in items]

    b = MicroBatcher(fn, window=0.0)
    out, errors, threads = _run_threads(n, b.submit)
    _wait_until(lambda: b.submitted == n, "all submissions")
    gate.set()
    for t in threads:
        t.join(30)
    assert not errors
    assert out == [i * 10 + 1 for i in range(n)]
    # What arrived before the first call went in it; everything else waited and went in the second.
    assert b.batches == len(sizes) <= 2 < n and sum(sizes) == n == b.items


def test_max_batch_is_respected():
    gate = threading.Event()
    sizes: list[int] = []

    def fn(items):
        sizes.append(len(items))
        gate.wait(30)
        return list(items)

    b = MicroBatcher(fn, window=0.0, max_batch=3)
    out, errors, threads = _run_threads(10, b.submit)
    _wait_until(lambda: b.submitted == 10, "all submissions")
    gate.set()
    for t in threads:
        t.join(30)
    assert not errors and out == list(range(10))
    assert max(sizes) <= 3 and sum(sizes) == 10


def test_a_failing_batch_reaches_every_caller_and_the_worker_keeps_serving():
    def fn(items):
        if "bad" in items:
            raise ValueError("bad item in batch")
        return [s.upper() for s in items]

    b = MicroBatcher(fn)
    with pytest.raises(ValueError, match="bad item"):
        b.submit("bad")
    assert b.submit("ok") == "OK"


def test_a_wrong_number_of_results_is_an_error_not_a_mixup():
    b = MicroBatcher(lambda items: [1, 2, 3])
    with pytest.raises(RuntimeError, match="3 results for 1 items"):
        b.submit("x")


def test_a_forked_child_gets_its_own_worker():
    b = MicroBatcher(lambda items: [x + 1 for x in items])
    assert b.submit(1) == 2  # the parent's worker thread exists now; a forked child does not have it
    pid = os.fork()
    if pid == 0:  # child: must answer, not wait forever on the parent's thread
        signal.alarm(30)  # a hang ends the child (SIGALRM), which fails the test
        ok = False
        try:
            ok = b.submit(41) == 42 and b.batches == 1
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert b.submit(2) == 3  # and the parent's worker still serves


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError):
        MicroBatcher(lambda items: items, max_batch=0)


# ------------------------------------------------------------------ the engine's query batcher

QUERIES = ["a red circle moves left", "the blue square grows", "a green triangle moves up", "a yellow circle shrinks",
           "a white square moves right", "a purple triangle fades in", "a dog runs on the beach", "cars at night",
           "a person cooks in a kitchen", "birds fly over a lake", "a red square", "a blue circle falls"]


@pytest.fixture(scope="module")
def library(tmp_path_factory, tiny_model):
    from shapes_library import make_shapes_library

    return make_shapes_library(tmp_path_factory.mktemp("batchlib"), tiny_model, num=6)


def _engine(library, model, **kw):
    from app.engine import SearchEngine
    from precompute import open_library

    lib_dir, videos = library
    return SearchEngine(model, open_library(lib_dir), served_dirs=[videos], **kw)


def test_concurrent_searches_are_batched_and_match_sequential_ones(library, tiny_model):
    sequential = _engine(library, tiny_model)
    expected = [sequential.search(q, 5) for q in QUERIES]
    engine = _engine(library, tiny_model)
    n = len(QUERIES)
    before = engine.query_batcher.batches
    with engine._text_lock:  # hold the text tower so that every query queues behind the first batch
        out, errors, threads = _run_threads(n, lambda i: engine.search(QUERIES[i], 5))
        _wait_until(lambda: engine.query_batcher.submitted == n, "all queries to reach the batcher")
    for t in threads:
        t.join(60)
    assert not errors
    forward_calls = engine.query_batcher.batches - before
    assert forward_calls < n  # the crowd shared forward passes (2 here: the held first batch, then the rest)
    for got, want in zip(out, expected):
        assert got.ok and got.query == want.query
        assert [h.id for h in got.hits] == [h.id for h in want.hits]
        np.testing.assert_allclose([h.score for h in got.hits], [h.score for h in want.hits], atol=1e-5)
