"""Decoding hostile uploads: memory and work for the files of issue 10 (attacks 2 and 3).

    python bench/decode_untrusted.py [--size 512] [--raw-frames 3000] [--gop-seconds 580] [--code DIR]

Writes two files into a temp folder: raw H.264 with no frame count under an .mp4 name, and a video
that is one keyframe interval long (4 fps). Each is read with read_frames (12 frames, PyAV and the
default backend) in a fresh process; the table shows seconds, frames the decoder produced (PyAV) and
how much the process grew (peak RSS). --code DIR decodes with another checkout (e.g. an older commit
from `git archive`) for a before/after comparison.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from bench.machine import describe
from bench.media import encode_gradient as encode

REPO = Path(__file__).resolve().parent.parent


def measure(path: Path, backend: str, code_dir: Path) -> dict:
    """Decode 12 frames in a fresh process; seconds, decoded frames, RSS growth (MB), or the error."""
    script = textwrap.dedent(f"""
        import json, resource, sys, time
        sys.path.insert(0, {str(code_dir)!r})
        import av, numpy
        from video.decode import read_frames
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        try:
            fr = read_frames({str(path)!r}, 12, backend={backend!r})
            out = dict(frames=fr.info.num_frames, used=fr.backend, decoded=getattr(fr, "decoded", None))
        except Exception as e:
            out = dict(error=str(e)[:80])
        out.update(seconds=time.perf_counter() - t,
                   grown_mb=(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512, help="frame width and height")
    p.add_argument("--raw-frames", type=int, default=3000, help="frames of the raw H.264 stream")
    p.add_argument("--gop-seconds", type=int, default=580, help="length of the one-keyframe video at 4 fps")
    p.add_argument("--code", type=Path, default=REPO, help="checkout whose video/decode.py is measured")
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "raw H.264, no frame count": encode(Path(tmp) / "raw.mp4", a.raw_frames, a.size, 25, "h264"),
            "one keyframe": encode(Path(tmp) / "gop.mp4", 4 * a.gop_seconds, a.size, 4, "mp4", gop=10**6),
        }
        print(f"decoding 12 sampled frames with {a.code}")
        print(f"{'file':28} {'size':>8} {'backend':>8} {'frames':>7} {'decoded':>8} {'seconds':>8} {'grown MB':>9}")
        for name, path in files.items():
            for backend in ("pyav", "auto"):
                r = measure(path, backend, a.code)
                kb = path.stat().st_size / 1024
                if "error" in r and "frames" not in r:
                    print(f"{name:28} {kb:7.0f}K {backend:>8}  error: {r['error']}")
                    continue
                print(f"{name:28} {kb:7.0f}K {r.get('used', backend):>8} {r.get('frames', '-'):>7} "
                      f"{str(r.get('decoded', '-')):>8} {r['seconds']:8.2f} {r['grown_mb']:9.0f}")
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
