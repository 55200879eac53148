"""A fast CPU path for CLIP's text tower: the same features for a fraction of open_clip's time.

A search query is 7-12 tokens; open_clip runs all 77 positions through every layer, and even over
only the real tokens most of the time is framework overhead around small matrix products. This
module writes the tower once more as a plain forward over the real tokens only (fused causal
scaled-dot-product attention, pooling at the end-of-text token, normalised output; the tower is
causal, so the padding positions never change the pooled token) and runs it with one of:

- "onnx": exported once to ONNX and run by ONNX Runtime (its small-matrix kernels are about twice
  as fast as torch's here); the export is cached on disk when a cache folder is given.
- "torch": the same forward in eager torch (a fallback when onnxruntime is not installed).

The result is checked against the exact path on probe sentences when it is built: a backend that
disagrees by more than `tolerance` (max abs difference of normalised features) is refused, so the
fast path can never silently change what a search returns. CPU only; the GPU path stays exact.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

log = logging.getLogger(__name__)

__all__ = ["FastText", "FastTextError", "TextTower", "build_fast_text", "BACKENDS", "PROBE_TEXTS"]

BACKENDS = ("auto", "onnx", "torch")
#: Sentences of several lengths that every backend must reproduce before it is used.
PROBE_TEXTS = (
    "a dog runs on the beach", "a red circle moves to the left", "people dance at a party",
    "a man is cooking pasta in a small kitchen while talking to the camera", "cars", "two birds fly over a lake",
)
TOLERANCE = 1e-4


class FastTextError(RuntimeError):
    """The fast path cannot be built for this model (or does not reproduce its features)."""


def unsupported_reason(clip: nn.Module) -> str | None:
    """Why this open_clip CLIP's text tower cannot take the fast path (None when it can)."""
    if getattr(clip, "text_pool_type", "argmax") != "argmax":
        return f"text pooling {clip.text_pool_type!r} (only 'argmax', CLIP's own, is written here)"
    if getattr(clip, "attn_mask", None) is None:
        return "the text tower is not causal"
    if not getattr(clip.transformer, "batch_first", True):
        return "a sequence-first text transformer"
    for blk in clip.transformer.resblocks:
        if not isinstance(blk.attn, nn.MultiheadAttention) or not isinstance(getattr(blk, "ln_attn", nn.Identity()),
                                                                             nn.Identity):
            return "a text block with a different attention"
    return None


class TextTower(nn.Module):
    """CLIP's text tower over real tokens only: tokens [B, L], end-of-text index [B] -> normalised [B, D]."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        reason = unsupported_reason(clip)
        if reason:
            raise FastTextError(f"no fast text path for {reason}")
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.blocks = clip.transformer.resblocks
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection

    def forward(self, tokens: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        b, n = tokens.shape
        x = self.token_embedding(tokens) + self.positional_embedding[:n]
        for blk in self.blocks:
            attn = blk.attn
            d, heads = x.shape[-1], attn.num_heads
            qkv = F.linear(blk.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = qkv.view(b, n, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, n, d)
            x = x + blk.ls_1(attn.out_proj(o))
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
        x = self.ln_final(x[torch.arange(b), eot])  # LayerNorm is per token: pool first, then normalise
        proj = self.text_projection
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
        return F.normalize(x, dim=-1)


def cut_tokens(tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens cut to the longest real sequence, end-of-text index per row); end-of-text has the largest id."""
    eot = tokens.argmax(dim=-1)
    return tokens[:, : int(eot.max()) + 1].contiguous(), eot


