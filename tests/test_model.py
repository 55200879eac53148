"""The Prompt Switch encoder: mechanics of the method, checked on random tiny weights."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from model import PromptSwitch, architecture, load_model
from model.config import architecture_names

NP = 6


def frames(b: int = 1, t: int = 12, seed: int = 0, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, t, 3, size, size, generator=g)


@pytest.fixture()
def model() -> PromptSwitch:
    """A fresh tiny model whose prompt cube and aggregation are large enough to matter."""
    m = load_model("random:tiny")
    with torch.no_grad():
        m.prompt.normal_(0, 1.0)  # the paper's init (std 0.02/sqrt(D)) makes effects tiny, not absent
        m.agg.out_proj.weight.normal_(0, 0.05)
    return m


def test_without_prompts_frame_features_equal_open_clip(model: PromptSwitch) -> None:
    model.use_prompts = False
    x = frames(2, 6)
    with torch.no_grad():
        ours = model.frame_features(x)
        ref = model.clip.encode_image(x.reshape(12, 3, 32, 32)).reshape(2, 6, -1)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_shapes_and_normalisation(tiny_model: PromptSwitch) -> None:
    with torch.no_grad():
        v, f = tiny_model.encode_video(frames(3, 12))
    assert v.shape == (3, 128) and f.shape == (3, 12, 128)
    torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(3, 12))
    # The video feature is the normalised mean of the normalised frame features.
    torch.testing.assert_close(v, F.normalize(f.mean(1), dim=-1))


def test_frame_count_must_be_multiple_of_np(tiny_model: PromptSwitch) -> None:
    with pytest.raises(ValueError, match="multiple of num_prompts"):
        tiny_model.encode_video(frames(1, 7))


def _frame_change_effect(m: PromptSwitch, changed: int, t: int = 12) -> torch.Tensor:
    x = frames(1, t)
    y = x.clone()
    y[0, changed] = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        return (m.frame_features(x) - m.frame_features(y))[0].abs().amax(dim=-1)


def test_information_crosses_frames_only_inside_a_group(model: PromptSwitch) -> None:
    diff = _frame_change_effect(model, changed=2)
    assert diff[2] > 1e-2  # the changed frame itself
    others_in_group = torch.cat([diff[:2], diff[3:6]])
    assert (others_in_group > 1e-4).all(), others_in_group  # frame 2 reaches every frame of group 0
    assert (diff[6:] == 0).all(), diff[6:]  # group 1 (frames 6-11) is independent


def test_no_cross_frame_information_without_prompts(model: PromptSwitch) -> None:
    model.use_prompts = False
    diff = _frame_change_effect(model, changed=2)
    assert diff[2] > 1e-2
    assert (torch.cat([diff[:2], diff[3:]]) == 0).all()


def test_order_matters_only_with_prompts(model: PromptSwitch) -> None:
    x = frames(1, 6)
    rev = x.flip(1)
    with torch.no_grad():
        v_fwd, _ = model.encode_video(x)
        v_rev, _ = model.encode_video(rev)
        assert (v_fwd - v_rev).abs().max() > 1e-4
        model.use_prompts = False
        p_fwd, _ = model.encode_video(x)
        p_rev, _ = model.encode_video(rev)
    torch.testing.assert_close(p_fwd, p_rev, atol=1e-6, rtol=1e-5)


def _reference_frame_features(m: PromptSwitch, x: torch.Tensor) -> torch.Tensor:
    """An independent, loop-per-frame reading of the method, for one group of Np frames.

    Frame f's attention input is ln_1 of its own tokens, except prompt slot j, which is ln_1 of
    frame j's prompt slot f. The residual stream stays per frame."""
    v = m.clip.visual
    T = x.shape[0]
    toks = [torch.cat([v._embeds(x[f : f + 1])[0], m.prompt[f]], dim=0) for f in range(T)]
    P = m.config.num_prompts
    for blk in v.transformer.resblocks:
        normed = [blk.ln_1(t) for t in toks]
        new = []
        for f in range(T):
            h = normed[f].clone()
            for j in range(P):
                h[-P + j] = normed[j][-P + f]
            a = blk.attn(h[None], h[None], h[None], need_weights=False)[0][0]
            y = toks[f] + a
            new.append(y + blk.mlp(blk.ln_2(y)))
        toks = new
    prompts = torch.cat([t[-P:] for t in toks], dim=0)[None]  # all Np*Np prompt outputs of the group
    out = []
    for f in range(T):
        cls = toks[f][:1][None]
        cls = cls + m.agg(cls, prompts, prompts, need_weights=False)[0]
        out.append(v.ln_post(cls[0, 0]) @ v.proj)
    return torch.stack(out)


