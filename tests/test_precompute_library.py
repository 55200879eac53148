"""precompute's library format, reader, index and assembly, on synthetic vectors (no model, no video)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from precompute import FORMAT_VERSION, LibraryError, ModelMismatchError, VideoRecord, open_library
from precompute import writer as W
from precompute.index import build_index, measure_recall
from precompute.library import media_key, shard_of

DIM, FRAMES = 16, 6


def _vectors(n: int, dim: int = DIM, rank: int = 4, seed: int = 0) -> np.ndarray:
    """Low-rank + noise unit vectors: structured like real embeddings (ANN on uniform noise is meaningless)."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, dim)) + 0.1 * rng.standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _write(root: Path, n: int, index: str = "Flat", source_root: Path | None = None, fingerprint: str = "abc") -> Path:
    video = _vectors(n).astype(np.float16)
    frames = np.repeat(video[:, None, :], FRAMES, axis=1)
    rows = W.Rows(video, frames)
    entries = [W.Entry(VideoRecord(id=f"v{i:03d}.mp4", path=f"v{i:03d}.mp4", duration=1.0, fps=12.0,
                                   timestamps=[0.1 * j for j in range(FRAMES)]), rows, i) for i in range(n)]
    manifest = {"format_version": FORMAT_VERSION, "model": "test:model", "fingerprint": fingerprint,
                "frames": FRAMES, "dim": DIM, "source_root": str(source_root) if source_root else None,
                "settings": {"max_side": 512}}
    root.mkdir(parents=True, exist_ok=True)
    W.commit(root, entries, [{"id": "bad.mp4", "path": "bad.mp4", "reason": "empty file (0 bytes)"}], manifest,
             index, None)
    return root


def test_library_roundtrip_and_exact_search(tmp_path):
    lib = open_library(_write(tmp_path / "lib", 20))
    assert len(lib) == 20 and lib.ids[0] == "v000.mp4"
    assert lib.video_emb.shape == (20, DIM) and lib.video_emb.dtype == np.float16
    assert lib.frame_emb.shape == (20, FRAMES, DIM)
    assert isinstance(lib.video_emb, np.memmap)  # flat memory at any size
    assert lib.failures == [{"id": "bad.mp4", "path": "bad.mp4", "reason": "empty file (0 bytes)"}]
    assert lib.manifest["count"] == 20 and lib.manifest["index"]["type"] == "Flat"
    q = lib.video_emb[[3, 7]].astype(np.float32)
    scores, idx = lib.search(q, 5)
    assert scores.shape == idx.shape == (2, 5)
    assert idx[:, 0].tolist() == [3, 7] and np.allclose(scores[:, 0], 1.0, atol=2e-3)
    s1, i1 = lib.search(q[0], 100)  # 1-D query; k clipped to N
    assert i1.shape == (1, 20) and i1[0, 0] == 3
    s0, i0 = lib.search(q, 0)
    assert i0.shape == (2, 0)
    with pytest.raises(ValueError, match="queries must be"):
        lib.search(np.zeros(DIM + 1, np.float32), 3)
    assert not (lib.root / ".work").exists()


def test_empty_library(tmp_path):
    lib = open_library(_write(tmp_path / "lib", 0))
    assert len(lib) == 0 and lib.video_emb.shape == (0, DIM)
    scores, idx = lib.search(np.ones(DIM, np.float32), 10)
    assert idx.shape == (1, 0)


def test_hnsw_factory_records_recall(tmp_path):
    lib = open_library(_write(tmp_path / "lib", 300, index="HNSW16"))
    info = lib.manifest["index"]
    assert info["type"] == "HNSW16" and info["params"] == "efSearch=64"
    assert info["recall_queries"] == 300 and 0.8 <= info["recall_at_10"] <= 1.0
    _, idx = lib.search(lib.video_emb[5].astype(np.float32), 3)
    assert idx[0, 0] == 5


