"""bench/gpu.py without a GPU: it says so and still runs its code path on a few tiny clips."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_gpu_bench_without_cuda_runs_the_cpu_smoke_test():
    env = {"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py")], capture_output=True, text=True,
                         timeout=600, env=env, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("no CUDA: skipped")
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ") and "videos/s" not in line]
    stages = [r.split(" | ")[1] for r in rows]
    assert stages == ["encode only, batch 4", "decode only (1 worker)", "full pipeline, batch 4"]
    assert all(float(r.split(" | ")[2]) > 0 for r in rows)
    assert "machine: " in out.stdout
