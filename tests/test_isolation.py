"""Sweeps survive the kernels they measure: a plugin that raises, aborts the process or hangs is
recorded (raised / crashed / quarantined rows, the report, exit 1) and every other backend is still
measured; a kill from outside is an interruption that the next run resumes, quarantining nothing.
Real subprocesses, real signals."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KERNELS = '''import os
import time

import torch
from scanlab.impls.plugins import scan_backend
from scanlab.impls.tolerances import Tolerance

PROMISE = {torch.float32: Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-5)}


def _loop(a, kv, h0):
    h = torch.zeros_like(kv[:, 0]) if h0 is None else h0
    states = []
    for t in range(kv.shape[1]):
        h = a[:, t] * h + kv[:, t]
        states.append(h)
    out = torch.stack(states, 1)
    return out, out[:, -1]


def _raises(a, kv, h0):
    if a.shape[1] >= 33:
        raise RuntimeError("kernel bug at L >= 33")
    return _loop(a, kv, h0)


def _aborts(a, kv, h0):
    if a.shape[1] >= 33:
        os.abort()
    return _loop(a, kv, h0)


def _hangs(a, kv, h0):
    if a.shape[1] >= 33:
        marker = os.environ.get("HANG_MARKER")
        if marker:
            open(marker, "w").close()
        time.sleep(600)
    return _loop(a, kv, h0)


raises = scan_backend("raises", _raises, dtypes=(torch.float32,), tolerances=PROMISE)
aborts = scan_backend("aborts", _aborts, dtypes=(torch.float32,), tolerances=PROMISE)
hangs = scan_backend("hangs", _hangs, dtypes=(torch.float32,), tolerances=PROMISE)
'''


@pytest.fixture()
def kernels(tmp_path):
    path = tmp_path / "unfinished_kernels.py"
    path.write_text(KERNELS)
    return path


def _sweep(argv, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *map(str, argv)], capture_output=True,
                          text=True, cwd=ROOT, timeout=600, **kwargs)


def _rows(reports, suite):
    return [json.loads(line) for path in Path(reports).glob(f"*/runs/{suite}-*.jsonl")
            for line in path.read_text().splitlines()]


def _dense(rows):
    return [r for r in rows if r.get("layout", "dense") == "dense"]


def _by_case(rows, metric):
    return {(r["backend"], r["L"]): r["note"] for r in rows if r["metric"] == metric}


def test_an_accuracy_sweep_records_a_raise_an_abort_and_a_hang_and_measures_every_other_case(kernels, tmp_path):
    reports = tmp_path / "reports"
    argv = ["accuracy", "--preset", "ci", "--backend-module", kernels, "--backends", "raises,aborts,hangs,sequential",
            "--lengths", "7,33,64", "--dtypes", "float32", "--batch", "1", "--channels", "2", "--case-timeout", "8",
            "--no-progress", "--reports", reports]
    done = _sweep(argv)
    assert done.returncode == 1, done.stderr
    every = _rows(reports, "accuracy")
    # the reverse and packed cases come after a backend's dense ones: a crashed backend's are quarantined
    later_layouts = {(r["backend"], r.get("layout"), r["metric"]) for r in every if r.get("layout", "dense") != "dense"
                     and r["backend"] in ("aborts", "hangs")}
    assert {metric for _, _, metric in later_layouts} == {"quarantined"} and len(later_layouts) == 6
    # at the longest length asked for, where `raises` raises
    assert {(r["L"], r["metric"]) for r in every if r["backend"] == "raises" and r.get("layout") == "varlen"} == {
        (64, "raised")}
    rows = _dense(every)
    raised, crashed, quarantined = (_by_case(rows, m) for m in ("raised", "crashed", "quarantined"))
    assert set(raised) == {("raises", 33), ("raises", 64)}
    assert "RuntimeError: kernel bug at L >= 33" in raised[("raises", 33)]
    assert set(crashed) == {("aborts", 33), ("hangs", 33)}
    assert crashed[("aborts", 33)].startswith("killed by SIGABRT") and "unfinished_kernels.py" in crashed[("aborts", 33)]
    assert crashed[("hangs", 33)].startswith("hung: no answer in 8 s")
    # every later case of a backend that crashed its worker (units run L within each gate regime)
    later = {(r["backend"], r["regime"], r["L"]) for r in rows if r["metric"] == "quarantined"}
    assert later == {(b, g, n) for b in ("aborts", "hangs") for g, n in
                     [("sigmoid/mixed", 64), ("zeros/mixed", 7), ("zeros/mixed", 33), ("zeros/mixed", 64)]}
    assert "aborts crashed its worker at scan|aborts|float32|sigmoid/mixed|33" in quarantined[("aborts", 64)]
    passed = {(r["backend"], r["L"]) for r in rows if r["metric"] == "passed" and r["value"] == 1.0}
    assert {("sequential", n) for n in (7, 33, 64)} | {(b, 7) for b in ("raises", "aborts", "hangs")} <= passed
    [meta] = reports.glob("*/runs/accuracy-*.meta.json")
    assert json.loads(meta.read_text())["status"] == "complete"
    assert "accuracy scan aborts float32 crashed" in done.stdout and "accuracy scan raises float32 raised" in done.stdout
    assert _sweep(["report", "--reports", reports]).returncode == 0
    page = next(reports.glob("*/accuracy.md")).read_text()
    assert "## Raised, crashed or not run" in page and "killed by SIGABRT" in page
    # --retry-crashed runs exactly those cases again (they crash again), with no duplicate rows
    before = rows
    again = _sweep(argv + ["--retry-crashed"])
    assert again.returncode == 1
    rows = _dense(_rows(reports, "accuracy"))
    count = lambda rows, metric: sum(r["metric"] == metric for r in rows)  # noqa: E731
    assert [count(rows, m) for m in ("crashed", "raised", "quarantined")] == [2, 4, 8]
    assert count(rows, "passed") == count(before, "passed") and len(rows) == len(before)
    kept = lambda rows: sorted(json.dumps(r, sort_keys=True) for r in rows if r["metric"] == "passed")  # noqa: E731
    assert kept(rows) == kept(before)  # the cases that finished were not measured again


def test_a_perf_sweep_records_a_crash_and_times_the_rest(kernels, tmp_path):
    done = _sweep(["perf", "--family", "scan", "--backend-module", kernels, "--backends", "aborts,raises,sequential",
                   "--lengths", "16,33", "--batch", "1", "--channels", "2", "--modes", "forward", "--rounds", "2",
                   "--no-memory", "--no-progress", "--reports", tmp_path])
    assert done.returncode == 1, done.stderr
    rows = _rows(tmp_path, "perf-scan")
    times = {(r["backend"], r["L"]): r for r in rows if r["metric"] == "time_s"}
    assert times[("aborts", 33)]["value"] is None and times[("aborts", 33)]["note"].startswith("crashed: killed by SIGABRT")
    assert times[("raises", 33)]["value"] is None and "raised" in times[("raises", 33)]["note"]
    assert all(times[(b, n)]["value"] > 0 for b, n in [("sequential", 16), ("sequential", 33), ("aborts", 16)])
    assert times[("floor", 33)]["value"] > 0  # the group was measured again without the crashing case


def test_a_kill_from_outside_is_an_interruption_not_a_crash(kernels, tmp_path):
    marker = tmp_path / "hanging"
    argv = ["accuracy", "--preset", "ci", "--backend-module", kernels, "--backends", "sequential,hangs", "--lengths",
            "7,33", "--dtypes", "float32", "--batch", "1", "--channels", "2", "--case-timeout", "300", "--no-progress",
            "--reports", tmp_path / "reports"]
    job = subprocess.Popen([sys.executable, str(ROOT / "run_bench.py"), *map(str, argv)], cwd=ROOT,
                           env={**os.environ, "HANG_MARKER": str(marker)}, start_new_session=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not marker.exists() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), job.communicate()[1][-2000:]
    os.killpg(job.pid, signal.SIGTERM)  # what SLURM does at a job's time limit
    job.communicate(timeout=60)
    rows = _rows(tmp_path / "reports", "accuracy")
    assert rows and not [r for r in rows if r["metric"] in ("crashed", "quarantined", "raised")]
    [meta] = (tmp_path / "reports").glob("*/runs/accuracy-*.meta.json")
    assert json.loads(meta.read_text())["status"] == "running"  # the next run resumes it


def test_a_group_lost_outside_any_case_quarantines_no_backend_on_resume():
    from scanlab.harness.run.crashes import GROUP_LOST, quarantined_from

    rows = [dict(backend="assoc", unit_id="g", metric="crashed", note=f"{GROUP_LOST}: killed by SIGSEGV"),
            dict(backend="native", unit_id="h", metric="crashed", note="killed by SIGABRT: ...")]
    assert list(quarantined_from(rows)) == ["native"]
