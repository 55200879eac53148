"""Video encoding speed: plain CLIP (mean pooling) vs Prompt Switch, ViT-B/32 at 224 px.

    python bench/encode.py [--arch ViT-B-32] [--frames 12] [--videos-per-call 2] [--reps 5]

Random weights (speed does not depend on them). Prompt Switch adds 6 tokens to the 50 of each frame
plus one small attention per frame, so its time should stay within 1.2x of plain CLIP.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.machine import describe  # noqa: E402


def timed(fn, reps: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="ViT-B-32")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--videos-per-call", type=int, default=2)
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)

    import torch

    from model import load_model

    m = load_model(f"random:{a.arch}")
    s = m.config.image_size
    x = torch.randn(a.videos_per_call, a.frames, 3, s, s)
    n = a.videos_per_call * a.frames
    rows = []
    with torch.inference_mode():
        t_open = timed(lambda: m.clip.encode_image(x.reshape(n, 3, s, s)), a.reps)
        m.use_prompts = False
        t_plain = timed(lambda: m.encode_video(x), a.reps)
        m.use_prompts = True
        t_ps = timed(lambda: m.encode_video(x), a.reps)
    rows.append(("open_clip encode_image (per frame)", t_open))
    rows.append(("plain CLIP, mean pooling (use_prompts=False)", t_plain))
    rows.append(("Prompt Switch (use_prompts=True)", t_ps))
    print(f"{a.arch}, {s} px, {a.frames} frames/video, {a.videos_per_call} videos ({n} frames) per call, "
          f"median of {a.reps}")
    print("| encoder | ms/call | frames/s | videos/s |")
    print("|---|---|---|---|")
    for name, t in rows:
        print(f"| {name} | {1000 * t:.0f} | {n / t:.1f} | {a.videos_per_call / t:.2f} |")
    print(f"\nPrompt Switch / plain CLIP time ratio: {t_ps / t_plain:.3f} (goal <= 1.20)")
    print(describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
