"""The app's engine (no web server): ranking, frame similarity, describe, bad input, start-up fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine import Limits, QueryError, SearchEngine, clean_query


@pytest.fixture(scope="module")
def tiny_library(tmp_path_factory, tiny_model):
    from shapes_library import make_shapes_library

    return make_shapes_library(tmp_path_factory.mktemp("applib"), tiny_model, num=6)


@pytest.fixture(scope="module")
def engine(tiny_library, tiny_model, tmp_path_factory):
    from precompute import open_library

    lib_dir, videos = tiny_library
    bank = ["a dog runs on the beach", "a red circle moves left", "a person cooks pasta", "a car drives at night"]
    return SearchEngine(tiny_model, open_library(lib_dir), caption_bank=bank, served_dirs=[videos],
                        cache_dir=tmp_path_factory.mktemp("appcache"))


def _brute_force(engine, query):
    q = engine.model.encode_text([query]).detach().numpy()[0].astype(np.float32)
    scores = np.asarray(engine.library.video_emb, dtype=np.float32) @ q
    return scores


@pytest.mark.parametrize("query", ["a red circle moves left", "the blue square grows", "something else entirely"])
def test_search_ranking_is_brute_force_cosine(engine, query):
    res = engine.search(query, 5)
    assert res.ok and res.message == "" and res.query == query
    scores = _brute_force(engine, query)
    order = np.argsort(-scores, kind="stable")[:5]
    got = [h.index for h in res.hits]
    assert [h.rank for h in res.hits] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([h.score for h in res.hits], scores[order], atol=1e-4)
    # Same order, up to exact ties.
    for a, b in zip(got, order):
        assert a == b or abs(scores[a] - scores[b]) < 1e-5
    h = res.hits[0]
    assert h.caption and h.captions and h.poster is not None and h.poster.is_file()
    assert h.video is not None and h.video.is_file() and h.thumbnail.is_file()


@pytest.mark.parametrize("query", ["", "   ", "\n\t  \r", None, "\x00\x01\x1b"])
def test_empty_queries_get_a_message(engine, query):
    res = engine.search(query, 5)
    assert not res.ok and not res.hits
    assert "empty" in res.message


def test_long_query_is_cut_and_the_user_told(engine):
    query = "a red circle moves left " * 420  # about 10,000 characters
    res = engine.search(query, 3)
    assert res.ok and len(res.hits) == 3
    assert f"{len(query.strip()):,} characters" in res.message and "reads" in res.message
    assert len(res.query) < 200


@pytest.mark.parametrize("query,searched,note", [
    ("🐶🏖️ a dog 🎉", "🐶🏖️ a dog 🎉", None),
    ("a red\x00 circle\x1b[31m moves\u202e left", "a red circle [31m moves left", "Removed 3 control"),
    ("a red circle \ud800 left", "a red circle left", "Removed 1 control"),  # a lone surrogate (JSON escapes)
    ("ＡＢＣ Zürich café", "ＡＢＣ Zürich café", None),
])
def test_emoji_and_control_characters(engine, query, searched, note):
    res = engine.search(query, 3)
    assert res.ok and len(res.hits) == 3
    assert res.query == searched
    if note is None:
        assert res.message == ""  # nothing was removed, so nothing is said
    else:
        assert note in res.message


def test_clean_query_collapses_whitespace():
    assert clean_query("  a \t b\n\nc  ")[0] == "a b c"
    with pytest.raises(QueryError):
        clean_query("\x07")


def test_k_is_clamped(engine):
    assert len(engine.search("a circle", 0).hits) == 1
    res = engine.search("a circle", 10**6)
    assert len(res.hits) == len(engine.library) and res.ok
    res = engine.search("a circle", "many")
    assert res.ok and "not a number" in res.message


def test_frame_similarity_in_time_order(engine):
    i = 2
    sim = engine.frame_similarity("a red circle moves left", engine.library.ids[i])
    assert sim.ok and sim.timestamps == sorted(sim.timestamps)
    q = engine.model.encode_text(["a red circle moves left"]).detach().numpy()[0]
    fe = np.asarray(engine.library.frame_emb[i], dtype=np.float32)
    direct = dict(zip(np.round(engine.library.records[i].timestamps, 6), fe @ q))
    for t, s in zip(sim.timestamps, sim.scores):
        assert abs(direct[round(t, 6)] - s) < 1e-5
    assert sim.best == int(np.argmax(sim.scores))
    assert 0 <= sim.best_time <= sim.duration
    assert not engine.frame_similarity("x", "no-such-video").ok
    assert not engine.frame_similarity("", i).ok


def test_describe_a_real_clip(engine, tiny_library):
    _, videos = tiny_library
    clip = sorted(videos.glob("*.mp4"))[1]
    d = engine.describe(str(clip))
    assert d.ok, d.message
    assert d.generated_caption is None and "no trained captioning head" in d.captioner_note
    assert len(d.bank) == 4 and [c.score for c in d.bank] == sorted([c.score for c in d.bank], reverse=True)
    assert d.library_captions and all(c.source in engine.library.ids for c in d.library_captions)
    assert [c.score for c in d.library_captions] == sorted([c.score for c in d.library_captions], reverse=True)
    # The clip is in the library: its own entry is (up to fp16 storage) the best match.
    top = d.similar[0].score
    assert top > 0.99
    assert any(h.id == clip.stem and top - h.score < 2e-3 for h in d.similar)
    assert d.frames is not None and d.frames.shape[0] == len(d.timestamps) and d.timestamps == sorted(d.timestamps)
    assert d.duration == pytest.approx(2.0, abs=0.2)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, tiny_library):
    """Files that are not videos, or not there, each with the words its message must hold."""
    from PIL import Image

    d = tmp_path_factory.mktemp("bad")
    clip = sorted(tiny_library[1].glob("*.mp4"))[0]
    (d / "empty.mp4").write_bytes(b"")
    (d / "notes.mp4").write_text("this is not a video\n" * 50)
    (d / "noise.avi").write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (d / "cut.mp4").write_bytes(clip.read_bytes()[:200])
    Image.new("RGB", (8, 8)).save(d / "picture.png")
    return d


@pytest.mark.parametrize("name,words", [
    (None, "No video was uploaded"),
    ("", "No video was uploaded"),
    ("missing.mp4", "missing"),
    ("empty.mp4", "empty (0 bytes)"),
    ("notes.mp4", "could not be read as a video"),
    ("noise.avi", "could not be read as a video"),
    ("cut.mp4", "could not be read as a video"),
    (".", "missing"),  # a folder
])
def test_describe_bad_files(engine, bad_files, name, words):
    path = name if not name else str(bad_files / name)
    d = engine.describe(path)
    assert not d.ok and words in d.message, (path, d.message)
    assert str(bad_files) not in d.message  # the server's folders are never shown


def test_a_still_image_is_one_frame(engine, bad_files):
    """PyAV reads a PNG as a one-frame video: it is described, from that one frame."""
    d = engine.describe(str(bad_files / "picture.png"))
    assert d.ok, d.message
    assert len(d.timestamps) == 1 and d.frames.shape[0] == 1


def test_upload_limits(engine, tiny_library):
    _, videos = tiny_library
    clip = sorted(videos.glob("*.mp4"))[0]
    old = engine.limits
    try:
        engine.limits = Limits(max_upload_bytes=100)
        d = engine.describe(str(clip))
        assert not d.ok and "the limit is" in d.message and "MB" in d.message
        engine.limits = Limits(max_video_seconds=1.0)
        d = engine.describe(str(clip))
        assert not d.ok and "long" in d.message and "limit" in d.message
    finally:
        engine.limits = old


def test_library_of_another_model_is_refused(tiny_library, tiny_model):
    import torch

    from model import load_model
    from precompute import ModelMismatchError, open_library

    other = load_model("random:tiny")
    with torch.no_grad():
        other.prompt.add_(0.5)
    other.invalidate_fingerprint()
    assert other.fingerprint != tiny_model.fingerprint
    with pytest.raises(ModelMismatchError):
        SearchEngine(other, open_library(tiny_library[0]))


def test_queries_never_reload(engine, monkeypatch):
    import model.hub
    import precompute.library

    def boom(*a, **k):
        raise AssertionError("reloaded during a request")

    monkeypatch.setattr(model.hub, "load_model", boom)
    monkeypatch.setattr(precompute.library, "open_library", boom)
    for q in ["a red circle", "a red circle", "a green square"]:
        assert engine.search(q, 3).ok
    assert "a red circle" in engine._text_cache


def test_info_for_the_library_tab(engine):
    info = engine.info()
    assert info["model"] == "random:tiny" and info["videos"] == 6
    assert info["model_fingerprint"] == info["library_fingerprint"]
    assert info["index"]["type"] == "Flat" and info["settings"]["frames"] == 12
    assert isinstance(info["failures"], list)


def test_startup_falls_back_offline(tmp_path, tiny_library, monkeypatch):
    """Default model unreachable, hub library unreachable -> random:tiny over a --videos folder, and why."""
    import shutil

    import app.startup as startup
    from app.config import from_args

    _, videos = tiny_library
    folder = tmp_path / "my videos"
    folder.mkdir()
    for p in sorted(videos.glob("*.mp4"))[:3]:
        shutil.copy(p, folder / p.name)
    (folder / "broken.mp4").write_bytes(b"\x00" * 100)
    monkeypatch.setattr(startup, "FALLBACK_MODELS", ("bundled:does-not-exist", "random:tiny"))
    import app.network

    monkeypatch.setattr(app.network, "go_offline_if_unreachable", lambda timeout=3.0: True)
    cfg = from_args(["--library", "hf-hub:nobody/no-such-dataset", "--videos", str(folder),
                     "--cache-dir", str(tmp_path / "cache")], environ={})
    cfg.model = "clip:ViT-B-32-quickgelu/openai"
    lines: list[str] = []
    st = startup.start(cfg, progress=lines.append)
    assert st.model_spec == "random:tiny" and st.offline
    text = " ".join(st.attempts)
    assert "clip:ViT-B-32-quickgelu/openai" in text and "no network" in text
    assert "bundled:does-not-exist" in text
    assert "no-such-dataset" in text
    assert "videos folder" in st.library_reason
    lib = st.engine.library
    assert len(lib) == 3 and len(lib.failures) == 1
    assert sorted(st.video_files) == sorted(p.resolve() for p in folder.glob("*.mp4") if p.name != "broken.mp4")
    from app.ui import banner

    text = banner(st)
    assert "Offline:" in text and "random:tiny" in text and "meaningless" in text
    assert any("building" in m for m in lines)
    # Started again: the library built for this model is reused, not rebuilt...
    st2 = startup.start(cfg, progress=None)
    assert "indexed earlier" in st2.library_reason and st2.library_root == st.library_root
    # ... and a video added to the folder is indexed at the next start, alone.
    shutil.copy(sorted(videos.glob("*.mp4"))[3], folder / "new clip.mp4")
    st3 = startup.start(cfg, progress=None)
    assert "1 new or changed" in st3.library_reason and len(st3.engine.library) == 4


def _hub_cache_with(library, tmp_path, commit: str, monkeypatch):
    """A Hub cache laid out on disk holding `library` as dataset someone/shapes-library at `commit`."""
    import shutil

    import huggingface_hub.constants as hub_constants

    repo = tmp_path / "hub" / "datasets--someone--shapes-library"
    shutil.copytree(library, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    return repo


def test_library_from_a_hub_dataset_in_the_cache(tmp_path, tiny_library, tiny_model, monkeypatch):
    """--library hf-hub:org/name[@rev] resolves through huggingface_hub's cache (offline here)."""


    import app.startup as startup
    from app.config import from_args

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = _hub_cache_with(tiny_library[0], tmp_path, commit, monkeypatch)
    assert startup.resolve_hub_library("hf-hub:someone/shapes-library") == repo / "snapshots" / commit
    assert startup.resolve_hub_library("hf-hub:someone/shapes-library@main") == repo / "snapshots" / commit
    with pytest.raises(Exception, match="could not download the library dataset someone/other"):
        startup.resolve_hub_library("hf-hub:someone/other")
    with pytest.raises(Exception, match="expected hf-hub"):
        startup.resolve_hub_library("hf-hub:not a repo")

    cfg = from_args(["--model", "random:tiny", "--library", "hf-hub:someone/shapes-library",
                     "--cache-dir", str(tmp_path / "cache")], environ={})
    st = startup.start(cfg, progress=None)
    assert "you configured" in st.library_reason and len(st.engine.library) == 6
    # The snapshot holds no videos; the folder it names is a stranger's claim, so nothing is played
    # (posters and strips only) and the banner says how to allow it ...
    assert st.video_files == [] and len(st.attempts) == 1 and "--video-root" in st.attempts[0]
    # ... which the operator does by naming the folder: then its files are playable, each one named exactly.
    cfg.video_roots = [tiny_library[1].parent]
    st = startup.start(cfg, progress=None)
    assert st.attempts == []
    assert sorted(st.video_files) == sorted(p.resolve() for p in tiny_library[1].glob("*.mp4"))


