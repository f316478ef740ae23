"""How often `ab` cries wolf, and how often it catches a real slowdown, measured on this machine.

    python tests/ab_power.py [--runs 10] [--slowdowns 1.1,1.2,1.5] [ab flags: --backends ... --lengths ...]

A scratch repository holds this checkout's committed impls/ as `base`, and one commit per slowdown s
whose `native` forward copies the first (s - 1) / 2 of the time steps and runs its kernel over them
again, into a scratch buffer: a real code change (extra passes and copies), whose true size on this machine
is the measured median ratio the table prints beside its nominal s. Each trial runs `ab base base` (false alarms: any case called regression, improvement or
broken) and `ab base <slowdown>` for each (detected: every native forward case called a
regression; false alarms: any other case called changed), in one interleaved order. The same HEAD
records are also compared with the stored baseline (baseline/*/, `compare --on floor`), as CI did
before `ab`. A benchmark, not a test: it prints the table the README's CI section quotes."""
import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import pandas as pd

from scanlab.harness.compare import compare
from scanlab.harness.records import load_rows
from scanlab.run_bench import AB_FACTOR

INJECTION_POINT = "    _kernels().forward(a.numpy(), kv.numpy(), start.numpy(), h0 is not None, h.numpy(), _launch_settings(a))\n"
CHANGED = ("regression", "improvement", "broken")
# the injected change: the kernel run again over the first `fraction` of every row's time steps, into a
# scratch buffer (h is unchanged, so every check still passes)
EXTRA_PASS = """    steps = max(1, round({fraction} * a.shape[1]))
    part_a, part_kv = a[:, :steps].contiguous(), kv[:, :steps].contiguous()
    scratch = torch.empty_like(part_a)
    _kernels().forward(part_a.numpy(), part_kv.numpy(), _no_state(a.dtype).numpy(), False, scratch.numpy(),
                       _launch_settings(scratch))
"""
# measured in-process at B=4, L=4096, D=256 (float32, 2 threads), the extra pass over a fraction f of L
# costs about 2f of the scan (f = 0.1: 1.19x, 0.2: 1.35x, 0.35: 1.70x; noisy): f = (s - 1) / 2 aims at s.
# At L = 1024 its launch alone costs more than that: run the benchmark at one L of 4096 or more


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
    assert INJECTION_POINT in original, "native.py changed: update INJECTION_POINT"
    for slowdown in slowdowns:
        native.write_text(original.replace(INJECTION_POINT, INJECTION_POINT + EXTRA_PASS.format(fraction=(slowdown - 1) / 2)))
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
    return load_rows(runs["base"]), load_rows(runs["head"])


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
    args, ab_flags = parser.parse_known_args()
    slowdowns = [float(s) for s in args.slowdowns.split(",")]
    stored = load_rows(args.baseline)
    results = {name: [] for name in ["same code"] + [f"{s}x" for s in slowdowns]}
    with tempfile.TemporaryDirectory(prefix="ab-power-") as scratch:
        repo = Path(scratch) / "repo"
        repo.mkdir()
        scratch_repo(repo, slowdowns)
        for trial in range(args.runs):
            for name, target, slowed in [("same code", "base", False)] + [(f"{s}x", f"slow-{s}", True) for s in slowdowns]:
                base_rows, head_rows = one_run(repo, target, Path(scratch) / f"{trial}-{name}", ab_flags)
                paired = compare(base_rows, head_rows, AB_FACTOR, on="time", paired=True)
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
