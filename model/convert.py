"""Import a checkpoint trained with the paper's public research code into this format.

    python -m model.convert model_best.pth OUT_DIR [--num-frames 12] [--ema] [--head-width 64]

The research code (bladewaltz1/PromptSwitch) saves {'state_dict': ..., 'state_dict_ema': ... (with
--use_ema)} whose names are Hugging Face transformers' CLIP names under `clip.` (separate q/k/v
projections), the prompt cube at `clip.vision_model.encoder.prompt_embedding`, the aggregation
attention at `clip.vision_model.attn.*` (torch MultiheadAttention) and the captioning head as
`caption_prenorm` (LayerNorm), `caption_transformer` (TransformerDecoder: `.layers.N.*`, `.norm.*`)
and `caption_head` (Linear). It is read with `torch.load(weights_only=True)`, which refuses
arbitrary pickled objects.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .config import PromptSwitchConfig
from .prompt_switch import PromptSwitch

log = logging.getLogger(__name__)

_ANCHORS = ("vision_model.", "text_model.", "visual_projection", "text_projection", "logit_scale")
_CAPTION = ("caption_prenorm.", "caption_transformer.", "caption_head.")
PROMPT_KEY = "vision_model.encoder.prompt_embedding"


class ConversionError(ValueError):
    """The file is not a Prompt Switch research checkpoint, or lacks tensors the model needs."""


def _short_name(key: str) -> str | None:
    """Drop wrapper prefixes (`module.`, `clip.`) in front of CLIP and caption names; None = not ours."""
    for a in _ANCHORS + _CAPTION:
        i = key.find(a)
        if i >= 0 and (i == 0 or key[i - 1] == "."):
            return key[i:]
    return None


def read_state(obj: object, ema: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a loaded checkpoint under their short reference names (position_ids buffers dropped)."""
    if isinstance(obj, dict) and ema:
        if "state_dict_ema" not in obj:
            raise ConversionError("--ema: the checkpoint has no state_dict_ema (it was trained without --use_ema)")
        obj = obj["state_dict_ema"]
    elif isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ConversionError("the checkpoint holds no state dict")
    out = {}
    for k, v in obj.items():
        name = _short_name(k) if isinstance(v, torch.Tensor) else None
        if name is not None and not name.endswith("position_ids"):
            out[name] = v
    return out


def _count(state: dict, pattern: str) -> int:
    ids = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(ids) + 1 if ids else 0


def caption_head_status(state: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """(decoder depth, names missing from an otherwise present captioning head); depth 0 = no head at all."""
    depth = _count(state, r"caption_transformer\.layers\.(\d+)\.")
    if not any(k.startswith(_CAPTION) for k in state):
        return 0, []
    needed = [f"caption_{m}.{p}" for m in ("prenorm", "transformer.norm", "head") for p in ("weight", "bias")]
    layer = ["self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
             "self_attn.out_proj.bias", "multihead_attn.in_proj_weight", "multihead_attn.in_proj_bias",
             "multihead_attn.out_proj.weight", "multihead_attn.out_proj.bias", "linear1.weight", "linear1.bias",
             "linear2.weight", "linear2.bias"] + [f"norm{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")]
    needed += [f"caption_transformer.layers.{i}.{n}" for i in range(max(depth, 1)) for n in layer]
    return depth, [k for k in needed if k not in state]


