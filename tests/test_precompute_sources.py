"""precompute's SOURCE scanning, decode workers (crash and hang isolation) and CLI import cost."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from precompute.reader import DecodeTask
from precompute.sources import scan_source
from precompute.workers import DecodePool, decode_stream

REPO = Path(__file__).resolve().parent.parent


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_is_searched_recursively_with_stable_ids(tmp_path):
    _touch(tmp_path / "b.mp4")
    _touch(tmp_path / "sub" / "deeper" / "a.MKV")
    _touch(tmp_path / "sub" / "notes.txt")
    _touch(tmp_path / ".hidden" / "c.mp4")
    _touch(tmp_path / "sub" / ".partial.tmp.mp4")
    src = scan_source(tmp_path)
    assert src.kind == "folder" and src.root == tmp_path.absolute()
    assert [i.id for i in src.items] == ["b.mp4", "sub/deeper/a.MKV"]
    assert all(i.size == 1 and i.mtime > 0 and i.error is None for i in src.items)
    assert src.items[1].path == tmp_path / "sub" / "deeper" / "a.MKV"


def test_path_list_relative_absolute_missing(tmp_path):
    a = _touch(tmp_path / "vids" / "a.mp4")
    elsewhere = _touch(tmp_path.parent / f"{tmp_path.name}-other" / "z.mp4")
    lst = tmp_path / "list.txt"
    lst.write_text(f"# my videos\nvids/a.mp4\n\n{elsewhere}\nvids/missing.mp4\nvids/a.mp4\n")
    src = scan_source(lst)
    # ids stay relative to the list's folder (absolute outside it); stored paths are relative to the
    # folder holding the list and every listed file, so a library never stores an absolute path
    assert src.kind == "list" and src.root == tmp_path.parent
    by_id = {i.id: i for i in src.items}
    assert set(by_id) == {"vids/a.mp4", elsewhere.as_posix(), "vids/missing.mp4"}
    assert by_id["vids/a.mp4"].path == a and by_id["vids/a.mp4"].rel == f"{tmp_path.name}/vids/a.mp4"
    assert by_id[elsewhere.as_posix()].rel == f"{tmp_path.name}-other/z.mp4"
    assert by_id["vids/missing.mp4"].error == "file not found"


def _msrvtt(root: Path) -> None:
    for vid in ("video0", "video1", "video2"):
        _touch(root / "videos" / "all" / f"{vid}.mp4")
    data = {"videos": [{"video_id": v} for v in ("video0", "video1", "video2", "video9")],
            "sentences": [{"video_id": "video0", "caption": "a cat"}, {"video_id": "video0", "caption": "a pet"},
                          {"video_id": "video1", "caption": "a dog"}]}
    (root / "MSRVTT_data.json").write_text(json.dumps(data))
    (root / "MSRVTT_JSFUSION_test.csv").write_text("key,vid_key,video_id,sentence\nret0,msr1,video1,a brown dog\n")
    (root / "MSRVTT_train.9k.csv").write_text("video_id\nvideo0\nvideo2\n")


def test_msrvtt_json_and_csv(tmp_path):
    _msrvtt(tmp_path)
    src = scan_source(tmp_path / "MSRVTT_data.json")
    assert src.kind == "msrvtt-json" and src.video_dir == tmp_path / "videos" / "all"
    by_id = {i.id: i for i in src.items}
    assert list(by_id) == ["video0", "video1", "video2", "video9"]
    assert by_id["video0"].captions == ["a cat", "a pet"] and by_id["video2"].captions == []
    assert by_id["video0"].rel == "videos/all/video0.mp4"
    assert by_id["video9"].error == "file not found"

    test = scan_source(tmp_path / "MSRVTT_JSFUSION_test.csv")
    assert [(i.id, i.captions) for i in test.items] == [("video1", ["a brown dog"])]
    train = scan_source(tmp_path / "MSRVTT_train.9k.csv")  # captions come from MSRVTT_data.json
    assert [(i.id, i.captions) for i in train.items] == [("video0", ["a cat", "a pet"]), ("video2", [])]
    other = tmp_path / "elsewhere"
    _touch(other / "video1.webm")
    assert scan_source(tmp_path / "MSRVTT_JSFUSION_test.csv", video_dir=other).items[0].path == other / "video1.webm"


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        scan_source(tmp_path / "nope")
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="video_id"):
        scan_source(tmp_path / "x.csv")
    (tmp_path / "y.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="MSR-VTT"):
        scan_source(tmp_path / "y.json")
    (tmp_path / "z.csv").write_text("video_id\nvideo5\n")
    with pytest.raises(FileNotFoundError, match="--video-dir"):
        scan_source(tmp_path / "z.csv")


# ------------------------------------------------------------------------------ workers


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    from video.decode import write_video

    root = tmp_path_factory.mktemp("clips")
    for name, colour in (("red", (230, 20, 20)), ("blue", (20, 20, 230))):
        frames = np.zeros((6, 32, 32, 3), np.uint8)
        frames[:] = colour
        write_video(root / f"{name}.mp4", frames, 6)
    return root


def _tasks(root: Path, names=("red", "blue", "blue", "red", "blue")):
    return [DecodeTask(seq=i, id=f"{n}{i}", path=str(root / f"{n}.mp4"), frames=6, thumb_height=8)
            for i, n in enumerate(names)]


def _crash_on_red(frames: np.ndarray) -> np.ndarray:
    if frames[..., 0].mean() > 150:
        import faulthandler

        faulthandler.disable()  # pytest's handler would print the simulated crash's traceback
        os.kill(os.getpid(), signal.SIGSEGV)
    return frames.astype(np.float32)


def _hang_on_red(frames: np.ndarray) -> np.ndarray:
    if frames[..., 0].mean() > 150:
        time.sleep(60)
    return frames.astype(np.float32)


def test_decode_in_process_and_in_workers_agree(two_clips):
    a = {r.id: r for r in decode_stream(_tasks(two_clips), None, 0)}
    b = {r.id: r for r in decode_stream(_tasks(two_clips), lambda f: f.astype(np.float32), 2)}
    assert set(a) == set(b) and all(r.ok for r in b.values())
    assert all(r.thumb and r.poster and len(r.timestamps) == 6 for r in a.values())
    assert b["red0"].pixels.shape == (6, 32, 32, 3)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based crash injection")
def test_a_crashing_decoder_fails_only_its_file(two_clips):
    with DecodePool(_crash_on_red, 1, timeout=60) as pool:
        results = {r.id: r for r in pool.imap_unordered(_tasks(two_clips))}
        assert pool.restarts == 2
    assert sorted(results) == ["blue1", "blue2", "blue4", "red0", "red3"]
    assert all(results[i].ok for i in ("blue1", "blue2", "blue4"))
    assert not results["red0"].ok and "SIGSEGV" in results["red0"].reason and "red.mp4" in results["red0"].reason


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based fault injection")
def test_a_hanging_decoder_times_out(two_clips):
    t0 = time.monotonic()
    with DecodePool(_hang_on_red, 2, timeout=1.5) as pool:
        results = {r.id: r for r in pool.imap_unordered(_tasks(two_clips, ("red", "blue", "blue")))}
    assert time.monotonic() - t0 < 20
    assert not results["red0"].ok and "longer than 1.5s" in results["red0"].reason
    assert results["blue1"].ok and results["blue2"].ok


def test_cli_help_does_not_import_torch():
    code = ("import runpy, sys\nsys.argv = ['precompute', '--help']\n"
            "try:\n    runpy.run_module('precompute', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules and 'faiss' not in sys.modules, 'heavy import'\n"
            "sys.argv = ['merge', '--help']\n"
            "try:\n    runpy.run_module('precompute.merge', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "--num-shards" in out.stdout and "--out LIBRARY" in out.stdout and "--allow-partial" in out.stdout


def test_every_build_setting_has_a_flag_with_its_help_and_default():
    """One source of defaults: the CLI is generated from BuildSettings (help text and default included)."""
    import dataclasses

    from precompute.__main__ import make_parser, settings_from_args
    from precompute.settings import BuildSettings

    parser = make_parser()
    help_text = " ".join(parser.format_help().split())
    by_dest = {a.dest: a for a in parser._actions}
    fields = [f for f in dataclasses.fields(BuildSettings) if f.metadata.get("flag") != ""]
    assert {f.name for f in fields} <= set(by_dest)
    for f in fields:
        action = by_dest[f.name]
        assert " ".join(f.metadata["help"].split()) in help_text, f.name
        if action.nargs != 0 and f.default is not None and f.name != "workers":
            assert action.default == f.default and f"(default: {f.default})" in help_text, f.name
    # parsing nothing but the required arguments gives exactly the dataclass defaults
    args = parser.parse_args(["src", "--out", "lib", "--model", "random:tiny"])
    assert settings_from_args(args) == BuildSettings()
    flipped = parser.parse_args(["src", "-o", "lib", "-m", "x", "--no-thumbnails", "--no-progress", "--workers", "0"])
    s = settings_from_args(flipped)
    assert (s.thumbnails, s.progress_bar, s.workers) == (False, False, 0)
