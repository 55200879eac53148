"""Is the Hugging Face Hub reachable? Asked once, at the app's start-up, never inside load_model.

Without this, an offline start spends about a minute in download retries before falling back; a batch
job (precompute, training) keeps huggingface_hub's own behaviour and its short timeouts.
"""
from __future__ import annotations

import os
import re
import socket
import sys

from model.hub import hub_offline


def go_offline_if_unreachable(timeout: float = 3.0) -> bool:
    """If the Hub cannot be reached, switch huggingface_hub to its cache; True when the app runs offline.

    Skipped behind a proxy (a direct probe says nothing there).
    """
    if hub_offline():
        return True
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = re.sub(r"^https?://", "", endpoint).split("/")[0]
    port = 443
    if ":" in host:
        host, p = host.rsplit(":", 1)
        port = int(p) if p.isdigit() else 443
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except OSError:
        os.environ["HF_HUB_OFFLINE"] = "1"
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:
            constants.HF_HUB_OFFLINE = True
        return True
