"""Symmetric InfoNCE over a batch, with the reference's in-batch de-duplication."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def first_occurrences(video_ids: Sequence[str]) -> list[int]:
    """Indices that keep only the first caption of a video appearing twice in a batch.

    Two captions of one video in a batch would each have a false negative (its twin)."""
    seen: set[str] = set()
    keep = []
    for i, v in enumerate(video_ids):
        if v not in seen:
            seen.add(v)
            keep.append(i)
    return keep


def contrastive_loss(video_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of text-to-video and video-to-text cross-entropies; inputs L2-normalised, row i matches i."""
    logits = logit_scale.exp() * text_emb @ video_emb.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
