"""Peak memory of one case, honestly, on every device.

CUDA: the caching allocator's peak, reset before the case; the row reports the peak above what
was allocated before the call (inputs excluded).
CPU: a worker subprocess (harness/measure/memory_worker.py) started with MALLOC_MMAP_THRESHOLD_=65536,
so glibc serves every block of 64 KiB or more with mmap and returns it on free; the kernel's
high-water mark (VmHWM) is reset through /proc/self/clear_refs before each call, and the row
reports VmHWM minus the resident size before the call. Memory a case frees is therefore really
gone before the next one, and one worker can measure many cases. tests/test_memory.py checks the
method against allocations of known size.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

# Below the mmap threshold glibc serves blocks from its heap, which it keeps: a CPU peak under 64 KiB
# is below what the method resolves, and reports show it as "< 64 KiB", never as 0.
CPU_RESOLUTION_BYTES = 65536


def _status_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def rss_peak_above_start(fn):
    """Bytes by which resident memory peaked above its level before fn() (Linux)."""
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _status_kib("VmRSS")
    fn()
    return max(0, _status_kib("VmHWM") - before) * 1024


def cuda_peak_above_start(fn, device):
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def cpu_peaks(keys, timeout_s=600):
    """Peak bytes per CaseKey, measured in one fresh worker process; None where a case failed."""
    if not keys:
        return []
    # the worker imports what this process can: scanlab, plugins on the caller's path, modules beside it
    path = os.pathsep.join(p for p in (os.getcwd(), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(CPU_RESOLUTION_BYTES), "PYTHONPATH": path,
           "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the worker measures at the sweep's thread count
    request = "".join(json.dumps(key.as_row()) + "\n" for key in keys)
    done = subprocess.run([sys.executable, "-m", "scanlab.harness.measure.memory_worker"], input=request, capture_output=True,
                          text=True, env=env, timeout=timeout_s)
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    if len(results) != len(keys):
        raise RuntimeError(f"memory worker answered {len(results)} of {len(keys)} cases: {done.stderr[-2000:]}")
    return [r["peak_bytes"] for r in results]