def test_default_library_is_the_sample_clips(tmp_path, tiny_model, monkeypatch):
    """A model that is not the bundled one gets the sample clips of assets/videos, with their captions."""
    import json

    import app.startup as startup
    from app.config import SAMPLE_VIDEOS, from_args

    if not (SAMPLE_VIDEOS / "captions.json").is_file():
        pytest.skip("assets/videos is not there yet")
    folder_model = tmp_path / "model"
    tiny_model.save_pretrained(folder_model)
    cfg = from_args(["--model", str(folder_model), "--cache-dir", str(tmp_path / "cache")], environ={})
    st = startup.start(cfg, progress=None)
    assert st.attempts == [] and "sample clips" in st.library_reason
    lib = st.engine.library
    table = json.loads((SAMPLE_VIDEOS / "captions.json").read_text())
    assert len(lib) == len([p for p in SAMPLE_VIDEOS.glob("*.mp4")])
    for rec in lib.records:
        assert rec.captions == table[rec.id] or rec.captions == table.get(rec.path.split("/")[-1]), rec.id
    assert sorted(st.video_files) == sorted(p.resolve() for p in SAMPLE_VIDEOS.glob("*.mp4"))
    hit = st.engine.search("a rabbit", 1).hits[0]
    assert hit.video is not None and hit.caption in table[hit.id]


