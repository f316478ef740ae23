"""The performance sweep: each group (family, L, dtype, mode) checks every backend against the
oracle, times the ones that pass interleaved with the bandwidth floor, and measures peak memory."""
import subprocess
from dataclasses import asdict

import numpy as np
import torch
from tqdm import tqdm

from ...impls import all_scan_backends

from ..results.case_key import DENSE, CaseKey
from .crashes import (CRASHED, GROUP_LOST, QUARANTINED, RAISED, not_finished_rows, open_sweep_run,
                      quarantine_note, quarantined_from, raised_note)
from .cases import build, floor_family
from ..measure.inputs import packed_lengths, packed_offsets
from .isolation import CaseCrashed, InProcess
from ..measure.memory import cpu_peaks, cuda_peak_above_start
from .shard import WHOLE
from .support import runnable, skipped_row, skipped_rows
from ..measure.timing import SPREAD_LIMIT, Rounds, interleaved, ratios_to_floor, seconds_per_call

# each floor (floor.py) and the metric holding a case's per-round ratio to it
FLOORS = {"floor": "floor_multiple", "floor_prealloc": "floor_multiple_prealloc"}
COPY = "copy"  # CUDA sweeps also time a plain copy: `copy_fraction` is a case's GB/s over the copy's
SCAN_FAMILIES = ("scan", "varlen")  # families whose cases are scan backends (varlen: packed rows beside dense ones)
MEMORY_UNIT = "memory"  # CPU peaks: one unit, measured after every timed group


def floor_names(device):
    return list(FLOORS) + ([COPY] if str(device).startswith("cuda") else [])


def default_backends(family, device="cpu"):
    """Every scan backend that runs on `device` (the others are recorded as skipped), or the layers over them."""
    scans = [name for name, b in all_scan_backends().items() if runnable(b, device)]
    if family in SCAN_FAMILIES:
        return scans
    if family == "layer":
        return [f"gate_loop:{name}" for name in scans] + ["gss:conv:fft", "gss:recurrent:chunked"]
    raise ValueError(f"family {family!r} needs an explicit backend list")


def scan_skips(config, device, family="scan"):
    """`skipped` rows for the scan backends this sweep leaves out on `device` or in one of its dtypes."""
    named = config.get("backends")
    scans = all_scan_backends()
    backends = {n: b for n, b in scans.items() if not named or n in named}
    unknown = [skipped_row("perf", family, name, device, "", "no scan backend of this name in this tree")
               for name in named or () if name not in scans]
    return skipped_rows("perf", family, backends, device, config["dtypes"]) + unknown


def perf_groups(family, config, device):
    """(unit_id, [CaseKey, ...]) per group of cases compared in one interleaved measurement."""
    if family == "decode":
        from .decode import decode_groups

        return decode_groups(config, device)
    backends = config.get("backends") or default_backends(family, device)
    scans = all_scan_backends() if family in SCAN_FAMILIES else {}
    if family in SCAN_FAMILIES:
        # a name this tree does not know (ab: a revision before or after it existed) has no case here
        backends = [name for name in backends if name in scans and runnable(scans[name], device)]
    groups = []
    for dtype in config["dtypes"]:
        for length in config["lengths"]:
            for modes in config.get("modes_N", [0]):
                for mode in config["modes"]:
                    for layout in config.get("layouts", [DENSE]):
                        keys = [CaseKey(family=family, backend=name, mode=mode, device=device, dtype=dtype,
                                        B=config["batch"], L=length, D=config["channels"], N=modes, layout=layout)
                                for name in backends
                                if not (name in ("direct", "conv:direct") and length > config.get("direct_max_len", length))
                                and (family not in SCAN_FAMILIES or runnable(scans[name], device, dtype))]
                        suffix = "" if layout == DENSE else f"|{layout}"
                        groups.append((f"{family}|{dtype}|{length}|{modes}|{mode}{suffix}", keys))
    return groups


def perf_row(key, unit_id, metric, value, unit, lo="", hi="", note="", samples=""):
    return dict(key.as_row(), suite="perf", unit_id=unit_id, regime="", metric=metric,
                value=value, lo=lo, hi=hi, unit=unit, note=note, samples=samples)


def _checked(key, unit_id, rows, cold_s):
    """The case, if it passes its accuracy check; its error rows are added either way.

    Its first call is timed before anything else touches that shape: that is the compile time.
    """
    case = build(key)
    if key.layout != DENSE:
        rows.append(layout_path_row(key, unit_id))
    if case.refusal:
        rows.append(perf_row(key, unit_id, "time_s", None, "s", note=f"cannot take these inputs: {case.refusal}"))
        return None
    cold_s[key.backend] = seconds_per_call(case.run, 1, key.device)
    if case.check is None:
        return case
    verdicts = case.check()
    outside = case.outside_domain() if case.outside_domain is not None else []
    rows += check_rows(key, unit_id, verdicts, outside)
    if all(v.passed for v in verdicts):
        return case
    worst = max(verdicts, key=lambda v: v.worst_ratio)
    rows.append(perf_row(key, unit_id, "time_s", None, "s", note=failed_check_note(worst.quantity, worst.worst_ratio, outside)))
    return None


