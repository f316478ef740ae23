"""The performance sweep: each group (family, L, dtype, mode) checks every backend against the
oracle, times the ones that pass interleaved with the bandwidth floor, and measures peak memory."""
import numpy as np
import torch
from tqdm import tqdm

from impls import all_scan_backends

from .cases import build
from .memory import cpu_peaks, cuda_peak_above_start
from .records import open_run
from .support import runnable, skipped_rows
from .timing import SPREAD_LIMIT, interleaved, ratios_to_floor, seconds_per_call

# each floor (floor.py) and the metric holding a case's per-round ratio to it
FLOORS = {"floor": "floor_multiple", "floor_prealloc": "floor_multiple_prealloc"}
COPY = "copy"  # CUDA sweeps also time a plain copy: `copy_fraction` is a case's GB/s over the copy's
SPEC_KEYS = ("family", "backend", "mode", "device", "dtype", "B", "L", "D", "N")
MEMORY_UNIT = "memory"  # CPU peaks: one unit, measured after every timed group


def floor_names(device):
    return list(FLOORS) + ([COPY] if str(device).startswith("cuda") else [])


def default_backends(family, device="cpu"):
    """Every scan backend that runs on `device` (the others are recorded as skipped), or the layers over them."""
    scans = [name for name, b in all_scan_backends().items() if runnable(b, device)]
    if family == "scan":
        return scans
    if family == "layer":
        return [f"gate_loop:{name}" for name in scans] + ["gss:conv:fft", "gss:recurrent:chunked"]
    raise ValueError(f"family {family!r} needs an explicit backend list")


def _scan_skips(config, device):
    """`skipped` rows for the scan backends this sweep leaves out on `device` or in one of its dtypes."""
    named = config.get("backends")
    backends = {n: b for n, b in all_scan_backends().items() if not named or n in named}
    return skipped_rows("perf", "scan", backends, device, config["dtypes"])


def perf_groups(family, config, device):
    """(unit_id, [spec, ...]) per group of cases compared in one interleaved measurement."""
    backends = config.get("backends") or default_backends(family, device)
    if family == "scan":
        scans = all_scan_backends()
        backends = [name for name in backends if runnable(scans[name], device)]
    groups = []
    for dtype in config["dtypes"]:
        for length in config["lengths"]:
            for modes in config.get("modes_N", [0]):
                for mode in config["modes"]:
                    specs = [dict(family=family, backend=name, mode=mode, device=device, dtype=dtype, B=config["batch"],
                                  L=length, D=config["channels"], N=modes)
                             for name in backends
                             if not (name in ("direct", "conv:direct") and length > config.get("direct_max_len", length))
                             and (family != "scan" or runnable(scans[name], device, dtype))]
                    groups.append((f"{family}|{dtype}|{length}|{modes}|{mode}", specs))
    return groups


def _row(spec, unit_id, metric, value, unit, lo="", hi="", note="", samples=""):
    return dict({k: spec[k] for k in SPEC_KEYS}, suite="perf", unit_id=unit_id, regime="", metric=metric,
                value=value, lo=lo, hi=hi, unit=unit, note=note, samples=samples)


def _checked(spec, unit_id, rows, cold_s):
    """The case, if it passes its accuracy check; its error rows are added either way.

    Its first call is timed before anything else touches that shape: that is the compile time.
    """
    case = build(spec)
    if case.refusal:
        rows.append(_row(spec, unit_id, "time_s", None, "s", note=f"cannot take these inputs: {case.refusal}"))
        return None
    cold_s[spec["backend"]] = seconds_per_call(case.run, 1, spec["device"])
    if case.check is None:
        return case
    verdicts = case.check()
    worst = max(verdicts, key=lambda v: v.worst_ratio)
    rows.append(_row(spec, unit_id, "max_abs_err", worst.max_abs_err, ""))
    rows.append(_row(spec, unit_id, "worst_ratio", worst.worst_ratio, "x"))
    if all(v.passed for v in verdicts):
        return case
    rows.append(_row(spec, unit_id, "time_s", None, "s",
                     note=f"no speed figure: {worst.quantity} fails its declared tolerance "
                          f"({worst.worst_ratio:.3g}x the allowed error)"))
    return None


