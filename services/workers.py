"""Workers, as the entry points start them: in `glassbox serve` (in-process) and
`glassbox worker`. A worker is given the process's `Services`."""

from __future__ import annotations

from runner.worker import Worker, WorkerOptions

__all__ = ["Worker", "WorkerOptions"]