class FastText:
    """Encode token batches [N, context] -> normalised features [N, D] (float32, CPU) with one backend."""

    def __init__(self, backend: str, run: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
        self.backend = backend
        self._run = run
        self.calls = 0  # forward calls (the engine's batcher is tested by counting them)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        cut, eot = cut_tokens(tokens.to("cpu", torch.long))
        self.calls += 1
        return self._run(cut, eot)


def _torch_runner(tower: TextTower) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    def run(tokens: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return tower(tokens, eot).float()

    return run


def _export_onnx(tower: TextTower, cache: Path | None) -> bytes:
    """The tower as ONNX bytes (dynamic batch and length), read from / written to `cache` when given."""
    if cache is not None and cache.is_file():
        return cache.read_bytes()
    tokens = torch.tensor([[1, 2, 3, 4]], dtype=torch.long)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(tower, (tokens, torch.tensor([3])), buf, input_names=["tokens", "eot"],
                          output_names=["features"], dynamic_axes={"tokens": {0: "b", 1: "n"}, "eot": {0: "b"}},
                          opset_version=17, dynamo=False)
    data = buf.getvalue()
    if cache is not None:
        try:
            from .files import atomic_write_bytes

            cache.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(cache, data)
        except OSError as e:
            log.warning("could not cache the ONNX text tower at %s: %s", cache, e)
    return data


def _onnx_runner(tower: TextTower, cache: Path | None, threads: int) -> Callable:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise FastTextError("onnxruntime is not installed (pip install -r requirements.txt)") from e
    try:
        data = _export_onnx(tower, cache)
    except Exception as e:  # the exporter needs the `onnx` package and may not know every op
        raise FastTextError(f"could not export the text tower to ONNX ({type(e).__name__}: {e})") from e
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # Spinning worker threads would take CPU from the web server between queries on a small machine.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])

    def run(tokens: torch.Tensor, eot: torch.Tensor) -> torch.Tensor:
        out = session.run(None, {"tokens": tokens.numpy(), "eot": eot.numpy()})[0]
        return torch.from_numpy(out)

    return run


def build_fast_text(
    clip: nn.Module,
    tokenize: Callable[[Sequence[str]], torch.Tensor],
    reference: Callable[[torch.Tensor], torch.Tensor],
    backend: str = "auto",
    cache: Path | None = None,
    tolerance: float = TOLERANCE,
) -> FastText:
    """A checked fast text encoder for `clip` (on the CPU). Raises FastTextError when none fits.

    tokenize: texts -> token ids [N, context]; reference: token ids -> the exact normalised features
    the fast path must reproduce; cache: where the ONNX export is kept between start-ups.
    """
    if backend not in BACKENDS:
        raise FastTextError(f"unknown fast text backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if next(clip.parameters()).device.type != "cpu":
        raise FastTextError("the fast text path is for the CPU; on a GPU the exact path is used")
    tower = TextTower(clip).eval()
    threads = max(1, torch.get_num_threads())
    tried: list[str] = []
    for name in (["onnx", "torch"] if backend == "auto" else [backend]):
        try:
            run = _onnx_runner(tower, cache, threads) if name == "onnx" else _torch_runner(tower)
            fast = FastText(name, run)
            tokens = tokenize(PROBE_TEXTS).to("cpu")
            with torch.inference_mode():
                exact = reference(tokens).float().cpu()
            diff = float((fast.encode(tokens) - exact).abs().max())
        except FastTextError as e:
            tried.append(f"{name}: {e}")
            continue
        if diff > tolerance:
            tried.append(f"{name}: features differ by {diff:.2e} (> {tolerance:g})")
            continue
        fast.calls = 0
        log.info("fast text path: %s (max difference %.1e on %d probe texts)", name, diff, len(PROBE_TEXTS))
        return fast
    raise FastTextError("no fast text path: " + "; ".join(tried))


def fast_text_wanted(default: str = "auto") -> str | None:
    """The backend asked for by PROMPTSWITCH_FAST_TEXT (0/off/false/no: None, i.e. the exact path)."""
    value = os.environ.get("PROMPTSWITCH_FAST_TEXT", default).strip().lower() or default
    return None if value in ("0", "off", "false", "no", "none", "exact") else value
