"""The GPU path, measured: encode and precompute on CUDA, in videos/s, for 10-second 240p and 720p clips.

    make bench-gpu                                   # = python bench/gpu.py
    python bench/gpu.py --videos 600 --sizes 426x240,1280x720 --batch auto --workers auto

What it runs (random ViT-B/32 weights: speed does not depend on them):
- encode only: precompute's Encoder (fp16 autocast on CUDA, pinned host memory) on preprocessed
  12-frame clips, for batch sizes 16..256; the fastest is used for everything below ("tuned batch");
- decode only: precompute's reader in cores - 1 worker processes (the encoder keeps one core);
- the full pipeline (`build_library`: decode workers -> encoder -> writer -> faiss), with the GPU's
  utilisation sampled meanwhile (torch.cuda.utilization, else nvidia-smi) and the share of the wall
  time the encoder was busy: when the encoder is busy well under 100% it is not the bottleneck.
The goal for one H100/H200-class GPU with 16 cores: >= 150 videos/s for 10-second 240p clips.
Without CUDA it says "no CUDA: skipped" and runs a tiny CPU smoke test of the same code (a few
clips, random:tiny) so the script itself stays tested; --no-smoke skips that too.
Clips are generated once (a few distinct ones, in parallel) and hard-linked to the number asked for,
in a cache folder outside the repository.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import describe, info  # noqa: E402
from bench.precompute import DEFAULT_CACHE, bench_decode, bench_pipeline, make_clip  # noqa: E402

BATCHES = (16, 32, 64, 128, 256)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ------------------------------------------------------------------------------------ clips


def _write_clip(args: tuple[str, int, int, int, float, int]) -> str:
    from video.decode import write_video

    path, seed, width, height, seconds, fps = args
    tmp = Path(path).with_suffix(".tmp.mp4")
    write_video(tmp, make_clip(seed, width, height, int(round(seconds * fps))), fps)
    tmp.replace(path)
    return path


def clips(cache: Path, n: int, size: tuple[int, int], seconds: float, fps: int, distinct: int, procs: int) -> Path:
    """A folder of exactly n clips: `distinct` generated ones (in parallel), hard-linked (or copied) n times."""
    width, height = size
    base = cache / f"gpu-{width}x{height}-{seconds:g}s-{fps}fps"
    unique, folder = base / "unique", base / "clips"
    unique.mkdir(parents=True, exist_ok=True)
    todo = [(str(unique / f"u{i:03d}.mp4"), i, width, height, seconds, fps) for i in range(min(distinct, n))
            if not (unique / f"u{i:03d}.mp4").is_file()]
    if todo:
        t0 = time.perf_counter()
        with ProcessPoolExecutor(max(1, min(procs, len(todo)))) as pool:
            list(pool.map(_write_clip, todo))
        print(f"generated {len(todo)} distinct {width}x{height} clips in {time.perf_counter() - t0:.0f}s",
              file=sys.stderr)
    sources = sorted(unique.glob("u*.mp4"))[: min(distinct, n)]
    if folder.is_dir() and len(list(folder.glob("*.mp4"))) != n:
        shutil.rmtree(folder)
    folder.mkdir(exist_ok=True)
    for i in range(n):
        dest = folder / f"clip{i:05d}.mp4"
        if not dest.exists():
            try:
                os.link(sources[i % len(sources)], dest)
            except OSError:
                shutil.copy(sources[i % len(sources)], dest)
    return folder


# ------------------------------------------------------------------------------------ GPU measures


def gpu_utilisation() -> float | None:
    """Current GPU utilisation in percent (torch.cuda via NVML, else nvidia-smi), None if unknown."""
    import torch

    try:
        return float(torch.cuda.utilization())
    except Exception:
        pass
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", "0"], capture_output=True, text=True, timeout=5).stdout
            return float(out.strip().splitlines()[0])
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return None
    return None


class Sampler:
    """GPU utilisation sampled every `interval` s while the block runs (a context manager)."""

    def __init__(self, interval: float = 0.25):
        self.interval, self.samples = interval, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            u = gpu_utilisation()
            if u is not None:
                self.samples.append(u)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def summary(self) -> str:
        if not self.samples:
            return "n/a"
        return f"{statistics.mean(self.samples):.0f}% mean, {max(self.samples):.0f}% max"


def encode_rate(model, batch: int, frames: int, seconds: float) -> float:
    """Videos/s of precompute's Encoder alone on random preprocessed clips (fp16 autocast on CUDA)."""
    from precompute.encoder import Encoder

    s = model.config.image_size
    pixels = [np.random.default_rng(i).standard_normal((frames, 3, s, s)).astype(np.float32) for i in range(batch)]
    enc = Encoder(model)
    enc.encode(pixels)  # warm-up (kernels, autotuning)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or done == 0:
        enc.encode(pixels)
        done += batch
    return done / (time.perf_counter() - t0)


