"""Caption decoding speed: the old per-video loop against the batched decoder (model.captioner.generate).

    python bench/captions.py [--model bundled:moving-shapes] [--videos 32] [--beams 1 3] [--max-len 12] [--reps 3]

The per-video path below is the decoder as it was before batching (one video at a time, a Python
loop over beams); it lives here only for this comparison. Both decode the same frame features,
so the table also says whether they agree caption for caption.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bench.machine import describe


@torch.no_grad()
def generate_per_video(head, memory, token_embedding, positional_embedding, sot_id: int, eot_id: int,
                       max_len: int, num_beams: int = 1) -> list[list[int]]:
    """The pre-batching decoder: each video alone, candidates kept in Python lists."""
    max_len = min(max_len, positional_embedding.shape[0] - 1)
    sot_out = int(head.token_to_out[sot_id])
    results: list[list[int]] = []
    for b in range(memory.shape[0]):
        beams: list[tuple[float, list[int]]] = [(0.0, [sot_id])]
        finished: list[tuple[float, list[int]]] = []
        for _ in range(max_len):
            seqs = torch.tensor([s for _, s in beams], device=memory.device)
            logits = head(seqs, memory[b : b + 1].expand(len(beams), -1, -1), token_embedding,
                          positional_embedding)[:, -1].float()
            if sot_out >= 0:
                logits[:, sot_out] = float("-inf")
            top_lp, top_j = F.log_softmax(logits, dim=-1).topk(min(num_beams, logits.shape[-1]), dim=-1)
            candidates = [(score + lp, seq + [int(head.vocab_ids[j])])
                          for i, (score, seq) in enumerate(beams)
                          for lp, j in zip(top_lp[i].tolist(), top_j[i].tolist())]
            candidates.sort(key=lambda c: c[0], reverse=True)
            beams = []
            for score, seq in candidates:
                if seq[-1] == eot_id:
                    finished.append((score / (len(seq) - 1), seq))
                else:
                    beams.append((score, seq))
                if len(beams) == num_beams:
                    break
            if len(finished) >= num_beams or not beams:
                break
        if not finished:
            finished = [(s / max(1, len(q) - 1), q) for s, q in beams]
        best = max(finished, key=lambda c: c[0])[1]
        results.append([t for t in best[1:] if t != eot_id])
    return results


def timed(fn, reps: int) -> tuple[float, object]:
    out = fn()  # warm-up, and the result to compare
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="bundled:moving-shapes")
    p.add_argument("--videos", type=int, default=32)
    p.add_argument("--beams", type=int, nargs="+", default=[1, 3])
    p.add_argument("--max-len", type=int, default=12)
    p.add_argument("--reps", type=int, default=3)
    a = p.parse_args(argv)

    import numpy as np

    from model.captioner import generate
    from model.hub import load_model
    from training.shapes import make_batch

    model = load_model(a.model).eval()
    frames, _, _ = make_batch(np.random.default_rng(0), a.videos, model.config.num_frames, model.config.image_size,
                              num_segments=model.config.num_prompts)
    with torch.inference_mode():
        memory = model.frame_features(model.preprocess_clips(frames))
    tok, clip = model.tokenizer, model.clip
    args = (model.captioner, memory, clip.token_embedding, clip.positional_embedding, tok.sot_token_id,
            tok.eot_token_id, a.max_len)
    print(f"model {a.model}, {a.videos} videos, max_len {a.max_len}, median of {a.reps} runs")
    print("| beams | per-video captions/s | batched captions/s | speed-up | same captions |")
    print("|---|---|---|---|---|")
    for k in a.beams:
        t_old, old = timed(lambda: generate_per_video(*args, num_beams=k), a.reps)
        t_new, new = timed(lambda: generate(*args, num_beams=k), a.reps)
        same = sum(x == y for x, y in zip(old, new))
        print(f"| {k} | {a.videos / t_old:.1f} | {a.videos / t_new:.1f} | {t_old / t_new:.1f}x | {same}/{a.videos} |")
    print(describe())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
