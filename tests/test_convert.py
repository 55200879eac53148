"""model.convert: a checkpoint in the research code's exact naming converts bit for bit."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model import PromptSwitch, architecture, load_model
from model.convert import ConversionError, convert
from model.convert import main as convert_main

P = "clip."  # PromptCLIP keeps the HF CLIPModel in `self.clip`


def _hf_block(s: dict, src: str, dst: str, ref: dict) -> None:
    q, k, v = s[f"{src}.attn.in_proj_weight"].chunk(3)
    qb, kb, vb = s[f"{src}.attn.in_proj_bias"].chunk(3)
    for n, w, b in (("q", q, qb), ("k", k, kb), ("v", v, vb)):
        ref[f"{dst}.self_attn.{n}_proj.weight"], ref[f"{dst}.self_attn.{n}_proj.bias"] = w, b
    ref[f"{dst}.self_attn.out_proj.weight"] = s[f"{src}.attn.out_proj.weight"]
    ref[f"{dst}.self_attn.out_proj.bias"] = s[f"{src}.attn.out_proj.bias"]
    for a, b in (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
        ref[f"{dst}.{a}.weight"], ref[f"{dst}.{a}.bias"] = s[f"{src}.{b}.weight"], s[f"{src}.{b}.bias"]


def to_reference_names(model: PromptSwitch) -> dict[str, torch.Tensor]:
    """Written independently of model.convert: our tensors under PromptCLIP's state_dict names
    (model/prompt_clip.py of bladewaltz1/PromptSwitch), buffers included."""
    s = {k: v.clone() for k, v in model.state_dict().items()}
    ref: dict[str, torch.Tensor] = {}
    vm, tm = P + "vision_model", P + "text_model"
    ref[f"{vm}.embeddings.class_embedding"] = s["clip.visual.class_embedding"]
    ref[f"{vm}.embeddings.patch_embedding.weight"] = s["clip.visual.conv1.weight"]
    ref[f"{vm}.embeddings.position_embedding.weight"] = s["clip.visual.positional_embedding"]
    ref[f"{vm}.embeddings.position_ids"] = torch.arange(s["clip.visual.positional_embedding"].shape[0])[None]
    for a, b in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        ref[f"{vm}.{a}.weight"], ref[f"{vm}.{a}.bias"] = s[f"clip.visual.{b}.weight"], s[f"clip.visual.{b}.bias"]
    ref[P + "visual_projection.weight"] = s["clip.visual.proj"].t()
    ref[P + "text_projection.weight"] = s["clip.text_projection"].t()
    ref[P + "logit_scale"] = s["clip.logit_scale"]
    ref[f"{tm}.embeddings.token_embedding.weight"] = s["clip.token_embedding.weight"]
    ref[f"{tm}.embeddings.position_embedding.weight"] = s["clip.positional_embedding"]
    ref[f"{tm}.embeddings.position_ids"] = torch.arange(s["clip.positional_embedding"].shape[0])[None]
    for p in ("weight", "bias"):
        ref[f"{tm}.final_layer_norm.{p}"] = s[f"clip.ln_final.{p}"]
    for tower, ours in ((vm, "clip.visual.transformer"), (tm, "clip.transformer")):
        i = 0
        while f"{ours}.resblocks.{i}.ln_1.weight" in s:
            _hf_block(s, f"{ours}.resblocks.{i}", f"{tower}.encoder.layers.{i}", ref)
            i += 1
    ref[f"{vm}.encoder.prompt_embedding"] = s["prompt"]  # nn.Parameter(num_prompts, num_prompts, hidden)
    for name in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):  # nn.MultiheadAttention
        ref[f"{vm}.attn.{name}"] = s[f"agg.{name}"]
    for ours, theirs in (("captioner.ln_in.", "caption_prenorm."), ("captioner.decoder.", "caption_transformer."),
                         ("captioner.head.", "caption_head.")):
        for k, v in s.items():
            if k.startswith(ours):
                ref[theirs + k[len(ours):]] = v
    return ref


def _random_model(caption_layers: int = 2) -> PromptSwitch:
    cfg = architecture("tiny")
    cfg.caption_layers = caption_layers
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(caption_layers)
        m = PromptSwitch(cfg)
        with torch.no_grad():  # every part random, so a dropped or swapped tensor shows
            for p in m.parameters():
                p.normal_(0, 0.5)
    return m


def _save(tmp_path: Path, m: PromptSwitch, **extra) -> Path:
    ckpt = tmp_path / "model_best.pth"
    torch.save({"epoch": 4, "state_dict": to_reference_names(m), **extra}, ckpt)
    return ckpt


@pytest.mark.parametrize("caption_layers", [2, 3])
def test_every_tensor_round_trips_bit_for_bit(tmp_path: Path, caption_layers: int) -> None:
    m = _random_model(caption_layers)
    ref = to_reference_names(m)
    assert sum(k.startswith(("caption_prenorm", "caption_transformer")) for k in ref) == 2 + 2 + 18 * caption_layers
    out = convert(_save(tmp_path, m), tmp_path / "converted", head_width=32)
    c = load_model(str(out))
    assert c.config.caption_layers == caption_layers and c.config.caption_trained
    back = to_reference_names(c)
    assert set(back) == set(ref)
    for k in ref:
        assert torch.equal(back[k], ref[k]), k


def test_converted_model_computes_the_same(tmp_path: Path) -> None:
    m = _random_model()
    c = load_model(str(convert(_save(tmp_path, m), tmp_path / "c", head_width=32)))
    x = torch.randn(2, 12, 3, 32, 32)
    with torch.no_grad():
        # same tensors, possibly another memory layout: equal up to float rounding
        torch.testing.assert_close(c.encode_video(x)[0], m.encode_video(x)[0], atol=1e-6, rtol=1e-5)
        tok = m.tokenize(["a red circle moves left", "two dogs"])
        feats = m.frame_features(x)
        torch.testing.assert_close(c.caption_logits(feats, tok), m.caption_logits(feats, tok), atol=1e-5, rtol=1e-5)


def test_ema_weights_are_read_with_ema(tmp_path: Path) -> None:
    m, ema = _random_model(2), _random_model(2)
    with torch.no_grad():
        ema.prompt.add_(1.0)
    ckpt = _save(tmp_path, m, state_dict_ema=to_reference_names(ema))
    c = load_model(str(convert(ckpt, tmp_path / "ema", head_width=32, ema=True)))
    assert torch.equal(c.prompt, ema.prompt) and not torch.equal(c.prompt, m.prompt)
    with pytest.raises(ConversionError, match="no state_dict_ema"):
        convert(_save(tmp_path, m), tmp_path / "x", head_width=32, ema=True)


def test_incomplete_head_is_refused_with_the_missing_names(tmp_path: Path) -> None:
    m = _random_model()
    ref = to_reference_names(m)
    del ref["caption_prenorm.weight"], ref["caption_transformer.layers.1.linear2.bias"]
    ckpt = tmp_path / "partial.pth"
    torch.save({"state_dict": ref}, ckpt)
    with pytest.raises(ConversionError, match=r"caption_prenorm\.weight.*caption_transformer\.layers\.1\.linear2\.b"):
        convert(ckpt, tmp_path / "o", head_width=32)
    assert convert_main([str(ckpt), str(tmp_path / "o"), "--head-width", "32"]) == 2  # one line, no traceback


def test_incomplete_head_can_be_dropped_and_is_marked_untrained(tmp_path: Path) -> None:
    m = _random_model()
    ref = to_reference_names(m)
    del ref["caption_head.bias"]
    ckpt = tmp_path / "partial.pth"
    torch.save({"state_dict": ref}, ckpt)
    c = load_model(str(convert(ckpt, tmp_path / "o", head_width=32, drop_incomplete_head=True)))
    assert not c.has_trained_captioner
    assert torch.equal(c.prompt, m.prompt)


def test_checkpoint_without_head_converts_untrained(tmp_path: Path) -> None:
    m = _random_model()
    ref = {k: v for k, v in to_reference_names(m).items() if not k.startswith("caption_")}
    ckpt = tmp_path / "clip_only.pth"
    torch.save({"state_dict": ref}, ckpt)
    c = load_model(str(convert(ckpt, tmp_path / "o", head_width=32)))
    assert not c.has_trained_captioner and torch.equal(c.agg.in_proj_weight, m.agg.in_proj_weight)


def test_non_checkpoint_is_refused(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "x.bin"
    torch.save({"state_dict": {"foo": torch.zeros(1)}}, bad)
    with pytest.raises(ConversionError, match="does not look like a Prompt Switch"):
        convert(bad, tmp_path / "o")
    assert convert_main([str(bad), str(tmp_path / "o")]) == 2
    assert "does not look like" in capsys.readouterr().err
