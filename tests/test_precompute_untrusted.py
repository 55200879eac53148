"""precompute on hostile folders and hostile disks: every bad entry is one failure, never the run's end.

Non-UTF-8 file names, FIFOs and devices, unreadable folders, symlinks out of SOURCE; a read-only or
full output folder ends with one line and exit 3 (never a traceback, never SIGBUS).
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from precompute import BuildSettings, build_library, open_library
from precompute.__main__ import main
from precompute.errors import EXIT_CANNOT_WRITE
from precompute.library import FAILURES
from precompute.sources import scan_source

REPO = Path(__file__).resolve().parent.parent
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _settings(**kw) -> BuildSettings:
    base = dict(workers=0, chunk_size=4, batch_size=4, progress_bar=False, thumb_height=24)
    base.update(kw)
    return BuildSettings(**base)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    from video.decode import write_video

    frames = np.zeros((12, 32, 32, 3), np.uint8)
    frames[..., 2] = np.linspace(0, 255, 12, dtype=np.uint8)[:, None, None]
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, 12)


def _folder(root: Path, clip: Path, *names: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(clip, root / name)
    return root


def _failures(lib: Path) -> dict[str, str]:
    rows = [json.loads(line) for line in (lib / FAILURES).read_text().splitlines() if line.strip()]
    return {r["id"]: r["reason"] for r in rows}


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse non-UTF-8 names")
def test_non_utf8_name_is_one_failure_and_the_rest_is_indexed(tmp_path, clip, tiny_model):
    src = _folder(tmp_path / "src", clip, "good.mp4")
    shutil.copy(clip, os.path.join(os.fsencode(src), b"bad_\xff.mp4"))
    out = tmp_path / "lib"
    report = build_library(src, out, tiny_model, _settings())
    assert report.exit_code == 0 and report.total == 1 and report.failed == 1
    assert open_library(out).ids == ["good.mp4"]
    failures = _failures(out)
    assert list(failures) == ["bad_\\xff.mp4"] and "not valid UTF-8" in failures["bad_\\xff.mp4"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_is_refused_at_listing_time(tmp_path, clip):
    src = _folder(tmp_path / "src", clip, "good.mp4")
    os.mkfifo(src / "pipe.mp4")
    items = {i.id: i for i in scan_source(src).items}
    assert items["good.mp4"].error is None
    assert "not a regular file" in (items["pipe.mp4"].error or "")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_never_reaches_a_decoder_even_in_process(tmp_path, clip):
    """With --workers 0 a FIFO used to hang the run forever; now the build finishes (fresh process)."""
    src = _folder(tmp_path / "src", clip, "good.mp4")
    os.mkfifo(src / "pipe.mp4")
    cmd = [sys.executable, "-m", "precompute", str(src), "--out", str(tmp_path / "lib"), "--model", "random:tiny",
           "--workers", "0", "--no-progress"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail("a FIFO hung the build")
    assert done.returncode == 0, done.stderr
    assert "not a regular file" in _failures(tmp_path / "lib")["pipe.mp4"]


def test_unreadable_subfolder_is_recorded(tmp_path, clip, monkeypatch):
    src = _folder(tmp_path / "src", clip, "good.mp4")
    _folder(src / "private", clip, "hidden_from_us.mp4")
    real = os.scandir

    def scandir(path="."):
        if Path(path) == src / "private":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items = {i.id: i for i in scan_source(src).items}
    assert items["good.mp4"].error is None
    assert items["private/"].error == "cannot list folder (Permission denied)"


@pytest.mark.skipif(IS_ROOT, reason="root lists any folder")
def test_unreadable_subfolder_is_recorded_for_real(tmp_path, clip):
    src = _folder(tmp_path / "src", clip, "good.mp4")
    _folder(src / "private", clip, "x.mp4").chmod(0)
    try:
        items = {i.id: i for i in scan_source(src).items}
    finally:
        (src / "private").chmod(0o755)
    assert "cannot list folder" in (items["private/"].error or "")


def test_symlinks_out_of_source_are_refused_unless_followed(tmp_path, clip):
    outside = _folder(tmp_path / "outside", clip, "secret.mp4")
    src = _folder(tmp_path / "src", clip, "good.mp4")
    (src / "inside_link.mp4").symlink_to(src / "good.mp4")
    (src / "escape.mp4").symlink_to(outside / "secret.mp4")
    (src / "passwd.mp4").symlink_to("/etc/passwd")
    items = {i.id: i for i in scan_source(src).items}
    assert items["good.mp4"].error is None and items["inside_link.mp4"].error is None
    for name in ("escape.mp4", "passwd.mp4"):
        assert "leads outside SOURCE" in (items[name].error or ""), name
    followed = {i.id: i for i in scan_source(src, follow_symlinks=True).items}
    assert followed["escape.mp4"].error is None and followed["escape.mp4"].size == clip.stat().st_size


def test_follow_symlinks_flag_comes_from_build_settings():
    from precompute.__main__ import make_parser, settings_from_args

    args = make_parser().parse_args(["src", "--out", "lib", "--model", "random:tiny", "--follow-symlinks"])
    assert settings_from_args(args).follow_symlinks is True
    assert BuildSettings().follow_symlinks is False


def test_read_only_output_is_one_line_and_exit_3(tmp_path, clip, capsys, monkeypatch):
    src = _folder(tmp_path / "src", clip, "good.mp4")
    real_mkdir = Path.mkdir

    def read_only(self, *a, **kw):
        if tmp_path / "ro" in (self, *self.parents):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code = main([str(src), "--out", str(tmp_path / "ro" / "lib"), "--model", "random:tiny", "--workers", "0",
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_CANNOT_WRITE == 3
    assert len(err) == 1 and err[0].startswith("error: ") and "Read-only file system" in err[0]


def _mount_tmpfs(path: Path, options: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode(errors='replace').strip()}")


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) -> a fresh tmpfs folder; unmounted after the test. Skips where mounting is not allowed."""
    mounted: list[Path] = []

    def mount(options: str) -> Path:
        path = tmp_path / f"mnt{len(mounted)}"
        _mount_tmpfs(path, options)
        mounted.append(path)
        return path

    yield mount
    for path in mounted:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def test_read_only_mount_exits_3(tmp_path, clip, tmpfs):
    src = _folder(tmp_path / "src", clip, "good.mp4")
    ro = tmpfs("ro,size=1m")
    cmd = [sys.executable, "-m", "precompute", str(src), "--out", str(ro / "lib"), "--model", "random:tiny",
           "--workers", "0", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "Read-only file system" in done.stderr


def test_full_disk_during_assembly_is_an_error_not_sigbus(tmp_path, tmpfs):
    """The final arrays used to be written through memory maps: a full tmpfs killed the process (SIGBUS)."""
    small = tmpfs("size=256k")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        import numpy as np
        from precompute import VideoRecord
        from precompute import writer as W
        n, frames, dim = 64, 12, 512  # frame_emb alone is 786 KB: more than the disk holds
        video = np.ones((n, dim), np.float16) / np.sqrt(dim)
        rows = W.Rows(video, np.repeat(video[:, None], frames, 1))
        entries = [W.Entry(VideoRecord(id=f"v{{i}}", path=f"v{{i}}.mp4", duration=1.0, fps=1.0,
                                       timestamps=[0.0] * frames), rows, i) for i in range(n)]
        manifest = {{"format_version": 1, "fingerprint": "x", "frames": frames, "dim": dim}}
        try:
            W.commit(__import__("pathlib").Path({str(small)!r}), entries, [], manifest, "Flat", None)
        except OSError as e:
            print("refused:", e)
            sys.exit(3)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])
    assert "No space left on device" in done.stdout
    assert not (small / "manifest.json").exists()


def test_full_disk_cli_exits_3_with_one_line(tmp_path, clip, tmpfs):
    src = _folder(tmp_path / "src", clip, *(f"c{i}.mp4" for i in range(6)))
    small = tmpfs("size=48k")
    cmd = [sys.executable, "-m", "precompute", str(src), "--out", str(small / "lib"), "--model", "random:tiny",
           "--workers", "0", "--no-progress", "--chunk-size", "2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert done.returncode == 3, (done.returncode, done.stderr[-2000:])
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "No space left on device" in lines[-1]
    assert "Traceback" not in done.stderr
