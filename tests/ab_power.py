"""How often `ab` cries wolf, and how often it catches a real slowdown, measured on this machine.

    python tests/ab_power.py [--runs 10] [--slowdowns 1.1,1.2,1.5] [ab flags: --backends ... --lengths ...]

A scratch repository holds this checkout's committed impls/ as `base`, and one commit per slowdown s
whose `native` forward also multiplies a by kv over the first FRACTION_PER_SLOWDOWN (s - 1) of every
row's time steps, into a kept buffer: a real code change (more memory traffic), whose true size on
this machine is the measured ratio the table prints beside its nominal s. Each trial runs `ab base base`
(false alarms: any case called regression, improvement or broken) and `ab base <slowdown>` for each
(detected: every native forward case called a regression; false alarms: any other case called
changed), in one interleaved order. The same HEAD records are also compared with the stored baseline
(baseline/*/, `compare --on floor`), as CI did before `ab`. A benchmark, not a test: it prints the
table the README's CI section quotes. Flags it does not know (--processes, --rounds, ...) go to `ab`."""
import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import pandas as pd

from scanlab.harness.results.compare import compare
from scanlab.harness.results.records import load_rows
from scanlab.run_bench import AB_FACTOR

INJECTION_POINT = "                       h_last.numpy(), block, BACKWARD_STEPS, _line(a), _sink(a, block).numpy())\n"
CHANGED = ("regression", "improvement", "broken")
FORWARD = "def _forward(a, kv, h0, offsets, reverse):\n"
# The injected change: a*kv over the first f of every row's time steps, in numpy (one thread, no thread
# pool to hand over to, so no fixed cost), into a buffer kept from call to call: more memory traffic in
# proportion to f, and no allocation. An earlier injection (torch copies, then the numba kernel run again
# over them) cost a fixed ~1.4x whatever f, measured in `ab`: torch's and numba's thread pools handing
# the two cores over within one call. FRACTION_PER_SLOWDOWN was calibrated with `ab` itself (README: CI).
SCRATCH = "import numpy as _np\n\n_SCRATCH = {}\n\n\n"
EXTRA_PASS = """    steps = min(a.shape[1], max(1, round({fraction:.4f} * a.shape[1])))
    if (a.shape, a.dtype) not in _SCRATCH:
        _SCRATCH[a.shape, a.dtype] = _np.empty((a.shape[0], steps, a.shape[2]), a.numpy().dtype)
    _np.multiply(a.numpy()[:, :steps], kv.numpy()[:, :steps], out=_SCRATCH[a.shape, a.dtype])
"""
FRACTION_PER_SLOWDOWN = 1.0


def _git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=p", "-c", "user.email=p@p", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def scratch_repo(folder, slowdowns):
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD", "impls"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    _git(folder, "init", "-q")
    _git(folder, "add", "impls")
    _git(folder, "commit", "-q", "-m", "base")
    _git(folder, "tag", "base")
    native = folder / "impls" / "scan" / "native.py"
    original = native.read_text()
    assert INJECTION_POINT in original and FORWARD in original, "native.py changed: update INJECTION_POINT"
    for slowdown in slowdowns:
        changed = original.replace(INJECTION_POINT, INJECTION_POINT + EXTRA_PASS.format(fraction=FRACTION_PER_SLOWDOWN * (slowdown - 1)))
        native.write_text(changed.replace(FORWARD, SCRATCH + FORWARD))
        _git(folder, "commit", "-q", "-am", f"slower {slowdown}")
        _git(folder, "tag", f"slow-{slowdown}")
        _git(folder, "checkout", "-q", "base")


