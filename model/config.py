"""Model configuration: a small JSON-serialisable dataclass, plus the registered architectures.

The CLIP part is an open_clip model config (the same dict open_clip keeps in its
`model_configs/*.json`), so any open_clip ViT can carry Prompt Switch.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class PromptSwitchConfig:
    """Everything needed to rebuild a model's architecture (weights live elsewhere)."""

    clip: dict[str, Any]
    """open_clip model config: embed_dim, quick_gelu, vision_cfg, text_cfg."""
    base: str = "random"
    """Where the CLIP weights came from, e.g. 'clip:ViT-B-32-quickgelu/openai' (for model cards)."""
    num_prompts: int = 6
    """Np: frames per group and prompt tokens per frame (the cube is Np x Np x width)."""
    num_frames: int = 12
    """Frames sampled per video at test time; a multiple of num_prompts.

    Frames are processed in groups of `num_prompts` consecutive frames (the reference runs 12 test
    frames as two independent 6-frame groups). Samplers give frames in chunk-major order, so each
    group spans the whole clip; frame features of all groups are then mean-pooled."""
    train_frames: int = 6
    use_prompts: bool = True
    """False runs the same weights as plain CLIP with mean pooling (the CLIP4Clip-meanP baseline)."""
    agg_heads: int = 12
    """Heads of the prompt-aggregation attention (12 for ViT-B)."""
    caption_layers: int = 2
    caption_heads: int = 8
    caption_ff: int = 2048
    caption_vocab: list[int] | None = None
    """Token ids the caption head may emit; None = CLIP's whole 49,408-token vocabulary.
    Tiny models restrict it so the head stays small and cheap to train on a CPU."""
    caption_trained: bool = False
    """Set by training; generate_captions refuses to run an untrained head."""
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    metrics: dict[str, Any] = field(default_factory=dict)
    """Evaluation results, copied into the model card."""

    @property
    def image_size(self) -> int:
        size = self.clip["vision_cfg"]["image_size"]
        return size if isinstance(size, int) else size[0]

    @property
    def embed_dim(self) -> int:
        return int(self.clip["embed_dim"])

    @property
    def context_length(self) -> int:
        return int(self.clip["text_cfg"].get("context_length", 77))

    def validate(self) -> None:
        if self.num_frames % self.num_prompts:
            raise ValueError(f"num_frames={self.num_frames} is not a multiple of num_prompts={self.num_prompts}")
        if self.train_frames % self.num_prompts:
            raise ValueError(f"train_frames={self.train_frames} is not a multiple of num_prompts={self.num_prompts}")
        text_width = self.clip["text_cfg"]["width"]
        if self.embed_dim != text_width:
            raise ValueError(
                f"the captioning head attends to projected frame features (embed_dim={self.embed_dim}) "
                f"with text-width queries ({text_width}); they must be equal"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PromptSwitchConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names - {"model_type", "format_version"}
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}: written by a newer promptswitch?")
        kwargs = {k: v for k, v in d.items() if k in names}
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)


def _vit(width: int, layers: int, patch: int, image: int = 224) -> dict[str, Any]:
    return {"image_size": image, "layers": layers, "width": width, "patch_size": patch}


_TEXT_B = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}

ARCHITECTURES: dict[str, dict[str, Any]] = {
    # Random-weight configs. ViT-B-32/16 mirror open_clip's *-quickgelu configs (OpenAI weights).
    "ViT-B-32": {"clip": {"embed_dim": 512, "quick_gelu": True, "vision_cfg": _vit(768, 12, 32), "text_cfg": _TEXT_B}},
    "ViT-B-16": {"clip": {"embed_dim": 512, "quick_gelu": True, "vision_cfg": _vit(768, 12, 16), "text_cfg": _TEXT_B}},
    # Small enough for unit tests and for training on a CPU in minutes.
    "tiny": {
        "clip": {
            "embed_dim": 128,
            "quick_gelu": True,
            "vision_cfg": {"image_size": 32, "layers": 4, "width": 128, "patch_size": 8, "head_width": 32},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 4, "layers": 3},
        },
        "agg_heads": 4,
        "caption_heads": 4,
        "caption_ff": 512,
    },
}


def architecture_names() -> list[str]:
    """The registered architectures (what `random:<name>` and `--arch` accept)."""
    return sorted(ARCHITECTURES)


def architecture(name: str) -> PromptSwitchConfig:
    """The registered config `name` (see ARCHITECTURES)."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; registered: {', '.join(sorted(ARCHITECTURES))}")
    d = copy.deepcopy(ARCHITECTURES[name])
    d.setdefault("base", f"random:{name}")
    cfg = PromptSwitchConfig(**d)
    cfg.validate()
    return cfg
