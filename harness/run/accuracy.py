"""The accuracy suite: every backend against the double-double oracle, outputs and gradients, one row per
(case, quantity, metric), with pass/fail against the backend's declared tolerance and domain."""
from tqdm import tqdm

from ...impls import UnsupportedInputError, all_scan_backends, conv_backends

from ..results.case_key import DENSE, CaseKey, layout_of
from .crashes import (CRASHED, QUARANTINED, RAISED, open_sweep_run, not_finished_rows, quarantine_note,
                      quarantined_from, raised_note)
from .isolation import CaseCrashed, InProcess
from .cases import DTYPES
from ..measure.inputs import DECAYS, conv_inputs, packed_lengths, packed_offsets, scan_inputs
from .shard import WHOLE
from .support import runnable, skipped_row, skipped_rows
from ..check.verify import check_conv, check_scan, gates_seen, scan_references

VERDICT_METRICS = {"max_abs_err": "", "rms_rel_err": "", "worst_ratio": "x", "passed": "1"}


def chosen_scan_backends(config):
    chosen = config.get("backends")
    return {name: b for name, b in all_scan_backends().items() if not chosen or name in chosen}


def accuracy_units(config, device="cpu"):
    """(unit_id, CaseKey, regime) for every scan and conv case of the sweep, on the backends that run on
    `device` and take the dtype (the others: support.skipped_rows). The key's mode is empty: each
    quantity checked (output, state, gradients) becomes the mode of its rows. Scans are also checked
    reverse and packed (config["layouts"]) at config["layout_lengths"], every gate regime and the first
    kv regime; a packed case is one row (B = 1) of packed_lengths(L)."""
    chosen = config.get("backends")
    case = lambda family, name, dtype, length, layout=DENSE, batch=config["batch"]: CaseKey(
        family=family, device=device, dtype=dtype, mode="", B=batch, L=length, D=config["channels"], N=0,
        backend=name, layout=layout)
    units = []
    for name, backend in chosen_scan_backends(config).items():
        for dtype in config["dtypes"]:
            if not runnable(backend, device, dtype):
                continue
            for gate in config["gate_regimes"]:
                for kv in config["kv_regimes"]:
                    for length in config["lengths"]:
                        units.append((f"scan|{name}|{dtype}|{gate}/{kv}|{length}",
                                      case("scan", name, dtype, length), f"{gate}/{kv}"))
                for layout in config.get("layouts", ()):
                    packed = layout_of(layout)[1]
                    for length in config.get("layout_lengths", ()):
                        regime = f"{gate}/{config['kv_regimes'][0]}"
                        units.append((f"scan|{name}|{dtype}|{regime}|{length}|{layout}",
                                      case("scan", name, dtype, length, layout, 1 if packed else config["batch"]), regime))
    for name, backend in conv_backends().items():
        if chosen and name not in chosen:
            continue
        for dtype in (d for d in config["dtypes"] if runnable(backend, device, d)):
            for decay in DECAYS:
                for length in config["lengths"]:
                    units.append((f"conv|{name}|{dtype}|{decay}|{length}", case("conv", name, dtype, length), decay))
    return units


def scan_case_inputs(key, regime):
    """(a, kv, h0, cu_seqlens or None, reverse) of a scan case: B rows, or for a packed layout one row of
    packed_lengths(L) with a start per sequence."""
    gate, kv_regime = regime.split("/")
    dtype, length, device = DTYPES[key.dtype], key.L, key.device
    reverse, packed = layout_of(key.layout)
    if not packed:
        return (*scan_inputs(key.B, length, key.D, dtype, gate, kv_regime, seed=length, device=device), None, reverse)
    lengths = packed_lengths(length)
    a, kv, _ = scan_inputs(1, length, key.D, dtype, gate, kv_regime, seed=length, with_h0=False, device=device)
    h0 = scan_inputs(len(lengths), 1, key.D, dtype, gate, kv_regime, seed=length + 1, device=device)[2]
    return a, kv, h0, packed_offsets(lengths, device), reverse


