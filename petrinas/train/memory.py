"""A per-job memory limit on CPU: the job fails with a clear error once its peak resident
memory exceeds the limit. (Ray's `memory` resource only reserves; it enforces nothing.)

The peak (VmHWM) is reset when the job starts, because a Ray worker process is reused by
later jobs, and read at every epoch end, so a spike inside an epoch is still seen.
"""

from __future__ import annotations

from pathlib import Path

from petrinas.errors import TrainingError


class MemoryLimitError(TrainingError):
    """The job's peak memory went over resources.memory_per_job_mb."""


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS; False where the kernel does not support it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM) in MiB, or 0 where unknown."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemoryGuard:
    """An epoch callback that raises MemoryLimitError once the peak passes `limit_mb`."""

    def __init__(self, limit_mb: int):
        self.limit_mb = limit_mb
        reset_peak_rss()

    def __call__(self, _metrics=None) -> None:
        peak = peak_rss_mb()
        if self.limit_mb and peak > self.limit_mb:
            raise MemoryLimitError(f"out of memory: the job peaked at {peak:.0f} MiB, over "
                                   f"resources.memory_per_job_mb={self.limit_mb}")
