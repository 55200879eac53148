"""Training: the reference recipe as defaults, on dataset files or generated moving shapes.

    python -m training.train --dataset msrvtt --root DIR --init clip:ViT-B-32-quickgelu/openai --out runs/msrvtt
    python -m training.train --preset shapes --out assets/models/moving-shapes        # the bundled demo model
    torchrun --nproc_per_node=4 -m training.train ...                                   # several processes

Every value of TrainConfig is a flag. `--resume` continues from OUT/checkpoint.pt without repeating
finished steps. Checkpoints are chosen on the validation split, never on test (the reference code
selects on test; we do not). docs/FIDELITY.md lists every difference from the reference code.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from model.captioner import caption_loss_terms
from model.device import resolve_device
from model.files import atomic_save

from . import distributed as dist
from .cli import add_flags, values
from .data import Augment, VideoDataset, collate
from .ema import ModelEma
from .losses import contrastive_loss

logger = logging.getLogger(__name__)


class TrainingError(ValueError):
    """A configuration that cannot be trained (e.g. a dataset without its folder)."""


def _opt(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    dataset: str = _opt("msrvtt", "msrvtt | msvd | lsmdc | moving-shapes")
    root: str | None = _opt(None, "dataset folder; moving-shapes without a root is generated in memory")
    split: str = _opt("train", "training split")
    val_split: str = _opt("val", "split used to choose the best checkpoint (never test)")
    init: str = _opt("clip:ViT-B-32-quickgelu/openai", "load_model spec of the starting weights")
    out: str = _opt("runs/promptswitch", "output folder (best/, last/, checkpoint.pt, log.jsonl)")
    use_prompts: bool = _opt(True, "train Prompt Switch; --no-use-prompts trains the mean-pooling baseline")
    epochs: float = _opt(5.0, "passes over the training split")
    steps: int = _opt(0, "optimiser steps; > 0 overrides epochs")
    batch_size: int = _opt(32, "captions per process and step")
    train_frames: int = _opt(6, "frames per training clip (a multiple of the prompt count)")
    lr_clip: float = _opt(1e-6, "learning rate of CLIP's weights, the aggregation attention and logit_scale")
    lr_new: float = _opt(1e-5, "learning rate of the prompt cube and the captioning head")
    weight_decay: float = _opt(0.2, "AdamW weight decay")
    decay_all: bool = _opt(True, "decay every parameter as the reference; --no-decay-all exempts biases, norms, "
                                 "embeddings and the prompt cube")
    adam_betas: tuple[float, float] = _opt((0.9, 0.999), "AdamW betas (the reference's; CLIP's own recipe is 0.9 0.98)")
    adam_eps: float = _opt(1e-6, "AdamW epsilon")
    warmup: float = _opt(0.1, "fraction of steps of linear warm-up before the cosine decay")
    grad_clip: float = _opt(1.0, "clip the gradient norm to this (0 = off)")
    caption_weight: float = _opt(0.5, "weight of the caption loss in the total (0 = no captioning head)")
    ema: float = _opt(0.0, "EMA decay of the weights (e.g. 0.9999); validated and saved instead of the raw "
                           "weights; 0 = off")
    flip: bool = _opt(True, "horizontal flip augmentation (off for captions that name left/right)")
    crop_scale: tuple[float, float] = _opt((0.5, 1.0), "area range of the random resized crop")
    eval_every: int = _opt(0, "validate every N steps; 0 = once per epoch")
    eval_size: int = _opt(200, "moving-shapes: generated validation clips")
    checkpoint_every: int = _opt(200, "write OUT/checkpoint.pt every N steps")
    workers: int = _opt(4, "data-loader processes")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N | mps")
    amp: bool = _opt(True, "bf16 autocast on CUDA")
    seed: int = _opt(0, "random seed")
    threads: int = _opt(0, "torch CPU threads; 0 = torch's default")
    arch: str | None = _opt(None, "train a random-weight registered architecture from scratch instead of --init")
    save_dtype: str = _opt("float32", "dtype of the saved models")
    stop_after: int = _opt(0, "stop this run after N steps (walltime-limited jobs; continue with --resume)")
    metadata: dict = _opt({}, "free-form notes stored with the run")


PRESETS: dict[str, dict] = {
    # A tiny model that learns moving shapes on a 2-core CPU in under half an hour (DESIGN.md section 7).
    # Its optimiser is the one the bundled model was trained with (CLIP's betas, no decay on
    # biases/norms/embeddings/cube), not the reference's.
    "shapes": dict(dataset="moving-shapes", init="random:tiny", arch="tiny", steps=3000, batch_size=64,
                   lr_clip=1e-3, lr_new=1e-3, weight_decay=0.05, warmup=0.05, flip=False, eval_every=250,
                   eval_size=300, checkpoint_every=100, workers=0, save_dtype="float16",
                   adam_betas=(0.9, 0.98), decay_all=False),
}


# ---------------------------------------------------------------------------------------------- data
class ShapesStream:
    """Fresh moving-shapes clips every step (distinct captions within a batch)."""

    def __init__(self, model, batch_size: int, num_frames: int, seed: int):
        self.model, self.batch_size, self.num_frames = model, batch_size, num_frames
        self.rng = np.random.default_rng([seed, 1])

    def next(self) -> tuple[torch.Tensor, list[str], list[str]]:
        from .shapes import make_batch

        fr, caps, specs = make_batch(self.rng, self.batch_size, self.num_frames, self.model.config.image_size,
                                     num_segments=self.model.config.num_prompts, train=True)
        return self.model.preprocess_clips(fr), caps, [s.caption() for s in specs]


class FileBatches:
    """Batches of a dataset on disk, epoch after epoch, resumable mid-epoch."""

    def __init__(self, cfg: TrainConfig, model, world: int):
        from video.annotations import load_split

        if cfg.root is None:
            raise TrainingError(f"--root is required for dataset {cfg.dataset}")
        split = cfg.split
        if cfg.dataset in ("msrvtt", "moving-shapes") and split in ("train", "train9k") and cfg.val_split == "val":
            split = "train-minus-val"  # MSR-VTT's "val" is carved out of the 9k list: keep it unseen
            logger.info("training on train-minus-val so that the validation videos stay unseen")
        sp = load_split(cfg.dataset, Path(cfg.root), split)
        if sp.missing:
            logger.warning("%d videos listed in the annotations are missing on disk and skipped", len(sp.missing))
        ds = VideoDataset(sp.items, model, train=True, seed=cfg.seed, augment=Augment(tuple(cfg.crop_scale), cfg.flip))
        self.sampler = torch.utils.data.DistributedSampler(ds, seed=cfg.seed) if world > 1 else None
        self.loader = torch.utils.data.DataLoader(
            ds, batch_size=cfg.batch_size, shuffle=self.sampler is None, sampler=self.sampler,
            num_workers=cfg.workers, collate_fn=collate, drop_last=True, persistent_workers=cfg.workers > 0)
        self.steps_per_epoch = len(self.loader)
        self._it = None

    def next(self, step: int):
        """The batch of global step `step`, or None for a batch whose every video was unreadable."""
        epoch, within = divmod(step, max(1, self.steps_per_epoch))
        if self._it is None or self._epoch != epoch:
            if self.sampler is not None:
                self.sampler.set_epoch(epoch)
            self._it, self._epoch = iter(self.loader), epoch
            for _ in range(within):  # resuming mid-epoch: skip the batches this epoch already used
                next(self._it, None)
        batch = next(self._it, None)
        return None if batch is None else batch[:3]


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
    """Two learning rates as the reference (new parts: names with prompt/caption; the rest CLIP's).

    The reference decays every parameter; with decay_all off, biases, norms, scales, embeddings and
    the cube are not decayed (CLIP's own recipe)."""
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        new = name.startswith(("prompt", "captioner."))
        decay = cfg.decay_all or (p.ndim >= 2 and not name.startswith("prompt") and "embedding" not in name)
        key = (cfg.lr_new if new else cfg.lr_clip, cfg.weight_decay if decay else 0.0)
        groups.setdefault(key, []).append(p)
    return [{"params": ps, "lr": lr, "base_lr": lr, "weight_decay": wd} for (lr, wd), ps in groups.items()]


def make_optimizer(model, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(model, cfg), betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)


def lr_factor(step: int, total: int, warmup: float) -> float:
    """Linear warm-up then cosine decay to zero, per iteration (transformers' get_cosine_schedule_with_warmup)."""
    w = max(1, int(round(warmup * total)))
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - w) / max(1, total - w))))