def _timing_rows(spec, unit_id, case, timing, floors):
    note = f"spread {timing.spread:.0%} of median > {SPREAD_LIMIT:.0%}" if timing.spread > SPREAD_LIMIT else ""
    rows = [_row(spec, unit_id, "time_s", timing.median, "s", timing.p20, timing.p80, note, timing.samples),
            _row(spec, unit_id, "compile_s", timing.compile_s, "s")]
    if case.tokens:
        rows.append(_row(spec, unit_id, "tokens_per_s", case.tokens / timing.median, "tokens/s"))
    if case.bytes_moved:
        rows.append(_row(spec, unit_id, "gbps", case.bytes_moved / timing.median / 1e9, "GB/s"))
        if spec["backend"] not in floors:
            for name, (floor_case, floor_timing) in floors.items():
                ratios = ratios_to_floor(timing, floor_timing, case.bytes_moved, floor_case.bytes_moved)
                multiple = float(np.median(ratios))
                if name == COPY:
                    rows.append(_row(spec, unit_id, "copy_fraction", 1 / multiple, "x"))
                else:
                    rows.append(_row(spec, unit_id, FLOORS[name], multiple, "x", samples=ratios))
    return rows


def _cuda_memory_rows(specs, unit_id, cases, device):
    measured = [s for s in specs if s["backend"] in cases]
    return [_row(s, unit_id, "peak_bytes", cuda_peak_above_start(cases[s["backend"]].run, device), "bytes")
            for s in measured]


def _cpu_memory_rows(rows):
    """Peak rows for every case timed in this run, from one worker process: a worker per group paid
    its torch and JAX imports and JAX compiles again each time (38 of the quick scan sweep's 59 s)."""
    specs = [{k: r[k] for k in SPEC_KEYS} for r in rows
             if r["metric"] == "time_s" and r["value"] is not None and r["backend"] not in FLOORS
             and r["backend"] != COPY]
    peaks = cpu_peaks(specs, timeout_s=600 + 10 * len(specs))
    return [_row(s, MEMORY_UNIT, "peak_bytes", p, "bytes", note="" if p is not None else "memory worker failed")
            for s, p in zip(specs, peaks)]


def run_perf(family, config, device, reports_dir, rounds, min_sample_s, memory=True, resume=True, progress=True):
    settings = {**config, "device": device, "rounds": rounds, "min_sample_s": min_sample_s, "memory": memory}
    run = open_run(reports_dir, f"perf-{family}", settings, resume=resume)
    done = run.done_units()
    skipped = [r for r in (_scan_skips(config, device) if family == "scan" else []) if r["unit_id"] not in done]
    if skipped:
        run.add_unit(skipped)
    for unit_id, specs in tqdm(perf_groups(family, config, device), desc=f"perf {family}", disable=not progress):
        if unit_id in done:
            continue
        rows, cases, cold_s = [], {}, {}
        for spec in specs:
            case = _checked(spec, unit_id, rows, cold_s)
            if case is not None:
                cases[spec["backend"]] = case
        needs_floor = any(c.bytes_moved for c in cases.values())
        floor_specs = [dict(specs[0], backend=name) for name in floor_names(device)] if needs_floor else []
        floor_cases = {s["backend"]: build(dict(s, family="floor")) for s in floor_specs}
        runs = {name: case.run for name, case in {**cases, **floor_cases}.items()}
        timings = interleaved(runs, device, rounds, min_sample_s, cold_s) if runs else {}
        floors = {name: (case, timings[name]) for name, case in floor_cases.items()}
        for spec in specs + floor_specs:
            if spec["backend"] in timings:
                case = floor_cases.get(spec["backend"]) or cases[spec["backend"]]
                rows += _timing_rows(spec, unit_id, case, timings[spec["backend"]], floors)
        if memory and device != "cpu":
            rows += _cuda_memory_rows(specs, unit_id, cases, device)
        run.add_unit(rows)
        del cases, runs
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the next group's peak must not start from this one's cache
    if memory and device == "cpu" and MEMORY_UNIT not in done:
        run.add_unit(_cpu_memory_rows(run.rows))
    run.finish()
    return run
