"""Comparing two result sets: a case regressed when it broke (passed its accuracy check in BASE,
fails, is refused or is missing in NEW), or when it got slower by more than `factor` AND a one-sided
Mann-Whitney U test on the per-round samples says the slowdown is not noise (asv and
google-benchmark's compare.py use the same test). With fewer than MIN_SAMPLES rounds a side the
test cannot reach ALPHA, and the samples must separate completely instead (every NEW round slower
than every BASE round); records without samples fall back to [p20, p80] not overlapping.

Across machines absolute times do not compare: the per-round ratio to the floor measured in the
same rounds (`floor_multiple`) does, and is what is compared there."""
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import mannwhitneyu

from ..ab import paired
from ..ab.paired import paired_verdict
from .case_key import DENSE, RECORD_KEY

KEY = list(RECORD_KEY)
REFERENCES = ("floor", "floor_prealloc", "copy")  # the harness's reference passes (perf.floor_names)
# asv's level. A CI compare judges ~50 cases: at 0.01, 20% noise alone called one "regression" in
# 110 (measured on synthetic samples), a false alarm in 4 of 10 CI runs. The exact one-sided p at
# complete separation is 1/C(2n, n): 0.004 at n = 5 rounds a side (never below ALPHA), 0.001 at 6.
ALPHA = 0.002
MIN_SAMPLES = 6


class CompareError(ValueError):
    """Inputs that cannot be compared (no case in common, a bad factor)."""


@dataclass(frozen=True)
class Verdict:
    verdict: str  # regression | improvement | same | noise
    ratio: float
    p_value: float  # one-sided, in the direction of the change; nan where the intervals decided


def _samples(value):
    return [float(v) for v in value] if isinstance(value, (list, tuple, np.ndarray)) else []


def judge(base, new, factor):
    """base, new: (median, lo, hi, samples); the verdict on new against base."""
    (base_median, base_lo, base_hi, base_samples), (new_median, new_lo, new_hi, new_samples) = base, new
    ratio = new_median / base_median
    slower = ratio > factor
    if not slower and ratio >= 1 / factor:
        return Verdict("same", ratio, math.nan)
    p = math.nan
    if min(len(base_samples), len(new_samples)) >= MIN_SAMPLES:
        p = float(mannwhitneyu(new_samples, base_samples, alternative="greater" if slower else "less").pvalue)
        clear = p < ALPHA
    elif base_samples and new_samples:  # too few for the test to reach ALPHA: complete separation
        clear = min(new_samples) > max(base_samples) if slower else max(new_samples) < min(base_samples)
    else:  # records without samples (imported benchmarks): the intervals must not overlap
        clear = new_lo > base_hi if slower else new_hi < base_lo
    return Verdict(("regression" if slower else "improvement") if clear else "noise", ratio, p)


@dataclass(frozen=True)
class Comparison:
    table: pd.DataFrame  # one row per BASE case: KEY, base/new figures, ratio, p_value, verdict (a case
    # missing from NEW is broken, its `note_new` says why)
    accepted: pd.DataFrame  # KEY of BASE cases missing from NEW that --allow-missing accepted
    only_new: pd.DataFrame  # KEY of cases measured in NEW alone
    metric: str  # time_s, or floor_multiple across machines
    factor: float
    allowed: tuple = ()  # the --allow-missing names
    blocks: int = 0  # paired (ab): the worker pairs each case was judged over (1: judged over rounds)

    @property
    def regressions(self):
        """Cases that fail the change: regressions and broken cases (exit 1). The floors are the
        harness's own reference passes, not a backend: their ratios show the run's noise, never fail it."""
        judged = ~self.table["backend"].isin(REFERENCES)
        return int((self.table["verdict"].isin(["regression", "broken"]) & judged).sum())

    @property
    def compared(self):
        """Backend cases timed on both sides."""
        judged = ~self.table["backend"].isin(REFERENCES)
        return int((self.table["verdict"].isin(["regression", "improvement", "noise", "same"]) & judged).sum())