# ---------------------------------------------------------------------------------------------- one step
def train_step(model, x: torch.Tensor, captions: list[str], keys: list[str], cfg: TrainConfig) -> dict:
    """The global batch's loss (identical on every process) and this process's part of its gradient.

    Returns {"loss": tensor to back-propagate, "contrastive": float, "caption": float (if on)}."""
    keep = dist.global_keep(keys)
    if not keep:  # every video of this process's batch is in another process's part
        return _no_rows_step(model, cfg)
    x, captions = x[keep], [captions[i] for i in keep]
    tokens = model.tokenize(captions)
    feats = model.frame_features(x.to(model.device))
    video_emb = F.normalize(F.normalize(feats, dim=-1).mean(1), dim=-1)
    text_emb = model.encode_tokens(tokens)
    scale = dist.shared(model.logit_scale)
    loss_c = contrastive_loss(dist.gather_rows(video_emb), dist.gather_rows(text_emb), scale)
    out = {"loss": loss_c, "contrastive": loss_c.item()}
    if cfg.caption_weight > 0:
        logits = model.caption_logits(feats, tokens)
        num, den = caption_loss_terms(logits, tokens, model.tokenizer.eot_token_id, model.captioner.token_to_out,
                                      model.caption_weights)
        den = dist.sum_(den).clamp(min=torch.finfo(den.dtype).tiny)
        out["loss"] = loss_c + cfg.caption_weight * num / den
        out["caption"] = (dist.sum_(num) / den).item()
    return out


