"""Import a checkpoint trained with the paper's public research code into this format.

    python -m model.convert pytorch_model.bin.4 OUT_DIR [--num-frames 12] [--base clip:ViT-B-32-quickgelu/openai]

The research code stores a pickled dict whose `state_dict` uses Hugging Face transformers' CLIP
names (separate q/k/v projections), the prompt cube as `...prompt_embedding`, the aggregation
attention as `...vision_model.attn.*` and the captioner as `caption_*` modules. It is read with
`torch.load(weights_only=True)`, which refuses arbitrary pickled objects.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

_ANCHORS = ("vision_model.", "text_model.", "visual_projection", "text_projection", "logit_scale")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop wrapper prefixes such as `module.` or `clip.` in front of the CLIP names."""
    out = {}
    for k, v in state.items():
        if k.endswith("prompt_embedding"):
            out["prompt_embedding"] = v
            continue
        for a in _ANCHORS:
            i = k.find(a)
            if i >= 0 and (i == 0 or k[i - 1] == "."):
                k = k[i:]
                break
        else:
            m = re.search(r"(?:^|\.)(caption_\w+\..*)$", k)
            k = m.group(1) if m else k
        out[k] = v
    return out


def _layers(state: dict, tower: str) -> int:
    ids = {int(m.group(1)) for k in state if (m := re.match(rf"{tower}\.encoder\.layers\.(\d+)\.", k))}
    return max(ids) + 1 if ids else 0


def infer_config(state: dict[str, torch.Tensor], num_frames: int = 12, base: str = "converted", head_width: int = 64):
    """Rebuild the architecture from tensor shapes; head counts come from `head_width` (64 in ViT-B)."""
    from .config import PromptSwitchConfig

    patch = state["vision_model.embeddings.patch_embedding.weight"]
    width, patch_size = patch.shape[0], patch.shape[-1]
    n_pos = state["vision_model.embeddings.position_embedding.weight"].shape[0]
    grid = int(round((n_pos - 1) ** 0.5))
    tok = state["text_model.embeddings.token_embedding.weight"]
    ctx = state["text_model.embeddings.position_embedding.weight"].shape[0]
    embed = state["visual_projection.weight"].shape[0]
    prompt = state["prompt_embedding"]
    np_ = prompt.shape[0] if prompt.ndim == 3 else int(round(prompt.shape[0] ** 0.5))
    vocab = None
    if "caption_head.weight" in state and state["caption_head.weight"].shape[0] != tok.shape[0]:
        raise ValueError("a caption head over a partial vocabulary needs its token list; not supported")
    clip = {
        "embed_dim": int(embed), "quick_gelu": True,
        "vision_cfg": {"image_size": grid * patch_size, "layers": _layers(state, "vision_model"),
                       "width": int(width), "patch_size": int(patch_size), "head_width": head_width},
        "text_cfg": {"context_length": int(ctx), "vocab_size": int(tok.shape[0]), "width": int(tok.shape[1]),
                     "heads": max(1, int(tok.shape[1]) // head_width), "layers": _layers(state, "text_model")},
    }
    dec_layers = {int(m.group(1)) for k in state if (m := re.match(r"caption_decoder\.layers\.(\d+)\.", k))}
    ff = state.get("caption_decoder.layers.0.linear1.weight")
    return PromptSwitchConfig(clip=clip, base=base, num_prompts=int(np_), num_frames=num_frames,
                              agg_heads=max(1, int(width) // head_width), caption_layers=len(dec_layers) or 2,
                              caption_heads=max(1, int(tok.shape[1]) // head_width),
                              caption_ff=int(ff.shape[0]) if ff is not None else 2048, caption_vocab=vocab,
                              caption_trained="caption_head.weight" in state)


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


def convert_state_dict(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """Reference names -> this project's PromptSwitch state_dict names."""
    s = _strip_prefixes(state)
    out: dict[str, torch.Tensor] = {}
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
    np_ = config.num_prompts
    out["prompt"] = s["prompt_embedding"].reshape(np_, np_, -1)
    # aggregation attention: torch MultiheadAttention names, or separate q/k/v projections
    if f"{v}.attn.in_proj_weight" in s:
        for name in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
            out[f"agg.{name}"] = s[f"{v}.attn.{name}"]
    else:
        out["agg.in_proj_weight"] = torch.cat([s[f"{v}.attn.{n}_proj.weight"] for n in "qkv"])
        out["agg.in_proj_bias"] = torch.cat([s[f"{v}.attn.{n}_proj.bias"] for n in "qkv"])
        out["agg.out_proj.weight"] = s[f"{v}.attn.out_proj.weight"]
        out["agg.out_proj.bias"] = s[f"{v}.attn.out_proj.bias"]
    for k, val in s.items():  # caption_input_ln / caption_decoder / caption_head -> captioner.*
        m = re.match(r"caption_(input_ln|decoder|head)\.(.*)$", k)
        if m:
            out[f"captioner.{ {'input_ln': 'ln_in'}.get(m.group(1), m.group(1)) }.{m.group(2)}"] = val
    return out


def convert(checkpoint: Path, out_dir: Path, num_frames: int = 12, base: str = "converted",
            head_width: int = 64) -> Path:
    from .prompt_switch import PromptSwitch

    obj = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    state = _strip_prefixes({k: v for k, v in state.items() if isinstance(v, torch.Tensor)})
    missing = [k for k in ("vision_model.embeddings.patch_embedding.weight", "prompt_embedding") if k not in state]
    if missing:
        raise SystemExit(f"{checkpoint} does not look like a Prompt Switch research checkpoint (no {missing})")
    config = infer_config(state, num_frames=num_frames, base=base, head_width=head_width)
    model = PromptSwitch(config)
    new = convert_state_dict(state, config)
    incompatible = model.load_state_dict({k: v.float() for k, v in new.items()}, strict=False)
    if incompatible.unexpected_keys:
        raise SystemExit(f"unexpected tensors after conversion: {incompatible.unexpected_keys[:8]}")
    if not config.caption_trained:
        model.captioner.init_from_token_embedding(model.clip.token_embedding.weight)
    left = [k for k in incompatible.missing_keys if not k.startswith("captioner.")]
    if left:
        raise SystemExit(f"tensors missing from the checkpoint: {left[:8]}")
    model.spec = str(out_dir)
    model.save_pretrained(out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model.convert", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--num-frames", type=int, default=12)
    p.add_argument("--base", default="converted from the Prompt Switch research code")
    p.add_argument("--head-width", type=int, default=64, help="attention head width (64 for ViT-B)")
    a = p.parse_args(argv)
    out = convert(a.checkpoint, a.out, a.num_frames, a.base, a.head_width)
    print(f"wrote {out} (load it with load_model({str(out)!r}))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
