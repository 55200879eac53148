"""Benchmark precompute: decode only, encode only, and the full pipeline, in videos/s.

    python bench/precompute.py                      # 200 clips, 10 s, 320x240, 25 fps; random ViT-B/32
    python bench/precompute.py --num-videos 40      # smaller, same clips (cached)

Clips are generated once into a cache folder outside the repository (moving blocks over a textured,
slightly noisy background: about 360 KB per clip, a realistic bitrate for 320x240). The pipeline
goal: at least 85% of the throughput of its slower stage, i.e. decoding (in worker processes) and
encoding (in the main process) really overlap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DEFAULT_CACHE = Path(os.environ.get("PROMPTSWITCH_CACHE", Path.home() / ".cache" / "promptswitch")) / "bench-precompute"


def make_clip(seed: int, width: int, height: int, frames: int) -> np.ndarray:
    """Moving coloured blocks over a smooth random background with a little noise (uint8 [T,H,W,3])."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = np.stack([np.sin(xx / rng.uniform(20, 80) + rng.uniform(0, 6)) * 60 + 100,
                   np.cos(yy / rng.uniform(20, 80)) * 60 + 100,
                   (xx + yy) / (width + height) * 120 + 60], -1).astype(np.int16)
    noise = rng.integers(-6, 7, (8, height, width, 3), dtype=np.int16)
    blocks = [(int(rng.integers(20, 60)), rng.uniform(0, width), rng.uniform(0, height), rng.uniform(-3, 3),
               rng.uniform(-3, 3), rng.integers(0, 256, 3)) for _ in range(3)]
    out = np.empty((frames, height, width, 3), np.uint8)
    for t in range(frames):
        f = bg + noise[t % 8]
        for s, x0, y0, vx, vy, c in blocks:
            x, y = int(x0 + vx * t) % width, int(y0 + vy * t) % height
            f[y : y + s, x : x + s] = c
        out[t] = np.clip(f, 0, 255)
    return out


def ensure_clips(cache: Path, n: int, width: int, height: int, seconds: float, fps: int) -> Path:
    """The first n clips of the cached set, generating the missing ones (atomic: temp name, rename)."""
    from video.decode import write_video

    folder = cache / f"{width}x{height}-{seconds:g}s-{fps}fps"
    folder.mkdir(parents=True, exist_ok=True)
    t0, made = time.perf_counter(), 0
    for i in range(n):
        path = folder / f"clip{i:04d}.mp4"
        if path.exists() and path.stat().st_size > 0:
            continue
        tmp = folder / f".clip{i:04d}.tmp.mp4"
        write_video(tmp, make_clip(i, width, height, int(round(seconds * fps))), fps)
        tmp.replace(path)
        made += 1
    if made:
        print(f"generated {made} clips in {time.perf_counter() - t0:.0f}s into {folder}", file=sys.stderr)
    return folder


def machine() -> dict:
    from bench.machine import info

    return info()


def bench_decode(paths: list[Path], model, frames: int, workers: int) -> float:
    """Videos/s of the reader stage alone (decode + preprocess + thumbnails), as the pipeline runs it."""
    from precompute.reader import DecodeTask
    from precompute.workers import decode_stream

    tasks = [DecodeTask(seq=i, id=p.name, path=str(p), frames=frames, num_segments=model.config.num_prompts)
             for i, p in enumerate(paths)]
    t0 = time.perf_counter()
    n = sum(1 for r in decode_stream(tasks, model.preprocess_frames, workers) if r.ok)
    assert n == len(paths), f"only {n} of {len(paths)} decoded"
    return n / (time.perf_counter() - t0)


def bench_encode(paths: list[Path], model, frames: int, batch: int, num_videos: int) -> float:
    """Videos/s of the encoder stage alone, on real preprocessed frames (decoded beforehand)."""
    from precompute.encoder import Encoder
    from precompute.reader import DecodeTask, decode_one

    pixels = [decode_one(DecodeTask(seq=i, id=p.name, path=str(p), frames=frames, thumb_height=None,
                                    num_segments=model.config.num_prompts), model.preprocess_frames).pixels
              for i, p in enumerate(paths[:batch])]
    enc = Encoder(model)
    enc.encode(pixels[:1])  # warm-up
    done, t0 = 0, time.perf_counter()
    while done < num_videos:
        enc.encode(pixels)
        done += len(pixels)
    return done / (time.perf_counter() - t0)


