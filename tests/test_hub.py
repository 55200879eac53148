"""Weights in and out: save/load, the Hugging Face cache offline, and clear errors for bad specs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model import ModelSpecError, load_model

ROOT = Path(__file__).resolve().parent.parent


def _same_weights(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_save_load_is_exact(tmp_path: Path, tiny_model) -> None:
    tiny_model.save_pretrained(tmp_path / "m")
    names = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert names == ["README.md", "config.json", "model.safetensors"]
    loaded = load_model(str(tmp_path / "m"))
    _same_weights(tiny_model, loaded)
    assert loaded.fingerprint == tiny_model.fingerprint
    assert loaded.config == tiny_model.config
    x = torch.randn(1, 6, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_video(x)[0], tiny_model.encode_video(x)[0], atol=0, rtol=0)
    card = (tmp_path / "m" / "README.md").read_text()
    assert tiny_model.fingerprint in card and "Prompt Switch" in card


def test_fp16_save_is_close_and_smaller(tmp_path: Path, tiny_model) -> None:
    tiny_model.save_pretrained(tmp_path / "a")
    tiny_model.save_pretrained(tmp_path / "b", dtype="float16")
    size = lambda d: (tmp_path / d / "model.safetensors").stat().st_size  # noqa: E731
    assert size("b") < 0.6 * size("a")
    half = load_model(str(tmp_path / "b"))
    x = torch.randn(1, 6, 3, 32, 32)
    with torch.no_grad():
        assert (half.encode_video(x)[0] - tiny_model.encode_video(x)[0]).abs().max() < 2e-2


def _lay_out_hub_cache(hub_cache: Path, repo_id: str, files: dict[str, Path], revision_name: str = "main") -> str:
    """The on-disk layout huggingface_hub resolves from when offline."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo_dir / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo_dir / "blobs").mkdir()
    for name, src in files.items():
        blob = repo_dir / "blobs" / f"blob-{name}"
        blob.write_bytes(src.read_bytes())
        os.symlink(os.path.relpath(blob, snap), snap / name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / revision_name).write_text(commit)
    return commit


def _run_in_fresh_python(code: str, hf_home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)


def test_hf_hub_spec_loads_offline_from_cache(tmp_path: Path, tiny_model) -> None:
    saved = tmp_path / "saved"
    tiny_model.save_pretrained(saved)
    hf_home = tmp_path / "hf"
    files = {n: saved / n for n in ("config.json", "model.safetensors")}
    _lay_out_hub_cache(hf_home / "hub", "promptswitch/tiny-test", files)
    _lay_out_hub_cache(hf_home / "hub", "promptswitch/tiny-rev", files, revision_name="v1")
    code = (
        "from model import load_model\n"
        "a = load_model('hf-hub:promptswitch/tiny-test'); print(a.fingerprint)\n"
        "b = load_model('hf-hub:promptswitch/tiny-rev@v1'); print(b.fingerprint)\n"
    )
    out = _run_in_fresh_python(code, hf_home)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [tiny_model.fingerprint] * 2


def test_hf_hub_spec_missing_offline_fails_fast_and_says_why(tmp_path: Path) -> None:
    code = (
        "from model import load_model, ModelSpecError\n"
        "try:\n    load_model('hf-hub:nobody/not-cached')\n"
        "except ModelSpecError as e:\n    print('ERR', e)\n"
    )
    t = time.monotonic()
    out = _run_in_fresh_python(code, tmp_path / "empty-hf")
    assert time.monotonic() - t < 60
    assert "ERR" in out.stdout, out.stderr[-2000:]
    assert "hf-hub:nobody/not-cached" in out.stdout and "HF_HUB_OFFLINE" in out.stdout


@pytest.mark.parametrize("spec,words", [
    ("nonsense-spec", ["not a known spec", "random:"]),
    ("random:ViT-Z-99", ["no architecture", "tiny"]),
    ("bundled:no-such-model", ["looked in", "bundled models"]),
    ("hf-hub:not a valid id", ["expected hf-hub:"]),
    ("clip:ViT-B-32-quickgelu", ["expected clip:"]),
])
def test_bad_specs_name_the_spec_and_what_to_do(spec: str, words: list[str]) -> None:
    with pytest.raises(ModelSpecError) as e:
        load_model(spec)
    assert spec in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_clip_spec_offline_fails_with_clear_message() -> None:
    t = time.monotonic()
    with pytest.raises(ModelSpecError, match="clip:ViT-B-32-quickgelu/openai.*not in the local cache"):
        load_model("clip:ViT-B-32-quickgelu/openai")
    assert time.monotonic() - t < 60


def test_missing_and_corrupt_files(tmp_path: Path, tiny_model) -> None:
    d = tmp_path / "m"
    tiny_model.save_pretrained(d)
    weights = d / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelSpecError, match="not a readable safetensors file"):
        load_model(str(d))
    weights.write_bytes(b"garbage" * 10)
    with pytest.raises(ModelSpecError, match="not a readable safetensors file"):
        load_model(str(d))
    weights.unlink()
    with pytest.raises(ModelSpecError, match="model.safetensors is missing"):
        load_model(str(d))
    (d / "config.json").write_text(json.dumps({"model_type": "bert"}))
    weights.write_bytes(data)
    with pytest.raises(ModelSpecError, match="not a valid Prompt Switch config"):
        load_model(str(d))
