"""The Prompt Switch video encoder on top of an open_clip CLIP model.

Per frame the vision tower sees [CLS, patches, Np prompt tokens]. Frames come in groups of Np;
frame i of a group gets row i of the prompt cube. Before every block's self-attention, the prompt
part of the attention input (ln_1 output) is transposed inside each group from (frame, slot) to
(slot, frame), so frame f's slot j is computed from frame j's slot f; the residual stream and the
MLP are not switched. At the output, each frame's CLS attends to all Np*Np prompt outputs of its
group (a new attention whose output projection starts at zero), then ln_post and proj.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .captioner import FREQUENT_WEIGHT, CaptionHead, caption_loss, frequent_token_ids, generate
from .config import PromptSwitchConfig
from .transforms import eval_transform


class CaptionHeadUntrained(RuntimeError):
    """generate_captions on a head that was never trained would print noise as captions."""


class PromptSwitch(nn.Module):
    def __init__(self, config: PromptSwitchConfig, clip: nn.Module | None = None):
        super().__init__()
        import open_clip

        config.validate()
        self.config = config
        self.clip = clip if clip is not None else open_clip.model.CLIP(**config.clip)
        visual = self.clip.visual
        width = visual.conv1.out_channels
        np_ = config.num_prompts
        # The prompt cube: frame slot x prompt slot x width.
        self.prompt = nn.Parameter(torch.randn(np_, np_, width) * (width**-0.5) * 0.02)
        self.agg = nn.MultiheadAttention(width, config.agg_heads, batch_first=True)
        nn.init.zeros_(self.agg.out_proj.weight)
        nn.init.zeros_(self.agg.out_proj.bias)
        text_width = self.clip.token_embedding.weight.shape[1]
        self.captioner = CaptionHead(text_width, config.caption_heads, config.caption_ff, config.caption_layers,
                                     config.caption_vocab, self.clip.vocab_size)
        self.captioner.init_from_token_embedding(self.clip.token_embedding.weight)
        self.tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=config.context_length)
        w = torch.ones(self.clip.vocab_size)
        w[frequent_token_ids(self.tokenizer)] = FREQUENT_WEIGHT
        self.register_buffer("caption_weights", w, persistent=False)
        self.spec = "unsaved"
        self._weights_hash: str | None = None

    # ------------------------------------------------------------------ properties
    @property
    def use_prompts(self) -> bool:
        return self.config.use_prompts

    @use_prompts.setter
    def use_prompts(self, value: bool) -> None:
        self.config.use_prompts = bool(value)

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def device(self) -> torch.device:
        return self.prompt.device

    @property
    def has_trained_captioner(self) -> bool:
        return bool(self.config.caption_trained)

    @property
    def fingerprint(self) -> str:
        """Stable hash of weights and of the config fields that change features."""
        if self._weights_hash is None:
            self._weights_hash = self.weights_hash()
        cfg = self.config.to_dict()
        for volatile in ("metrics", "base", "caption_trained"):
            cfg.pop(volatile, None)
        h = hashlib.sha256(self._weights_hash.encode())
        h.update(json.dumps(cfg, sort_keys=True).encode())
        return h.hexdigest()[:16]

    def weights_hash(self) -> str:
        h = hashlib.sha256()
        for name, t in sorted(self.state_dict().items()):
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()

    def invalidate_fingerprint(self) -> None:
        """Call after changing weights (training) so the next fingerprint is recomputed."""
        self._weights_hash = None

    # ------------------------------------------------------------------ preprocessing
    def preprocess(self, image) -> torch.Tensor:
        """One uint8 HWC frame or PIL image -> float [3, S, S] (CLIP's test transform)."""
        return eval_transform(np.asarray(image.convert("RGB") if hasattr(image, "convert") else image),
                              self.config.image_size, self.config.mean, self.config.std)[0]

    def preprocess_frames(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> float [T, 3, S, S]."""
        return eval_transform(frames, self.config.image_size, self.config.mean, self.config.std)

    def preprocess_clips(self, clips: np.ndarray) -> torch.Tensor:
        """uint8 [B, T, H, W, 3] -> float [B, T, 3, S, S] on the model's device (encode_video's input)."""
        return torch.stack([self.preprocess_frames(c) for c in clips]).to(self.device)

    # ------------------------------------------------------------------ vision
    def _switch(self, h: torch.Tensor, n_groups: int) -> torch.Tensor:
        """Transpose the prompt part of the attention input inside each group of Np frames."""
        np_ = self.config.num_prompts
        head, prompts = h[:, :-np_], h[:, -np_:]
        d = prompts.shape[-1]
        prompts = prompts.reshape(n_groups, np_, np_, d).transpose(1, 2).reshape(n_groups * np_, np_, d)
        return torch.cat([head, prompts], dim=1)

    def frame_features(self, frames: torch.Tensor) -> torch.Tensor:
        """frames [B, T, 3, S, S] -> projected, unnormalised frame features [B, T, D]."""
        B, T = frames.shape[:2]
        np_ = self.config.num_prompts
        use_prompts = self.config.use_prompts
        if use_prompts and T % np_:
            raise ValueError(f"{T} frames per video is not a multiple of num_prompts={np_}")
        visual = self.clip.visual
        x = frames.reshape(B * T, *frames.shape[2:]).to(self.prompt.dtype)
        x = visual._embeds(x)  # conv1, CLS, positional embedding, ln_pre
        n_groups = B * T // np_
        if use_prompts:
            prompts = self.prompt.unsqueeze(0).expand(n_groups, -1, -1, -1).reshape(B * T, np_, -1)
            x = torch.cat([x, prompts.to(x.dtype)], dim=1)
        for blk in visual.transformer.resblocks:
            h = blk.ln_1(x)
            if use_prompts:
                h = self._switch(h, n_groups)
            x = x + blk.ls_1(blk.attention(q_x=h))
            x = x + blk.ls_2(blk.mlp(blk.ln_2(x)))
        cls = x[:, :1]
        if use_prompts:
            kv = x[:, -np_:].reshape(n_groups, np_ * np_, -1)
            kv = kv.repeat_interleave(np_, dim=0)  # every frame of a group sees all its prompts
            cls = cls + self.agg(cls, kv, kv, need_weights=False)[0]
        feat = visual.ln_post(cls[:, 0])
        if visual.proj is not None:
            feat = feat @ visual.proj
        return feat.reshape(B, T, -1)

    def encode_video(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frames [B, T, 3, S, S] -> (video_emb [B, D], frame_emb [B, T, D]), both L2-normalised.

        The video feature does not depend on any text: computed once, reused for every query."""
        frame_emb = F.normalize(self.frame_features(frames), dim=-1)
        video_emb = F.normalize(frame_emb.mean(dim=1), dim=-1)
        return video_emb, frame_emb

    # ------------------------------------------------------------------ text
    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(list(texts), context_length=self.config.context_length).to(self.device)

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """CLIP's text tower, run only on the real tokens (causal, so the result is unchanged)."""
        clip = self.clip
        length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token has the largest id
        tokens = tokens[:, :length]
        x = clip.token_embedding(tokens) + clip.positional_embedding[:length]
        mask = clip.attn_mask[:length, :length] if clip.attn_mask is not None else None
        x = clip.transformer(x, attn_mask=mask)
        x = clip.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        x = x @ clip.text_projection if not isinstance(clip.text_projection, nn.Linear) else clip.text_projection(x)
        return F.normalize(x, dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """list of N strings -> [N, D], L2-normalised."""
        return self.encode_tokens(self.tokenize(texts))

    def fast_text_encoder(self, backend: str = "auto", cache_dir=None):
        """A model.text_fast.FastText for this model's current weights: encode_text's features, faster, CPU only.

        Checked against encode_tokens before it is returned; raises model.text_fast.FastTextError when no
        backend fits. The model is not changed (rebuild the encoder after changing weights)."""
        from .text_fast import build_fast_text

        cache = None if cache_dir is None else Path(cache_dir) / "text-onnx" / f"{self.fingerprint}.onnx"
        return build_fast_text(self.clip, self.tokenize, self.encode_tokens, backend, cache)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    # ------------------------------------------------------------------ captions
    def caption_logits(self, frame_feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: input tokens[:, :-1] -> logits for tokens[:, 1:]."""
        return self.captioner(tokens[:, :-1], frame_feats, self.clip.token_embedding, self.clip.positional_embedding)

    def caption_loss(self, frame_feats: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        logits = self.caption_logits(frame_feats, tokens)
        return caption_loss(logits, tokens, self.tokenizer.eot_token_id, self.captioner.token_to_out,
                            self.caption_weights)

    @torch.no_grad()
    def generate_captions(self, frames: torch.Tensor, max_len: int = 20, num_beams: int = 1,
                          allow_untrained: bool = False) -> list[str]:
        """Greedy (num_beams=1) or beam-search captions for frames [B, T, 3, S, S]."""
        if not (self.has_trained_captioner or allow_untrained):
            raise CaptionHeadUntrained(
                f"model {self.spec} has no trained captioning head (its base is {self.config.base}); "
                "train one with `python -m training.train` or use a checkpoint that has one"
            )
        memory = self.frame_features(frames)
        ids = generate(self.captioner, memory, self.clip.token_embedding, self.clip.positional_embedding,
                       self.tokenizer.sot_token_id, self.tokenizer.eot_token_id, max_len, num_beams)
        return [self.tokenizer.decode(seq).strip() for seq in ids]

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, directory, dtype: str = "float32") -> None:
        from .weights import save_pretrained

        save_pretrained(self, directory, dtype=dtype)

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        from .weights import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)
