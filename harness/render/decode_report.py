"""The decode family's section of a perf report (harness/run/decode.py): time per step against B * D per
path and backend, with the floor, each path's per-call overhead from a fit over the sizes, and
generation end to end in tokens per second."""
import numpy as np
import pandas as pd

FLOORS = ("floor", "floor_prealloc")  # decode.decode_floor's, listed first


def per_call_overhead(sizes, times):
    """(overhead, seconds per element) of time = overhead + slope * B*D over the sizes measured, least
    squares on relative residuals (weights 1/time): unweighted, the largest sizes (1000x the time of the
    smallest) would set the intercept alone. The overhead is the part of a step that does not grow
    with B * D; a negative fit (noise at sizes dominated by it) is reported as is. None with fewer than
    two sizes."""
    sizes, times = np.asarray(sizes, dtype=float), np.asarray(times, dtype=float)
    keep = np.isfinite(times) & (times > 0)
    if len(np.unique(sizes[keep])) < 2:
        return None
    slope, overhead = np.polyfit(sizes[keep], times[keep], 1, w=1 / times[keep])
    return overhead, slope


def _us(value):
    return "-" if pd.isna(value) else f"{value * 1e6:.3g}"


def decode_markdown(table, plot=None):
    """'' when the table holds no decode family; else a step table per dtype and the generation table.
    `plot(group, name, title)` draws time per step against B * D (column `size`) and returns the markdown
    image link."""
    rows = table[table["family"] == "decode"]
    if rows.empty:
        return ""
    out = ["\n## Decode: one generation step\n",
           "Time per step (us) at each B x D, each against the floor measured in the same rounds (`floor`: "
           "torch.addcmul(kv, a, h0), the fused state update moving a step's bytes; `x floor` for the paths "
           "whose state is (B, D), `scan` and `gate_loop_operator`). `overhead` (those paths) is the part of a "
           "step that does not grow with B * D, from a fit of time = overhead + slope * B * D over the sizes "
           "(least squares on relative error); `tokens/s` at the largest B x D. `gate_loop_operator` is timed "
           "through its public call, as a model calls it each step (its scan's checks included); `scan` is "
           "the checked kernel call, checks excluded (README: what a timed call includes)."
           " Paths: `scan` (L = 1 from h0), `gate_loop_operator` (with its cache), `gate_loop`, `gss`, `lm` "
           "(SimpleGateLoopLayer, GSS, GatedStateSpacesLM with a cache, recurrent mode) over each backend.\n"]
    steps = rows[~rows["backend"].str.startswith("generate:")]
    for dtype, group in steps.groupby("dtype", sort=False):
        group = group.assign(size=group["B"] * group["D"])
        sizes = sorted(group[["B", "D"]].drop_duplicates().itertuples(index=False))
        shown = []
        for backend, cases in group.groupby("backend", sort=False):
            by_size = cases.set_index(["B", "D"])
            state_only = backend.split(":")[0] in ("scan", "gate_loop_operator")  # a layer's cost grows as D^2
            fit = per_call_overhead(cases["size"], cases["time_s"]) if state_only else None
            row = {"path:backend": backend}
            for B, D in sizes:
                time = by_size["time_s"].get((B, D))
                multiple = by_size["floor_multiple"].get((B, D)) if "floor_multiple" in by_size else None
                row[f"B={B} D={D}"] = _us(time) + (f" ({multiple:.3g}x)" if multiple is not None and pd.notna(multiple) else "")
            row["overhead (us)"] = _us(fit[0]) if fit else "-"
            largest = cases.loc[cases["size"].idxmax()]
            row["tokens/s"] = f"{largest['B'] / largest['time_s']:.3g}" if pd.notna(largest["time_s"]) else "-"
            shown.append(row)
        ordered = sorted(shown, key=lambda r: (r["path:backend"] not in FLOORS, r["path:backend"]))
        out += [f"\n### {dtype}\n", pd.DataFrame(ordered).to_markdown(index=False)]
        if plot is not None:
            out.append("\n" + plot(group, f"perf-decode-{dtype}.png", f"decode step · {dtype}"))
    generation = rows[rows["backend"].str.startswith("generate:")]
    if not generation.empty:
        out += ["\n### Generation end to end\n",
                "GatedStateSpacesLM (dim 64, depth 2) generating 256 tokens after an L-token prompt: step by step "
                "from its cache (recurrent mode), or re-running the conv mode over the growing prefix for each "
                "token (the seed's only way). Checked first: the cached steps' logits against the conv mode's "
                "over the same tokens.\n",
                pd.DataFrame({"mode": generation["backend"].str.removeprefix("generate:"), "prompt L": generation["L"],
                              "time (s)": [f"{t:.3g}" if pd.notna(t) else "-" for t in generation["time_s"]],
                              "tokens/s": [f"{v:.3g}" if pd.notna(v) else "-" for v in
                                           generation.get("tokens_per_s", pd.Series(index=generation.index, dtype=float))],
                              }).to_markdown(index=False)]
    return "\n".join(out) + "\n"