def _no_rows_step(model, cfg: TrainConfig) -> dict:
    """A process left without rows still takes part in every collective of the step."""
    empty = torch.zeros(0, model.embed_dim, device=model.device)
    loss_c = contrastive_loss(dist.gather_rows(empty), dist.gather_rows(empty), dist.shared(model.logit_scale))
    out = {"loss": loss_c, "contrastive": loss_c.item()}
    if cfg.caption_weight > 0:
        zero = torch.zeros((), device=model.device)
        den = dist.sum_(zero).clamp(min=torch.finfo(zero.dtype).tiny)
        out["caption"] = (dist.sum_(zero) / den).item()
    return out


def compute_gradients(model, batch: tuple, cfg: TrainConfig, amp: bool = False) -> dict:
    """Forward and backward of one step; afterwards every process holds the global loss's gradient."""
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        losses = train_step(model, *batch, cfg)
    model.zero_grad(set_to_none=True)
    if losses["loss"].requires_grad:
        losses["loss"].backward()
    dist.sum_gradients(model)
    losses["loss"] = losses["contrastive"] + cfg.caption_weight * losses.get("caption", 0.0)
    return losses


# ---------------------------------------------------------------------------------------------- the run
@dataclass
class Run:
    """Everything a training loop step touches."""

    cfg: TrainConfig
    model: Any
    opt: torch.optim.Optimizer
    data: Any
    total: int
    eval_every: int
    device: str
    rank: int
    world: int
    log: Callable[[str], None]
    ema: ModelEma | None = None
    step: int = 0
    best: float = -1.0
    run_steps: int = 0
    t0: float = field(default_factory=time.time)
    log_file: Any = None
    bar: Any = None

    @property
    def out(self) -> Path:
        return Path(self.cfg.out)

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"

    @property
    def stopping(self) -> bool:
        return bool(self.cfg.stop_after) and self.run_steps >= self.cfg.stop_after

    @property
    def finished(self) -> bool:
        return self.step >= self.total or self.stopping

    @property
    def evaluated(self):
        """The weights validated and saved: the EMA when on, as the reference."""
        return self.ema.module if self.ema is not None else self.model


