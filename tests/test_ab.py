"""`run_bench.py ab` end to end, on a scratch git repository whose revisions differ in one backend:
the same code, a backend made unavailable, one removed, one that aborts the process."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanlab import run_bench
from scanlab.harness.ab.revisions import WORKING_TREE, RevisionError, resolve
from scanlab.harness.ab.sides import SideUnmeasurable, Worker
from scanlab.harness.results.case_key import CaseKey

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = "impls/scan/__init__.py"
REGISTRATION = '    "assoc": _module_loader("assoc"),\n'
ASSOC_SCAN = "scan = scan_from_core(assoc_states, float16_in_float32=True)\n"
VARIANTS = {  # name -> (file, text replaced, by)
    "unavailable": (REGISTRY, REGISTRATION, '    "assoc": lambda: ScanBackend(name="assoc", kind="scan", fn=None, '
                                            'unavailable_reason="made unavailable by this revision"),\n'),
    "removed": (REGISTRY, REGISTRATION, ""),
    # the kernel, not its registration: the process dies inside the first call
    "aborts": (REGISTRY, REGISTRATION, '    "assoc": lambda: __import__("dataclasses").replace(_module_loader("assoc")(), '
                                       'fn=lambda *args, **kwargs: __import__("os").abort()),\n'),
    # 3 ms more a call: several times slower at these sizes
    "slower": ("impls/scan/assoc.py", ASSOC_SCAN, "_fast = " + ASSOC_SCAN.split(" = ", 1)[1] + "\n\n"
               "def scan(a, kv, h0=None):\n    __import__('time').sleep(0.003)\n    return _fast(a, kv, h0)\n"),
    # a tree HEAD's harness cannot import at all
    "unimportable": ("impls/__init__.py", '"""', 'raise ImportError("this revision does not import")\n"""'),
}


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """impls/ as committed here, then one commit (and tag) per variant of the assoc registration."""
    repo = tmp_path_factory.mktemp("ab-repo")
    shutil.copytree(ROOT / "impls", repo / "impls", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "empty")
    _git(repo, "add", "impls")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
    _git(repo, "tag", "base")
    for name, (path, old, new) in VARIANTS.items():
        original = (repo / path).read_text()
        assert old in original, (path, old)
        (repo / path).write_text(original.replace(old, new, 1))
        _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", name)
        _git(repo, "tag", name)
        _git(repo, "checkout", "-q", "base")
    return repo


@pytest.fixture(autouse=True)
def scratch_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCANLAB_AB_CACHE", str(tmp_path / "cache"))


def _ab(repo, reports, *revisions, extra=()):
    try:
        return run_bench.main([*_ab_argv(repo, reports, *revisions), *extra])
    except SystemExit as error:
        return error.code


def _ab_argv(repo, reports, *revisions):
    return ["ab", *revisions, "--repo", str(repo), "--preset", "ci", "--family", "scan", "--backends",
            "assoc,sequential", "--lengths", "33", "--batch", "1", "--channels", "4", "--modes", "forward",
            "--rounds", "10", "--no-progress", "--reports", str(reports),
            # these tests are about what fails closed, not about sensitivity: one worker a side, and a wide
            # factor keeps two processes' noise on tiny cases from calling the same code slower (the
            # slowdown below is ~10x)
            "--processes", "1", "--factor", "1.5"]


def _verdicts(capsys):
    """backend -> verdict from the verdict table (the first table of the summary), and all that was printed."""
    out = capsys.readouterr().out
    lines = out.split("## compare")[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| family"))
    header = [cell.strip() for cell in lines[start].split("|")]
    table = [[cell.strip() for cell in line.split("|")] for line in lines[start + 2:] if line.startswith("|")
             and not line.startswith("| family")]
    end = next((i for i, line in enumerate(lines[start:]) if not line.startswith("|")), len(lines))
    table = table[:end - 2]
    return {cells[header.index("backend")]: cells[header.index("verdict")] for cells in table}, out


def test_the_same_code_on_both_sides_is_no_regression_and_both_sides_are_recorded(repo, tmp_path, capsys):
    assert _ab(repo, tmp_path, "base", "base") == 0
    verdicts, out = _verdicts(capsys)
    assert set(verdicts) == {"assoc", "sequential", "floor", "floor_prealloc"}
    assert not {"broken", "regression"} & {verdicts["assoc"], verdicts["sequential"]}  # floors are never judged
    commit = subprocess.run(["git", "rev-parse", "base"], cwd=repo, capture_output=True, text=True).stdout.strip()
    for side in ("base", "head"):
        [rows_path] = tmp_path.glob(f"*/runs/ab-{side}-scan-*.jsonl")
        rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
        times = [r for r in rows if r["metric"] == "time_s" and r["backend"] == "assoc"]
        assert len(times) == 1 and len(times[0]["samples"]) >= 10 and {r["commit"] for r in rows} == {commit[:12]}
        meta = json.loads(rows_path.with_suffix("").with_suffix(".meta.json").read_text())
        assert meta["config"]["side"] == side and meta["config"]["base"] == commit
    assert run_bench.main(["report", "--reports", str(tmp_path)]) == 0
    assert "| assoc" in next(tmp_path.glob("*/ab-head-scan.md")).read_text()


def test_a_backend_made_unavailable_is_broken_with_its_reason(repo, tmp_path, capsys):
    assert _ab(repo, tmp_path, "base", "unavailable") == 1
    verdicts, out = _verdicts(capsys)
    assert verdicts["assoc"] == "broken" and verdicts["sequential"] != "broken"
    assert "missing in NEW: unavailable: made unavailable by this revision" in out


def test_a_removed_backend_is_broken_unless_allowed_missing(repo, tmp_path, capsys):
    assert _ab(repo, tmp_path / "a", "base", "removed") == 1
    verdicts, out = _verdicts(capsys)
    assert verdicts["assoc"] == "broken" and "no scan backend of this name in this tree" in out
    assert _ab(repo, tmp_path / "b", "base", "removed", extra=["--allow-missing", "assoc"]) == 0
    verdicts, out = _verdicts(capsys)
    assert "assoc" not in verdicts and "Accepted as removed (1 BASE cases" in out


def test_a_backend_that_aborts_the_process_is_broken_and_the_others_are_still_measured(repo, tmp_path, capsys):
    assert _ab(repo, tmp_path, "base", "aborts") == 1
    verdicts, out = _verdicts(capsys)
    assert verdicts["assoc"] == "broken" and "SIGABRT" in out
    assert verdicts["sequential"] in ("same", "noise")


def test_the_working_tree_is_head_by_default_and_says_whether_it_has_changes(repo, tmp_path):
    side = resolve("head", WORKING_TREE, repo)
    assert side.impls == repo / "impls" and not side.dirty and "clean" in side.label
    with open(repo / "impls" / "scan" / "sequential.py", "a") as handle:
        handle.write("# an uncommitted change\n")
    try:
        changed = resolve("head", WORKING_TREE, repo)
        assert changed.dirty and "uncommitted changes" in changed.label and changed.tree_digest != side.tree_digest
    finally:
        _git(repo, "checkout", "--", "impls")


def test_a_revision_git_cannot_resolve_is_a_user_error(repo, tmp_path):
    with pytest.raises(RevisionError, match="not a commit"):
        resolve("base", "no-such-revision", repo)
    with pytest.raises(SystemExit) as error:
        run_bench.main(["ab", "no-such-revision", "--repo", str(repo), "--reports", str(tmp_path)])
    assert error.value.code == 2 and "no-such-revision" in str(error.value)
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_worker_imports_its_own_sides_impls_and_nothing_else(repo, tmp_path):
    side = resolve("base", "removed", repo)
    assert side.impls.is_relative_to(tmp_path / "cache")
    worker = Worker(side, side.impls)
    try:
        answer = worker.request("groups", family="scan", config={"lengths": [8], "batch": 1, "channels": 2,
                                                                 "dtypes": ["float32"], "modes": ["forward"],
                                                                 "backends": ["assoc", "sequential"]}, device="cpu")
        assert Path(worker.hello["impls"]) == side.impls.resolve()
        assert [[k["backend"] for k in keys] for _, keys in answer["groups"]] == [["sequential"]]
    finally:
        worker.close()
    wrong = resolve("base", "base", repo)
    mismatched = Worker(wrong.__class__(**{**wrong.__dict__, "impls": tmp_path / "elsewhere"}), wrong.impls)
    with pytest.raises(SideUnmeasurable, match=f"imported impls from .*, not {tmp_path / 'elsewhere'}"):
        mismatched.request("forget")


@pytest.mark.parametrize("processes", ["1", "3"])
def test_a_slower_revision_is_a_regression_and_fails(repo, tmp_path, capsys, processes):
    """Judged over rounds (one worker a side) and over worker pairs (3 a side, each round on one pair)."""
    extra = ["--processes", processes]
    assert _ab(repo, tmp_path, "base", "slower", extra=extra) == 1
    verdicts, out = _verdicts(capsys)
    assert verdicts["assoc"] == "regression" and verdicts["sequential"] != "regression"
    assert ("judged over 3 worker pairs" in out) == (processes == "3")
    if processes == "1":
        assert _ab(repo, tmp_path / "swapped", "slower", "base", extra=extra) == 0  # the same change read backwards
        assert _verdicts(capsys)[0]["assoc"] == "improvement"
    else:
        [rows_path] = tmp_path.glob("*/runs/ab-head-scan-*.jsonl")
        times = [r for r in map(json.loads, rows_path.read_text().splitlines())
                 if r["metric"] == "time_s" and r["backend"] == "assoc"]
        assert len(times[0]["samples"]) == 12  # --rounds 10, rounded up to whole cycles of the 3 worker pairs


FIRST_PROCESS_ONLY = '''import os

import torch
from scanlab.impls.plugins import scan_backend
from scanlab.impls.tolerances import Tolerance

_first = None  # whether this process made the first call of all


def _kernel(a, kv, h0):
    global _first
    if _first is None:
        try:
            os.close(os.open(os.environ["FIRST_CALL_MARKER"], os.O_CREAT | os.O_EXCL))
            _first = True
        except FileExistsError:
            _first = False
    if not _first:
        os.abort()
    h = torch.zeros_like(kv[:, 0]) if h0 is None else h0
    states = []
    for t in range(kv.shape[1]):
        h = a[:, t] * h + kv[:, t]
        states.append(h)
    return torch.stack(states, 1), h


first_process_only = scan_backend("first_process_only", _kernel, dtypes=(torch.float32,),
                                  tolerances={torch.float32: Tolerance(rtol=1e-5, atol=1e-30, grad_rtol=1e-5)})
'''


def test_a_case_that_crashes_only_in_a_sides_later_worker_gets_no_time_there_and_fails(repo, tmp_path):
    """Only a side's first worker checks a case; the others build and warm it, and one that crashes
    there takes the case's time away on that side, saying which worker, while the rest is measured.
    Here BASE's second worker and HEAD's first crash: no side has a time, and HEAD's crash fails `ab`."""
    plugin = tmp_path / "first_process_only.py"
    plugin.write_text(FIRST_PROCESS_ONLY)
    reports = tmp_path / "reports"
    # in a process of its own: the plugin must not stay registered in this one
    done = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *_ab_argv(repo, reports, "base", "base"),
                           "--processes", "2", "--backend-module", str(plugin),
                           "--backends", "first_process_only,sequential"],
                          capture_output=True, text=True, cwd=ROOT, timeout=600,
                          env={**os.environ, "FIRST_CALL_MARKER": str(tmp_path / "first-call")})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ab FAILED: HEAD raised or crashed on first_process_only forward L=33: crashed" in done.stdout
    [base_rows] = reports.glob("*/runs/ab-base-scan-*.jsonl")
    notes = {r["backend"]: (r["value"], r["note"]) for r in map(json.loads, base_rows.read_text().splitlines())
             if r["metric"] == "time_s"}
    assert notes["first_process_only"][1].startswith("in worker 2 of 2: crashed: killed by SIGABRT"), notes
    assert notes["sequential"][0] is not None  # the rest still measured


