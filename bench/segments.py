"""Benchmark the segmenting pass of a long video: decoding + shot detection + segment frames, as a
multiple of real time, with the peak memory; encoding the segments is measured separately.

    python bench/segments.py                   # a 10-minute 854x480 25 fps H.264 video, extrapolated to 1 hour
    python bench/segments.py --minutes 60      # the real hour (generating it takes a while on 2 cores)

The video (generated once into a cache folder outside the repository) is shots of 3-60 s: moving
blocks over a textured, slightly noisy background, a new palette at every cut. The pass is
video.segments.read_segments with --segments auto (the default) and 12 frames per segment, one
process. Speed is reported against wall time and against the process's CPU time (the steadier
number on a shared machine). Memory: the peak of numpy/Python allocations during the pass
(tracemalloc) for the video and for a video a tenth as long, the bound on the candidate frames
(3 x max_segment x 4 fps at 224 px, whatever the length), and the process's maximum RSS. Goal:
20x real time or better.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_CACHE = Path(os.environ.get("PROMPTSWITCH_CACHE", Path.home() / ".cache" / "promptswitch")) / "bench-segments"


def _shot_frames(rng: np.random.Generator, width: int, height: int, count: int):
    """Frames of one shot: blocks moving over a smooth background with a little noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.stack([np.sin(xx / rng.uniform(20, 80) + rng.uniform(0, 6)) * 60 + rng.uniform(60, 160),
                   np.cos(yy / rng.uniform(20, 80)) * 60 + rng.uniform(60, 160),
                   (xx + yy) / (width + height) * 120 + rng.uniform(20, 100)], -1).astype(np.int16)
    noise = rng.integers(-6, 7, (4, height, width, 3), dtype=np.int16)
    blocks = [(int(rng.integers(30, 90)), rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-4, 4),
               rng.uniform(-4, 4), rng.integers(0, 256, 3)) for _ in range(3)]
    for t in range(count):
        f = bg + noise[t % 4]
        for s, x0, y0, vx, vy, c in blocks:
            x, y = int(x0 + vx * t) % width, int(y0 + vy * t) % height
            f[y:y + s, x:x + s] = c
        yield np.clip(f, 0, 255).astype(np.uint8)


def make_video(path: Path, seconds: float, width: int = 854, height: int = 480, fps: int = 25,
               seed: int = 0) -> list[float]:
    """Write the test video frame by frame (flat memory); returns the true cut times in seconds."""
    import av

    from video.decode import h264_encoder

    rng = np.random.default_rng(seed)
    total, cuts, n = int(seconds * fps), [], 0
    tmp = path.with_name("." + path.name + ".tmp.mp4")
    with av.open(str(tmp), "w", format="mp4") as c:
        s = c.add_stream(h264_encoder(), rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"preset": "ultrafast", "crf": "23"}
        while n < total:
            count = min(total - n, int(rng.uniform(3, 60) * fps))
            if n:
                cuts.append(n / fps)
            for f in _shot_frames(rng, width, height, count):
                for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                    c.mux(p)
            n += count
        for p in s.encode():
            c.mux(p)
    tmp.replace(path)
    path.with_suffix(".cuts.json").write_text(json.dumps(cuts))
    return cuts


def ensure_video(cache: Path, minutes: float) -> tuple[Path, list[float]]:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"long-{minutes:g}min-854x480-25fps.mp4"
    if not path.exists() or not path.with_suffix(".cuts.json").exists():
        t0 = time.perf_counter()
        make_video(path, minutes * 60)
        print(f"generated {path} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
    return path, json.loads(path.with_suffix(".cuts.json").read_text())


def segment_pass(path: Path, trace: bool) -> dict:
    """Wall and CPU time of one read_segments pass, and (trace) its peak traced allocation."""
    from video.segments import parse_segments, read_segments

    if trace:
        tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    segs = [(s.start, s.end, s.frames) for s in read_segments(path, parse_segments("auto"))]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1] if trace else 0
    if trace:
        tracemalloc.stop()
    return {"wall": wall, "cpu": cpu, "peak": peak, "segments": [(s, e) for s, e, _ in segs],
            "frames": [f for _, _, f in segs[:16]]}


def bench_encode(frames: list[np.ndarray], spec: str, batch: int) -> float:
    """Segments/s of the encoder on the pass's own frames (random weights)."""
    import torch

    from model import load_model
    from precompute.encoder import Encoder

    model = load_model(spec).eval()
    pixels = [model.preprocess_frames(f) for f in frames[:batch]]
    pixels = [p.numpy() if hasattr(p, "numpy") else p for p in pixels]
    enc = Encoder(model)
    with torch.inference_mode():
        enc.encode(pixels[:1])
        t0, done = time.perf_counter(), 0
        while done < 2 * batch:
            enc.encode(pixels)
            done += len(pixels)
    return done / (time.perf_counter() - t0)


def _bound_mb(width: int = 854, height: int = 480) -> float:
    """The most candidate frames the pass can hold (3 x max_segment x CANDIDATE_FPS), in MB."""
    from video.segments import CANDIDATE_FPS, DEFAULT_MAX_SEGMENT, _size

    w, h = _size(width, height, 224)
    return 3 * DEFAULT_MAX_SEGMENT * CANDIDATE_FPS * w * h * 3 / 2**20


def _cut_recall(found: list[tuple[float, float]], cuts: list[float], tol: float) -> float:
    starts = np.asarray([s for s, _ in found])
    return float(np.mean([np.min(np.abs(starts - c)) <= tol for c in cuts])) if cuts else 1.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--model", default="random:ViT-B-32", help="for the encoding row")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--skip-encode", action="store_true")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    from bench.machine import describe, info

    path, cuts = ensure_video(args.cache, args.minutes)
    short, _ = ensure_video(args.cache, max(0.5, args.minutes / 10))
    full = segment_pass(path, trace=False)  # timed without tracemalloc (it slows allocations)
    traced = segment_pass(path, trace=True)
    traced_short = segment_pass(short, trace=True)
    seconds = args.minutes * 60
    res = {"machine": info(), "video": f"{path.name}, {seconds:.0f}s, {len(cuts)} hard cuts",
           "segments": len(full["segments"]),
           "decode_segment_wall_s": round(full["wall"], 1), "decode_segment_cpu_s": round(full["cpu"], 1),
           "x_real_time": round(seconds / full["wall"], 1),
           "x_real_time_cpu": round(seconds / full["cpu"], 1),
           "one_hour_wall_s_extrapolated": round(full["wall"] * 3600 / seconds, 0),
           "cut_recall_within_1_frame": round(_cut_recall(full["segments"], cuts, 1 / 25 + 1e-6), 3),
           "peak_traced_mb": round(traced["peak"] / 2**20, 1),
           "peak_traced_mb_first_tenth": round(traced_short["peak"] / 2**20, 1),
           "candidate_bound_mb": round(_bound_mb(), 1),
           "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)}
    if not args.skip_encode:
        rate = bench_encode(full["frames"], args.model, args.batch_size)
        res["encode_segments_per_s"] = round(rate, 2)
        res["encode_s_per_hour_of_video"] = round(len(full["segments"]) * 3600 / seconds / rate, 0)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(describe(res["machine"]))
    print(f"video: {res['video']}; segments (auto): {res['segments']}")
    print("| measure | value |\n|---|---|")
    for k, v in res.items():
        if k not in ("machine", "video"):
            print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
