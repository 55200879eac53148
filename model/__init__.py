"""Prompt Switch on open_clip: the video-text model, its weights, training and evaluation.

Importing this package is cheap; torch and open_clip load on first use of a public name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["load_model", "save_pretrained", "push_to_hub", "PromptSwitch", "PromptSwitchConfig",
           "ModelSpecError", "CaptionHeadUntrained", "architecture"]

_WHERE = {
    "load_model": "hub", "save_pretrained": "hub", "push_to_hub": "hub", "ModelSpecError": "hub",
    "PromptSwitch": "prompt_switch", "CaptionHeadUntrained": "prompt_switch",
    "PromptSwitchConfig": "config", "architecture": "config",
}

if TYPE_CHECKING:
    from .config import PromptSwitchConfig, architecture
    from .hub import ModelSpecError, load_model, push_to_hub, save_pretrained
    from .prompt_switch import CaptionHeadUntrained, PromptSwitch


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
