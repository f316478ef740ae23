"""Comparing two result sets, asv/pytest-benchmark style: a case regressed only when its time grew
by more than `factor` AND the two measured intervals [p20, p80] do not overlap."""
from dataclasses import dataclass

KEY = ["family", "backend", "mode", "device", "dtype", "B", "L", "D", "N"]


@dataclass(frozen=True)
class Verdict:
    verdict: str  # regression | improvement | same | noise
    ratio: float


def judge(base_median, base_lo, base_hi, new_median, new_lo, new_hi, factor):
    ratio = new_median / base_median
    if ratio > factor:
        return Verdict("regression" if new_lo > base_hi else "noise", ratio)
    if ratio < 1 / factor:
        return Verdict("improvement" if new_hi < base_lo else "noise", ratio)
    return Verdict("same", ratio)


def _times(rows):
    times = rows[(rows["metric"] == "time_s") & rows["value"].notna()]
    return times[KEY + ["value", "lo", "hi"]].astype({"value": float, "lo": float, "hi": float})


def compare(base_rows, new_rows, factor=1.1):
    """One row per case present in both, with ratio new/base and the verdict."""
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    merged = _times(base_rows).merge(_times(new_rows), on=KEY, suffixes=("_base", "_new"))
    verdicts = [judge(r.value_base, r.lo_base, r.hi_base, r.value_new, r.lo_new, r.hi_new, factor)
                for r in merged.itertuples()]
    merged["ratio"] = [v.ratio for v in verdicts]
    merged["verdict"] = [v.verdict for v in verdicts]
    return merged


def summary_markdown(table, factor):
    counts = table["verdict"].value_counts().to_dict() if len(table) else {}
    lines = [f"## compare: {len(table)} cases, factor {factor}",
             "", ", ".join(f"{counts.get(k, 0)} {k}" for k in ("regression", "improvement", "noise", "same")), ""]
    if len(table):
        shown = table.assign(base=[f"{v:.3g} [{lo:.3g}, {hi:.3g}]" for v, lo, hi in
                                   zip(table.value_base, table.lo_base, table.hi_base)],
                             new=[f"{v:.3g} [{lo:.3g}, {hi:.3g}]" for v, lo, hi in
                                  zip(table.value_new, table.lo_new, table.hi_new)],
                             ratio=table.ratio.map(lambda r: f"{r:.3f}"))
        columns = KEY + ["base", "new", "ratio", "verdict"]
        lines.append(shown[columns].sort_values(["verdict", "family", "backend", "L"]).to_markdown(index=False))
    return "\n".join(lines) + "\n"
