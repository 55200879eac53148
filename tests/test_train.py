"""Training and evaluation commands on tiny models: the loss falls, resume is exact, bad videos are skipped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from model import load_model
from training.evaluate import main as evaluate_main
from training.train import TrainConfig, lr_factor, parse_args, train


def _shapes_cfg(out: Path, **kw) -> TrainConfig:
    cfg, _ = parse_args(["--preset", "shapes", "--out", str(out)])
    base = dict(steps=40, batch_size=16, eval_every=1000, eval_size=32, checkpoint_every=1000)
    for k, v in {**base, **kw}.items():
        setattr(cfg, k, v)
    return cfg


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (out / "log.jsonl").read_text().splitlines()) if "loss" in r]


def test_loss_falls_on_moving_shapes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    best = train(_shapes_cfg(out), log=lambda *_: None)
    losses = _losses(out)
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.85 * np.mean(losses[:8]), losses
    m = load_model(str(best))
    assert m.has_trained_captioner and m.config.caption_vocab  # restricted head for the tiny model
    assert m.config.metrics["train_steps"] == 40


def test_resume_continues_without_repeating_steps(tmp_path: Path) -> None:
    full, split = tmp_path / "full", tmp_path / "split"
    train(_shapes_cfg(full, steps=8, checkpoint_every=3), log=lambda *_: None)
    train(_shapes_cfg(split, steps=8, checkpoint_every=3, stop_after=5), log=lambda *_: None)
    assert len(_losses(split)) == 5
    messages: list[str] = []
    train(_shapes_cfg(split, steps=8, checkpoint_every=3), resume=True, log=messages.append)
    assert any("resumed" in m and "step 5" in m for m in messages)
    assert [r for r in _losses(split)] == pytest.approx(_losses(full), rel=1e-4)
    a = torch.load(full / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(split / "checkpoint.pt", weights_only=True)["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-4)


def test_schedule_warms_up_then_decays() -> None:
    f = [lr_factor(s, 100, 0.1) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:])) and f[-1] < 0.01


def test_dataset_files_with_an_unreadable_video(tmp_path: Path) -> None:
    from training.shapes import write_dataset

    root = write_dataset(tmp_path / "shapes", seed=3, num_train=10, num_test=4, size=(48, 48), seconds=1.0, fps=6)
    (root / "videos" / "shapes0002.mp4").write_bytes(b"not a video at all")  # broken inside a batch
    out = tmp_path / "run"
    cfg = _shapes_cfg(out, root=str(root), steps=3, batch_size=4, workers=0, eval_every=3)
    cfg.val_split = "test"
    train(cfg, log=lambda *_: None)
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert sum("loss" in r for r in records) == 3
    ev = [r["eval"] for r in records if "eval" in r]
    assert ev and 0 <= ev[0]["t2v_R@1"] <= 1


def test_evaluate_cli_moving_shapes_json(tmp_path: Path, tiny_model) -> None:
    tiny_model.save_pretrained(tmp_path / "m")
    out = tmp_path / "r.json"
    assert evaluate_main(["--model", str(tmp_path / "m"), "--dataset", "moving-shapes", "--size", "40",
                          "--seed", "5", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    for d in ("t2v", "v2t"):
        assert set(r[d]) == {"R@1", "R@5", "R@10", "MdR", "MnR"}
        assert 0 <= r[d]["R@1"] <= r[d]["R@5"] <= r[d]["R@10"] <= 1
    for k in ("reversal_accuracy", "caption_accuracy", "gallery_t2v_R@1"):
        assert k in r


def test_mean_pooling_scores_exactly_half_on_reversal(tmp_path: Path, tiny_model) -> None:
    """Averaging independently encoded frames cannot tell a clip from its reversal."""
    from training.evaluate import evaluate_shapes

    tiny_model.use_prompts = False
    try:
        ev = evaluate_shapes(tiny_model, seed=1, size=30, num_frames=6)
    finally:
        tiny_model.use_prompts = True
    assert ev.reversal_accuracy == 0.5


@pytest.mark.slow
def test_two_process_data_parallel_training(tmp_path: Path) -> None:
    """torchrun with 2 CPU ranks (gloo): the run ends with identical replicas (checked by train) and rank 0 writes."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training.train",
           "--preset", "shapes", "--steps", "4", "--batch-size", "8", "--eval-every", "4", "--eval-size", "16",
           "--threads", "1", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_losses(out)) == 4
    assert (out / "best" / "model.safetensors").is_file() and (out / "checkpoint.pt").is_file()
