"""Batched video encoding (the "mapper" stage): preprocessed frames -> fp16 embeddings (+ captions).

Runs in the main process on the chosen device, with fp16 autocast on CUDA. Captions are generated
only when the model has a trained captioning head (an untrained head would print noise).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["load", "Encoder"]


def load(model: Any, device: str) -> Any:
    """A loaded model object (moved to device, eval mode), from an object or a spec string."""
    if isinstance(model, str):
        from model import load_model

        model = load_model(model)
    return model.to(device).eval()


class Encoder:
    def __init__(self, model: Any, captions: bool = False, caption_max_len: int = 20, caption_beams: int = 1):
        import torch

        self.model = model
        self.device = torch.device(model.device)
        self.cuda = self.device.type == "cuda"
        self.captions = bool(captions)
        self.caption_max_len = caption_max_len
        self.caption_beams = caption_beams
        self.seconds = {"encode": 0.0, "caption": 0.0}

    def _sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def encode(self, pixels: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[str] | None]:
        """pixels: B arrays [T, 3, S, S] -> (video_emb fp16 [B, D], frame_emb fp16 [B, T, D], captions)."""
        import torch
        import torch.nn.functional as F

        t0 = time.perf_counter()
        x = torch.from_numpy(np.stack(pixels))
        if self.cuda:
            x = x.pin_memory().to(self.device, non_blocking=True)
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.cuda else _null()
        with torch.inference_mode(), autocast:
            video, frames = self.model.encode_video(x)
        # Re-normalise in fp32 so the stored fp16 vectors are unit length up to fp16 rounding.
        video = F.normalize(video.float(), dim=-1).to(torch.float16).cpu().numpy()
        frames = F.normalize(frames.float(), dim=-1).to(torch.float16).cpu().numpy()
        self._sync()
        t1 = time.perf_counter()
        self.seconds["encode"] += t1 - t0
        captions = None
        if self.captions:
            with torch.inference_mode(), (torch.autocast("cuda", dtype=torch.float16) if self.cuda else _null()):
                captions = self.model.generate_captions(x, max_len=self.caption_max_len, num_beams=self.caption_beams)
            self._sync()
            self.seconds["caption"] += time.perf_counter() - t1
        return video, frames, captions


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
