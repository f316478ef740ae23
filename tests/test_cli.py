"""run_bench.py: errors on bad flags, and the subcommands end to end on a tiny sweep."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scanlab import run_bench

ROOT = Path(run_bench.__file__).parent


@pytest.mark.parametrize("argv,message", [
    (["perf", "--lengths", "0"], "0 must be positive"),
    (["perf", "--lengths", "ten"], "'ten' is not a valid int"),
    (["accuracy", "--dtypes", "float8"], "unknown dtype 'float8'"),
    (["perf", "--family", "attention"], "unknown family 'attention'"),
    (["perf", "--modes", "backward"], "unknown mode 'backward'"),
    (["perf", "--batch", "-1"], "-1 must be positive"),
    (["accuracy", "--preset", "huge"], "invalid choice: 'huge'"),
])
def test_bad_flags_are_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_bench.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["report", "--reports", "{tmp}/missing"], "is not a folder"),
    (["import-benchmark", "{tmp}/bad.json"], "is not pytest-benchmark JSON"),
    (["perf", "--family", "scan,conv", "--dtypes", "complex64", "--reports", "{tmp}"],
     "--dtypes: the conv family takes float32, float64; got complex64"),
    (["perf", "--rounds", "8", "--max-rounds", "4", "--reports", "{tmp}"], "--max-rounds 4 is below the 8 rounds"),
    (["perf", "--family", "dss", "--backends", "recurrent:nope", "--reports", "{tmp}"], "'recurrent:nope' is not a dss"),
])
def test_user_errors_exit_2_naming_the_flag_or_file_and_write_nothing(argv, message, tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{bad")
    argv = [arg.format(tmp=tmp_path) for arg in argv]
    done = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *argv], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["bad.json"]  # no run file was started


def test_a_sweep_flag_before_the_subcommand_counts():
    parse = run_bench.build_parser().parse_args
    assert parse(["--lengths", "64", "perf"]).lengths == [64]
    assert parse(["perf", "--lengths", "64"]).lengths == [64]
    assert parse(["--lengths", "64", "perf", "--lengths", "8"]).lengths == [8]
    assert parse(["--no-memory", "perf"]).no_memory and not parse(["perf"]).no_memory
    assert parse(["perf"]).preset == "quick" and parse(["--preset", "ci", "accuracy"]).preset == "ci"


def test_max_rounds_below_rounds_is_a_user_error(tmp_path):
    with pytest.raises(run_bench.UserError, match="--max-rounds 4 is below the 8 rounds") as exit_info:
        run_bench.main(["perf", "--rounds", "8", "--max-rounds", "4", "--reports", str(tmp_path)])
    assert exit_info.value.code == 2 and not list(tmp_path.iterdir())


def test_unknown_backend(tmp_path):
    with pytest.raises(SystemExit, match="'nope' is not a scan backend here; choose from sequential"):
        run_bench.main(["perf", "--family", "scan", "--backends", "nope", "--reports", str(tmp_path)])


def test_compare_missing_file(tmp_path):
    with pytest.raises(SystemExit, match="does not exist"):
        run_bench.main(["compare", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")])


def test_list_names_every_backend(capsys):
    assert run_bench.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("sequential", "assoc", "heinsen", "chunked", "torch_hop", "jax_assoc", "jax_scan", "fft_fast"):
        assert name in out


def test_perf_report_and_compare_end_to_end(tmp_path):
    """A tiny perf sweep, its report, and compare of the run with itself (no regression: exit 0)."""
    args = ["perf", "--preset", "ci", "--family", "scan", "--backends", "assoc,chunked", "--lengths", "64",
            "--batch", "1", "--channels", "4", "--modes", "forward", "--rounds", "2", "--no-progress",
            "--reports", str(tmp_path)]
    assert run_bench.main(args) == 0
    [rows_path] = tmp_path.glob("*/runs/perf-scan-*.jsonl")
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    metrics = {(r["backend"], r["metric"]) for r in rows}
    assert {("assoc", "time_s"), ("assoc", "floor_multiple"), ("assoc", "gbps"), ("floor", "time_s")} <= metrics
    assert run_bench.main(["report", "--reports", str(tmp_path)]) == 0
    machine = rows_path.parent.parent
    assert (machine / "perf-scan.md").read_text().count("| assoc") == 1
    assert list((machine / "plots").glob("*.png"))
    done = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), "compare", str(rows_path), str(rows_path)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "0 regression" in done.stdout


def test_perf_threads_are_recorded_in_every_row_and_the_folder_name(tmp_path):
    args = ["perf", "--preset", "ci", "--family", "scan", "--backends", "assoc", "--lengths", "16", "--batch", "1",
            "--channels", "2", "--modes", "forward", "--rounds", "1", "--no-progress", "--no-memory", "--threads", "1",
            "--reports", str(tmp_path)]
    done = subprocess.run([sys.executable, str(ROOT / "run_bench.py"), *args], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    [rows_path] = tmp_path.glob("*/runs/perf-scan-*.jsonl")
    assert rows_path.parent.parent.name.endswith("-1t")
    rows = [json.loads(line) for line in rows_path.read_text().splitlines()]
    assert rows and {r["threads"] for r in rows} == {1}
    assert {"floor", "floor_prealloc"} <= {r["backend"] for r in rows}
