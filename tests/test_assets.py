"""The shipped sample clips, their captions and attribution, and the caption bank."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

av = pytest.importorskip("av")

ASSETS = Path(__file__).resolve().parent.parent / "assets"
VIDEOS = ASSETS / "videos"
CAPTIONS = json.loads((VIDEOS / "captions.json").read_text(encoding="utf-8"))
CLIPS = sorted(CAPTIONS)

MAX_SECONDS = 10.5
MAX_WIDTH = 480
MAX_CLIP_BYTES = 2 * 1024 * 1024
MAX_TOTAL_BYTES = 8 * 1024 * 1024


def test_captions_json_shape():
    assert 3 <= len(CLIPS) <= 8
    for name, caps in CAPTIONS.items():
        assert name.endswith(".mp4") and "/" not in name
        assert isinstance(caps, list) and len(caps) >= 1
        for c in caps:
            assert isinstance(c, str) and c.strip() == c and c


def test_every_mp4_has_captions():
    on_disk = {p.name for p in VIDEOS.glob("*.mp4")}
    assert on_disk == set(CLIPS)


def test_total_size_is_small():
    assert sum((VIDEOS / n).stat().st_size for n in CLIPS) <= MAX_TOTAL_BYTES


@pytest.mark.parametrize("name", CLIPS)
def test_clip_is_short_small_browser_playable_h264(name):
    path = VIDEOS / name
    assert path.is_file()
    assert path.stat().st_size <= MAX_CLIP_BYTES
    with av.open(str(path)) as container:
        assert "mp4" in container.format.name.split(",")
        assert len(container.streams.video) == 1
        stream = container.streams.video[0]
        ctx = stream.codec_context
        assert ctx.name == "h264"
        assert ctx.pix_fmt == "yuv420p"  # what browsers decode
        assert 0 < ctx.width <= MAX_WIDTH and ctx.height > 0
        assert ctx.width % 2 == 0 and ctx.height % 2 == 0
        n = 0
        last = 0.0
        for frame in container.decode(stream):
            img = frame.to_ndarray(format="rgb24")
            assert img.shape == (ctx.height, ctx.width, 3)
            n += 1
            last = float(frame.time)
        assert n >= 24  # at least about a second of video
        assert last <= MAX_SECONDS
    # The index comes before the media data so a browser can start playing at once.
    head = path.read_bytes()[:4096]
    assert head[4:8] == b"ftyp"
    assert b"moov" in head


def test_attribution_names_every_clip():
    text = (ASSETS / "ATTRIBUTION.md").read_text(encoding="utf-8")
    for name in CLIPS:
        assert name in text, name
    assert "CC BY 3.0" in text and "CC0" in text


def test_caption_bank():
    raw = (ASSETS / "captions" / "bank.txt").read_text(encoding="utf-8")
    assert raw.isascii()
    lines = [ln.strip() for ln in raw.splitlines()]
    lines = [ln for ln in lines if ln]
    assert len(lines) >= 300
    assert len(set(lines)) == len(lines)
    assert all(4 <= len(ln.split()) <= 15 for ln in lines)
    assert (ASSETS / "captions" / "README.md").is_file()


def test_no_absolute_path_of_the_building_machine_under_assets():
    """A clone elsewhere must not follow (or leak) the path of the machine that built the assets."""
    import re

    root = Path(__file__).resolve().parent.parent / "assets"
    pattern = re.compile(r'"(/(?:home|root|work|tmp|Users|var|mnt)/[^"]*)"')
    found = [f"{p.relative_to(root)}: {m}" for p in root.rglob("*") if p.suffix in (".json", ".jsonl", ".md", ".csv")
             for m in pattern.findall(p.read_text(errors="replace"))]
    assert not found, found


def test_a_portable_build_records_no_absolute_path(tmp_path):
    from precompute import BuildSettings, build_library
    from training.shapes import write_dataset

    data = write_dataset(tmp_path / "data", seed=1, num_train=0, num_test=2, size=(64, 48), seconds=1.0, fps=12)
    out = tmp_path / "lib"
    report = build_library(data / "MSRVTT_data.json", out, "random:tiny",
                           BuildSettings(workers=0, progress_bar=False, portable=True))
    assert report.exit_code == 0
    text = (out / "manifest.json").read_text() + (out / "videos.jsonl").read_text()
    assert str(tmp_path) not in text
    from precompute.library import open_library

    assert open_library(out).path_of(0).is_file()  # it still finds its videos, relative to itself
