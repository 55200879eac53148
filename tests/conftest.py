"""Shared test setup: offline, no telemetry, small shared fixtures."""
from __future__ import annotations

import os

# Before anything imports huggingface_hub or gradio: tests never reach the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    """A random-weight tiny model shared by read-only tests (do not modify it)."""
    from model import load_model

    return load_model("random:tiny")
