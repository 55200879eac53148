"""The real app (`python app.py`) in a subprocess on a free localhost port: used by tests and bench/load.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

__all__ = ["free_port", "AppServer", "server_env"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a test server: no telemetry, no network attempts."""
    env = dict(os.environ)
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1",
               PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


class AppServer:
    """`python app.py ARGS --port P` in a subprocess, ready when it answers HTTP (a context manager)."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, port: int | None = None,
                 log_path: Path | None = None, timeout: float = 180.0):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.args = [sys.executable, str(REPO_ROOT / "app.py"), *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = server_env(env)
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
                r = httpx.get(self.url + "gradio_api/info", timeout=2)
                if r.status_code == 200 and "/search" in r.json().get("named_endpoints", {}):
                    return self  # the real page, not the one shown while a --videos folder is indexed
            except (httpx.HTTPError, ValueError):
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
