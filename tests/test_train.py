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


def _fresh_tiny():
    """The same random tiny model in every process (prompts and aggregation made to matter)."""
    from model import PromptSwitch, architecture

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        m = PromptSwitch(architecture("tiny"))
        with torch.no_grad():
            m.prompt.normal_(0, 0.5)
            m.agg.out_proj.weight.normal_(0, 0.05)
    return m


def _global_batch(keys: list[str]) -> tuple[torch.Tensor, list[str], list[str]]:
    x = torch.randn(len(keys), 6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    words = ["red", "blue", "green", "circle", "square", "left", "right", "grows", "shrinks", "up", "down"]
    captions = [f"a {words[i % 11]} {words[(3 * i + 1) % 11]} moves {words[(5 * i + 2) % 11]}"
                for i in range(len(keys))]
    return x, captions, keys


def _step_result(model, batch, cfg) -> dict:
    from training.train import compute_gradients

    losses = compute_gradients(model, batch, cfg)
    return {"loss": losses["loss"], "contrastive": losses["contrastive"], "caption": losses["caption"],
            "grads": {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}}


CASES = [
    (["a", "b", "c", "a", "b", "d", "e"], 4),  # duplicates inside and across processes; 3 and 2 rows kept
    (["a", "b", "c", "b", "a"], 3),            # the second process keeps no row at all
]


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for c, (keys, split) in enumerate(CASES):
            x, caps, ks = _global_batch(keys)
            part = slice(0, split) if rank == 0 else slice(split, len(keys))
            result = _step_result(_fresh_tiny(), (x[part], caps[part], ks[part]), TrainConfig())
            torch.save(result, f"{out}.{c}.{rank}")
    finally:
        torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def two_process_results(tmp_path_factory) -> str:
    """Run every case in 2 gloo processes once (starting processes is the slow part)."""
    import torch.multiprocessing as mp

    d = tmp_path_factory.mktemp("ddp")
    mp.spawn(_ddp_worker, args=(2, str(d / "init"), str(d / "result")), nprocs=2, join=True)
    return str(d / "result")


@pytest.mark.parametrize("case", range(len(CASES)))
def test_two_processes_give_the_gradient_of_one_on_the_whole_batch(two_process_results: str, case: int) -> None:
    """2 gloo processes on a split batch == 1 process on the concatenated batch (loss and gradients)."""
    single = _step_result(_fresh_tiny(), _global_batch(CASES[case][0]), TrainConfig())
    for r in range(2):
        multi = torch.load(f"{two_process_results}.{case}.{r}", weights_only=True)
        for k in ("loss", "contrastive", "caption"):
            assert multi[k] == pytest.approx(single[k], rel=1e-5), k
        assert set(multi["grads"]) == set(single["grads"])
        for name, g in single["grads"].items():  # float32 sums in another order: ~1e-6 relative
            torch.testing.assert_close(multi["grads"][name], g, rtol=1e-4, atol=1e-5, msg=name)
    assert single["grads"]["clip.logit_scale"].abs() > 0 and single["grads"]["prompt"].abs().sum() > 0


def test_reference_optimiser_is_the_default() -> None:
    from training.train import make_optimizer

    cfg, _ = parse_args([])
    m = _fresh_tiny()
    opt = make_optimizer(m, cfg)
    assert all(g["betas"] == (0.9, 0.999) and g["eps"] == 1e-6 and g["weight_decay"] == 0.2 for g in opt.param_groups)
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(1 for p in m.parameters() if p.requires_grad)
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lrs[id(m.prompt)] == 1e-5 and lrs[id(m.captioner.head.weight)] == 1e-5
    assert lrs[id(m.clip.logit_scale)] == 1e-6 and lrs[id(m.agg.in_proj_weight)] == 1e-6


def test_clip_recipe_optimiser_flags() -> None:
    from training.train import make_optimizer

    cfg, _ = parse_args(["--adam-betas", "0.9", "0.98", "--no-decay-all"])
    m = _fresh_tiny()
    opt = make_optimizer(m, cfg)
    assert all(g["betas"] == (0.9, 0.98) for g in opt.param_groups)
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(m.prompt)] == 0.0 and wd[id(m.clip.ln_final.bias)] == 0.0 and wd[id(m.agg.in_proj_weight)] == 0.2
    shapes, _ = parse_args(["--preset", "shapes"])
    assert shapes.adam_betas == (0.9, 0.98) and not shapes.decay_all  # the bundled model's recipe


def test_ema_is_validated_and_saved(tmp_path: Path) -> None:
    out = tmp_path / "ema"
    train(_shapes_cfg(out, steps=3, ema=0.5, eval_every=3), log=lambda *_: None)
    raw = torch.load(out / "checkpoint.pt", weights_only=True)
    saved = load_model(str(out / "best"))
    assert saved.config.metrics["ema_decay"] == 0.5
    ema_prompt = raw["model_ema"]["prompt"]
    assert not torch.equal(ema_prompt, raw["model"]["prompt"])
    torch.testing.assert_close(saved.prompt.float(), ema_prompt.float(), atol=1e-3, rtol=1e-3)  # saved as float16


def test_ema_update_is_the_reference_formula() -> None:
    from training.ema import ModelEma

    m = torch.nn.Linear(3, 2)
    ema = ModelEma(m, 0.9)
    before = ema.module.weight.detach().clone()
    with torch.no_grad():
        m.weight.add_(1.0)
    ema.update(m)
    torch.testing.assert_close(ema.module.weight, 0.9 * before + 0.1 * m.weight.detach())


@pytest.mark.slow
def test_two_process_data_parallel_training(tmp_path: Path) -> None:
    """torchrun with 2 CPU ranks (gloo) on files with several captions per video (batches differ in
    size after de-duplication): the run ends with identical replicas (checked by train) and rank 0 writes."""
    import os
    import subprocess
    import sys

    from training.shapes import write_dataset

    root = write_dataset(tmp_path / "shapes", seed=3, num_train=12, num_test=4, size=(48, 48), seconds=1.0, fps=6)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "training.train",
           "--preset", "shapes", "--root", str(root), "--val-split", "test", "--steps", "4", "--batch-size", "8",
           "--eval-every", "4", "--workers", "0", "--threads", "1", "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(_losses(out)) == 4
    assert (out / "best" / "model.safetensors").is_file() and (out / "checkpoint.pt").is_file()
