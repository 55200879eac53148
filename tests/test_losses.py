"""The losses against the reference's formulas (modules/loss.py of bladewaltz1/PromptSwitch)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.captioner import FREQUENT_WEIGHT, caption_loss
from training.distributed import global_keep
from training.losses import contrastive_loss

V = 49408


def _weights(tiny_model) -> torch.Tensor:
    return tiny_model.caption_weights


def reference_caption_loss(logits: torch.Tensor, input_ids: torch.Tensor, eot: int,
                           weight: torch.Tensor) -> torch.Tensor:
    """CaptionLoss.forward: the reference's tokenizer pads with end-of-text, so inputs != eot."""
    mask = input_ids[:, :-1] != eot
    return F.cross_entropy(logits[mask], input_ids[:, 1:][mask], weight=weight)


def _tokens(tiny_model, texts: list[str], pad_with: int) -> torch.Tensor:
    tok = tiny_model.tokenizer
    rows = [[tok.sot_token_id, *tok.encode(t), tok.eot_token_id] for t in texts]
    width = max(map(len, rows))
    return torch.tensor([r + [pad_with] * (width - len(r)) for r in rows])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_caption_loss_is_the_reference_weighted_cross_entropy(tiny_model, seed: int) -> None:
    eot = tiny_model.tokenizer.eot_token_id
    texts = ["a red circle moves left", "the blue square is in the corner", "two dogs"]
    ref_tokens = _tokens(tiny_model, texts, pad_with=eot)  # the reference pads with end-of-text
    our_tokens = _tokens(tiny_model, texts, pad_with=0)    # open_clip pads with id 0
    logits = torch.randn(3, ref_tokens.shape[1] - 1, V, generator=torch.Generator().manual_seed(seed)) * 3
    expected = reference_caption_loss(logits, ref_tokens, eot, _weights(tiny_model))
    ours = caption_loss(logits, our_tokens, eot, torch.arange(V), _weights(tiny_model))
    assert ours.item() == pytest.approx(expected.item(), rel=1e-5)


def test_caption_loss_divides_by_the_weights_not_the_token_count(tiny_model) -> None:
    tok = tiny_model.tokenizer
    sot, eot, a = tok.sot_token_id, tok.eot_token_id, tok.encode("a")[0]
    tokens = torch.tensor([[sot, a, eot, 0]])
    logits = torch.randn(1, 3, V, generator=torch.Generator().manual_seed(0))
    ce = [F.cross_entropy(logits[0, i : i + 1], tokens[0, i + 1 : i + 2]).item() for i in range(2)]
    assert FREQUENT_WEIGHT == 0.25
    # both targets ("a" and end-of-text) weigh 0.25: the weighted mean is the plain mean
    loss = caption_loss(logits, tokens, eot, torch.arange(V), _weights(tiny_model))
    assert loss.item() == pytest.approx((ce[0] + ce[1]) / 2, rel=1e-5)


def test_caption_loss_ignores_positions_after_end_of_text(tiny_model) -> None:
    eot = tiny_model.tokenizer.eot_token_id
    tokens = _tokens(tiny_model, ["a red circle", "a blue square moves up and down"], pad_with=0)
    logits = torch.randn(2, tokens.shape[1] - 1, V, generator=torch.Generator().manual_seed(0))
    changed = logits.clone()
    changed[0, 5:] = torch.randn_like(changed[0, 5:]) * 100  # after "a red circle <eot>"
    args = (eot, torch.arange(V), _weights(tiny_model))
    assert caption_loss(changed, tokens, *args).item() == pytest.approx(caption_loss(logits, tokens, *args).item())


def test_restricted_vocabulary_leaves_out_targets_it_cannot_emit(tiny_model) -> None:
    tok = tiny_model.tokenizer
    sot, eot, red, dog = tok.sot_token_id, tok.eot_token_id, tok.encode("red")[0], tok.encode("dog")[0]
    vocab = [sot, eot, red]
    to_out = torch.full((V,), -1)
    to_out[torch.tensor(vocab)] = torch.arange(3)
    tokens = torch.tensor([[sot, red, dog, eot]])
    logits = torch.randn(1, 3, 3, generator=torch.Generator().manual_seed(0))
    loss = caption_loss(logits, tokens, eot, to_out, _weights(tiny_model))
    # positions 0 (-> red, weight 1) and 2 (-> eot, weight 0.25) count; "dog" cannot be emitted
    ce0 = F.cross_entropy(logits[0, 0:1], torch.tensor([2])).item()
    ce2 = F.cross_entropy(logits[0, 2:3], torch.tensor([1])).item()
    assert loss.item() == pytest.approx((ce0 + 0.25 * ce2) / 1.25, rel=1e-5)


def reference_clip_loss(sims: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIPLoss.forward: log-softmax along each axis, the diagonal's mean, averaged."""
    logits = sims * logit_scale.exp()
    return (-torch.diag(F.log_softmax(logits, dim=1)).mean() - torch.diag(F.log_softmax(logits, dim=0)).mean()) / 2


def test_contrastive_loss_is_the_reference_clip_loss() -> None:
    g = torch.Generator().manual_seed(0)
    v = F.normalize(torch.randn(7, 16, generator=g), dim=-1)
    t = F.normalize(torch.randn(7, 16, generator=g), dim=-1)
    scale = torch.tensor(math.log(30.0))
    torch.testing.assert_close(contrastive_loss(v, t, scale), reference_clip_loss(t @ v.t(), scale))


def test_contrastive_loss_prefers_matching_pairs() -> None:
    e = F.normalize(torch.eye(4), dim=-1)
    shuffled = e[[1, 0, 3, 2]]
    scale = torch.tensor(math.log(10.0))
    assert contrastive_loss(e, e, scale) < contrastive_loss(e, shuffled, scale)


def test_global_keep_in_one_process_keeps_first_captions() -> None:
    assert global_keep(["v1", "v2", "v1", "v3", "v2"]) == [0, 1, 3]
    assert global_keep([]) == []