def test_library_of_another_model_is_reindexed_at_startup(tmp_path, tiny_library):
    """--library built with other weights is never served; its videos are indexed again for this model."""
    import torch

    import app.startup as startup
    from app.config import from_args
    from model import load_model

    other = load_model("random:tiny")
    with torch.no_grad():
        other.prompt.add_(0.5)
    other.invalidate_fingerprint()
    other.save_pretrained(tmp_path / "other-model")
    cfg = from_args(["--model", str(tmp_path / "other-model"), "--library", str(tiny_library[0]),
                     "--cache-dir", str(tmp_path / "cache")], environ={})
    st = startup.start(cfg, progress=None)
    assert "was built with model 'random:tiny'" in " ".join(st.attempts)
    assert st.library_root != tiny_library[0] and st.library_root.is_relative_to(tmp_path / "cache")
    assert st.engine.library.fingerprint == st.engine.fingerprint != load_model("random:tiny").fingerprint
    assert len(st.engine.library) == 6


def test_settings_from_flags_and_environment(tmp_path):
    from app.config import DEFAULT_MODEL, from_args

    env = {"PROMPTSWITCH_MODEL": "hf-hub:org/model@v1", "PROMPTSWITCH_LIBRARY": "hf-hub:org/lib",
           "PROMPTSWITCH_VIDEOS": str(tmp_path), "HF_HOME": str(tmp_path / "hf"), "SPACE_ID": "org/space",
           "PROMPTSWITCH_MAX_UPLOAD_MB": "20"}
    cfg = from_args([], environ=env)
    assert (cfg.model, cfg.library, cfg.videos) == ("hf-hub:org/model@v1", "hf-hub:org/lib", tmp_path)
    assert cfg.host == "0.0.0.0" and cfg.port == 7860 and cfg.max_upload_bytes == 20 * 2**20
    assert cfg.cache_dir == tmp_path / "hf" / "promptswitch"
    cfg = from_args(["--model", "random:tiny", "--port", "9000", "--no-fallback"], environ=env)
    assert cfg.model == "random:tiny" and cfg.port == 9000 and not cfg.fallback
    cfg = from_args([], environ={})
    assert cfg.model_spec == DEFAULT_MODEL and not cfg.model_explicit and cfg.host == "127.0.0.1"