def start_run(cfg: TrainConfig, resume: bool, log: Callable[[str], None]) -> Run:
    """Processes, device, model, data, optimiser, EMA; restores a checkpoint when resuming."""
    rank, world = dist.init_from_env()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if device == "cuda" and world > 1:
        device = f"cuda:{torch.cuda.current_device()}"
    torch.manual_seed(cfg.seed + rank)
    model = build_model(cfg, device)
    model.train()
    if cfg.dataset == "moving-shapes" and cfg.root is None:
        data = ShapesStream(model, cfg.batch_size, cfg.train_frames, cfg.seed + rank)
        total, per_epoch = cfg.steps or 3000, 0
    else:
        data = FileBatches(cfg, model, world)
        per_epoch = data.steps_per_epoch
        total = cfg.steps or max(1, int(round(cfg.epochs * per_epoch)))
    run = Run(cfg, model, make_optimizer(model, cfg), data, total, cfg.eval_every or per_epoch or 500, device,
              rank, world, log, ema=ModelEma(model, cfg.ema) if cfg.ema else None)
    if resume and run.checkpoint.exists():
        load_checkpoint(run)
    run.out.mkdir(parents=True, exist_ok=True)
    return run


def next_batch(run: Run):
    if isinstance(run.data, ShapesStream):
        return run.data.next()
    return run.data.next(run.step)


def optimise(run: Run, batch: tuple) -> dict:
    """Learning rate for this step, gradients of the global loss, clip, AdamW, EMA, logit_scale clamp."""
    for g in run.opt.param_groups:
        g["lr"] = g["base_lr"] * lr_factor(run.step, run.total, run.cfg.warmup)
    losses = compute_gradients(run.model, batch, run.cfg, amp=run.device.startswith("cuda") and run.cfg.amp)
    if run.cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.grad_clip)
    run.opt.step()
    if run.ema is not None:
        run.ema.update(run.model)
    with torch.no_grad():
        run.model.clip.logit_scale.clamp_(max=math.log(100))
    run.step += 1
    run.run_steps += 1
    return losses


def record(run: Run, losses: dict) -> None:
    """One line of OUT/log.jsonl and the progress bar."""
    if run.rank != 0:
        return
    if run.log_file is None:
        from tqdm import tqdm

        run.log_file = (run.out / "log.jsonl").open("a")
        run.bar = tqdm(total=run.total, initial=run.step - 1, desc="train", unit="step", dynamic_ncols=True)
    rec = {"step": run.step, "loss": round(losses["loss"], 5), "contrastive": round(losses["contrastive"], 5),
           "lr": run.opt.param_groups[0]["lr"], "time": round(time.time() - run.t0, 2)}
    if "caption" in losses:
        rec["caption"] = round(losses["caption"], 5)
    run.log_file.write(json.dumps(rec) + "\n")
    run.log_file.flush()
    run.bar.update(1)
    run.bar.set_postfix(loss=f"{losses['loss']:.3f}", con=f"{losses['contrastive']:.3f}",
                        cap=f"{losses.get('caption', 0):.3f}")


def validate(model, cfg: TrainConfig) -> dict:
    """Validation metrics; "score" is what chooses the best checkpoint."""
    was_training = model.training
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
        model.train(was_training)


