"""What a benchmark ran on: CPU, GPU, memory, load, library versions, the git commit of this checkout."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

from rtdetr_export.artifact.records import library_versions

_REPO = Path(__file__).resolve().parents[2]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The first CPU's instruction-set flags (/proc/cpuinfo: avx2, avx512_bf16, amx_int8, ...); empty elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def _physical_cores() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    cores, physical = set(), None
    for line in text.splitlines():
        if line.startswith("physical id"):
            physical = line.split(":", 1)[1].strip()
        elif line.startswith("core id"):
            cores.add((physical, line.split(":", 1)[1].strip()))
    return len(cores) or None


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    """1/5/15-minute load averages (a noisy machine shows here), None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _run(args: list[str], cwd: Path | None = None) -> str | None:
    if shutil.which(args[0]) is None:
        return None
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_commit() -> dict[str, Any] | None:
    """The commit of the checkout this package runs from, and whether it has uncommitted changes."""
    if not (_REPO / ".git").exists():
        return None
    commit = _run(["git", "rev-parse", "HEAD"], _REPO)
    if commit is None:
        return None
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"], _REPO)
    return {"commit": commit, "dirty": bool(status)}


def gpu_info() -> dict[str, Any] | None:
    """Name, memory, driver and CUDA version of the first CUDA device, None without one."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    driver = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return {"name": props.name, "memory_gb": round(props.total_memory / 1024 ** 3, 1),
            "driver": driver.splitlines()[0] if driver else None, "cuda": torch.version.cuda,
            "count": torch.cuda.device_count()}


def machine_info() -> dict[str, Any]:
    """Everything about the machine and software a reader needs to weigh the numbers."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu": {"model": _cpu_model(), "logical_cores": os.cpu_count(), "physical_cores": _physical_cores(),
                "usable_cores": affinity, "arch": platform.machine()},
        "memory_gb": _memory_gb(),
        "gpu": gpu_info(),
        "libraries": library_versions(),
        "git": git_commit(),
        "load_average": load_average(),
    }