def one_run(repo, target, reports, ab_flags):
    done = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), "ab", "base", target, "--repo", str(repo),
                           "--reports", str(reports), "--no-progress", "--allow-failures", *ab_flags],
                          capture_output=True, text=True, cwd=ROOT)
    if done.returncode == 2:
        raise SystemExit(done.stderr)
    runs = {side: sorted(reports.glob(f"*/runs/ab-{side}-*.jsonl"))[-1] for side in ("base", "head")}
    meta = json.loads(runs["head"].with_name(runs["head"].name[:-len(".jsonl")] + ".meta.json").read_text())
    return load_rows(runs["base"]), load_rows(runs["head"]), meta["config"].get("processes", 1)


def tally(table, slowed):
    """(detected, false calls, median native forward ratio, what was called) for one comparison table;
    `slowed`: whether native forward was slowed."""
    native_forward = (table.backend == "native") & (table["mode"] == "forward")
    detected = bool(slowed and native_forward.any() and (table[native_forward].verdict == "regression").all())
    others = table[~native_forward] if slowed else table
    called = others[others.verdict.isin(CHANGED)]
    shown = "; ".join(f"{row.backend} {row.mode} L={row.L} {row.ratio:.3f} p={row.p_value:.2g} {row.verdict}"
                      for row in pd.concat([table[native_forward], called]).itertuples())
    return detected, int(others.verdict.isin(CHANGED).sum()), table[native_forward].ratio.median(), shown


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--slowdowns", default="1.1,1.2,1.5")
    parser.add_argument("--baseline", default=str(next((ROOT / "baseline").glob("cpu-*"), ROOT / "baseline")))
    parser.add_argument("--factor", type=float, default=AB_FACTOR)
    args, ab_flags = parser.parse_known_args()
    factor = args.factor
    ab_flags += ["--factor", str(factor)]
    slowdowns = [float(s) for s in args.slowdowns.split(",")]
    stored = load_rows(args.baseline)
    results = {name: [] for name in ["same code"] + [f"{s}x" for s in slowdowns]}
    with tempfile.TemporaryDirectory(prefix="ab-power-") as scratch:
        repo = Path(scratch) / "repo"
        repo.mkdir()
        scratch_repo(repo, slowdowns)
        for trial in range(args.runs):
            for name, target, slowed in [("same code", "base", False)] + [(f"{s}x", f"slow-{s}", True) for s in slowdowns]:
                base_rows, head_rows, blocks = one_run(repo, target, Path(scratch) / f"{trial}-{name}", ab_flags)
                paired = compare(base_rows, head_rows, factor, on="time", paired=True, blocks=blocks)
                # the stored baseline's cases that this run measures (it holds the whole ci sweep)
                ran = head_rows[["backend", "L", "mode"]].drop_duplicates()
                baseline = stored.merge(ran, on=["backend", "L", "mode"])
                stored_comparison = compare(baseline, head_rows.assign(machine_id="this-run"), 6, on="floor")
                results[name].append((tally(paired.table, slowed), tally(stored_comparison.table, slowed)))
                (ab, ab_false, _, shown), (st, st_false, _, _) = results[name][-1]
                print(f"trial {trial + 1} {name}: ab detected={ab} false={ab_false} ({shown}); "
                      f"stored-baseline compare detected={st} false={st_false}", flush=True)
    print("\n| change | runs | `ab`: detected | `ab`: runs with a false call | `compare` vs stored baseline: detected "
          "| `compare`: runs with a false call | median measured ratio (native forward) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, trials in results.items():
        count = len(trials)
        ab_hits = sum(t[0][0] for t in trials)
        stored_hits = sum(t[1][0] for t in trials)
        ratios = sorted(t[0][2] for t in trials)
        print(f"| {name} | {count} | {'-' if name == 'same code' else f'{ab_hits}/{count}'} | "
              f"{sum(t[0][1] > 0 for t in trials)}/{count} | {'-' if name == 'same code' else f'{stored_hits}/{count}'} | "
              f"{sum(t[1][1] > 0 for t in trials)}/{count} | {ratios[len(ratios) // 2]:.3f} |")


if __name__ == "__main__":
    main()