def _cases(rows, metric):
    """KEY, `time` (empty when the case failed or was refused), its `note`, and the compared figure
    with its interval and samples: one row per case. Floors have no floor_multiple and drop out
    across machines."""
    if "metric" not in rows:  # no rows at all (a side that could not be measured)
        return pd.DataFrame(columns=KEY + ["time", "note", "value", "lo", "hi", "samples"])
    for column, default in (("suite", "perf"), ("lo", ""), ("hi", ""), ("note", ""), ("samples", ""), ("layout", DENSE)):
        if column not in rows:
            rows = rows.assign(**{column: default})
    rows = rows.assign(layout=rows["layout"].replace("", DENSE).fillna(DENSE))  # rows from before layouts
    times = rows[rows["metric"] == "time_s"][KEY + ["value", "note"]].rename(columns={"value": "time"})
    figures = rows[rows["metric"] == metric][KEY + ["value", "lo", "hi", "samples"]]
    cases = times.merge(figures, on=KEY, how="left")
    failed = cases["time"].map(_number).isna()
    return cases[failed | cases["value"].map(_number).notna()]


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _machines(rows):
    return set(rows["machine_id"].dropna().astype(str)) - {""} if "machine_id" in rows else set()


ON = {"time": "time_s", "floor": "floor_multiple"}


def missing_reasons(new_rows, missing):
    """Why each BASE case missing from NEW is not there: NEW's `skipped` row for its backend (on its
    device, in its dtype or in every dtype), else that NEW has no record of it at all."""
    skipped = new_rows[new_rows["metric"] == "skipped"] if "metric" in new_rows else new_rows.iloc[:0]
    reasons = []
    for case in missing.itertuples(index=False):
        said = skipped[(skipped["backend"] == case.backend) & skipped["dtype"].isin(["", case.dtype])]
        reasons.append(f"missing in NEW: {said['note'].iloc[0]}" if len(said) else "missing in NEW: no record of this case")
    return reasons


def compare(base_rows, new_rows, factor=1.1, on="auto", allow_missing=(), paired=False, blocks=1):
    """The comparison of NEW against BASE on `on`: "time", "floor" (x floor), or "auto": time on one
    machine, x floor across two. Fails closed: a BASE case with no record in NEW is broken (a backend
    that vanished, was skipped, crashed or was renamed), unless its backend is in `allow_missing`.
    `paired`: both sides were timed in the same rounds (`ab`), and each case is judged on its
    per-round ratios (ab/paired.py) instead of as two independent samples; round r on worker pair
    r mod `blocks`."""
    if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 1):
        raise CompareError(f"factor must be a finite number > 1, got {factor}")
    if on not in ("auto", *ON):
        raise CompareError(f"on must be auto, time or floor, got {on!r}")
    if on == "auto":
        on = "floor" if _machines(base_rows) != _machines(new_rows) else "time"
    metric = ON[on]
    base, new = _cases(base_rows, metric), _cases(new_rows, metric)
    if base.empty:
        raise CompareError("BASE holds no timed or checked case to compare against")
    merged = base.merge(new, on=KEY, suffixes=("_base", "_new"))
    rows = []
    for r in merged.itertuples(index=False):
        record = r._asdict()
        timed_base, timed_new = not math.isnan(_number(r.time_base)), not math.isnan(_number(r.time_new))
        if timed_base and not timed_new:
            verdict = Verdict("broken", math.nan, math.nan)
        elif not timed_new:
            verdict = Verdict("failing", math.nan, math.nan)
        elif not timed_base:
            verdict = Verdict("fixed", math.nan, math.nan)
        elif paired:
            pair = paired_verdict(_samples(r.samples_base), _samples(r.samples_new), factor, blocks=blocks)
            rows.append({**record, "ratio": pair.ratio, "ratio_lo": pair.lo, "ratio_hi": pair.hi,
                         "p_value": pair.p_value, "verdict": pair.verdict})
            continue
        else:
            verdict = judge(*[(_number(record[f"value_{s}"]), _number(record[f"lo_{s}"]), _number(record[f"hi_{s}"]),
                               _samples(record[f"samples_{s}"])) for s in ("base", "new")], factor)
        rows.append({**record, "ratio": verdict.ratio, "p_value": verdict.p_value, "verdict": verdict.verdict})
    only = lambda a, b: a.merge(b[KEY], on=KEY, how="left", indicator=True).query("_merge == 'left_only'")
    gone = only(base, new)
    accepted = gone["backend"].isin(list(allow_missing))
    missing = gone[~accepted]
    for record, why in zip(missing.to_dict("records"), missing_reasons(new_rows, missing)):
        base_side = {f"{column}_base": record[column] for column in ("time", "note", "value", "lo", "hi", "samples")}
        rows.append({**{k: record[k] for k in KEY}, **base_side, "time_new": None, "note_new": why, "value_new": None,
                     "lo_new": "", "hi_new": "", "samples_new": "", "ratio": math.nan, "p_value": math.nan,
                     "verdict": "broken"})
    columns = KEY + [f"{c}_{side}" for side in ("base", "new") for c in ("time", "note", "value", "lo", "hi", "samples")]
    table = pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns + ["ratio", "p_value", "verdict"])
    return Comparison(table, gone[accepted][KEY], only(new, base)[KEY], metric, factor, tuple(allow_missing),
                      blocks if paired else 0)


