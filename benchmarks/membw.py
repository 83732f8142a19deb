"""Measure this machine's memory read bandwidth: the ceiling for LLM decode on a CPU.

Decode reads every weight once per token, so tokens/s can never beat
bandwidth / bytes-per-token. We read (never copy) a buffer well beyond the L3 cache with
one thread per core and keep the best of several passes and kernels.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np


def read_bandwidth_gbs(buffer_bytes: int = 1 << 30, passes: int = 5, threads: int | None = None) -> float:
    threads = threads or os.cpu_count() or 1
    data = np.ones(buffer_bytes // 8, dtype=np.float64)
    chunks = np.array_split(data, threads)
    best = 0.0
    for kernel in (np.max, np.sum):  # reductions: pure reads, a scalar result per chunk
        kernel(data[: 1 << 20])
        for _ in range(passes):
            workers = [threading.Thread(target=kernel, args=(chunk,)) for chunk in chunks]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            best = max(best, data.nbytes / (time.perf_counter() - started) / 1e9)
    return best


if __name__ == "__main__":
    print(f"memory read bandwidth: {read_bandwidth_gbs():.1f} GB/s over 1 GiB, {os.cpu_count()} threads")