def layout_path_row(key, unit_id):
    """Whether the backend runs the key's reverse or packed layout on its own path (1) or through the
    exact adapters of impls/layouts.py (0): recorded, as a plugin's backend is not known to `report`."""
    wanted = set(key.layout.split("+"))
    backend = all_scan_backends()[key.backend]
    own = wanted <= set(backend.native_layouts)
    rule = getattr(backend, "packs_natively", None)  # absent from an `ab` BASE older than it
    if own and "varlen" in wanted and rule is not None:
        own = bool(rule(packed_offsets(packed_lengths(key.L)), key.L, key.D, torch.device(key.device)))
    return perf_row(key, unit_id, "native_layout", float(own), "1", note="native" if own else "adapter")


def check_rows(key, unit_id, verdicts, outside):
    """A case's check as rows: its worst error (the quantity in the note) and whether its inputs lie in
    the backend's declared domain (failures.py judges only those that do)."""
    worst = max(verdicts, key=lambda v: v.worst_ratio)
    return [perf_row(key, unit_id, "max_abs_err", worst.max_abs_err, ""),
            perf_row(key, unit_id, "worst_ratio", worst.worst_ratio, "x", note=worst.quantity),
            perf_row(key, unit_id, "in_domain", float(not outside), "1", note="; ".join(outside))]


def failed_check_note(quantity, worst_ratio, outside):
    return (f"no speed figure: {quantity} fails its declared tolerance ({worst_ratio:.3g}x the allowed error)"
            + (f"; outside its declared domain ({'; '.join(outside)})" if outside else ""))


def timing_rows(key, unit_id, case, timing, floors):
    note = f"spread {timing.spread:.0%} of median > {SPREAD_LIMIT:.0%}" if timing.spread > SPREAD_LIMIT else ""
    rows = [perf_row(key, unit_id, "time_s", timing.median, "s", timing.p20, timing.p80, note, timing.samples),
            perf_row(key, unit_id, "compile_s", timing.compile_s, "s")]
    if case.tokens:
        rows.append(perf_row(key, unit_id, "tokens_per_s", case.tokens / timing.median, "tokens/s"))
    if case.bytes_moved:
        rows.append(perf_row(key, unit_id, "gbps", case.bytes_moved / timing.median / 1e9, "GB/s"))
        if key.backend not in floors:
            for name, (floor_case, floor_timing) in floors.items():
                ratios = ratios_to_floor(timing, floor_timing, case.bytes_moved, floor_case.bytes_moved)
                multiple = float(np.median(ratios))
                if name == COPY:
                    rows.append(perf_row(key, unit_id, "copy_fraction", 1 / multiple, "x"))
                else:
                    rows.append(perf_row(key, unit_id, FLOORS[name], multiple, "x", samples=ratios))
    return rows


def _cuda_memory_rows(keys, unit_id, cases, device, progress=None):
    rows = []
    for key in (k for k in keys if k.backend in cases):
        if progress is not None:
            progress(key.backend)
        try:
            rows.append(perf_row(key, unit_id, "peak_bytes", cuda_peak_above_start(cases[key.backend].run, device), "bytes"))
        except Exception as error:  # its time stands; only its peak is missing
            rows.append(perf_row(key, unit_id, "peak_bytes", None, "bytes", note=f"peak not measured: {raised_note(error)}"))
    return rows


def _cpu_memory_rows(rows):
    """Peak rows for every case timed in this run, from one worker process: a worker per group paid
    its torch and JAX imports and JAX compiles again each time (38 of the quick scan sweep's 59 s)."""
    keys = [CaseKey.from_row(r) for r in rows
            if r["metric"] == "time_s" and r["value"] is not None and r["backend"] not in FLOORS and r["backend"] != COPY]
    try:
        peaks, why = cpu_peaks(keys, timeout_s=600 + 10 * len(keys)), "memory worker failed"
    except (RuntimeError, subprocess.TimeoutExpired) as error:  # a kernel that kills or hangs the memory worker
        peaks, why = [None] * len(keys), f"memory worker failed: {str(error).splitlines()[0]}"
    return [perf_row(k, MEMORY_UNIT, "peak_bytes", p, "bytes", note="" if p is not None else why)
            for k, p in zip(keys, peaks)]


