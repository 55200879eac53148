"""Prompt Switch on open_clip: the video-text network and its weights (load, save, push, convert).

Importing this package is cheap; torch and open_clip load on first use of a public name.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["load_model", "save_pretrained", "push_to_hub", "PromptSwitch", "PromptSwitchConfig",
           "ModelSpecError", "CaptionHeadUntrained", "architecture"]

_WHERE = {
    "load_model": "hub", "ModelSpecError": "hub", "save_pretrained": "weights", "push_to_hub": "weights",
    "PromptSwitch": "prompt_switch", "CaptionHeadUntrained": "prompt_switch",
    "PromptSwitchConfig": "config", "architecture": "config",
}

if TYPE_CHECKING:
    from .config import PromptSwitchConfig, architecture
    from .hub import ModelSpecError, load_model
    from .prompt_switch import CaptionHeadUntrained, PromptSwitch
    from .weights import push_to_hub, save_pretrained


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'model' has no attribute {name!r}")
