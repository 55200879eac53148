"""Evaluation: retrieval metrics on MSR-VTT / MSVD / LSMDC files, and the moving-shapes checks.

    python -m training.evaluate --model SPEC --dataset msrvtt --root DIR [--json out.json]
    python -m training.evaluate --model bundled:moving-shapes --dataset moving-shapes --seed 123 --size 500
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cli import add_flags, values

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """Nothing could be evaluated (no readable video, a dataset without its folder)."""


@dataclass
class EvalOptions:
    """The flags of `python -m training.evaluate` (besides --model and --dataset)."""

    root: str | None = field(default=None, metadata={"help": "dataset folder (not needed for generated moving-shapes)"})
    split: str = field(default="test", metadata={"help": "split to evaluate"})
    seed: int = field(default=123, metadata={"help": "moving-shapes: seed of the generated split"})
    size: int = field(default=500, metadata={"help": "moving-shapes: number of clips"})
    use_prompts: bool = field(default=True, metadata={"help": "--no-use-prompts runs the weights as the "
                                                              "mean-pooling baseline"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    json: str | None = field(default=None, metadata={"help": "write the results to this JSON file"})


@dataclass
class ShapesEval:
    """The three numbers that show a model sees time, on clips drawn from `seed`."""

    reversal_accuracy: float
    reversal_translations: float
    reversal_scalings: float
    gallery_t2v_r1: float
    caption_accuracy: float
    retrieval: dict


def encode_frames_batched(model, frames_u8: np.ndarray, batch: int = 64,
                          caption_beams: int | None = None) -> tuple[np.ndarray, list[str] | None]:
    """uint8 [N, T, H, W, 3] -> (video_emb [N, D] as numpy, generated captions when caption_beams is set).

    Captions are generated from the same preprocessed batches, so each clip is prepared once."""
    import torch

    vids, caps = [], ([] if caption_beams else None)
    with torch.inference_mode():
        for i in range(0, len(frames_u8), batch):
            x = model.preprocess_clips(frames_u8[i : i + batch])
            vids.append(model.encode_video(x)[0].float().cpu().numpy())
            if caps is not None:
                caps += model.generate_captions(x, max_len=12, num_beams=caption_beams)
    return np.concatenate(vids), caps


def encode_texts_batched(model, texts: list[str], batch: int = 256) -> np.ndarray:
    import torch

    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch):
            out.append(model.encode_text(texts[i : i + batch]).float().cpu().numpy())
    return np.concatenate(out)


def evaluate_shapes(model, seed: int = 123, size: int = 500, num_frames: int | None = None,
                    caption_beams: int = 1) -> ShapesEval:
    """Reversal accuracy, gallery R@1 (one clip per distinct caption) and caption accuracy."""

    from video.sampling import sample_times

    from .metrics import retrieval_metrics, reversal_accuracy
    from .shapes import TRANSLATIONS, parse_caption_all, random_clip, render

    num_frames = num_frames or model.config.num_frames
    rng = np.random.default_rng([seed, 7])
    specs = [random_clip(rng) for _ in range(size)]
    times = sample_times(num_frames, model.config.num_prompts)
    px = model.config.image_size
    fwd = np.stack([render(s, num_frames, px, times=times) for s in specs])
    rev = np.stack([render(s.reversed(), num_frames, px, times=times) for s in specs])
    v_fwd, gen = encode_frames_batched(model, fwd, caption_beams=caption_beams if model.has_trained_captioner else None)
    v_rev, _ = encode_frames_batched(model, rev)
    captions = [s.caption() for s in specs]
    t_true = encode_texts_batched(model, captions)
    t_rev = encode_texts_batched(model, [s.reversed().caption() for s in specs])
    # Reversal: does a clip score its true caption above its time-reversed caption? Each clip is
    # tested forwards and reversed, so mean pooling (v_fwd == v_rev) scores exactly 0.5.
    s_true = np.concatenate([(v_fwd * t_true).sum(1), (v_rev * t_rev).sum(1)])
    s_rev = np.concatenate([(v_fwd * t_rev).sum(1), (v_rev * t_true).sum(1)])
    kinds = np.array([s.shapes[0].motion in TRANSLATIONS for s in specs] * 2)
    rev_all = reversal_accuracy(s_true, s_rev)
    rev_tr = reversal_accuracy(s_true[kinds], s_rev[kinds]) if kinds.any() else float("nan")
    rev_sc = reversal_accuracy(s_true[~kinds], s_rev[~kinds]) if (~kinds).any() else float("nan")
    # Gallery: one clip per distinct caption, every caption queries it.
    first: dict[str, int] = {}
    for i, c in enumerate(captions):
        first.setdefault(c, i)
    idx = np.array(sorted(first.values()))
    sim = t_true[idx] @ v_fwd[idx].T
    retrieval = retrieval_metrics(sim, np.arange(len(idx)))
    # Captions: colour, shape and motion all right.
    right = 0
    if gen is not None:
        for g, s in zip(gen, specs):
            sh = s.shapes[0]
            right += parse_caption_all(g)[0] == (sh.color, sh.shape, sh.motion)
    return ShapesEval(rev_all, rev_tr, rev_sc, retrieval["t2v"]["R@1"],
                      right / size if model.has_trained_captioner else float("nan"), retrieval)


def evaluate_files(model, dataset: str, root: Path, split: str = "test", batch: int = 16, workers: int = 2) -> dict:
    """Retrieval metrics over a dataset on disk (every caption is a query)."""
    from video.annotations import load_split

    from .data import VideoDataset, iterate_videos
    from .metrics import retrieval_metrics

    sp = load_split(dataset, Path(root), split)
    if sp.missing:
        log.warning("%d videos listed in the annotations are missing on disk; skipped", len(sp.missing))
    ds = VideoDataset(sp.items, model, train=False)
    vids, ok_items = [], []
    for emb, idx in iterate_videos(model, ds, batch=batch, workers=workers):
        vids.append(emb)
        ok_items += [sp.items[i] for i in idx]
    if not ok_items:
        raise EvaluationError(f"no video of {dataset}/{split} under {root} could be read")
    v = np.concatenate(vids)
    texts, t2v = [], []
    for j, item in enumerate(ok_items):
        for c in item.captions:
            texts.append(c)
            t2v.append(j)
    t = encode_texts_batched(model, texts)
    return retrieval_metrics(t @ v.T, np.array(t2v))


def format_table(results: dict) -> str:
    keys = ["R@1", "R@5", "R@10", "MdR", "MnR"]
    lines = ["| direction | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for d in ("t2v", "v2t"):
        r = results[d]
        cells = [f"{100 * r[k]:.1f}" if k.startswith("R@") else f"{r[k]:.1f}" for k in keys]
        lines.append(f"| {d} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run(model_spec: str, dataset: str, o: EvalOptions) -> dict:
    """Load the model and evaluate it; the results as a dict (retrieval plus moving-shapes extras)."""
    from model.device import resolve_device
    from model.hub import load_model

    if dataset != "moving-shapes" and o.root is None:
        raise EvaluationError(f"--root is required for dataset {dataset}")
    model = load_model(model_spec, device=resolve_device(o.device))
    model.use_prompts = o.use_prompts
    if dataset == "moving-shapes" and o.root is None:
        ev = evaluate_shapes(model, seed=o.seed, size=o.size)
        return {**ev.retrieval, "reversal_accuracy": ev.reversal_accuracy,
                "reversal_accuracy_translations": ev.reversal_translations,
                "reversal_accuracy_scalings": ev.reversal_scalings,
                "caption_accuracy": ev.caption_accuracy, "gallery_t2v_R@1": ev.gallery_t2v_r1}
    return evaluate_files(model, dataset, Path(o.root), o.split)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a load_model spec (folder, hf-hub:..., bundled:..., random:...)")
    p.add_argument("--dataset", required=True, choices=["msrvtt", "msvd", "lsmdc", "moving-shapes"],
                   help="which annotations to read (moving-shapes without --root is generated)")
    add_flags(p, EvalOptions)
    p.add_argument("--no-prompts", dest="use_prompts", action="store_false", default=None,
                   help="same as --no-use-prompts")
    a = vars(p.parse_args(argv))
    o = values(EvalOptions, a)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        results = run(a["model"], a["dataset"], o)
    except (EvaluationError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_table(results))
    for k in ("reversal_accuracy", "reversal_accuracy_translations", "reversal_accuracy_scalings",
              "gallery_t2v_R@1", "caption_accuracy"):
        if k in results:
            print(f"{k}: {results[k]:.3f}")
    if o.json:
        Path(o.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
