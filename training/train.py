"""Training: the reference recipe as defaults, on dataset files or generated moving shapes.

    python -m training.train --dataset msrvtt --root DIR --init clip:ViT-B-32-quickgelu/openai --out runs/msrvtt
    python -m training.train --preset shapes --out assets/models/moving-shapes        # the bundled demo model
    torchrun --nproc_per_node=4 -m training.train ...                                   # several GPUs (DDP)

Every value of TrainConfig is a flag (--batch-size, --lr-clip, ...). `--resume` continues from
OUT/checkpoint.pt without repeating finished steps. Checkpoints are chosen on the validation
split, never on test (the reference code selects on test; we do not).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.device import resolve_device
from model.files import atomic_save

from .data import Augment, VideoDataset, collate
from .losses import contrastive_loss, first_occurrences


@dataclass
class TrainConfig:
    dataset: str = "msrvtt"           # msrvtt | msvd | lsmdc | moving-shapes
    root: str | None = None           # dataset folder; moving-shapes without root is generated in memory
    split: str = "train"
    val_split: str = "val"
    init: str = "clip:ViT-B-32-quickgelu/openai"
    out: str = "runs/promptswitch"
    use_prompts: bool = True
    epochs: float = 5.0
    steps: int = 0                    # > 0 overrides epochs
    batch_size: int = 32
    train_frames: int = 6
    lr_clip: float = 1e-6             # all CLIP weights, the aggregation attention and logit_scale
    lr_new: float = 1e-5              # the prompt cube and the captioning head
    weight_decay: float = 0.2
    warmup: float = 0.1               # fraction of steps
    grad_clip: float = 1.0
    caption_weight: float = 0.5
    flip: bool = True                 # horizontal flip augmentation (off for left/right captions)
    crop_scale: tuple[float, float] = (0.5, 1.0)
    eval_every: int = 0               # steps; 0 = once per epoch
    eval_size: int = 200              # moving-shapes: generated validation clips
    checkpoint_every: int = 200
    workers: int = 4
    device: str = "auto"
    amp: bool = True                  # bf16 autocast on CUDA
    seed: int = 0
    threads: int = 0                  # torch CPU threads; 0 = torch's default
    arch: str | None = None           # random:<arch> init with a caption vocabulary for shapes
    save_dtype: str = "float32"
    stop_after: int = 0               # stop this run after N steps (walltime-limited jobs; continue with --resume)
    metadata: dict = field(default_factory=dict)


PRESETS: dict[str, dict] = {
    # A tiny model that learns moving shapes on a 2-core CPU in under half an hour (DESIGN.md section 7).
    "shapes": dict(dataset="moving-shapes", init="random:tiny", arch="tiny", steps=3000, batch_size=64,
                   lr_clip=1e-3, lr_new=1e-3, weight_decay=0.05, warmup=0.05, flip=False, eval_every=250,
                   eval_size=300, checkpoint_every=100, workers=0, save_dtype="float16"),
}


# ---------------------------------------------------------------------------------------------- data
class ShapesStream:
    """Fresh moving-shapes clips every step (distinct captions within a batch)."""

    def __init__(self, model, batch_size: int, num_frames: int, seed: int):
        self.model, self.batch_size, self.num_frames = model, batch_size, num_frames
        self.rng = np.random.default_rng([seed, 1])

    def next(self):
        from .shapes import make_batch

        fr, caps, specs = make_batch(self.rng, self.batch_size, self.num_frames, self.model.config.image_size,
                                     num_segments=self.model.config.num_prompts, train=True)
        return self.model.preprocess_clips(fr), caps, [s.caption() for s in specs]


def shapes_caption_vocab(tokenizer) -> list[int]:
    """Every token of every moving-shapes phrasing, plus start/end: the bundled head's vocabulary."""
    from .shapes import COLORS, MOTIONS, SHAPES, ClipSpec, ShapeSpec

    ids = {tokenizer.sot_token_id, tokenizer.eot_token_id}
    for c in COLORS:
        for s in SHAPES:
            for m in MOTIONS:
                spec = ClipSpec((ShapeSpec(c, s, m, 0.15, (0.5, 0.5), 0.0),), (0, 0, 0))
                for text in spec.captions():
                    ids.update(tokenizer.encode(text))
    return sorted(ids)


