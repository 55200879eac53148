"""app.tokens: a query is tokenized once, and the batch the text tower gets is the model's own."""

from __future__ import annotations

import pytest
import torch

from app.tokens import QueryTokenizer

TEXTS = ["a red circle moves left", "", "   ", "A   Red\tCIRCLE &amp; a <b>square</b>", "café naïve façade",
         "🐶 a dog 🏖️ on the beach 🎉", "the " * 120, "x" * 300, "1 2 3 4 5 six", "a red circle moves left"]


def test_batches_equal_the_models_own_tokenize(tiny_model):
    qt = QueryTokenizer(tiny_model)
    context = tiny_model.config.context_length
    ours = qt.tokens(TEXTS, context)
    assert ours.dtype == torch.long and ours.shape == (len(TEXTS), context)
    assert torch.equal(ours.cpu(), tiny_model.tokenize(TEXTS).cpu())
    long_row = ours[TEXTS.index("the " * 120)]
    assert int(long_row[-1]) == qt.tokenizer.eot_token_id  # cut to the context, end token kept


def test_encode_runs_the_tokenizer_once_per_text(tiny_model):
    from types import SimpleNamespace

    class Counting:
        def __init__(self, inner):
            self.inner, self.seen = inner, []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def encode(self, text):
            self.seen.append(text)
            return self.inner.encode(text)

    tok = Counting(tiny_model.tokenizer)
    qt = QueryTokenizer(SimpleNamespace(tokenizer=tok, tokenize=tiny_model.tokenize, device="cpu"))
    first = qt.encode("a blue square grows")
    assert qt.encode("a blue square grows") == first and tok.seen == ["a blue square grows"]
    qt.tokens(["a blue square grows", "a blue square grows", "a green star"], 16)
    assert tok.seen == ["a blue square grows", "a green star"]
    assert qt.decode(first).strip() == "a blue square grows"


def test_other_tokenizers_are_called_as_they_are():
    class Plain:
        def encode(self, text):
            return [len(w) for w in text.split()]

    class Model:
        tokenizer = Plain()
        calls = []

        def tokenize(self, texts):
            self.calls.append(list(texts))
            return torch.ones(len(texts), 5, dtype=torch.long)

    m = Model()
    qt = QueryTokenizer(m)
    assert qt.available and qt.encode("ab cde") == (2, 3)
    assert qt.tokens(["ab cde"], 5).shape == (1, 5) and m.calls == [["ab cde"]]
    assert not QueryTokenizer(object()).available


@pytest.mark.parametrize("text", ["a red circle moves left", "the " * 120])
def test_search_embedding_is_unchanged(tiny_model, text):
    """The engine's batch path (memoised tokens) gives the model's exact features."""
    qt = QueryTokenizer(tiny_model)
    with torch.inference_mode():
        ours = tiny_model.encode_tokens(qt.tokens([text], tiny_model.config.context_length))
        ref = tiny_model.encode_text([text])
    assert torch.allclose(ours.cpu(), ref.cpu(), atol=1e-6)