def test_huge_query_is_cut_before_it_is_scanned(monkeypatch):
    """A 10M-character query: only a bounded prefix is looked at character by character."""
    import unicodedata

    import app.engine as engine_module

    seen = []
    category = unicodedata.category

    def counting_category(ch):
        seen.append(ch)
        return category(ch)

    monkeypatch.setattr(engine_module.unicodedata, "category", counting_category)
    text, notes = engine_module.clean_query("a dog runs " * 1_000_000, max_chars=1000)
    assert len(seen) <= 4000
    assert text == ("a dog runs " * 100)[:1000].rstrip()
    assert any("10,999,999 characters" in n for n in notes)  # counted without the trailing space


def test_library_alone_loads_the_model_its_manifest_names(tmp_path, tiny_library, monkeypatch):
    """--library without --model: the library's own model, no default CLIP attempt, no re-indexing."""
    import app.startup as startup
    from app.config import from_args

    def no_probe(*a, **k):
        raise AssertionError("the Hub was probed although nothing needs it")

    import app.network

    monkeypatch.setattr(app.network, "go_offline_if_unreachable", no_probe)
    cfg = from_args(["--library", str(tiny_library[0]), "--cache-dir", str(tmp_path / "cache")], environ={})
    st = startup.start(cfg, progress=None)
    assert st.model_spec == "random:tiny" and st.attempts == []
    assert st.model_reason == "the model named in the library's manifest"
    assert st.library_root == tiny_library[0] and not (tmp_path / "cache" / "libraries").exists()


