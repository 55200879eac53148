"""Models -> folders and the Hugging Face Hub: config.json + model.safetensors + a model card README.md."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .files import atomic_save, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "prompt-switch"
FORMAT_VERSION = 1


def save_pretrained(model: Any, directory, dtype: str = "float32") -> Path:
    """Write config.json + model.safetensors + README.md (atomically per file)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    torch_dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    state = {k: v.detach().to("cpu", torch_dtype).contiguous().clone() for k, v in model.state_dict().items()}
    atomic_save(directory / WEIGHTS_NAME,
                lambda tmp: save_file(state, str(tmp), metadata={"format": "pt", "model_type": MODEL_TYPE}))
    cfg = {"model_type": MODEL_TYPE, "format_version": FORMAT_VERSION, **model.config.to_dict()}
    atomic_write_text(directory / CONFIG_NAME, json.dumps(cfg, indent=2, sort_keys=True))
    atomic_write_text(directory / "README.md", model_card(model))
    return directory


def model_card(model: Any) -> str:
    c = model.config
    prompts = "on" if c.use_prompts else "off (mean-pooling baseline)"
    v = c.clip["vision_cfg"]
    metrics = "\n".join(f"| {k} | {val} |" for k, val in sorted(c.metrics.items())) or "| (none recorded) | |"
    return f"""---
license: mit
library_name: promptswitch
tags: [text-to-video-retrieval, clip, prompt-switch]
---
# Prompt Switch video-text model

A text-to-video retrieval model in the format of [promptswitch](https://github.com/promptswitch/promptswitch),
implementing *Prompt Switch: Efficient CLIP Adaptation for Text-Video Retrieval* (Deng et al., ICCV 2023).
Video features come from a prompt cube of {c.num_prompts} x {c.num_prompts} learned tokens that is
switched between frames inside every attention layer, then mean-pooled; they do not depend on the
query, so a library is encoded once and searched with a dot product.

- Base weights: `{c.base}`
- Vision tower: width {v['width']}, {v['layers']} layers, patch {v['patch_size']}, {c.image_size} px
- Frames per video: {c.num_frames} (groups of {c.num_prompts}); prompts: {prompts}
- Captioning head: {'trained' if c.caption_trained else 'untrained'}
- Fingerprint: `{model.fingerprint}`

## Metrics
| metric | value |
|---|---|
{metrics}

## Use
```python
from model import load_model
m = load_model("hf-hub:<org>/<name>")
```
Licence: MIT for this code and these weights; the base CLIP weights keep their own licence.
"""


def push_to_hub(model: Any, repo_id: str, private: bool = False, dtype: str = "float32") -> str:
    """Publish the save_pretrained layout to a Hub model repo; returns the commit URL."""
    import tempfile

    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, dtype=dtype)
        info = api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message="Upload Prompt Switch model")
    return str(info)