def test_a_base_that_cannot_be_measured_fails_the_gate_instead_of_passing_it(repo, tmp_path, capsys):
    assert _ab(repo, tmp_path, "unimportable", "base") == 1
    out = capsys.readouterr().out
    assert "ab FAILED: BASE (unimportable" in out and "this revision does not import" in out


def test_two_sides_that_cannot_be_measured_fail_with_their_reason_not_a_traceback(repo, tmp_path, capsys):
    assert _ab(repo, tmp_path, "unimportable", "unimportable") == 1
    captured = capsys.readouterr()
    assert "ab FAILED: BASE holds no timed or checked case" in captured.err
    assert "HEAD (unimportable" in captured.err and "this revision does not import" in captured.err


def test_fewer_rounds_than_the_test_can_decide_on_are_refused(repo, tmp_path):
    with pytest.raises(SystemExit) as error:
        _ab_raising(repo, tmp_path, "--rounds", "9", "--processes", "1")
    assert error.value.code == 2 and "below 10 paired rounds" in str(error.value)


def _ab_raising(repo, reports, *flags):
    return run_bench.main(["ab", "base", "base", "--repo", str(repo), "--reports", str(reports), *flags])


def test_heads_harness_checks_and_times_the_ci_baseline_revision(monkeypatch):
    """CI's `ab` step measures baseline/REV's impls/ under this harness: found when the oracle was
    given the layout arguments on every call, which that older oracle does not take, and every BASE
    case raised."""
    revision = (ROOT / "baseline" / "REV").read_text().strip()
    if subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip(f"baseline/REV {revision[:12]} is not in this clone's history")
    # the user's cache, as CI's `ab` step uses it: the numba compiles paid here are not paid there again
    monkeypatch.delenv("SCANLAB_AB_CACHE")
    side = resolve("base", revision, ROOT)
    worker = Worker(side, side.impls)
    try:
        for backend in ("sequential",):  # native would add its kernels' compile (numba) to the test's time
            key = CaseKey(family="scan", backend=backend, mode="forward", device="cpu", dtype="float32",
                          B=1, L=33, D=4, N=0)
            answer = worker.prepare(backend, key.as_row())
            assert answer["ok"], answer
            assert answer["verdicts"] and all(v["passed"] for v in answer["verdicts"]), answer["verdicts"]
            assert worker.request("time", name=backend, number=2)["seconds"] > 0
    finally:
        worker.close()
