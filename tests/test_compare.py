"""compare's verdicts on synthetic records with known answers: a true slowdown, pure noise, an
improvement, a broken case, cases on one side, and the CLI's exit codes."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scanlab import run_bench
from scanlab.harness.results.compare import ALPHA, CompareError, compare, judge, summary_markdown

ROOT = Path(__file__).resolve().parent.parent


def _figures(samples):
    return float(np.median(samples)), float(np.percentile(samples, 20)), float(np.percentile(samples, 80)), list(samples)


def _rows(cases, machine="m1", metric="time_s"):
    """name -> per-round samples (None: the case failed its accuracy check)."""
    rows = []
    for name, samples in cases.items():
        key = dict(suite="perf", family="scan", backend=name, mode="forward", device="cpu", dtype="float32", B=4,
                   L=1024, D=256, N=0, machine_id=machine)
        if samples is None:
            rows.append(dict(key, metric="time_s", value=None, lo="", hi="", samples="",
                             note="no speed figure: h fails its declared tolerance (3x the allowed error)"))
            continue
        median, lo, hi, listed = _figures(samples)
        rows.append(dict(key, metric="time_s", value=median, lo=lo, hi=hi, samples=listed, note=""))
        if metric != "time_s":
            rows.append(dict(key, metric=metric, value=median / 2, lo="", hi="", samples=[s / 2 for s in listed], note=""))
    return pd.DataFrame(rows)


def _verdict_rates(true_ratio, rounds, trials=400, noise=0.2, seed=0):
    rng = np.random.default_rng(seed)
    counts = {}
    for _ in range(trials):
        base = 1 + noise * rng.standard_normal(rounds)
        new = true_ratio * (1 + noise * rng.standard_normal(rounds))
        verdict = judge(_figures(base), _figures(new), factor=1.1).verdict
        counts[verdict] = counts.get(verdict, 0) + 1
    return {k: v / trials for k, v in counts.items()}


def test_a_true_slowdown_under_20_percent_noise_is_found_with_enough_rounds():
    assert _verdict_rates(1.3, rounds=20).get("regression", 0) > 0.6


def test_pure_noise_is_almost_never_a_regression():
    rates = _verdict_rates(1.0, rounds=10, trials=1000)
    assert rates.get("regression", 0) <= 0.005 and rates.get("improvement", 0) <= 0.005


def test_a_true_speedup_is_an_improvement():
    assert _verdict_rates(0.7, rounds=20).get("improvement", 0) > 0.8


def test_the_significance_test_decides_when_both_sides_have_samples():
    base, new = _figures([1.0] * 6), _figures([1.2, 1.21, 1.22, 1.23, 1.24, 1.25])
    verdict = judge(base, new, factor=1.1)
    assert verdict.verdict == "regression" and verdict.p_value < ALPHA
    overlapping = _figures([1.0, 1.3, 1.0, 1.3, 1.0, 1.3])
    assert judge(base, overlapping, factor=1.1).verdict in ("noise", "same")


def test_few_rounds_need_complete_separation():
    base = _figures([1.0, 1.1, 0.9])
    assert judge(base, _figures([1.3, 1.4, 1.2]), factor=1.1).verdict == "regression"
    assert judge(base, _figures([1.3, 1.4, 1.05]), factor=1.1).verdict == "noise"  # one round overlaps


def test_a_slowdown_under_the_factor_is_never_a_regression():
    base, new = _figures([1.0] * 10), _figures([1.08] * 10)
    assert judge(base, new, factor=1.1).verdict == "same"


def test_a_case_that_starts_failing_its_check_is_broken_and_counts_as_a_regression():
    comparison = compare(_rows({"a": [1.0] * 6, "b": [1.0] * 6}), _rows({"a": None, "b": [1.0] * 6}))
    verdicts = comparison.table.set_index("backend")["verdict"]
    assert verdicts["a"] == "broken" and verdicts["b"] == "same"
    assert comparison.regressions == 1
    assert "fails its declared tolerance" in summary_markdown(comparison)


def test_failing_on_both_sides_or_fixed_is_not_a_regression():
    comparison = compare(_rows({"a": None, "b": None}), _rows({"a": None, "b": [1.0] * 6}))
    verdicts = comparison.table.set_index("backend")["verdict"]
    assert verdicts["a"] == "failing" and verdicts["b"] == "fixed" and comparison.regressions == 0


def test_a_case_missing_from_new_is_broken_and_one_only_in_new_is_listed():
    comparison = compare(_rows({"a": [1.0] * 6, "gone": [1.0] * 6}), _rows({"a": [1.0] * 6, "added": [1.0] * 6}))
    verdicts = comparison.table.set_index("backend")["verdict"]
    assert verdicts["gone"] == "broken" and verdicts["a"] == "same" and comparison.regressions == 1
    assert list(comparison.only_new["backend"]) == ["added"]
    text = summary_markdown(comparison)
    assert "missing in NEW: no record of this case" in text and "Only in NEW (1 cases" in text


def test_a_backend_skipped_in_new_is_broken_with_the_reason_it_gave():
    """The reproduction: BASE timed native, NEW has it only as `skipped` (numba missing)."""
    skipped = dict(suite="perf", family="scan", backend="native", mode="", device="cpu", dtype="", B="", L="", D="",
                   N="", metric="skipped", value=None, note="numba is not installed", machine_id="m1")
    new = pd.concat([_rows({"a": [1.0] * 6}), pd.DataFrame([skipped])], ignore_index=True)
    comparison = compare(_rows({"a": [1.0] * 6, "native": [1.0] * 6}), new)
    broken = comparison.table[comparison.table.verdict == "broken"]
    assert list(broken.backend) == ["native"] and list(broken.note_new) == ["missing in NEW: numba is not installed"]


def test_allow_missing_accepts_a_deliberate_removal_and_lists_it():
    base, new = _rows({"a": [1.0] * 6, "gone": [1.0] * 6}), _rows({"a": [1.0] * 6})
    comparison = compare(base, new, allow_missing=["gone", "never_there"])
    assert comparison.regressions == 0 and list(comparison.accepted["backend"]) == ["gone"]
    text = summary_markdown(comparison)
    assert "Accepted as removed (1 BASE cases missing from NEW; --allow-missing gone,never_there)" in text
    assert "--allow-missing named never_there, which NEW does not miss" in text


def test_allow_missing_does_not_excuse_a_failing_check():
    comparison = compare(_rows({"a": [1.0] * 6}), _rows({"a": None}), allow_missing=["a"])
    assert comparison.regressions == 1 and comparison.accepted.empty


def test_no_case_in_common_is_every_base_case_broken():
    comparison = compare(_rows({"a": [1.0] * 6}), _rows({"b": [1.0] * 6}))
    assert list(comparison.table.verdict) == ["broken"] and comparison.regressions == 1


def test_suites_never_pair():
    imported = _rows({"a": [1.0] * 6}).assign(suite="benchmark")
    comparison = compare(_rows({"a": [1.0] * 6}), imported)
    assert list(comparison.table.verdict) == ["broken"] and list(comparison.only_new.suite) == ["benchmark"]


@pytest.mark.parametrize("factor", [1.0, 0.5, float("nan"), float("inf")])
def test_factor_must_be_a_finite_number_above_one(factor):
    with pytest.raises(CompareError, match="factor must be a finite number > 1"):
        compare(_rows({"a": [1.0] * 6}), _rows({"a": [1.0] * 6}), factor=factor)


def test_across_machines_the_floor_ratio_is_compared_not_time():
    base = _rows({"a": [1.0] * 6}, machine="laptop", metric="floor_multiple")
    new = _rows({"a": [3.0] * 6}, machine="server", metric="floor_multiple")  # 3x slower machine ...
    new.loc[new.metric == "floor_multiple", "value"] = 0.5  # ... but the same multiple of its floor
    new.loc[new.metric == "floor_multiple", "samples"] = pd.Series([[0.5] * 6], index=new.index[new.metric == "floor_multiple"])
    comparison = compare(base, new)
    assert comparison.metric == "floor_multiple"
    assert comparison.table["verdict"].tolist() == ["same"]
    assert "not on absolute time" in summary_markdown(comparison)
    assert compare(base, new, on="time").table["verdict"].tolist() == ["regression"]  # 3x slower, every round
    assert compare(base, base.assign(machine_id="server"), on="floor").metric == "floor_multiple"


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows.to_dict("records")))
    return path


def _exit_code(*args):
    try:
        return run_bench.main(["compare", *map(str, args)])
    except SystemExit as error:
        return error.code


def test_cli_exit_codes(tmp_path, capsys):
    base = _write(tmp_path / "base.jsonl", _rows({"a": [1.0] * 6}))
    slower = _write(tmp_path / "slower.jsonl", _rows({"a": [2.0, 2.1, 2.2, 2.0, 2.1, 2.2]}))
    broken = _write(tmp_path / "broken.jsonl", _rows({"a": None}))
    other = _write(tmp_path / "other.jsonl", _rows({"b": [1.0] * 6}))
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text('{"metric": "time_s", "value": 1\n')
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert _exit_code(base, base) == 0
    assert _exit_code(base, slower) == 1
    assert _exit_code(base, broken) == 1
    assert _exit_code(base, other) == 1  # BASE's case is missing from NEW: broken, never "nothing to compare"
    assert _exit_code(base, other, "--allow-missing", "a") == 0
    for args, named in [((base, corrupt), "corrupt.jsonl"),
                        ((base, empty), "empty.jsonl"), ((base, tmp_path / "missing.jsonl"), "missing.jsonl"),
                        ((base, base, "--factor", "nan"), "--factor")]:
        with pytest.raises(SystemExit) as error:
            run_bench.main(["compare", *map(str, args)])
        assert error.value.code == 2 and named in str(error.value), args


def test_cli_bad_input_is_one_line_on_stderr_not_a_traceback(tmp_path):
    corrupt = tmp_path / "corrupt.jsonl"
    corrupt.write_text('{"metric": "time_s", "value": 1\n')
    done = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), "compare", str(corrupt), str(corrupt)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "corrupt.jsonl" in done.stderr


def _fixed(value, samples=()):
    return value, value, value, list(samples)


@pytest.mark.parametrize("base,new,verdict", [
    (1.0, 2.0, "same"),  # exactly the factor (2): not slower than it
    (2.0, 1.0, "same"),  # exactly 1 / factor: not faster than it
])
def test_a_ratio_exactly_at_the_factor_is_the_same(base, new, verdict):
    assert judge(_fixed(base), _fixed(new), factor=2.0).verdict == verdict


def test_exactly_min_samples_a_side_take_the_significance_test():
    base, new = [1.0 + 0.01 * i for i in range(6)], [2.0 + 0.01 * i for i in range(6)]
    found = judge(_figures(base), _figures(new), factor=1.1)
    assert found.verdict == "regression" and found.p_value == pytest.approx(1 / 924)  # 1 / C(12, 6)


def test_samples_on_one_side_only_fall_back_to_the_intervals():
    base = (1.0, 0.9, 1.1, [0.9, 1.0, 1.1])
    assert judge(base, (2.0, 1.9, 2.1, []), factor=1.1).verdict == "regression"
    assert judge((2.0, 1.9, 2.1, []), base, factor=1.1).verdict == "improvement"


@pytest.mark.parametrize("base,new", [
    ((1.0, 0.9, 1.5, [0.9, 1.0, 1.5]), (2.0, 1.5, 2.1, [1.5, 2.0, 2.1])),  # samples touch at 1.5
    ((1.0, 0.9, 1.5, []), (2.0, 1.5, 2.1, [])),  # intervals touch at 1.5
])
def test_touching_samples_or_intervals_are_noise_not_a_change(base, new):
    assert judge(base, new, factor=1.1).verdict == "noise"
    assert judge(new, base, factor=1.1).verdict == "noise"


def test_the_default_factor_is_ten_percent():
    slower = [1.5 + 0.01 * i for i in range(8)]
    assert compare(_rows({"assoc": [1.0 + 0.01 * i for i in range(8)]}), _rows({"assoc": slower})).regressions == 1


def test_verdicts_and_comparisons_are_frozen():
    comparison = compare(_rows({"assoc": [1.0] * 8}), _rows({"assoc": [1.0] * 8}), factor=1.1)
    with pytest.raises(AttributeError):
        comparison.factor = 2.0
    with pytest.raises(AttributeError):
        judge(_fixed(1.0), _fixed(1.0), 1.1).verdict = "regression"
    assert "Index" not in comparison.table.columns  # one column per field of the records, no pandas index


def test_the_summary_counts_every_verdict_sorts_broken_first_and_shows_each_case_field(tmp_path):
    base = _rows({"assoc": [1.0] * 8, "chunked": [1.0] * 8, "zz": [1.0] * 8, "old": [1.0] * 8})
    new = _rows({"assoc": [1.0] * 8, "chunked": None, "zz": [1.0] * 8, "new": [1.0] * 8})
    text = summary_markdown(compare(base, new, factor=1.1))
    assert "2 broken, 0 regression, 0 improvement, 0 noise, 2 same, 0 fixed, 0 failing" in text
    header, _, first, second, *_ = text.split("## compare")[1].split("\n\n")[2].splitlines()
    assert header.startswith("| family ") and "| chunked " in first  # broken first, though 'assoc' sorts first
    assert "| old " in second and "missing in NEW" in second
    assert "| 1 [1, 1] " in text  # a figure with its interval
    only = text.split("### Only in NEW")[1]
    assert only.split("\n\n")[1].startswith("| family ") and "| new " in only


def test_the_summary_lists_regressions_before_improvements():
    base = _rows({"faster": [2.0 + 0.01 * i for i in range(8)], "slower": [1.0 + 0.01 * i for i in range(8)]})
    new = _rows({"faster": [1.0 + 0.01 * i for i in range(8)], "slower": [2.0 + 0.01 * i for i in range(8)]})
    text = summary_markdown(compare(base, new, factor=1.1))
    assert text.index("| regression") < text.index("| improvement")  # VERDICTS order, not alphabetical