def perf_group(unit_id, keys, device, rounds, min_sample_s, memory, progress=None):
    """The rows of one interleaved group: every case checked, the ones that pass timed with the floor.
    A case that raises (built, checked or timed) gets a `raised` row and the others go on."""
    keys, rounds = [CaseKey.from_row(k) for k in keys], Rounds(**rounds)
    rows, cases, cold_s = [], {}, {}
    for key in keys:
        if progress is not None:
            progress(key.backend)
        try:
            case = _checked(key, unit_id, rows, cold_s)
        except Exception as error:  # the kernel's failure is a finding about it, not the end of the group
            rows += not_finished_rows(key, "perf", unit_id, RAISED, raised_note(error))
            continue
        if case is not None:
            cases[key.backend] = case
    needs_floor = any(c.bytes_moved for c in cases.values())
    # recorded under the group's family (backend 'floor'), built as the floor family
    floor_keys = [keys[0].replace(backend=name) for name in floor_names(device)] if needs_floor else []
    floor_cases = {k.backend: build(k.replace(family=floor_family(k.family))) for k in floor_keys}
    runs = {name: case.run for name, case in {**cases, **floor_cases}.items()}
    failed = {}
    timings = interleaved(runs, device, rounds, min_sample_s, cold_s, progress=progress, failed=failed) if runs else {}
    floors = {name: (case, timings[name]) for name, case in floor_cases.items() if name in timings}
    for key in keys + floor_keys:
        if key.backend in failed:
            rows += not_finished_rows(key, "perf", unit_id, RAISED, f"while timed: {failed[key.backend]}")
        elif key.backend in timings:
            case = floor_cases.get(key.backend) or cases[key.backend]
            rows += timing_rows(key, unit_id, case, timings[key.backend], floors)
    if memory and device != "cpu":
        rows += _cuda_memory_rows([k for k in keys if k.backend not in failed], unit_id, cases, device, progress)
    del cases, runs
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the next group's peak must not start from this one's cache
    return rows


def run_perf(family, config, device, reports_dir, rounds: Rounds, min_sample_s, memory=True, resume=True, progress=True,
             shard=WHOLE, shard_offset=0, keep_complete=False, executor=None, retry_crashed=False):
    """One family's perf sweep (its `shard` of it: `shard_offset` groups of the sweep come before this
    family's), resumed where a killed run of it stopped; with `keep_complete`, a complete run of the
    same sweep is returned as it is."""
    settings = {**config, "device": device, "rounds": asdict(rounds), "min_sample_s": min_sample_s, "memory": memory,
                **({} if shard.whole else {"shard": str(shard), "shard_offset": shard_offset})}
    executor = executor or InProcess()
    run = open_sweep_run(reports_dir, f"perf-{family}", settings, resume, keep_complete, retry_crashed)
    try:
        if run.meta["status"] == "complete":
            return run
        done = run.done_units()
        skipped = [r for r in (scan_skips(config, device, family) if family in SCAN_FAMILIES else [])
                   if r["unit_id"] not in done] if shard.index == 1 else []
        if skipped:
            run.add_unit(skipped)
        groups = shard.take(perf_groups(family, config, device), shard_offset)
        quarantine = quarantined_from(run.rows)
        for unit_id, keys in tqdm(groups, desc=f"perf {family}" + ("" if shard.whole else f" {shard}"), disable=not progress):
            if unit_id in done:
                continue
            crashed, measured = [], []
            while True:  # a case that crashes its worker is recorded, and the group measured again without it
                live = [k for k in keys if k.backend not in quarantine]
                try:
                    measured = executor.run("perf_group", unit_id=unit_id, keys=[k.as_row() for k in live], device=device,
                                            rounds=asdict(rounds), min_sample_s=min_sample_s, memory=memory) if live else []
                    break
                except CaseCrashed as crash:
                    culprit = [k for k in live if k.backend == crash.backend]
                    if not culprit:  # in the floor or between cases: no backend to blame, the group is lost
                        crashed += [r for k in live for r in not_finished_rows(k, "perf", unit_id, CRASHED,
                                                                              f"{GROUP_LOST}: {crash.why}")]
                        break
                    crashed += not_finished_rows(culprit[0], "perf", unit_id, CRASHED, crash.why)
                    quarantine[crash.backend] = quarantine_note(crash.backend, unit_id, crash.why)
            blamed = {r["backend"] for r in crashed}
            rows = crashed + measured + [r for k in keys if k.backend in quarantine and k.backend not in blamed
                                         for r in not_finished_rows(k, "perf", unit_id, QUARANTINED, quarantine[k.backend])]
            run.add_unit(rows)
        if memory and device == "cpu" and MEMORY_UNIT not in done:
            run.add_unit(_cpu_memory_rows(run.rows))
        run.finish()
        return run
    finally:
        run.release()  # stopped or finished: another process may resume it now
