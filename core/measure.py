"""What the timings and memory figures of a mode are read from, the same way on a CPU and on a GPU."""

from __future__ import annotations

import time
from typing import Callable

import torch

Clock = Callable[[], float]


def clock_for(device: torch.device) -> Clock:
    """Seconds, as a clock the timings can trust: on a GPU it first waits for the queued work, which would
    otherwise be charged to whatever reads the clock next."""
    if device.type != "cuda":
        return time.perf_counter

    def synced() -> float:
        torch.cuda.synchronize()
        return time.perf_counter()

    return synced


class PeakGpuMemory:
    """The most GPU memory allocated while a block runs, in MB (`mb` stays None off a GPU)."""

    def __init__(self, device: torch.device):
        self.device, self.mb = device, None

    def __enter__(self) -> "PeakGpuMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *_) -> None:
        if self.device.type == "cuda":
            self.mb = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
