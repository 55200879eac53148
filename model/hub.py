"""Model specs -> models, and models -> folders / the Hugging Face Hub.

Layout (the timm/open_clip convention): `config.json` + `model.safetensors` + a model card
`README.md`. Only safetensors are read from anywhere: nothing downloaded is ever unpickled.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch

from .config import PromptSwitchConfig, architecture
from .prompt_switch import PromptSwitch
from .weights import CONFIG_NAME, MODEL_TYPE, WEIGHTS_NAME

ASSETS = Path(__file__).resolve().parent.parent / "assets" / "models"
SPEC_HELP = ("random:<tiny|ViT-B-32|ViT-B-16>, a local folder written by save_pretrained, "
             "hf-hub:<org>/<name>[@revision], clip:<open_clip model>/<pretrained tag>, or bundled:<name>")


class ModelSpecError(ValueError):
    """A model spec that cannot be resolved; the message says what was tried and what to do."""


def _fail(spec: str, tried: str, todo: str, cause: BaseException | None = None) -> ModelSpecError:
    msg = f"cannot load model {spec!r}: {tried}. {todo}"
    if cause is not None:
        msg += f" (cause: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''})"
    return ModelSpecError(msg)


HUB_SPEC = re.compile(r"^hf-hub:([\w.\-]+/[\w.\-]+)(?:@([\w.\-/]+))?$")


def parse_hub_spec(spec: str) -> tuple[str, str | None] | None:
    """"hf-hub:org/name[@rev]" -> (repo_id, revision or None); None when `spec` is not of that form."""
    m = HUB_SPEC.match(spec.strip())
    return (m.group(1), m.group(2)) if m else None


def hub_offline() -> bool:
    """True when huggingface_hub is told to use its cache only (HF_HUB_OFFLINE set and not 0)."""
    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")


def quick_network_failures() -> None:
    """A hub that cannot be reached must fail in seconds, not retry for a minute."""
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "5")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def load_model(spec: str, device: str = "cpu") -> PromptSwitch:
    """Resolve a model spec (see SPEC_HELP) into an eval-mode PromptSwitch on `device`."""
    spec = spec.strip()
    if spec.startswith("random:"):
        model = _random(spec)
    elif spec.startswith("clip:"):
        model = _from_clip(spec)
    elif spec.startswith("hf-hub:"):
        model = _from_hub(spec)
    elif spec.startswith("bundled:"):
        name = spec.split(":", 1)[1]
        folder = ASSETS / name
        if not (folder / CONFIG_NAME).is_file():
            found = ASSETS.glob("*") if ASSETS.is_dir() else []
            available = sorted(p.name for p in found if (p / CONFIG_NAME).is_file())
            raise _fail(spec, f"looked in {folder}", f"bundled models: {available or 'none'} "
                        "(build the demo model with `make shapes-model`)")
        model = _from_folder(folder, spec)
    elif Path(spec).expanduser().is_dir():
        model = _from_folder(Path(spec).expanduser(), spec)
    else:
        raise _fail(spec, "it is not a known spec form and not an existing folder", f"Use one of: {SPEC_HELP}")
    model.spec = spec
    _ = model.fingerprint  # hash the weights once, on the CPU, in fp32
    return model.to(device).eval()


def _random(spec: str) -> PromptSwitch:
    name = spec.split(":", 1)[1]
    try:
        config = architecture(name)
    except KeyError as e:
        raise _fail(spec, f"no architecture named {name!r}", str(e.args[0])) from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PromptSwitch(config)


def _from_clip(spec: str) -> PromptSwitch:
    """Plain CLIP weights through open_clip, run as the mean-pooling baseline (no prompts)."""
    import open_clip

    body = spec.split(":", 1)[1]
    if "/" not in body:
        raise _fail(spec, "expected clip:<open_clip model>/<pretrained tag>", "e.g. clip:ViT-B-32-quickgelu/openai")
    name, tag = body.split("/", 1)
    clip_cfg = open_clip.get_model_config(name)
    if clip_cfg is None:
        raise _fail(spec, f"open_clip has no model config {name!r}", "see open_clip.list_models()")
    quick_network_failures()
    try:
        clip = open_clip.create_model(name, pretrained=tag, require_pretrained=True)
    except Exception as e:  # open_clip raises several types for missing/unreachable weights
        offline = hub_offline()
        why = "HF_HUB_OFFLINE is set" if offline else "the hub may be unreachable"
        raise _fail(spec, f"open_clip could not fetch pretrained weights {tag!r} for {name} ({why} and the "
                    "weights are not in the local cache)", "Connect once to download them, or use "
                    "bundled:moving-shapes offline", e) from None
    keep = {k: clip_cfg[k] for k in ("embed_dim", "vision_cfg", "text_cfg", "quick_gelu") if k in clip_cfg}
    keep.setdefault("quick_gelu", False)
    vision = keep["vision_cfg"]
    config = PromptSwitchConfig(clip=keep, base=spec, use_prompts=False,
                                agg_heads=vision["width"] // vision.get("head_width", 64))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return PromptSwitch(config, clip=clip)


def _from_hub(spec: str) -> PromptSwitch:
    from huggingface_hub import hf_hub_download

    m = HUB_SPEC.match(spec)
    if not m:
        raise _fail(spec, "expected hf-hub:<org>/<name>[@revision]", "e.g. hf-hub:promptswitch/vit-b-32-msrvtt")
    repo_id, revision = m.group(1), m.group(2)
    quick_network_failures()
    paths = {}
    for filename in (CONFIG_NAME, WEIGHTS_NAME):
        try:
            paths[filename] = hf_hub_download(repo_id, filename, revision=revision)
        except Exception as e:
            offline = hub_offline()
            why = ("HF_HUB_OFFLINE is set and the file is not in the cache" if offline
                   else "the hub is unreachable or the repo/file does not exist, and the file is not in the cache")
            raise _fail(spec, f"could not get {filename} from {repo_id}" + (f"@{revision}" if revision else "")
                        + f": {why} (cache: HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')})",
                        "Check the id, connect once to download it, or unset HF_HUB_OFFLINE", e) from None
    return _build(Path(paths[CONFIG_NAME]), Path(paths[WEIGHTS_NAME]), spec)


def _from_folder(folder: Path, spec: str) -> PromptSwitch:
    cfg, weights = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for f in (cfg, weights):
        if not f.is_file():
            raise _fail(spec, f"{f} is missing", f"a model folder holds {CONFIG_NAME} and {WEIGHTS_NAME} "
                        "(written by save_pretrained)")
    return _build(cfg, weights, spec)


def _build(config_path: Path, weights_path: Path, spec: str) -> PromptSwitch:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = json.loads(config_path.read_text())
        if raw.get("model_type") != MODEL_TYPE:
            raise ValueError(f"model_type is {raw.get('model_type')!r}, not {MODEL_TYPE!r}")
        config = PromptSwitchConfig.from_dict(raw)
    except (ValueError, TypeError, KeyError) as e:
        raise _fail(spec, f"{config_path} is not a valid Prompt Switch config", "Re-save the model", e) from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise _fail(spec, f"{weights_path} is not a readable safetensors file (corrupt or truncated?)",
                    "Download or save it again", e) from None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = PromptSwitch(config)
    state = {k: v.float() for k, v in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise _fail(spec, f"weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})",
                    "The folder mixes files from different models")
    return model


