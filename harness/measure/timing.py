"""Timing that survives a shared, drifting machine: cases of one comparison are interleaved in
rounds (A B C A B C ...), so each round's drift hits all of them, and every case is also reported
as its per-round ratio to the floor measured in the same round.

On CUDA every call is timed by CUDA events around it alone, after the L2 cache is flushed by
zeroing a buffer larger than it (as triton.testing.do_bench does): a kernel re-reading inputs the
previous call left in a 50 MB L2 would otherwise beat the memory floor it is judged against."""
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

SPREAD_LIMIT = 0.10  # (p80 - p20) / median above this flags the row


@dataclass(frozen=True)
class Rounds:
    """How many interleaved rounds a group gets: at least `least`, then more until every case's IQR is
    below `iqr_threshold` of its median (torch.utils.benchmark's adaptive_autorange rule, applied to
    the whole group so that every round still holds every case and the floor), up to `most` rounds
    or until the group's rounds have taken `budget_s` (its max_run_time)."""
    least: int
    most: int
    budget_s: float = 10.0
    iqr_threshold: float = 0.10

    def __post_init__(self):
        if not 1 <= self.least <= self.most:
            raise ValueError(f"rounds must satisfy 1 <= least <= most, got least={self.least}, most={self.most}")


@dataclass
class Timing:
    samples: list  # seconds per call, one per round
    first_call_s: float  # includes compilation / JIT tracing
    number: int  # calls per sample

    @property
    def median(self):
        return float(np.median(self.samples))

    @property
    def p20(self):
        return float(np.percentile(self.samples, 20))

    @property
    def p80(self):
        return float(np.percentile(self.samples, 80))

    @property
    def spread(self):
        return (self.p80 - self.p20) / self.median

    @property
    def iqr_fraction(self):
        """(p75 - p25) / median: what the adaptive rule drives below its threshold."""
        q25, q75 = np.percentile(self.samples, [25, 75])
        return float((q75 - q25) / self.median)

    @property
    def compile_s(self):
        """First call minus a steady one: the one-off cost of compiling for this shape."""
        return max(0.0, self.first_call_s - self.median)


def synchronize(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


L2_FLUSH_BYTES = 256 * 2 ** 20  # above the L2 of every current GPU (H100: 50 MB, B200: 126 MB)


_FLUSH_BUFFERS = {}  # one per device: a buffer made for one GPU (or the CPU) never flushes another


def _flush_buffer(device):
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    if device not in _FLUSH_BUFFERS:
        _FLUSH_BUFFERS[device] = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.int32, device=device)
    return _FLUSH_BUFFERS[device]


def cuda_seconds_per_call(fn, number, device):
    """Mean of `number` calls, each timed by CUDA events after an L2 flush (the flush is not timed)."""
    flush = _flush_buffer(device)
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(number)]
    for start, end in events:
        flush.zero_()
        # the flush done before the call starts: JAX runs on streams of its own, which torch's stream
        # order does not reach, so a JAX kernel could otherwise overlap the flush
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize(device)
    return sum(start.elapsed_time(end) for start, end in events) / 1e3 / number


def seconds_per_call(fn, number, device):
    if str(device).startswith("cuda"):
        return cuda_seconds_per_call(fn, number, device)
    synchronize(device)
    start = time.perf_counter()
    for _ in range(number):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / number


def interleaved(cases, device, rounds: Rounds, min_sample_s, first_call_s=None, progress=None, failed=None):
    """name -> Timing, for name -> fn; each sample repeats fn until it lasts min_sample_s.

    first_call_s: cold first-call times measured earlier (before any check warmed the case up).
    progress: called with a case's name before each of its samples (an isolated sweep's worker
    announces the case in flight). failed: where a case that raises goes (name -> why); it leaves the
    rounds, and the others go on.
    """
    failed = {} if failed is None else failed
    announce = progress or (lambda name: None)
    first, number = dict(first_call_s or {}), {}
    for name, fn in cases.items():
        announce(name)
        try:
            cold = seconds_per_call(fn, 1, device)
            steady = seconds_per_call(fn, 1, device)
        except Exception as error:  # a kernel that raises only when called again is its own finding
            failed[name] = f"{type(error).__name__}: {error}"
            continue
        first.setdefault(name, cold)
        number[name] = max(1, math.ceil(min_sample_s / max(steady, 1e-9)))
    cases = {name: fn for name, fn in cases.items() if name not in failed}
    samples = {name: [] for name in cases}
    order = list(cases)
    started = time.perf_counter()
    for round_index in range(rounds.most if order else 0):
        # rotated each round, so no case always runs right after the heaviest one (caches, clocks)
        shift = round_index % len(order)
        for name in order[shift:] + order[:shift]:
            if name in failed:
                continue
            announce(name)
            try:
                samples[name].append(seconds_per_call(cases[name], number[name], device))
            except Exception as error:
                failed[name] = f"{type(error).__name__}: {error}"
        cases = {name: fn for name, fn in cases.items() if name not in failed}
        samples = {name: v for name, v in samples.items() if name not in failed}
        if not cases:
            break
        if round_index + 1 >= rounds.least:
            timings = {name: Timing(samples[name], first[name], number[name]) for name in cases}
            settled = all(t.iqr_fraction < rounds.iqr_threshold for t in timings.values())
            if settled or time.perf_counter() - started > rounds.budget_s:
                break
    return {name: Timing(samples[name], first[name], number[name]) for name in cases}


def ratios_to_floor(timing, floor, case_bytes, floor_bytes):
    """Per round, time / (the same round's floor time scaled to the case's bytes): `x floor` is their
    median, and compare tests them across machines, where absolute times do not compare."""
    scale = case_bytes / floor_bytes
    return [t / (f * scale) for t, f in zip(timing.samples, floor.samples)]