def test_untrainable_factory_falls_back_to_flat_with_warning(tmp_path):
    lib = open_library(_write(tmp_path / "lib", 20, index="IVF64,PQ4"))
    info = lib.manifest["index"]
    assert info["type"] == "Flat" and info["requested"] == "IVF64,PQ4"
    assert "could not be trained on 20 vectors" in info["warning"]
    assert lib.search(lib.video_emb[2].astype(np.float32), 1)[1][0, 0] == 2


def test_bad_factory_string_is_a_clear_error():
    with pytest.raises(ValueError, match="faiss cannot build index 'NoSuchIndex'"):
        build_index(_vectors(10), "NoSuchIndex")


def test_measure_recall_exact_is_one():
    import faiss

    v = _vectors(50)
    index = faiss.IndexFlatIP(DIM)
    index.add(v)
    assert measure_recall(index, v)[0] == 1.0


def test_check_model_and_path_of(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    (src / "v001.mp4").write_bytes(b"x")
    lib = open_library(_write(tmp_path / "lib", 3, source_root=src))
    lib.check_model("abc")
    with pytest.raises(ModelMismatchError) as e:
        lib.check_model("def", spec="random:tiny")
    msg = str(e.value)
    assert "abc" in msg and "def" in msg and "test:model" in msg and "--overwrite" in msg
    assert lib.path_of(1) == src / "v001.mp4" and lib.path_of(0) is None


def test_open_library_errors(tmp_path):
    with pytest.raises(LibraryError, match="not a precompute library"):
        open_library(tmp_path)
    (tmp_path / ".work").mkdir()
    with pytest.raises(LibraryError, match="interrupted"):
        open_library(tmp_path)
    root = _write(tmp_path / "lib", 2)
    m = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text(json.dumps(dict(m, format_version=99)))
    with pytest.raises(LibraryError, match="format version 99"):
        open_library(root)


def test_recover_finishes_an_assembly_killed_between_moves(tmp_path, monkeypatch):
    """A kill while the final files move into place: the next start completes the move."""
    root = _write(tmp_path / "lib", 5)
    old_ids = open_library(root).ids
    real_replace = os.replace
    calls = {"n": 0}

    def flaky(src, dst):
        if Path(src).parent.name == "final" and Path(dst).parent == root:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt("simulated kill")
        return real_replace(src, dst)

    monkeypatch.setattr(W.os, "replace", flaky)
    with pytest.raises(KeyboardInterrupt):
        _write(root, 8)
    monkeypatch.setattr(W.os, "replace", real_replace)
    # Arrays moved, records not: a reader gets a clear error, never mixed rows.
    with pytest.raises(LibraryError, match="being assembled"):
        open_library(root)
    assert len(old_ids) == 5
    assert W.recover(root)
    lib = open_library(root)
    assert len(lib) == 8 and lib.video_emb.shape[0] == 8


def test_half_written_assembly_is_dropped(tmp_path):
    root = _write(tmp_path / "lib", 4)
    final = root / ".work" / "final"
    final.mkdir(parents=True)
    (final / "video_emb.npy").write_bytes(b"garbage")
    assert not W.recover(root)
    assert not final.exists() and len(open_library(root)) == 4


def test_media_key_and_shards_are_stable():
    assert media_key("a/b.mp4") == media_key("a/b.mp4") != media_key("a/c.mp4")
    ids = [f"clip{i}.mp4" for i in range(200)]
    parts = [[i for i in ids if shard_of(i, 3) == s] for s in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids) and all(len(p) > 30 for p in parts)
    assert all(shard_of(i, 1) == 0 for i in ids)


def test_build_lock_is_exclusive(tmp_path):
    with W.BuildLock(tmp_path):
        with pytest.raises(LibraryError, match="another precompute run"):
            with W.BuildLock(tmp_path):
                pass
    with W.BuildLock(tmp_path):  # released
        pass
