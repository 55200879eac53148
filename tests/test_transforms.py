"""The training augmentation (model.transforms.train_transform): one crop and flip per clip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from model.config import OPENAI_MEAN, OPENAI_STD
from model.transforms import eval_transform, train_transform


def _clip(frames: int = 4, h: int = 60, w: int = 80) -> np.ndarray:
    """A left-dark / right-bright gradient that moves a little from frame to frame."""
    xx = np.linspace(0, 255, w)[None, :].repeat(h, 0)
    return np.stack([np.stack([np.roll(xx, 3 * t, axis=1)] * 3, -1) for t in range(frames)]).astype(np.uint8)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tensor(OPENAI_STD).view(1, 3, 1, 1) + torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)


def test_output_shape_and_normalisation() -> None:
    x = train_transform(_clip(), 32, OPENAI_MEAN, OPENAI_STD, np.random.default_rng(0))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    p = _pixels(x)
    assert float(p.min()) >= -1e-5 and float(p.max()) <= 1 + 1e-5


def test_seeded_and_random() -> None:
    a = train_transform(_clip(), 32, OPENAI_MEAN, OPENAI_STD, np.random.default_rng(1))
    b = train_transform(_clip(), 32, OPENAI_MEAN, OPENAI_STD, np.random.default_rng(1))
    c = train_transform(_clip(), 32, OPENAI_MEAN, OPENAI_STD, np.random.default_rng(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("seed", range(5))
def test_every_frame_gets_the_same_crop_and_flip(seed: int) -> None:
    frame = _clip(1)[0]
    still = np.stack([frame] * 5)
    x = train_transform(still, 32, OPENAI_MEAN, OPENAI_STD, np.random.default_rng(seed))
    for t in range(1, 5):
        assert torch.equal(x[t], x[0])


def _is_flipped(x: torch.Tensor) -> bool:
    return bool(x[0, 0, :, :8].mean() > x[0, 0, :, -8:].mean())  # bright on the left


def test_flip_happens_about_half_the_time_and_never_when_off() -> None:
    flips = [_is_flipped(train_transform(_clip(1), 32, OPENAI_MEAN, OPENAI_STD, np.random.default_rng(s)))
             for s in range(60)]
    assert 15 <= sum(flips) <= 45
    assert not any(_is_flipped(train_transform(_clip(1), 32, OPENAI_MEAN, OPENAI_STD, np.random.default_rng(s),
                                               flip=False)) for s in range(60))


def test_full_scale_square_crop_without_flip_is_the_resized_frame() -> None:
    """scale (1, 1) on a square frame with aspect ratio 1 leaves only the resize: compare with eval."""
    frame = _clip(1, 64, 64)

    class FixedRng:  # aspect ratio log-uniform draw at exactly 0 -> ratio 1; offsets 0
        def uniform(self, lo, hi):
            return 1.0 if lo == hi else 0.0

        def integers(self, lo, hi):
            return 0

        def random(self):
            return 0.9

    x = train_transform(frame, 32, OPENAI_MEAN, OPENAI_STD, FixedRng(), scale=(1.0, 1.0), flip=False)
    torch.testing.assert_close(x, eval_transform(frame, 32, OPENAI_MEAN, OPENAI_STD))


@pytest.mark.parametrize("seed", range(10))
def test_crop_area_stays_in_the_scale_range(seed: int) -> None:
    """A crop of at least half the frame (scale 0.5-1) keeps most of the gradient's range."""
    x = train_transform(_clip(1, 100, 100), 32, OPENAI_MEAN, OPENAI_STD, np.random.default_rng(seed), flip=False)
    p = _pixels(x)[0, 0]
    span = float(p[:, -1].mean() - p[:, 0].mean())
    assert 0.3 < span <= 1.0
