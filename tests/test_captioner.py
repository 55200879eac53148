"""The captioning head: weighted, position-masked loss; teacher forcing; decoding."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model import CaptionHeadUntrained, load_model
from model.captioner import caption_loss


def test_loss_masks_by_position_and_downweights_frequent_words(tiny_model) -> None:
    tok = tiny_model.tokenizer
    sot, eot = tok.sot_token_id, tok.eot_token_id
    a, red = tok.encode("a")[0], tok.encode("red")[0]
    tokens = torch.tensor([[sot, a, red, eot, 0, 0]])  # open_clip pads with id 0 (a real token: "!")
    V = tiny_model.clip.vocab_size
    logits = torch.randn(1, 5, V, generator=torch.Generator().manual_seed(0))
    to_out = torch.arange(V)
    loss = caption_loss(logits, tokens, eot, to_out, tiny_model.caption_weights)
    ce = [F.cross_entropy(logits[0, i : i + 1], tokens[0, i + 1 : i + 2]).item() for i in range(3)]
    expected = (0.25 * ce[0] + 1.0 * ce[1] + 0.25 * ce[2]) / 3  # "a" and eot weigh 0.25, "red" 1
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    # Padding positions (ids 0 after eot) do not count, whatever the logits say there.
    logits2 = logits.clone()
    logits2[0, 3:] = torch.randn(2, V) * 100
    assert math.isclose(caption_loss(logits2, tokens, eot, to_out, tiny_model.caption_weights).item(), expected,
                        rel_tol=1e-5)


def test_teacher_forced_logits_shape(tiny_model) -> None:
    tokens = tiny_model.tokenize(["a red circle moves left", "a blue square grows"])
    feats = tiny_model.frame_features(torch.randn(2, 6, 3, 32, 32))
    logits = tiny_model.caption_logits(feats, tokens)
    assert logits.shape == (2, tokens.shape[1] - 1, 49408)
    loss = tiny_model.caption_loss(feats, tokens)
    loss.backward()
    assert tiny_model.captioner.head.weight.grad is not None
    # No gradient flows into CLIP's token embedding through the captioner input.
    assert tiny_model.clip.token_embedding.weight.grad is None
    tiny_model.zero_grad(set_to_none=True)


def test_head_starts_as_token_embedding(tiny_model) -> None:
    torch.testing.assert_close(tiny_model.captioner.head.weight, tiny_model.clip.token_embedding.weight)


def test_restricted_vocab_head(tmp_path) -> None:
    from model import PromptSwitch, architecture

    cfg = architecture("tiny")
    m0 = PromptSwitch(cfg)
    words = m0.tokenizer.encode("a red circle moves left")
    cfg.caption_vocab = sorted({m0.tokenizer.sot_token_id, m0.tokenizer.eot_token_id, *words})
    m = PromptSwitch(cfg)
    assert m.captioner.head.out_features == len(cfg.caption_vocab)
    m.config.caption_trained = True
    caps = m.generate_captions(torch.randn(2, 6, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
                               max_len=6, num_beams=2)
    allowed = {"a", "red", "circle", "moves", "left"}  # never <start_of_text>, though it is in the vocabulary
    assert all(set(c.split()) <= allowed for c in caps), caps


@pytest.mark.parametrize("beams", [1, 3])
def test_generate_returns_strings_within_max_len(tiny_model, beams: int) -> None:
    x = torch.randn(2, 12, 3, 32, 32)
    caps = tiny_model.generate_captions(x, max_len=4, num_beams=beams, allow_untrained=True)
    assert len(caps) == 2 and all(isinstance(c, str) for c in caps)
    for c in caps:
        assert len(tiny_model.tokenizer.encode(c)) <= 4


def test_untrained_head_refuses_to_caption() -> None:
    m = load_model("random:tiny")
    with pytest.raises(CaptionHeadUntrained, match="no trained captioning head"):
        m.generate_captions(torch.randn(1, 6, 3, 32, 32))
