"""The library's faiss index: exact IndexFlatIP by default, any index_factory string on request.

Cosine similarity is the inner product of L2-normalised vectors, so every index uses
METRIC_INNER_PRODUCT. Approximate indexes are trained on the library itself and their recall@10
against exact search is measured on held-out queries (perturbed library vectors: real embeddings
have structure that uniform random queries lack) and stored in the manifest, so a user sees what
the speed costs. A factory that cannot be trained on this many vectors falls back to Flat, with the
reason recorded in the manifest.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from model.files import atomic_save

from .errors import LibraryError

__all__ = ["FLAT", "build_index", "write_index", "read_index", "default_params", "measure_recall"]

log = logging.getLogger(__name__)

FLAT = "Flat"
BLOCK = 65536


def _faiss():
    import faiss

    return faiss


def is_flat(factory: str) -> bool:
    return factory.strip() in ("", "Flat", "IndexFlatIP", "flat")


def default_params(factory: str) -> str:
    """Search parameters that make approximate indexes usable out of the box (faiss's nprobe=1 is not)."""
    params = []
    m = re.search(r"IVF(\d+)", factory)
    if m:
        params.append(f"nprobe={min(int(m.group(1)), 32)}")
    if factory.startswith("HNSW"):
        params.append("efSearch=64")
    return ",".join(params)


def _set_params(index, params: str) -> None:
    if params:
        _faiss().ParameterSpace().set_index_parameters(index, params)


def _blocks(vectors: np.ndarray):
    for start in range(0, len(vectors), BLOCK):
        yield np.ascontiguousarray(vectors[start : start + BLOCK], dtype=np.float32)


def _flat(dim: int):
    return _faiss().IndexFlatIP(dim)


def build_index(
    vectors: np.ndarray, factory: str = FLAT, params: str | None = None, seed: int = 0, num_queries: int = 500
) -> tuple[Any, dict[str, Any]]:
    """Build an index over vectors [N, D] (any float dtype, e.g. an fp16 memmap; read in blocks).

    Returns (index, info) where info goes into the manifest: type, factory, params, recall_at_10,
    and a warning if the requested factory fell back to Flat.
    """
    faiss = _faiss()
    n, dim = vectors.shape
    factory = (factory or FLAT).strip()
    info: dict[str, Any] = {"type": FLAT, "factory": FLAT, "params": "", "metric": "inner_product",
                            "recall_at_10": 1.0, "recall_queries": 0}
    if is_flat(factory):
        index = _flat(dim)
        for block in _blocks(vectors):
            index.add(block)
        return index, info

    params = default_params(factory) if params is None else params
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:  # a typo in the factory string is the user's to fix, not a fallback
        raise ValueError(f"faiss cannot build index {factory!r}: {str(e).strip().splitlines()[-1]}") from e
    try:
        if not index.is_trained:
            if n == 0:
                raise RuntimeError("no vectors to train on")
            rng = np.random.default_rng(seed)
            take = np.sort(rng.choice(n, size=min(n, 256 * 1024), replace=False))
            index.train(np.ascontiguousarray(vectors[take], dtype=np.float32))
        for block in _blocks(vectors):
            index.add(block)
        _set_params(index, params)
    except RuntimeError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        warning = (f"index {factory!r} could not be trained on {n} vectors ({reason}); "
                   "fell back to exact IndexFlatIP")
        log.warning(warning)
        index = _flat(dim)
        for block in _blocks(vectors):
            index.add(block)
        info["warning"] = warning
        info["requested"] = factory
        return index, info

    info.update(type=factory, factory=factory, params=params)
    recall, q = measure_recall(index, vectors, seed=seed, num_queries=num_queries)
    info.update(recall_at_10=recall, recall_queries=q)
    return index, info


def measure_recall(index, vectors: np.ndarray, k: int = 10, seed: int = 0, num_queries: int = 500,
                   noise: float = 0.5) -> tuple[float, int]:
    """Recall@k of `index` against exact search, on held-out queries near the library's vectors.

    Queries are library vectors plus Gaussian noise of norm about `noise`, re-normalised: close to
    real data but never identical to an indexed vector.
    """
    n, dim = vectors.shape
    if n == 0:
        return 1.0, 0
    k = min(k, n)
    rng = np.random.default_rng(seed + 1)
    rows = np.sort(rng.choice(n, size=min(n, num_queries), replace=False))
    q = np.asarray(vectors[rows], dtype=np.float32)
    q = q + rng.standard_normal(q.shape).astype(np.float32) * (noise / np.sqrt(dim))
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    for start in range(0, n, BLOCK):
        block = np.asarray(vectors[start : start + BLOCK], dtype=np.float32)
        s = q @ block.T
        cand_s = np.concatenate([best_s, s], axis=1)
        cand_i = np.concatenate([best_i, np.arange(start, start + len(block))[None, :].repeat(len(q), 0)], axis=1)
        top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s = np.take_along_axis(cand_s, top, 1)
        best_i = np.take_along_axis(cand_i, top, 1)
    _, approx = index.search(np.ascontiguousarray(q), k)
    hits = sum(len(set(a.tolist()) & set(e.tolist())) for a, e in zip(approx, best_i))
    return round(hits / (len(q) * k), 4), len(q)


def write_index(index, path: Path) -> None:
    """faiss.write_index to a temp file, then rename (atomic)."""
    faiss = _faiss()
    try:
        atomic_save(path, lambda tmp: faiss.write_index(index, str(tmp)))
    except RuntimeError as e:  # faiss reports a failed write as RuntimeError, without the errno
        if shutil.disk_usage(Path(path).parent).free < (1 << 20):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise LibraryError(f"{path}: faiss could not write the index ({str(e).strip().splitlines()[-1]})") from e


def read_index(path: Path, info: dict[str, Any] | None = None):
    """Load an index written by write_index and re-apply the manifest's search parameters."""
    path = Path(path)
    if not path.is_file():
        raise LibraryError(f"{path}: index file missing; the library is damaged, rebuild it")
    try:
        index = _faiss().read_index(str(path))
    except RuntimeError as e:
        raise LibraryError(f"{path}: cannot read the faiss index ({e})") from e
    _set_params(index, (info or {}).get("params", ""))
    return index
