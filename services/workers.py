"""Workers, as the entry points start them: in `glassbox serve` (in-process) and
`glassbox worker`. A worker is given the process's `Services`."""

from __future__ import annotations

from runner.salvage import Salvaged, salvage_spools
from runner.worker import Worker, WorkerOptions

__all__ = ["Salvaged", "Worker", "WorkerOptions", "salvage_spools"]
