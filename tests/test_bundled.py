"""The offline demo as shipped: the trained moving-shapes model and the library built with it.

These check behaviour, not mechanics: the bundled model must see time (tell a clip from its
reversal), retrieve the right clip and caption it, on clips drawn from a seed it never saw.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model import load_model
from training.evaluate import evaluate_shapes
from training.shapes import parse_caption_all

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "assets" / "models" / "moving-shapes"
LIBRARY_DIR = ROOT / "assets" / "library-shapes"


@pytest.fixture(scope="module")
def bundled():
    return load_model("bundled:moving-shapes")


def test_bundled_model_is_small_and_trained(bundled) -> None:
    assert (MODEL_DIR / "model.safetensors").stat().st_size < 25 * 2**20
    assert bundled.has_trained_captioner and bundled.use_prompts


def test_bundled_model_sees_time_on_unseen_clips(bundled) -> None:
    ev = evaluate_shapes(bundled, seed=4242, size=200)
    assert ev.reversal_accuracy >= 0.95, ev
    assert ev.gallery_t2v_r1 >= 0.9, ev
    assert ev.caption_accuracy >= 0.9, ev


def test_same_weights_without_prompts_cannot_tell_time(bundled) -> None:
    bundled.use_prompts = False
    try:
        ev = evaluate_shapes(bundled, seed=4242, size=60)
    finally:
        bundled.use_prompts = True
    assert ev.reversal_accuracy == 0.5


def test_bundled_library_belongs_to_the_model_and_finds_its_clips(bundled) -> None:
    from precompute import open_library

    lib = open_library(LIBRARY_DIR)
    lib.check_model(bundled.fingerprint)
    assert len(lib) >= 20 and lib.manifest["generated_captions"]
    assert all(lib.path_of(i) is not None for i in range(len(lib)))
    # Every clip's canonical caption retrieves it first (captions are distinct in the library?
    # not necessarily: count a hit when the top video has the same caption).
    texts = [r.captions[0] for r in lib.records]
    q = bundled.encode_text(texts).detach().numpy().astype(np.float32)
    _, rows = lib.search(q, 1)
    right = sum(lib.records[int(r[0])].captions[0] == t for r, t in zip(rows, texts))
    assert right / len(texts) >= 0.9


def test_generated_library_captions_name_what_happens(bundled) -> None:
    from precompute import open_library

    lib = open_library(LIBRARY_DIR)
    ok = sum(parse_caption_all(r.generated_caption or "")[0] == parse_caption_all(r.captions[0])[0]
             for r in lib.records)
    assert ok / len(lib) >= 0.85


def test_engine_search_and_describe_on_the_bundled_demo(bundled) -> None:
    from app.engine import SearchEngine
    from precompute import open_library

    lib = open_library(LIBRARY_DIR)
    engine = SearchEngine(bundled, lib, served_dirs=[lib.source_root])
    target = lib.records[0]
    res = engine.search(target.captions[0], 5)
    assert res.ok and res.hits[0].caption and res.hits[0].score >= res.hits[-1].score
    assert parse_caption_all(res.hits[0].captions[0])[0] == parse_caption_all(target.captions[0])[0]
    d = engine.describe(lib.path_of(0))
    assert d.ok and d.generated_caption
    assert parse_caption_all(d.generated_caption)[0] == parse_caption_all(target.captions[0])[0]
    assert d.similar and d.similar[0].id == target.id