# ---------------------------------------------------------------------------------------------- setup
def build_model(cfg: TrainConfig, device: str):
    from model.config import architecture
    from model.hub import load_model
    from model.prompt_switch import PromptSwitch

    if cfg.arch:
        conf = architecture(cfg.arch)
        conf.train_frames = cfg.train_frames
        probe = PromptSwitch(conf)
        conf.caption_vocab = shapes_caption_vocab(probe.tokenizer) if cfg.dataset == "moving-shapes" else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = PromptSwitch(conf)
        model.spec = f"random:{cfg.arch}"
        conf.base = f"random:{cfg.arch} (trained from scratch)"
    else:
        model = load_model(cfg.init)
        model.config.base = cfg.init
    model.use_prompts = cfg.use_prompts
    model.config.train_frames = cfg.train_frames
    return model.to(device)


def param_groups(model, cfg: TrainConfig) -> list[dict]:
    """Two learning rates (new parts vs CLIP); no weight decay on biases, norms, scales, the cube."""
    groups = {(lr, wd): [] for lr in (cfg.lr_clip, cfg.lr_new) for wd in (cfg.weight_decay, 0.0)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        new = name.startswith(("prompt", "captioner."))
        decay = p.ndim >= 2 and not name.startswith("prompt") and "embedding" not in name
        groups[(cfg.lr_new if new else cfg.lr_clip, cfg.weight_decay if decay else 0.0)].append(p)
    return [{"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items() if ps]


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up then cosine decay to zero, per iteration."""
    w = max(1, int(round(warmup * total)))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


# ---------------------------------------------------------------------------------------------- DDP
def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """All ranks' rows for the contrastive loss; gradients flow to the local part."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    parts = [torch.zeros_like(x) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, x.detach())
    parts[torch.distributed.get_rank()] = x
    return torch.cat(parts)


def average_gradients(model, world: int) -> None:
    """Data parallelism without a DDP wrapper: the step calls several model methods, not forward()."""
    for p in model.parameters():
        if p.requires_grad:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            torch.distributed.all_reduce(p.grad)
            p.grad /= world


def check_replicas_in_sync(model, world: int) -> None:
    """Every rank must end with the same weights; a silent divergence would waste the run."""
    local = torch.stack([sum(p.detach().double().sum() for p in model.parameters())]).to(model.device)
    all_sums = [torch.zeros_like(local) for _ in range(world)]
    torch.distributed.all_gather(all_sums, local)
    sums = torch.cat(all_sums)
    if not torch.allclose(sums, sums[0].expand_as(sums), rtol=1e-9, atol=1e-6):
        raise RuntimeError(f"data-parallel replicas diverged: parameter sums {sums.tolist()}")


# ---------------------------------------------------------------------------------------------- loop
def train_step(model, x: torch.Tensor, captions: list[str], keys: list[str], cfg: TrainConfig) -> dict:
    keep = first_occurrences(keys)
    x, captions = x[keep], [captions[i] for i in keep]
    tokens = model.tokenize(captions)
    feats = model.frame_features(x.to(model.device))
    frame_emb = F.normalize(feats, dim=-1)
    video_emb = F.normalize(frame_emb.mean(1), dim=-1)
    text_emb = model.encode_tokens(tokens)
    loss_c = contrastive_loss(gather_with_grad(video_emb), gather_with_grad(text_emb), model.logit_scale)
    loss = loss_c
    out = {"contrastive": loss_c.item()}
    if cfg.caption_weight > 0:
        loss_cap = model.caption_loss(feats, tokens)
        loss = loss + cfg.caption_weight * loss_cap
        out["caption"] = loss_cap.item()
    out["loss"] = loss
    return out


def _checkpoint_path(cfg: TrainConfig) -> Path:
    return Path(cfg.out) / "checkpoint.pt"


def save_checkpoint(cfg: TrainConfig, model, opt, step: int, best: float, stream_rng) -> None:
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "best": best,
             "config": json.dumps(dataclasses.asdict(cfg)), "model_config": model.config.to_json(),
             "rng": torch.get_rng_state()}
    if stream_rng is not None:
        state["stream_rng"] = json.dumps(stream_rng.bit_generator.state)
    path = _checkpoint_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(path, lambda tmp: torch.save(state, tmp))


def validate(model, cfg: TrainConfig) -> dict:
    model.eval()
    try:
        if cfg.dataset == "moving-shapes" and cfg.root is None:
            from .evaluate import evaluate_shapes

            ev = evaluate_shapes(model, seed=cfg.seed + 1000, size=cfg.eval_size)
            caption = 0 if math.isnan(ev.caption_accuracy) else ev.caption_accuracy
            return {"score": ev.gallery_t2v_r1 + ev.reversal_accuracy + caption,
                    "reversal": ev.reversal_accuracy, "reversal_translations": ev.reversal_translations,
                    "reversal_scalings": ev.reversal_scalings, "gallery_R@1": ev.gallery_t2v_r1,
                    "caption_accuracy": ev.caption_accuracy}
        from .evaluate import evaluate_files

        r = evaluate_files(model, cfg.dataset, Path(cfg.root), cfg.val_split, workers=cfg.workers)
        return {"score": r["t2v"]["R@1"], "t2v_R@1": r["t2v"]["R@1"], "v2t_R@1": r["v2t"]["R@1"]}
    finally:
        model.train()


def train(cfg: TrainConfig, resume: bool = False, log=print) -> Path:
    """Runs the whole recipe; returns the folder of the best model (OUT/best)."""
    from tqdm import tqdm

    rank, world = _dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if device == "cuda" and world > 1:
        device = f"cuda:{torch.cuda.current_device()}"
    torch.manual_seed(cfg.seed + rank)
    model = build_model(cfg, device)
    model.train()

    stream, loader, steps_per_epoch = None, None, 0
    if cfg.dataset == "moving-shapes" and cfg.root is None:
        stream = ShapesStream(model, cfg.batch_size, cfg.train_frames, cfg.seed + rank)
        total = cfg.steps or 3000
    else:
        from video.annotations import load_split

        if cfg.root is None:
            raise SystemExit(f"--root is required for dataset {cfg.dataset}")
        split = cfg.split
        if cfg.dataset in ("msrvtt", "moving-shapes") and split in ("train", "train9k") and cfg.val_split == "val":
            split = "train-minus-val"  # MSR-VTT's "val" is carved out of the 9k list: keep it unseen
            log("training on train-minus-val so that the validation videos stay unseen")
        sp = load_split(cfg.dataset, Path(cfg.root), split)
        if sp.missing:
            log(f"{len(sp.missing)} videos listed in the annotations are missing on disk and skipped")
        ds = VideoDataset(sp.items, model, train=True, seed=cfg.seed,
                          augment=Augment(tuple(cfg.crop_scale), cfg.flip))
        sampler = torch.utils.data.DistributedSampler(ds, seed=cfg.seed) if world > 1 else None
        loader = torch.utils.data.DataLoader(ds, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                                             num_workers=cfg.workers, collate_fn=collate, drop_last=True,
                                             persistent_workers=cfg.workers > 0)
        steps_per_epoch = len(loader)
        total = cfg.steps or max(1, int(round(cfg.epochs * steps_per_epoch)))
    eval_every = cfg.eval_every or steps_per_epoch or 500

    opt = torch.optim.AdamW(param_groups(model, cfg), betas=(0.9, 0.98), eps=1e-6)
    step, best = 0, -1.0
    if resume and _checkpoint_path(cfg).exists():
        state = torch.load(_checkpoint_path(cfg), map_location=device, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best = int(state["step"]), float(state["best"])
        torch.set_rng_state(state["rng"])
        if stream is not None and "stream_rng" in state:
            stream.rng.bit_generator.state = json.loads(state["stream_rng"])
        log(f"resumed from {_checkpoint_path(cfg)} at step {step}/{total}")
    out = Path(cfg.out)
    amp = device.startswith("cuda") and cfg.amp
    bar = tqdm(total=total, initial=step, disable=rank != 0, desc="train", unit="step", dynamic_ncols=True)
    epoch = step // steps_per_epoch if steps_per_epoch else 0
    batches = None
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    log_file = (out / "log.jsonl").open("a") if rank == 0 else None
    run_steps = 0
    while step < total and not (cfg.stop_after and run_steps >= cfg.stop_after):
        if stream is not None:
            batch = stream.next()
        else:
            if batches is None:
                if sampler is not None:
                    sampler.set_epoch(epoch)
                batches = iter(loader)
                # resuming mid-epoch: skip the batches this epoch already used
                for _ in range(step - epoch * steps_per_epoch):
                    next(batches, None)
            batch = next(batches, None)
            if batch is None and steps_per_epoch:
                batches, epoch = None, epoch + 1
                continue
            if batch is None:
                continue
            x, caps, keys, _ = batch
            batch = (x, caps, keys)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] * lr_factor(step, total, cfg.warmup)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
            losses = train_step(model, *batch, cfg)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if world > 1:
            average_gradients(model, world)
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            model.clip.logit_scale.clamp_(max=math.log(100))
        step += 1
        run_steps += 1
        if log_file is not None:
            rec = {"step": step, "loss": round(losses["loss"].item(), 5),
                   "contrastive": round(losses["contrastive"], 5),
                   "lr": opt.param_groups[0]["lr"], "time": round(time.time() - t0, 2)}
            if "caption" in losses:
                rec["caption"] = round(losses["caption"], 5)
            log_file.write(json.dumps(rec) + "\n")
            log_file.flush()
        bar.update(1)
        bar.set_postfix(loss=f"{losses['loss'].item():.3f}", con=f"{losses['contrastive']:.3f}",
                        cap=f"{losses.get('caption', 0):.3f}")
        if rank == 0 and (step % eval_every == 0 or step == total):
            model.config.caption_trained = cfg.caption_weight > 0
            model.invalidate_fingerprint()
            metrics = validate(model, cfg)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
            log(f"step {step}/{total} ({time.time() - t0:.0f}s): {shown}")
            log_file.write(json.dumps({"step": step, "eval": metrics}) + "\n")
            model.config.metrics = {f"val_{k}": round(v, 4) for k, v in metrics.items() if k != "score"}
            model.config.metrics["train_steps"] = step
            model.save_pretrained(out / "last", dtype=cfg.save_dtype)
            if metrics["score"] > best:
                best = metrics["score"]
                model.save_pretrained(out / "best", dtype=cfg.save_dtype)
        stopping = bool(cfg.stop_after) and run_steps >= cfg.stop_after
        if rank == 0 and (step % cfg.checkpoint_every == 0 or step == total or stopping):
            save_checkpoint(cfg, model, opt, step, best, stream.rng if stream else None)
    bar.close()
    if log_file is not None:
        log_file.close()
    if world > 1:
        check_replicas_in_sync(model, world)
        torch.distributed.destroy_process_group()
    return out / "best"


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named set of defaults (flags still override)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "metadata":
            continue
        flag = "--" + f.name.replace("_", "-")
        val = getattr(defaults, f.name)
        if isinstance(val, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        elif isinstance(val, tuple):
            p.add_argument(flag, dest=f.name, type=float, nargs=2, default=None)
        else:
            typ = int if isinstance(val, int) else float if isinstance(val, float) else str
            p.add_argument(flag, dest=f.name, type=typ, default=None)
    p.add_argument("--no-prompts", dest="use_prompts", action="store_false", help="train the mean-pooling baseline")
    a = vars(p.parse_args(argv))
    values = dataclasses.asdict(defaults)
    if a.get("preset"):
        values.update(PRESETS[a["preset"]])
    values.update({k: v for k, v in a.items() if k in values and v is not None})
    values["crop_scale"] = tuple(values["crop_scale"])
    return TrainConfig(**values), bool(a["resume"])


def main(argv: list[str] | None = None) -> int:
    cfg, resume = parse_args(argv)
    best = train(cfg, resume=resume)
    print(f"best model: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
