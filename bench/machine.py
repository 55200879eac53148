"""The machine a benchmark ran on: printed under every table, stored in every JSON result."""
from __future__ import annotations

import os
import platform
from typing import Any


def info() -> dict[str, Any]:
    """CPU model, usable cores, load average, Python/torch versions and threads, GPU if any."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    out: dict[str, Any] = {"cpu": cpu, "cores": cores, "os": f"{platform.system()} {platform.machine()}",
                           "python": platform.python_version()}
    try:
        out["load_avg"] = tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        pass
    try:
        import torch

        out["torch"] = torch.__version__
        out["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            out["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return out


def describe(i: dict[str, Any] | None = None) -> str:
    i = i or info()
    parts = [i["cpu"], f"{i['cores']} cores", i["os"], "Python " + i["python"]]
    if "torch" in i:
        parts.append(f"torch {i['torch']} ({i['torch_threads']} threads)")
    if "gpu" in i:
        parts.append("GPU " + i["gpu"])
    if "load_avg" in i:
        parts.append("load average %.2f %.2f %.2f" % i["load_avg"])
    return "machine: " + ", ".join(parts)
