"""Exponential moving average of the weights, as the reference's timm ModelEmaV2 (off by default).

After every optimiser step each floating-point tensor of the state dict (parameters and buffers)
becomes decay * ema + (1 - decay) * current; other tensors are copied. When on, validation,
model selection and the saved models use the averaged weights, as in the reference's trainer.
"""
from __future__ import annotations

import copy

import torch


class ModelEma:
    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.is_floating_point():
                e.lerp_(m.to(e.dtype), 1.0 - self.decay)
            else:
                e.copy_(m)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
