"""What a number was measured on: device, library versions, git commit, threads."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

_LIBS = ("torch", "torchvision", "numpy", "onnx", "onnxruntime", "scikit-learn", "cnnbench")


def usable_cpus() -> int:
    """The cores this process may use: its CPU affinity and a container's CPU quota (cgroup
    ``cpu.max``, e.g. ``docker --cpus 2``) counted, as ``joblib.cpu_count`` does, not the
    host's core count. Pools, thread counts and default worker numbers are sized from this;
    without joblib (a lean serving install) the affinity alone."""
    try:
        from joblib import cpu_count

        return max(1, int(cpu_count()))
    except ImportError:
        pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries whose behaviour changes our numbers."""
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__}  # with +cuXXX
    for name in _LIBS:
        if name in out:
            continue
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@cache
def git_commit(path: str | None = None) -> str | None:
    """Commit of the checkout holding ``path``, + '-dirty'.

    Default: the checkout this package is imported from (the code that runs), not the working
    directory, which may be another checkout at another commit."""
    cwd = path or os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    """The CPU model as the kernel reports it (falls back to platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: Any) -> str:
    """Human name of a torch device: the GPU's name, or the CPU model with its core count."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"{cpu_name()} ({os.cpu_count()} cores)"


def environment(device: Any = "cpu") -> dict[str, Any]:
    """Everything a report needs to say where a number comes from."""
    import torch

    return {
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": library_versions(),
        "git_commit": git_commit(),
    }
