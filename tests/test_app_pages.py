"""app.pages: every text the page shows, from plain values (no browser, no model)."""

from __future__ import annotations

import re

import pytest

from app import pages


def test_bundled_notice_states_what_the_generator_makes():
    from training.shapes import COLORS, MOTIONS, SHAPES

    text = pages.model_notice("bundled:moving-shapes")
    assert f"{len(COLORS)} colours, {len(SHAPES)} shapes, {len(MOTIONS)} motions" in text
    assert "synthetic moving shapes" in text


@pytest.mark.parametrize("spec,words", [
    ("clip:ViT-B-32-quickgelu/openai", "not Prompt Switch weights"),
    ("random:tiny", "meaningless"),
    ("hf-hub:org/promptswitch-msrvtt", None),
])
def test_model_notice(spec, words):
    text = pages.model_notice(spec)
    assert (words in text) if words else text == ""


def test_banner_says_model_library_and_why():
    text = pages.banner_markdown("clip:ViT-B-32", "the default model", "lib", 1234, "your videos folder",
                                 ["Could not load model hf-hub:x/y: no network"], offline=True)
    assert "not Prompt Switch weights" in text and "1,234 videos" in text
    assert "Offline: Could not load model hf-hub:x/y: no network." in text
    assert "Note:" not in pages.banner_markdown("random:tiny", "r", "lib", 1, "why", [], offline=False)


def test_header_links_the_paper_and_the_code():
    text = pages.header_markdown()
    assert f"]({pages.PAPER_URL})" in text and f"]({pages.CODE_URL})" in text


@pytest.mark.parametrize("captions,path,vid,label", [
    (["a dog runs"], "clips/dog.mp4", "dog", "a dog runs"),
    (["", "  ", "second"], "clips/dog.mp4", "dog", "second"),
    ([], "clips/holiday 2019.mp4", "x1", "holiday 2019.mp4"),
    ([], None, "x1", "x1"),
])
def test_display_label_never_uses_a_generated_caption(captions, path, vid, label):
    assert pages.display_label(captions, path, vid) == label


def test_engine_labels_fall_back_to_the_file_name(tmp_path, tiny_model):
    """A library without captions (a plain folder) shows file names, even when captions were generated."""
    import json

    from shapes_library import make_shapes_library

    from app.engine import SearchEngine
    from precompute import open_library

    lib_dir, videos = make_shapes_library(tmp_path, tiny_model, num=2)
    rows = [json.loads(line) for line in (lib_dir / "videos.jsonl").read_text().splitlines()]
    for r in rows:
        r["captions"], r["generated_caption"] = [], "a white square expands"
    (lib_dir / "videos.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine = SearchEngine(tiny_model, open_library(lib_dir), served_dirs=[videos])
    hits = engine.search("a red circle", 2).hits
    assert sorted(h.caption for h in hits) == sorted(r["path"].split("/")[-1] for r in rows)


@pytest.mark.parametrize("captions,fallback,expected", [
    ([["a red circle moves left"], ["the blue square grows"], []], pages.GENERIC_EXAMPLES,
     ["a red circle moves left", "the blue square grows"]),
    ([[], []], pages.SHAPES_EXAMPLES, list(pages.SHAPES_EXAMPLES)),
    ([], pages.GENERIC_EXAMPLES, list(pages.GENERIC_EXAMPLES)),
])
def test_example_queries_come_from_the_library(captions, fallback, expected):
    assert pages.example_queries(captions, fallback=fallback) == expected


def test_example_queries_are_spread_and_distinct():
    caps = [[f"caption {i // 2}"] for i in range(40)]
    got = pages.example_queries(caps, n=4)
    assert len(got) == 4 and len(set(got)) == 4 and got[0] == "caption 0"


@pytest.mark.parametrize("confident,low", [(True, False), (False, True)])
def test_generated_caption_is_marked_when_unsure(confident, low):
    text = pages.generated_markdown("a white square expands", "", confident, 0.31)
    assert "a white square expands" in text
    assert ("Low confidence" in text) is low
    assert ("0.310" in text) is low


def test_no_caption_says_why():
    text = pages.generated_markdown(None, "This model has no trained captioning head.", True, 0.9)
    assert "no trained captioning head" in text and "Generated caption" not in text


@pytest.mark.parametrize("shown,words", [("video", None), ("missing", "not available here"),
                                         ("unplayable", "does not play in browsers")])
def test_result_markdown(shown, words):
    text = pages.result_markdown("clip_1", 0.4321, 75.25, ["a *bold* claim"], "a guess", shown)
    assert "clip\\_1" in text and "0.432" in text and "1:15.2" in text
    assert "a \\*bold\\* claim" in text and "may be wrong" in text
    assert (words in text) if words else "sampled frames" not in text


def test_status_lines():
    assert "**3** results for “a dog”" in pages.search_status(3, "a dog", 0.012)
    assert "12 ms" in pages.search_status(3, "a dog", 0.012)
    assert "⚠️ cut" in pages.search_status(3, "a dog", 0.1, "cut")
    assert "Described a 2.5 s video from 12 sampled frames" in pages.describe_status(2.5, 12, 1.0)
    assert "empty" in pages.first_screen_status(0, 0)
    assert "**36** videos" in pages.first_screen_status(36, 36)
    assert "first 12" in pages.first_screen_status(36, 12)


def test_similarity_alt_text():
    text = pages.similarity_alt_text("a dog", [0.0, 1.0, 2.0], [0.1, 0.3, 0.2], 1)
    assert "3 sampled frames" in text and "0.100" in text and "0.300" in text and "0:01.0" in text
    assert "No frames" in pages.similarity_alt_text("a dog", [], [], None)


def test_library_details_show_no_server_path():
    info = {"model": "random:tiny", "model_fingerprint": "abc", "captioning_head": "none",
            "library": "/srv/secret/place/my-lib", "library_model": "random:tiny", "library_fingerprint": "abc",
            "videos": 3, "frames_per_video": 12, "dim": 64, "index": {"type": "Flat"},
            "settings": {"frames": 12, "batch_size": 8, "index": "Flat"}, "caption_bank": 0,
            "library_captions": 5, "failures": [{"path": "/srv/secret/bad.mp4", "reason": "no video stream"}],
            "notes": ["a note"]}
    text = pages.library_details_markdown(info, "the model you configured", "your folder", ["an attempt"])
    assert "/srv/secret" not in text and "`my-lib`" in text and "bad.mp4" in text
    assert "batch_size" not in text  # the 24 build settings are cut to the few that matter
    assert "- an attempt" in text and "- a note" in text


@pytest.mark.parametrize("text", ["<script>x</script>", "a | b", "[link](http://x)", "`code`"])
def test_md_escape_leaves_no_markup(text):
    out = pages.md_escape(text)
    assert "<script>" not in out and not re.search(r"(?<!\\)[|`\[\]]", out)
