"""The captioning head: the paper's auxiliary loss, and (our addition) a caption generator.

A 2-layer post-norm transformer decoder reads CLIP's own token + positional embeddings (no
gradient into them) and cross-attends to the projected, unnormalised per-frame features.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

FREQUENT_WORDS = "in on of to about this that a an the and there here is are . ,".split()
FREQUENT_WEIGHT = 0.25


class CaptionHead(nn.Module):
    def __init__(self, width: int, heads: int, ff: int, layers: int, vocab: list[int] | None, full_vocab: int):
        super().__init__()
        self.ln_in = nn.LayerNorm(width)
        layer = nn.TransformerDecoderLayer(width, heads, ff, dropout=0.0, batch_first=True, norm_first=False)
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(width))
        out = len(vocab) if vocab is not None else full_vocab
        self.head = nn.Linear(width, out)
        # vocab_ids[j] = CLIP token id of output j; token_to_out maps back (-1 = not emittable).
        ids = torch.tensor(vocab if vocab is not None else range(full_vocab), dtype=torch.long)
        self.register_buffer("vocab_ids", ids, persistent=False)
        to_out = torch.full((full_vocab,), -1, dtype=torch.long)
        to_out[ids] = torch.arange(len(ids))
        self.register_buffer("token_to_out", to_out, persistent=False)

    def init_from_token_embedding(self, token_embedding: torch.Tensor) -> None:
        """Output head starts as CLIP's token embedding matrix (rows of the emittable tokens)."""
        with torch.no_grad():
            self.head.weight.copy_(token_embedding[self.vocab_ids])
            self.head.bias.zero_()

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, token_embedding: nn.Embedding,
                positional_embedding: torch.Tensor) -> torch.Tensor:
        """tokens [B, L] (input positions), memory [B, T, D] -> logits [B, L, V_out]."""
        L = tokens.shape[1]
        with torch.no_grad():
            x = token_embedding(tokens) + positional_embedding[:L]
        x = self.ln_in(x.to(memory.dtype))
        causal = torch.triu(torch.full((L, L), float("-inf"), device=x.device, dtype=x.dtype), 1)
        x = self.decoder(x, memory, tgt_mask=causal)
        return self.head(x)


def frequent_token_ids(tokenizer) -> list[int]:
    """CLIP BPE ids of the down-weighted words, plus start and end of text."""
    ids = {tokenizer.sot_token_id, tokenizer.eot_token_id}
    for w in FREQUENT_WORDS:
        ids.update(tokenizer.encode(w))
    return sorted(ids)


def caption_loss(logits: torch.Tensor, tokens: torch.Tensor, eot_id: int, token_to_out: torch.Tensor,
                 weights: torch.Tensor) -> torch.Tensor:
    """Weighted cross-entropy of teacher-forced logits.

    logits [B, L-1, V] predict tokens[:, 1:]. Positions after the end-of-text token are masked by
    position (open_clip pads with id 0, a real token). `weights` [49408] is 1 except 0.25 for the
    frequent words. Tokens the head cannot emit are ignored."""
    target = tokens[:, 1:]
    eot_pos = (target == eot_id).int().argmax(dim=1)  # first eot in the target
    has_eot = (target == eot_id).any(dim=1)
    eot_pos = torch.where(has_eot, eot_pos, torch.full_like(eot_pos, target.shape[1] - 1))
    pos = torch.arange(target.shape[1], device=target.device).unsqueeze(0)
    mask = pos <= eot_pos.unsqueeze(1)
    out_target = token_to_out[target]
    mask = mask & (out_target >= 0)
    ce = F.cross_entropy(logits.transpose(1, 2).float(), out_target.clamp(min=0), reduction="none")
    w = weights[target] * mask
    return (ce * w).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def generate(head: CaptionHead, memory: torch.Tensor, token_embedding: nn.Embedding, positional_embedding: torch.Tensor,
             sot_id: int, eot_id: int, max_len: int, num_beams: int = 1) -> list[list[int]]:
    """Greedy (num_beams=1) or beam search; returns token ids without sot/eot, per video."""
    B = memory.shape[0]
    max_len = min(max_len, positional_embedding.shape[0] - 1)
    results: list[list[int]] = []
    for b in range(B):
        mem = memory[b : b + 1]
        beams: list[tuple[float, list[int]]] = [(0.0, [sot_id])]
        finished: list[tuple[float, list[int]]] = []
        for _ in range(max_len):
            seqs = torch.tensor([s for _, s in beams], device=memory.device)
            logits = head(seqs, mem.expand(len(beams), -1, -1), token_embedding, positional_embedding)[:, -1]
            logits = logits.float()
            sot_out = int(head.token_to_out[sot_id])
            if sot_out >= 0:
                logits[:, sot_out] = float("-inf")  # a caption never restarts mid-way
            logp = F.log_softmax(logits, dim=-1)
            top_lp, top_j = logp.topk(min(num_beams, logp.shape[-1]), dim=-1)
            candidates = []
            for i, (score, seq) in enumerate(beams):
                for lp, j in zip(top_lp[i].tolist(), top_j[i].tolist()):
                    candidates.append((score + lp, seq + [int(head.vocab_ids[j])]))
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
