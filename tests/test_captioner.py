"""The captioning head: weighted, position-masked loss; teacher forcing; decoding."""
from __future__ import annotations

import pytest
import torch

from model import CaptionHeadUntrained, load_model
from model.captioner import generate


def test_teacher_forced_logits_shape() -> None:
    m = load_model("random:tiny")  # its own model: backward writes gradients
    tokens = m.tokenize(["a red circle moves left", "a blue square grows"])
    feats = m.frame_features(torch.randn(2, 6, 3, 32, 32)).detach()
    logits = m.caption_logits(feats, tokens)
    assert logits.shape == (2, tokens.shape[1] - 1, 49408)
    m.caption_loss(feats, tokens).backward()
    assert m.captioner.head.weight.grad is not None
    # No gradient flows into CLIP's token embedding through the captioner input.
    assert m.clip.token_embedding.weight.grad is None


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


def _varied_captioner():
    """A random tiny model with a restricted head whose captions differ from video to video."""
    from model import PromptSwitch, architecture

    cfg = architecture("tiny")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        probe = PromptSwitch(cfg)
        words = probe.tokenizer.encode("a red blue circle square moves left right up down grows shrinks")
        cfg.caption_vocab = sorted({probe.tokenizer.sot_token_id, probe.tokenizer.eot_token_id, *words})
        m = PromptSwitch(cfg)
        with torch.no_grad():
            for p in m.captioner.parameters():
                if p.ndim >= 2:
                    p.normal_(0, 0.2)
            m.captioner.head.weight.normal_(0, 2.0)
    return m


@pytest.mark.parametrize("beams", [1, 2, 4])
def test_batched_decoding_equals_decoding_each_video_alone(beams: int) -> None:
    m = _varied_captioner()
    memory = torch.randn(6, 6, m.embed_dim, generator=torch.Generator().manual_seed(beams)) * 3
    tok = m.tokenizer
    args = (m.captioner, m.clip.token_embedding, m.clip.positional_embedding, tok.sot_token_id, tok.eot_token_id, 8)
    together = generate(args[0], memory, *args[1:], num_beams=beams)
    alone = [generate(args[0], memory[i : i + 1], *args[1:], num_beams=beams)[0] for i in range(6)]
    assert together == alone
    assert len({tuple(c) for c in together}) > 1  # the videos really get different captions
    assert all(len(c) <= 8 and tok.eot_token_id not in c and tok.sot_token_id not in c for c in together)


def test_greedy_decoding_is_the_argmax_at_every_step() -> None:
    m = _varied_captioner()
    memory = torch.randn(4, 6, m.embed_dim, generator=torch.Generator().manual_seed(0)) * 3
    tok = m.tokenizer
    sot_out = int(m.captioner.token_to_out[tok.sot_token_id])

    def argmax_caption(i: int) -> list[int]:
        seq = [tok.sot_token_id]
        for _ in range(10):
            with torch.no_grad():
                logits = m.captioner(torch.tensor([seq]), memory[i : i + 1], m.clip.token_embedding,
                                     m.clip.positional_embedding)[0, -1]
            logits[sot_out] = float("-inf")
            seq.append(int(m.captioner.vocab_ids[int(logits.argmax())]))
            if seq[-1] == tok.eot_token_id:
                break
        return [t for t in seq[1:] if t != tok.eot_token_id]

    got = generate(m.captioner, memory, m.clip.token_embedding, m.clip.positional_embedding, tok.sot_token_id,
                   tok.eot_token_id, 10, num_beams=1)
    assert got == [argmax_caption(i) for i in range(4)]
