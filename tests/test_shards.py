"""Sweeps in shards: the split, the merge, and submit through submitit's local executor."""
import json

import pytest

from scanlab import run_bench
from scanlab.harness.results.records import latest_sweeps, load_rows
from scanlab.harness.run.shard import Shard

pytest.importorskip("submitit")  # the `cluster` and `test` extras install it
TINY = ["--lengths", "7,33", "--backends", "sequential,assoc", "--dtypes", "float32,float64", "--batch", "1",
        "--channels", "2", "--no-progress"]
CASE = ["unit_id", "backend", "dtype", "L", "regime", "mode", "metric"]


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("offset", [0, 4])
def test_shards_partition_the_units_and_share_them_evenly(count, offset):
    units = list(range(17))
    shares = [Shard(i, count).take(units, offset) for i in range(1, count + 1)]
    assert sorted(u for share in shares for u in share) == units
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_the_round_robin_goes_on_across_families():
    assert Shard(2, 3).take(["a", "b", "c", "d"], offset=2) == ["c"]  # positions 2..5; 4 % 3 == 1: the 2nd share


@pytest.mark.parametrize("text,message", [
    ("0/2", "I must be between 1 and N = 2"),
    ("3/2", "I must be between 1 and N = 2"),
    ("1/0", "at least 1 shard"),
    ("2", "'2' is not I/N"),
    ("a/b", "'a/b' is not I/N"),
])
def test_a_bad_shard_exits_2_naming_the_flag(text, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_bench.main(["accuracy", "--shard", text, "--reports", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--shard" in err and message in err
    assert not any(tmp_path.iterdir())


def test_submit_refuses_a_hand_picked_shard_and_fresh(tmp_path, capsys):
    for flag in (["--shard", "1/2"], ["--fresh"]):
        assert _exit_code(["submit", "accuracy", *flag, "--reports", str(tmp_path), "--executor", "local"]) == 2
    assert "--shards N" in capsys.readouterr().err


def _exit_code(argv):
    try:
        return run_bench.main(argv)
    except run_bench.UserError as error:
        print(error, file=__import__("sys").stderr)
        return 2


def _cases(rows):
    return {tuple(r) for r in rows[CASE].astype(str).values}


def _machine(reports):
    [machine] = [p for p in reports.iterdir() if (p / "runs").is_dir()]
    return machine


def test_two_shards_add_up_to_the_unsharded_sweep_in_one_report(tmp_path, capsys):
    run_bench.main(["accuracy", *TINY, "--reports", str(tmp_path / "whole")])
    logs = tmp_path / "logs"
    code = _exit_code(["submit", "accuracy", *TINY, "--reports", str(tmp_path / "sharded"), "--executor", "local",
                       "--shards", "2", "--logs", str(logs)])
    assert code == 0 and "local shard 1/2: done" in capsys.readouterr().out
    whole, sharded = load_rows(_machine(tmp_path / "whole")), load_rows(_machine(tmp_path / "sharded"))
    assert _cases(sharded) == _cases(whole) and not sharded.duplicated(CASE).any()
    assert sharded.groupby("run_id").size().min() > 0  # both shards measured something
    merged = whole.merge(sharded, on=CASE)
    assert (merged["value_x"].astype(float) == merged["value_y"].astype(float)).all()  # the same measurements
    run_bench.main(["report", "--reports", str(tmp_path / "sharded")])
    page = (_machine(tmp_path / "sharded") / "accuracy.md").read_text()
    assert "| sequential" in page and "| assoc" in page and "Incomplete" not in page


def test_perf_shards_split_the_groups_of_every_family(tmp_path):
    flags = ["perf", "--family", "conv,dss", "--lengths", "16,32", "--batch", "1", "--channels", "2",
             "--rounds", "2", "--no-memory", "--no-progress"]
    run_bench.main([*flags, "--reports", str(tmp_path / "whole")])
    for shard in ("1/3", "2/3", "3/3"):
        run_bench.main([*flags, "--shard", shard, "--reports", str(tmp_path / "sharded")])
    timed = lambda rows: _cases(rows[rows["metric"] == "time_s"])  # noqa: E731
    whole, sharded = load_rows(_machine(tmp_path / "whole")), load_rows(_machine(tmp_path / "sharded"))
    assert timed(sharded) == timed(whole) and len(timed(whole)) > 0
    sweeps = latest_sweeps(_machine(tmp_path / "sharded"))
    assert {s: (v.count, len(v.parts), v.unfinished) for s, v in sweeps.items()} == \
        {"perf-conv": (3, 3, []), "perf-dss": (3, 3, [])}


def _kill_after(run_rows, units):
    """The state a killed shard leaves: its first `units` units on disk, its meta still 'running'."""
    rows = [json.loads(line) for line in run_rows.read_text().splitlines()]
    kept = list(dict.fromkeys(r["unit_id"] for r in rows))[:units]
    run_rows.write_text("".join(json.dumps(r) + "\n" for r in rows if r["unit_id"] in kept))
    meta_path = run_rows.with_name(run_rows.name.replace(".jsonl", ".meta.json"))
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps(dict(meta, status="running")))
    return [r for r in rows if r["unit_id"] in kept]


def test_a_killed_shard_is_listed_and_resubmitting_finishes_it_alone(tmp_path, capsys):
    for shard in ("1/2", "2/2"):  # by hand, as a cluster job would: quicker than two more jobs
        run_bench.main(["accuracy", *TINY, "--reports", str(tmp_path), "--shard", shard])
    machine = _machine(tmp_path)
    complete = load_rows(machine)
    first, second = latest_sweeps(machine)["accuracy"].rows_paths
    survivors = _kill_after(second, 3)
    untouched = first.read_text()

    assert latest_sweeps(machine)["accuracy"].unfinished == ["2/2 running"]
    run_bench.main(["report", "--reports", str(tmp_path)])
    assert "2/2 running" in (machine / "index.md").read_text()
    assert "Incomplete: shard 2/2 running" in (machine / "accuracy.md").read_text()

    submit = ["submit", "accuracy", *TINY, "--reports", str(tmp_path), "--executor", "local", "--logs",
              str(tmp_path / "logs")]
    assert _exit_code(submit) == 0
    assert first.read_text() == untouched  # the finished shard redid nothing
    assert len(list(machine.glob("runs/*.meta.json"))) == 2  # and no shard started a new run
    resumed = [json.loads(line) for line in second.read_text().splitlines()]
    assert resumed[:len(survivors)] == survivors  # what the killed shard measured is kept, not redone
    assert latest_sweeps(machine)["accuracy"].unfinished == []
    assert _cases(load_rows(machine)) == _cases(complete)


def test_a_failed_job_is_listed_with_its_log(tmp_path):
    from scanlab.harness.run.submit import executor, submit_shards, summary

    pool = executor(tmp_path / "logs", "local")
    jobs = submit_shards(pool, ["accuracy", "--lengths", "0"], "accuracy", 1, cwd=run_bench.ROOT)
    text = summary(jobs)
    assert "local shard 1/1: failed: exit status 2: run_bench.py accuracy: error: argument --lengths: 0 must be " \
           "positive" in text
    assert str(tmp_path / "logs") in text
    assert "submit the same command again" in text


def test_local_timing_shards_never_overlap(tmp_path, capsys):
    flags = ["--family", "conv", "--lengths", "16,32", "--batch", "1", "--channels", "2", "--rounds", "2",
             "--no-memory", "--no-progress", "--reports", str(tmp_path), "--executor", "local", "--logs",
             str(tmp_path / "logs")]
    assert _exit_code(["submit", "perf", *flags]) == 0
    metas = sorted((json.loads(p.read_text()) for p in _machine(tmp_path).glob("runs/*.meta.json")),
                   key=lambda m: m["config"]["shard"])
    assert [m["config"]["shard"] for m in metas] == ["1/2", "2/2"]
    assert metas[1]["started"] >= metas[0]["finished"]  # the second timed nothing while the first ran


def test_partitions_need_slurm(tmp_path, capsys):
    assert _exit_code(["submit", "accuracy", "--partitions", "a100,h100", "--executor", "local", "--reports",
                       str(tmp_path), "--logs", str(tmp_path / "logs")]) == 2
    assert "--partitions names SLURM partitions" in capsys.readouterr().err


def test_a_local_job_sees_the_callers_devices_and_has_no_short_time_limit(tmp_path, monkeypatch):
    """Read from inside the job: a plugin module the job's sweep loads writes what its process sees."""
    seen = tmp_path / "seen.json"
    probe = tmp_path / "probe_environment.py"
    probe.write_text("import json, os\n"
                     f"json.dump({{k: os.environ.get(k) for k in ('CUDA_VISIBLE_DEVICES', 'SUBMITIT_LOCAL_TIMEOUT_S')}}, "
                     f"open({str(seen)!r}, 'w'))\n")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    submit = ["submit", "accuracy", *TINY, "--reports", str(tmp_path / "r"), "--executor", "local", "--logs",
              str(tmp_path / "logs"), "--shards", "1", "--backends", "sequential", "--backend-module", str(probe)]
    assert _exit_code(submit) == 0
    inside = json.loads(seen.read_text())
    assert inside["CUDA_VISIBLE_DEVICES"] == "3"  # submitit's local default would have been ""
    assert int(inside["SUBMITIT_LOCAL_TIMEOUT_S"]) >= 24 * 3600  # its default was 2 minutes


def test_submit_on_slurm_needs_a_time_limit(tmp_path, monkeypatch):
    from scanlab.harness.run import submit as submit_module

    class Slurm:
        cluster = "slurm"

    monkeypatch.setattr(submit_module, "executor", lambda folder, cluster: Slurm())
    with pytest.raises(SystemExit) as error:
        run_bench.main(["submit", "accuracy", *TINY, "--reports", str(tmp_path), "--executor", "slurm"])
    assert error.value.code == 2 and "--timeout-min" in str(error.value)
