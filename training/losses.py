"""The contrastive loss of a batch (the reference's CLIPLoss). The caption loss lives with the head
(model.captioner.caption_loss); duplicates are removed across the global batch by
training.distributed.global_keep before either is computed."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def contrastive_loss(video_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of text-to-video and video-to-text cross-entropies; inputs L2-normalised, row i matches i."""
    logits = logit_scale.exp() * text_emb @ video_emb.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
