"""The fast CPU text path (model.text_fast): the features and rankings of the exact path, or refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from model.text_fast import FastTextError, TextTower, build_fast_text, fast_text_wanted

BANK = Path(__file__).resolve().parent.parent / "assets" / "captions" / "bank.txt"
TEXTS = ["a dog", "a red circle moves to the left and then comes back to the middle of the frame", "x",
         "people dance at a party", "a man is cooking pasta in a small kitchen while talking to the camera " * 3]


def _queries(n: int) -> list[str]:
    lines = [ln.strip() for ln in BANK.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return lines[:n]


@pytest.fixture(scope="module")
def shapes_model():
    from model import load_model

    return load_model("bundled:moving-shapes")


def _exact(model, texts):
    with torch.inference_mode():
        return model.encode_text(texts).float()


@pytest.mark.parametrize("backend", ["onnx", "torch"])
@pytest.mark.parametrize("which", ["tiny", "shapes"])
def test_fast_features_match_the_exact_path(backend, which, tiny_model, shapes_model):
    model = tiny_model if which == "tiny" else shapes_model
    fast = model.fast_text_encoder(backend)
    assert fast.backend == backend
    got = fast.encode(model.tokenize(TEXTS))  # mixed lengths in one batch, one longer than the context
    want = _exact(model, TEXTS)
    assert got.shape == want.shape == (len(TEXTS), model.embed_dim)
    assert float((got - want).abs().max()) <= 1e-4
    np.testing.assert_allclose(got.norm(dim=-1).numpy(), 1.0, atol=1e-5)


def _top10_identical(model, fast, n_lib: int = 10_000, n_queries: int = 100) -> None:
    queries = _queries(n_queries)
    lib = torch.nn.functional.normalize(torch.randn(n_lib, model.embed_dim, generator=torch.Generator().manual_seed(0)),
                                        dim=-1)
    want = _exact(model, queries) @ lib.T
    got = fast.encode(model.tokenize(queries)) @ lib.T
    top_want, top_got = want.topk(10).indices, got.topk(10).indices
    assert len(queries) == n_queries
    assert torch.equal(top_want, top_got)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_fast_rankings_match_on_a_10k_library(backend, shapes_model):
    _top10_identical(shapes_model, shapes_model.fast_text_encoder(backend))


@pytest.mark.slow
def test_vit_b32_text_tower_matches_and_ranks_the_same():
    from model import load_model

    model = load_model("random:ViT-B-32")
    fast = model.fast_text_encoder("onnx")
    got, want = fast.encode(model.tokenize(TEXTS)), _exact(model, TEXTS)
    assert float((got - want).abs().max()) <= 1e-3
    _top10_identical(model, fast)


def test_a_backend_that_disagrees_with_the_reference_is_refused(tiny_model):
    def off_by_a_little(tokens):
        return tiny_model.encode_tokens(tokens) + 1e-2

    with pytest.raises(FastTextError, match="differ by"):
        build_fast_text(tiny_model.clip, tiny_model.tokenize, off_by_a_little, "torch")


def test_unknown_backend_and_unsupported_towers_are_refused(tiny_model):
    with pytest.raises(FastTextError, match="unknown fast text backend"):
        tiny_model.fast_text_encoder("tensorrt")

    class NotCausal(torch.nn.Module):
        attn_mask = None
        text_pool_type = "argmax"

    with pytest.raises(FastTextError, match="not causal"):
        TextTower(NotCausal())


def test_the_onnx_export_is_cached_and_reused(tiny_model, tmp_path):
    first = tiny_model.fast_text_encoder("onnx", cache_dir=tmp_path)
    cached = tmp_path / "text-onnx" / f"{tiny_model.fingerprint}.onnx"
    assert cached.is_file() and cached.stat().st_size > 1000
    cached.write_bytes(b"not an onnx file")  # a cached file really is what gets loaded
    with pytest.raises(Exception):
        tiny_model.fast_text_encoder("onnx", cache_dir=tmp_path)
    cached.unlink()
    again = tiny_model.fast_text_encoder("onnx", cache_dir=tmp_path)
    tokens = tiny_model.tokenize(TEXTS)
    assert torch.allclose(first.encode(tokens), again.encode(tokens), atol=1e-6)


@pytest.mark.parametrize("value, wanted", [("0", None), ("off", None), ("onnx", "onnx"), ("torch", "torch"),
                                           ("", "auto")])
def test_the_environment_switch(monkeypatch, value, wanted):
    monkeypatch.setenv("PROMPTSWITCH_FAST_TEXT", value)
    assert fast_text_wanted() == wanted


def test_the_engine_uses_the_fast_path_and_can_be_switched_off(tmp_path, tiny_model, monkeypatch):
    from shapes_library import make_shapes_library

    from app.engine import SearchEngine
    from precompute import open_library

    lib_dir, videos = make_shapes_library(tmp_path / "lib", tiny_model, num=4)
    fast = SearchEngine(tiny_model, open_library(lib_dir), served_dirs=[videos])
    monkeypatch.setenv("PROMPTSWITCH_FAST_TEXT", "off")
    exact = SearchEngine(tiny_model, open_library(lib_dir), served_dirs=[videos])
    assert fast.text_path.startswith("fast CPU path") and exact.text_path.startswith("exact")
    assert fast.info()["text_encoder"] == fast.text_path
    for q in ["a red circle moves left", "a blue square grows"]:
        a, b = fast.search(q, 4), exact.search(q, 4)
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], atol=1e-5)
