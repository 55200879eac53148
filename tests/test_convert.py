"""model.convert: a checkpoint in the research code's naming round-trips to identical features."""
from __future__ import annotations

from pathlib import Path

import torch

from model import load_model
from model.convert import main as convert_main


def to_reference_names(model) -> dict[str, torch.Tensor]:
    """Written independently of model.convert: our tensors under HF transformers' CLIP names."""
    s = {k: v.clone() for k, v in model.state_dict().items()}
    ref: dict[str, torch.Tensor] = {}
    P = "clip."  # the research code wraps CLIP in an attribute; keys carry such a prefix
    ref[P + "vision_model.embeddings.class_embedding"] = s["clip.visual.class_embedding"]
    ref[P + "vision_model.embeddings.patch_embedding.weight"] = s["clip.visual.conv1.weight"]
    ref[P + "vision_model.embeddings.position_embedding.weight"] = s["clip.visual.positional_embedding"]
    ref[P + "vision_model.pre_layrnorm.weight"] = s["clip.visual.ln_pre.weight"]
    ref[P + "vision_model.pre_layrnorm.bias"] = s["clip.visual.ln_pre.bias"]
    ref[P + "vision_model.post_layernorm.weight"] = s["clip.visual.ln_post.weight"]
    ref[P + "vision_model.post_layernorm.bias"] = s["clip.visual.ln_post.bias"]
    ref[P + "visual_projection.weight"] = s["clip.visual.proj"].t()
    ref[P + "text_projection.weight"] = s["clip.text_projection"].t()
    ref[P + "logit_scale"] = s["clip.logit_scale"]
    ref[P + "text_model.embeddings.token_embedding.weight"] = s["clip.token_embedding.weight"]
    ref[P + "text_model.embeddings.position_embedding.weight"] = s["clip.positional_embedding"]
    ref[P + "text_model.final_layer_norm.weight"] = s["clip.ln_final.weight"]
    ref[P + "text_model.final_layer_norm.bias"] = s["clip.ln_final.bias"]
    for tower, ours in (("vision_model", "clip.visual.transformer"), ("text_model", "clip.transformer")):
        i = 0
        while f"{ours}.resblocks.{i}.ln_1.weight" in s:
            src, dst = f"{ours}.resblocks.{i}", f"{P}{tower}.encoder.layers.{i}"
            q, k, v = s[f"{src}.attn.in_proj_weight"].chunk(3)
            qb, kb, vb = s[f"{src}.attn.in_proj_bias"].chunk(3)
            for n, w, b in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
                ref[f"{dst}.self_attn.{n}_proj.weight"], ref[f"{dst}.self_attn.{n}_proj.bias"] = w, b
            ref[f"{dst}.self_attn.out_proj.weight"] = s[f"{src}.attn.out_proj.weight"]
            ref[f"{dst}.self_attn.out_proj.bias"] = s[f"{src}.attn.out_proj.bias"]
            for a, b in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                         ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                ref[f"{dst}.{a}.weight"], ref[f"{dst}.{a}.bias"] = s[f"{src}.{b}.weight"], s[f"{src}.{b}.bias"]
            i += 1
    ref[P + "vision_model.prompt_embedding"] = s["prompt"].reshape(-1, s["prompt"].shape[-1])
    q, k, v = s["agg.in_proj_weight"].chunk(3)
    qb, kb, vb = s["agg.in_proj_bias"].chunk(3)
    for n, w, b in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
        ref[f"{P}vision_model.attn.{n}_proj.weight"], ref[f"{P}vision_model.attn.{n}_proj.bias"] = w, b
    ref[P + "vision_model.attn.out_proj.weight"] = s["agg.out_proj.weight"]
    ref[P + "vision_model.attn.out_proj.bias"] = s["agg.out_proj.bias"]
    for k, v in s.items():
        if k.startswith("captioner."):
            rest = k[len("captioner."):]
            part, tail = rest.split(".", 1)
            ref["caption_" + {"ln_in": "input_ln"}.get(part, part) + "." + tail] = v
    return ref


def test_reference_checkpoint_round_trips(tmp_path: Path) -> None:
    m = load_model("random:tiny")
    with torch.no_grad():  # make every converted part matter for the features
        m.prompt.normal_(0, 1.0)
        m.agg.out_proj.weight.normal_(0, 0.05)
    m.config.caption_trained = True
    ckpt = tmp_path / "pytorch_model.bin.4"
    torch.save({"state_dict": to_reference_names(m), "epoch": 4}, ckpt)
    out = tmp_path / "converted"
    assert convert_main([str(ckpt), str(out), "--num-frames", "12", "--head-width", "32"]) == 0
    c = load_model(str(out))
    assert c.config.clip["vision_cfg"]["width"] == 128 and c.config.num_prompts == 6
    assert c.config.caption_trained
    x = torch.randn(2, 12, 3, 32, 32)
    texts = ["a red circle moves left", "two dogs"]
    with torch.no_grad():
        torch.testing.assert_close(c.encode_video(x)[0], m.encode_video(x)[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(c.encode_text(texts), m.encode_text(texts), atol=1e-5, rtol=1e-5)
        feats = m.frame_features(x)
        tok = m.tokenize(texts)
        torch.testing.assert_close(c.caption_logits(feats, tok), m.caption_logits(feats, tok), atol=1e-4, rtol=1e-4)


def test_non_checkpoint_is_refused(tmp_path: Path) -> None:
    import pytest

    bad = tmp_path / "x.bin"
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, bad)
    with pytest.raises(SystemExit, match="does not look like a Prompt Switch"):
        convert_main([str(bad), str(tmp_path / "o")])
