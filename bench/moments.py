"""Moment retrieval on long videos: do the segments of a library find known events?

    python bench/moments.py                       # bundled:moving-shapes, 3 videos of ~106 s, 72 events
    python bench/moments.py --model random:tiny   # a model that knows nothing: the floor

Each long video is 24 moving-shapes clips (training/shapes.py, fixed seed, 3 s each, 160x120 at
12 fps like the bundled clips, every caption distinct) separated by filler shots of 1-2 s (a
textured grey gradient with drifting noise). Every event's canonical caption is a query; a query
is answered by ranking all rows of the library (segments of all videos) by cosine similarity. A
hit at k: one of the top k rows is in the event's video and overlaps the event with temporal
IoU >= 0.5. Rows are built with --segments auto (the default), fixed windows, and none (whole
files: the baseline, whose rows are far longer than any event). Build time is the whole
build_library call (model loaded beforehand), per minute of video.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FPS = 12
SIZE = (160, 120)
EVENT_S = 3.0


def _filler(rng: np.random.Generator, frames: int) -> np.ndarray:
    w, h = SIZE
    base = np.linspace(rng.uniform(90, 140), rng.uniform(160, 230), w)[None, :, None] * np.ones((h, 1, 3))
    tint = rng.uniform(0.8, 1.2, 3)
    out = np.empty((frames, h, w, 3), np.uint8)
    for t in range(frames):
        noise = rng.normal(0, 12, (h, w, 1))
        out[t] = np.clip(base * tint + noise + 3 * t, 0, 255)
    return out


def make_videos(folder: Path, num_videos: int, events: int, seed: int) -> list[dict]:
    """Write the long videos; returns the events: {video, start, end, caption}."""
    from training.shapes import random_clip, render
    from video.decode import write_video

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    out: list[dict] = []
    for v in range(num_videos):
        name = f"long{v:02d}.mp4"
        parts, t = [], 0.0
        for _ in range(events):
            spec = random_clip(rng, max_shapes=1)
            while spec.caption() in seen:
                spec = random_clip(rng, max_shapes=1)
            seen.add(spec.caption())
            n = int(EVENT_S * FPS)
            parts.append(render(spec, n, SIZE))
            out.append({"video": name, "start": t, "end": t + EVENT_S, "caption": spec.caption()})
            t += EVENT_S
            filler = int(round(rng.uniform(1.0, 2.0) * FPS))
            parts.append(_filler(rng, filler))
            t += filler / FPS
        write_video(folder / name, np.concatenate(parts), FPS)
    return out


def _iou(a0: float, a1: float, b0: float, b1: float) -> float:
    inter = max(0.0, min(a1, b1) - max(a0, b0))
    return inter / max(1e-9, max(a1, b1) - min(a0, b0))


def evaluate(lib, model, events: list[dict], ks=(1, 5)) -> dict[str, float]:
    """Moment recall at k (IoU >= 0.5) with every row of the library ranked for every query."""
    import torch

    with torch.inference_mode():
        q = model.encode_text([e["caption"] for e in events]).float().numpy()
    scores, rows = lib.search(q, max(ks))
    hits = {k: 0 for k in ks}
    for e, top in zip(events, rows):
        good = [lib.records[r].video == e["video"] and _iou(lib.records[r].start, lib.records[r].end,
                                                            e["start"], e["end"]) >= 0.5 for r in top]
        for k in ks:
            hits[k] += any(good[:k])
    return {f"R@{k}": hits[k] / len(events) for k in ks}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="bundled:moving-shapes")
    p.add_argument("--videos", type=int, default=3)
    p.add_argument("--events", type=int, default=24, help="events per video")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default="auto,fixed:3/1.5,fixed:6/3,none")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import torch

    from bench.machine import describe, info
    from model import load_model
    from precompute import BuildSettings, build_library, open_library

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model = load_model(args.model).eval()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-moments-") as tmp:
        src = Path(tmp) / "videos"
        events = make_videos(src, args.videos, args.events, args.seed)
        minutes = sum(max(e["end"] for e in events if e["video"] == v) for v in {e["video"] for e in events}) / 60
        for mode in args.modes.split(","):
            t0 = time.perf_counter()
            report = build_library(src, Path(tmp) / mode.replace(":", "_").replace("/", "_"), model,
                                   BuildSettings(segments=mode, workers=1, progress_bar=False), command="bench")
            build_s = time.perf_counter() - t0
            lib = open_library(report.library)
            row = {"segments": mode, "rows": len(lib), **evaluate(lib, model, events),
                   "build_s_per_min": build_s / minutes}
            rows.append(row)
    res = {"machine": info(), "model": args.model, "videos": args.videos, "events": len(events),
           "minutes_of_video": round(minutes, 2), "results": rows}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(describe(res["machine"]))
    print(f"model {args.model}: {args.videos} videos, {minutes:.1f} min, {len(events)} events of {EVENT_S:g} s")
    print("| --segments | rows | R@1 | R@5 | build s / min of video |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['segments']} | {r['rows']} | {r['R@1']:.3f} | {r['R@5']:.3f} | {r['build_s_per_min']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
