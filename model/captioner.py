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
    """The reference's caption loss: weighted cross-entropy sum(w * ce) / sum(w).

    logits [B, L-1, V] predict tokens[:, 1:]. A position counts when its INPUT token comes before the
    first end-of-text (the reference's tokenizer pads with end-of-text, open_clip's with id 0, so the
    mask is by position). `weights` [49408] is 1 except 0.25 for the frequent words; as in
    F.cross_entropy(weight=...), each position weighs its target's weight and the sum is divided by
    the sum of those weights, not by the token count. Targets the head cannot emit are left out."""
    num, den = caption_loss_terms(logits, tokens, eot_id, token_to_out, weights)
    return num / den.clamp(min=torch.finfo(den.dtype).tiny)


def caption_loss_terms(logits: torch.Tensor, tokens: torch.Tensor, eot_id: int, token_to_out: torch.Tensor,
                       weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of w * ce, sum of w) over the counted positions: data-parallel training sums both over ranks."""
    inputs, target = tokens[:, :-1], tokens[:, 1:]
    mask = (inputs == eot_id).int().cumsum(dim=1) == 0  # input positions before the first eot
    out_target = token_to_out[target]
    mask = mask & (out_target >= 0)
    ce = F.cross_entropy(logits[mask].float(), out_target[mask], reduction="none")
    w = weights[target][mask].to(ce.dtype)
    return (ce * w).sum() + 0.0 * logits.sum(), w.sum()


def _step_logits(head: CaptionHead, seqs: torch.Tensor, memory: torch.Tensor, token_embedding: nn.Embedding,
                 positional_embedding: torch.Tensor, sot_id: int) -> torch.Tensor:
    """Log-probabilities of the next token for every sequence; a caption never restarts mid-way."""
    logits = head(seqs, memory, token_embedding, positional_embedding)[:, -1].float()
    sot_out = int(head.token_to_out[sot_id])
    if sot_out >= 0:
        logits[:, sot_out] = float("-inf")
    return F.log_softmax(logits, dim=-1)


class _Beams:
    """Beam-search state for a whole batch as tensors: B videos x K beams.

    Follows the per-video rule exactly: each step ranks the candidates of all live beams; in that
    order an end-of-text candidate finishes (score / generated length) and any other candidate
    becomes a live beam, until K live beams are found. A video stops once K hypotheses finished or
    none is live."""

    def __init__(self, batch: int, beams: int, sot_id: int, device: torch.device):
        self.K = beams
        self.seqs = torch.full((batch, 1, 1), sot_id, dtype=torch.long, device=device)  # [B, live, L]
        self.scores = torch.zeros(batch, 1, device=device)  # -inf marks a dead beam
        self.n_finished = torch.zeros(batch, dtype=torch.long, device=device)
        self.best_score = torch.full((batch,), float("-inf"), device=device)
        self.best_seq: list[list[int] | None] = [None] * batch
        self.done = torch.zeros(batch, dtype=torch.bool, device=device)

    def step(self, logp: torch.Tensor, vocab_ids: torch.Tensor, eot_id: int) -> None:
        """logp [B * live, V] for the current beams: choose the next live beams and the finished ones."""
        B, live, L = self.seqs.shape
        K = self.K
        top_lp, top_j = logp.topk(min(K, logp.shape[-1]), dim=-1)  # [B*live, k]
        k = top_lp.shape[-1]
        cand = (self.scores.unsqueeze(-1) + top_lp.view(B, live, k)).view(B, live * k)
        tokens = vocab_ids[top_j].view(B, live * k)
        order = cand.argsort(dim=1, descending=True, stable=True)
        cand, tokens = cand.gather(1, order), tokens.gather(1, order)
        parent = order // k
        valid = cand > float("-inf")
        is_eot = (tokens == eot_id) & valid
        live_rank = torch.cumsum(valid & ~is_eot, dim=1)
        take_live = valid & ~is_eot & (live_rank <= K)
        take_eot = is_eot & (live_rank < K)
        self._finish(cand, tokens, parent, take_eot, L)
        self._advance(cand, tokens, parent, take_live)

    def _finish(self, cand, tokens, parent, take_eot, L) -> None:
        norm = torch.where(take_eot, cand / L, torch.full_like(cand, float("-inf")))  # L = generated incl. eot
        best, where = norm.max(dim=1)
        active = ~self.done
        self.n_finished += (take_eot.sum(dim=1) * active).long()
        better = active & (best > self.best_score)
        for b in better.nonzero().flatten().tolist():
            self.best_score[b] = best[b]
            p = int(parent[b, where[b]])
            self.best_seq[b] = self.seqs[b, p].tolist() + [int(tokens[b, where[b]])]

    def _advance(self, cand, tokens, parent, take_live) -> None:
        B = cand.shape[0]
        K = self.K
        # the chosen candidates first (in rank order), then the rest as dead beams
        key = torch.where(take_live, torch.arange(cand.shape[1], device=cand.device).expand_as(cand),
                          cand.shape[1] + torch.arange(cand.shape[1], device=cand.device).expand_as(cand))
        pick = key.argsort(dim=1)[:, :K]
        chosen = take_live.gather(1, pick)
        par = parent.gather(1, pick)
        new_seqs = torch.cat([self.seqs.gather(1, par.unsqueeze(-1).expand(-1, -1, self.seqs.shape[2])),
                              tokens.gather(1, pick).unsqueeze(-1)], dim=2)
        picked = cand.gather(1, pick)
        new_scores = torch.where(chosen, picked, torch.full_like(picked, float("-inf")))
        keep = self.done.view(B, 1, 1)
        if self.seqs.shape[1] < K:  # first step: pad the frozen state to K beams
            pad = K - self.seqs.shape[1]
            old_seqs = torch.cat([self.seqs, self.seqs[:, :1].expand(-1, pad, -1)], dim=1)
            old_scores = torch.cat([self.scores, torch.full((B, pad), float("-inf"), device=cand.device)], dim=1)
        else:
            old_seqs, old_scores = self.seqs, self.scores
        old_seqs = torch.cat([old_seqs, old_seqs[:, :, -1:]], dim=2)
        self.seqs = torch.where(keep, old_seqs, new_seqs)
        self.scores = torch.where(keep.view(B, 1), old_scores, new_scores)
        self.done |= (self.n_finished >= K) | ~chosen.any(dim=1)

    def results(self, eot_id: int) -> list[list[int]]:
        """Best finished hypothesis per video, else the best live one (normalised the same way)."""
        out = []
        for b in range(self.seqs.shape[0]):
            seq = self.best_seq[b]
            if seq is None:
                j = int(self.scores[b].argmax())
                seq = self.seqs[b, j].tolist()
            out.append([t for t in seq[1:] if t != eot_id])
        return out


@torch.no_grad()
def generate(head: CaptionHead, memory: torch.Tensor, token_embedding: nn.Embedding, positional_embedding: torch.Tensor,
             sot_id: int, eot_id: int, max_len: int, num_beams: int = 1) -> list[list[int]]:
    """Greedy (num_beams=1) or beam search over the whole batch at once; token ids without sot/eot.

    The start-token step runs once per video; later steps run every live beam of every video in one
    call of the decoder. Videos that are done keep their state while the others go on."""
    B = memory.shape[0]
    max_len = min(max_len, positional_embedding.shape[0] - 1)
    state = _Beams(B, num_beams, sot_id, memory.device)
    mem = memory
    for _ in range(max_len):
        live = state.seqs.shape[1]
        if mem.shape[0] != B * live:
            mem = memory.repeat_interleave(live, dim=0)
        logp = _step_logits(head, state.seqs.view(B * live, -1), mem, token_embedding, positional_embedding, sot_id)
        state.step(logp, head.vocab_ids, eot_id)
        if bool(state.done.all()):
            break
    return state.results(eot_id)
