"""Decoded clips as torch datasets: one sample per (video, caption) in training, per video in evaluation."""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Augment:
    """Training augmentation: random resized crop (scale range) and horizontal flip, one draw per clip."""

    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip: bool = True

class VideoDataset(torch.utils.data.Dataset):
    """One sample per (video, caption) in training, per video in evaluation; bad videos give None."""

    def __init__(self, items, model, train: bool, seed: int = 0, augment: Augment | None = None):
        self.items = items
        self.train = train
        self.augment = augment or Augment()
        self.size, self.mean, self.std = model.config.image_size, model.config.mean, model.config.std
        self.num_frames = model.config.train_frames if train else model.config.num_frames
        self.np_ = model.config.num_prompts
        self.seed = seed
        self.samples = [(i, c) for i, it in enumerate(items) for c in range(len(it.captions))] if train \
            else [(i, 0) for i in range(len(items))]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, k: int):
        from model.transforms import eval_transform, train_transform
        from video.decode import VideoReadError, read_frames

        i, c = self.samples[k]
        item = self.items[i]
        rng = np.random.default_rng([self.seed, k, int(time.time_ns() % 2**31)]) if self.train else None
        try:
            fr = read_frames(item.path, self.num_frames, num_segments=self.np_, train=self.train, rng=rng,
                             max_side=max(256, 2 * self.size)).frames
        except VideoReadError as e:
            log.warning("skipping unreadable video %s: %s", item.path, e)
            return None
        if self.train:
            x = train_transform(fr, self.size, self.mean, self.std, rng, self.augment.crop_scale, self.augment.flip)
        else:
            x = eval_transform(fr, self.size, self.mean, self.std)
        return x, item.captions[c] if item.captions else "", item.video_id, k


def collate(batch):
    """Drops unreadable videos: the batch goes on without them."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    xs, caps, vids, ks = zip(*batch)
    return torch.stack(xs), list(caps), list(vids), list(ks)


def iterate_videos(model, ds: VideoDataset, batch: int = 16,
                   workers: int = 2) -> Iterator[tuple[np.ndarray, list[int]]]:
    """Evaluation pass: yields (video_emb [b, D], indices of the items that could be read)."""
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, num_workers=workers, collate_fn=collate)
    with torch.inference_mode():
        for b in loader:
            if b is None:
                continue
            x, _, _, ks = b
            v, _ = model.encode_video(x.to(model.device))
            yield v.float().cpu().numpy(), [ds.samples[k][0] for k in ks]


