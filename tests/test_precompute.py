"""precompute end to end: generated videos plus crafted bad files, random:tiny model.

One uninterrupted reference build (module fixture) is what every other path must reproduce:
killed-and-resumed, sharded-and-merged, torchrun. Embeddings are compared up to fp16 rounding.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from media_files import write_audio_only

from precompute import BuildSettings, LibraryError, ModelMismatchError, build_library, open_library
from precompute.merge import merge_libraries

REPO = Path(__file__).resolve().parent.parent
GOOD = 13  # 8 moving-shapes clips + 5 plain synthetic clips
ALWAYS_BAD = {"bad/empty.mp4", "bad/notes.mp4", "bad/truncated.mp4", "bad/audio_only.mp4"}
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _settings(**kw) -> BuildSettings:
    base = dict(workers=1, chunk_size=4, batch_size=4, progress_bar=False, thumb_height=24)
    base.update(kw)
    return BuildSettings(**base)


def _make_source(root: Path) -> Path:
    """SOURCE folder: shapes/ (8 clips), plain/ (5 odd-but-valid clips), bad/ (files that must fail)."""
    from training.shapes import write_dataset
    from video.decode import write_video

    ds = write_dataset(root / "ds", seed=0, num_train=6, num_test=2, size=(64, 48), seconds=1.0, fps=12)
    src = root / "src"
    shutil.copytree(ds / "videos", src / "shapes", ignore=shutil.ignore_patterns(".*"))
    plain = src / "plain"
    plain.mkdir()
    red = np.zeros((12, 48, 64, 3), np.uint8)
    red[..., 0] = 220
    write_video(plain / "red.mp4", red, 12)
    ramp = np.linspace(0, 255, 12, dtype=np.uint8)[:, None, None, None] * np.ones((12, 48, 64, 3), np.uint8)
    write_video(plain / "fade.mov", ramp, 12)  # mp4 data in a .mov name: fine for the decoders
    write_video(plain / "one_frame.mp4", red[:1], 12)
    long = np.zeros((7200, 16, 16, 3), np.uint8)  # one hour at 2 fps: only 12 frames get decoded
    long[..., 1] = (np.arange(7200) % 256)[:, None, None]
    write_video(plain / "hour_long.mp4", long, 2)
    yy, xx = np.mgrid[0:2160, 0:3840]
    huge = np.stack([(xx % 256), (yy % 256), np.full_like(xx, 128)], -1).astype(np.uint8)
    write_video(plain / "huge_4k.mp4", np.stack([huge, huge[::-1]]), 2)
    bad = src / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "notes.mp4").write_text("this is not a video\n" * 50)
    (bad / "truncated.mp4").write_bytes((src / "shapes" / "shapes0000.mp4").read_bytes()[:300])
    write_audio_only(bad / "audio_only.mp4")
    unreadable = bad / "unreadable.mp4"
    shutil.copy(src / "shapes" / "shapes0001.mp4", unreadable)
    unreadable.chmod(0)  # root reads it anyway; then it is simply indexed
    (src / "README.txt").write_text("not a video extension: ignored\n")
    return src


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The tiny model is fastest on one thread, and on a shared 2-core machine far steadier."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _make_source(tmp_path_factory.mktemp("precompute"))


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("reference") / "lib"
    report = build_library(source, out, tiny_model, _settings())
    return report, open_library(out)


def _copy_source(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, symlinks=True)  # copy2 keeps mtimes: same ids, sizes and mtimes
    return dest


def assert_same_library(a, b) -> None:
    assert a.ids == b.ids
    np.testing.assert_allclose(a.video_emb.astype(np.float32), b.video_emb.astype(np.float32), atol=2e-3)
    np.testing.assert_allclose(a.frame_emb.astype(np.float32), b.frame_emb.astype(np.float32), atol=2e-3)
    for ra, rb in zip(a.records, b.records):
        da, db = vars(ra).copy(), vars(rb).copy()
        assert da == db
    assert sorted(f["id"] for f in a.failures) == sorted(f["id"] for f in b.failures)
    for rec in a.records:
        assert (a.root / rec.thumbnail).is_file() and (a.root / rec.poster).is_file()
    assert a.manifest["fingerprint"] == b.manifest["fingerprint"] and a.manifest["count"] == b.manifest["count"]


# ------------------------------------------------------------------------------------ one build


def test_build_indexes_good_files_and_records_bad_ones(reference, source, tiny_model):
    report, lib = reference
    failed = {f["id"] for f in lib.failures}
    good = GOOD + (1 if IS_ROOT else 0)  # unreadable.mp4 is readable by root
    assert ALWAYS_BAD <= failed and len({r.video for r in lib.records}) == good and report.indexed == good
    assert report.videos == good and report.total == len(lib) > good  # the hour-long video is many segments
    assert report.failed == len(failed) and report.exit_code == 0 and report.removed == 0
    assert set(report.seconds) >= {"decode", "encode", "caption", "write", "index", "total"}
    reasons = {f["id"]: f["reason"] for f in lib.failures}
    assert "empty file" in reasons["bad/empty.mp4"]
    assert "no video stream" in reasons["bad/audio_only.mp4"]
    assert all(set(f) >= {"path", "reason"} for f in lib.failures)
    if not IS_ROOT:
        assert "permission" in reasons["bad/unreadable.mp4"]

    assert lib.ids == sorted(lib.ids) and "shapes/shapes0000.mp4" in lib.ids and "README.txt" not in lib.ids
    m = lib.manifest
    assert m["fingerprint"] == tiny_model.fingerprint and m["model"] == "random:tiny"
    assert (m["frames"], m["dim"], m["count"]) == (12, tiny_model.embed_dim, len(lib))
    assert m["index"]["type"] == "Flat" and m["source_root"] == str(source)
    assert m["settings"]["batch_size"] == 4 and m["generated_captions"] is False
    norms = np.linalg.norm(lib.video_emb.astype(np.float32), axis=1)
    assert np.allclose(norms, 1.0, atol=2e-3)
    assert np.allclose(np.linalg.norm(lib.frame_emb.astype(np.float32), axis=-1), 1.0, atol=2e-3)

    rec = {r.id: r for r in lib.records}
    hour = [lib.records[i] for i in lib.rows_of_video("plain/hour_long.mp4")]  # --segments auto, the default
    assert all(h.duration == pytest.approx(3600, rel=0.01) and h.fps == pytest.approx(2.0) for h in hour)
    assert hour[0].start == 0 and hour[-1].end == pytest.approx(3600, rel=0.01)
    assert all(a.end == b.start for a, b in zip(hour, hour[1:])) and [h.segment for h in hour] == list(range(len(hour)))
    assert all(h.end - h.start <= 30 + 1e-6 and len(h.timestamps) == 12 for h in hour)
    assert all(h.start <= t <= h.end for h in hour for t in h.timestamps)
    assert len({h.thumbnail for h in hour}) == len(hour) and m["segments"]["mode"] == "auto"
    assert rec["plain/red.mp4"].video == "plain/red.mp4" and rec["plain/red.mp4"].segment == 0  # short: whole
    assert rec["plain/one_frame.mp4"].timestamps == [0.0] * 12
    assert rec["shapes/shapes0003.mp4"].captions == [] and rec["shapes/shapes0003.mp4"].generated_caption is None
    assert lib.path_of(lib.ids.index("plain/red.mp4")) == source / "plain" / "red.mp4"
    from PIL import Image

    strip = Image.open(lib.root / rec["plain/fade.mov"].thumbnail)
    assert strip.height == 24 and strip.width == 12 * 32  # 12 frames of 64x48 scaled to 24 px high
    px = np.asarray(strip.convert("L"), dtype=np.float32)
    assert px[:, :32].mean() < px[:, -32:].mean()  # a fade-in, left to right: time order

    # Search with the model's text tower: the library answers with valid rows.
    import torch

    with torch.inference_mode():
        q = tiny_model.encode_text(["a red circle moves left"]).numpy()
    scores, idx = lib.search(q, 5)
    assert idx.shape == (1, 5) and (idx >= 0).all() and np.all(np.diff(scores[0]) <= 1e-6)
    # A video's own embedding finds itself first.
    _, idx = lib.search(lib.video_emb[3].astype(np.float32), 1)
    assert idx[0, 0] == 3


def test_annotation_source_keeps_ground_truth_captions(tmp_path, tiny_model):
    from training.shapes import write_dataset

    ds = write_dataset(tmp_path / "ds", seed=1, num_train=3, num_test=2, size=(48, 32), seconds=1.0, fps=6)
    report = build_library(ds / "MSRVTT_JSFUSION_test.csv", tmp_path / "lib", tiny_model, _settings(workers=0))
    lib = open_library(tmp_path / "lib")
    assert lib.ids == ["shapes0003", "shapes0004"] and report.indexed == 2
    assert all(len(r.captions) == 1 for r in lib.records)
    assert lib.records[0].path == "videos/shapes0003.mp4" and lib.path_of(0).is_file()
    assert lib.manifest["source_kind"] == "msrvtt-csv"


def test_captions_only_from_a_trained_head(tmp_path, source):
    from model import load_model

    m = load_model("random:tiny")
    m.config.caption_trained = True  # mechanics only: the head is random, so are its words
    report = build_library(source / "shapes", tmp_path / "lib", m, _settings(limit=2, workers=0, caption_max_len=5))
    lib = open_library(tmp_path / "lib")
    assert lib.manifest["generated_captions"] is True and report.seconds["caption"] > 0
    assert all(isinstance(r.generated_caption, str) for r in lib.records)
    m.config.caption_trained = False
    report = build_library(source / "shapes", tmp_path / "lib2", m, _settings(limit=1, workers=0, captions="on"))
    assert open_library(tmp_path / "lib2").records[0].generated_caption is None
    assert any("no trained captioning head" in w for w in report.warnings)


# ------------------------------------------------------------------------------------ incremental


def test_incremental_add_remove_change(tmp_path, source, tiny_model):
    from video.decode import write_video

    src = tmp_path / "src"
    shutil.copytree(source / "shapes", src / "shapes")
    (src / "bad").mkdir()
    (src / "bad" / "empty.mp4").write_bytes(b"")
    out = tmp_path / "lib"
    first = build_library(src, out, tiny_model, _settings(workers=0))
    assert (first.indexed, first.failed) == (8, 1)
    before = open_library(out)
    emb_before = {i: before.video_emb[n].copy() for n, i in enumerate(before.ids)}
    removed_thumb = out / before.records[before.ids.index("shapes/shapes0002.mp4")].thumbnail

    (src / "shapes" / "shapes0002.mp4").unlink()                                   # removed
    shutil.copy2(source / "plain" / "red.mp4", src / "shapes" / "new_red.mp4")     # added
    changed = src / "shapes" / "shapes0005.mp4"                                    # changed content
    write_video(changed, np.full((12, 48, 64, 3), 90, np.uint8), 12)
    os.utime(changed, (time.time() + 5, time.time() + 5))

    second = build_library(src, out, tiny_model, _settings(workers=0))
    assert (second.indexed, second.removed, second.skipped_unchanged) == (2, 1, 6)
    assert (second.failed, second.failed_before) == (0, 1)  # the empty file is not retried
    lib = open_library(out)
    assert "shapes/shapes0002.mp4" not in lib.ids and "shapes/new_red.mp4" in lib.ids and len(lib) == 8
    assert not removed_thumb.exists()
    row = {i: n for n, i in enumerate(lib.ids)}
    for vid, emb in emb_before.items():
        if vid in row and vid != "shapes/shapes0005.mp4":
            assert np.array_equal(lib.video_emb[row[vid]], emb)  # reused, not re-encoded
    assert not np.allclose(lib.video_emb[row["shapes/shapes0005.mp4"]], emb_before["shapes/shapes0005.mp4"])
    assert [f["id"] for f in lib.failures] == ["bad/empty.mp4"]

    third = build_library(src, out, tiny_model, _settings(workers=0))
    assert third.up_to_date and third.indexed == 0 and third.total == 8
    retry = build_library(src, out, tiny_model, _settings(workers=0, retry_failed=True))
    assert (retry.indexed, retry.failed) == (0, 1)

    # --limit keeps only the first N ids (the others leave the library), and the index type can change.
    limited = build_library(src, out, tiny_model, _settings(workers=0, limit=3, index="HNSW16"))
    lib = open_library(out)
    assert limited.indexed == 0 and limited.removed == 6 and lib.manifest["index"]["type"] == "HNSW16"
    assert lib.ids == ["shapes/new_red.mp4", "shapes/shapes0000.mp4"] and len(lib.failures) == 1


def test_other_model_is_refused_then_overwrite_rebuilds(tmp_path, source, tiny_model, capsys):
    import torch

    from model import load_model
    from precompute.__main__ import main

    other = load_model("random:tiny")
    with torch.no_grad():
        other.prompt.add_(0.01)
    other.invalidate_fingerprint()
    assert other.fingerprint != tiny_model.fingerprint
    out = tmp_path / "lib"
    build_library(source / "shapes", out, other, _settings(limit=2, workers=0))
    with pytest.raises(ModelMismatchError) as e:
        build_library(source / "shapes", out, tiny_model, _settings(limit=2, workers=0))
    msg = str(e.value)
    assert other.fingerprint in msg and tiny_model.fingerprint in msg and "--overwrite" in msg
    with pytest.raises(ModelMismatchError, match="frames=12"):
        build_library(source / "shapes", out, other, _settings(limit=2, workers=0, frames=6))
    with pytest.raises(ModelMismatchError):
        open_library(out).check_model(tiny_model.fingerprint)

    # The CLI says the same, exits 2, and --overwrite rebuilds.
    args = [str(source / "shapes"), "--out", str(out), "--model", "random:tiny", "--limit", "2", "--workers", "0",
            "--no-progress"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["indexed"] == 2 and report["exit_code"] == 0
    assert open_library(out).fingerprint == tiny_model.fingerprint


def test_nothing_indexable_exits_1(tmp_path, source):
    from precompute.__main__ import main

    src = tmp_path / "src"
    src.mkdir()
    for name in ("empty.mp4", "notes.mp4", "audio_only.mp4"):
        shutil.copy(source / "bad" / name, src / name)
    assert main([str(src), "--out", str(tmp_path / "lib"), "--model", "random:tiny", "--workers", "0",
                 "--no-progress"]) == 1
    lib = open_library(tmp_path / "lib")
    assert len(lib) == 0 and len(lib.failures) == 3
    (tmp_path / "none").mkdir()
    assert main([str(tmp_path / "none"), "--out", str(tmp_path / "lib2"), "--model", "random:tiny",
                 "--no-progress"]) == 1


# ------------------------------------------------------------------------------------ resumable


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path, source, reference, tiny_model):
    src = _copy_source(source, tmp_path / "src")
    out = tmp_path / "lib"
    env = dict(os.environ, PRECOMPUTE_SLEEP_AFTER_CHUNK="2")
    log = open(tmp_path / "log.txt", "w")
    cmd = [sys.executable, "-m", "precompute", str(src), "--out", str(out), "--model", "random:tiny",
           "--workers", "1", "--chunk-size", "4", "--batch-size", "4", "--thumb-height", "24", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    chunks = out / ".work" / "chunks"
    deadline = time.monotonic() + 120
    while not (chunks.is_dir() and list(chunks.glob("chunk-*.json"))):
        assert proc.poll() is None, (tmp_path / "log.txt").read_text()
        assert time.monotonic() < deadline, "no chunk written in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    if sys.platform.startswith("linux"):  # its decode worker dies with it (and so releases the library)
        deadline = time.monotonic() + 10
        while _processes_mentioning(str(out)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _processes_mentioning(str(out)), "orphaned decode worker"
    with pytest.raises(LibraryError, match="interrupted"):
        open_library(out)

    report = build_library(src, out, tiny_model, _settings())
    # Chunks hold whole files only (a long video's segments commit together): count files.
    assert report.resumed >= 1 and report.resumed + report.indexed == reference[0].indexed
    assert not (out / ".work").exists()
    assert_same_library(open_library(out), reference[1])


# ------------------------------------------------------------------------------------ sharded


def test_two_shards_merged_equal_one_build(tmp_path, source, reference, tiny_model):
    shards = []
    for i in range(2):
        shard = tmp_path / f"shard{i}"
        report = build_library(source, shard, tiny_model, _settings(num_shards=2, shard_id=i, workers=0))
        assert report.total > 0 and open_library(shard).manifest["shard"] == {"id": i, "num_shards": 2}
        shards.append(shard)
    assert len(open_library(shards[0])) + len(open_library(shards[1])) == len(reference[1])
    with pytest.raises(LibraryError, match=r"shards \[1\] are missing"):
        merge_libraries(shards[:1], tmp_path / "partial")

    from precompute.merge import main

    assert main([str(s) for s in shards] + ["--out", str(tmp_path / "merged")]) == 0
    merged = open_library(tmp_path / "merged")
    assert_same_library(merged, reference[1])
    assert "shard" not in merged.manifest and merged.manifest["settings"]["num_shards"] == 1


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_equal_one_build(tmp_path, source, reference):
    src = _copy_source(source, tmp_path / "src")
    out = tmp_path / "lib"
    torchrun = Path(sys.executable).parent / "torchrun"
    cmd = [str(torchrun) if torchrun.exists() else "torchrun", "--standalone", "--nproc_per_node=2", "-m",
           "precompute", str(src), "--out", str(out), "--model", "random:tiny", "--workers", "0",
           "--chunk-size", "4", "--batch-size", "4", "--thumb-height", "24", "--no-progress", "--device", "cpu"]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[merged]" in run.stderr and "[rank 1]" in run.stderr
    assert_same_library(open_library(out), reference[1])
    assert not (out / ".work").exists()


def test_library_moved_with_its_videos_still_finds_them(tmp_path, source, tiny_model):
    """The bundled demo library ships beside its clips: a clone in another folder must play them."""
    import shutil

    first = tmp_path / "a"
    src = first / "videos"
    shutil.copytree(source / "shapes", src)
    build_library(src, first / "lib", tiny_model, _settings(limit=2, workers=0))
    moved = tmp_path / "b"
    shutil.move(str(first), str(moved))
    lib = open_library(moved / "lib")
    assert lib.path_of(0) is not None and lib.path_of(0).is_file()
    assert str(moved) in str(lib.path_of(0))
