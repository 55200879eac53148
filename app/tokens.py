"""A query's tokens, computed once: CLIP's tokenizer (ftfy, HTML unescaping, a regex over the text)
cost a search more server time than the fast text tower, and a query was tokenized three times (to
cut it to the context, to look for unknown words, to encode it).
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

__all__ = ["QueryTokenizer"]


class QueryTokenizer:
    """A model's tokenizer with its `encode` memoised (thread-safe) and batches built from the memo.

    `tokens(texts)` equals `model.tokenize(texts)` for open_clip's BPE tokenizer ([start] + ids + [end],
    cut to the context with the end token kept, zero-padded); any other tokenizer is called as it is.
    """

    def __init__(self, model: Any, cache_size: int = 8192):
        self.model = model
        self.tokenizer = getattr(model, "tokenizer", None)
        self._encode = functools.lru_cache(maxsize=cache_size)(self._encode_uncached)
        tok = self.tokenizer
        self._bpe = (hasattr(tok, "sot_token_id") and hasattr(tok, "eot_token_id")
                     and getattr(tok, "reduction_fn", None) is None and callable(getattr(tok, "encode", None)))

    @property
    def available(self) -> bool:
        return callable(getattr(self.tokenizer, "encode", None))

    def _encode_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text))

    def encode(self, text: str) -> tuple[int, ...]:
        return self._encode(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids))

    def tokens(self, texts: Sequence[str], context: int):
        """[N, context] token ids for the text tower."""
        import torch

        if not self._bpe:
            return self.model.tokenize(list(texts))
        sot, eot = int(self.tokenizer.sot_token_id), int(self.tokenizer.eot_token_id)
        out = torch.zeros(len(texts), context, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [sot, *self.encode(text)[: context - 2], eot]
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out.to(getattr(self.model, "device", "cpu"))