def tune_batch(model, frames: int, batches: tuple[int, ...], seconds: float) -> tuple[int, dict[int, float]]:
    """The batch with the highest encode rate; stops at out-of-memory or when doubling gains < 5%."""
    import torch

    rates: dict[int, float] = {}
    for b in batches:
        try:
            rates[b] = encode_rate(model, b, frames, seconds)
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            break
        if len(rates) > 1 and rates[b] < 1.05 * max(list(rates.values())[:-1]):
            break
    return max(rates, key=rates.get), rates


# ------------------------------------------------------------------------------------ runs


def run_size(size: tuple[int, int], a, model, device: str, batch: int, workers: int) -> list[tuple[str, ...]]:
    """Decode-only and full-pipeline rows for one clip size."""
    folder = clips(a.cache, a.videos, size, a.seconds, a.fps, a.distinct, workers + 1)
    paths = sorted(folder.glob("clip*.mp4"))
    label = f"{size[0]}x{size[1]}, {a.seconds:g} s"
    decode = bench_decode(paths[: min(len(paths), max(4 * workers, 16))], model, a.frames, workers)
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    with Sampler() as s:
        pipe = bench_pipeline(folder, len(paths), model, a.frames, batch, workers, device)
    secs = pipe["seconds"]
    busy = (secs.get("encode", 0.0) + secs.get("caption", 0.0)) / max(pipe["wall_s"], 1e-9)
    mem = ""
    if device == "cuda":
        import torch

        mem = f", peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
    wait = secs.get("wait", 0.0) / max(pipe["wall_s"], 1e-9)
    return [(label, f"decode only ({workers} worker{'s' if workers != 1 else ''})", f"{decode:.1f}", "", ""),
            (label, f"full pipeline, batch {batch}", f"{pipe['videos_per_s']:.1f}", s.summary() + mem,
             f"of {pipe['wall_s']:.0f} s: encoder busy {busy:.0%}, waiting for decoders {wait:.0%}")]


def print_table(title: str, rows: list[tuple[str, ...]], machine: dict) -> None:
    print(title)
    print("| clips | stage | videos/s | GPU utilisation | notes |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(describe(machine))


def gpu_run(a) -> int:
    import torch

    from model import load_model

    workers = cores() - 1 if a.workers == "auto" else int(a.workers)
    model = load_model(a.model).to("cuda").eval()
    rows: list[tuple[str, ...]] = []
    if a.batch == "auto":
        batch, rates = tune_batch(model, a.frames, BATCHES, a.encode_seconds)
    else:
        batch, rates = int(a.batch), {int(a.batch): encode_rate(model, int(a.batch), a.frames, a.encode_seconds)}
    for b, r in rates.items():
        rows.append(("preprocessed", f"encode only, batch {b}" + (" (tuned)" if b == batch else ""), f"{r:.1f}",
                     "", "fp16 autocast"))
    for size in a.sizes:
        rows += run_size(size, a, model, "cuda", batch, workers)
    print_table(f"{a.model} on {torch.cuda.get_device_name(0)}, {a.frames} frames/video, {a.videos} clips per "
                f"size ({a.fps} fps H.264), {workers} decode workers", rows, info())
    return 0


def cpu_smoke(a) -> int:
    """The same code on a few tiny clips on the CPU: proves the script runs, measures nothing useful."""
    from model import load_model

    model = load_model("random:tiny").eval()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-smoke-") as tmp:
        a.cache, a.videos, a.seconds, a.distinct = Path(tmp), 4, 2.0, 2
        rows = [("preprocessed", "encode only, batch 4", f"{encode_rate(model, 4, a.frames, 0.5):.1f}", "", "cpu")]
        rows += run_size((320, 240), a, model, "cpu", 4, 1)
    print_table("CPU smoke test (random:tiny, 4 clips of 2 s): checks the script, not the speed", rows, info())
    return 0


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="random:ViT-B-32")
    p.add_argument("--videos", type=int, default=600, help="clips per size for the pipeline")
    p.add_argument("--distinct", type=int, default=32, help="distinct clips generated per size (then linked)")
    p.add_argument("--sizes", default="426x240,1280x720", help="comma-separated WxH (240p and 720p)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--batch", default="auto", help="encoder batch, or auto (tuned over %s)" % (BATCHES,))
    p.add_argument("--workers", default="auto", help="decode processes (auto = cores - 1)")
    p.add_argument("--encode-seconds", type=float, default=5.0, help="time per encode-only measurement")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    p.add_argument("--no-smoke", action="store_true", help="without CUDA, skip the CPU smoke test too")
    a = p.parse_args(argv)
    a.sizes = [_size(s) for s in a.sizes.split(",") if s.strip()]

    import torch

    if not torch.cuda.is_available():
        print("no CUDA: skipped (the GPU benchmark needs an NVIDIA GPU)")
        return 0 if a.no_smoke else cpu_smoke(a)
    return gpu_run(a)


if __name__ == "__main__":
    sys.exit(main())
