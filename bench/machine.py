"""One line describing the machine a benchmark ran on (printed under every table)."""
from __future__ import annotations

import os
import platform


def describe() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    parts = [cpu, f"{os.cpu_count()} cores", platform.system() + " " + platform.machine(), "Python " + platform.python_version()]
    try:
        import torch

        parts.append(f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
        if torch.cuda.is_available():
            parts.append("GPU " + torch.cuda.get_device_name(0))
    except ImportError:
        pass
    return "machine: " + ", ".join(parts)