def test_switch_matches_reference_reading_of_the_method(model: PromptSwitch) -> None:
    x = frames(1, 6)
    with torch.no_grad():
        ours = model.frame_features(x)[0]
        ref = _reference_frame_features(model, x[0])
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_switch_is_on_the_attention_input_not_the_residual(model: PromptSwitch) -> None:
    """A variant that also switches the residual stream must give different features."""
    x = frames(1, 6)

    class ResidualSwitched(PromptSwitch):
        def frame_features(self, frames):  # the wrong model: switch x itself before each block
            B, T = frames.shape[:2]
            v = self.clip.visual
            t = v._embeds(frames.reshape(B * T, *frames.shape[2:]))
            n = B * T // NP
            t = torch.cat([t, self.prompt.unsqueeze(0).expand(n, -1, -1, -1).reshape(B * T, NP, -1)], 1)
            for blk in v.transformer.resblocks:
                t = self._switch(t, n)
                t = t + blk.attention(q_x=blk.ln_1(t))
                t = t + blk.mlp(blk.ln_2(t))
            kv = t[:, -NP:].reshape(n, NP * NP, -1).repeat_interleave(NP, 0)
            cls = t[:, :1] + self.agg(t[:, :1], kv, kv, need_weights=False)[0]
            return (v.ln_post(cls[:, 0]) @ v.proj).reshape(B, T, -1)

    wrong = ResidualSwitched(copy.deepcopy(model.config))
    wrong.load_state_dict(model.state_dict())
    with torch.no_grad():
        good = model.frame_features(x)
        bad = wrong.frame_features(x)
        ref = _reference_frame_features(model, x[0])
    assert (good - bad).abs().max() > 1e-3
    assert not torch.allclose(bad[0], ref, atol=1e-4)


def test_aggregation_output_projection_starts_at_zero(tiny_model: PromptSwitch) -> None:
    assert tiny_model.agg.out_proj.weight.abs().max() == 0
    assert tiny_model.agg.out_proj.bias.abs().max() == 0
    cube = tiny_model.prompt
    assert cube.shape == (NP, NP, 128)
    assert cube.std() < 0.02 * 128**-0.5 * 1.5


def test_trimmed_text_path_equals_open_clip(tiny_model: PromptSwitch) -> None:
    texts = ["a red circle moves left", "hi", "a much longer sentence about a green square that grows"]
    with torch.no_grad():
        ours = tiny_model.encode_text(texts)
        ref = tiny_model.clip.encode_text(tiny_model.tokenize(texts), normalize=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.norm(dim=-1), torch.ones(3))


def test_random_spec_is_deterministic_and_fingerprint_tracks_weights() -> None:
    a, b = load_model("random:tiny"), load_model("random:tiny")
    assert a.fingerprint == b.fingerprint
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    with torch.no_grad():
        b.prompt[0, 0, 0] += 1e-3
    b.invalidate_fingerprint()
    assert b.fingerprint != a.fingerprint
    fp = a.fingerprint
    a.use_prompts = False
    assert a.fingerprint != fp


