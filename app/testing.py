"""Helpers for the app's tests and bench/load.py: a tiny library, and the real app in a subprocess.

Not imported by the app itself.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.config import REPO_ROOT

__all__ = ["free_port", "make_shapes_library", "AppServer", "test_env"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a test server: no telemetry, no network attempts."""
    env = dict(os.environ)
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def make_shapes_library(root: Path, model="random:tiny", num: int = 6, seconds: float = 2.0) -> tuple[Path, Path]:
    """Generate `num` moving-shapes clips under root/data and index them into root/library.

    Returns (library folder, folder of the videos). `model` is a spec or a loaded model.
    """
    from model.shapes import write_dataset
    from precompute import BuildSettings, build_library

    root = Path(root)
    data = write_dataset(root / "data", seed=0, num_train=0, num_test=num, size=(96, 72), seconds=seconds, fps=12)
    lib = root / "library"
    report = build_library(data / "MSRVTT_data.json", lib, model, BuildSettings(workers=0, progress_bar=False))
    if report.exit_code != 0:
        raise RuntimeError(f"could not build the test library: {report.summary()}")
    return lib, data / "videos"


class AppServer:
    """`python app.py ARGS --port P` in a subprocess, ready when it answers HTTP (a context manager)."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, port: int | None = None,
                 log_path: Path | None = None, timeout: float = 180.0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args = [sys.executable, str(REPO_ROOT / "app.py"), *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = test_env(env)
        tmp = Path(os.environ.get("TMPDIR", "/tmp"))
        self.log_path = Path(log_path) if log_path else tmp / f"promptswitch-app-{self.port}.log"
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> "AppServer":
        import httpx

        self._log_fh = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.args, cwd=REPO_ROOT, env=self.env, stdout=self._log_fh,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(self.url + "gradio_api/info", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the app did not answer within {self.timeout:.0f}s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "_log_fh", None):
            self._log_fh.close()

    def __enter__(self) -> "AppServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
