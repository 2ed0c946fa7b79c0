"""Peak memory of one phase: process RSS on the CPU, the CUDA caching allocator (or device use) on a GPU."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_mb(field: str) -> float | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each phase gets its own peak, not the process's.
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Context manager measuring the peak during its block: ``with PeakMemory(device) as m: ...; m.result``."""

    def __init__(self, device: str = "cpu", torch_allocator: bool = False):
        self.device = device
        self.torch_allocator = torch_allocator
        self.result: dict[str, Any] = {}

    def __enter__(self) -> "PeakMemory":
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._allocated = torch.cuda.memory_allocated()
            free, total = torch.cuda.mem_get_info()
            self._used = total - free
        else:
            self._resettable = _reset_peak_rss()
            self._rss = _status_mb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            used = total - free
            if self.torch_allocator:
                peak = torch.cuda.max_memory_allocated() / 1024 ** 2
                self.result = {"kind": "cuda-allocator-peak", "peak_mb": round(peak, 1),
                               "delta_mb": round(peak - self._allocated / 1024 ** 2, 1)}
            else:
                # ONNX Runtime and TensorRT allocate outside PyTorch: only the device's use is visible.
                self.result = {"kind": "cuda-device-used", "peak_mb": round(used / 1024 ** 2, 1),
                               "delta_mb": round((used - self._used) / 1024 ** 2, 1)}
            return
        peak = _status_mb("VmHWM") if self._resettable else None
        kind = "rss-peak"
        if peak is None:
            # Without a resettable peak only the whole process's lifetime peak is known.
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            kind = "rss-process-peak"
        self.result = {"kind": kind, "peak_mb": round(peak, 1),
                       "delta_mb": round(peak - (self._rss or 0.0), 1) if self._rss is not None else None}