def infer_config(state: dict[str, torch.Tensor], num_frames: int = 12, base: str = "converted",
                 head_width: int = 64, with_head: bool = True) -> PromptSwitchConfig:
    """Rebuild the architecture from tensor shapes; head counts come from `head_width` (64 in ViT-B)."""
    patch = state["vision_model.embeddings.patch_embedding.weight"]
    width, patch_size = patch.shape[0], patch.shape[-1]
    n_pos = state["vision_model.embeddings.position_embedding.weight"].shape[0]
    grid = int(round((n_pos - 1) ** 0.5))
    tok = state["text_model.embeddings.token_embedding.weight"]
    ctx = state["text_model.embeddings.position_embedding.weight"].shape[0]
    text_width = int(tok.shape[1])
    if with_head and state["caption_head.weight"].shape[0] != tok.shape[0]:
        raise ConversionError("a caption head over a partial vocabulary needs its token list; not supported")
    clip = {
        "embed_dim": int(state["visual_projection.weight"].shape[0]), "quick_gelu": True,
        "vision_cfg": {"image_size": grid * patch_size,
                       "layers": _count(state, r"vision_model\.encoder\.layers\.(\d+)\."),
                       "width": int(width), "patch_size": int(patch_size), "head_width": head_width},
        "text_cfg": {"context_length": int(ctx), "vocab_size": int(tok.shape[0]), "width": text_width,
                     "heads": max(1, text_width // head_width),
                     "layers": _count(state, r"text_model\.encoder\.layers\.(\d+)\.")},
    }
    depth = _count(state, r"caption_transformer\.layers\.(\d+)\.") if with_head else 2
    ff = state["caption_transformer.layers.0.linear1.weight"].shape[0] if with_head else 2048
    return PromptSwitchConfig(clip=clip, base=base, num_prompts=int(state[PROMPT_KEY].shape[0]), num_frames=num_frames,
                              agg_heads=max(1, int(width) // head_width), caption_layers=depth,
                              caption_heads=max(1, text_width // head_width), caption_ff=int(ff),
                              caption_trained=with_head)


def _block(state: dict, src: str, dst: str, out: dict) -> None:
    """One HF encoder layer -> one open_clip ResidualAttentionBlock."""
    q, k, v = (state[f"{src}.self_attn.{n}_proj.weight"] for n in "qkv")
    out[f"{dst}.attn.in_proj_weight"] = torch.cat([q, k, v])
    out[f"{dst}.attn.in_proj_bias"] = torch.cat([state[f"{src}.self_attn.{n}_proj.bias"] for n in "qkv"])
    out[f"{dst}.attn.out_proj.weight"] = state[f"{src}.self_attn.out_proj.weight"]
    out[f"{dst}.attn.out_proj.bias"] = state[f"{src}.self_attn.out_proj.bias"]
    for a, b in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
        for p in ("weight", "bias"):
            out[f"{dst}.{b}.{p}"] = state[f"{src}.{a}.{p}"]


def _clip_tensors(s: dict, config: PromptSwitchConfig, out: dict) -> None:
    v, t = "vision_model", "text_model"
    out["clip.visual.class_embedding"] = s[f"{v}.embeddings.class_embedding"]
    out["clip.visual.conv1.weight"] = s[f"{v}.embeddings.patch_embedding.weight"]
    out["clip.visual.positional_embedding"] = s[f"{v}.embeddings.position_embedding.weight"]
    for p in ("weight", "bias"):
        out[f"clip.visual.ln_pre.{p}"] = s[f"{v}.pre_layrnorm.{p}"]
        out[f"clip.visual.ln_post.{p}"] = s[f"{v}.post_layernorm.{p}"]
        out[f"clip.ln_final.{p}"] = s[f"{t}.final_layer_norm.{p}"]
    out["clip.visual.proj"] = s["visual_projection.weight"].t().contiguous()
    for i in range(config.clip["vision_cfg"]["layers"]):
        _block(s, f"{v}.encoder.layers.{i}", f"clip.visual.transformer.resblocks.{i}", out)
    out["clip.token_embedding.weight"] = s[f"{t}.embeddings.token_embedding.weight"]
    out["clip.positional_embedding"] = s[f"{t}.embeddings.position_embedding.weight"]
    for i in range(config.clip["text_cfg"]["layers"]):
        _block(s, f"{t}.encoder.layers.{i}", f"clip.transformer.resblocks.{i}", out)
    out["clip.text_projection"] = s["text_projection.weight"].t().contiguous()
    out["clip.logit_scale"] = s["logit_scale"].reshape(())


def convert_state_dict(s: dict[str, torch.Tensor], config: PromptSwitchConfig) -> dict[str, torch.Tensor]:
    """Short reference names (see read_state) -> this project's PromptSwitch state_dict names."""
    out: dict[str, torch.Tensor] = {}
    _clip_tensors(s, config, out)
    np_ = config.num_prompts
    out["prompt"] = s[PROMPT_KEY].reshape(np_, np_, -1)
    for name in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
        out[f"agg.{name}"] = s[f"vision_model.attn.{name}"]
    if config.caption_trained:
        renames = {"caption_prenorm.": "captioner.ln_in.", "caption_transformer.": "captioner.decoder.",
                   "caption_head.": "captioner.head."}
        for k, val in s.items():
            for src, dst in renames.items():
                if k.startswith(src):
                    out[dst + k[len(src):]] = val
    return out


@dataclass(frozen=True)
class ConvertOptions:
    """How to read a research checkpoint; each field is a flag of `python -m model.convert`."""

    num_frames: int = field(default=12, metadata={"help": "test frames per video"})
    base: str = field(default="converted from the Prompt Switch research code",
                      metadata={"help": "where the weights came from, shown in the model card"})
    head_width: int = field(default=64, metadata={"help": "attention head width (64 for ViT-B)"})
    ema: bool = field(default=False, metadata={"help": "convert state_dict_ema (the EMA weights), not state_dict"})
    drop_incomplete_head: bool = field(default=False, metadata={
        "help": "convert a checkpoint whose captioning head is incomplete without it (marked untrained) "
                "instead of refusing"})


_REQUIRED = ("vision_model.embeddings.patch_embedding.weight", PROMPT_KEY, "vision_model.attn.in_proj_weight")


def convert(checkpoint: Path, out_dir: Path, **options: object) -> Path:
    """Read, check and convert a research checkpoint; writes a load_model folder at out_dir.

    `options` are ConvertOptions fields; raises ConversionError with a one-line reason."""
    o = ConvertOptions(**options)
    state = read_state(torch.load(checkpoint, map_location="cpu", weights_only=True), ema=o.ema)
    missing = [k for k in _REQUIRED if k not in state]
    if missing:
        raise ConversionError(f"{checkpoint} does not look like a Prompt Switch research checkpoint (no {missing})")
    depth, head_missing = caption_head_status(state)
    if head_missing and not o.drop_incomplete_head:
        raise ConversionError(f"the captioning head is incomplete (missing {head_missing[:6]}"
                              f"{' ...' if len(head_missing) > 6 else ''}); pass --drop-incomplete-head to convert "
                              "without it (the head is then marked untrained)")
    with_head = depth > 0 and not head_missing
    if not with_head:
        log.warning("no complete captioning head in %s: converted without one, marked untrained", checkpoint)
    config = infer_config(state, num_frames=o.num_frames, base=o.base, head_width=o.head_width, with_head=with_head)
    model = PromptSwitch(config)
    result = model.load_state_dict({k: v.float() for k, v in convert_state_dict(state, config).items()}, strict=False)
    left = [k for k in result.missing_keys if with_head or not k.startswith("captioner.")]
    if result.unexpected_keys or left:
        raise ConversionError(f"conversion mismatch: unexpected {result.unexpected_keys[:8]}, missing {left[:8]}")
    model.spec = str(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="the research code's checkpoint file (e.g. model_best.pth)")
    p.add_argument("out", type=Path, help="folder to write (load it with load_model(OUT))")
    for f in fields(ConvertOptions):
        flag, text = "--" + f.name.replace("_", "-"), f"{f.metadata['help']} (default: {f.default})".replace("%", "%%")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action="store_true", help=text)
        else:
            p.add_argument(flag, dest=f.name, type=type(f.default), default=f.default, help=text)
    a = vars(p.parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        out = convert(a.pop("checkpoint"), a.pop("out"), **a)
    except (ConversionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} (load it with load_model({str(out)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