def evaluate_and_save(run: Run) -> None:
    """Validate the evaluated weights; save OUT/last, and OUT/best when the score improved."""
    model, cfg = run.evaluated, run.cfg
    model.config.caption_trained = cfg.caption_weight > 0
    model.invalidate_fingerprint()
    metrics = validate(model, cfg)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items())
    run.log(f"step {run.step}/{run.total} ({time.time() - run.t0:.0f}s): {shown}")
    run.log_file.write(json.dumps({"step": run.step, "eval": metrics}) + "\n")
    model.config.metrics = {f"val_{k}": round(v, 4) for k, v in metrics.items() if k != "score"}
    model.config.metrics["train_steps"] = run.step
    if run.ema is not None:
        model.config.metrics["ema_decay"] = run.ema.decay
    model.save_pretrained(run.out / "last", dtype=cfg.save_dtype)
    if metrics["score"] > run.best:
        run.best = metrics["score"]
        model.save_pretrained(run.out / "best", dtype=cfg.save_dtype)


def save_checkpoint(run: Run) -> None:
    state = {"model": run.model.state_dict(), "optimizer": run.opt.state_dict(), "step": run.step, "best": run.best,
             "config": json.dumps(dataclasses.asdict(run.cfg)), "model_config": run.model.config.to_json(),
             "rng": torch.get_rng_state()}
    if run.ema is not None:
        state["model_ema"] = run.ema.state_dict()
    if isinstance(run.data, ShapesStream):
        state["stream_rng"] = json.dumps(run.data.rng.bit_generator.state)
    run.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    atomic_save(run.checkpoint, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run: Run) -> None:
    state = torch.load(run.checkpoint, map_location=run.device, weights_only=True)
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.step, run.best = int(state["step"]), float(state["best"])
    torch.set_rng_state(state["rng"])
    if run.ema is not None and "model_ema" in state:
        run.ema.load_state_dict(state["model_ema"])
    if isinstance(run.data, ShapesStream) and "stream_rng" in state:
        run.data.rng.bit_generator.state = json.loads(state["stream_rng"])
    run.log(f"resumed from {run.checkpoint} at step {run.step}/{run.total}")


def finish(run: Run) -> Path:
    if run.bar is not None:
        run.bar.close()
    if run.log_file is not None:
        run.log_file.close()
    if run.world > 1:
        dist.check_replicas_in_sync(run.model)
        torch.distributed.destroy_process_group()
    return run.out / "best"


def train(cfg: TrainConfig, resume: bool = False, log: Callable[[str], None] = logger.info) -> Path:
    """Runs the whole recipe; returns the folder of the best model (OUT/best)."""
    run = start_run(cfg, resume, log)
    while not run.finished:
        batch = next_batch(run)
        if batch is None and run.world == 1:  # every video of this batch was unreadable
            run.step += 1
            continue
        if batch is None:  # the other processes still need this one in every collective of the step
            batch = (torch.zeros(0), [], [])
        record(run, optimise(run, batch))
        if run.rank == 0 and (run.step % run.eval_every == 0 or run.step == run.total):
            evaluate_and_save(run)
        if run.rank == 0 and (run.step % run.cfg.checkpoint_every == 0 or run.step == run.total or run.stopping):
            save_checkpoint(run)
    return finish(run)


# ---------------------------------------------------------------------------------------------- command
def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), help="a named set of defaults (flags still override)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    add_flags(p, TrainConfig, skip=("metadata",))
    p.add_argument("--no-prompts", dest="use_prompts", action="store_false", default=None,
                   help="train the mean-pooling baseline (same as --no-use-prompts)")
    a = vars(p.parse_args(argv))
    return values(TrainConfig, a, PRESETS.get(a.get("preset") or "")), bool(a["resume"])


def main(argv: list[str] | None = None) -> int:
    cfg, resume = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        best = train(cfg, resume=resume)
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"best model: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
