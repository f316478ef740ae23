"""pytest-benchmark JSON (pytest --benchmark-only --benchmark-json=FILE) into scanlab records.

Each benchmark test records its case in `benchmark.extra_info` (family, backend, mode, dtype, B, L,
D, N, device). pytest-benchmark reports quartiles, not p20/p80: lo and hi hold q1 and q3, and the
note says so.
"""
import json
from pathlib import Path

from .case_key import CASE_FIELDS, CaseKey


def benchmark_rows(path):
    data = json.loads(Path(path).read_text())
    rows = []
    for bench in data.get("benchmarks", []):
        info, stats = bench.get("extra_info", {}), bench["stats"]
        missing = [f for f in CASE_FIELDS if f not in info and f != "layout"]  # no layout: a dense case
        if missing:
            raise ValueError(f"benchmark {bench['name']!r} lacks extra_info fields {missing}")
        key = CaseKey.from_row(info)
        rows.append(dict(key.as_row(), suite="benchmark", unit_id=bench["fullname"], regime="", metric="time_s",
                         value=stats["median"], lo=stats["q1"], hi=stats["q3"], unit="s",
                         note="pytest-benchmark: lo/hi are q1/q3", timestamp=data.get("datetime", "")))
    return rows
