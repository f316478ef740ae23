"""A sweep's own verdict: every case that fails its check inside its backend's declared domain, and
every case that raised, crashed its worker or was quarantined (crashes.py).

An accuracy row fails with `passed` 0; a perf case fails when its check's `worst_ratio` exceeds 1
(it then gets no time). A case whose inputs lie outside the declared domain (`in_domain` 0) is
reported, not judged: the tolerance never promised it. The CLI prints `summary` and exits 1 when
there is any failure, after every row and the report are written."""
import math
from dataclasses import dataclass

from .case_key import DENSE
from .compare import _number
from ..run.crashes import NOT_FINISHED

IDENTITY = ("suite", "family", "backend", "dtype")


@dataclass(frozen=True)
class Failure:
    suite: str
    family: str
    backend: str
    dtype: str
    quantity: str  # h, h_last, grad_a, ... (accuracy; "h [varlen]" in a reverse or packed layout); the worst quantity of the check (perf)
    worst_ratio: float  # largest error / allowed error over the cases
    cases: int
    example: str  # one failing case: its L, regime, mode


def _case(row):
    return (row.get("suite"), row.get("unit_id"), row.get("backend"), row.get("mode") if row.get("suite") == "perf" else "")


def _layout(row):
    """' [varlen]' for a reverse or packed case: its failures are listed apart from the dense ones'."""
    return f" [{row['layout']}]" if row.get("layout") not in (None, "", DENSE) else ""


def failures(rows):
    """Failure per (suite, family, backend, dtype, quantity), worst first, from a sweep's rows (dicts)."""
    outside = {_case(r) for r in rows if r.get("metric") == "in_domain" and _number(r.get("value")) == 0}
    ratios = {(r.get("unit_id"), r.get("mode")): _number(r.get("value")) for r in rows
              if r.get("suite") == "accuracy" and r.get("metric") == "worst_ratio"}
    found = {}
    for row in rows:
        if row.get("metric") in NOT_FINISHED:  # a crash is a failure wherever its inputs lay
            quantity, ratio = row["metric"], math.inf
            example = f"L={row.get('L')}{', ' + row['mode'] if row.get('mode') else ''}: {row.get('note')}"
        elif _case(row) in outside:
            continue
        elif row.get("suite") == "accuracy" and row.get("metric") == "passed" and _number(row.get("value")) == 0:
            quantity, ratio = row["mode"], ratios.get((row["unit_id"], row["mode"]), math.inf)
            example = f"L={row.get('L')}, {row.get('regime')}"
        elif row.get("suite") == "perf" and row.get("metric") == "worst_ratio" and not _number(row.get("value")) <= 1:
            quantity, ratio = row.get("note") or "?", _number(row.get("value"))
            example = f"L={row.get('L')}, {row.get('mode')}"
        else:
            continue
        ratio = math.inf if math.isnan(ratio) else ratio
        quantity += _layout(row)
        key = tuple(str(row.get(f, "")) for f in IDENTITY) + (quantity,)
        worst, count, first = found.get(key, (-math.inf, 0, example))
        found[key] = (max(worst, ratio), count + 1, first if worst >= ratio else example)
    listed = [Failure(*key, worst, count, example) for key, (worst, count, example) in found.items()]
    return sorted(listed, key=lambda f: (-f.worst_ratio, f.suite, f.family, f.backend, f.dtype, f.quantity))


def summary(found):
    """Lines for the terminal: what failed, how badly, and how to explore without failing."""
    if not found:
        return ""
    lines = [f"FAILED: {sum(f.cases for f in found)} in-domain case checks fail their declared tolerance or did not "
             "finish (exit 1; --allow-failures keeps exit 0 for an exploratory sweep):"]
    plural = lambda n: f"{n} case{'s' if n != 1 else ''}"  # noqa: E731
    lines += [f"  {f.suite} {f.family} {f.backend} {f.dtype or '-'} {f.quantity}: {plural(f.cases)}, e.g. {f.example}"
              if f.quantity in NOT_FINISHED else
              f"  {f.suite} {f.family} {f.backend} {f.dtype or '-'} {f.quantity}: worst {f.worst_ratio:.3g}x the "
              f"allowed error, {plural(f.cases)} (e.g. {f.example})" for f in found]
    return "\n".join(lines)
