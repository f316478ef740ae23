"""pytest-benchmark JSON becomes records with the case fields and quartiles."""
import json

import pytest

from scanlab import run_bench
from scanlab.harness.results.benchmark_import import benchmark_rows
from scanlab.harness.results.records import load_rows


def _bench_json(path, extra):
    data = {"datetime": "2026-11-22T00:00:00", "benchmarks": [{
        "name": "test_scan[assoc]", "fullname": "tests/test_benchmarks.py::test_scan[assoc]", "extra_info": extra,
        "stats": {"median": 0.002, "q1": 0.0019, "q3": 0.0023, "mean": 0.0021, "min": 0.0018, "max": 0.003}}]}
    path.write_text(json.dumps(data))
    return path


CASE = dict(family="scan", backend="assoc", mode="forward", device="cpu", dtype="float32", B=4, L=1024, D=256, N=0)


def test_rows_carry_the_case_and_quartiles(tmp_path):
    [row] = benchmark_rows(_bench_json(tmp_path / "b.json", CASE))
    assert {k: row[k] for k in CASE} == CASE
    assert (row["value"], row["lo"], row["hi"]) == (0.002, 0.0019, 0.0023)


def test_missing_case_fields_are_named(tmp_path):
    with pytest.raises(ValueError, match="lacks extra_info fields.*'L'"):
        benchmark_rows(_bench_json(tmp_path / "b.json", {k: v for k, v in CASE.items() if k != "L"}))


def test_cli_import_stores_a_run(tmp_path):
    source = _bench_json(tmp_path / "b.json", CASE)
    assert run_bench.main(["import-benchmark", str(source), "--reports", str(tmp_path / "reports")]) == 0
    [rows_path] = (tmp_path / "reports").glob("*/runs/benchmark-*.jsonl")
    rows = load_rows(rows_path)
    assert list(rows["metric"]) == ["time_s"] and rows["machine_id"].notna().all()