def _paired_note(blocks):
    if blocks > 1:
        return (f", paired rounds judged over {blocks} worker pairs (ratio: geometric mean over the pairs, 95% t "
                f"interval; regression: t-test p < {paired.BLOCK_ALPHA})")
    return f", paired rounds (ratio: median, 95% interval; regression: signed-rank p < {paired.ALPHA})" if blocks else ""


VERDICTS = ("broken", "regression", "improvement", "noise", "same", "fixed", "failing")


def _figure(value, lo, hi):
    value, lo, hi = _number(value), _number(lo), _number(hi)
    if math.isnan(value):
        return "-"
    return f"{value:.3g} [{lo:.3g}, {hi:.3g}]" if not math.isnan(lo) else f"{value:.3g}"


def summary_markdown(comparison):
    table, shown_metric = comparison.table, {"time_s": "time (s)", "floor_multiple": "x floor"}[comparison.metric]
    counts = table["verdict"].value_counts().to_dict()
    lines = [f"## compare: {len(table)} BASE cases, factor {comparison.factor}, on {shown_metric}"
             + _paired_note(comparison.blocks), "",
             ", ".join(f"{counts.get(k, 0)} {k}" for k in VERDICTS), ""]
    if table["backend"].isin(REFERENCES).any():
        lines += [f"The floors ({', '.join(sorted(set(table.backend) & set(REFERENCES)))}) are the harness's reference "
                  "passes, the same code on both sides: their ratios show the run's noise and never fail it.", ""]
    if comparison.metric == "floor_multiple":
        lines += ["Compared on `x floor`, each case's per-round ratio to the bandwidth floor measured in the same "
                  "run, not on absolute time, which does not carry across machines or a noisy machine's hours.", ""]
    ratios = [_ratio(r, lo, hi) for r, lo, hi in zip(table.ratio, *(table[c] if c in table else table.ratio * math.nan
                                                                   for c in ("ratio_lo", "ratio_hi")))]
    shown = table.assign(base=[_figure(*f) for f in zip(table.value_base, table.lo_base, table.hi_base)],
                         new=[_figure(*f) for f in zip(table.value_new, table.lo_new, table.hi_new)],
                         ratio=ratios,
                         p=table.p_value.map(lambda p: "-" if math.isnan(p) else f"{p:.2g}"),
                         why=table.note_new.fillna("").astype(str).str.replace("|", "/").str.replace("\n", " ")
                         .where(table.verdict.isin(["broken", "failing"]), ""))
    order = {v: i for i, v in enumerate(VERDICTS)}
    shown = shown.sort_values(["verdict", "family", "backend", "L"], key=lambda c: c.map(order) if c.name == "verdict" else c)
    lines.append(shown[KEY[1:] + ["base", "new", "ratio", "p", "verdict", "why"]].to_markdown(index=False))
    if len(comparison.accepted):
        lines += ["", f"### Accepted as removed ({len(comparison.accepted)} BASE cases missing from NEW; "
                      f"--allow-missing {','.join(comparison.allowed)})", "",
                  comparison.accepted[KEY[1:]].to_markdown(index=False)]
    unused = sorted(set(comparison.allowed) - set(comparison.accepted["backend"]))
    if unused:
        lines += ["", f"--allow-missing named {', '.join(unused)}, which NEW does not miss."]
    if len(comparison.only_new):
        lines += ["", f"### Only in NEW ({len(comparison.only_new)} cases, not compared)", "",
                  comparison.only_new[KEY[1:]].to_markdown(index=False)]
    return "\n".join(lines) + "\n"


def _ratio(ratio, lo, hi):
    if math.isnan(_number(ratio)):
        return "-"
    return f"{ratio:.3f}" if math.isnan(_number(lo)) else f"{ratio:.3f} [{lo:.3f}, {hi:.3f}]"