def _measure(key, regime, config):
    dtype, length, device = DTYPES[key.dtype], key.L, key.device
    gradients = length <= config["gradients_max_len"]
    if key.family == "scan":
        backend = all_scan_backends()[key.backend]
        a, kv, h0, cu_seqlens, reverse = scan_case_inputs(key, regime)
        refused = backend.refusal(a, kv, h0)
        if refused:
            return None, refused
        gradients = gradients and backend.differentiable
        try:
            verdicts = check_scan(backend, a, kv, h0, gradients=gradients, reverse=reverse, cu_seqlens=cu_seqlens)
        except UnsupportedInputError as error:  # packed sequences through an adapter its limits refuse
            return None, str(error)
        references = scan_references(a, kv, h0, gradients, reverse=reverse, cu_seqlens=cu_seqlens)
        seen = gates_seen(backend, a, cu_seqlens)
        return verdicts, backend.tolerance(dtype).domain.violations(seen, references=references)
    backend = conv_backends()[key.backend]
    u, K = conv_inputs(key.B, length, key.D, dtype, regime, seed=length, device=device)
    return check_conv(backend, u, K, gradients=gradients), []


def accuracy_unit(unit_id, key, regime, config, progress=None):
    """The rows of one accuracy case. A backend that raises gives a `raised` row: only its case is lost."""
    key = CaseKey.from_row(key)
    if progress is not None:
        progress(key.backend)
    try:
        verdicts, outside = _measure(key, regime, config)
    except Exception as error:  # the kernel's failure is a finding about it, not the end of the sweep
        return not_finished_rows(key, "accuracy", unit_id, RAISED, raised_note(error), regime)
    if verdicts is None:  # the backend's declared limits refuse these inputs
        row = skipped_row("accuracy", key.family, key.backend, key.device, key.dtype, outside,
                          B=key.B, L=key.L, D=key.D, N=key.N, regime=regime, layout=key.layout)
        return [dict(row, unit_id=unit_id)]
    base = dict(key.as_row(), suite="accuracy", unit_id=unit_id, regime=regime, note="; ".join(outside))
    rows = [dict(base, mode=v.quantity, metric=metric, value=float(getattr(v, metric)), unit=unit)
            for v in verdicts for metric, unit in VERDICT_METRICS.items()]
    rows.append(dict(base, mode="inputs", metric="in_domain", value=float(not outside), unit="1"))
    return rows


def run_accuracy(config, device, reports_dir, resume=True, progress=True, shard=WHOLE, keep_complete=False,
                 executor=None, retry_crashed=False):
    """The accuracy sweep (its `shard` of it), resumed where a killed run of it stopped; with
    `keep_complete`, a complete run of the same sweep is returned as it is. `executor` runs each case
    (isolation.py: in a worker process that a crash or a hang cannot take the sweep down with);
    by default in this process, where an exception is recorded but a fatal signal is not survived."""
    executor = executor or InProcess()
    settings = {**config, "device": device, **({} if shard.whole else {"shard": str(shard)})}
    run = open_sweep_run(reports_dir, "accuracy", settings, resume, keep_complete, retry_crashed)
    try:
        if run.meta["status"] == "complete":
            return run
        done = run.done_units()
        skipped = [r for r in skipped_rows("accuracy", "scan", chosen_scan_backends(config), device, config["dtypes"])
                   if r["unit_id"] not in done] if shard.index == 1 else []
        if skipped:
            run.add_unit(skipped)
        units = shard.take(accuracy_units(config, device))
        quarantine = quarantined_from(run.rows)
        for unit_id, key, regime in tqdm(units, desc=f"accuracy {shard}" if not shard.whole else "accuracy",
                                         disable=not progress):
            if unit_id in done:
                continue
            if key.backend in quarantine:
                run.add_unit(not_finished_rows(key, "accuracy", unit_id, QUARANTINED, quarantine[key.backend], regime))
                continue
            try:
                rows = executor.run("accuracy_unit", unit_id=unit_id, key=key.as_row(), regime=regime, config=config)
            except CaseCrashed as crash:
                quarantine[key.backend] = quarantine_note(key.backend, unit_id, crash.why)
                rows = not_finished_rows(key, "accuracy", unit_id, CRASHED, crash.why, regime)
            run.add_unit(rows)
        run.finish()
        return run
    finally:
        run.release()  # stopped or finished: another process may resume it now