def bench_pipeline(folder: Path, n: int, model, frames: int, batch: int, workers: int, device: str,
                   threads: int | None = None) -> dict:
    from precompute import BuildSettings, build_library

    with tempfile.TemporaryDirectory(prefix="bench-precompute-") as tmp:
        t0 = time.perf_counter()
        report = build_library(folder, Path(tmp) / "lib", model,
                               BuildSettings(frames=frames, batch_size=batch, workers=workers, limit=n,
                                             device=device, progress_bar=False, threads=threads), command="bench")
        wall = time.perf_counter() - t0
    assert report.indexed == n, report.summary()
    return {"videos_per_s": report.videos_per_s, "wall_s": wall, "seconds": report.seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num-videos", type=int, default=200)
    p.add_argument("--model", default="random:ViT-B-32")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", default="auto", help="decode processes (auto = precompute's default)")
    p.add_argument("--threads", type=int, default=None, help="torch threads in the encoder process")
    p.add_argument("--device", default="auto")
    p.add_argument("--encode-videos", type=int, default=None, help="videos for the encode-only run (default: all)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--size", default="320x240")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--skip", default="", help="comma-separated stages to skip: decode,encode,pipeline")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import torch

    from model import load_model
    from model.device import resolve_device
    from precompute.settings import default_workers

    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.size.split("x"))
    folder = ensure_clips(args.cache, args.num_videos, width, height, args.seconds, args.fps)
    paths = sorted(folder.glob("clip*.mp4"))[: args.num_videos]
    workers = default_workers() if args.workers == "auto" else int(args.workers)
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    model = load_model(args.model).to(device).eval()
    load_s = time.perf_counter() - t0
    skip = set(filter(None, args.skip.split(",")))

    res: dict = {"machine": machine(), "model": args.model, "device": device, "videos": len(paths),
                 "clip": f"{args.size}, {args.seconds:g}s, {args.fps} fps, H.264", "frames": args.frames,
                 "batch_size": args.batch_size, "workers": workers, "model_load_s": round(load_s, 1)}
    rates: dict[str, float] = {}
    if "decode" not in skip:
        rates["decode (1 process)"] = bench_decode(paths, model, args.frames, 0)
        if workers > 0:
            key = f"decode ({workers} worker{'s' if workers > 1 else ''})"
            rates[key] = bench_decode(paths, model, args.frames, workers)
    if "encode" not in skip:
        rates["encode"] = bench_encode(paths, model, args.frames, args.batch_size, args.encode_videos or len(paths))
    if "pipeline" not in skip:
        pipe = bench_pipeline(folder, len(paths), model, args.frames, args.batch_size, workers, device, args.threads)
        rates["full pipeline"] = pipe["videos_per_s"]
        res["pipeline_seconds"] = {k: round(v, 1) for k, v in pipe["seconds"].items()}
    res["videos_per_s"] = {k: round(v, 2) for k, v in rates.items()}
    decode_key = next((k for k in rates if k.startswith("decode (") and "worker" in k), "decode (1 process)")
    if "full pipeline" in rates and decode_key in rates and "encode" in rates:
        slower = min(rates[decode_key], rates["encode"])
        res["pipeline_vs_slower_stage"] = round(rates["full pipeline"] / slower, 3)

    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    m = res["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} with {m['torch_threads']} threads"
          + (f", GPU {m['gpu']}" if "gpu" in m else "") + f", load avg {m['load_avg']}")
    print(f"model {args.model} on {device} (loaded in {load_s:.1f}s); {len(paths)} clips ({res['clip']}); "
          f"{args.frames} frames/video, batch {args.batch_size}, {workers} decode workers")
    print(f"{'stage':<24} {'videos/s':>9}")
    for k, v in rates.items():
        print(f"{k:<24} {v:>9.2f}")
    if "pipeline_vs_slower_stage" in res:
        print(f"pipeline / slower stage: {res['pipeline_vs_slower_stage']:.0%} (goal >= 85%)")
    if "pipeline_seconds" in res:
        print("pipeline time breakdown (s):", res["pipeline_seconds"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