def test_registry_lists_the_architectures() -> None:
    assert {"ViT-B-32", "ViT-B-16", "tiny"} <= set(architecture_names())
    with pytest.raises(KeyError, match="registered"):
        architecture("ViT-Z-1")


@pytest.mark.parametrize("name", architecture_names())
def test_registered_architectures_build(name: str) -> None:
    cfg = architecture(name)
    m = PromptSwitch(cfg)
    v = m.clip.visual
    width, patch = cfg.clip["vision_cfg"]["width"], cfg.clip["vision_cfg"]["patch_size"]
    assert v.conv1.out_channels == width
    grid = cfg.image_size // patch
    assert v.positional_embedding.shape[0] == grid * grid + 1
    assert m.prompt.shape == (cfg.num_prompts, cfg.num_prompts, width) and m.agg.num_heads == cfg.agg_heads
    assert m.captioner.head.out_features == 49408
    assert type(v.transformer.resblocks[0].mlp.gelu).__name__ == "QuickGELU"  # OpenAI CLIP's activation


def _smooth_image(h: int, w: int):
    import numpy as np

    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = [128 + 100 * np.sin(6 * xx + 2 * yy), 128 + 100 * np.cos(5 * yy), 255 * xx]
    return np.stack(rgb, -1).clip(0, 255).astype(np.uint8)


def _open_clip_eval_transform(model: PromptSwitch):
    import open_clip

    return open_clip.transform.image_transform(model.config.image_size, is_train=False,
                                               mean=model.config.mean, std=model.config.std)


@pytest.mark.parametrize("h,w", [(32, 47), (47, 32), (32, 32)])
def test_preprocess_equals_open_clip_transform_when_only_cropping(tiny_model: PromptSwitch, h: int, w: int) -> None:
    """No resize needed: the centre crop (offsets rounded as torchvision) and normalisation are exact."""
    from PIL import Image

    img = _smooth_image(h, w)
    expected = _open_clip_eval_transform(tiny_model)(Image.fromarray(img))
    torch.testing.assert_close(tiny_model.preprocess(img), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("h,w", [(48, 64), (64, 48), (100, 240), (45, 81)])
def test_preprocess_matches_open_clip_transform_after_resizing(tiny_model: PromptSwitch, h: int, w: int) -> None:
    """Bicubic resizes differ slightly (torch's kernel a=-0.75 vs PIL's a=-0.5): about 1% of the pixel range."""
    from PIL import Image

    img = _smooth_image(h, w)
    ours = tiny_model.preprocess(img)
    expected = _open_clip_eval_transform(tiny_model)(Image.fromarray(img))
    assert ours.shape == expected.shape == (3, 32, 32)
    diff = (ours - expected).abs() * torch.tensor(tiny_model.config.std).view(3, 1, 1)  # in pixel units 0..1
    assert float(diff.mean()) < 0.015 and float(diff.max()) < 0.06


def test_preprocess_accepts_arrays_images_and_clips(tiny_model: PromptSwitch) -> None:
    from PIL import Image

    img = _smooth_image(48, 64)
    a = tiny_model.preprocess(img)
    torch.testing.assert_close(a, tiny_model.preprocess(Image.fromarray(img)))
    torch.testing.assert_close(a, tiny_model.preprocess_frames(img[None])[0])


@pytest.mark.parametrize("name", architecture_names())
def test_registered_architectures_encode_a_clip(name: str) -> None:
    """Every registered architecture runs the whole method at its own image size."""
    cfg = architecture(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = PromptSwitch(cfg).eval()
        m.prompt.data.normal_(0, 1.0)
    x = torch.randn(1, 6, 3, cfg.image_size, cfg.image_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        v, f = m.encode_video(x)
        v_rev, _ = m.encode_video(x.flip(1))
    assert v.shape == (1, cfg.embed_dim) and f.shape == (1, 6, cfg.embed_dim)
    assert (v - v_rev).abs().max() > 1e-5  # order matters with prompts at full size too
