"""Stopping a process pool's running workers."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor


def kill_pool_processes(pool: ProcessPoolExecutor) -> int:
    """Kill the pool's worker processes, busy or not; the number killed.

    Python 3.14 has ``ProcessPoolExecutor.kill_workers()``; before it there is no public way.
    Written against Python 3.11 to 3.13: ``pool._processes`` maps each worker's pid to its
    ``multiprocessing.Process`` (None once the pool has shut down).
    """
    kill = getattr(pool, "kill_workers", None)
    processes = list((getattr(pool, "_processes", None) or {}).values())
    if callable(kill):
        kill()
        return len(processes)
    for process in processes:
        process.kill()
    return len(processes)
