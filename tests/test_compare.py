"""compare's verdicts on synthetic records: a true regression, noise, an improvement."""
import pandas as pd
import pytest

from harness.compare import compare, judge, summary_markdown


def _rows(cases):
    return pd.DataFrame([dict(family="scan", backend=name, mode="forward", device="cpu", dtype="float32", B=4, L=1024,
                              D=256, N=0, metric="time_s", value=median, lo=lo, hi=hi)
                         for name, (median, lo, hi) in cases.items()])


def test_verdicts():
    base = _rows({"slower": (1.0, 0.98, 1.02), "noisy": (1.0, 0.8, 1.3), "faster": (1.0, 0.98, 1.02),
                  "same": (1.0, 0.98, 1.02)})
    new = _rows({"slower": (1.3, 1.28, 1.33), "noisy": (1.25, 1.0, 1.5), "faster": (0.7, 0.69, 0.72),
                 "same": (1.05, 1.0, 1.1)})
    table = compare(base, new, factor=1.1).set_index("backend")
    assert table.loc["slower", "verdict"] == "regression"
    assert table.loc["noisy", "verdict"] == "noise"  # 1.25x slower, but the intervals overlap
    assert table.loc["faster", "verdict"] == "improvement"
    assert table.loc["same", "verdict"] == "same"
    assert table.loc["slower", "ratio"] == pytest.approx(1.3)


def test_a_slowdown_under_the_factor_is_never_a_regression():
    assert judge(1.0, 0.99, 1.01, 1.08, 1.07, 1.09, factor=1.1).verdict == "same"


def test_cases_missing_on_one_side_are_not_compared():
    table = compare(_rows({"a": (1, 1, 1)}), _rows({"b": (1, 1, 1)}))
    assert table.empty


def test_failed_cases_without_time_are_ignored():
    base = _rows({"a": (1.0, 0.9, 1.1)})
    new = _rows({"a": (None, None, None)})
    assert compare(base, new).empty


def test_summary_counts_verdicts():
    table = compare(_rows({"a": (1.0, 0.99, 1.01)}), _rows({"a": (2.0, 1.9, 2.1)}))
    text = summary_markdown(table, 1.1)
    assert "1 regression" in text and "| scan" in text


def test_factor_must_exceed_one():
    with pytest.raises(ValueError, match="factor must be > 1"):
        compare(_rows({}), _rows({}), factor=1.0)