def test_library_model_that_cannot_load_falls_back_and_says_why(tmp_path, tiny_library, monkeypatch):
    import json
    import shutil

    import app.startup as startup
    from app.config import from_args

    lib = tmp_path / "lib"
    shutil.copytree(tiny_library[0], lib)
    manifest = json.loads((lib / "manifest.json").read_text())
    manifest["model"] = "bundled:no-such-model"
    (lib / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(startup, "FALLBACK_MODELS", ("random:tiny",))
    cfg = from_args(["--library", str(lib), "--cache-dir", str(tmp_path / "cache")], environ={})
    st = startup.start(cfg, progress=None)
    assert st.model_spec == "random:tiny" and st.model_reason == "the fallback model"
    assert len(st.attempts) == 1
    assert "Could not load model bundled:no-such-model (named in the library's manifest)" in st.attempts[0]
    from app.ui import banner

    assert "named in the library" in banner(st)


def test_hub_library_alone_loads_its_model_offline(tmp_path, tiny_library, monkeypatch):
    """--library hf-hub:org/name with no --model and no network: the dataset and its model from the cache."""


    import app.network
    import app.startup as startup
    from app.config import from_args

    commit = "89abcdef0123456789abcdef0123456789abcdef"
    repo = _hub_cache_with(tiny_library[0], tmp_path, commit, monkeypatch)
    monkeypatch.setattr(app.network, "go_offline_if_unreachable", lambda timeout=3.0: True)
    cfg = from_args(["--library", "hf-hub:someone/shapes-library", "--cache-dir", str(tmp_path / "cache")],
                    environ={})
    st = startup.start(cfg, progress=None)
    assert st.model_spec == "random:tiny" and st.offline
    assert len(st.attempts) == 1 and "not played" in st.attempts[0]  # the videos' folder is not trusted
    assert st.library_root == repo / "snapshots" / commit and len(st.engine.library) == 6


@pytest.fixture(scope="module")
def bundled_engine():
    from app.config import BUNDLED_LIBRARY
    from model import load_model
    from precompute import open_library

    if not (BUNDLED_LIBRARY / "manifest.json").is_file():
        pytest.fail("the bundled library is missing from assets/")
    return SearchEngine(load_model("bundled:moving-shapes"), open_library(BUNDLED_LIBRARY))


def test_describe_marks_videos_the_model_cannot_know(bundled_engine):
    """The shapes model calls a real clip "a white square ..."; the page must say that is a guess."""
    from app.config import SAMPLE_VIDEOS

    real = bundled_engine.describe(str(SAMPLE_VIDEOS / "bird_on_branch.mp4"))
    assert real.ok and real.generated_caption and not real.confident
    shapes = bundled_engine.library.path_of(3)
    known = bundled_engine.describe(str(shapes))
    assert known.ok and known.confident and known.nearest > 0.99  # the same clip, encoded the same way


@pytest.mark.parametrize("query,words", [
    ("asdf qwerty zzz", "knows none of these words (asdf, qwerty, zzz)"),
    ("a dog on the beach", "knows none of these words (dog, on, beach)"),
    ("a red dog moves left", "does not know: dog"),
    ("a red circle moves left", None),
])
def test_queries_outside_the_vocabulary_get_a_notice(bundled_engine, query, words):
    res = bundled_engine.search(query, 3)
    assert res.ok and len(res.hits) == 3
    assert (words in res.message) if words else res.message == ""


def test_the_bundled_library_is_the_offline_fallback_and_its_absence_is_said(tmp_path, monkeypatch):
    import app.startup as startup
    from app.config import from_args

    cfg = from_args(["--cache-dir", str(tmp_path / "cache")], environ={})
    cfg.model = "bundled:moving-shapes"
    monkeypatch.setattr(startup, "BUNDLED_LIBRARY", tmp_path / "gone")
    monkeypatch.setattr(startup, "FALLBACK_MODELS", ())
    with pytest.raises(startup.StartupError, match="The bundled library .*gone is missing"):
        startup.start(cfg, progress=None)


def test_the_bundled_library_finds_its_videos_beside_itself():
    """A clone plays the bundled videos: no absolute path of the building machine is followed or kept."""
    import json

    from app.config import ASSETS, BUNDLED_LIBRARY
    from precompute import open_library

    lib = open_library(BUNDLED_LIBRARY)
    assert lib.source_root == (ASSETS / "shapes-videos").resolve()
    assert all(lib.path_of(i) is not None and lib.path_of(i).is_relative_to(ASSETS.resolve()) for i in range(len(lib)))

    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    for manifest in ASSETS.rglob("*.json"):
        absolute = [s for s in strings(json.loads(manifest.read_text())) if s.startswith(("/", "~"))]
        assert not absolute, (manifest, absolute)
